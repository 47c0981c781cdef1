"""One SQLite connection per thread, opened in WAL mode, all closed together.

Shared by the log store and the stream store (both in the same database file), so the pragmas
that make their writes durable and their readers non-blocking are set in one place.
"""

from __future__ import annotations

import sqlite3
import threading

from .base import StoreError


class ThreadConnections:
    """``get()`` is this thread's connection (opened on first use); ``close()`` closes all."""

    def __init__(
        self,
        path: str,
        synchronous: str,
        *,
        foreign_keys: bool = False,
        error: type[Exception] = StoreError,
    ) -> None:
        self.path, self.synchronous, self.foreign_keys, self.error = (
            path,
            synchronous,
            foreign_keys,
            error,
        )
        self._local = threading.local()
        self._opened: dict[threading.Thread, sqlite3.Connection] = {}
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            except sqlite3.Error as exc:
                raise self.error(f"cannot open SQLite database {self.path}: {exc}") from exc
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            if self.foreign_keys:
                db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=10000")
            self._local.db = db
            with self._lock:
                self._close_orphans()
                self._opened[threading.current_thread()] = db
        return db

    def _close_orphans(self) -> None:
        """Close the connections of threads that ended (a thread pool replaces idle workers:
        each new one opens a connection, and the old ones held two descriptors each for good)."""
        for thread in [thread for thread in self._opened if not thread.is_alive()]:
            self._opened.pop(thread).close()

    @property
    def open_count(self) -> int:
        with self._lock:
            return len(self._opened)

    def close(self) -> None:
        with self._lock:
            for db in self._opened.values():
                db.close()
            self._opened.clear()
        self._local = threading.local()
