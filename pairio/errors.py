"""The exception tree: every error pairio raises is a :class:`PairioError`.

Each family also derives from the builtin that fits, so ``except ValueError`` in
user code keeps working.
"""

from __future__ import annotations


class PairioError(Exception):
    """Base of every error raised by pairio."""


# --- bad input -------------------------------------------------------------------


class InvalidKeyError(PairioError, ValueError):
    """A key is of the wrong type, too long, or not JSON-serialisable."""


class InvalidValueError(PairioError, ValueError):
    """A value is not a str of at most 80 characters (or None to delete)."""


class ConfigurationError(PairioError, ValueError):
    """A configuration field has an invalid value, or a needed one is missing."""


class InvalidURIError(PairioError, ValueError):
    """A content URI is not of the form ``sha1://<40-hex>[/name]`` or ``sha1dir://...``."""


class InvalidInputError(PairioError, ValueError):
    """A value a store cannot hold as it is (a NUL character in a text field of PostgreSQL): bad
    input, never a sign that the store is down."""


class InvalidManifestError(InvalidURIError):
    """A ``sha1dir://`` URI names a manifest that is malformed or hostile: a name that is no plain
    file name, or both a file and a directory, a size that is not its object's, too deep a tree."""


class UnhashableArgumentError(PairioError, TypeError):
    """An argument of a cached function cannot be hashed into a cache key."""


class UnstorableResultError(PairioError, TypeError):
    """A cached function's result cannot be pickled into the content store."""


class InvalidPathError(PairioError, OSError):
    """A local path does not exist, or is a directory where a file is expected (or the reverse)."""


# --- storage ---------------------------------------------------------------------


class StoreUnavailableError(PairioError, OSError):
    """A store cannot be opened or written (unwritable path, corrupt database, full disk)."""


class StoreNotWritableError(StoreUnavailableError):
    """A store cannot be written because its disk is full (or over quota), its file system is
    read-only, or this user may not write there. Reading it still works.

    ``store`` is the path that could not be written, ``cause`` one of ``"full"``,
    ``"read-only"``, ``"no permission"``, and ``free`` the bytes free on its disk (None if unknown).
    """

    def __init__(self, message: str, store: str = "", cause: str = "", free: int | None = None) -> None:
        super().__init__(message)
        self.store = store
        self.cause = cause
        self.free = free


class ContentNotFoundError(PairioError, LookupError):
    """No object with the requested SHA-1 is in the content store."""


class CorruptContentError(PairioError, OSError):
    """A stored object's bytes no longer match its SHA-1."""


class ContentFormatError(PairioError, ValueError):
    """A stored object is intact but not what it is read as (not JSON for load_object, not a pickle)."""


# --- talking to a server ---------------------------------------------------------


class RemoteError(PairioError):
    """Base of errors reported by, or about, a pairio server."""


class AuthenticationError(RemoteError):
    """The server rejected the request's signature (wrong channel or password)."""


class PermissionDeniedError(RemoteError):
    """The channel may not perform this operation on this collection."""


class RateLimitedError(RemoteError):
    """The server's rate limit for this channel and collection was exceeded."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerUnavailableError(RemoteError, OSError):
    """The server could not be reached, or kept failing (5xx) after retries."""


class BadRequestError(RemoteError, ValueError):
    """The server rejected the request as malformed (HTTP 400, 404, 413)."""


# --- trust -----------------------------------------------------------------------


class UntrustedContentError(PairioError):
    """Content no trusted writer vouches for would run code when loaded: it was loaded as data only,
    and it names a callable that is not data (``refused``, e.g. ``"posix.system"``).

    ``writer`` names who wrote it ("" if unsigned or unknown). Trust the writer
    (``pairio trust add``), allow the callable (``pairio.add_safe_globals``), or load with
    ``trust="all"`` to run it.
    """

    def __init__(self, message: str, refused: str = "", writer: str = "") -> None:
        super().__init__(message)
        self.refused = refused
        self.writer = writer
