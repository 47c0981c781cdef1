"""Encode once, wake once: viewers of a run share the follower's encoded batches, and the bytes
are exactly those of the per-line SSE encoding (ids keep the global seq in filtered views)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
import pytest

from jobtail.fanout import Fanout, Published
from jobtail.logger import RunLogger
from jobtail.store.base import Framing, LogLine, RunStatus, utcnow
from jobtail.store.sqlite import SQLiteStore
from jobtail.tail import (
    EncodedLinesEvent,
    EndEvent,
    LinesEvent,
    StatusEvent,
    Tailer,
    TailEvent,
    WindowEndEvent,
)
from jobtail.web.sse import framing, line_event

from .waiting import wait_for_async as wait_until

pytestmark = pytest.mark.anyio


def per_line_bytes(run_id: str, lines: list[LogLine], min_level: int = 0) -> bytes:
    """The encoding every viewer did on its own before: one sse-starlette event per line."""
    levels = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}
    kept = [line for line in lines if levels[line.log_level] >= min_level]
    return b"".join(line_event(run_id, line).encode() for line in kept)


def wire(events: list[TailEvent]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, EncodedLinesEvent))


async def gather(into: list[TailEvent], events: AsyncIterator[TailEvent]) -> None:
    with anyio.fail_after(10):
        async for event in events:
            into.append(event)


MESSAGES = [
    ("INFO", "plain"),
    ("WARNING", 'quote " backslash \\ newline \n return \r tab \t'),
    ("DEBUG", "caf\u00e9 \u2603 \U0001f600 \u2028 \x01 \x7f"),
    ("ERROR", "with fields"),
]


async def test_live_viewers_share_the_same_bytes_as_the_per_line_encoding(
    sqlite_store: SQLiteStore,
) -> None:
    run = sqlite_store.create_run("up", "svc")
    sqlite_store.start_run(run.run_id)
    tailer = Tailer(sqlite_store)
    logger = RunLogger(sqlite_store, run.run_id)
    frame = framing(run.run_id)
    views: list[list[TailEvent]] = [[], [], []]
    async with anyio.create_task_group() as tg:
        tg.start_soon(gather, views[0], tailer.follow(run.run_id, framing=frame))
        tg.start_soon(gather, views[1], tailer.follow(run.run_id, framing=frame))
        tg.start_soon(
            gather, views[2], tailer.follow(run.run_id, framing=frame, min_level="WARNING")
        )
        await wait_until(
            lambda: (
                tailer.follower_count == 1 and len(tailer._followers[run.run_id].subscribers) == 3
            )
        )
        for level, message in MESSAGES:
            fields = {"step": 2, "ratio": 0.5, "name": "\u00e9"} if message == "with fields" else {}
            await anyio.to_thread.run_sync(functools.partial(logger.log, level, message, **fields))
        await anyio.to_thread.run_sync(sqlite_store.finish_run, run.run_id, RunStatus.SUCCEEDED)
    stored = sqlite_store.read(run.run_id)
    assert len(stored) == len(MESSAGES)
    assert wire(views[0]) == wire(views[1]) == per_line_bytes(run.run_id, stored)
    assert wire(views[2]) == per_line_bytes(run.run_id, stored, min_level=30)
    assert b"id: %s:2\n" % run.run_id.encode() in wire(views[2])  # the global seq, not 1
    assert b"id: %s:4\n" % run.run_id.encode() in wire(views[2])
    assert all(isinstance(v[-1], EndEvent) for v in views)
    assert not any(isinstance(e, LinesEvent) for v in views for e in v)
    # the batches the unfiltered viewers got are one bytes object each, shared
    firsts = [[e.data for e in v if isinstance(e, EncodedLinesEvent)] for v in views[:2]]
    assert any(a is b for a, b in zip(*firsts, strict=False))


async def test_a_finished_run_replays_in_pages_encoded_by_the_store(
    sqlite_store: SQLiteStore,
) -> None:
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id)
    for n in range(2500):
        logger.log(["INFO", "WARNING"][n % 2], f"n{n}", n=n)
    sqlite_store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    tailer = Tailer(sqlite_store, page=1000)
    frame = framing(run.run_id)
    events: list[TailEvent] = []
    await gather(events, tailer.follow(run.run_id, after=10, framing=frame))
    stored = sqlite_store.read(run.run_id, after=10, limit=10_000)
    pages = [e for e in events if isinstance(e, EncodedLinesEvent)]
    assert [p.count for p in pages] == [1000, 1000, 490]
    assert wire(events) == per_line_bytes(run.run_id, stored)
    assert isinstance(events[0], StatusEvent) and isinstance(events[-1], EndEvent)
    warned: list[TailEvent] = []
    await gather(warned, tailer.follow(run.run_id, framing=frame, min_level="WARNING"))
    everything = sqlite_store.read(run.run_id, limit=10_000)
    assert wire(warned) == per_line_bytes(run.run_id, everything, min_level=30)


async def test_a_slow_viewer_of_encoded_batches_resyncs_from_the_store(
    sqlite_store: SQLiteStore,
) -> None:
    run = sqlite_store.create_run("up", "svc")
    tailer = Tailer(sqlite_store, queue_size=3, buffer_lines=5)
    logger = RunLogger(sqlite_store, run.run_id)
    events: list[TailEvent] = []
    reading = anyio.Event()

    async def slow_viewer() -> None:
        async for event in tailer.follow(run.run_id, framing=framing(run.run_id)):
            events.append(event)
            if isinstance(event, EncodedLinesEvent) and event.last_seq == 1:
                await reading.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow_viewer)
        await wait_until(lambda: tailer.follower_count == 1)
        await anyio.to_thread.run_sync(logger.info, "n1")
        await wait_until(lambda: bool(events) and wire(events) != b"")
        for n in range(2, 42):
            await anyio.to_thread.run_sync(logger.info, f"n{n}")
        await wait_until(lambda: tailer._followers[run.run_id].cursor == 41)
        await anyio.to_thread.run_sync(sqlite_store.finish_run, run.run_id, RunStatus.SUCCEEDED)
        reading.set()
    assert wire(events) == per_line_bytes(run.run_id, sqlite_store.read(run.run_id))
    assert isinstance(events[-1], EndEvent)


async def test_the_log_wakes_every_waiter_once_and_drops_the_oldest() -> None:
    fanout = Fanout(capacity=2)
    woken: list[int] = []

    async def waiter(i: int) -> None:
        await fanout.wait(0)
        woken.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(waiter, i)
        await wait_until(lambda: len(fanout._signal._waiters) == 5)  # type: ignore[attr-defined]
        fanout.publish(WindowEndEvent(1))
    assert sorted(woken) == [0, 1, 2, 3, 4]
    fanout.publish(WindowEndEvent(2))
    fanout.publish(WindowEndEvent(3))
    assert fanout.since(0) is None and fanout.end == 3
    assert [item.event for item in fanout.since(1) or []] == [WindowEndEvent(2), WindowEndEvent(3)]


async def test_a_viewer_joining_a_live_run_gets_store_and_buffer_bytes_once_each(
    sqlite_store: SQLiteStore,
) -> None:
    """Encoded, a late viewer's replay is the store's bytes up to the follower's buffer, then
    the buffer's: the same bytes as the per-line encoding, counted, ending at the right seq."""
    run = sqlite_store.create_run("up", "svc")
    sqlite_store.start_run(run.run_id)
    tailer = Tailer(sqlite_store, buffer_lines=3)
    logger = RunLogger(sqlite_store, run.run_id)
    frame = framing(run.run_id)
    first: list[TailEvent] = []
    second: list[TailEvent] = []

    def counted(events: list[TailEvent]) -> int:
        return sum(e.count for e in events if isinstance(e, EncodedLinesEvent))

    async with anyio.create_task_group() as tg:
        tg.start_soon(gather, first, tailer.follow(run.run_id, framing=frame))
        await wait_until(lambda: tailer.follower_count == 1)
        for n in range(1, 11):
            await anyio.to_thread.run_sync(logger.info, f"line {n}")
        follower = tailer._followers[run.run_id]
        await wait_until(lambda: [line.seq for line in follower.buffer] == [8, 9, 10])
        tg.start_soon(gather, second, tailer.follow(run.run_id, framing=frame))
        await wait_until(lambda: counted(second) == 10)
        replayed = [e for e in second if isinstance(e, EncodedLinesEvent)]
        assert replayed[-1].last_seq == 10
        await anyio.to_thread.run_sync(sqlite_store.finish_run, run.run_id, RunStatus.SUCCEEDED)
    stored = sqlite_store.read(run.run_id)
    assert wire(second) == wire(first) == per_line_bytes(run.run_id, stored)
    assert counted(second) == 10 and isinstance(second[-1], EndEvent)


