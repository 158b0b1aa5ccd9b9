"""Hashing rules for numpy arrays and scalars and pandas objects.

Imported only when numpy or pandas is already imported by the caller: neither
is a dependency of pairio.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from .arguments import Context, Rule, Update, _text, _type_name, encode

# Arrays are hashed this many bytes at a time (non-contiguous ones copied to contiguous form).
_CHUNK_BYTES = 16 << 20
_NAN = math.copysign(math.nan, 1.0)  # positive, quiet, no payload: what every NaN is hashed as


def _dtype_text(dtype: Any) -> str:
    # dtype.str is enough for plain dtypes ('<f8'); structured ones need their fields.
    return dtype.str if dtype.fields is None else repr(dtype.descr)


def ndarray_rule(a: Any, update: Update, ctx: Context) -> None:
    """An array by its type, dtype, shape and bytes (C order); object arrays by their elements.

    Every NaN counts as one value, as for floats: the sign and payload bits of a
    NaN differ between CPUs (x86 computes ``inf - inf`` as a negative NaN, ARM as
    a positive one). A masked array counts its mask too.
    """
    np = sys.modules["numpy"]
    header = f"{_type_name(type(a))}|{_dtype_text(a.dtype)}|{a.shape}"
    update(b"a" + _text(header))
    ma = sys.modules.get("numpy.ma")
    if ma is not None and isinstance(a, ma.MaskedArray):
        _array_data(np, np.asarray(ma.getmaskarray(a)), update, ctx)
    # A subclass's view() and reshape() may do more than the base class's (MaskedArray's resize its mask).
    _array_data(np, np.asarray(a), update, ctx)


def _array_data(np: Any, a: Any, update: Update, ctx: Context) -> None:
    if a.dtype.hasobject:
        encode(a.tolist(), update, ctx)
        return
    if a.dtype.kind not in "fc":
        for piece in _pieces(np, a):
            # A uint8 view of the same memory: no copy, and it works for dtypes that
            # refuse the buffer protocol (datetime64, structured).
            update(piece.view(np.uint8))
        return
    for piece, has_nan in _nan_checked(np, a):
        update((_one_nan(np, piece) if has_nan else piece).view(np.uint8))


def _nan_checked(np: Any, a: Any) -> Iterator[tuple[Any, bool]]:
    """The pieces of a float or complex ``a``, each with whether it may hold a NaN.

    A contiguous array of several pieces is checked one piece ahead on another thread:
    numpy's reductions and hashlib's SHA-1 both release the GIL, so the check of a 100 MB
    array (about a tenth of its hash) overlaps its hashing instead of adding to it.
    """
    if not a.flags.c_contiguous or a.nbytes <= _CHUNK_BYTES:
        for piece in _pieces(np, a):
            yield piece, _may_hold_nan(np, piece)
        return
    pieces = list(_pieces(np, a))  # views: no copy
    flags: queue.SimpleQueue = queue.SimpleQueue()

    def check() -> None:
        for piece in pieces:
            try:
                flags.put(_may_hold_nan(np, piece))
            except BaseException as exc:  # handed to the hashing thread, which raises it
                flags.put(exc)
                return

    checker = threading.Thread(target=check, name="pairio-nan-check", daemon=True)
    checker.start()
    for piece in pieces:
        flag = flags.get()
        if isinstance(flag, BaseException):
            raise flag
        yield piece, flag
    checker.join()


def _may_hold_nan(np: Any, piece: Any) -> bool:
    """False only if the float or complex ``piece`` holds no NaN.

    A NaN makes the sum NaN, and a sum without one is NaN only through inf - inf (then the
    piece is looked at element by element): a reduction that allocates nothing, twice as fast
    as ``np.isnan(piece).any()``.
    """
    if piece.dtype.kind == "c":
        piece = piece.view(piece.real.dtype)
    with np.errstate(all="ignore"):  # a sum may overflow to inf: only NaN matters
        total = np.add.reduce(piece, axis=None)
    return bool(np.isnan(total))


def _pieces(np: Any, a: Any) -> Iterator[Any]:
    """``a`` in C order as 1-d pieces of about ``_CHUNK_BYTES``: views if it is contiguous, else copies."""
    if a.flags.c_contiguous:
        flat = a.reshape(-1)
        step = max(1, _CHUNK_BYTES // max(1, a.itemsize))
        for start in range(0, max(1, flat.size), step):
            yield flat[start:start + step]
        return
    if a.ndim == 0 or a.shape[0] == 0:
        yield np.ascontiguousarray(a).reshape(-1)
        return
    rows = max(1, _CHUNK_BYTES // max(1, a[0].nbytes))
    for start in range(0, a.shape[0], rows):
        yield np.ascontiguousarray(a[start:start + rows]).reshape(-1)


def _one_nan(np: Any, piece: Any) -> Any:
    """A contiguous float or complex ``piece`` with every NaN written alike (copied only if it holds one)."""
    if piece.dtype.kind == "c":
        piece = piece.view(piece.real.dtype)  # real and imaginary parts side by side
    nans = np.isnan(piece)
    if not nans.any():
        return piece
    piece = piece.copy()
    piece[nans] = _NAN
    return piece


# The digests of arrays that cannot change (see _is_frozen), by id, each with a weak reference
# to its array: the entry goes with the array, and a new array at the same address is not it.
_FROZEN: dict[int, tuple[weakref.ref, str]] = {}
_FROZEN_MIN_BYTES = 1 << 20  # smaller arrays hash in well under a millisecond


def _read_only_base(a: Any) -> Any:
    """The object under ``a``'s chain of array views if each array on it is read-only, else None."""
    np = sys.modules["numpy"]
    base = a
    while isinstance(base, np.ndarray):
        if base.flags.writeable:
            return None
        base = base.base
    return base


