"""``@pairio.cached``: a pipeline step computed once per distinct code, arguments and dependency versions.

A call derives its key (:mod:`.key`), looks it up in the key/value store (the
configured ``get_from``), and on a hit loads the result from the content store.
On a miss it takes the key's single-flight lock (:mod:`.flight`), computes,
pickles the result into the content store (:mod:`.values`), and stores
``key -> SHA-1 of the result`` (and the seconds it took, under a second key)
through the configured ``set_to``.

The ``cache`` config field chooses the mode: ``on``; ``off`` (plain calls);
``readonly`` (hits are used, misses computed but not stored); ``refresh``
(always compute, and overwrite).
"""

from __future__ import annotations

import builtins
import functools
import inspect
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, overload

from ..config import Config, get_config
from ..errors import (
    ContentNotFoundError,
    CorruptContentError,
    StoreNotWritableError,
    StoreUnavailableError,
    UnstorableResultError,
    UntrustedContentError,
)
from ..hashing import is_sha1_hex
from ..result_keys import (
    argument_key,
    asked_keys,
    earlier_key,
    read_sides,
    seconds_key,
    side_keys,
    side_value,
    types_key,
)
from ..user_warnings import warn_user

if TYPE_CHECKING:
    from .. import key_value
    from ..content import content_store, directory_lock
    from ..content.trust import warn_once
    from ..kv import EmbeddedStore, local_store
    from ..lifecycle import calls, counts, provenance, queries, records
    from ..lifecycle.records import Entry
    from . import call_stats, flight
    from .arguments import hash_value
    from .key_parts import finish_key_parts, key_parts, taken_now
    from .lease import ServerLease
    from .refs import Ref, digest_pairs, has_refs, parse_argument, remember_frozen, resolve, type_names
    from .values import load_result, not_stored_message, store_result_described


def _import_for_calls() -> None:
    """Import what a call needs of the layers below (content, lifecycle, the stores) and of this
    package's hit and miss machinery: at the first call of a cached function, not when one is
    decorated (``import pairio; @pairio.cached def f`` loads none of them). Until then each of
    these names is a :class:`_ForCalls` standing for it; then it is the name itself, so the calls
    after the first pay nothing for this."""
    # (each bound in the globals below, through locals())
    from .. import key_value  # noqa: F401
    from ..content import content_store, directory_lock  # noqa: F401
    from ..content.trust import warn_once  # noqa: F401
    from ..kv import EmbeddedStore, local_store  # noqa: F401
    from ..lifecycle import calls, counts, provenance, queries, records  # noqa: F401
    from . import call_stats, flight  # noqa: F401
    from .arguments import hash_value  # noqa: F401
    from .key_parts import finish_key_parts, key_parts, taken_now  # noqa: F401
    from .refs import Ref, digest_pairs, has_refs, parse_argument, remember_frozen, resolve, type_names  # noqa: F401
    from .values import load_result, not_stored_message, store_result_described  # noqa: F401

    imported = locals()
    module = globals()
    for name in _FOR_CALLS:
        if type(module[name]) is _ForCalls:  # (a name a test has replaced stays replaced)
            module[name] = imported[name]


