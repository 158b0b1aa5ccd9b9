"""Cached steps for the tests of Refs: ``load -> filter -> summary`` over numpy arrays.

Each execution of a step's body appends a line to the file named by PAIRIO_TEST_RUNS (as
cluster_steps does), so a test counts executions, in dask workers too. Importable by name,
so a Ref's lost content can be recomputed from its call.
"""

from __future__ import annotations

import numpy as np
from cluster_steps import note

import pairio as pa


@pa.cached
def load(n: int) -> np.ndarray:
    note(f"load-{n}")
    return np.arange(n, dtype=np.float64)


@pa.cached
def filter_rows(a: np.ndarray) -> np.ndarray:
    note("filter")
    return a[a % 3 != 0]


@pa.cached
def summary(a: np.ndarray) -> float:
    note("summary")
    return float(a.sum())


@pa.cached
def total(parts: dict) -> float:
    note("total")
    return float(sum(float(v.sum()) for v in parts.values()))


def summary_ref(ref: pa.Ref) -> pa.Ref:
    """A dask task: the Ref of the summary of the result ``ref`` stands for."""
    return summary.ref(filter_rows.ref(ref))


class Opaque:
    """A class the argument rules hash only by pickling it (it says how it pickles)."""

    def __init__(self, x: int) -> None:
        self.x = x

    def __reduce__(self) -> tuple:
        return Opaque, (self.x,)


@pa.cached
def make_opaque(x: int) -> Opaque:
    return Opaque(x)


@pa.cached
def unwrap(o: Opaque) -> int:
    note("unwrap")
    return o.x
