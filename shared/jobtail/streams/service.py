"""``Streams``: what the HTTP layer calls. Routes a path to generic storage or to a run's log,
runs the blocking store calls in threads, and waits for data (long-poll, SSE) on in-process
wake-ups with polling as the fallback for writers in other processes.

Cursors (§10.1): the number of 20-second intervals since 2024-10-09 UTC; when a client echoes a
cursor that is not behind the clock, the answer jumps ahead by a random 1..180 intervals, so a
cached empty answer can never be served in a loop.
"""

from __future__ import annotations

import asyncio
import functools
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import anyio.to_thread

from ..store import LogStore
from ..store.base import ListenerSet
from .base import (
    Appended,
    AppendRequest,
    Chunk,
    Created,
    CreateRequest,
    StreamMeta,
    StreamStore,
    StreamUnsupported,
)
from .fan import Fan, Fans, Reader
from .live import ANY, Live
from .runs import RunStreams, is_run_path

CURSOR_EPOCH = datetime(2024, 10, 9, tzinfo=UTC).timestamp()
CURSOR_INTERVAL = 20.0
FAN_UNITS = 1024
"""At most this many units (a run's lines) in one chunk a fan publishes (``_read_on``)."""
T = TypeVar("T")


def next_cursor(client: str | None, now: float | None = None) -> str:
    current = int(((now or time.time()) - CURSOR_EPOCH) // CURSOR_INTERVAL)
    if client is not None and client.isdigit() and int(client) >= current:
        return str(int(client) + 1 + secrets.randbelow(180))
    return str(current)


@dataclass
class Streams:
    """Generic streams and run logs under one path space; ``runs/...`` is the run logs'."""

    streams: StreamStore | None
    runs: RunStreams
    long_poll_seconds: float = 20.0
    sse_seconds: float = 60.0
    listeners: ListenerSet = field(default_factory=ListenerSet)
    live: Live = field(default_factory=Live, repr=False)
    fans: Fans = field(default_factory=Fans, repr=False)

    @classmethod
    def over(
        cls,
        store: LogStore,
        streams: StreamStore | None,
        long_poll_seconds: float = 20.0,
        sse_seconds: float = 60.0,
    ) -> Streams:
        return cls(streams, RunStreams(store), long_poll_seconds, sse_seconds)

    def generic(self) -> StreamStore:
        if self.streams is None:
            raise StreamUnsupported("this store keeps no generic streams (only runs/...)")
        return self.streams

    def close(self) -> None:
        if self.streams is not None:
            self.streams.close()

    @staticmethod
    async def _call(fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn)

    # -- writes: generic streams only -------------------------------------------------------
    async def create(self, path: str, request: CreateRequest) -> Created:
        store = self._writable(path)
        return await self._call(lambda: store.create(path, request))

    async def append(self, path: str, request: AppendRequest, heartbeat: bool = False) -> Appended:
        if is_run_path(path):
            return await self._call(lambda: self.runs.write(path, request, heartbeat))
        store = self._writable(path)
        return await self._call(lambda: store.append(path, request))

    async def delete(self, path: str) -> None:
        store = self._writable(path)
        await self._call(lambda: store.delete(path))

    def _writable(self, path: str) -> StreamStore:
        if is_run_path(path):
            raise StreamUnsupported("a run's stream is created and deleted with its run")
        return self.generic()

    # -- reads ------------------------------------------------------------------------------
    async def run_id(self, path: str) -> str:
        """The run a ``runs/...`` path names (to check a run's stream token against)."""
        run = await self._call(lambda: self.runs.run_of(path))
        return run.run_id

    async def head(self, path: str) -> StreamMeta:
        if is_run_path(path):
            return await self._call(lambda: self.runs.head(path))
        store = self.generic()
        return await self._call(lambda: store.head(path))

    async def read(self, path: str, offset: str | None) -> Chunk:
        if is_run_path(path):
            return await self._call(lambda: self.runs.read(path, offset))
        store = self.generic()
        return await self._call(lambda: store.read(path, offset))

    async def wait_read(self, path: str, offset: str | None, timeout: float) -> Chunk:
        """Read; while there is nothing new and the stream is open, wait up to ``timeout``.
        Readers woken together share their next read (``streams.live``)."""
        deadline = time.monotonic() + timeout
        changed = asyncio.Event()
        listeners, key = self._source(path)
        stop = self.live.watch(listeners, key, changed)
        try:
            after = self.live.started  # the first read is this reader's own: none older joins
            chunk = await self.read(path, offset)
            if offset is None:  # offset=now: wait from the tail as it was
                offset = chunk.next_offset
            idle = 0  # polls in a row that found nothing: the store may back off (Supabase)
            while chunk.empty and not chunk.meta.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if not await self._changed(changed, path, idle, remaining):
                    idle += 1
                changed.clear()
                chunk = await self.live.read(
                    listeners, key, path, offset, functools.partial(self.read, path, offset), after
                )
            return chunk
        finally:
            stop()

    async def follow(
        self, path: str, chunk: Chunk, until: float, reader: Reader | None = None
    ) -> AsyncIterator[Chunk]:
        """The chunks after ``chunk`` as they come (each with data, or the closed end), until the
        stream closes or ``time.monotonic()`` passes ``until``. One watch for the whole follow,
        so every change is heard and readers of the stream can share each read (``live``).
        With a ``reader`` (an SSE response), whenever it is caught up and its response is free,
        the stream's fan writes what comes to it instead (``fan``): those chunks are not
        yielded, and the follow goes on from where the fan left it."""
        changed = asyncio.Event()
        listeners, key = self._source(path)
        stop = self.live.watch(listeners, key, changed)
        try:
            after = self.live.watched_since(listeners, key)  # none from before that joins
            idle = 0
            offset, closed = chunk.next_offset, chunk.closed
            waits = False  # ``chunk`` was read before the watch: read again at once
            while not closed:
                remaining = until - time.monotonic()
                if remaining <= 0:
                    return
                if waits:  # until a change (maybe one heard while reading) or the next poll
                    if reader is not None and reader.sink.ready:
                        reader.offset = offset
                        if await self.fans.join(path, reader, self._fan, remaining):
                            offset = reader.offset  # handed back: read from there at once
                            waits = False
                    if waits and not await self._changed(changed, path, idle, remaining):
                        idle += 1
                    if time.monotonic() >= until:
                        return
                changed.clear()  # before the read: a change heard during it is not lost
                chunk = await self._shared_read(listeners, key, path, offset, after)
                offset, closed = chunk.next_offset, chunk.closed
                waits = chunk.empty or chunk.up_to_date
                if not chunk.empty or closed:
                    idle = 0
                    yield chunk
        finally:
            stop()

    async def _fan(self, fan: Fan, path: str) -> None:
        """A fan's task: read from its offset at each change (or poll) and publish, until the
        stream closes or its readers are gone."""
        changed = asyncio.Event()
        listeners, key = self._source(path)
        stop = self.live.watch(listeners, key, changed)
        try:
            after = self.live.watched_since(listeners, key)
            idle, waits = 0, False  # its first reader read before the watch: read at once
            while fan.readers:
                if waits and not await self._changed(changed, path, idle, math.inf):
                    idle += 1
                changed.clear()
                offset = fan.offset
                try:
                    chunk = await self._read_on(listeners, key, path, offset, after)
                except Exception:  # its readers go back to reading for themselves, and meet it
                    return
                waits = chunk.empty or chunk.up_to_date
                if not chunk.empty or chunk.closed:
                    idle = 0
                    fan.publish(offset, chunk)
                    if chunk.closed:
                        return
        finally:
            stop()

    async def _read_on(
        self, listeners: ListenerSet, key: str, path: str, offset: str, after: int
    ) -> Chunk:
        """The chunk at ``offset`` and, while there is more, the chunks after it (up to
        ``FAN_UNITS``), as one. At its live edge a run's stream hands out one line per read (its
        blocks, for caches), so a fan that fell behind by a few lines would publish each alone to
        every reader, and fall further behind: at 10,000 readers one publish took longer than
        the 100 ms between lines."""
        chunk = await self._shared_read(listeners, key, path, offset, after)
        while not chunk.up_to_date and chunk.stop - chunk.start < FAN_UNITS:
            more = await self._shared_read(listeners, key, path, chunk.next_offset, after)
            if more.empty:
                break
            chunk = chunk.followed_by(more)
        return chunk

    def _shared_read(
        self, listeners: ListenerSet, key: str, path: str, offset: str, after: int
    ) -> Awaitable[Chunk]:
        return self.live.read(
            listeners, key, path, offset, functools.partial(self.read, path, offset), after
        )

    async def _changed(
        self, changed: asyncio.Event, path: str, idle_polls: int, remaining: float
    ) -> bool:
        """Wait for a change, or until it is time to poll (or ``remaining`` is up): False then."""
        try:
            async with asyncio.timeout(min(remaining, self._poll_interval(path, idle_polls))):
                await changed.wait()
        except TimeoutError:
            return False
        return True

    def _poll_interval(self, path: str, idle_polls: int) -> float:
        if is_run_path(path) or self.streams is None:
            return self.runs.store.next_poll_interval(idle_polls)
        return self.streams.next_poll_interval(idle_polls)

    def _source(self, path: str) -> tuple[ListenerSet, str]:
        """Where this process announces changes to the stream (or the run behind it), and the
        key it announces them by."""
        if is_run_path(path):
            key = path[len("runs/") :]
            if "/" in key:  # by (upload, service): any change may be its latest run's
                key = ANY
            return self.runs.store.listeners, key
        return (self.streams.listeners if self.streams is not None else self.listeners), path
