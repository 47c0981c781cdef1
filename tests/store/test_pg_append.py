"""PostgreSQL's one-line append: the common case (the run's owner adding its next line) is one
statement on a connection used within the last second (no check round trip, no call of
jobtail_append); anything else goes through jobtail_append, which refuses or accepts it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from jobtail.store.base import LogLine, RunFencedError, SeqGapError, utcnow
from jobtail.store.postgres import APPEND_NEXT, NOTIFY_AFTER, PostgresStore


class _Spy:
    """A pooled connection that records each statement it runs."""

    def __init__(self, conn: Any, ran: list[str]) -> None:
        self._conn, self._ran = conn, ran

    def execute(self, query: Any, params: Any = None) -> Any:
        self._ran.append(str(query))
        return self._conn.execute(query, params)


class _Recording(PostgresStore):
    """The real store, recording each statement it runs and each pool check it makes."""

    def __init__(self, url: str) -> None:
        self.ran: list[str] = []
        self.checks = 0
        super().__init__(url, listen=False, max_size=1)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        with super()._connection() as conn:
            yield _Spy(conn, self.ran)

    def _check_idle(self, conn: Any) -> None:
        self.checks += 1
        super()._check_idle(conn)


@pytest.fixture
def store(pg_url: str) -> Iterator[_Recording]:
    store = _Recording(pg_url)
    yield store
    store.close()


def _line(seq: int, message: str | None = None) -> LogLine:
    return LogLine(seq, utcnow(), "INFO", message or f"line {seq}")


def test_the_next_line_of_the_owner_is_one_statement(store: _Recording) -> None:
    run = store.claim_run(store.create_run("u", "s").run_id)
    assert run is not None
    heard: list[str] = []
    store.listeners.add(heard.append)
    store.ran.clear()
    assert store.append(run.run_id, [_line(1)], epoch=run.epoch) == 1
    assert store.append(run.run_id, [_line(2, "nul \x00 here")]) == 2
    # the first is announced (after its commit, see NOTIFY_AFTER); the second, within the
    # coalescing window, is not
    assert store.ran[:3] == [APPEND_NEXT, NOTIFY_AFTER, APPEND_NEXT]
    assert heard == [run.run_id, run.run_id]
    lines = store.read(run.run_id)
    assert [(x.seq, x.message) for x in lines] == [(1, "line 1"), (2, "nul \ufffd here")]
    got = store.get_run(run.run_id)
    assert got is not None and got.last_seq == 2


def test_anything_else_goes_through_jobtail_append(store: _Recording) -> None:
    run = store.claim_run(store.create_run("u", "s").run_id)
    assert run is not None
    store.append(run.run_id, [_line(1)])
    store.ran.clear()
    assert store.append(run.run_id, [_line(1, "retried")]) == 1  # a retry: a no-op
    assert len(store.ran) == 2 and "jobtail_append" in store.ran[1]
    with pytest.raises(SeqGapError):
        store.append(run.run_id, [_line(3)])
    with pytest.raises(RunFencedError):
        store.append(run.run_id, [_line(2)], epoch=run.epoch + 1)
    assert [x.message for x in store.read(run.run_id)] == ["line 1"]


def test_a_connection_used_within_a_second_is_not_checked_again(
    store: _Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = store.create_run("u", "s").run_id  # the pool's one connection answered just now
    checked: list[object] = []
    check = ConnectionPool.check_connection

    def counted(conn: Any) -> None:
        checked.append(conn)
        check(conn)

    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(counted))
    store.append(run_id, [_line(1)])
    store.append(run_id, [_line(2)])
    assert checked == [] and store.checks >= 2  # the pool asked; no query answered it
    store._used.clear()  # as if unused for longer than CHECK_IDLE
    store.append(run_id, [_line(3)])
    assert len(checked) == 1
    assert [x.seq for x in store.read(run_id)] == [1, 2, 3]
