"""A viewer resynced from the store re-reads its run: what follows comes from the run as it is
now, not as it was when the viewer began."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import anyio
import anyio.to_thread
import pytest

from jobtail.logger import RunLogger
from jobtail.store.base import RunStatus
from jobtail.tail import EndEvent, LinesEvent, StoreDownEvent, Tailer, TailEvent

from .faults.flaky import FlakyStore
from .waiting import wait_for_async as wait_until

pytestmark = pytest.mark.anyio


def followers_running() -> bool:
    """A follower task still going (its poll thread would outlive the test's store)."""
    return any("run_follower" in repr(t.get_coro()) for t in asyncio.all_tasks())


@pytest.fixture
def flaky(tmp_path: object) -> Iterator[FlakyStore]:
    store = FlakyStore(tmp_path / "flaky.db")  # type: ignore[operator]
    yield store
    store.close()


def seqs(events: list[TailEvent]) -> list[int]:
    return [line.seq for e in events if isinstance(e, LinesEvent) for line in e.lines]


async def test_a_resynced_viewer_replays_from_the_run_as_re_read(flaky: FlakyStore) -> None:
    """The viewer lags while the run writes 40 more lines and finishes. Resynced, it replays
    them from the store up to the run's end as re-read (41), and a failed read meanwhile is
    told with that run, finished, not the running one it started with."""
    run = flaky.create_run("up", "svc")
    flaky.start_run(run.run_id)
    tailer = Tailer(flaky, queue_size=3, buffer_lines=5, retry_first=0.01)
    logger = RunLogger(flaky, run.run_id)
    events: list[TailEvent] = []
    reading = anyio.Event()

    async def slow_viewer() -> None:
        with anyio.fail_after(10):
            async for event in tailer.follow(run.run_id):
                events.append(event)
                if isinstance(event, LinesEvent) and event.lines[-1].seq == 1:
                    await reading.wait()  # stalls while 40 more lines arrive

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow_viewer)
        await wait_until(lambda: tailer.follower_count == 1)
        await anyio.to_thread.run_sync(logger.info, "n1")
        await wait_until(lambda: seqs(events) == [1])
        for n in range(2, 42):
            await anyio.to_thread.run_sync(logger.info, f"n{n}")
        await anyio.to_thread.run_sync(flaky.finish_run, run.run_id, RunStatus.SUCCEEDED)
        await wait_until(lambda: tailer.follower_count == 0)  # its follower saw the end and left
        flaky.fail_reads = 1  # the resynced viewer's replay fails once
        reading.set()
    assert seqs(events) == list(range(1, 42)) and isinstance(events[-1], EndEvent)
    notices = [e for e in events if isinstance(e, StoreDownEvent)]
    assert len(notices) == 1 and notices[0].run is not None
    assert (notices[0].run.status, notices[0].run.last_seq) == (RunStatus.SUCCEEDED, 41)
    await wait_until(lambda: not followers_running())
