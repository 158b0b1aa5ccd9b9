"""Warnings that point at the user's line, not at pairio's insides."""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning name the first frame outside pairio (for
    :func:`warnings.warn` called by the caller of this function)."""
    # Level 2 is the caller of the function that calls warnings.warn: walk out of pairio from there.
    frame = sys._getframe(2)
    level = 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        level += 1
    return level


def warn_user(message: str, category: type[Warning] = RuntimeWarning) -> None:
    """Warn once per event (``logging.captureWarnings`` sends it to the logs), attributed to the user's code."""
    warnings.warn(message, category, stacklevel=user_stacklevel())