class Recorder:
    """A viewer's sink (``fanout.Sink``): what the follower writes goes into the same list as
    the bytes of the events the viewer's own task yields, so their order shows."""

    def __init__(self, into: list[bytes], busy_after: int | None = None) -> None:
        self.into, self.busy_after = into, busy_after
        self.ready = True
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.into.append(data)
        self.writes += 1
        if self.writes == self.busy_after:
            self.ready = False  # as a response whose socket is full: its task takes over


async def view(
    into: list[bytes], events: list[TailEvent], follow: AsyncIterator[TailEvent]
) -> None:
    with anyio.fail_after(10):
        async for event in follow:
            events.append(event)
            if isinstance(event, EncodedLinesEvent):
                into.append(event.data)


def readers(tailer: Tailer, run_id: str) -> int:
    follower = tailer._followers.get(run_id)
    return len(follower.fanout._readers) if follower else 0


async def test_caught_up_viewers_get_their_lines_written_by_the_follower(
    sqlite_store: SQLiteStore,
) -> None:
    """Their tasks yield the status and the end, never a line: the follower wrote every line,
    the same bytes as the per-line encoding, level filter and global seqs kept."""
    run = sqlite_store.create_run("up", "svc")
    sqlite_store.start_run(run.run_id)
    tailer = Tailer(sqlite_store)
    logger = RunLogger(sqlite_store, run.run_id)
    frame = framing(run.run_id)
    wires: list[list[bytes]] = [[], []]
    views: list[list[TailEvent]] = [[], []]
    sinks = [Recorder(wires[0]), Recorder(wires[1])]
    async with anyio.create_task_group() as tg:
        follow = tailer.follow(run.run_id, framing=frame, sink=sinks[0])
        tg.start_soon(view, wires[0], views[0], follow)
        follow = tailer.follow(run.run_id, framing=frame, min_level="WARNING", sink=sinks[1])
        tg.start_soon(view, wires[1], views[1], follow)
        await wait_until(lambda: readers(tailer, run.run_id) == 2)
        for n, (level, message) in enumerate(MESSAGES, 1):
            await anyio.to_thread.run_sync(logger.log, level, message)
            await wait_until(lambda n=n: tailer._followers[run.run_id].cursor == n)
        await anyio.to_thread.run_sync(sqlite_store.finish_run, run.run_id, RunStatus.SUCCEEDED)
    stored = sqlite_store.read(run.run_id)
    assert b"".join(wires[0]) == per_line_bytes(run.run_id, stored)
    assert b"".join(wires[1]) == per_line_bytes(run.run_id, stored, min_level=30)
    assert sinks[0].writes == len(MESSAGES) and sinks[1].writes == 2
    for events in views:
        assert [type(e) for e in events] == [StatusEvent, StatusEvent, EndEvent]


