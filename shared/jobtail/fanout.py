"""One follower's events, shared by all its viewers: published once, encoded once, one wake-up.

A follower appends each event (a batch of lines, a status change, the end) to a bounded log;
every viewer keeps only its position in that log and reads what is new when the log's signal
fires, so a batch costs one append and one signal however many viewers there are, not a queue
item per viewer. A batch of lines is turned into wire bytes the first time a viewer asks for it
in a given framing and level filter, and every other viewer with the same view gets the same
bytes. A viewer whose position fell out of the log (more than ``capacity`` events behind) has
lagged: it resyncs from the store, as a full queue made it do before.

A viewer that is caught up can hand the log a ``Reader`` instead of waiting on the signal: each
batch of lines is then written to its ``Sink`` by the follower itself, and its own task sleeps
until something else comes (a status, the end, a sink that is busy). Waking thousands of tasks
and resuming their generators for every batch was half of the server's CPU; writing the same
bytes through each viewer's ``send`` in one loop is what is left.
"""

from __future__ import annotations

import asyncio
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Protocol

from .store.base import Framing, LogLine, frame_lines, level_number

if TYPE_CHECKING:
    from .tail import TailEvent


class Published:
    """An event as the follower published it, with its wire bytes cached per view."""

    __slots__ = ("_last", "_wire", "event")

    def __init__(self, event: TailEvent) -> None:
        self.event = event
        self._wire: dict[tuple[Framing, int], tuple[bytes, int]] | None = None
        # the view asked for last, found by identity: thousands of readers in a row share one
        # framing object (``web.sse.framing`` is cached), and hashing it was a tenth of a write
        self._last: tuple[Framing, int, tuple[bytes, int]] | None = None

    def wire(
        self, lines: tuple[LogLine, ...], framing: Framing, threshold: int
    ) -> tuple[bytes, int]:
        """The lines at or above ``threshold`` in ``framing`` (their global seqs kept), and how
        many there are; encoded on the first request for that view, shared afterwards."""
        last = self._last
        if last is not None and last[0] is framing and last[1] == threshold:
            return last[2]
        cache = self._wire
        if cache is None:
            cache = self._wire = {}
        key = (framing, threshold)
        found = cache.get(key)
        if found is None:
            kept = (
                lines
                if threshold <= 0
                else tuple(line for line in lines if level_number(line.log_level) >= threshold)
            )
            found = cache[key] = (frame_lines(kept, framing), len(kept))
        self._last = (framing, threshold, found)
        return found


class Sink(Protocol):
    """A viewer's response, written to by the follower while the viewer's task sleeps."""

    @property
    def ready(self) -> bool:
        """Open, and no write of its own or of the follower's still in flight."""
        ...

    def write(self, data: bytes) -> None:
        """Send ``data`` now; bytes it cannot send at once go out, in order, before the
        viewer's own next message (and it is not ``ready`` until then)."""
        ...


class Reader:
    """A caught-up viewer whose lines the follower writes to its sink: where it is in the log
    (``position``), the last seq it was given (``cursor``), and what wakes its task."""

    __slots__ = ("cursor", "framing", "position", "sink", "threshold", "woken")

    def __init__(
        self, sink: Sink, framing: Framing, threshold: int, position: int, cursor: int
    ) -> None:
        self.sink, self.framing, self.threshold = sink, framing, threshold
        self.position, self.cursor = position, cursor
        self.woken = asyncio.get_running_loop().create_future()

    def take(self, item: Published, lines: tuple[LogLine, ...], position: int) -> bool:
        """Write the batch at ``position``; False if the viewer's own task must see it."""
        if position != self.position or lines[0].seq <= self.cursor or not self.sink.ready:
            return False
        data, count = item.wire(lines, self.framing, self.threshold)
        if count:
            self.sink.write(data)
        self.position, self.cursor = position + 1, lines[-1].seq
        return True

    def wake(self) -> None:
        if not self.woken.done():
            self.woken.set_result(None)


class Fanout:
    """The bounded log of a follower's events and the one signal that wakes its viewers."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: deque[Published] = deque()
        self._first = 0  # position of _items[0]
        self._signal = asyncio.Event()
        self._readers: dict[Reader, None] = {}  # insertion-ordered, for a fair write order

    @property
    def end(self) -> int:
        """The position the next event will take: where a new viewer starts reading."""
        return self._first + len(self._items)

    def publish(self, event: TailEvent, lines: tuple[LogLine, ...] | None = None) -> None:
        """Append ``event``; ``lines`` (its lines, if it is a batch) go at once to the readers
        that can take them, and every other reader is woken to read the event itself."""
        position = self.end
        item = Published(event)
        self._items.append(item)
        if len(self._items) > self.capacity:
            self._items.popleft()
            self._first += 1
        if self._readers:
            readers = self._readers
            for reader in list(readers):
                if lines is None or not reader.take(item, lines, position):
                    del readers[reader]
                    reader.wake()
        signal, self._signal = self._signal, asyncio.Event()
        signal.set()  # one wake-up for every waiting viewer

    def since(self, position: int) -> list[Published] | None:
        """Events from ``position`` on; None if some of them were dropped (the viewer lagged)."""
        if position < self._first:
            return None
        return list(islice(self._items, position - self._first, None))

    async def wait(self, position: int) -> None:
        """Return once there is an event at ``position`` or later."""
        while position >= self.end:
            await self._signal.wait()

    async def read(self, reader: Reader) -> None:
        """Let the follower write batches to ``reader`` until an event needs its own task;
        ``reader.position`` is then where to read from."""
        assert reader.position == self.end, "a reader starts caught up"
        self._readers[reader] = None
        try:
            await reader.woken
        finally:
            self._readers.pop(reader, None)
