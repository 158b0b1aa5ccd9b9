"""Sizes (``50GB``, ``512MiB``) and ages (``30d``, ``12h``) as people write them."""

from __future__ import annotations

import math
import re

from .errors import ConfigurationError

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_AGE_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NUMBER_UNIT = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*")


def parse_size(value: str | int | float, what: str = "size") -> int:
    """Bytes from ``50GB`` (decimal units), ``512MiB`` (binary units) or a number of bytes."""
    if isinstance(value, bool):
        raise ConfigurationError(f"{what} must be a size such as 50GB, got {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        match = _NUMBER_UNIT.fullmatch(str(value))
        if match is None or match.group(2).lower() not in _SIZE_UNITS:
            raise ConfigurationError(f"{what} must be a size such as 50GB, 512MiB or 1000000, got {value!r}")
        number, unit = float(match.group(1)), match.group(2).lower()
    if not math.isfinite(number) or number < 0:
        raise ConfigurationError(f"{what} must be a non-negative size, got {value!r}")
    return int(number * _SIZE_UNITS[unit])


def parse_age(value: str | int | float, what: str = "age") -> float:
    """Seconds from ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or a number of seconds."""
    if isinstance(value, bool):
        raise ConfigurationError(f"{what} must be an age such as 30d, got {value!r}")
    if isinstance(value, (int, float)):
        number, unit = float(value), "s"
    else:
        match = _NUMBER_UNIT.fullmatch(str(value))
        if match is None or (match.group(2).lower() or "s") not in _AGE_UNITS:
            raise ConfigurationError(f"{what} must be an age such as 30d, 12h, 90m or 45s, got {value!r}")
        number, unit = float(match.group(1)), match.group(2).lower() or "s"
    if not math.isfinite(number) or number < 0:
        raise ConfigurationError(f"{what} must be a non-negative age, got {value!r}")
    return number * _AGE_UNITS[unit]


def format_size(n: float) -> str:
    """``1.5 GB``, ``12 kB``, ``800 B``: decimal units, three significant digits."""
    for unit, factor in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if abs(n) >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{int(n)} B"


def format_age(seconds: float) -> str:
    """``3d``, ``5h``, ``12m``, ``40s``: the largest whole unit."""
    for unit, factor in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= factor:
            return f"{int(seconds // factor)}{unit}"
    return f"{int(max(seconds, 0))}s"
