"""Many live readers of one stream in one process: one wake-up and one store read per change.

Every long-poll or SSE reader of a Durable Stream waits for a change, then reads from its
offset. Alone, each reader registered a listener (so a writer's commit made one thread-safe call
per reader, of every stream) and ran its own read (so a line seen by 500 readers was read from
the store 500 times, through a thread pool of 40): at 500 SSE readers of one run, lines arrived
seconds late (``python -m bench.fanout 500 ds``). Here, per event loop:

- one listener on each change source, whatever the number of readers, and one hop into the
  loop per change that somebody waits for;
- readers of one path at one offset share a read in flight (request coalescing, as a CDN
  collapses requests for one URL), but only one that started after the last change to that
  path heard here (a reader woken by a change never gets an answer read before it) and after
  the stream was last watched by anyone (changes nobody watched are not heard).

Writers in other processes are not heard (polling covers them): readers that poll together
share a read as if they had polled a moment apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ..store.base import ListenerSet
from .base import Chunk

_Slot = tuple[asyncio.AbstractEventLoop, str, str | None]  # a read: its loop, path and offset
ANY = ""  # a watch key that every change wakes (a run stream by upload and service)


@dataclass(eq=False)
class _Source:
    """One change source (a ListenerSet) as heard on one loop."""

    loop: asyncio.AbstractEventLoop
    waiting: dict[str, set[asyncio.Event]] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)  # key -> changes heard (while watched)
    since: dict[str, int] = field(default_factory=dict)  # key -> reads started before its watch
    heard: int = 0  # changes heard, of any key
    remove: Callable[[], None] | None = None

    def notice(self, key: str) -> None:
        """A commit, in whatever thread made it: cross into the loop only if someone waits."""
        waiting = self.waiting
        if key in waiting or ANY in waiting:
            self.loop.call_soon_threadsafe(self.wake, key)

    def wake(self, key: str) -> None:
        self.heard += 1
        self.changes[key] = self.changes.get(key, 0) + 1
        for watched in (key, ANY):
            for event in self.waiting.get(watched, ()):
                event.set()

    def version(self, key: str) -> int:
        return self.heard if key == ANY else self.changes.get(key, 0)


@dataclass(eq=False)
class _Read:
    future: asyncio.Task[Chunk]
    number: int  # reads started before it, in this process
    source: _Source | None
    key: str
    version: int
    waiters: list[asyncio.Future[Chunk]] = field(default_factory=list)  # one per reader

    def joinable(self, after: int) -> bool:
        """It started after read number ``after``, and no change to its path has been heard
        since it started."""
        return self.number > after and (
            self.source is None or self.source.version(self.key) == self.version
        )


@dataclass
class Live:
    """Watches and shared reads, per event loop (tests and hosts may run several)."""

    _sources: dict[tuple[asyncio.AbstractEventLoop, int], _Source] = field(default_factory=dict)
    _reads: dict[_Slot, _Read] = field(default_factory=dict)
    started: int = 0  # reads started so far: what ``after`` counts

    def watch(self, listeners: ListenerSet, key: str, changed: asyncio.Event) -> Callable[[], None]:
        """Set ``changed`` on each change to ``key`` (or any, for ``ANY``) made in this process;
        the returned function stops it."""
        source = self._source(listeners, create=True)
        assert source is not None
        if key not in source.waiting:
            source.since[key] = self.started
        source.waiting.setdefault(key, set()).add(changed)

        def stop() -> None:
            events = source.waiting.get(key)
            if events is not None:
                events.discard(changed)
                if not events:
                    del source.waiting[key]
                    source.changes.pop(key, None)
                    source.since.pop(key, None)
            if not source.waiting and source.remove is not None:
                source.remove()
                source.remove = None
                self._sources.pop((source.loop, id(listeners)), None)

        return stop

    def watched_since(self, listeners: ListenerSet, key: str) -> int:
        """For a watching reader's ``after``: the reads started before ``key`` was last watched
        by anyone. One started since then can be joined, as every change to the key made in
        this process since has been (or is about to be) heard, and its version tells: so
        readers that connect together share their first read too."""
        source = self._source(listeners, create=False)
        assert source is not None and key in source.since, "watch first"
        return source.since[key]

    async def read(
        self,
        listeners: ListenerSet,
        key: str,
        path: str,
        offset: str | None,
        read: Callable[[], Coroutine[Any, Any, Chunk]],
        after: int = 0,
    ) -> Chunk:
        """``read()``, or the answer of an identical one in flight that started after read
        number ``after`` and that no change has overtaken."""
        loop = asyncio.get_running_loop()
        slot = (loop, path, offset)
        shared = self._reads.get(slot)
        if shared is None or not shared.joinable(after):
            source = self._source(listeners, create=False)
            version = source.version(key) if source is not None else 0
            self.started += 1
            shared = _Read(loop.create_task(read()), self.started, source, key, version)
            self._reads[slot] = shared
            shared.future.add_done_callback(lambda _: self._settled(slot, shared))
        # each reader waits on a future of its own: one that leaves (cancelled) cancels only
        # that, not the read the others wait for (``asyncio.shield``, for a tenth of its cost)
        waiter: asyncio.Future[Chunk] = loop.create_future()
        shared.waiters.append(waiter)
        return await waiter

    def _settled(self, slot: _Slot, done: _Read) -> None:
        if self._reads.get(slot) is done:
            del self._reads[slot]
        task = done.future
        failed = None if task.cancelled() else task.exception()  # retrieved: the readers' now
        for waiter in done.waiters:
            if waiter.done():  # its reader left
                continue
            if task.cancelled():
                waiter.cancel()
            elif failed is not None:
                waiter.set_exception(failed)
            else:
                waiter.set_result(task.result())

    def _source(self, listeners: ListenerSet, create: bool) -> _Source | None:
        loop = asyncio.get_running_loop()
        source = self._sources.get((loop, id(listeners)))
        if source is None and create:
            source = self._sources[(loop, id(listeners))] = _Source(loop)
            source.remove = listeners.add(source.notice)
        return source