class _ForCalls:
    """Stands for a name :func:`_import_for_calls` imports, until its first use (a call, an
    attribute, an ``isinstance``), which imports them all."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def _imported(self) -> Any:
        _import_for_calls()
        return globals()[self._name]

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._imported(), attribute)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._imported()(*args, **kwargs)

    def __instancecheck__(self, instance: Any) -> bool:
        return isinstance(instance, self._imported())

    def __repr__(self) -> str:
        return f"<{self._name}, imported at the first call of a cached function>"


_FOR_CALLS = ("key_value", "content_store", "directory_lock", "warn_once", "EmbeddedStore", "local_store", "calls",
              "counts", "provenance", "queries", "records", "call_stats", "flight", "hash_value", "key_parts",
              "finish_key_parts", "taken_now", "Ref",
              "digest_pairs", "has_refs", "parse_argument", "remember_frozen", "resolve", "type_names",
              "load_result", "not_stored_message", "store_result_described")
globals().update((name, _ForCalls(name)) for name in _FOR_CALLS)

logger = logging.getLogger("pairio")

_MISSING = object()


class CachedFunction:
    """A function whose results are cached by code, arguments and dependency versions.

    Call it as the function. ``key``, ``explain``, ``is_cached``, ``forget`` and
    ``recompute`` take the same arguments as the function.
    """

    def __init__(self, func: Callable[..., Any], *, version: str | None = None, ignore: Iterable[str] = (),
                 dependencies: Iterable[str] = (), strict: bool = False, collection: str | None = None,
                 restore_paths: bool = False, mmap: bool | None = None, verbose: bool | None = None) -> None:
        if not callable(func):
            raise TypeError(f"@pairio.cached needs a function, got {type(func).__name__}")
        get_config()  # a bad PAIRIO_* variable is refused here, where the step is defined, not at its first call
        if isinstance(ignore, str):
            ignore = (ignore,)
        if isinstance(dependencies, str):
            dependencies = (dependencies,)
        functools.update_wrapper(self, func)
        self.__wrapped__ = func
        if mmap is not None and not isinstance(mmap, bool):
            raise TypeError(f"@pairio.cached(mmap=...) takes True, False or None (the config's), got {mmap!r}")
        if verbose is not None and not isinstance(verbose, bool):
            raise TypeError(f"@pairio.cached(verbose=...) takes True, False or None (the config's), got {verbose!r}")
        self._options = dict(version=version, ignore=tuple(ignore), dependencies=tuple(dependencies),
                             strict=strict, collection=collection, restore_paths=restore_paths, mmap=mmap,
                             verbose=verbose)
        self.verbose = verbose
        # Key derivation (ast, dis, tokenize, source digests) loads when the first function is decorated,
        # not with ``import pairio``.
        from .code import qualified_name
        from .key import KeyMaker

        self.name = qualified_name(func)
        _register_with_multiprocessing()
        self.collection = collection
        self.restore_paths = bool(restore_paths)
        self.mmap = mmap
        self._keys = KeyMaker(func, version=version, ignore=ignore, dependencies=dependencies, strict=strict)
        self._is_async = inspect.iscoroutinefunction(func)
        if self._is_async:
            _mark_coroutine_function(self)
        # A method (defined in a class body, first parameter self): self counts only through
        # __pairio_hash__(); however the method is reached (obj.m(x) or C.m(obj, x)).
        parts = getattr(func, "__qualname__", "").split(".")
        self._method = (len(parts) >= 2 and parts[-2] != "<locals>" and self._keys.self_name == "self")
        self._places: _Places | None = None
        self._warned_too_large = False
        self._quick = False  # whether its last computation in this process took under _QUICK_S

    def __repr__(self) -> str:
        return f"<pairio.cached {self.name}>"

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self if instance is None else BoundCachedMethod(self, instance)

    def __reduce__(self) -> str | tuple:
        # As cloudpickle sends functions: by module and name where a worker can import them,
        # else by value (the undecorated function, which only cloudpickle can send by value).
        # The default, pickling the state, would send __wrapped__ by that same name, which
        # finds this object instead: a PicklingError.
        if self.__module__ != "__main__" and _findable(self):
            return self.__qualname__
        if _pickled_by_multiprocessing():
            return _reduce_for_multiprocessing(self)
        return _rebuild, (self.__wrapped__, self._options)

    # --- calling --------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._is_async:
            return self._call_async(args, kwargs, force=False)
        cfg = get_config()
        if cfg.cache == "off":
            return self.__wrapped__(*args, **kwargs)
        key = self._keys.key(args, kwargs, method=self._method)
        if cfg.cache != "refresh":
            found = self._lookup(cfg, key)
            if found is not _MISSING:
                return found
        return self._compute(cfg, key, args, kwargs)

    def recompute(self, *args: Any, **kwargs: Any) -> Any:
        """Compute the call even if it is cached, and store the result over the old one."""
        if self._is_async:
            return self._call_async(args, kwargs, force=True)
        cfg = get_config()
        return self._compute(cfg.replace(cache="refresh"), self._key(args, kwargs), args, kwargs)

    def _compute(self, cfg: Config, key: str, args: tuple, kwargs: dict) -> Any:
        if cfg.cache == "readonly":
            return self._run_and_store(cfg, key, args, kwargs, store=False)
        # A step whose last computation here was quick (under _QUICK_S) is not listed among the
        # computations in flight at once (it is usually over before anyone could look; flight lists
        # it if it holds its lock past 10 ms), and, unless it waited for
        # another holder, its pair is not looked for again under the lock: that look finds a result
        # only if another computer stored it in the instants between our lookup and our claim, and
        # costs more than computing such a step twice in that rare case.
        quick = self._quick
        with flight.claim(cfg.database_dir, key, self.name, cfg.collection, listed=not quick) as waited:
            # Look again even if no one was waited for: another computer may have stored the
            # result and let go between our lookup and our claim (a bare read of the pair says
            # whether one is there now).
            if cfg.cache != "refresh" and (waited or not (quick or self._still_missing(cfg, key))):
                found = self._lookup(cfg, key, waited=waited, quiet=not waited)
                if found is not _MISSING:
                    return found
            lease = self._lease(cfg, key)
            if lease is None:
                return self._run_and_store(cfg, key, args, kwargs, store=True)
            from .lease import Outcome

            try:
                if lease.wait() is not Outcome.HELD or lease.waited:
                    found = self._lookup(cfg, key, waited=True, quiet=True)
                    if found is not _MISSING:
                        return found
                return self._run_and_store(cfg, key, args, kwargs, store=True)
            finally:
                lease.release()

    def _run_and_store(self, cfg: Config, key: str, args: tuple, kwargs: dict, store: bool) -> Any:
        started = time.perf_counter()
        given = (args, kwargs)
        if has_refs(args, kwargs):  # keyed without their values: loaded now, each once
            args, kwargs = resolve(args, kwargs)
        return self._computed(cfg, key, self.__wrapped__(*args, **kwargs), started, store, *given)

    def _computed(self, cfg: Config, key: str, result: Any, started: float, store: bool,
                  args: tuple, kwargs: dict) -> Any:
        """Store (unless ``store`` is False) and count a result computed since ``started``."""
        seconds = time.perf_counter() - started
        self._quick = seconds < _QUICK_S
        reason, uploaded = "", 0
        if store:
            try:
                reason, uploaded = self._store(cfg, key, result, seconds, args, kwargs)
            except UnstorableResultError as exc:
                if self._options["strict"]:
                    raise
                # Nothing was stored: the value is the caller's all the same (strict=True raises instead).
                _warn(f"{self.name}: {exc}; returned, not cached (strict=True raises instead)")
                reason = "not stored: the result cannot be pickled"
            except StoreUnavailableError as exc:
                # Computed is computed: a store that cannot take it (full, read-only, not ours)
                # costs the cache, never the result.
                if cfg.strict_store:
                    raise
                _warn(not_stored_message(self.name, key, result, exc))
                reason = "not stored"
        if cfg.url and cfg.get_from == "local":
            # A server that was not asked is the first thing to suspect when a colleague's result misses.
            reason = "; ".join(filter(None, [reason, "only the local store was searched (a server is configured, "
                                                     "but get_from is 'local')"]))
        call_stats.record(self.name, key, False, seconds, cfg.database_dir, verbose=self._shows_line(cfg),
                          reason=reason, uploaded=uploaded, counted=(local_store(cfg), self._collection(cfg)))
        if _worker is not False and in_worker():
            _write_now()
        return result

    async def _call_async(self, args: tuple, kwargs: dict, force: bool) -> Any:
        cfg = get_config()
        if force:
            cfg = cfg.replace(cache="refresh")
        if cfg.cache == "off":
            return await self.__wrapped__(*args, **kwargs)
        key = self._key(args, kwargs)
        if cfg.cache != "refresh":
            found = self._lookup(cfg, key)
            if found is not _MISSING:
                return found
        if cfg.cache == "readonly":
            return await self._run_and_store_async(cfg, key, args, kwargs, store=False)
        async with flight.claim_async(cfg.database_dir, key, self.name, cfg.collection) as waited:
            if cfg.cache != "refresh":
                found = self._lookup(cfg, key, waited=waited, quiet=not waited)
                if found is not _MISSING:
                    return found
            lease = self._lease(cfg, key)
            if lease is None:
                return await self._run_and_store_async(cfg, key, args, kwargs, store=True)
            import asyncio  # loaded already (this runs in an event loop); not at `import pairio`

            from .lease import Outcome

            try:
                # Waiting for another machine polls the server: in a thread, not on the event loop.
                if await asyncio.to_thread(lease.wait) is not Outcome.HELD or lease.waited:
                    found = self._lookup(cfg, key, waited=True, quiet=True)
                    if found is not _MISSING:
                        return found
                return await self._run_and_store_async(cfg, key, args, kwargs, store=True)
            finally:
                await asyncio.to_thread(lease.release)

    async def _run_and_store_async(self, cfg: Config, key: str, args: tuple, kwargs: dict, store: bool) -> Any:
        started = time.perf_counter()
        given = (args, kwargs)
        if has_refs(args, kwargs):
            args, kwargs = resolve(args, kwargs)
        return self._computed(cfg, key, await self.__wrapped__(*args, **kwargs), started, store, *given)

    # --- the stores -----------------------------------------------------------------------

    def _key(self, args: tuple, kwargs: dict) -> str:
        return self._keys.key(args, kwargs, method=self._method)

    def _collection(self, cfg: Config) -> str:
        return self.collection or cfg.collection

    def _lookup(self, cfg: Config, key: str, waited: bool = False, quiet: bool = False) -> Any:
        """The stored result of ``key``, or ``_MISSING``. A result whose content is gone or corrupt is
        a miss, with a warning unless ``quiet`` (a second look, after the first one warned)."""
        started = time.perf_counter()
        places = self._places
        if places is None or places.cfg is not cfg:
            places = self._places = _Places(cfg)
        collection = self.collection or cfg.collection
        server = None
        mmap = cfg.mmap if self.mmap is None else self.mmap
        digest_text = None
        if places.local:
            # The store itself (the key is 40-hex, made here: pa.get's checks are spared), and the
            # result's row if it is a small one, in one statement. The seconds it took to compute
            # are read later, with those of other hits, when the counts are.
            try:
                sha1, row = places.content.small.get_with_pair(places.kv, collection, key)
            except StoreNotWritableError:
                return _MISSING  # no database, and none can be made there: nothing is stored
            from_server = False
        else:
            from . import remote  # (imported where a server is used)

            server = remote.ServerLink(cfg)
            # With mmap, the result's argument digest too (its arrays then need no hashing as arguments).
            keys = [key, *asked_keys(seconds_key, key), *(asked_keys(argument_key, key) if mmap else ())]
            found, from_server = server.get_pairs(collection, keys, f"{self.name} {key[:8]}: looking up")
            sha1, seconds_text, row = found.get(key), side_value(found, seconds_key, key), None
            digest_text = side_value(found, argument_key, key) if mmap else None
        if sha1 is None:
            return _MISSING
        # (A value that names a row is a SHA-1: rows are kept by theirs.)
        if row is None and not is_sha1_hex(sha1):
            if not quiet:
                _warn(f"{self.name}: the value stored under key {key} is {sha1!r}, not a SHA-1; recomputing")
            return _MISSING
        try:
            if server is None:
                result = load_result(places.content, sha1, restore_paths=self.restore_paths, mmap=mmap, row=row,
                                     cfg=cfg)
            else:
                result = server.load(sha1, f"{self.name} {key[:8]}: fetching the result", self.restore_paths,
                                     mmap=mmap, vouch=lambda: server.vouch(collection, key, sha1, found))
        except ContentNotFoundError as exc:
            if not quiet:
                if server is None:
                    _warn(f"{self.name}: key {key[:8]} is stored, but its content is missing here ({exc}); "
                          "recomputing")
                elif server.unasked:
                    # The server is down: the content may well be there. Said once, with the outage.
                    if not server.warned:
                        _warn(f"{self.name}: key {key[:8]} is stored, but its content is not here and the "
                              f"server could not be asked for it ({exc}); computing it here")
                else:
                    where = "the server" if from_server else "the local store"
                    _warn(f"{self.name}: {where} knows key {key[:8]}, but its content is on no reachable "
                          f"store ({exc}); computing it here")
            return _MISSING
        except CorruptContentError as exc:
            if not quiet:
                _warn(f"{self.name}: cached result of key {key[:8]} is corrupt ({exc}); recomputing")
            return _MISSING
        except UntrustedContentError as exc:
            writer = exc.writer or "nobody who signed it (unsigned)"
            warn_once(f"untrusted {self.name} {exc.writer} {exc.refused}",
                      f"{self.name}: the cached result of key {key[:8]} was written by {writer}, not trusted here, "
                      f"and would call {exc.refused}: it is not run, and the result is computed here instead "
                      "(trust the writer, pairio.add_safe_globals, or trust='all' to run it; said once)")
            return _MISSING
        if mmap and _nbytes(result) >= _THREADED_DIGEST_BYTES:
            # A read-only memory map of a verified object: its stored argument digest is its hash.
            if server is None:
                digest_text = read_sides(lambda asked: places.kv.get_many(collection, asked), argument_key,
                                         [key]).get(key)
            digest = parse_argument(digest_text)[1]
            if digest is not None:
                remember_frozen(result, digest)
        if server is None:
            call_stats.record(self.name, key, True, 0.0, places.database_dir, waited=waited,
                              verbose=self._shows_line(cfg), loaded=time.perf_counter() - started, seconds_at=(places.kv, collection, key))
        else:
            try:
                seconds = float(seconds_text or 0.0)
            except ValueError:
                seconds = 0.0
            downloaded = server.downloaded
            call_stats.record(self.name, key, True, seconds, places.database_dir, waited=waited,
                              verbose=self._shows_line(cfg), loaded=time.perf_counter() - started,
                              remote=from_server or downloaded > 0, downloaded=downloaded,
                              counted=(places.kv, collection))
        calls.count_hit(cfg, collection, key, result, sha1, places.kv)
        if _worker is not False and in_worker():
            _write_now()
        return result

    def _still_missing(self, cfg: Config, key: str) -> bool:
        """True if the pair of ``key`` is absent from the local store of ``cfg``, which the lookup
        just now searched alone: read again bare (a full lookup also costs its object's row, the
        remote, the warnings), and False whenever that cannot be told (then the full lookup runs)."""
        places = self._places
        if places is None or places.cfg is not cfg or not places.local:
            return False
        try:
            return places.kv.get(self.collection or cfg.collection, key) is None
        except Exception:  # noqa: BLE001 (any failure: the full lookup runs, and says what it is)
            return False

    def _shows_line(self, cfg: Config) -> bool:
        """Whether this call prints its short hit/miss line: ``verbose=`` of the decorator, else the
        config's, else (neither set) only in IPython and Jupyter, where people watch each call (not
        in the workers a kernel forks: their stderr is the kernel's terminal)."""
        verbose = cfg.verbose if self.verbose is None else self.verbose
        if verbose is None:
            return in_ipython() and not in_worker()
        return verbose

    def _lease(self, cfg: Config, key: str) -> ServerLease | None:
        """The server's lease for computing ``key``, when results are shared through a server; the
        directory store's (:mod:`.dir_lease`), when they are shared through a directory."""
        if cfg.cache != "on":
            return None
        if cfg.set_to == "local":
            store = local_store(cfg)
            if isinstance(store, EmbeddedStore):  # (not shared across hosts: the file lock is enough)
                return None
            from .dir_lease import DirectoryLease

            return DirectoryLease(cfg, store, self._collection(cfg), key, self.name)  # type: ignore[return-value]
        from . import remote
        from .lease import ServerLease

        return ServerLease(cfg, remote.ServerLink(cfg), self._collection(cfg), key, self.name)

    def _store(self, cfg: Config, key: str, result: Any, seconds: float, args: tuple,
               kwargs: dict) -> tuple[str, int]:
        """Store the result and its pair, then its record; returns why the call missed (only when
        the log line is shown, else "") and the bytes uploaded to the server."""
        store = content_store(cfg)
        collection = self._collection(cfg)
        uploaded = 0
        want_reason = self._shows_line(cfg) or logger.isEnabledFor(logging.INFO)
        # Held from the content to its pair, so gc and eviction never take content whose pair is coming.
        with directory_lock.writing(store.directory):
            # The result's hash as an argument (for its Refs), taken while it is pickled: the hash
            # of a large buffer and the writes of its pickle both run outside the GIL.
            digest = _ArgumentDigest(result)
            stored = store_result_described(store, result, f"result of {self.name}")
            if cfg.max_size is not None and stored.size > cfg.max_size:
                return self._too_large(cfg, key, stored), 0
            arg_digest, types = digest.result()
            _last_stored.value = (key, stored.sha1, stored.size, arg_digest, types)
            pairs = {key: stored.sha1, seconds_key(key): f"{seconds:.6g}",
                     **digest_pairs(key, stored.size, arg_digest, types)}
            made = None
            if cfg.set_to == "local":
                # The pair and (when the store has a max_size) its record in one transaction.
                reason, total = self._write_miss(cfg, collection, key, stored, seconds, args, kwargs,
                                                 want_reason, pairs)
            else:
                # The result is computed and in the local content store: whatever the server does, it is
                # handed back (remote.ServerLink stores the pair locally if the server cannot).
                from . import remote

                # Its record goes with its pair, in the same request.
                made = calls.miss_record(cfg, self._missed_call(cfg, collection, key, args, kwargs), stored.sha1,
                                         list(stored.files), stored.size, seconds, want_reason)
                shared = None if made[1] is None else {key: calls.shared_record(made[1])}
                server = remote.ServerLink(cfg)
                server.record(collection, pairs, [*stored.files, stored.sha1],
                              f"{self.name} {key[:8]}: recording the result", records=shared)
                uploaded = server.uploaded
        if cfg.set_to != "local":
            reason, total = self._write_miss(cfg, collection, key, stored, seconds, args, kwargs, want_reason, {},
                                             made)
        calls.after_miss(cfg, collection, key, result, stored.sha1, total)
        return reason, uploaded

    def _write_miss(self, cfg: Config, collection: str, key: str, stored: Any, seconds: float, args: tuple,
                    kwargs: dict, want_reason: bool, pairs: dict[str, str],
                    made: tuple[str, Entry | None] | None = None) -> tuple[str, float | None]:
        """Write ``pairs`` (the result's pair and its side pairs, in the local store) and the miss's
        record: in one transaction when the store has a ``max_size`` (eviction knows the new total at
        once), else the record soon after, by lifecycle's background writer. Returns why the call
        missed if ``want_reason`` (else "") and the recorded total size (None if not known yet). A
        record that cannot be made is logged; a failure to write the pairs raises. ``made``: the
        reason and record, if made already (sent to the server with the pairs)."""
        store = local_store(cfg)
        if made is None and not want_reason and cfg.max_size is None and not self._method:
            keys = self._keys
            if keys.of_types(args, kwargs, _IMMUTABLE_ARGUMENTS):
                # Nothing of such a call can change: its record is made (and the call bound, with
                # the defaults of now) by the background writer.
                if pairs:
                    store.set_many(collection, pairs)
                now, bind = taken_now(keys, False, key, args, kwargs), keys.binder(args, kwargs)

                def missed_call() -> calls.MissedCall:
                    bound = bind()
                    return calls.MissedCall(self.name, collection, key, finish_key_parts(keys, *now, bound), bound)

                calls.miss_record_soon(cfg, missed_call, stored.sha1, list(stored.files), stored.size, seconds)
                return "", None
        if made is None:
            call = self._missed_call(cfg, collection, key, args, kwargs)
            made = calls.miss_record(cfg, call, stored.sha1, list(stored.files), stored.size, seconds, want_reason)
        reason, entry = made
        if entry is not None and calls.records_with_pairs(cfg, store):
            try:
                with store.transaction(immediate=True) as connection:
                    if pairs:
                        store.write_pairs(connection, collection, pairs)
                    return reason, calls.write_record(store, entry, connection)
            except StoreUnavailableError as exc:
                calls.log_unrecorded(self.name, key, exc)
                entry = None
        if pairs:
            store.set_many(collection, pairs)
        if entry is not None:
            calls.write_record(store, entry)
        return reason, None

    def _missed_call(self, cfg: Config, collection: str, key: str, args: tuple, kwargs: dict) -> calls.MissedCall:
        """The call of key ``key`` as lifecycle records it: plain data, with what tells whether an
        argument handed out by a cached call is still that call's result."""
        parts, bound = key_parts(self._keys, self._method, key, args, kwargs)
        keys = self._keys
        # A method's self is hashed for the key with its class's code: not as a plain value.
        known = {name: digest for name, digest in parts.arguments.items()
                 if not (self._method and name == keys.self_name)}
        checker = provenance.Checker(lambda sha1: self.stored_result(cfg, sha1), keys.value_hash, known)
        return calls.MissedCall(self.name, collection, key, parts, bound, checker)

    def _too_large(self, cfg: Config, key: str, stored: Any) -> str:
        """A result larger than ``max_size``: it could never be kept (stored, it would be evicted at
        once, on every run). Its object goes unless an entry refers to it; warned once per function."""
        from ..units import format_size

        if not records.find(local_store(cfg), stored.sha1):
            content_store(cfg).remove(stored.sha1)
        if not self._warned_too_large:
            self._warned_too_large = True
            _warn(f"{self.name}: the result of key {key[:8]} takes {format_size(stored.size)}, more than max_size "
                  f"({format_size(cfg.max_size or 0)}): it can never be kept, so it is returned and not stored "
                  "(raise max_size to cache it; said once)")
        return "not stored: larger than max_size"

    def stored_result(self, cfg: Config, sha1: str) -> Any:
        """The result stored as object ``sha1`` in the content store of ``cfg`` (for lineage: is a
        value handed out still what was stored?)."""
        return load_result(content_store(cfg), sha1)

    # --- Refs -----------------------------------------------------------------------------

    def ref(self, *args: Any, **kwargs: Any) -> Ref:
        """The :class:`pairio.Ref` of this call's result, without its value: a hit (local or on the
        server) costs the key lookup and moves no content; a miss computes and stores the result.
        Refs among the arguments are keyed without their values (loaded only on a miss)."""
        cfg = get_config()
        if cfg.cache in ("off", "readonly"):
            raise UnstorableResultError(f"{self.name}.ref(): a Ref needs a stored result, and the cache is "
                                        f"{cfg.cache!r} (results are not stored)")
        key = self._key(args, kwargs)
        call = (args, kwargs)
        if cfg.cache != "refresh":
            found = self._lookup_ref(cfg, key, call)
            if found is not None:
                return found
        _last_stored.value = None
        if self._is_async:
            import asyncio

            asyncio.run(self._call_async(args, kwargs, force=cfg.cache == "refresh"))
        else:
            self._compute(cfg, key, args, kwargs)
        last = getattr(_last_stored, "value", None)
        if last is not None and last[0] == key:
            _, sha1, size, digest, types = last
            return Ref(sha1, size, self.name, self._collection(cfg), key, digest, type_names(types), call, self)
        found = self._lookup_ref(cfg, key, call)  # (stored by another process meanwhile)
        if found is None:
            raise UnstorableResultError(f"{self.name}.ref(): the result of key {key} was computed but not stored "
                                        "(see the warning above), so there is no Ref of it")
        return found

    def ref_many(self, calls: Iterable[tuple]) -> list[Ref]:
        """:meth:`ref` of many calls (each a tuple of positional arguments), looked up together:
        one request to a server for all of them; the misses are then computed one by one."""
        cfg = get_config()
        calls = [tuple(args) for args in calls]
        keys = [self._key(args, {}) for args in calls]
        if not keys:
            return []
        found = self._lookup_refs(cfg, keys, [(args, {}) for args in calls]) if cfg.cache == "on" else {}
        return [found[key] if key in found else self.ref(*args) for key, args in zip(keys, calls, strict=True)]

    def _lookup_ref(self, cfg: Config, key: str, call: tuple) -> Ref | None:
        """The Ref of ``key`` if it is stored (in one lookup of its three pairs), else None."""
        return self._lookup_refs(cfg, [key], [call]).get(key)

    def _lookup_refs(self, cfg: Config, keys: list[str], calls: list[tuple]) -> dict[str, Ref]:
        """The Refs of those of ``keys`` that are stored, each key's three pairs asked for at once."""
        collection = self._collection(cfg)
        if cfg.get_from == "local":
            store = local_store(cfg)

            def get_many(wanted: list[str]) -> dict[str, str]:
                return store.get_many(collection, wanted)
        else:
            from . import remote

            server = remote.ServerLink(cfg)
            doing = f"{self.name} {keys[0][:8]}: looking up {'a Ref' if len(keys) == 1 else f'{len(keys)} Refs'}"

            def get_many(wanted: list[str]) -> dict[str, str]:
                return server.get_pairs(collection, wanted, doing, inline=False)[0]
        try:
            found = get_many([k for key in keys for k in (key, argument_key(key), types_key(key))])
            # A result stored by an earlier version keeps its side pairs under the keys it used.
            earlier = [k for key in keys if key in found and argument_key(key) not in found
                       for k in (earlier_key(argument_key, key), earlier_key(types_key, key))]
            if earlier:
                found.update(get_many(earlier))
        except StoreNotWritableError:
            if cfg.get_from == "local":
                return {}
            raise
        out = {}
        content = content_store(cfg)
        for key, call in zip(keys, calls, strict=True):
            sha1 = found.get(key)
            if sha1 is None or not is_sha1_hex(sha1):
                continue
            if cfg.get_from == "local" and not content.has(sha1):
                continue  # its content is gone, and no server could have it: a miss
            size, digest = parse_argument(side_value(found, argument_key, key))
            if size is None and content.has(sha1):
                size = content.size(sha1)
            call_stats.record(self.name, key, True, 0.0, cfg.database_dir, verbose=self._shows_line(cfg),
                              counted=(local_store(cfg), collection))
            out[key] = Ref(sha1, size, self.name, collection, key, digest, side_value(found, types_key, key) or "", call, self)
        return out

    # --- controls -------------------------------------------------------------------------

    def key(self, *args: Any, **kwargs: Any) -> str:
        """The 40-hex cache key of this call (the key under which ``pairio.get`` finds the result's SHA-1)."""
        return self._key(args, kwargs)

    def explain(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """What went into the key of this call: code, helpers, constants, versions, each argument's hash;
        ``hit``: whether the call is cached now (then ``miss`` is None); if not, why: ``miss`` says
        what differs from the closest stored entry of this function, as the code and data are now
        (a global rebound or a helper redefined in this process included; ``closest`` is its key,
        ``differences`` the list)."""
        out = self._keys.explain(args, kwargs, method=self._method)
        cfg = get_config()
        out["collection"] = self._collection(cfg)
        out["result_sha1"] = sha1 = key_value.get(out["key"], self._collection(cfg))
        out["hit"] = sha1 is not None and is_sha1_hex(sha1) and content_store(cfg).has(sha1)
        if out["hit"]:
            out.update(miss=None, closest=None, differences=[])
        else:
            parts, _ = key_parts(self._keys, self._method, out["key"], args, kwargs)
            out.update(calls.explain_miss(cfg, self.name, out["collection"], out["key"], parts))
        return out

    def entries(self, **filters: Any) -> list[Entry]:
        """The recorded entries of this function in the local store, newest first
        (``pairio.entries`` takes the same filters)."""
        return queries.entries(self.name, **filters)

    def clear(self, older_than: str | float | None = None) -> int:
        """Remove this function's entries (older than ``older_than``, e.g. ``'30d'``, if given);
        returns how many. ``pairio gc`` then frees their content."""
        return len(queries.forget(self.name, older_than=older_than))

    def provenance(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Where the cached result of this call came from, as a tree back to the raw inputs
        (``pairio.lifecycle.provenance.format_tree`` prints it); LookupError if it is not recorded."""
        cfg = get_config()
        return queries.lineage_of_key(self._key(args, kwargs), self._collection(cfg))

    def is_cached(self, *args: Any, **kwargs: Any) -> bool:
        """True if this call's result is stored and its content present."""
        cfg = get_config()
        sha1 = key_value.get(self._key(args, kwargs), self._collection(cfg))
        return sha1 is not None and is_sha1_hex(sha1) and content_store(cfg).has(sha1)

    def forget(self, *args: Any, **kwargs: Any) -> bool:
        """Remove this call's entry (the content itself stays: other keys may share it).

        Returns whether there was one, in the stores that ``set_to`` writes.
        """
        cfg = get_config()
        key = self._key(args, kwargs)
        collection = self._collection(cfg)
        existed = key_value.get(key, collection, get_from=_WRITTEN_STORES[cfg.set_to]) is not None
        key_value.set_many({key: None, **dict.fromkeys(side_keys(key))}, collection)
        calls.forget_record(cfg, collection, key)
        return existed


class _Places:
    """The stores a config value points at, for a cached function's lookups. Config values are
    immutable, so each function works these out once per value it meets (``set_config`` and
    ``with config()`` make new values)."""

    __slots__ = ("cfg", "local", "kv", "content", "database_dir")

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.local = cfg.get_from == "local"  # pairs from the local store only
        self.kv = local_store(cfg)  # the pairs (when local) and, in any case, the records
        self.content = content_store(cfg)
        self.database_dir = cfg.database_dir


class BoundCachedMethod:
    """A cached method bound to an instance: ``obj.method`` of a ``@pairio.cached`` method."""

    def __init__(self, cached: CachedFunction, instance: Any) -> None:
        self.__func__ = cached
        self.__self__ = instance

    def __repr__(self) -> str:
        return f"<bound pairio.cached {self.__func__.name} of {self.__self__!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__func__(self.__self__, *args, **kwargs)

    def __reduce__(self) -> tuple:
        # Explicit, because unpickling the default way asks __getattr__ for __setstate__
        # before __func__ is set, which would recurse.
        return BoundCachedMethod, (self.__func__, self.__self__)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.__func__, name)
        if name in ("key", "explain", "is_cached", "forget", "recompute", "provenance", "ref"):
            return functools.partial(attr, self.__self__)
        if name == "ref_many":
            return lambda calls: attr([(self.__self__, *args) for args in calls])
        return attr


class _ArgumentDigest:
    """The hash of a result by the argument rules and its non-builtin types, taken on a second
    thread for a large one (while the caller stores it); None if the rules cannot hash it without
    pickling it (a Ref of it is then keyed by loading and hashing its value)."""

    def __init__(self, value: Any) -> None:
        self._thread = None
        if type(value) in _SCALAR_RESULTS:  # hashed at once (and never refused): the miss of a small step
            self._value, self._out = None, (hash_value(value, "result"), set())
            return
        self._value = value
        self._out: tuple[str | None, set[type]] = (None, set())
        if _nbytes(value) >= _THREADED_DIGEST_BYTES:
            self._thread = threading.Thread(target=self._run, name="pairio-digest", daemon=True)
            self._thread.start()
        else:
            self._run()

    def _run(self) -> None:
        types: set[type] = set()
        try:
            # strict: the same digest as a plain hash where it succeeds, but a value only the cloudpickle
            # fallback could hash is refused at once (not pickled a second time, on every miss).
            self._out = (hash_value(self._value, "result", strict=True, types=types), types)
        except Exception:  # noqa: BLE001 (any value the rules refuse, however: its Refs are hashed from it)
            self._out = (None, set())

    def result(self) -> tuple[str | None, set[type]]:
        if self._thread is not None:
            self._thread.join()
        self._value = None
        return self._out


_THREADED_DIGEST_BYTES = 1 << 20
# A computation under this many seconds is quick: see CachedFunction._compute.
_QUICK_S = 0.01
_SCALAR_RESULTS = frozenset({int, str, float})
# Arguments no one can change after the call (a record of them may be made later).
_IMMUTABLE_ARGUMENTS = frozenset({int, str, float, bool, type(None), bytes, complex})


def _nbytes(value: Any) -> int:
    """The bytes of a result's buffer(s), roughly (0 when not known cheaply)."""
    n = getattr(value, "nbytes", None)
    if isinstance(n, int):
        return n
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if type(value) in (tuple, list) and len(value) <= 64:
        return sum(_nbytes(v) for v in value)
    if type(value) is dict and len(value) <= 64:
        return sum(_nbytes(v) for v in value.values())
    return 0


class _LastStored(threading.local):
    value: tuple | None = None


_last_stored = _LastStored()  # this thread's newest stored result: (key, sha1, size, digest, types)


def _findable(f: CachedFunction) -> bool:
    """True if ``f`` is what its module and qualified name lead to."""
    obj: Any = sys.modules.get(f.__module__)
    for part in getattr(f, "__qualname__", "<unnamed>").split("."):
        obj = getattr(obj, part, None)
    return obj is f


def _rebuild(func: Callable[..., Any], options: dict[str, Any]) -> CachedFunction:
    return CachedFunction(func, **options)


def _reduce_for_multiprocessing(f: CachedFunction) -> str | tuple:
    # multiprocessing's workers import the parent's __main__ as well: even its functions go by name.
    return f.__qualname__ if _findable(f) else (_rebuild, (f.__wrapped__, f._options))


def _register_with_multiprocessing() -> bool:
    """Give multiprocessing's pickler our reduction, once multiprocessing is loaded (True then).

    Not imported for it: multiprocessing costs ``import pairio`` a tenth of its time, and only
    a program that uses it can pickle with it.
    """
    global _registered
    if _registered:
        return True
    reduction = sys.modules.get("multiprocessing.reduction")
    if reduction is None:
        return False
    reduction.ForkingPickler.register(CachedFunction, _reduce_for_multiprocessing)
    _registered = True
    return True


_registered = False


def _pickled_by_multiprocessing() -> bool:
    """True if multiprocessing's pickler is pickling us before our reduction was registered with it
    (multiprocessing was imported after the function was decorated)."""
    if _registered or not _register_with_multiprocessing():
        return False
    # The pickler (C code) calls __reduce__ with the frame of its Python caller one up from ours:
    # ForkingPickler.dumps or reduction.dump, in multiprocessing.reduction.
    frame = sys._getframe(2)
    return frame.f_globals.get("__name__") == "multiprocessing.reduction"


def in_worker() -> bool:
    """True in a process that multiprocessing started (a ``Pool`` worker, a ``Process``), worked out
    once per process. Such a process leaves through ``os._exit`` (no atexit) and, from
    ``pool.terminate()`` or ``with Pool() as p:``, by SIGTERM (no finalizers either)."""
    global _worker
    if _worker is None:
        mp = sys.modules.get("multiprocessing")
        _worker = mp is not None and mp.parent_process() is not None
    return _worker


def _write_now() -> None:
    # In a worker, the call's record and counts are written before its result goes back to the
    # parent, which may kill the worker as soon as it has every result (Pool.__exit__ terminates).
    records.flush()
    call_stats.flush()
    counts.flush()  # after the calls' counts: their hits' saved seconds are counted there


def _forget_worker_after_fork() -> None:
    global _worker
    _worker = None  # a forked child is worked out again, at its first call


_worker: bool | None = None
os.register_at_fork(after_in_child=_forget_worker_after_fork)


def in_ipython() -> bool:
    """True in an IPython shell or a Jupyter kernel (found without importing IPython: a shell puts
    ``get_ipython`` in builtins; a plain script that imported IPython has no shell)."""
    if "get_ipython" in builtins.__dict__:
        return True
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    return get_ipython is not None and get_ipython() is not None


def _warn(message: str) -> None:
    # One message per event: a RuntimeWarning (logging.captureWarnings sends it to the logs),
    # attributed to the user's line however deep in pairio it was raised.
    warn_user(message)


# The stores a set_to mode writes, as the get_from mode that reads them all.
_WRITTEN_STORES = {"local": "local", "remote": "remote", "local_and_remote": "local_then_remote"}


def _mark_coroutine_function(obj: Any) -> None:
    if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
        inspect.markcoroutinefunction(obj)
    else:
        import asyncio  # only async functions need it: `import pairio` stays light

        obj._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]


