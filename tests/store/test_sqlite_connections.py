"""Per-thread SQLite connections: one per thread for all its operations, a thread pool that
replaces its workers leaks nothing, the switch to WAL retried while another connection holds
the file, and a failed open is the store's error."""

from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

import pytest

from jobtail.store import sqlite_connections
from jobtail.store.base import StoreError
from jobtail.store.sqlite_connections import ThreadConnections

from ..waiting import wait_for


def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    """Each worker of a pool opens its own connection; once it ends, the next thread to open
    one closes it (before, every connection stayed open until the store closed: two file
    descriptors per replaced worker, for good)."""
    connections = ThreadConnections(str(tmp_path / "s.db"), "NORMAL")
    opened = []

    def worker() -> None:
        opened.append(connections.get())
        connections.get().execute("select 1")

    for _ in range(20):
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert len(opened) == 20 and len({id(db) for db in opened}) == 20
    assert connections.open_count == 1  # only the last worker's: the others were closed
    mine = connections.get()
    assert connections.open_count == 1 and mine.execute("select 1").fetchone() == (1,)
    connections.close()
    assert connections.open_count == 0


def test_threads_opening_a_new_file_together_all_get_wal(tmp_path: Path) -> None:
    """Switching a fresh file to WAL can answer "database is locked" at once, past the busy
    handler, when another connection switches it at the same moment. Several processes (or
    threads) opening one new store together then failed at random (a CI run lost one)."""
    failures: list[BaseException] = []
    for round_ in range(100):
        path = str(tmp_path / f"{round_}.db")
        start = threading.Barrier(6)

        def open_one(path: str = path, start: threading.Barrier = start) -> None:
            start.wait(10)
            connections = ThreadConnections(path, "NORMAL")
            try:
                mode = connections.get().execute("PRAGMA journal_mode").fetchone()[0]
                if mode != "wal":
                    failures.append(AssertionError(f"journal mode {mode}"))
            except BaseException as exc:  # collected for the assertion below
                failures.append(exc)
            finally:
                connections.close()

        threads = [threading.Thread(target=open_one) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert failures == []


def test_a_failed_reopen_after_close_leaves_the_thread_free_to_try_again(tmp_path: Path) -> None:
    """After ``close()`` a thread's next operation opens a new connection; if that fails (the
    file's folder is gone for a moment), the error is the store's and the next operation of
    the same thread opens one, rather than waiting for good on the failed one's hold."""
    folder = tmp_path / "data"
    folder.mkdir()
    connections = ThreadConnections(str(folder / "s.db"), "NORMAL")
    got: list[object] = []

    def operations() -> None:
        try:
            connections.get().execute("create table t (x)")
            connections.close()
            folder.rename(tmp_path / "away")
            try:
                connections.get()
            except StoreError as exc:
                got.append(exc)
            (tmp_path / "away").rename(folder)
            with connections.use() as db:
                got.append(db.execute("select count(*) from t").fetchone())
        except BaseException as exc:  # the assertions below say which
            got.append(exc)

    thread = threading.Thread(target=operations, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the thread's next operation waits for good"
    assert len(got) == 2, got
    assert isinstance(got[0], StoreError)
    assert re.fullmatch(r"cannot open SQLite database .*s\.db: .*", str(got[0])), got[0]
    assert got[1] == (0,)
    connections.close()


class CountingConnections(ThreadConnections):
    """Real connections, counted as they are opened."""

    opened = 0

    def connect(self) -> sqlite3.Connection:
        self.opened += 1
        return super().connect()


def test_a_thread_opens_one_connection_for_all_its_operations(tmp_path: Path) -> None:
    connections = CountingConnections(str(tmp_path / "s.db"), "NORMAL")
    with connections.use() as db:
        db.execute("create table t (x)")
    for n in range(3):
        with connections.use() as db:
            db.execute("insert into t values (?)", (n,))
    assert connections.opened == 1 and connections.get() is db
    connections.close()
    with connections.use() as again:  # after close(): one new connection, kept in turn
        assert again is not db and again.execute("select count(*) from t").fetchone() == (3,)
    assert connections.get() is again and connections.opened == 2
    connections.close()


class TracedConnections(ThreadConnections):
    """Real connections whose switches to WAL are recorded, attempt by attempt."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "NORMAL")
        self.switches = 0

    def _enter_wal(self, db: sqlite3.Connection) -> None:
        db.set_trace_callback(self._traced)
        super()._enter_wal(db)  # on failure it closes db
        db.set_trace_callback(None)

    def _traced(self, statement: str) -> None:
        if "journal_mode" in statement.lower():
            self.switches += 1


def _holding(path: Path) -> sqlite3.Connection:
    """A connection holding a write lock on a new file still in rollback-journal mode: a
    switch to WAL answers "database is locked" at once, past the busy handler."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("create table t (x)")
    holder.execute("begin immediate")
    return holder


def _in_thread(connections: ThreadConnections) -> tuple[threading.Thread, list[object]]:
    got: list[object] = []

    def open_one() -> None:
        try:
            got.append(connections.get().execute("PRAGMA journal_mode").fetchone()[0])
        except BaseException as exc:  # the test says which
            got.append(exc)

    thread = threading.Thread(target=open_one, daemon=True)
    thread.start()
    return thread, got


def test_the_switch_to_wal_is_retried_while_another_connection_holds_the_file(
    tmp_path: Path,
) -> None:
    holder = _holding(tmp_path / "s.db")
    connections = TracedConnections(str(tmp_path / "s.db"))
    thread, got = _in_thread(connections)
    wait_for(lambda: connections.switches >= 3, 10, "the switch refused and retried twice")
    holder.execute("rollback")
    thread.join(10)
    assert not thread.is_alive() and got == ["wal"]
    holder.close()
    connections.close()


def test_a_file_held_past_the_busy_timeout_fails_to_open_with_the_store_s_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_connections, "BUSY_TIMEOUT_MS", 200)
    holder = _holding(tmp_path / "s.db")
    connections = TracedConnections(str(tmp_path / "s.db"))
    thread, got = _in_thread(connections)
    thread.join(10)
    assert not thread.is_alive(), "the switch retried past the busy timeout"
    holder.close()
    assert len(got) == 1 and isinstance(got[0], StoreError), got
    assert re.fullmatch(r"cannot open SQLite database .*s\.db: database is locked", str(got[0]))
    assert connections.switches >= 2 and connections.open_count == 0
