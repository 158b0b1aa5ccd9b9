"""``pairio.Memory`` beside ``joblib.Memory``, in one run (issue 22's figures).

1. the second fit of a cached scikit-learn Pipeline (StandardScaler, PCA, a custom transformer,
   then LogisticRegression) on 100,000 x 50 float64: the transformers come from the cache, the
   final estimator is fitted again (target: pairio at most 1x joblib's);
2. the hit of a cached call whose argument is a 100 MB float64 array (the same array object each
   call, as a pipeline passes it on): target pairio at most 0.5x joblib's; beside it, one SHA-1
   of the array alone, the floor of pairio's hit (the key's hash cannot change);
3. the same hit when the array cannot change (read-only over a bytes object), which pairio
   hashes once.

A fresh, empty cache directory per tool and round; the tools take turns within each round.
Medians over --rounds rounds (row 1) and over --calls calls per round (row 2), with ratios.
Run: python benchmarks/memory.py [--rounds N] [--dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import statistics
import tempfile
import warnings
from pathlib import Path

import joblib
import numpy as np
from common import default_dir, timed
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import pairio


class Clip(TransformerMixin, BaseEstimator):
    """A user-defined transformer: clips each column to its fitted quantiles."""

    def __init__(self, q: float = 0.01) -> None:
        self.q = q

    def fit(self, X, y=None):
        self.low_, self.high_ = np.quantile(X, [self.q, 1 - self.q], axis=0)
        return self

    def transform(self, X):
        return np.clip(X, self.low_, self.high_)


def pipeline(memory) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("pca", PCA(n_components=20, random_state=0)),
                     ("clip", Clip()), ("clf", LogisticRegression(max_iter=200))], memory=memory)


def total(a: np.ndarray) -> float:
    return float(a[:1000].sum())


def memories(root: Path, name: str) -> dict:
    return {"joblib": joblib.Memory(root / name / "joblib", verbose=0),
            "pairio": pairio.Memory(root / name / "pairio", verbose=0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--dir", default=default_dir())
    opts = parser.parse_args()
    logging.getLogger("pairio").setLevel(logging.WARNING)
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100_000, 50))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    big = rng.normal(size=100 * 2**20 // 8)
    root = Path(tempfile.mkdtemp(prefix="pairio-bench-memory-", dir=opts.dir))
    fit2: dict[str, list[float]] = {"joblib": [], "pairio": [], "uncached": []}
    hit: dict[str, list[float]] = {"joblib": [], "pairio": [], "sha1": []}
    frozen_hit: dict[str, list[float]] = {"joblib": [], "pairio": []}
    frozen = np.frombuffer(big.tobytes(), dtype=big.dtype)  # read-only over bytes: cannot change
    try:
        for r in range(opts.rounds):
            fit2["uncached"].append(timed(lambda: pipeline(None).fit(X, y)))
            for tool, memory in memories(root, f"fit{r}").items():
                pipeline(memory).fit(X, y)
                fit2[tool].append(timed(lambda m=memory: pipeline(m).fit(X, y)))
            mems = memories(root, f"hit{r}")
            funcs = {tool: m.cache(total) for tool, m in mems.items()}
            for f in funcs.values():
                f(big)
            for _ in range(opts.calls):
                for tool, f in funcs.items():
                    hit[tool].append(timed(lambda f=f: f(big)))
                # What bounds pairio's hit: one SHA-1 over the array's bytes (the key must stay SHA-1).
                hit["sha1"].append(timed(lambda: hashlib.sha1(big.view(np.uint8)).hexdigest()))
            for f in funcs.values():
                f(frozen)
            for _ in range(opts.calls):
                for tool, f in funcs.items():
                    frozen_hit[tool].append(timed(lambda f=f: f(frozen)))
            shutil.rmtree(root / f"fit{r}", ignore_errors=True)
            shutil.rmtree(root / f"hit{r}", ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in fit2.items()}
    print(f"1. second fit of a cached Pipeline, 100,000 x 50 (median of {opts.rounds}):")
    print(f"   uncached fit {med['uncached'] * 1e3:8.1f} ms")
    print(f"   joblib       {med['joblib'] * 1e3:8.1f} ms")
    print(f"   pairio       {med['pairio'] * 1e3:8.1f} ms   pairio/joblib = {med['pairio'] / med['joblib']:.2f} "
          f"(target <= 1)")
    h = {k: statistics.median(v) for k, v in hit.items()}
    print(f"2. hit with a 100 MB array argument (median of {len(hit['pairio'])} calls):")
    print(f"   joblib       {h['joblib'] * 1e3:8.2f} ms")
    print(f"   pairio       {h['pairio'] * 1e3:8.2f} ms   pairio/joblib = {h['pairio'] / h['joblib']:.3f} "
          f"(target <= 0.5)")
    print(f"   SHA-1 alone  {h['sha1'] * 1e3:8.2f} ms   sha1/joblib   = {h['sha1'] / h['joblib']:.3f} "
          f"(the floor of pairio's hit)")
    fh = {k: statistics.median(v) for k, v in frozen_hit.items()}
    print(f"3. hit with a 100 MB array that cannot change (np.frombuffer of bytes; median of "
          f"{len(frozen_hit['pairio'])} calls):")
    print(f"   joblib       {fh['joblib'] * 1e3:8.2f} ms")
    print(f"   pairio       {fh['pairio'] * 1e3:8.3f} ms   pairio/joblib = {fh['pairio'] / fh['joblib']:.4f} "
          f"(hashed once, then known by identity)")


if __name__ == "__main__":
    main()
