"""Writers' identities: an ed25519 key pair per user, and the signed records of the pairs they write.

Not to be confused with :mod:`pairio.signing` (a channel's HMAC request signatures: the server
checks those; they prove the channel's password, which a whole lab shares). A writer's key proves
*who* wrote a pair, to every reader, whoever runs the server.

The key pair is made on first use in the user's identity directory (``<database_path>/identity``,
or the ``identity_dir`` config field: the private key 0600, never sent anywhere). The functions
here take that directory (``Config.identity_path``). A writer's public key is written
``ed25519:<base64>``; its readable name is ``user@host`` unless the ``writer_name`` config field
(``PAIRIO_WRITER_NAME``) says otherwise.

Every request that sets pairs on a server carries, for those pairs, a *signed record*: a small
JSON object stored as content on the server ({"collection", "pairs", "time", "writer", "name",
"signature"}), and for each key a pair under :func:`signature_key` pointing to it. A reader
checks the signature and that the record names this very key, value and collection: a record
forged, altered, replayed onto another key or value, or signed by a key the reader does not trust
vouches for nothing.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigurationError

KEY_DIR = "identity"
PRIVATE_KEY_FILE = "ed25519.pem"
PREFIX = "ed25519:"
RECORD_KIND = "pairio-signed-pairs-1"
_SIGNATURE_KEY_SALT = "pairio signature of "


@dataclasses.dataclass(frozen=True)
class Writer:
    """Who wrote a pair: a readable name (as the writer gave it: not proof) and a public key (proof)."""

    name: str
    public_key: str

    def __str__(self) -> str:
        return f"{self.name} ({self.public_key[:len(PREFIX) + 12]}...)"


class Identity:
    """This user's key pair; :meth:`sign` signs bytes."""

    def __init__(self, name: str, private_key: Any) -> None:
        from cryptography.hazmat.primitives import serialization

        self.name = name
        self._private_key = private_key
        raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public_key = PREFIX + base64.b64encode(raw).decode()

    @property
    def writer(self) -> Writer:
        return Writer(self.name, self.public_key)

    def sign(self, data: bytes) -> str:
        """The base64 ed25519 signature of ``data``."""
        return base64.b64encode(self._private_key.sign(data)).decode()


def default_name() -> str:
    """``user@host``."""
    import getpass
    import socket  # (not loaded by `import pairio`)

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return f"{user}@{socket.gethostname()}"


_lock = threading.Lock()
_identities: dict[tuple[str, str], Identity] = {}


def load_identity(directory: str | os.PathLike[str], name: str | None = None) -> Identity:
    """The identity kept in ``directory`` (the user's pairio directory), made there on first use
    (OSError if it cannot be written there)."""
    identity = _load_identity(directory, name, create=True)
    assert identity is not None
    return identity


def existing_identity(directory: str | os.PathLike[str], name: str | None = None) -> Identity | None:
    """The identity kept in ``directory``, or None if none was made there yet (nothing is written)."""
    return _load_identity(directory, name, create=False)


def _load_identity(directory: str | os.PathLike[str], name: str | None, create: bool) -> Identity | None:
    folder = Path(os.path.expanduser(os.fspath(directory)))
    name = name or default_name()
    cached = _identities.get((str(folder), name))
    if cached is not None:
        return cached
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = folder / PRIVATE_KEY_FILE
    with _lock:
        if not path.exists() and not create:
            return None
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            temp = folder / f".{PRIVATE_KEY_FILE}.{os.getpid()}.{threading.get_ident()}"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, pem)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temp, path)  # the first process to make one wins; the others read it
            except FileExistsError:
                pass
            finally:
                os.unlink(temp)
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError, OSError) as exc:
            raise ConfigurationError(f"the writer key {str(path)!r} cannot be read ({exc}); move it away to "
                                     "make a new one") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigurationError(f"the writer key {str(path)!r} is not an ed25519 key")
        identity = _identities[(str(folder), name)] = Identity(name, key)
    return identity


def check_public_key(text: object, what: str = "public key") -> str:
    """``text`` if it is an ``ed25519:<base64 of 32 bytes>`` public key, else ConfigurationError."""
    if isinstance(text, str) and text.startswith(PREFIX):
        try:
            if len(base64.b64decode(text[len(PREFIX):], validate=True)) == 32:
                return text
        except ValueError:
            pass
    raise ConfigurationError(f"{what} {text!r} is not a writer's public key (ed25519:<base64>, as "
                             "`pairio identity` prints it)")


def signature_key(key: str) -> str:
    """The key of the pair that points to the signed record of ``key``'s pair (same collection)."""
    return hashlib.sha1((_SIGNATURE_KEY_SALT + key).encode()).hexdigest()


