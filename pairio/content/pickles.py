"""Pickles in the content store: protocol 5, large buffers out of band, read straight into place.

A value is pickled with protocol 5. Buffers of ``OUT_OF_BAND_MIN`` bytes or more that
can travel out of band (numpy arrays, and what is built on them) are written after the
pickle stream, each at an offset aligned to 64 bytes, then a table of their offsets and
lengths, then a footer::

    pickle | pad | buffer 0 | pad | buffer 1 | ... | (offset, length) per buffer | footer

    footer = pickle length (u64 LE), buffer count (u64 LE), b"PAIRIOB1"

A value without such buffers is a plain pickle. A plain pickle ends with its STOP
opcode (``.``), never with the footer's last byte, so the two are told apart by the
footer alone.

On a load each buffer is read straight into the bytearray the array then uses (no
copy), or with ``mmap=True`` mapped read-only from the object file (no read at all).
The object is checked against its hash as it is read, unless the store verified its
file under the same signature (see :meth:`ContentStore.open`); a mismatch quarantines
it and raises CorruptContentError.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import struct
import sys
from collections.abc import Callable
from typing import Any

from ..errors import ContentNotFoundError, CorruptContentError, UntrustedContentError
from . import safe_pickle
from .directory_lock import mark_reading
from .store import ContentStore

PROTOCOL = 5
MAGIC = b"PAIRIOB1"
OUT_OF_BAND_MIN = 64 << 10
_ALIGN = 64
_FOOTER = struct.Struct("<QQ8s")
_ENTRY = struct.Struct("<QQ")
# Objects up to this size are read whole with one call and hashed with another: the fast path
# of a small hit (a few hundred bytes).
SMALL_OBJECT = 8 << 20
# A load first reads this much without asking the file's size: small objects (most results) are whole
# after that one read. Below SIGNATURE_MIN_SIZE, so such objects are always hashed whole.
_FIRST_READ = 64 << 10
_CHUNK = 1 << 20

# The opcodes that make a pickle more than data: naming a global (GLOBAL, STACK_GLOBAL, INST, and
# the extension registry's EXT1/2/4), calling (REDUCE, OBJ, NEWOBJ, NEWOBJ_EX), setting state
# (BUILD), persistent ids (PERSID, BINPERSID) and out-of-band buffers (NEXT_BUFFER, READONLY_BUFFER).
_CALLING_OPCODES = re.compile(b"[ciRbo\x81\x92\x93\x82\x83\x84PQ\x97\x98]")
# The longest pickle calls_nothing looks through (a longer one is taken as calling).
CALLS_NOTHING_MAX = 1024


def calls_nothing(data: bytes) -> bool:
    """True if the pickle ``data`` (at most :data:`CALLS_NOTHING_MAX` bytes) can only build plain
    data: none of its bytes is an opcode that names a global, calls, sets state or takes a
    buffer (looked for in every byte, operands included: a false alarm only means False). Such a
    pickle builds the same value however it is unpickled, with or without trust: nothing to refuse."""
    return len(data) <= CALLS_NOTHING_MAX and _CALLING_OPCODES.search(data) is None


# (file, buffer_callback) -> a pickler with a .dump(value) method
PicklerFactory = Callable[[Any, Callable[[pickle.PickleBuffer], bool]], Any]


def _default_pickler(file: Any, buffer_callback: Callable[[pickle.PickleBuffer], bool]) -> Any:
    import cloudpickle  # imported by the calls that pickle: `import pairio` stays light

    return cloudpickle.CloudPickler(file, protocol=PROTOCOL, buffer_callback=buffer_callback)


def dump(store: ContentStore, value: Any, pickler: PicklerFactory = _default_pickler,
         durable: bool = True, inline: bool = False) -> tuple[str, int]:
    """Pickle ``value`` into ``store`` (large buffers out of band); returns the object's SHA-1 and size.

    Errors of the pickler propagate; nothing is stored then.
    """
    buffers: list[memoryview] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: in band
            return True
        if raw.nbytes < OUT_OF_BAND_MIN:
            return True
        buffers.append(raw)
        return False

    with store.writer(durable=durable, inline=inline) as w:
        pickler(w, out_of_band).dump(value)
        if buffers:
            pickle_length = w.size
            table = bytearray()
            for raw in buffers:
                w.write(bytes(-w.size % _ALIGN))
                table += _ENTRY.pack(w.size, raw.nbytes)
                w.write(raw)
            w.write(bytes(table) + _FOOTER.pack(pickle_length, len(buffers), MAGIC))
    assert w.sha1 is not None
    store.mark_own(w.sha1)  # pickled here: this user's own content, even if a server had it too
    return w.sha1, w.size


# ``safe``: None to unpickle as pickle does (the content is trusted), or the extra globals allowed
# when it is loaded as data only (see safe_pickle).
Safe = frozenset | None


def _loads(data: Any, safe: Safe, buffers: Any = None) -> Any:
    if safe is None:
        return pickle.loads(data, buffers=buffers)
    return safe_pickle.safe_loads(data, buffers=buffers, extra=safe)


def _load(f: Any, safe: Safe) -> Any:
    return pickle.load(f) if safe is None else safe_pickle.safe_load(f, extra=safe)


def loads(data: bytes, safe: Safe = None) -> Any:
    """The value in the object bytes ``data`` (already checked against their hash); with ``safe``
    (extra allowed globals) built as data only, UntrustedContentError if it would call anything else."""
    if not data.endswith(MAGIC):
        return _loads(data, safe)
    pickle_length, regions = _layout(data[-_FOOTER.size:], lambda start, n: data[start:start + n], len(data))
    view = memoryview(data)
    # Copies: arrays of a result are writable, as an unpickled array is.
    return _loads(view[:pickle_length], safe, buffers=[bytearray(view[o:o + n]) for o, n in regions])


def load(store: ContentStore, sha1: str, mmap: bool = False,
         remember: Callable[[str, bytes], None] | None = None, safe: Safe = None) -> Any:
    """The value pickled as object ``sha1``; ContentNotFoundError if absent, CorruptContentError
    (after quarantining it) if its bytes do not match its hash.

    With ``mmap`` its out-of-band buffers are read-only views of a memory map of the object.
    ``remember`` is given the hash and bytes of an object read whole (small ones), to keep them.
    ``safe`` as for :func:`loads`.
    """
    # Most results are small, and a small result is a row: looked up first (never out of band:
    # nothing to map).
    data = store.read_row(sha1)
    if data is not None:
        if remember is not None:
            remember(sha1, data)
        return loads(data, safe)
    try:
        fd = os.open(store.object_file(sha1), os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise ContentNotFoundError(f"object {sha1} is not in the content store "
                                   f"{str(store.directory)!r}") from None
    try:
        first = b""
        if not mmap:
            # Most results are small: one read, no fstat. A read shorter than asked for whose bytes
            # match the hash is the whole object (a part of it cannot match).
            first = os.read(fd, _FIRST_READ)
            if len(first) < _FIRST_READ and hashlib.sha1(first).hexdigest() == sha1:
                if remember is not None:
                    remember(sha1, first)
                return loads(first, safe)  # intact bytes: an error here is the pickle's own
        st = os.fstat(fd)
        verified = store.is_verified(sha1, st)
        if st.st_size <= SMALL_OBJECT and not mmap:
            data = first + _read_all(fd, st.st_size - len(first)) if len(first) < st.st_size else first
            if not verified:
                actual = hashlib.sha1(data).hexdigest()
                if actual != sha1:
                    raise store._corrupt(sha1, actual)
                store.mark_verified(sha1, st, fd)
            if remember is not None:
                remember(sha1, data)
            try:
                return loads(data, safe)
            except Exception:
                actual = hashlib.sha1(data).hexdigest()
                if actual != sha1:  # damage its signature did not show: the hash decides
                    raise store._corrupt(sha1, actual) from None
                raise
        os.lseek(fd, 0, os.SEEK_SET)
        mark_reading(fd)  # a large object is read for a while: gc and eviction leave it meanwhile
        try:
            value = _load_large(fd, st.st_size, sha1, mmap, verified, store, safe)
        except (CorruptContentError, UntrustedContentError):
            raise
        except Exception:
            # Damaged bytes can fail as any error (a mangled module name is an ImportError):
            # the content is to blame only if it no longer matches its hash.
            os.lseek(fd, 0, os.SEEK_SET)
            actual = _hash_fd(fd)
            if actual != sha1:
                raise store._corrupt(sha1, actual) from None
            raise
        if not verified:
            store.mark_verified(sha1, st, fd)
        return value
    finally:
        os.close(fd)


def _read_all(fd: int, size: int) -> bytes:
    data = os.read(fd, size + 1)
    if len(data) == size:
        return data
    parts = [data]  # a short read is not always the end of the file
    while chunk := os.read(fd, _CHUNK):
        parts.append(chunk)
    return b"".join(parts)


def _hash_fd(fd: int) -> str:
    h = hashlib.sha1()
    while chunk := os.read(fd, _CHUNK):
        h.update(chunk)
    return h.hexdigest()


def _layout(footer: bytes, read: Callable[[int, int], bytes], size: int) -> tuple[int, list[tuple[int, int]]]:
    """The pickle's length and each buffer's (offset, length), from the footer; UnpicklingError if
    they do not describe a file of ``size`` bytes."""
    pickle_length, count, magic = _FOOTER.unpack(footer)
    table_start = size - _FOOTER.size - count * _ENTRY.size
    if magic != MAGIC or count == 0 or table_start < pickle_length:
        raise pickle.UnpicklingError("not an out-of-band pickle: its footer is inconsistent")
    table = read(table_start, count * _ENTRY.size)
    regions = [_ENTRY.unpack_from(table, i * _ENTRY.size) for i in range(count)]
    end = pickle_length
    for offset, length in regions:
        if offset < end or offset + length > table_start:
            raise pickle.UnpicklingError("its out-of-band buffers overlap or overrun their table")
        end = offset + length
    return pickle_length, regions


def _load_large(fd: int, size: int, sha1: str, mmap: bool, verified: bool, store: ContentStore,
                safe: Safe) -> Any:
    footer = os.pread(fd, _FOOTER.size, max(size - _FOOTER.size, 0))
    out_of_band = footer.endswith(MAGIC)
    if out_of_band:
        try:
            pickle_length, regions = _layout(footer, lambda start, n: os.pread(fd, n, start), size)
        except pickle.UnpicklingError:
            actual = _hash_fd(fd)  # a damaged footer, or a rewritten file: the hash decides
            if actual != sha1:
                raise store._corrupt(sha1, actual) from None
            raise
    if mmap and not verified:
        actual = _hash_fd(fd)
        if actual != sha1:
            raise store._corrupt(sha1, actual)
        verified = True
    if not out_of_band:
        with os.fdopen(os.dup(fd), "rb") as f:
            if mmap or verified:
                return _load(f, safe)
            reader = _HashingReader(f)
            value = _load(reader, safe)
            reader.drain()  # anything after the pickle is corruption too
            if reader.hash.hexdigest() != sha1:
                raise store._corrupt(sha1, reader.hash.hexdigest())
            return value
    if mmap:
        import mmap as mmap_module

        mapped = mmap_module.mmap(fd, 0, access=mmap_module.ACCESS_READ)
        view = memoryview(mapped)
        return _loads(view[:pickle_length], safe, buffers=[view[o:o + n] for o, n in regions])
    h = None if verified else hashlib.sha1()
    position = 0

    def read_into(target: memoryview) -> None:
        nonlocal position
        done = 0
        while done < len(target):
            n = _pread_into(fd, target[done:done + _CHUNK], position)
            if not n:
                raise pickle.UnpicklingError("the object ended early")
            if h is not None:
                h.update(target[done:done + n])  # hashed while still in the CPU's cache
            done += n
            position += n

    head = bytearray(pickle_length)
    read_into(memoryview(head))
    buffers = []
    for offset, length in regions:
        if h is not None and offset > position:
            read_into(memoryview(bytearray(offset - position)))  # the padding counts for the hash
        position = offset
        buffer = _uninitialised(length)
        read_into(memoryview(buffer).cast("B"))
        buffers.append(buffer)
    if h is not None:
        read_into(memoryview(bytearray(size - position)))  # the table and the footer
        if h.hexdigest() != sha1:
            raise store._corrupt(sha1, h.hexdigest())
    return _loads(head, safe, buffers=buffers)


def _uninitialised(length: int) -> Any:
    """A writable buffer of ``length`` bytes, not zeroed first (the read fills it): bytearray(n)
    writes n zeros, which costs a large load a third of its time."""
    if length < _CHUNK:
        return bytearray(length)
    numpy = sys.modules.get("numpy")  # out-of-band buffers are numpy's, nearly always
    if numpy is not None:
        return numpy.empty(length, dtype=numpy.uint8)
    import mmap

    return mmap.mmap(-1, length)  # anonymous: pages appear as the read fills them


def _pread_into(fd: int, target: memoryview, offset: int) -> int:
    if hasattr(os, "preadv"):
        return os.preadv(fd, [target], offset)
    data = os.pread(fd, len(target), offset)
    target[:len(data)] = data
    return len(data)


class _HashingReader:
    """A file wrapper that hashes every byte handed to the unpickler."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self.hash = hashlib.sha1()

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.hash.update(data)
        return data

    def readinto(self, b: Any) -> int:
        # A large buffer (an in-band array's data) is read and hashed a chunk at a time, each
        # chunk hashed while it is still in the CPU's cache.
        view = memoryview(b).cast("B")
        total = 0
        while total < len(view):
            n = self._f.readinto(view[total:total + _CHUNK])
            if not n:
                break
            self.hash.update(view[total:total + n])
            total += n
        return total

    def readline(self) -> bytes:
        data = self._f.readline()
        self.hash.update(data)
        return data

    def drain(self) -> None:
        """Hash the rest of the file, a chunk at a time."""
        while data := self._f.read(_CHUNK):
            self.hash.update(data)
