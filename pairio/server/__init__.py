"""The pairio server: an ASGI app serving channels' key/value pairs (``pip install pairio[server]``).

:func:`create_app` builds the app for a directory holding ``pairio.json``;
``pairio serve DIR`` runs it under uvicorn.
"""

from .settings import ServerSettings, load_settings

__all__ = ["ServerSettings", "create_app", "load_settings"]


def __getattr__(name: str):
    # The app needs starlette (the `server` extra); settings do not, so
    # `pairio serve --check` works without it.
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
