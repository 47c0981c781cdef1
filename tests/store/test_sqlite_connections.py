"""Per-thread SQLite connections: a thread pool that replaces its workers leaks nothing."""

from __future__ import annotations

import threading
from pathlib import Path

from jobtail.store.sqlite_connections import ThreadConnections


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
