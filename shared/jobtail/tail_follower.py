"""A run's follower: the one reader of a followed run's new rows in this process.

``tail.Tailer`` starts one per run that has viewers and stops it when the last viewer leaves. It
polls the store (at once when a commit in this process wakes it, at the store's poll interval
otherwise), keeps the recent lines for viewers that replay, and publishes each batch once to
the run's shared log (``fanout.Fanout``), which every viewer reads. A burst is read in fewer,
larger batches (``_breathe``). Apart from ``tail``, which holds the viewers' side (replay, then
the shared log), so that each side reads on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from .fanout import Fanout
from .store.base import LogLine, LogStore, Run
from .tail_events import (
    EndEvent,
    LinesEvent,
    StatusEvent,
    StoreDownEvent,
    StoreUnavailableError,
    TailEvent,
    WindowEndEvent,
)

log = logging.getLogger("jobtail.tail")  # the tail's logger: its configuration covers followers

T = TypeVar("T")

BREATHE_MAX = 0.05
"""Seconds a follower pauses at most between two reads of a burst (see ``_breathe``)."""
BURST_LINES = 8
"""Lines a follower read must find, with more committed since, to be a burst. Fewer is a writer
at its own pace, whose next line must not wait for a pause: at 5,000 viewers a fan-out takes
about 80 ms, and a 10 lines/s writer's next commit often lands inside it."""


@dataclass(slots=True)
class Box(Generic[T]):
    """Where an async generator that yields notices leaves its result."""

    value: T | None = None


@dataclass(eq=False)
class Subscriber:
    """A viewer of a follower: it replays up to ``start``, then reads the shared log."""

    start: int


@dataclass(eq=False)
class Follower:
    run: Run
    cursor: int
    buffer: deque[LogLine]
    fanout: Fanout
    subscribers: set[Subscriber] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[bool] | None = None
    #: a wake-up is on its way to the loop (or the follower has not read since): commits in the
    #: meantime need none of their own, the follower's next read takes them all
    waking: bool = False

    def rearm(self) -> asyncio.Event:
        """Clear the wake-up before a read: a commit from here on wakes the follower again."""
        self.wake.clear()
        self.waking = False
        return self.wake

    def publish(self, event: TailEvent) -> None:
        self.fanout.publish(event, event.lines if isinstance(event, LinesEvent) else None)


class Retry(Protocol):
    """``Tailer._retry``: await ``call`` into ``result``, each failure yielded as a notice."""

    def __call__(
        self,
        call: Callable[[], Awaitable[T]],
        result: Box[T],
        run: Run | None,
        follower: Follower | None = None,
    ) -> AsyncIterator[StoreDownEvent]: ...


def start_follower(
    follower: Follower,
    store: LogStore,
    batch: int,
    retry: Retry,
    forget: Callable[[Follower], None],
) -> asyncio.Task[bool]:
    """Follow until the run ends; however the follower stops short of that (the store down
    for too long, a bug, a shutdown), it is unregistered (``forget``) and its viewers told to
    resume. That is the task's done callback, not a ``finally``: a task cancelled before its
    first step (a shutdown in the loop turn a viewer made it) never runs its coroutine at all."""
    task = asyncio.create_task(run_follower(follower, store, batch, retry, forget))

    def done(task: asyncio.Task[bool]) -> None:
        forget(follower)
        if task.cancelled() or task.exception() is not None or not task.result():
            follower.publish(WindowEndEvent(follower.cursor))

    task.add_done_callback(done)
    return task


async def run_follower(
    follower: Follower,
    store: LogStore,
    batch: int,
    retry: Retry,
    forget: Callable[[Follower], None],
) -> bool:
    """True once the run has ended and its viewers have its end."""
    try:
        return await _poll_until_end(follower, store, batch, retry, forget)
    except StoreUnavailableError as exc:
        log.warning("follower of run %s gives up: store down: %s", follower.run.run_id, exc)
    except Exception:
        log.exception("follower of run %s died", follower.run.run_id)
    return False


async def _poll_until_end(
    follower: Follower,
    store: LogStore,
    batch: int,
    retry: Retry,
    forget: Callable[[Follower], None],
) -> bool:
    run_id = follower.run.run_id
    idle = 0
    while True:
        follower.rearm()
        polled = Box[tuple[Run | None, list[LogLine]]]()
        poll = lambda: store.apoll(run_id, follower.cursor, batch)  # noqa: E731
        async for notice in retry(poll, polled, follower.run, follower):
            follower.publish(notice)
        assert polled.value is not None
        found, lines = polled.value
        run = found or follower.run  # purged under us: end the viewers with what they have
        published = time.perf_counter()  # caught-up viewers are written to in the publish
        if lines:
            follower.cursor = lines[-1].seq
            follower.buffer.extend(lines)
            follower.publish(LinesEvent(tuple(lines)))
        if run.status != follower.run.status:
            follower.publish(StatusEvent(run))
        follower.run = run
        if len(lines) == batch or (len(lines) >= BURST_LINES and follower.waking):
            await _breathe(published)  # a burst: the next read waits while viewers send it
        if len(lines) == batch:
            continue
        if not run.active and follower.cursor >= run.last_seq:
            forget(follower)
            follower.publish(EndEvent(run))
            return True
        idle = 0 if lines else idle + 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(store.next_poll_interval(idle)):
                await follower.wake.wait()


async def _breathe(started: float) -> None:
    """Let the viewers send what was just published, then wait as long again before the next
    read. A writer committing line by line in this process shares the interpreter with the
    event loop: reading again at once would hand the loop one small batch per read, each sent
    to every viewer, and keep it (and the interpreter) busy at the writer's expense. Pausing as
    long as the fan-out took keeps the loop at most about half busy with a burst, which then
    arrives in fewer, larger batches. A line that comes alone is read at once. ``started``:
    the ``perf_counter`` before the publish, which already wrote to the caught-up viewers."""
    await asyncio.sleep(0)  # every viewer woken by the publish sends its batch first
    await asyncio.sleep(min(time.perf_counter() - started, BREATHE_MAX))
