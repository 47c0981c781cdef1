"""A follower waiting out its backoff after a failed poll is woken by a local commit: a writer in
this process means the store is back, so the follower retries at once instead of leaving its
viewers in silence for the rest of the backoff."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from jobtail.logger import RunLogger
from jobtail.store.base import RunStatus
from jobtail.tail import EndEvent, LinesEvent, StoreDownEvent, Tailer, TailEvent

from .faults.flaky import FlakyStore
from .waiting import wait_for_async as wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[FlakyStore]:
    store = FlakyStore(tmp_path / "flaky.db")
    yield store
    store.close()


def seqs(events: list[TailEvent]) -> list[int]:
    return [line.seq for e in events if isinstance(e, LinesEvent) for line in e.lines]


def downs(events: list[TailEvent]) -> list[StoreDownEvent]:
    return [e for e in events if isinstance(e, StoreDownEvent)]


async def test_a_local_commit_retries_a_failed_poll_at_once(flaky: FlakyStore) -> None:
    run = flaky.create_run("up", "svc")
    flaky.start_run(run.run_id)
    # a backoff no test waits out: only a wake-up brings the next try
    tailer = Tailer(flaky, retry_first=3600, retry_max=3600, give_up_after=7200)
    logger = RunLogger(flaky, run.run_id)
    events: list[TailEvent] = []

    async def view() -> None:
        with anyio.fail_after(60):
            async for event in tailer.follow(run.run_id):
                events.append(event)

    async def write(message: str) -> None:
        await anyio.to_thread.run_sync(logger.info, message)

    async with anyio.create_task_group() as tg:
        tg.start_soon(view)
        await wait_until(lambda: tailer.follower_count == 1)
        await write("one")
        await wait_until(lambda: seqs(events) == [1])
        flaky.fail_polls = 1
        await write("two")  # its wake-up's poll (or an idle one) fails: retried in an hour
        await wait_until(lambda: downs(events))
        # the follower is waiting out its backoff now (the notice reached us from its wait)
        await write("three")
        await wait_until(lambda: seqs(events) == [1, 2, 3], timeout=15)
        await anyio.to_thread.run_sync(flaky.finish_run, run.run_id, RunStatus.SUCCEEDED)
    assert [(e.attempt, e.retry_in) for e in downs(events)] == [(1, 3600)]
    assert isinstance(events[-1], EndEvent) and tailer.follower_count == 0
