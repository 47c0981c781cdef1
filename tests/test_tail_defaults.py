"""A Tailer's default sizes, as the README states them: replays in batches of 1,000 lines (pages
of 10,000 already encoded by the store), a follower's last 10,000 lines kept for late viewers,
and a viewer resynced from the store once it is more than 1,000 events behind."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from jobtail.store.base import LogLine, RunStatus
from jobtail.store.sqlite import SQLiteStore
from jobtail.tail import EncodedLinesEvent, EndEvent, LinesEvent, Tailer, TailEvent
from jobtail.web.sse import framing

from .waiting import wait_for_async as wait_until

pytestmark = pytest.mark.anyio


class ReadsStore(SQLiteStore):
    """A real SQLite store that records the ``after`` of each viewer's range read (``aread``;
    a follower's own reads are polls) and counts the viewers' reads of the run itself."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads_after: list[int] = []
        self.run_reads = 0

    async def aget_run(self, run_id: str):  # type: ignore[no-untyped-def]
        self.run_reads += 1
        return await super().aget_run(run_id)

    async def aread(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.reads_after.append(kwargs.get("after", args[1] if len(args) > 1 else 0))
        return await super().aread(*args, **kwargs)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReadsStore]:
    store = ReadsStore(tmp_path / "defaults.db")
    yield store
    store.close()


def lines(first: int, last: int) -> list[LogLine]:
    now = datetime.now(UTC)
    return [LogLine(seq, now, "INFO", f"line {seq}") for seq in range(first, last + 1)]


async def collect(events: AsyncIterator[TailEvent]) -> list[TailEvent]:
    with anyio.fail_after(60):
        return [event async for event in events]


def seqs(events: list[TailEvent]) -> list[int]:
    return [line.seq for e in events if isinstance(e, LinesEvent) for line in e.lines]


async def test_a_finished_run_replays_in_batches_of_1000_and_encoded_pages_of_10000(
    store: ReadsStore,
) -> None:
    run = store.create_run("up", "svc")
    store.append(run.run_id, lines(1, 10_001))
    store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    tailer = Tailer(store)
    plain = await collect(tailer.follow(run.run_id, after=8_999))
    assert [len(e.lines) for e in plain if isinstance(e, LinesEvent)] == [1000, 2]
    assert seqs(plain) == list(range(9_000, 10_002)) and isinstance(plain[-1], EndEvent)
    encoded = await collect(tailer.follow(run.run_id, framing=framing(run.run_id)))
    pages = [(e.count, e.last_seq) for e in encoded if isinstance(e, EncodedLinesEvent)]
    assert pages == [(10_000, 10_000), (1, 10_001)] and isinstance(encoded[-1], EndEvent)


async def test_a_late_viewer_reads_only_what_is_older_than_the_followers_last_10000_lines(
    store: ReadsStore,
) -> None:
    run = store.create_run("up", "svc")
    store.start_run(run.run_id)
    tailer = Tailer(store)
    first: list[TailEvent] = []
    late: list[TailEvent] = []

    async def view(into: list[TailEvent]) -> None:
        with anyio.fail_after(60):
            async for event in tailer.follow(run.run_id):
                into.append(event)

    async with anyio.create_task_group() as tg:
        tg.start_soon(view, first)
        await wait_until(lambda: tailer.follower_count == 1)
        await anyio.to_thread.run_sync(store.append, run.run_id, lines(1, 10_001))
        follower = tailer._followers[run.run_id]
        await wait_until(lambda: follower.cursor == 10_001)
        assert store.reads_after == []
        tg.start_soon(view, late)
        await wait_until(lambda: seqs(late)[-1:] == [10_001])
        # line 1 from the store, the 10,000 after it from the follower's memory
        assert store.reads_after == [0]
        await anyio.to_thread.run_sync(store.finish_run, run.run_id, RunStatus.SUCCEEDED)
    assert seqs(first) == seqs(late) == list(range(1, 10_002))
    assert isinstance(late[-1], EndEvent)


@pytest.mark.parametrize(("behind", "resynced"), [(1000, False), (1001, True)])
async def test_a_viewer_is_resynced_from_the_store_once_more_than_1000_events_behind(
    store: ReadsStore, behind: int, resynced: bool
) -> None:
    run = store.create_run("up", "svc")
    store.start_run(run.run_id)
    store.append(run.run_id, lines(1, 1))
    tailer = Tailer(store, batch=1)  # one line per poll: one published event per line
    events: list[TailEvent] = []
    stalled = anyio.Event()

    async def stalled_viewer() -> None:
        with anyio.fail_after(60):
            async for event in tailer.follow(run.run_id):
                events.append(event)
                if seqs(events) == [1]:
                    await stalled.wait()  # subscribed, reading nothing while events pile up

    async with anyio.create_task_group() as tg:
        tg.start_soon(stalled_viewer)
        await wait_until(lambda: seqs(events) == [1])
        assert store.reads_after == [0]  # its replay of line 1, before the follower's cursor
        last = 1 + behind
        await anyio.to_thread.run_sync(store.append, run.run_id, lines(2, last))
        await wait_until(lambda: tailer._followers[run.run_id].cursor == last)
        stalled.set()
        await wait_until(lambda: seqs(events)[-1:] == [last])
        await anyio.to_thread.run_sync(store.finish_run, run.run_id, RunStatus.SUCCEEDED)
    assert seqs(events) == list(range(1, last + 1)) and isinstance(events[-1], EndEvent)
    # a resync reads the run again (its first read: when the viewer came)
    assert store.run_reads == (2 if resynced else 1)
