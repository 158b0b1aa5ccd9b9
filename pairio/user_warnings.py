"""Warnings that point at the user's line, not at pairio's insides."""

from __future__ import annotations

import logging
import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
logger = logging.getLogger("pairio")


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning name the first frame outside pairio (for :func:`warnings.warn`
    called by the caller of this function)."""
    # Level 1 is the caller of warnings.warn: the function that called warn_user's caller is level 2...
    frame = sys._getframe(2)
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


def warn_user(message: str, category: type[Warning] = RuntimeWarning, *, log: bool = True) -> None:
    """Warn (and log to the ``pairio`` logger) with the warning attributed to the user's code."""
    if log:
        logger.warning(message)
    warnings.warn(message, category, stacklevel=user_stacklevel())
