"""A tiny progress bar for long copies, drawn on stderr only when it is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

# Files smaller than this finish too fast for a bar to help.
THRESHOLD = 100 * 1024 * 1024
_WIDTH = 30
_INTERVAL_S = 0.1


class ProgressBar:
    """``bar(done)`` redraws the bar for ``done`` of ``total`` bytes; ``bar.close()`` ends the line."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self._started = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last_draw < _INTERVAL_S and done < self.total:
            return
        self._last_draw = now
        fraction = min(done / self.total, 1.0)
        filled = int(fraction * _WIDTH)
        elapsed = max(now - self._started, 1e-9)
        rate = done / elapsed / 1e6
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (_WIDTH - filled)}] "
                          f"{fraction:6.1%} {done / 1e6:,.0f}/{self.total / 1e6:,.0f} MB {rate:,.0f} MB/s")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def progress_bar(total: int, label: str, stream: TextIO | None = None) -> ProgressBar | None:
    """A bar for ``total`` bytes if that is over ~100 MB and the stream is a terminal, else None."""
    stream = stream if stream is not None else sys.stderr
    if total < THRESHOLD or not stream.isatty():
        return None
    return ProgressBar(total, label, stream)
