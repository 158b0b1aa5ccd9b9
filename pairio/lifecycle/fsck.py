"""The SQLite databases of a store, checked and repaired (``pairio fsck [--repair]``).

A store has the pairs and records (``kv.sqlite3``), the small objects of its content
(``small-objects.sqlite3``), and caches that are rebuilt from nothing when missing (the file
hash cache, the access log, the call statistics). :func:`check` runs SQLite's
``PRAGMA quick_check`` on each, checks the records against the pairs, and finds a database
empty or missing while its content holds objects. :func:`repair` salvages what can still be
read of a damaged database into a new one, keeps the damaged one aside (renamed, never
removed) and puts the new one in its place. Run it while no other process uses the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import struct
import time
import urllib.parse
from pathlib import Path

from ..config import Config
from ..content import small
from ..content.small import FILENAME as SMALL_FILENAME
from ..kv.embedded import DATABASE_FILENAME, MARKER_FILENAME, EmbeddedStore, new_database
from ..wal import create_file, sqlite3
from . import records  # (imported with it: lifecycle.schema, the tables a repaired database holds)

SQLITE_HEADER = b"SQLite format 3\x00"
_CACHES = ("hash_cache.sqlite3", "access.sqlite3", "cache_stats.sqlite3")
# Rows salvaged per table: name, its columns, the primary key's columns.
_KV_TABLES = {"pairs": ("collection", "key"), "entries": ("collection", "key")}
_SMALL_TABLES = {"objects": ("sha1",)}


@dataclasses.dataclass
class Damage:
    """One damaged database: its path, its kind (``pairs``, ``small objects``, ``cache``) and what is wrong."""

    path: Path
    kind: str
    problems: list[str]

    def describe(self) -> str:
        return f"{self.path} ({self.kind}): {'; '.join(self.problems)}"


@dataclasses.dataclass
class Repair:
    """What :func:`repair` did to one database: rows salvaged per table, where the damaged one went."""

    path: Path
    kind: str
    salvaged: dict[str, int]
    aside: Path | None


def databases(config: Config) -> list[tuple[Path, str]]:
    """The SQLite databases of ``config``'s local store, with their kind."""
    found = [(config.database_dir / DATABASE_FILENAME, "pairs"), (config.content_path / SMALL_FILENAME, "small objects")]
    for directory in dict.fromkeys((config.database_dir, config.content_path)):
        found += [(directory / name, "cache") for name in _CACHES]
    return found


def check(config: Config) -> list[Damage]:
    """The damaged databases of ``config``'s local store (an empty list if all are sound)."""
    damaged = []
    for path, kind in databases(config):
        problems = check_database(path, kind, config)
        if problems:
            damaged.append(Damage(path, kind, problems))
    return damaged


