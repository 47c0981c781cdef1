"""A burst of per-line commits in the server's own process: one wake-up per follower read, the
viewers served before the next read, every line once and in order; a lone line still at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from jobtail import tail_follower
from jobtail.logger import RunLogger
from jobtail.store.base import LogLine, Run, RunStatus
from jobtail.store.sqlite import SQLiteStore
from jobtail.tail import EndEvent, LinesEvent, Tailer, TailEvent

from .waiting import wait_for_async as wait_until

pytestmark = pytest.mark.anyio


class WakeCountingLoop(asyncio.SelectorEventLoop):
    """An event loop that counts the callbacks other threads (or listeners) hand it."""

    def __init__(self) -> None:
        super().__init__()
        self.handed: list[Callable[..., Any]] = []

    def call_soon_threadsafe(self, callback, *args, context=None):  # type: ignore[no-untyped-def, override]
        self.handed.append(callback)
        return super().call_soon_threadsafe(callback, *args, context=context)


def test_a_burst_of_commits_wakes_the_follower_once(tmp_path: Path) -> None:
    """100 lines committed one by one while the follower waits hand the loop one wake-up,
    not one per line: a writer in this process must not flood the event loop."""
    store = SQLiteStore(tmp_path / "s.db")
    run = store.create_run("up", "svc")
    store.start_run(run.run_id)
    logger = RunLogger(store, run.run_id)

    async def scenario(loop: WakeCountingLoop) -> list[TailEvent]:
        tailer = Tailer(store)
        events: list[TailEvent] = []

        async def view() -> None:
            async for event in tailer.follow(run.run_id):
                events.append(event)

        viewer = asyncio.create_task(view())
        await wait_until(lambda: tailer.follower_count == 1)
        await wait_until(lambda: any(e is not None for e in events))  # subscribed
        before = len([c for c in loop.handed if c == tailer._wake])
        for n in range(1, 101):  # on the loop's thread: no wake-up can run in between
            logger.info(f"line {n}")
        await wait_until(lambda: _count(events) == 100)
        wakes = len([c for c in loop.handed if c == tailer._wake]) - before
        viewer.cancel()
        await asyncio.gather(viewer, return_exceptions=True)
        assert wakes == 1
        return events

    with asyncio.Runner(loop_factory=WakeCountingLoop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, WakeCountingLoop)
        events = runner.run(scenario(loop))
    assert [line.seq for e in _lines(events) for line in e.lines] == list(range(1, 101))
    store.close()


def _lines(events: list[TailEvent]) -> list[LinesEvent]:
    return [e for e in events if isinstance(e, LinesEvent)]


class BusyStore(SQLiteStore):
    """Real SQLite where a writer commits its next ``per_read`` lines whenever the follower
    starts a read (until ``lines`` are in), so every read finds commits that came while it was
    under way; ``log`` records the reads and what the viewer received, in order."""

    def __init__(self, path: Path, lines: int, per_read: int = tail_follower.BURST_LINES) -> None:
        super().__init__(path)
        self.lines, self.per_read = lines, per_read
        self.log: list[tuple[str, int]] = []
        self.logger: RunLogger | None = None

    async def apoll(self, run_id: str, after: int, limit: int) -> tuple[Run | None, list[LogLine]]:
        self.log.append(("read", after))
        for _ in range(self.per_read):
            if self.logger is not None and self.logger.seq < self.lines:
                self.logger.info(f"line {self.logger.seq + 1}")
        return await super().apoll(run_id, after, limit)


async def _watch_busy(store: BusyStore) -> list[TailEvent]:
    """Follow the store's run while its writer commits at every read; every event seen."""
    run = store.create_run("up", "svc")
    store.start_run(run.run_id)
    tailer = Tailer(store)
    events: list[TailEvent] = []

    async def view() -> None:
        with anyio.fail_after(20):
            async for event in tailer.follow(run.run_id):
                events.append(event)
                if isinstance(event, LinesEvent):
                    store.log.append(("sent", event.lines[-1].seq))

    async with anyio.create_task_group() as tg:
        tg.start_soon(view)
        await wait_until(lambda: tailer.follower_count == 1)
        store.logger = RunLogger(store, run.run_id)
        store.logger.info("line 1")  # the first commit starts the writing
        await wait_until(lambda: store.logger is not None and store.logger.seq == store.lines)
        await anyio.to_thread.run_sync(store.finish_run, run.run_id, RunStatus.SUCCEEDED)
    await tailer.close()
    return events


