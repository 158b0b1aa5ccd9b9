"""Key/value speed: pairio's embedded store beside a bare sqlite3 WAL table and diskcache.

20,000 random 40-hex keys and values; set (durable: committed before it returns),
get of present keys, get of absent keys, and get_many in batches of 1,000.
Each measurement is repeated; medians of the per-operation times are printed,
with ratios to the bare sqlite3 table. Run: python benchmarks/kv.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import statistics
import tempfile

from common import timed

import pairio as pa

N = 20_000
BATCH = 1_000



class BareSqlite:
    """The floor: one table, WAL, synchronous=NORMAL, autocommit, the same SQL pairio runs."""

    def __init__(self, directory: str) -> None:
        self.db = sqlite3.connect(os.path.join(directory, "bare.sqlite3"), isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.db.execute(
            "CREATE TABLE pairs (collection TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, "
            "PRIMARY KEY (collection, key)) WITHOUT ROWID"
        )

    def set(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO pairs (collection, key, value) VALUES ('default', ?, ?) "
            "ON CONFLICT (collection, key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def get(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM pairs WHERE collection = 'default' AND key = ?", (key,)).fetchone()
        return None if row is None else row[0]


def run_round(directory: str, keys: list[str], values: list[str], misses: list[str]) -> dict[str, dict[str, float]]:
    import diskcache

    bare = BareSqlite(directory)
    dc = diskcache.Cache(os.path.join(directory, "diskcache"))
    pa.set_config(database_path=os.path.join(directory, "pairio"))
    pairs = list(zip(keys, values, strict=True))
    out: dict[str, dict[str, float]] = {}

    def per_op(seconds: float) -> float:
        return seconds / N * 1e6

    out["set"] = {
        "sqlite3": per_op(timed(lambda: [bare.set(k, v) for k, v in pairs])),
        "diskcache": per_op(timed(lambda: [dc.set(k, v) for k, v in pairs])),
        "pairio": per_op(timed(lambda: [pa.set(k, v) for k, v in pairs])),
    }
    out["get-hit"] = {
        "sqlite3": per_op(timed(lambda: [bare.get(k) for k in keys])),
        "diskcache": per_op(timed(lambda: [dc.get(k) for k in keys])),
        "pairio": per_op(timed(lambda: [pa.get(k) for k in keys])),
    }
    out["get-miss"] = {
        "sqlite3": per_op(timed(lambda: [bare.get(k) for k in misses])),
        "diskcache": per_op(timed(lambda: [dc.get(k) for k in misses])),
        "pairio": per_op(timed(lambda: [pa.get(k) for k in misses])),
    }
    batches = [keys[i : i + BATCH] for i in range(0, N, BATCH)]
    out["get_many/key"] = {
        "diskcache": per_op(timed(lambda: [[dc.get(k) for k in b] for b in batches])),
        "pairio": per_op(timed(lambda: [pa.get_many(b) for b in batches])),
    }
    assert pa.get_many(batches[0]) == dict(zip(keys[:BATCH], values[:BATCH], strict=True))
    assert pa.get(keys[-1]) == values[-1] and pa.get(misses[0]) is None
    dc.close()
    bare.db.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    rounds = []
    for _ in range(args.rounds):
        keys = [secrets.token_hex(20) for _ in range(N)]
        values = [secrets.token_hex(20) for _ in range(N)]
        misses = [secrets.token_hex(20) for _ in range(N)]
        # A fresh directory on the project's disk (not tmpfs) each round.
        with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(__file__))) as directory:
            rounds.append(run_round(directory, keys, values, misses))

    print(f"{N} random 40-hex keys, {args.rounds} rounds, median microseconds per operation\n")
    print(f"{'operation':<14}{'sqlite3':>10}{'diskcache':>11}{'pairio':>10}{'pairio/sqlite3':>16}{'pairio/diskcache':>18}")
    medians: dict[str, dict[str, float]] = {}
    for op in rounds[0]:
        medians[op] = {name: statistics.median(r[op][name] for r in rounds) for name in rounds[0][op]}
        m = medians[op]
        sq = m.get("sqlite3")
        sq_text = f"{sq:.2f}" if sq else "-"
        ratio_text = f"{m['pairio'] / sq:.2f}x" if sq else "-"
        print(
            f"{op:<14}{sq_text:>10}{m['diskcache']:>11.2f}{m['pairio']:>10.2f}"
            f"{ratio_text:>16}{m['pairio'] / m['diskcache']:>17.2f}x"
        )
    speedup = medians["get-hit"]["pairio"] / medians["get_many/key"]["pairio"]
    print(f"\nget_many of {BATCH}: {speedup:.1f}x faster per key than single gets (target >= 5x)")
    print(f"get-hit vs sqlite3: {medians['get-hit']['pairio'] / medians['get-hit']['sqlite3']:.2f}x (target <= 1.5x)")
    print(f"durable set vs sqlite3: {medians['set']['pairio'] / medians['set']['sqlite3']:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
