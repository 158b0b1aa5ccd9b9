"""Which code is the user's and which is a library, and a library module's installed version.

A module is *library* code when its file lies in the standard library or in a
site-packages/dist-packages directory, or when it is pairio itself; everything
else (scripts, ``__main__``, the user's own packages, even installed in
editable mode) is *user* code and is hashed by its source.

A library module counts by the version of the distribution that provides its
top-level package (``numpy.linalg`` -> ``numpy`` -> ``2.1.3``), from
:func:`importlib.metadata.packages_distributions`. Standard-library modules
count by nothing: keys stay equal across Python 3.10-3.13, so that teammates on
different Pythons share hits (a stdlib change in behaviour is not tracked).

Lookups are cached for the life of the process (installed packages do not
change under a running program); :func:`clear_caches` forgets them.
"""

from __future__ import annotations

import functools
import importlib
import os
import site
import sys
import types

STDLIB = "stdlib"
NOT_INSTALLED = "not installed"
UNKNOWN = "unknown"
_LIBRARY_SEGMENTS = ("site-packages", "dist-packages")


@functools.lru_cache(maxsize=1)
def _stdlib_dirs() -> tuple[str, ...]:
    import sysconfig  # asked once per process, when a key is first derived

    paths = sysconfig.get_paths()
    dirs = {os.path.realpath(paths[name]) for name in ("stdlib", "platstdlib") if name in paths}
    return tuple(d + os.sep for d in dirs)


@functools.lru_cache(maxsize=1)
def _site_dirs() -> tuple[str, ...]:
    import sysconfig

    paths = sysconfig.get_paths()
    dirs = {os.path.realpath(paths[name]) for name in ("purelib", "platlib") if name in paths}
    try:
        dirs.update(os.path.realpath(d) for d in site.getsitepackages())
    except AttributeError:  # some virtualenv tools strip site.getsitepackages
        pass
    return tuple(d + os.sep for d in dirs)


@functools.lru_cache(maxsize=4096)
def classify_module(name: str) -> str:
    """``"user"``, ``"stdlib"`` or ``"library"`` for the module called ``name``."""
    top = name.partition(".")[0]
    if top == "pairio":
        return "library"
    if top in sys.builtin_module_names or top in getattr(sys, "stdlib_module_names", ()):
        return "stdlib"
    module = sys.modules.get(name) or sys.modules.get(top)
    filename = getattr(module, "__file__", None)
    if not filename:
        # Namespace packages have no __file__; their __path__ says where they are.
        paths = list(getattr(module, "__path__", []) or [])
        if not paths:
            return "user"  # __main__ in an interactive session, or a module built in memory
        filename = paths[0]
    real = os.path.realpath(filename)
    if real.startswith(_site_dirs()):
        return "library"
    if any(seg in real.split(os.sep) for seg in _LIBRARY_SEGMENTS):
        return "library"
    if real.startswith(_stdlib_dirs()):
        return "stdlib"
    return "user"


def module_of(obj: object) -> str | None:
    """The name of the module an object was defined in (its type's module for instances)."""
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    name = getattr(obj, "__module__", None)
    if not isinstance(name, str):
        name = getattr(type(obj), "__module__", None)
    return name if isinstance(name, str) else None


def _metadata() -> types.ModuleType:
    # Imported when a version is first asked for: it costs `import pairio` a third of its time.
    import importlib.metadata

    return importlib.metadata


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> dict[str, list[str]]:
    return _metadata().packages_distributions()


@functools.lru_cache(maxsize=1024)
def _same_named_distribution(top: str) -> list[str]:
    """The distribution named like the package ``top`` (numpy, pandas...), if it provides it.

    Most packages are so named: asking for one distribution spares the scan of every
    installed one that :func:`importlib.metadata.packages_distributions` makes (a quarter
    of a second here, seconds in a large environment), which is left for the others.
    """
    metadata = _metadata()
    try:
        dist = metadata.distribution(top)
    except (metadata.PackageNotFoundError, ValueError):
        return []
    provided = (dist.read_text("top_level.txt") or "").split()
    if not provided:
        record = dist.read_text("RECORD") or ""
        prefixes = (f"{top}/", f"{top}.py,", f"{top}.")
        provided = [top] if any(line.startswith(prefixes) for line in record.splitlines()) else []
    return [dist.metadata["Name"]] if top in provided else []


@functools.lru_cache(maxsize=1024)
def distribution_version(dist: str) -> str:
    """The installed version of the distribution ``dist``, or ``"not installed"``."""
    metadata = _metadata()
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


@functools.lru_cache(maxsize=4096)
def module_versions(name: str) -> tuple[tuple[str, str], ...]:
    """``((distribution, version), ...)`` for the library module ``name`` (empty for stdlib).

    A top-level package no distribution claims counts as ``(<package>, "unknown")``.
    """
    top = name.partition(".")[0]
    if top == "pairio":
        from .._version import __version__

        return (("pairio", __version__),)
    if classify_module(name) == "stdlib":
        return ()
    dists = _same_named_distribution(top) or _packages_distributions().get(top)
    if not dists:
        return ((top, UNKNOWN),)
    return tuple(sorted((d, distribution_version(d)) for d in set(dists)))


@functools.lru_cache(maxsize=1024)
def type_versions(tp: type) -> tuple[tuple[str, str], ...]:
    """``((distribution, version), ...)`` of the libraries defining the type ``tp`` and its bases (a user's
    subclass of a DataFrame runs pandas' methods); empty for user and stdlib types."""
    out: set[tuple[str, str]] = set()
    for base in getattr(tp, "__mro__", (tp,)):
        module = getattr(base, "__module__", None)
        if isinstance(module, str) and module != "builtins" and classify_module(module) == "library":
            out.update(module_versions(module))
    return tuple(sorted(out))


def clear_caches() -> None:
    """Forget every cached classification and version (after installing or upgrading packages)."""
    for cached in (classify_module, _packages_distributions, _same_named_distribution, distribution_version,
                   module_versions, type_versions, _site_dirs, _stdlib_dirs):
        cached.cache_clear()
    importlib.invalidate_caches()