async def test_a_burst_is_sent_to_the_viewers_before_the_next_read(tmp_path: Path) -> None:
    """While commits keep coming, several to a read, the follower lets its viewers send each
    batch before it reads the next (so a burst becomes fewer, larger batches); the lines arrive
    once, in order, and the end comes last."""
    store = BusyStore(tmp_path / "s.db", lines=50)
    events = await _watch_busy(store)
    sent = [seq for what, seq in store.log if what == "sent"]
    for at, (what, after) in enumerate(store.log):
        # past line ``after`` only once the viewer has it, while the burst lasts (a read that
        # finds the writer done is no burst: the one after it comes at once)
        if what == "read" and 0 < after < store.lines - store.per_read:
            assert ("sent", after) in store.log[:at], store.log[: at + 1]
    assert len(sent) < 50 / tail_follower.BURST_LINES + 2  # and the burst came in a batch per read
    assert [line.seq for e in _lines(events) for line in e.lines] == list(range(1, 51))
    assert isinstance(events[-1], EndEvent)


async def test_a_writer_at_its_own_pace_is_never_paused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that finds fewer than ``BURST_LINES`` lines is no burst, even when the next
    commit came during the fan-out (at thousands of viewers it often does): the next read
    comes at once, with no pause, and every line arrives once, in order; from
    ``BURST_LINES`` lines a read on, the follower pauses."""
    pauses: list[float] = []
    breathe = tail_follower._breathe

    async def counted(started: float) -> None:
        pauses.append(started)
        await breathe(started)

    monkeypatch.setattr(tail_follower, "_breathe", counted)
    # the test's first line and the first read's lines make one batch: one short of a burst
    paced = BusyStore(tmp_path / "paced.db", lines=20, per_read=tail_follower.BURST_LINES - 2)
    events = await _watch_busy(paced)
    assert pauses == []
    assert [line.seq for e in _lines(events) for line in e.lines] == list(range(1, 21))
    assert isinstance(events[-1], EndEvent)
    await _watch_busy(BusyStore(tmp_path / "burst.db", lines=20))
    assert pauses


async def test_a_line_that_comes_alone_reaches_the_viewer_at_once(tmp_path: Path) -> None:
    """Each of several lines logged one at a time reaches the viewer on its own wake-up (the
    store is never polled here: its interval is a minute), so no line waits for another."""
    store = SQLiteStore(tmp_path / "s.db")
    store.poll_interval = 60.0
    run = store.create_run("up", "svc")
    store.start_run(run.run_id)
    tailer = Tailer(store)
    logger = RunLogger(store, run.run_id)
    events: list[TailEvent] = []

    async def view() -> None:
        async for event in tailer.follow(run.run_id):
            events.append(event)

    async with anyio.create_task_group() as tg:
        tg.start_soon(view)
        await wait_until(lambda: tailer.follower_count == 1)
        for n in range(1, 6):
            await anyio.to_thread.run_sync(logger.info, f"line {n}")
            await wait_until(lambda n=n: _count(events) == n, timeout=5)
        tg.cancel_scope.cancel()
    assert [line.seq for e in _lines(events) for line in e.lines] == [1, 2, 3, 4, 5]
    await tailer.close()


def _count(events: list[TailEvent]) -> int:
    return sum(len(e.lines) for e in _lines(events))
