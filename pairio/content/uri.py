"""Content URIs: ``sha1://<hash>[/name]`` for a file, ``sha1dir://<hash>[.name][/sub/path]`` for a directory.

The name of a ``sha1://`` URI is informational only: two URIs with the same
hash name the same content. In a ``sha1dir://`` URI the hash is that of the
directory's manifest, the ``.name`` is informational, and the path after it
selects a file or subdirectory inside.
"""

from __future__ import annotations

import dataclasses
import re

from ..errors import InvalidURIError

_SHA1_URI = re.compile(r"sha1://([0-9a-fA-F]{40})(?:/(.*))?", re.DOTALL)
_SHA1DIR_URI = re.compile(r"sha1dir://([0-9a-fA-F]{40})(?:\.([^/]*))?(?:/(.*))?", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class ContentURI:
    """A parsed content URI."""

    scheme: str  # "sha1" or "sha1dir"
    sha1: str  # lowercase hex: the file's hash, or the directory manifest's
    name: str | None = None
    path: tuple[str, ...] = ()  # for sha1dir: the components after the directory

    @property
    def is_dir(self) -> bool:
        """True for a ``sha1dir://`` URI."""
        return self.scheme == "sha1dir"

    def __str__(self) -> str:
        if self.scheme == "sha1":
            return file_uri(self.sha1, self.name)
        return dir_uri(self.sha1, self.name, "/".join(self.path))


def parse_uri(uri: str) -> ContentURI:
    """Parse a ``sha1://`` or ``sha1dir://`` URI; InvalidURIError (naming it) if malformed."""
    if not isinstance(uri, str):
        raise InvalidURIError(f"a content URI must be a str, got {type(uri).__name__}")
    m = _SHA1_URI.fullmatch(uri)
    if m:
        return ContentURI("sha1", m.group(1).lower(), m.group(2) or None)
    m = _SHA1DIR_URI.fullmatch(uri)
    if m:
        parts = tuple(p for p in (m.group(3) or "").split("/") if p)
        if any(p in (".", "..") for p in parts):
            raise InvalidURIError(f"content URI {uri!r} has '.' or '..' in its path")
        return ContentURI("sha1dir", m.group(1).lower(), m.group(2) or None, parts)
    if uri.startswith("sha1://"):
        raise InvalidURIError(f"malformed content URI {uri!r}: expected sha1://<40 hex digits>[/name]")
    if uri.startswith("sha1dir://"):
        raise InvalidURIError(
            f"malformed content URI {uri!r}: expected sha1dir://<40 hex digits>[.name][/path]"
        )
    raise InvalidURIError(
        f"malformed content URI {uri!r}: expected sha1://<40-hex>[/name] or sha1dir://<40-hex>[.name][/path]"
    )


def file_uri(sha1: str, name: str | None = None) -> str:
    """``sha1://<sha1>/<name>``, or ``sha1://<sha1>`` without a name."""
    return f"sha1://{sha1}/{name}" if name else f"sha1://{sha1}"


def dir_uri(sha1: str, name: str | None = None, path: str = "") -> str:
    """``sha1dir://<sha1>.<name>[/path]``."""
    base = f"sha1dir://{sha1}.{name}" if name else f"sha1dir://{sha1}"
    return f"{base}/{path}" if path else base