def _signed_bytes(record: Mapping[str, Any]) -> bytes:
    fields = {k: v for k, v in record.items() if k != "signature"}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signed_record(identity: Identity, collection: str, pairs: Mapping[str, str]) -> bytes:
    """The signed record of ``pairs`` set in ``collection`` by ``identity``, now: JSON bytes."""
    record: dict[str, Any] = {"kind": RECORD_KIND, "collection": collection, "pairs": dict(pairs),
                              "time": round(time.time(), 3), "writer": identity.public_key, "name": identity.name}
    record["signature"] = identity.sign(_signed_bytes(record))
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


_verified: dict[tuple[bytes, str, str, str], Writer | None] = {}  # a cache: a verification costs ~0.2 ms
_VERIFIED_MAX = 10_000


def verify_record(data: bytes, collection: str, key: str, value: str) -> Writer | None:
    """The writer whose valid signature in the record ``data`` vouches that ``key`` was set to
    ``value`` in ``collection``; None if it is no valid record of exactly that."""
    cache_key = (hashlib.sha1(data).digest(), collection, key, value)
    if cache_key in _verified:
        return _verified[cache_key]
    writer = _verify_record(data, collection, key, value)
    with _lock:
        if len(_verified) >= _VERIFIED_MAX:
            _verified.clear()
        _verified[cache_key] = writer
    return writer


def _verify_record(data: bytes, collection: str, key: str, value: str) -> Writer | None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        record = json.loads(data)
        if (not isinstance(record, dict) or record.get("kind") != RECORD_KIND
                or record.get("collection") != collection or not isinstance(record.get("pairs"), dict)
                or record["pairs"].get(key) != value or not isinstance(record.get("name"), str)):
            return None
        public_key = check_public_key(record.get("writer"))
        signature = base64.b64decode(record["signature"], validate=True)
        Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key[len(PREFIX):])).verify(
            signature, _signed_bytes(record))
    except (ValueError, TypeError, KeyError, ConfigurationError, InvalidSignature):
        return None
    return Writer(record["name"][:200], public_key)


# --- whom a reader trusts --------------------------------------------------------------------

TRUST_FILE = "trusted_writers"  # in <database_path>/identity: managed by `pairio trust add/remove`
PROJECT_TRUST_FILE = ".pairio-trusted"  # committed in a project: found in the working directory or above


def read_trust_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """The writers a trust file lists, ``{public key: name}``: one per line, ``ed25519:... [name]``,
    ``#`` starts a comment. A line that is not a public key is a ConfigurationError naming it."""
    found: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return found
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"trust file {os.fspath(path)!r} cannot be read: {exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, _, name = line.partition(" ")
        found[check_public_key(key, f"{os.fspath(path)}:{number}:")] = name.strip()
    return found


def user_trust_file(directory: str | os.PathLike[str]) -> Path:
    """The user's own list of trusted writers, under their pairio directory."""
    return Path(os.path.expanduser(os.fspath(directory))) / TRUST_FILE


def project_trust_file(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The project's ``.pairio-trusted``: in ``start`` (the working directory) or the nearest parent."""
    folder = os.path.abspath(start if start is not None else os.getcwd())
    while True:  # (os.path, not pathlib: asked on every remote hit)
        candidate = os.path.join(folder, PROJECT_TRUST_FILE)
        if os.path.isfile(candidate):
            return Path(candidate)
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _signature(path: str | Path | None) -> tuple | None:
    try:
        st = os.stat(path) if path is not None else None
    except OSError:
        return None
    return (str(path), st.st_mtime_ns, st.st_size, st.st_ino) if st is not None else None


_trusted: dict[tuple, dict[str, str]] = {}  # by the files' signatures: read again when one changes


def trusted_writers(directory: str | os.PathLike[str], listed: tuple[str, ...] = (),
                    name: str | None = None) -> dict[str, str]:
    """Every writer a reader trusts, ``{public key: where it is listed}``: its own key, the
    ``trusted_writers`` config field (``listed``; PAIRIO_TRUSTED_WRITERS), its trust file
    (``pairio trust add``), and the project's ``.pairio-trusted``."""
    project = project_trust_file()
    user_file = os.path.join(os.path.expanduser(os.fspath(directory)), TRUST_FILE)
    cache_key = (os.fspath(directory), tuple(listed), name, _signature(user_file), _signature(project))
    found = _trusted.get(cache_key)
    if found is None:
        found = _trusted_writers(directory, listed, name, project)
        with _lock:
            if len(_trusted) > 100:
                _trusted.clear()
            _trusted[cache_key] = found
    return found


def _trusted_writers(directory: str | os.PathLike[str], listed: tuple[str, ...], name: str | None,
                     project: Path | None) -> dict[str, str]:
    me = existing_identity(directory, name)  # none yet: nothing of this user's was ever signed
    found = {me.public_key: "this user's own key"} if me is not None else {}
    for key in listed:
        found.setdefault(check_public_key(key, "config field 'trusted_writers':"), "config trusted_writers")
    for key in read_trust_file(user_trust_file(directory)):
        found.setdefault(key, "pairio trust add")
    if project is not None:
        for key in read_trust_file(project):
            found.setdefault(key, str(project))
    return found
