"""Pinned keys: any change to key derivation shows here, and must come with a new KEY_FORMAT.

The reference functions live in a module of fixed name and source, written
into a temporary directory and imported fresh. They use only the standard
library (which counts by nothing), so no installed version moves their keys;
the keys are the same on every OS and on Python 3.10 to 3.13.

A deliberate change to key derivation that makes these fail comes with a new
KEY_FORMAT in pairio/memo/key.py: set PINNED_KEY_FORMAT to it and paste in
the new keys (each failure shows the actual one).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import PurePosixPath

import pytest

import pairio as pa
from pairio.memo import KEY_FORMAT
from pairio.memo.arguments import hash_value
from pairio.memo.source import TOKEN_FORMAT, source_digest

PINNED_KEY_FORMAT = 1
PINNED_TOKEN_FORMAT = 1
MODULE = "pairio_key_vectors_reference"

SOURCE = '''\
"""Reference functions whose keys are pinned in tests/test_cached_key_vectors.py. Do not edit."""

import collections
import dataclasses
import enum
import math

import pairio

RATE = 0.25
LABELS = ("low", "high")


class Unit(enum.Enum):
    METRE = "m"
    FOOT = "ft"


@dataclasses.dataclass(frozen=True)
class Point:
    x: float
    y: float


Pair = collections.namedtuple("Pair", ["left", "right"])


def add(a, b=2):
    return a + b


def _clip(x, low=0.0):
    return max(low, x)


def _scaled(x):
    return _clip(x * RATE)


class Accumulator:
    def __init__(self):
        self.total = 0.0

    def push(self, x):
        self.total += _scaled(x)
        return self


def summarise(values, unit=Unit.METRE, *, label=LABELS[0]):
    """Uses a helper two calls down, a class, constants and the standard library."""
    acc = Accumulator()
    for v in values:
        acc.push(v)
    return f"{label}: {math.floor(acc.total)} {unit.value}"


def variadic(first, *rest, **options):
    return first, rest, sorted(options)


@pairio.cached(version="3", ignore=["verbose"])
def decorated(x, verbose=False):
    return x


def make(factor):
    def step(x):
        return x * factor
    return step
'''


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    directory = tmp_path_factory.mktemp("key-vectors")
    (directory / f"{MODULE}.py").write_text(SOURCE)
    sys.modules.pop(MODULE, None)
    sys.path.insert(0, str(directory))
    importlib.invalidate_caches()
    try:
        yield importlib.import_module(MODULE)
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop(MODULE, None)


def test_the_vectors_are_pinned_for_this_key_format():
    assert KEY_FORMAT == PINNED_KEY_FORMAT, "new KEY_FORMAT: pin the new keys below with it"
    assert TOKEN_FORMAT == PINNED_TOKEN_FORMAT, "new TOKEN_FORMAT: bump KEY_FORMAT and pin the new keys"
    assert pa.KEY_FORMAT == KEY_FORMAT


def _calls(ref):
    return {
        "add(1)": lambda: pa.cached(ref.add).key(1),
        "add(1, b=3)": lambda: pa.cached(ref.add).key(1, b=3),
        "add('x', b=[1, 2.5, None])": lambda: pa.cached(ref.add).key("x", b=[1, 2.5, None]),
        "add(1.0)": lambda: pa.cached(ref.add).key(1.0),
        "add(True)": lambda: pa.cached(ref.add).key(True),
        "add(version='2')(1)": lambda: pa.cached(version="2")(ref.add).key(1),
        "summarise([1.5, 2.0])": lambda: pa.cached(ref.summarise).key([1.5, 2.0]),
        "summarise((1.5, 2.0), Unit.FOOT, label='high')":
            lambda: pa.cached(ref.summarise).key((1.5, 2.0), ref.Unit.FOOT, label="high"),
        "variadic(1, 2, z=3, a={1, 2})": lambda: pa.cached(ref.variadic).key(1, 2, z=3, a={1, 2}),
        "variadic(Point, Pair, path, nan)": lambda: pa.cached(ref.variadic).key(
            ref.Point(1.0, -0.0), ref.Pair("a", b"b"), path=PurePosixPath("data/in.csv"),
            nan=float("nan"), nested={"k": (None, {"x": [1j]})}),
        "decorated(5, verbose=True)": lambda: ref.decorated.key(5, verbose=True),
        "make(3)(2)": lambda: pa.cached(ref.make(3)).key(2),
    }


PINNED_KEYS = {
    "add(1)": "3f577c3ef1c38d554e857ccca649bb8cf04a906a",
    "add(1, b=3)": "e8582df952ead34f9b0b8a3a7aa520c9172c2568",
    "add('x', b=[1, 2.5, None])": "7a4f399c45c32701fed623dda6ccb1b871221d4f",
    "add(1.0)": "82ca83a12d72cad7ed1b8c56c386610402441978",
    "add(True)": "ee82c476cda42af8b4860ad7de0137bea6a2fae8",
    "add(version='2')(1)": "19344e56592581829d14bb7b7a4bdf55bd68d650",
    "summarise([1.5, 2.0])": "fb256f83fc17c13844a3cf9b6a2370a05f972175",
    "summarise((1.5, 2.0), Unit.FOOT, label='high')": "6df7740ff8d61441d6c1ced787b9d1ef0ba9bbaa",
    "variadic(1, 2, z=3, a={1, 2})": "63b5cfb56e665397aa07063807136e8757e76fd7",
    "variadic(Point, Pair, path, nan)": "1943882adc567fb1042fa01ea5b0f6494286c141",
    "decorated(5, verbose=True)": "13b801f53945e7051027d51397fc0f97a71d51e0",
    "make(3)(2)": "c78ab2a7da30f891be2f3258dc90160fa1a1adbe",
}


@pytest.mark.parametrize("call", sorted(PINNED_KEYS))
def test_pinned_key(ref, call):
    assert _calls(ref)[call]() == PINNED_KEYS[call]


def test_the_reference_functions_use_no_versioned_library(ref):
    for name in ("add", "summarise", "variadic", "make"):
        assert pa.cached(getattr(ref, name)).explain(1)["dependencies"] == {}, name


def test_the_pinned_calls_are_all_different(ref):
    keys = [call() for call in _calls(ref).values()]
    assert len(set(keys)) == len(keys)


# Argument hashes and a source digest on their own: when a key above moves, these say which part did.
PINNED_VALUE_HASHES = {
    "None": (None, "b51a60734da64be0e618bacbea2865a8a7dcd669"),
    "True": (True, "c2c53d66948214258a26ca9ca845d7ac0c17f8e7"),
    "1": (1, "6ab7dc95948907ae1eed2c1879fd3b0299e4b1a1"),
    "1.0": (1.0, "82d1dd629f3365191dba910eca6aa6ca97268e40"),
    "nan": (float("nan"), "ec2fb46fd7a153bae86e946fea07d695d9ac6c23"),
    "'text'": ("text", "a70f90e629c091a3cf814115345f1bb06d31a2ed"),
    "b'bytes'": (b"bytes", "9a39df66d87d10e84e56577939354cb10837fc46"),
    "[1, (2, 3)]": ([1, (2, 3)], "24cdced40289a3f47b083d163779893e9afa45e8"),
    "{'b': 1, 'a': {2, 3}}": ({"b": 1, "a": {2, 3}}, "12d03c062075e136fdf68f85763b39c5fff24ebf"),
    "frozenset({'x'})": (frozenset({"x"}), "de2ad4d7544ae38c1e25159f08ecac19f54083eb"),
    "PurePosixPath('a/b.txt')": (PurePosixPath("a/b.txt"), "1818b07e6c3cbcc11a3d0f73bdf68aa7e425412f"),
}


@pytest.mark.parametrize("name", sorted(PINNED_VALUE_HASHES))
def test_pinned_value_hash(name):
    value, expected = PINNED_VALUE_HASHES[name]
    assert hash_value(value) == expected


def test_pinned_array_hash():
    np = pytest.importorskip("numpy")
    assert hash_value(np.arange(6, dtype="<i8").reshape(2, 3)) == "5e91ebf4162cde12edbc394860433c66fffd1907"
    assert hash_value(np.array([0.5, np.nan], dtype="<f4")) == "e1269861da46c56767470a09e1a07aa1cd9f88cf"


def test_pinned_source_digest():
    assert source_digest("def f(x, y=1):\n    return f'{x}' + str(y * 0.5)\n") == "1f0a4e869dd04c6bd5bdc1acc4448ef916e87f0f"
