"""The server's log handler: a log that cannot be written never stops the server.

A full disk (or quota) under the file the server's stderr goes to makes every log write
fail with ENOSPC. logging's own handler would print a traceback for each (to the same
full disk); this one counts the failures, says so once on stderr, and goes on serving.
"""

from __future__ import annotations

import logging
import sys
import threading


class SafeStreamHandler(logging.StreamHandler):
    """A StreamHandler whose write failures (ENOSPC, EDQUOT, EIO, a closed pipe) are counted in
    :attr:`failures`, warned about once on stderr, and otherwise ignored."""

    failures = 0  # across every instance: one warning per process
    _warned = False
    _lock = threading.Lock()

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)
            return
        with SafeStreamHandler._lock:
            SafeStreamHandler.failures += 1
            first = not SafeStreamHandler._warned
            SafeStreamHandler._warned = True
        if first:
            try:
                sys.__stderr__.write(f"pairio serve: the log cannot be written ({exc.strerror or exc}); "
                                     "serving on, later log lines are dropped while this lasts\n")
                sys.__stderr__.flush()
            except (OSError, ValueError, AttributeError):
                pass  # the same full disk: nothing more to do
