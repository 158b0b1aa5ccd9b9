"""The tables of the records beside the pairs: ``entries`` (one row per cached result) and
``entry_totals`` (their total size, kept by triggers, and the eviction's inflation).

Registered with the embedded store on import (:func:`pairio.kv.embedded.register_schema`),
which makes them in every database it opens. Their version is ``PRAGMA user_version``, as it
was when the store made them itself, so databases made before read and upgrade unchanged.
"""

from __future__ import annotations

from ..kv.embedded import register_schema

FAMILY = "records"

# Each step only adds tables, indexes and triggers: a database made by an older pairio keeps
# working, and an older pairio keeps working on a migrated database.
# 1: the records of cached results beside their pairs (pairio.lifecycle.records).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS entries (
            collection TEXT NOT NULL,
            key TEXT NOT NULL,
            function TEXT NOT NULL,
            sha1 TEXT NOT NULL,
            objects TEXT NOT NULL DEFAULT '[]',
            code TEXT NOT NULL DEFAULT '{}',
            version TEXT NOT NULL DEFAULT '',
            dependencies TEXT NOT NULL DEFAULT '{}',
            arguments TEXT NOT NULL DEFAULT '{}',
            summary TEXT NOT NULL DEFAULT '{}',
            inputs TEXT NOT NULL DEFAULT '[]',
            size INTEGER NOT NULL,
            seconds REAL NOT NULL,
            created REAL NOT NULL,
            last_used REAL NOT NULL,
            hits INTEGER NOT NULL DEFAULT 0,
            host TEXT NOT NULL DEFAULT '',
            priority REAL NOT NULL,
            PRIMARY KEY (collection, key)
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS entries_by_function ON entries (function, created)",
        "CREATE INDEX IF NOT EXISTS entries_by_created ON entries (created)",
        "CREATE INDEX IF NOT EXISTS entries_by_priority ON entries (priority)",
        "CREATE INDEX IF NOT EXISTS entries_by_sha1 ON entries (sha1)",
        "CREATE TABLE IF NOT EXISTS entry_totals (name TEXT PRIMARY KEY, value REAL NOT NULL)",
        "INSERT OR IGNORE INTO entry_totals (name, value) VALUES ('size', 0), ('inflation', 0)",
        """CREATE TRIGGER IF NOT EXISTS entries_size_insert AFTER INSERT ON entries BEGIN
            UPDATE entry_totals SET value = value + NEW.size WHERE name = 'size'; END""",
        """CREATE TRIGGER IF NOT EXISTS entries_size_delete AFTER DELETE ON entries BEGIN
            UPDATE entry_totals SET value = value - OLD.size WHERE name = 'size'; END""",
        """CREATE TRIGGER IF NOT EXISTS entries_size_update AFTER UPDATE OF size ON entries BEGIN
            UPDATE entry_totals SET value = value - OLD.size + NEW.size WHERE name = 'size'; END""",
    ),
)

register_schema(FAMILY, MIGRATIONS, in_user_version=True)
