"""Replay a run from a cursor, then follow it: the same events for every viewer, in seq order.

In one process, one follower per run reads new rows and fans them out to all of that run's
viewers, so store reads do not grow with the number of viewers. Writers in this process wake the
follower at once (store listeners); writers elsewhere are seen by polling. A viewer first replays
``(cursor, start]`` (``start`` being the follower's position when it subscribed) from the
follower's recent-lines buffer or the store, then takes live lines ``> start`` from the
follower's shared log of events (``fanout.Fanout``): no gap, no duplicate. One signal per batch
wakes every viewer, and with a ``framing`` the batch is encoded once per view and the same bytes
go to every viewer (``EncodedLinesEvent``); a finished run then replays from the store in large
pages the store encodes in bulk. A viewer that falls too far behind is resynced from the store.
Disconnected viewers unsubscribe in ``finally``; the last one out stops the follower. This module
is the viewers' side and the hub; the follower's own loop is in ``tail_follower``.

The store may fail (a database restart, a locked file, a 5xx): every read is retried with
backoff, and each failure reaches the viewers as a StoreDownEvent, so they are told rather than
left in silence. Past ``give_up_after`` seconds of failures, or if a follower dies of anything
else, it is unregistered and its viewers end their response with a WindowEndEvent: they resume by
cursor and lose nothing. No viewer waits on a follower that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TypeVar

from .fanout import Fanout, Reader, Sink
from .store.base import (
    FramedLines,
    Framing,
    LogLine,
    LogStore,
    Run,
    RunNotFoundError,
    frame_lines,
    level_number,
)
from .tail_events import (
    EncodedLinesEvent,
    EndEvent,
    LinesEvent,
    StatusEvent,
    StoreDownEvent,
    StoreUnavailableError,
    TailEvent,
    WindowEndEvent,
)
from .tail_follower import Box, Follower, Subscriber, start_follower

__all__ = [
    "EncodedLinesEvent",
    "EndEvent",
    "LinesEvent",
    "StatusEvent",
    "StoreDownEvent",
    "StoreUnavailableError",
    "TailEvent",
    "Tailer",
    "WindowEndEvent",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class Tailer:
    """Per-process hub of followers. Create in the app's lifespan; ``close`` on shutdown.

    ``batch`` lines per follower read, ``page`` lines per encoded replay read; a viewer more
    than ``queue_size`` events behind its follower is resynced from the store."""

    def __init__(
        self,
        store: LogStore,
        *,
        batch: int = 1000,
        page: int = 10_000,
        buffer_lines: int = 10_000,
        queue_size: int = 1000,
        retry_first: float = 0.1,
        retry_max: float = 2.0,
        give_up_after: float = 60.0,
    ) -> None:
        self.store = store
        self.batch = batch
        self.page = page
        self.buffer_lines = buffer_lines
        self.queue_size = queue_size
        self.retry_first, self.retry_max, self.give_up_after = retry_first, retry_max, give_up_after
        self._followers: dict[str, Follower] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._remove_listener = store.listeners.add(self._on_change)

    async def close(self) -> None:
        """Stop every follower and wait for it: a poll still in its thread when the caller then
        closes the store would use a connection closed under it (SQLite: a crash)."""
        self._remove_listener()
        tasks = [f.task for f in self._followers.values() if f.task]
        for task in tasks:
            task.cancel()
        self._followers.clear()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.store.aclose()

    @property
    def follower_count(self) -> int:
        """How many runs this process follows now (0 once every viewer has gone)."""
        return len(self._followers)

    # -- wake-ups -------------------------------------------------------------------------
    def _on_change(self, run_id: str) -> None:
        """Called from any thread after a commit; the follower reads after we wake it. One
        wake-up per read, not per commit: a writer committing line by line in this process
        would otherwise hand the event loop a callback for every line."""
        loop = self._loop
        follower = self._followers.get(run_id)
        if follower is None or follower.waking or loop is None or loop.is_closed():
            return
        follower.waking = True
        loop.call_soon_threadsafe(self._wake, follower)

    def _wake(self, follower: Follower) -> None:
        follower.wake.set()

    # -- the public iterator --------------------------------------------------------------
    async def follow(
        self,
        run: Run | str,
        after: int = 0,
        min_level: str | None = None,
        window: float | None = None,
        framing: Framing | None = None,
        sink: Sink | None = None,
    ) -> AsyncGenerator[TailEvent, None]:
        """Status, then every line with seq > after (at or above min_level), then the end.

        Pass the Run when the caller already looked it up; a run already followed in this
        process costs no store read at all. With ``window`` seconds, stops early with a
        WindowEndEvent if the run is still going; a store that stays down ends it the same way.
        With ``framing``, lines come as EncodedLinesEvent in that framing instead of LinesEvent;
        with a ``sink`` too, live lines go to the sink, written by the follower, whenever the
        viewer is caught up and the sink is ready (``fanout.Reader``), and only the rest here.
        """
        self._loop = asyncio.get_running_loop()
        deadline = None if window is None else self._loop.time() + window
        cursor = Box[int](after)  # the last seq delivered, however it went
        try:
            follow = self._follow(run, min_level, deadline, after, framing, sink, cursor)
            async with contextlib.aclosing(follow) as events:
                async for event in events:
                    if isinstance(event, LinesEvent):
                        cursor.value = event.lines[-1].seq
                    elif isinstance(event, EncodedLinesEvent):
                        cursor.value = event.last_seq
                    yield event
        except StoreUnavailableError:
            yield WindowEndEvent(cursor.value or 0)

    async def _follow(
        self,
        run: Run | str,
        min_level: str | None,
        deadline: float | None,
        cursor: int,
        framing: Framing | None,
        sink: Sink | None = None,
        written: Box[int] | None = None,
    ) -> AsyncGenerator[TailEvent, None]:
        run_id = run if isinstance(run, str) else run.run_id
        if run_id in self._followers:
            run = self._followers[run_id].run
        elif isinstance(run, str):
            found = Box[Run | None]()
            async for notice in self._retry(lambda: self.store.aget_run(run_id), found, None):
                yield notice
            if found.value is None:
                raise RunNotFoundError(run_id)
            run = found.value
        yield StatusEvent(run)
        if not run.active:
            async for replayed in self._replay(run, cursor, run.last_seq, min_level, framing):
                yield replayed
                if isinstance(replayed, LinesEvent | EncodedLinesEvent):
                    cursor = _last_seq(replayed)
                    if self._expired(deadline) and cursor < run.last_seq:  # long replays too
                        yield WindowEndEvent(cursor)
                        return
            yield EndEvent(run)
            return
        threshold = level_number(min_level)
        status = run.status
        while True:
            follower = self._follower(run)
            sub = Subscriber(start=follower.cursor)
            position = follower.fanout.end
            follower.subscribers.add(sub)
            try:
                replay = self._replay(run, cursor, sub.start, min_level, framing, follower)
                async for replayed in replay:
                    yield replayed
                    if isinstance(replayed, LinesEvent | EncodedLinesEvent):
                        cursor = _last_seq(replayed)
                        if self._expired(deadline):
                            yield WindowEndEvent(cursor)
                            return
                cursor = max(cursor, sub.start)
                while (published := follower.fanout.since(position)) is not None:
                    if not published:
                        if sink is None or framing is None or not sink.ready:
                            waited = await self._within(deadline, follower.fanout.wait(position))
                        else:  # caught up: the follower writes the lines, we sleep
                            reader = Reader(sink, framing, threshold, position, cursor)
                            waited = await self._within(deadline, follower.fanout.read(reader))
                            position, cursor = reader.position, reader.cursor
                            if written is not None:
                                written.value = cursor
                        if not waited:
                            yield WindowEndEvent(cursor)  # the window closed
                            return
                        continue
                    position += len(published)
                    for item in published:
                        event = item.event
                        if isinstance(event, WindowEndEvent):
                            yield WindowEndEvent(cursor)  # the follower is gone
                            return
                        if isinstance(event, LinesEvent):
                            if event.lines[-1].seq <= cursor:
                                continue
                            if framing is not None and event.lines[0].seq > cursor:
                                data, count = item.wire(event.lines, framing, threshold)
                                if count:
                                    yield EncodedLinesEvent(data, count, event.lines[-1].seq)
                                cursor = event.lines[-1].seq
                                continue
                            fresh = tuple(
                                line
                                for line in event.lines
                                if line.seq > cursor and level_number(line.log_level) >= threshold
                            )
                            cursor = event.lines[-1].seq
                            if fresh:
                                yield _encoded(fresh, framing)
                        elif isinstance(event, StatusEvent):
                            if event.run.status != status:
                                status = event.run.status
                                yield event
                        else:
                            yield event
                            if isinstance(event, EndEvent):
                                return
            finally:
                self._unsubscribe(follower, sub)
            found = Box[Run | None]()  # resync: start any new follower fresh
            async for notice in self._retry(lambda: self.store.aget_run(run_id), found, run):
                yield notice
            run = found.value or run

    def _expired(self, deadline: float | None) -> bool:
        return deadline is not None and self._loop is not None and self._loop.time() >= deadline

    async def _within(self, deadline: float | None, waiting: Awaitable[None]) -> bool:
        """Await ``waiting`` (the follower's next event, or the next one that needs this
        viewer); False if the window closed first."""
        if deadline is None:
            await waiting
            return True
        try:
            async with asyncio.timeout_at(deadline):
                await waiting
        except TimeoutError:
            return False
        return True

    async def _retry(
        self,
        call: Callable[[], Awaitable[T]],
        result: Box[T],
        run: Run | None,
        follower: Follower | None = None,
    ) -> AsyncIterator[StoreDownEvent]:
        """Await ``call`` into ``result``, retrying failures with backoff; each failure is
        yielded as a notice. Raises StoreUnavailableError once ``give_up_after`` is spent."""
        loop = asyncio.get_running_loop()
        started, attempt = loop.time(), 0
        while True:
            try:
                result.value = await call()
                return
            except Exception as exc:
                attempt += 1
                delay = min(self.retry_max, self.retry_first * 2 ** (attempt - 1))
                if loop.time() + delay - started > self.give_up_after:
                    raise StoreUnavailableError(str(exc)) from exc
                log.warning("store read failed (try %d, again in %.2f s): %s", attempt, delay, exc)
                yield StoreDownEvent(run, attempt, delay)
            wake = follower.rearm() if follower else asyncio.Event()
            with contextlib.suppress(TimeoutError):  # backoff; a local commit retries at once
                async with asyncio.timeout(delay):
                    await wake.wait()

    async def _replay(
        self,
        run: Run,
        after: int,
        upto: int,
        min_level: str | None,
        framing: Framing | None = None,
        follower: Follower | None = None,
    ) -> AsyncIterator[LinesEvent | EncodedLinesEvent | StoreDownEvent]:
        """Lines in (after, upto], in batches: the buffered tail from memory, the rest from
        the store (already encoded there, in pages of ``page`` lines, given a framing)."""
        buffered_from = follower.buffer[0].seq if follower and follower.buffer else upto + 1
        cursor = after
        stop = min(upto, buffered_from - 1)
        while cursor < stop and framing is not None:
            framed = Box[FramedLines]()
            read_framed = self._framed_reader(run.run_id, cursor, min_level, stop + 1, framing)
            async for notice in self._retry(read_framed, framed, run):
                yield notice
            assert framed.value is not None
            found = framed.value
            if found.count:
                yield EncodedLinesEvent(found.data, found.count, found.last_seq)
            if found.count < self.page:
                cursor = stop
                break
            cursor = found.last_seq
        while cursor < stop:
            page = Box[list[LogLine]]()
            read = self._reader(run.run_id, cursor, min_level, stop + 1)
            async for notice in self._retry(read, page, run):
                yield notice
            lines = page.value or []
            if lines:
                yield LinesEvent(tuple(lines))
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
            yield _encoded(buffered[start : start + self.batch], framing)

    def _framed_reader(
        self, run_id: str, after: int, min_level: str | None, before: int, framing: Framing
    ) -> Callable[[], Awaitable[FramedLines]]:
        return lambda: self.store.aread_framed(
            run_id, after, self.page, min_level, before=before, framing=framing
        )

    def _reader(
        self, run_id: str, after: int, min_level: str | None, before: int
    ) -> Callable[[], Awaitable[list[LogLine]]]:
        return lambda: self.store.aread(run_id, after, self.batch, min_level, before=before)

    # -- followers ------------------------------------------------------------------------
    def _follower(self, run: Run) -> Follower:
        """The run's follower, started at the last committed seq if there is none yet."""
        follower = self._followers.get(run.run_id)
        if follower is None:
            follower = Follower(
                run=run,
                cursor=run.last_seq,
                buffer=deque(maxlen=self.buffer_lines),
                fanout=Fanout(self.queue_size),
            )
            self._followers[run.run_id] = follower
            follower.task = start_follower(
                follower, self.store, self.batch, self._retry, self._forget
            )
        return follower

    def _unsubscribe(self, follower: Follower, sub: Subscriber) -> None:
        follower.subscribers.discard(sub)
        if not follower.subscribers:
            self._forget(follower)
            if follower.task and not follower.task.done():
                follower.task.cancel()

    def _forget(self, follower: Follower) -> None:
        if self._followers.get(follower.run.run_id) is follower:
            del self._followers[follower.run.run_id]

    async def stop_following(self) -> None:
        """End every follower (a shutdown): their viewers get a WindowEndEvent and resume by
        cursor, here after a restart or on another instance."""
        tasks = [f.task for f in self._followers.values() if f.task and not f.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _last_seq(event: LinesEvent | EncodedLinesEvent) -> int:
    return event.last_seq if isinstance(event, EncodedLinesEvent) else event.lines[-1].seq


def _encoded(lines: tuple[LogLine, ...], framing: Framing | None) -> LinesEvent | EncodedLinesEvent:
    """Lines for one viewer: as they are, or encoded in its framing."""
    if framing is None:
        return LinesEvent(lines)
    return EncodedLinesEvent(frame_lines(lines, framing), len(lines), lines[-1].seq)