def check_database(path: Path, kind: str, config: Config | None = None) -> list[str]:
    """What is wrong with the database at ``path`` of ``kind``: empty if it is sound or (unless it
    held the pairs of a content store that still holds objects) absent or empty."""
    if kind == "pairs" and config is not None:
        lost = EmbeddedStore(path.parent, config.content_path).lost()
        if lost is not None:
            return [lost]
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [f"it cannot be read ({exc.strerror or exc})"]
    if size == 0:
        return []
    try:
        with open(path, "rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        return [f"it cannot be read ({exc.strerror or exc})"]
    if header != SQLITE_HEADER:
        return [f"its header is not an SQLite database's ({header[:16]!r}: zeroed or overwritten)"]
    try:
        connection = _open(path)
    except sqlite3.Error as exc:
        return [f"it cannot be opened ({exc})"]
    try:
        rows = connection.execute("PRAGMA quick_check").fetchall()
        lines = [line for row in rows for line in str(row[0]).splitlines()]
        problems = [] if lines == ["ok"] else [f"quick_check: {line}" for line in lines[:3]]
        if len(lines) > 3:
            problems.append(f"and {len(lines) - 3} more problems")
        if not problems and kind == "pairs":
            problems += _check_records(connection)
    except sqlite3.Error as exc:
        problems = [f"quick_check cannot read it ({exc})"]
    finally:
        connection.close()
    return problems


def _open(path: Path) -> sqlite3.Connection:
    """A read-only connection that writes nothing beside the database (no -shm, no journal)."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(path))
    try:
        connection = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None)
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error:
        connection = sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, isolation_level=None)
    return connection


def _tables(connection: sqlite3.Connection) -> set[str]:
    return {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _check_records(connection: sqlite3.Connection) -> list[str]:
    """The records (table ``entries``) checked against the pairs and their running totals."""
    tables = _tables(connection)
    if "pairs" not in tables:
        return ["it has no table of pairs"]
    if "entries" not in tables:
        return []  # made before records were kept
    problems = []
    orphans = records.count_without_pair(connection)
    if orphans:
        problems.append(f"{orphans} record(s) of cached results have no pair")
    if "entry_totals" in tables:
        total, actual = records.kept_and_actual_size(connection)
        if total is None or int(total) != int(actual):
            problems.append(f"the records' total size is {None if total is None else int(total)}, "
                            f"but they add up to {actual}")
    return problems


# --- repair ----------------------------------------------------------------------------------


def repair(config: Config, damaged: list[Damage]) -> list[Repair]:
    """Repair each of ``damaged`` (from :func:`check`): salvage, keep the damaged file aside, replace it."""
    return [repair_database(d.path, d.kind, config) for d in damaged]


def repair_database(path: Path, kind: str, config: Config | None = None) -> Repair:
    """Salvage the readable rows of the database at ``path`` into a new one put in its place; the
    damaged one (and its WAL) is renamed ``<name>.damaged-<time>`` beside it. A cache is not
    salvaged: it is rebuilt as it is used."""
    directory = path.parent
    salvaged: dict[str, int] = {}
    rows: dict[str, tuple[list[str], list[tuple]]] = {}
    if kind != "cache" and path.exists() and path.stat().st_size > 0:
        rows = _salvage_any(path, _KV_TABLES if kind == "pairs" else _SMALL_TABLES)
    if kind == "small objects" and "objects" in rows:
        columns, found = rows["objects"]
        at = {c: i for i, c in enumerate(columns)}
        if {"sha1", "data"} <= at.keys():  # a row is an object: kept only if it matches its hash
            found = [r for r in found if isinstance(r[at["data"]], bytes)
                     and hashlib.sha1(r[at["data"]]).hexdigest() == r[at["sha1"]]]
        rows["objects"] = (columns, found)
    temp: Path | None = None
    if kind == "pairs":
        temp = new_database(directory, f"{path.name}.repair-")
    elif kind == "small objects":
        temp = directory / f"{path.name}.repair-{os.urandom(6).hex()}"
        create_file(temp)
        with contextlib.closing(sqlite3.connect(temp, isolation_level=None)) as c:
            small.create_schema(c)
    if temp is not None:
        try:
            with contextlib.closing(sqlite3.connect(temp, isolation_level=None)) as c:
                c.execute("BEGIN")
                target = _tables(c)
                for table, (columns, found) in rows.items():
                    if table not in target:
                        continue
                    wanted = [r[1] for r in c.execute(f"PRAGMA table_info({table})")]
                    keep = [i for i, name in enumerate(columns) if name in wanted]
                    names = ", ".join(columns[i] for i in keep)
                    marks = ", ".join("?" * len(keep))
                    insert = f"INSERT OR REPLACE INTO {table} ({names}) VALUES ({marks})"
                    salvaged[table] = 0
                    for row in found:
                        try:  # a row read from a damaged page may break the schema's constraints
                            c.execute(insert, tuple(row[i] for i in keep))
                        except sqlite3.Error:
                            continue
                        salvaged[table] += 1
                if kind == "pairs":
                    # A record whose pair was lost describes nothing any more; the running totals
                    # are those of the records kept.
                    gone = records.delete_without_pair(c)
                    if "entries" in salvaged:
                        salvaged["entries"] -= gone
                    records.recount_size(c)
                c.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
    aside = _set_aside(path)
    if temp is not None:
        os.replace(temp, path)
        if kind == "pairs":
            with contextlib.suppress(OSError):
                (directory / MARKER_FILENAME).touch()
    return Repair(path, kind, salvaged, aside)


def _set_aside(path: Path) -> Path | None:
    """Rename the database at ``path`` (and its WAL) aside; its -shm index is removed. None if absent."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    moved = None
    if path.exists():
        os.rename(path, aside)
        moved = aside
    wal = path.with_name(path.name + "-wal")
    if wal.exists():
        os.rename(wal, aside.with_name(aside.name + "-wal"))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path.with_name(path.name + "-shm"))
    return moved


