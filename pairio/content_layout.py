"""Where a content directory keeps its objects: the names the content store writes, and the one
question the pair store beside it asks of them (does this directory hold any object?).

They sit below both: the embedded pair store tells a lost database (empty beside stored objects)
without importing the content layer above it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

OBJECTS_DIRNAME = "sha1"  # <content>/sha1/ab/cd/<40 hex>: one file per object
SMALL_OBJECTS_FILENAME = "small-objects.sqlite3"  # small objects, as rows


def holds_objects(content_dir: Path) -> bool:
    """True if the content store in ``content_dir`` holds at least one object (a file or a small object)."""
    with contextlib.suppress(OSError):
        if (content_dir / SMALL_OBJECTS_FILENAME).stat().st_size > 0:
            return True
    pending = [content_dir / OBJECTS_DIRNAME]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
                    elif len(entry.name) == 40:
                        return True
        except OSError:
            continue
    return False
