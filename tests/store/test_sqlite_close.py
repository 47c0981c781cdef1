"""Closing a SQLite store while other threads read from it (the tail's followers poll in worker
threads): no connection is closed under a statement, and the store stays usable after it.

Each read is held mid-statement by a SQLite progress handler on its own connection, so the
close lands while the statement runs, every time.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobtail.store.base import LogLine
from jobtail.store.sqlite import SQLiteStore
from jobtail.streams.base import StreamError
from jobtail.streams.sqlite import SQLiteStreams

from ..waiting import wait_for

T = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LINES = 300


@dataclass
class PausedRead:
    """A ``store.read`` in a thread of its own, paused inside SQLite until ``resume``."""

    store: SQLiteStore
    run_id: str
    inside: threading.Event = field(default_factory=threading.Event)
    resume: threading.Event = field(default_factory=threading.Event)
    got: list[object] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._read)
        self.thread.start()
        wait_for(self.inside.is_set, 10, "the read to be inside its statement")

    def _pause(self) -> int:
        self.inside.set()
        self.resume.wait(10)
        return 0  # go on

    def _read(self) -> None:
        self.db = self.store._db()
        self.db.set_progress_handler(self._pause, 100)
        try:
            self.got.append(self.store.read(self.run_id, limit=LINES))
        except Exception as exc:  # the test says which
            self.got.append(exc)

    def finish(self) -> object:
        self.resume.set()
        self.thread.join(10)
        assert not self.thread.is_alive() and len(self.got) == 1
        return self.got[0]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "s.db")
    yield opened
    opened.close()


def _run(store: SQLiteStore) -> str:
    run = store.create_run("up", "svc")
    assert store.claim_run(run.run_id) is not None
    store.append(run.run_id, [LogLine(n, T, "INFO", f"line {n}") for n in range(1, LINES + 1)])
    return run.run_id


def _seqs(got: object) -> list[int]:
    assert isinstance(got, list), got
    return [line.seq for line in got]


def test_close_waits_for_a_read_in_flight_and_the_store_stays_usable(
    store: SQLiteStore,
) -> None:
    run_id = _run(store)  # this thread's connection is idle: closed at once
    store._connections.close_wait = 60.0  # never reached: the read ends first
    read = PausedRead(store, run_id)
    closer = threading.Thread(target=store.close)
    closer.start()
    wait_for(lambda: store._connections.open_count == 0, 10, "close() to begin")
    closer.join(0.3)  # a window to see close() return early in, not a synchronisation
    assert closer.is_alive()  # waiting for the read, not closing under it
    assert _seqs(read.finish()) == list(range(1, LINES + 1))
    closer.join(10)
    assert not closer.is_alive()
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        read.db.execute("select 1")  # closed once the read was done
    assert _seqs(store.read(run_id, limit=LINES)) == list(range(1, LINES + 1))  # a new one
    assert store._connections.open_count == 1


def test_a_read_longer_than_the_close_wait_finishes_and_its_thread_closes_the_connection(
    store: SQLiteStore,
) -> None:
    """close() waits a bounded time; a read still running after it keeps its connection to
    the end of the operation, then its thread closes it."""
    run_id = _run(store)
    store._connections.close_wait = 0.0
    read = PausedRead(store, run_id)
    store.close()  # returns at once: the read holds its connection
    assert store._connections.open_count == 0
    assert _seqs(read.finish()) == list(range(1, LINES + 1))
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        read.db.execute("select 1")


def test_a_thread_whose_connection_was_closed_opens_a_new_one(tmp_path: Path) -> None:
    streams = SQLiteStreams(tmp_path / "s.db")
    before = streams._db()
    streams.close()
    with pytest.raises(StreamError, match="no stream at 'runs/none'"):
        streams.head("runs/none")
    reopened = streams._db()
    assert reopened is not before and streams._connections.open_count == 1
    with pytest.raises(StreamError, match="no stream at 'runs/other'"):
        streams.head("runs/other")
    assert streams._db() is reopened  # kept for the thread's next operations, as the first
    streams.close()
