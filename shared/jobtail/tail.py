"""Replay a run from a cursor, then follow it: the same events for every viewer, in seq order.

In one process, one follower per run reads new rows and fans them out to all of that run's
viewers, so store reads do not grow with the number of viewers. Writers in this process wake the
follower at once (store listeners); writers elsewhere are seen by polling. A viewer first replays
``(cursor, start]`` (``start`` being the follower's position when it subscribed) from the
follower's recent-lines buffer or the store, then takes live lines ``> start`` from its queue:
no gap, no duplicate. A viewer that falls too far behind is resubscribed from the store.
Disconnected viewers unsubscribe in ``finally``; the last one out stops the follower.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from .store.base import LogLine, LogStore, Run, RunNotFoundError, level_number


@dataclass(frozen=True, slots=True)
class LinesEvent:
    """Consecutive lines in seq order: batched so a replay is a few writes, not one per line."""

    lines: tuple[LogLine, ...]


@dataclass(frozen=True, slots=True)
class StatusEvent:
    run: Run


@dataclass(frozen=True, slots=True)
class EndEvent:
    """The run is finished and every line up to ``run.last_seq`` was delivered."""

    run: Run


@dataclass(frozen=True, slots=True)
class WindowEndEvent:
    """The stream's time window closed before the run ended: resume with the last id."""

    cursor: int


TailEvent = LinesEvent | StatusEvent | EndEvent | WindowEndEvent


@dataclass(eq=False)
class _Subscriber:
    start: int
    queue: asyncio.Queue[TailEvent]
    lagged: bool = False