@overload
def cached(func: Callable[..., Any], /) -> CachedFunction: ...
@overload
def cached(*, version: str | None = None, ignore: Iterable[str] = (), dependencies: Iterable[str] = (),
           strict: bool = False, collection: str | None = None, restore_paths: bool = False,
           mmap: bool | None = None, verbose: bool | None = None) -> Callable[[Callable[..., Any]], CachedFunction]: ...


def cached(func: Callable[..., Any] | None = None, /, *, version: str | None = None, ignore: Iterable[str] = (),
           dependencies: Iterable[str] = (), strict: bool = False, collection: str | None = None,
           restore_paths: bool = False, mmap: bool | None = None, verbose: bool | None = None) -> Any:
    """Cache a function's results by its code, arguments and dependency versions.

    Use as ``@cached`` or ``@cached(version='2', ignore=['verbose'], dependencies=['scipy'])``.
    ``strict=True`` refuses arguments that only cloudpickle can hash, and raises UnstorableResultError
    for a result that cannot be pickled (else it is returned, not cached, with one warning). ``collection``
    overrides the config's collection for this function's pairs. A ``pathlib.Path`` to a file in a
    result comes back on a hit as a read-only path in the content store with the file's name and
    suffix; with ``restore_paths=True``, as the path the function returned, the file written back there.
    ``mmap=True`` returns a hit's large numpy arrays as read-only views of a memory map of the
    stored object (None: the config field ``mmap``). ``verbose``: print one short hit/miss line per
    call (None: the config field ``verbose``, ``PAIRIO_VERBOSE``; neither set, in IPython and
    Jupyter only).
    """
    options = dict(version=version, ignore=ignore, dependencies=dependencies, strict=strict, collection=collection,
                   restore_paths=restore_paths, mmap=mmap, verbose=verbose)
    if func is None:
        return lambda f: CachedFunction(f, **options)
    return CachedFunction(func, **options)
