"""Streams in SQLite: the same database file as the log store (WAL, one connection per thread).

``BEGIN IMMEDIATE`` takes SQLite's single write lock, which serializes every append, so per
``(stream, producer)`` as the protocol requires. Readers in other processes learn of appends by
polling (``poll_interval``); writers in this process wake them at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..store.sqlite import SQLiteStore
from ..store.sqlite_connections import ThreadConnections
from .base import SWEEP_BATCH, StreamError
from .sql import SqlStreamStore, Tx

SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    stream_id    TEXT PRIMARY KEY,
    path         TEXT NOT NULL UNIQUE,
    content_type TEXT NOT NULL,
    ttl          INTEGER,
    expires_at   REAL,
    touched_at   REAL NOT NULL,
    tail         INTEGER NOT NULL,
    closed       INTEGER NOT NULL DEFAULT 0,
    closed_by    TEXT,
    stream_seq   TEXT,
    fork_of      TEXT REFERENCES streams (stream_id),
    fork_offset  INTEGER,
    forks        INTEGER NOT NULL DEFAULT 0,
    deleted      INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS streams_chunks (
    stream_id TEXT NOT NULL,
    start     INTEGER NOT NULL,
    stop      INTEGER NOT NULL,
    data      BLOB NOT NULL,
    PRIMARY KEY (stream_id, start)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS streams_producers (
    stream_id   TEXT NOT NULL,
    producer_id TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    PRIMARY KEY (stream_id, producer_id)
) WITHOUT ROWID;
"""


TABLES = ("streams", "streams_chunks", "streams_producers")


class SQLiteStreams(SqlStreamStore):
    """Streams in a SQLite file; ``from_store`` shares the log store's file and settings.

    ``create=False`` (the janitor's): the tables are not created, and a file without them has
    nothing to sweep; a sweep must not add three empty tables to every file it passes over.
    """

    def __init__(
        self, path: str | Path, synchronous: str = "NORMAL", *, create: bool = True
    ) -> None:
        super().__init__()
        self.path = str(path)
        self.synchronous = synchronous
        self._connections = ThreadConnections(self.path, synchronous, error=StreamError)
        self._tables = create
        if create:
            with self._connections.use() as db:
                db.executescript(SCHEMA)

    @classmethod
    def from_store(cls, store: SQLiteStore, *, create: bool = True) -> SQLiteStreams:
        return cls(store.path, store.synchronous, create=create)

    def sweep_expired(self, batch: int = SWEEP_BATCH) -> int:
        """As every store's, or 0 at once in a file that has no stream tables (yet)."""
        return super().sweep_expired(batch) if self._has_tables() else 0

    def _has_tables(self) -> bool:
        """Whether the stream tables are there (made here, or found once: none are dropped)."""
        if not self._tables:
            with self._connections.use() as db:
                found = db.execute(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?, ?)",
                    TABLES,
                ).fetchone()[0]
            self._tables = found == len(TABLES)
        return self._tables

    def _db(self) -> sqlite3.Connection:
        return self._connections.get()

    @contextmanager
    def _tx(self) -> Iterator[Tx]:
        with self._connections.use() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def _read_tx(self) -> Iterator[Tx]:
        with self._connections.use() as db:
            db.execute("BEGIN")  # a snapshot: the stream row and its data agree
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def close(self) -> None:
        self._connections.close()
