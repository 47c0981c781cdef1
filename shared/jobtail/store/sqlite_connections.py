"""One SQLite connection per thread, opened in WAL mode, all closed together.

Shared by the log store and the stream store (both in the same database file), so the pragmas
that make their writes durable and their readers non-blocking are set in one place.

Closing is safe while other threads are mid-operation (the tail's followers read in worker
threads): each operation holds its thread's connection (``with connections.use() as db``), as
a pool's checkout does, and ``close()`` closes a connection only between operations. It waits
a bounded time for those in flight; one still running after that is closed by its own thread
as the operation ends. A thread that uses the store after ``close()`` opens a new connection,
as before. This is SQLAlchemy's ``Engine.dispose()``: idle connections are closed at once,
checked-out ones when they are returned, and the engine stays usable. Closing a connection
under a running statement could crash the process (or fail the read half way).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from types import TracebackType

from .base import StoreError

CLOSE_WAIT = 2.0  # seconds close() waits for the operations in flight, all together
BUSY_TIMEOUT_MS = 10_000  # how long a statement waits for another connection's lock


class _Held:
    """One thread's connection and the lock each of its operations holds (re-entered by the
    nested calls of one operation: a transaction that looks up a key)."""

    __slots__ = ("db", "depth", "lock", "owner", "retired")

    def __init__(self, owner: ThreadConnections, db: sqlite3.Connection) -> None:
        self.owner, self.db, self.lock, self.depth, self.retired = (
            owner,
            db,
            threading.Lock(),
            0,
            False,
        )

    def __enter__(self) -> sqlite3.Connection:
        if self.depth:
            self.depth += 1
            return self.db
        self.lock.acquire()
        if self.retired:  # close() came by: this thread's next operation opens a new one
            try:
                self.db.close()
                self.db, self.retired = self.owner.connect(), False
                self.owner.register(self)
            except BaseException:
                self.lock.release()
                raise
        self.depth = 1
        return self.db

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.depth -= 1
        if not self.depth:
            if self.retired:
                self.db.close()  # close() stopped waiting for this operation: its end closes
            self.lock.release()


class ThreadConnections:
    """``use()`` holds this thread's connection (opened on first use) for one operation;
    ``close()`` closes them all, none under a running operation."""

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
        self.close_wait = CLOSE_WAIT
        self._local = threading.local()
        self._opened: dict[threading.Thread, _Held] = {}
        self._lock = threading.Lock()

    def use(self) -> _Held:
        """``with connections.use() as db:`` around one operation (statements and rows)."""
        held: _Held | None = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = _Held(self, self.connect())
            self.register(held)
        return held

    def get(self) -> sqlite3.Connection:
        """This thread's connection, not held: for tests and one-off pragmas only."""
        with self.use() as db:
            return db

    def connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self.error(f"cannot open SQLite database {self.path}: {exc}") from exc
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._enter_wal(db)
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        if self.foreign_keys:
            db.execute("PRAGMA foreign_keys=ON")
        return db

    def _enter_wal(self, db: sqlite3.Connection) -> None:
        """Switch a new file to WAL, retrying while another connection holds it.

        SQLite answers "database is locked" at once, without its busy handler, when the switch
        would deadlock with a connection that is itself switching or writing (several processes
        opening a fresh file together). The lock is brief, so the switch is retried for as long
        as any statement would wait.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        pause = 0.001
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    db.close()
                    raise self.error(f"cannot open SQLite database {self.path}: {exc}") from exc
            time.sleep(pause)  # a retry's back-off, not a synchronisation
            pause = min(pause * 2, 0.05)

    def register(self, held: _Held) -> None:
        with self._lock:
            self._close_orphans()
            self._opened[threading.current_thread()] = held

    def _close_orphans(self) -> None:
        """Close the connections of threads that ended (a thread pool replaces idle workers:
        each new one opens a connection, and the old ones held two descriptors each for good)."""
        for thread in [thread for thread in self._opened if not thread.is_alive()]:
            self._opened.pop(thread).db.close()

    @property
    def open_count(self) -> int:
        with self._lock:
            return len(self._opened)

    def close(self) -> None:
        """Close every connection once its operation in flight (if any) is done."""
        with self._lock:
            opened, self._opened = [(held, held.db) for held in self._opened.values()], {}
        deadline = time.monotonic() + self.close_wait
        for held, db in opened:
            if held.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                held.retired = held.retired or held.db is db
                db.close()
                held.lock.release()
            elif held.db is db:
                held.retired = True  # still running: its thread closes it when done