def _is_frozen(a: Any) -> bool:
    """True only if the data of ``a`` can never change: it and every array it views are read-only
    and the memory is a ``bytes`` object's (``np.frombuffer(some_bytes)``).

    Read-only is not enough on its own: an array owning its memory can be made writeable again
    (``a.flags.writeable = True``), and a read-only view sees every write to a writeable base;
    numpy refuses writeable=True only to an array over a read-only buffer, and of those only a
    ``bytes`` object's content is immutable (a read-only memory map's file can change).
    """
    base = _read_only_base(a)
    if type(base) is memoryview:
        if not base.readonly:
            return False
        base = base.obj
    return type(base) is bytes


def _maps_readonly(a: Any) -> bool:
    """True only if ``a`` and every array it views are read-only over a read-only memoryview of an
    ``mmap``: how ``mmap=True`` maps an object of the content store, whose file (named by its hash,
    never written again) does not change."""
    base = _read_only_base(a)
    if type(base) is not memoryview or not base.readonly:
        return False
    import mmap

    return type(base.obj) is mmap.mmap


def remember_stored(a: Any, digest: str) -> None:
    """Keep ``digest`` (the stored argument digest of the object ``a`` maps) for its next hash, if
    ``a`` is a large read-only memory map of a stored object: it is then never hashed as an argument."""
    if a.nbytes >= _FROZEN_MIN_BYTES and _maps_readonly(a):
        _keep(a, digest)


def frozen_digest(a: Any) -> str | None:
    """The digest :func:`remember_if_frozen` kept for this very array, else None."""
    entry = _FROZEN.get(id(a))
    if entry is None or entry[0]() is not a:
        return None
    return entry[1]


def remember_if_frozen(a: Any, digest: str) -> None:
    """Keep ``digest`` of ``a`` for its next hash, if ``a`` is large and its data can never change."""
    if a.nbytes < _FROZEN_MIN_BYTES or not _is_frozen(a):
        return
    _keep(a, digest)


def _keep(a: Any, digest: str) -> None:
    key = id(a)

    def gone(ref: weakref.ref) -> None:
        entry = _FROZEN.get(key)
        if entry is not None and entry[0] is ref:
            del _FROZEN[key]

    _FROZEN[key] = (weakref.ref(a, gone), digest)


def scalar_rule(x: Any, update: Update, ctx: Context) -> None:
    """A numpy scalar (np.float32(1), np.int64(3)...) by its dtype and bytes."""
    if x.dtype.hasobject:
        update(b"o")
        encode(x.item(), update, ctx)
        return
    data = x.tobytes()
    if x.dtype.kind in "fc" and x != x:
        data = b"nan"  # every NaN is one value
    update(b"q" + _text(_dtype_text(x.dtype)) + _text(data.hex()))


def _values(obj: Any, update: Update, ctx: Context) -> None:
    """The values of a pandas column or index: as an array when they have a numpy form."""
    np = sys.modules["numpy"]
    dtype = obj.dtype
    ctx.note_type(type(dtype))  # numpy's dtypes, or an extension dtype's library
    update(_text(str(dtype)))
    categories = getattr(dtype, "categories", None)
    if categories is not None:  # str() of a categorical dtype is "category", whatever its categories
        update(b"C" if dtype.ordered else b"c")
        _index(categories, update, ctx)
    if isinstance(dtype, np.dtype) and not dtype.hasobject:
        ndarray_rule(np.asarray(obj), update, ctx)
    else:  # object, categorical, extension dtypes: element by element
        encode(list(obj), update, ctx)


def _index(idx: Any, update: Update, ctx: Context) -> None:
    update(b"I" + _text(_type_name(type(idx))))
    encode(list(idx.names), update, ctx)
    _values(idx, update, ctx)


def _series(s: Any, update: Update, ctx: Context) -> None:
    update(b"R")
    encode(s.name, update, ctx)
    _index(s.index, update, ctx)
    _values(s, update, ctx)
    _attrs(s, update, ctx)


def _frame(df: Any, update: Update, ctx: Context) -> None:
    update(b"W%d:" % df.shape[1])
    _index(df.columns, update, ctx)
    _index(df.index, update, ctx)
    for i in range(df.shape[1]):
        _values(df.iloc[:, i], update, ctx)
    _attrs(df, update, ctx)


def _attrs(obj: Any, update: Update, ctx: Context) -> None:
    """A frame's or series' ``attrs`` (metadata code may read), when it has any: none adds nothing."""
    attrs = getattr(obj, "attrs", None)
    if attrs:
        update(b"A")
        encode(dict(attrs), update, ctx)


def pandas_rule(tp: type) -> Rule | None:
    """The rule for a pandas DataFrame, Series or Index type, else None."""
    pd = sys.modules["pandas"]
    rules: list[tuple[type, Callable[[Any, Update, Context], None]]] = [
        (pd.DataFrame, _frame), (pd.Series, _series), (pd.Index, _index)]
    for base, rule in rules:
        if issubclass(tp, base):
            return rule
    return None
