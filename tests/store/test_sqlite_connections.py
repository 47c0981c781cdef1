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
