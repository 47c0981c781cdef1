"""Coalesced NOTIFY (migration 0006): a run is notified at most once per window for its appends,
status changes still notify at once, and a tail still gets every line, woken or not."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import anyio
import anyio.to_thread
import psycopg
import pytest

from jobtail.store.base import LogLine, RunStatus
from jobtail.store.migrate import MIGRATIONS_DIR
from jobtail.store.postgres import PostgresStore, lines_json
from jobtail.tail import LinesEvent, Tailer, TailEvent
from tests.waiting import wait_for


def _write_function(name: str) -> str:
    text = (MIGRATIONS_DIR / name).read_text()
    found = re.search(r"create or replace function jobtail__write\(.*?\n\$\$;", text, re.S)
    assert found, f"{name} defines jobtail__write"
    return found.group(0)


def test_jobtail_write_is_0004s_but_for_how_it_notifies() -> None:
    """0006 redefines jobtail__write only to change its NOTIFY: if 0004's body changes, so must
    0006's (else applying 0006 would undo the change)."""
    original = _write_function("0004_fencing.sql")
    coalesced = _write_function("0006_notify.sql")
    notify = (
        "    update runs set last_seq = v_max where run_id = r.run_id;\n"
        "    perform pg_notify('jobtail', r.run_id);\n"
    )
    announce = (
        "    if jobtail__announce(r) then\n"
        "        update runs set last_seq = v_max, notified_at = clock_timestamp()"
        " where run_id = r.run_id;\n"
        "    else\n"
        "        update runs set last_seq = v_max where run_id = r.run_id;\n"
        "    end if;\n"
    )
    assert notify in original
    assert coalesced == original.replace(notify, announce)


def line(seq: int) -> LogLine:
    return LogLine(seq, datetime.now(UTC), "INFO", f"line {seq}")


@pytest.fixture
def slow_window_url(pg_url: str) -> Iterator[str]:
    """The test database with a one-minute NOTIFY window: after its first append, a run's
    appends are never notified within the test, so only the tail's trailing polls find them."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        name = conn.execute("select current_database()").fetchone()[0]  # type: ignore[index]
        conn.execute(f'alter database "{name}" set jobtail.notify_window_ms = 60000')
    yield pg_url


def _notified_at(url: str, run_id: str) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("select notified_at from runs where run_id = %s", (run_id,)).fetchone()
        assert row is not None
        return row[0]


@pytest.mark.postgres
def test_appends_within_the_window_send_no_second_notify(slow_window_url: str) -> None:
    store = PostgresStore(slow_window_url, listen=False)
    try:
        run = store.create_run("u", "s")
        store.start_run(run.run_id)
        assert _notified_at(slow_window_url, run.run_id) is None
        store.append(run.run_id, [line(1)])
        first = _notified_at(slow_window_url, run.run_id)
        assert first is not None
        store.append(run.run_id, [line(2)])
        assert _notified_at(slow_window_url, run.run_id) == first  # coalesced: no NOTIFY
        with psycopg.connect(slow_window_url, autocommit=True) as conn:
            conn.execute("set jobtail.notify = 'every'")
            conn.execute(
                "select jobtail_append(%s, %s::jsonb)", (run.run_id, lines_json([line(3)]))
            )
        assert _notified_at(slow_window_url, run.run_id) != first  # 'every': notified again
        assert [x.seq for x in store.read(run.run_id)] == [1, 2, 3]
    finally:
        store.close()


@pytest.mark.postgres
@pytest.mark.anyio
async def test_a_tail_gets_every_line_when_appends_are_coalesced(slow_window_url: str) -> None:
    writer = PostgresStore(slow_window_url, listen=False)
    reader = PostgresStore(slow_window_url)
    try:
        run = writer.create_run("u", "s")
        writer.start_run(run.run_id)
        wait_for(lambda: reader.listen_connects >= 1, what="LISTEN")
        tailer = Tailer(reader)
        got: list[int] = []

        async def view() -> None:
            events: list[TailEvent] = []
            async for event in tailer.follow(run.run_id):
                events.append(event)
                if isinstance(event, LinesEvent):
                    got.extend(x.seq for x in event.lines)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(view)
                await anyio.to_thread.run_sync(
                    lambda: wait_for(lambda: tailer.follower_count == 1, what="the follower")
                )
                for seq in range(1, 6):  # only the first is notified; the window outlasts them
                    await anyio.to_thread.run_sync(writer.append, run.run_id, [line(seq)])
                    await anyio.to_thread.run_sync(
                        lambda seq=seq: wait_for(lambda: seq in got, what=f"line {seq}")
                    )
                await anyio.to_thread.run_sync(writer.finish_run, run.run_id, RunStatus.SUCCEEDED)
        assert got == [1, 2, 3, 4, 5]
        await tailer.close()
    finally:
        writer.close()
        reader.close()