async def test_a_busy_sink_hands_the_lines_back_to_the_viewers_task(
    sqlite_store: SQLiteStore,
) -> None:
    """Once its sink cannot take a write at once, the viewer reads through its own task again:
    every line once, in order, and the end last."""
    run = sqlite_store.create_run("up", "svc")
    sqlite_store.start_run(run.run_id)
    tailer = Tailer(sqlite_store)
    logger = RunLogger(sqlite_store, run.run_id)
    wires: list[bytes] = []
    events: list[TailEvent] = []
    sink = Recorder(wires, busy_after=2)
    async with anyio.create_task_group() as tg:
        follow = tailer.follow(run.run_id, framing=framing(run.run_id), sink=sink)
        tg.start_soon(view, wires, events, follow)
        await wait_until(lambda: readers(tailer, run.run_id) == 1)
        for n in range(1, 6):
            await anyio.to_thread.run_sync(logger.info, f"line {n}")
            await wait_until(lambda n=n: tailer._followers[run.run_id].cursor == n)
        await anyio.to_thread.run_sync(sqlite_store.finish_run, run.run_id, RunStatus.SUCCEEDED)
    stored = sqlite_store.read(run.run_id)
    assert b"".join(wires) == per_line_bytes(run.run_id, stored)
    assert sink.writes == 2
    assert sum(e.count for e in events if isinstance(e, EncodedLinesEvent)) == 3
    assert isinstance(events[-1], EndEvent)


