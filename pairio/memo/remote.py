"""``@pairio.cached`` with a server: pairs read and written along ``get_from``/``set_to``, and outages.

A cache outage never stops a pipeline. A server that is unreachable, fails (5xx),
rejects the channel (401) or refuses an operation (403, 404, 429) is, for a cached
call, a remote miss or a failed remote store: the call warns once, naming the server
and the cause, computes, and stores locally. After a failure the server is skipped
for :data:`SKIP_S` seconds (no call pays for retries against a server that is down;
no warning is repeated meanwhile), then tried again. An operation the channel may not
do on a collection (403, or 404: a collection it does not list) is remembered for the process: a read-only channel warns
once, then its results are kept locally without asking again. ``strict_remote=True``
raises the errors instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..config import Config
from ..content import content_store
from ..errors import (
    BadRequestError,
    ContentNotFoundError,
    CorruptContentError,
    PermissionDeniedError,
    RemoteError,
    UntrustedContentError,
)
from ..hashing import is_sha1_hex
from ..identity import Writer, signature_key, trusted_writers, verify_record
from ..kv import local_store, remote_store
from ..user_warnings import warn_user
from . import outbox
from .values import fetch_missing_file, keep_recent_bytes, load_result

if TYPE_CHECKING:  # the HTTP client (requests) is imported only where a server is used
    from ..content.remote import RemoteContent
    from ..kv.remote import RemoteStore

logger = logging.getLogger("pairio")

SKIP_S = 30.0


@dataclasses.dataclass
class _Health:
    skip_until: float = 0.0
    denied: set[tuple[str, str]] = dataclasses.field(default_factory=set)  # (operation, collection)


_CONSEQUENCES = {
    "get": "results are looked up locally only",
    "set": "results are computed here and not recorded on the server",
    "read": "results whose content is only on the server are computed here",
    "write": "results are computed here and not recorded on the server (it could not have their content)",
}
# Results up to this size come with their pair in one request (see RemoteStore.get_many_inline).
MAX_INLINE_BYTES = 64 << 10
_CONTENT = ""  # the "collection" of content rights, which are per channel

_lock = threading.Lock()
_health: dict[tuple, _Health] = {}


class ServerLink:
    """The client side of the server for one configuration of cached calls: its pairs, its content,
    its health (remembered between calls), and the local store it falls back to."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.store: RemoteStore = remote_store(cfg)  # type: ignore[assignment]
        self._content: RemoteContent | None = None
        self.inline: dict[str, bytes] = {}  # small objects that came with the pairs
        self.downloaded = 0
        self.uploaded = 0
        self.refused_object = False
        self.unasked = False  # content was needed from the server and it could not be asked (down)
        self.warned = False  # this object warned about the server already  # an object the server will never take (over its size limit)
        identity = (cfg.url, cfg.channel, cfg.database_path)
        with _lock:
            self._health = _health.setdefault(identity, _Health())

    def up(self) -> bool:
        """False while the server is skipped after a failure."""
        return time.monotonic() >= self._health.skip_until

    def may(self, operation: str, collection: str) -> bool:
        """True if the server is up and ``operation`` (get, set) was not refused on ``collection``."""
        return self.up() and (operation, collection) not in self._health.denied

    def failed(self, exc: RemoteError, operation: str, collection: str, doing: str) -> None:
        """A remote operation failed: raise with ``strict_remote``, else warn once and go on without it.

        ``operation`` is get or set (pairs of ``collection``), or read or write (content).
        """
        if self.cfg.strict_remote:
            raise exc
        if isinstance(exc, (PermissionDeniedError, BadRequestError)):
            with _lock:
                first = (operation, collection) not in self._health.denied
                self._health.denied.add((operation, collection))
            if first:
                warn(f"{doing}: {exc}; {_CONSEQUENCES[operation]} (said once)")
                self.warned = True
            return
        with _lock:
            first = self.up()
            self._health.skip_until = time.monotonic() + SKIP_S
        if first:
            warn(f"{doing}: {exc}; going on without the server for {SKIP_S:.0f} s: results are computed and "
                 "stored locally (strict_remote=True raises instead)")
            self.warned = True
        else:
            logger.debug("%s: %s", doing, exc)

    # --- pairs -------------------------------------------------------------------------

    def get_pairs(self, collection: str, keys: list[str], doing: str,
                  inline: bool = True) -> tuple[dict[str, str], bool]:
        """The stored pairs among ``keys`` along ``get_from``, and whether they came from the server
        (with ``inline``, small objects they name come in the same request)."""
        mode = self.cfg.get_from
        local = local_store(self.cfg)
        if mode == "local_then_remote":
            found = local.get_many(collection, keys)
            if keys[0] in found or not self.may("get", collection):
                if self.up():
                    outbox.kick(self.cfg)  # a local hit: results of an outage may go up meanwhile
                return found, False
            more = self._remote_get(collection, keys, doing, inline)
            if more:
                local.set_many(collection, more)
            return {**found, **more}, bool(more)
        found = self._remote_get(collection, keys, doing, inline) if self.may("get", collection) else {}
        if keys[0] in found:
            return found, True
        if mode == "remote_then_local":
            return local.get_many(collection, keys), False
        return found, False

    def _remote_get(self, collection: str, keys: list[str], doing: str, inline: bool = True) -> dict[str, str]:
        try:
            if not inline or not self.may("read", _CONTENT):
                return self.store.get_many(collection, keys)
            found, self.inline = self.store.get_many_inline(collection, keys, MAX_INLINE_BYTES)
        except RemoteError as exc:
            self.failed(exc, "get", collection, doing)
            return {}
        outbox.kick(self.cfg)  # it answers: results stored during an outage go up, in the background
        return found

    def vouch(self, collection: str, key: str, value: str, found: dict[str, str]) -> tuple[bool, Writer | None]:
        """Whether a writer this reader trusts signed that ``key`` is ``value`` in ``collection``,
        and who signed it (None: unsigned, or a record that is not valid for this very pair).

        Asked only of a result that is more than data (see :meth:`load`): the pair naming its signed
        record is looked up then (here, else on the server, its record inline), and kept here."""
        store = content_store(self.cfg)
        if not store.is_foreign(value) and store.has(value):
            return True, None  # made here: this user's own content, whoever set the pair
        record = found.get(signature_key(key)) or self._signature_pair(collection, key)
        if not record or not is_sha1_hex(record):
            return False, None
        data = self.inline.get(record)
        if data is None or hashlib.sha1(data).hexdigest() != record:
            data = self._record_bytes(record)
            if data is None:
                return False, None
        else:
            self._keep(record, data)
        writer = verify_record(data, collection, key, value)
        if writer is None:
            return False, None
        trusted = trusted_writers(self.cfg.identity_path, self.cfg.trusted_writers, self.cfg.writer_name)
        return writer.public_key in trusted, writer

    def _signature_pair(self, collection: str, key: str) -> str | None:
        """The value of the pair naming the signed record of ``key``'s pair: here, else on the server
        (then kept here, for `pairio show`)."""
        name = signature_key(key)
        local = local_store(self.cfg)
        record = local.get_many(collection, [name]).get(name)
        if record is not None or not self.may("get", collection):
            return record
        try:
            found, inline = self.store.get_many_inline(collection, [name], MAX_INLINE_BYTES)
        except RemoteError as exc:
            logger.debug("the signature of key %s cannot be looked up: %s", key, exc)
            return None
        self.inline.update(inline)
        record = found.get(name)
        if record is not None:
            try:
                local.set_many(collection, {name: record})
            except OSError as exc:  # an unwritable store: only not kept
                logger.debug("the signature pair of key %s is not kept: %s", key, exc)
        return record

    def _keep(self, sha1: str, data: bytes) -> None:
        """Keep a signed record that came inline (verified against ``sha1``): `pairio show` reads it."""
        store = content_store(self.cfg)
        try:
            if not store.has(sha1):
                store.mark_foreign(sha1)
                with store.writer(durable=False, inline=True) as w:
                    w.write(data)
        except OSError as exc:  # StoreUnavailableError included: the record is only not kept
            logger.debug("the signed record %s is not kept: %s", sha1, exc)

    def _record_bytes(self, sha1: str) -> bytes | None:
        store = content_store(self.cfg)
        try:
            if not store.has(sha1) and not self.fetch(sha1, "fetching the signed record of a pair"):
                return None
            with store.open(sha1) as f:
                return f.read(1 << 20)
        except (ContentNotFoundError, CorruptContentError):
            return None

    def record(self, collection: str, pairs: dict[str, str | None], sha1s: list[str], doing: str,
               records: dict[str, dict[str, Any]] | None = None) -> bool:
        """Store a result's ``pairs`` along ``set_to``, uploading its objects ``sha1s`` (files first)
        before the server gets the pairs: a key on the server never points to content it lacks.
        True if the server has them; if it should and cannot, they are stored locally instead (and
        with ``records``, key -> its record for the server, in the outbox).
        """
        shared = self.cfg.set_to != "local" and self.may("set", collection) and self.upload(sha1s, doing)
        recorded = self.set_pairs(collection, pairs, doing, remote=shared, records=records)
        if not recorded and self.cfg.set_to != "local" and not self.refused_object:
            # Stored locally only: remembered, and uploaded once the server answers again.
            outbox.add(self.cfg, collection, pairs, sha1s, records)
        return recorded

    def set_pairs(self, collection: str, pairs: dict[str, str | None], doing: str, remote: bool = True,
                  records: dict[str, dict[str, Any]] | None = None) -> bool:
        """Store ``pairs`` along ``set_to`` (not on the server unless ``remote``, and there with
        ``records``: key -> its record); True if the server has them. If the server should have them
        and cannot, they are stored locally instead.
        """
        local = local_store(self.cfg)
        if self.cfg.set_to != "remote":
            local.set_many(collection, pairs)
        if self.cfg.set_to == "local":
            return False
        if remote and self.may("set", collection):
            try:
                if records:
                    self.store.set_many(collection, pairs, records=records)
                else:
                    self.store.set_many(collection, pairs)
                outbox.kick(self.cfg)
                return True
            except RemoteError as exc:
                self.failed(exc, "set", collection, doing)
        if self.cfg.set_to == "remote":
            local.set_many(collection, pairs)
        return False


    # --- content -----------------------------------------------------------------------

    @property
    def content(self) -> RemoteContent:
        if self._content is None:
            from ..content.remote import remote_content

            self._content = remote_content(self.cfg)
        return self._content

    def fetch(self, sha1: str, doing: str) -> bool:
        """Bring the object ``sha1`` into the local content store (verified); False if the server
        does not have it or cannot give it (said once)."""
        data = self.inline.pop(sha1, None)
        store = content_store(self.cfg)
        if data is not None and hashlib.sha1(data).hexdigest() == sha1:
            # Not fsync'd, as results are not (see values.store_result): every load verifies.
            # A small one is a row, as a result computed here would be.
            store.mark_foreign(sha1)  # (asked for only when it is not here: never this user's own)
            with store.writer(durable=False, inline=True) as w:
                w.write(data)
            keep_recent_bytes(sha1, data)  # verified: loading it need not read it back
            self.downloaded += len(data)
            return True
        if not self.may("read", _CONTENT):
            self.unasked = not self.up()
            return False
        try:
            path = self.content.download(sha1)
        except ContentNotFoundError:
            return False
        except CorruptContentError as exc:  # the bytes that came were not the object: nothing is kept
            warn(f"{doing}: {exc}")
            return False
        except RemoteError as exc:
            self.failed(exc, "read", _CONTENT, doing)
            self.unasked = not self.up()
            return False
        self.downloaded += path.stat().st_size
        return True

    def upload(self, sha1s: list[str], doing: str) -> bool:
        """Upload those of the local objects ``sha1s`` the server lacks, in their order; True if the
        server has them all now (said once if it cannot have them)."""
        if not self.may("write", _CONTENT):
            return False
        try:
            for sha1 in self.content.missing(sha1s):
                self.uploaded += self.content.upload(sha1)
        except BadRequestError as exc:  # this object (over the channel's size limit), not the channel
            if self.cfg.strict_remote:
                raise
            warn(f"{doing}: {exc}; the result is kept locally only")
            self.refused_object = True
            return False
        except RemoteError as exc:
            self.failed(exc, "write", _CONTENT, doing)
            return False
        return True

    def load(self, sha1: str, doing: str, restore_paths: bool = False, mmap: bool = False,
             vouch: Callable[[], tuple[bool, Writer | None]] | None = None) -> Any:
        """The result stored as object ``sha1``, its content (and its files') fetched from the server
        where the local store lacks it. ContentNotFoundError if it is on no reachable store.

        Unless made here, it is loaded as data only; only if it is more than data is ``vouch`` asked
        (see :meth:`vouch`) whether a trusted writer signed its pair: then it is loaded as pickle
        loads it, else UntrustedContentError names the writer. (Plain results, most of them, need no
        signature check. With ``restore_paths`` it is asked first: only a trusted writer's result
        writes files where it says.)"""
        store = content_store(self.cfg)

        def fetch(h: str) -> None:
            if not self.fetch(h, doing):
                if self.unasked:
                    raise ContentNotFoundError(f"object {h} is not here, and the server {self.store._shown_url} "
                                               "cannot be reached to fetch it")
                raise ContentNotFoundError(f"object {h} is neither here nor on the server")

        if not store.has(sha1):
            fetch(sha1)
        asked = restore_paths and vouch is not None
        trusted, writer = vouch() if asked and vouch is not None else (False, None)
        token = fetch_missing_file.set(fetch)
        try:
            try:
                value = load_result(store, sha1, restore_paths=restore_paths, mmap=mmap, cfg=self.cfg,
                                    trusted=trusted)
            except UntrustedContentError as exc:
                if not asked and vouch is not None:
                    trusted, writer = vouch()
                if not trusted:
                    raise UntrustedContentError(str(exc), refused=exc.refused,
                                                writer=str(writer) if writer else "") from None
                value = load_result(store, sha1, restore_paths=restore_paths, mmap=mmap, cfg=self.cfg,
                                    trusted=True)
        finally:
            fetch_missing_file.reset(token)
        if trusted:
            store.mark_own(sha1)  # vouched for by a trusted writer: its later local hits are trusted too
        return value


def warn(message: str) -> None:
    """One message for one event: a RuntimeWarning (``logging.captureWarnings`` routes it to logs),
    attributed to the user's line."""
    warn_user(message)


def forget_health() -> None:
    """Forget every server's failures: the next call tries each server again."""
    with _lock:
        _health.clear()