def _salvage_any(path: Path, tables: dict[str, tuple[str, ...]]) -> dict[str, tuple[list[str], list[tuple]]]:
    """:func:`_salvage`, and where the file's header is damaged (zeroed, overwritten), the same from
    a copy given a new header, for each page size SQLite may have used: the one that reads most."""
    with open(path, "rb") as f:
        header = f.read(len(SQLITE_HEADER))
    if header == SQLITE_HEADER:
        return _salvage(path, tables)
    best: dict[str, tuple[list[str], list[tuple]]] = {}
    copy = path.with_name(f"{path.name}.salvage-{os.urandom(6).hex()}")
    try:
        for page_size in (4096, 1024, 2048, 8192, 16384, 32768, 65536, 512):
            if path.stat().st_size % page_size:
                continue
            with open(path, "rb") as source, open(copy, "wb") as target:
                source.seek(100)
                target.write(_header(page_size))
                while chunk := source.read(1 << 20):
                    target.write(chunk)
            found = _salvage(copy, tables)
            if sum(len(r) for _, r in found.values()) > sum(len(r) for _, r in best.values()):
                best = found
    finally:
        with contextlib.suppress(OSError):
            os.unlink(copy)
    return best


def _header(page_size: int) -> bytes:
    """A database header for ``page_size``: rollback journal, UTF-8, the size taken from the file's."""
    fields = struct.pack(">HBBBBBBIIIIIIIIIIII", 1 if page_size == 65536 else page_size, 1, 1, 0, 64, 32, 32,
                         1, 0, 0, 0, 1, 4, 0, 0, 1, 0, 0, 0)
    header = SQLITE_HEADER + fields
    return header + bytes(92 - len(header)) + struct.pack(">II", 0, sqlite3.sqlite_version_info[0] * 1_000_000
                                                          + sqlite3.sqlite_version_info[1] * 1000
                                                          + sqlite3.sqlite_version_info[2])


def _salvage(path: Path, tables: dict[str, tuple[str, ...]]) -> dict[str, tuple[list[str], list[tuple]]]:
    """Every row of ``tables`` that can still be read: each table is scanned in its key's order
    from both ends, so damage in the middle loses only the rows under the damaged pages."""
    try:
        connection = _open(path)
        # Read the schema as it is, not parsed and checked first: a schema naming a page past the
        # end of a truncated file would make every statement fail.
        connection.execute("PRAGMA writable_schema = 1")
    except sqlite3.Error:
        return {}
    out: dict[str, tuple[list[str], list[tuple]]] = {}
    with contextlib.closing(connection):
        try:
            present = _tables(connection)
        except sqlite3.Error:
            return {}
        for table, key in tables.items():
            if table not in present:
                continue
            try:
                columns = [r[1] for r in connection.execute(f"PRAGMA table_info({table})")]
            except sqlite3.Error:
                continue
            found: dict[tuple, tuple] = {}
            at = [columns.index(k) for k in key]
            for direction in ("ASC", "DESC"):
                order = ", ".join(f"{k} {direction}" for k in key)
                try:
                    cursor = connection.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {order}")
                    while True:
                        row = cursor.fetchone()
                        if row is None:
                            break
                        pk = tuple(row[i] for i in at)
                        if pk in found and direction == "DESC":
                            break  # met the rows read from the other end
                        found[pk] = row
                except sqlite3.Error:
                    continue  # a damaged page: the other end, or the next table
            out[table] = (columns, list(found.values()))
    return out