async def test_a_viewer_that_leaves_while_the_follower_writes_to_it_is_forgotten(
    sqlite_store: SQLiteStore,
) -> None:
    """No reader is left in the log when its viewer goes, while the run goes on for others."""
    run = sqlite_store.create_run("up", "svc")
    sqlite_store.start_run(run.run_id)
    tailer = Tailer(sqlite_store)
    logger = RunLogger(sqlite_store, run.run_id)
    frame = framing(run.run_id)
    leaving: list[bytes] = []
    staying: list[bytes] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            view, staying, [], tailer.follow(run.run_id, framing=frame, sink=Recorder(staying))
        )
        async with anyio.create_task_group() as leaver:
            follow = tailer.follow(run.run_id, framing=frame, sink=Recorder(leaving))
            leaver.start_soon(view, leaving, [], follow)
            await wait_until(lambda: readers(tailer, run.run_id) == 2)
            follower = tailer._followers[run.run_id]
            await anyio.to_thread.run_sync(logger.info, "line 1")
            await wait_until(lambda: follower.cursor == 1)
            leaver.cancel_scope.cancel()  # the client goes away
        assert readers(tailer, run.run_id) == 1 and len(follower.subscribers) == 1
        await anyio.to_thread.run_sync(logger.info, "line 2")
        await wait_until(lambda: follower.cursor == 2)
        await anyio.to_thread.run_sync(sqlite_store.finish_run, run.run_id, RunStatus.SUCCEEDED)
    stored = sqlite_store.read(run.run_id)
    assert b"".join(leaving) == per_line_bytes(run.run_id, stored[:1])
    assert b"".join(staying) == per_line_bytes(run.run_id, stored)
    assert tailer.follower_count == 0


class CountedFraming(Framing):
    """A framing that counts how often it is hashed (a dict lookup of its view)."""

    hashed = 0

    def __hash__(self) -> int:
        CountedFraming.hashed += 1
        return super().__hash__()


def test_a_view_asked_for_again_and_again_is_encoded_once_and_found_by_identity() -> None:
    """Thousands of viewers of a run in a row share one framing object: the batch's bytes are
    found for each of them without hashing it, the same bytes object every time."""
    assert framing("r1") is framing("r1") and framing("r1") is not framing("r2")
    line = LogLine(1, utcnow(), "INFO", "one")
    item = Published(LinesEvent((line,)))
    frame = CountedFraming("id: r1:", "\ndata: ", "\n\n")
    first = item.wire((line,), frame, 0)
    hashed = CountedFraming.hashed
    assert all(item.wire((line,), frame, 0) is first for _ in range(100))
    assert CountedFraming.hashed == hashed
    assert item.wire((line,), frame, 30) == (b"", 0)  # another view: encoded on its own
    assert item.wire((line,), framing("r1"), 0) == first  # an equal framing: the same bytes
