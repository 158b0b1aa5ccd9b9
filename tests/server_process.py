"""The test servers' pairio.json, and the helpers that start and call a real server."""

from __future__ import annotations

from typing import Any

from pairio.server.process import ServerProcess, free_port, signed_request

__all__ = ["ServerObjects", "ServerProcess", "free_port", "signed_request", "default_settings",
           "RW_PASSWORD", "RO_PASSWORD", "WO_PASSWORD"]

RW_PASSWORD = "rw-password-0123456789"
RO_PASSWORD = "ro-password-0123456789"
WO_PASSWORD = "wo-password-0123456789"


def default_settings(**extra: Any) -> dict[str, Any]:
    """A pairio.json with a read-write, a read-only and a write-only channel (pairs and content alike)."""
    return {
        "channels": [
            {"name": "lab-rw", "password": RW_PASSWORD, "readContent": True, "writeContent": True,
             "collections": [
                {"name": "spikes", "maxNumGetsPerMinute": 1_000_000, "maxNumSetsPerMinute": 1_000_000},
                {"name": "other", "maxNumGetsPerMinute": 1_000_000, "maxNumSetsPerMinute": 1_000_000}]},
            {"name": "public-ro", "password": RO_PASSWORD, "readContent": True, "collections": [
                {"name": "spikes", "maxNumGetsPerMinute": 1_000_000, "maxNumSetsPerMinute": 0}]},
            {"name": "drop-box", "password": WO_PASSWORD, "writeContent": True, "collections": [
                {"name": "spikes", "maxNumGetsPerMinute": 0, "maxNumSetsPerMinute": 1_000_000}]},
        ],
        **extra,
    }


def server_store(server: ServerProcess):
    """The pairs store of ``server`` (embedded or PostgreSQL), opened directly, as its pairio.json says."""
    from pairio.server.app import open_store
    from pairio.server.settings import load_settings

    return open_store(load_settings(server.directory))


class ServerObjects:
    """The content of ``server`` (directory or S3), read directly, as its pairio.json says."""

    def __init__(self, server: ServerProcess) -> None:
        from pairio.server.app import open_content
        from pairio.server.settings import load_settings

        self.backend = open_content(load_settings(server.directory))
        # The content store itself when the backend is a directory (for checks of its layout).
        self.store = getattr(self.backend, "store", None)

    def has(self, sha1: str) -> bool:
        return self.backend.size(sha1) is not None

    def read(self, sha1: str) -> bytes:
        return b"".join(self.backend.read(sha1))