@dataclass(eq=False)
class _Follower:
    run: Run
    cursor: int
    buffer: deque[LogLine]
    subscribers: set[_Subscriber] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class Tailer:
    """Per-process hub of followers. Create in the app's lifespan; ``close`` on shutdown."""

    def __init__(
        self,
        store: LogStore,
        *,
        batch: int = 1000,
        buffer_lines: int = 10_000,
        queue_size: int = 1000,
    ) -> None:
        self.store = store
        self.batch = batch
        self.buffer_lines = buffer_lines
        self.queue_size = queue_size
        self._followers: dict[str, _Follower] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._remove_listener = store.listeners.add(self._on_change)

    async def close(self) -> None:
        self._remove_listener()
        for follower in list(self._followers.values()):
            if follower.task:
                follower.task.cancel()
        self._followers.clear()
        await self.store.aclose()

    @property
    def followers(self) -> int:
        return len(self._followers)

    # -- wake-ups -------------------------------------------------------------------------
    def _on_change(self, run_id: str) -> None:
        """Called from any thread after a commit; the follower reads after we wake it."""
        loop = self._loop
        if loop is not None and run_id in self._followers and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake, run_id)

    def _wake(self, run_id: str) -> None:
        follower = self._followers.get(run_id)
        if follower is not None:
            follower.wake.set()

    # -- the public iterator --------------------------------------------------------------
    async def follow(
        self,
        run: Run | str,
        after: int = 0,
        min_level: str | None = None,
        window: float | None = None,
    ) -> AsyncGenerator[TailEvent, None]:
        """Status, then every line with seq > after (at or above min_level), then the end.

        Pass the Run when the caller already looked it up; a run already followed in this
        process costs no store read at all. With ``window`` seconds, stops early with a
        WindowEndEvent if the run is still going.
        """
        self._loop = asyncio.get_running_loop()
        deadline = None if window is None else self._loop.time() + window
        run_id = run if isinstance(run, str) else run.run_id
        if run_id in self._followers:
            run = self._followers[run_id].run
        elif isinstance(run, str):
            found = await self.store.aget_run(run_id)
            if found is None:
                raise RunNotFoundError(run_id)
            run = found
        yield StatusEvent(run)
        cursor = after
        if not run.active:
            async for lines in self._replay(run_id, cursor, run.last_seq, min_level):
                cursor = lines[-1].seq
                yield LinesEvent(lines)
                if self._expired(deadline) and cursor < run.last_seq:  # long replays too
                    yield WindowEndEvent(cursor)
                    return
            yield EndEvent(run)
            return
        threshold = level_number(min_level)
        status = run.status
        while True:
            follower = self._follower(run)
            sub = _Subscriber(start=follower.cursor, queue=asyncio.Queue(self.queue_size))
            follower.subscribers.add(sub)
            try:
                async for lines in self._replay(run_id, cursor, sub.start, min_level, follower):
                    cursor = lines[-1].seq
                    yield LinesEvent(lines)
                    if self._expired(deadline):
                        yield WindowEndEvent(cursor)
                        return
                cursor = max(cursor, sub.start)
                while not (sub.lagged and sub.queue.empty()):
                    event = await self._next(sub, deadline)
                    if event is None:
                        yield WindowEndEvent(cursor)
                        return
                    if isinstance(event, LinesEvent):
                        fresh = tuple(
                            line
                            for line in event.lines
                            if line.seq > cursor and level_number(line.log_level) >= threshold
                        )
                        cursor = max(cursor, event.lines[-1].seq)
                        if fresh:
                            yield LinesEvent(fresh)
                    elif isinstance(event, StatusEvent):
                        if event.run.status != status:
                            status = event.run.status
                            yield event
                    else:
                        yield event
                        return
            finally:
                self._unsubscribe(follower, sub)
            run = await self.store.aget_run(run_id) or run  # resync: start any new follower fresh

    def _expired(self, deadline: float | None) -> bool:
        return deadline is not None and self._loop is not None and self._loop.time() >= deadline

    async def _next(self, sub: _Subscriber, deadline: float | None) -> TailEvent | None:
        if deadline is None:
            return await sub.queue.get()
        assert self._loop is not None
        try:
            async with asyncio.timeout_at(deadline):
                return await sub.queue.get()
        except TimeoutError:
            return None

    async def _replay(
        self,
        run_id: str,
        after: int,
        upto: int,
        min_level: str | None,
        follower: _Follower | None = None,
    ) -> AsyncIterator[tuple[LogLine, ...]]:
        """Lines in (after, upto], in batches: the buffered tail from memory, the rest from
        the store."""
        buffered_from = follower.buffer[0].seq if follower and follower.buffer else upto + 1
        cursor = after
        stop = min(upto, buffered_from - 1)
        while cursor < stop:
            lines = await self.store.aread(run_id, cursor, self.batch, min_level, before=stop + 1)
            if lines:
                yield tuple(lines)
            if len(lines) < self.batch:
                cursor = stop
                break
            cursor = lines[-1].seq
        if follower is None or cursor >= upto:
            return
        threshold = level_number(min_level)
        buffered = tuple(
            line
            for line in follower.buffer
            if cursor < line.seq <= upto and level_number(line.log_level) >= threshold
        )
        for start in range(0, len(buffered), self.batch):
            yield buffered[start : start + self.batch]

    # -- followers ------------------------------------------------------------------------
    def _follower(self, run: Run) -> _Follower:
        """The run's follower, started at the last committed seq if there is none yet."""
        follower = self._followers.get(run.run_id)
        if follower is None:
            follower = _Follower(
                run=run, cursor=run.last_seq, buffer=deque(maxlen=self.buffer_lines)
            )
            self._followers[run.run_id] = follower
            follower.task = asyncio.create_task(self._run_follower(follower))
        return follower

    def _unsubscribe(self, follower: _Follower, sub: _Subscriber) -> None:
        follower.subscribers.discard(sub)
        if not follower.subscribers:
            if self._followers.get(follower.run.run_id) is follower:
                del self._followers[follower.run.run_id]
            if follower.task and not follower.task.done():
                follower.task.cancel()

    def _publish(self, follower: _Follower, event: TailEvent) -> None:
        for sub in follower.subscribers:
            if sub.lagged:
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.lagged = True

    async def _run_follower(self, follower: _Follower) -> None:
        run_id = follower.run.run_id
        idle = 0
        while True:
            follower.wake.clear()
            found, lines = await self.store.apoll(run_id, follower.cursor, self.batch)
            run = found or follower.run  # purged under us: end the viewers with what they have
            if lines:
                follower.cursor = lines[-1].seq
                follower.buffer.extend(lines)
                self._publish(follower, LinesEvent(tuple(lines)))
            if run.status != follower.run.status:
                self._publish(follower, StatusEvent(run))
            follower.run = run
            if len(lines) == self.batch:
                continue
            if not run.active and follower.cursor >= run.last_seq:
                if self._followers.get(run_id) is follower:
                    del self._followers[run_id]
                self._publish(follower, EndEvent(run))
                return
            idle = 0 if lines else idle + 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.store.next_poll_interval(idle)):
                    await follower.wake.wait()
