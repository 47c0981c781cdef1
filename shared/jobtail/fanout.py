"""One follower's events, shared by all its viewers: published once, encoded once, one wake-up.

A follower appends each event (a batch of lines, a status change, the end) to a bounded log;
every viewer keeps only its position in that log and reads what is new when the log's signal
fires, so a batch costs one append and one signal however many viewers there are, not a queue
item per viewer. A batch of lines is turned into wire bytes the first time a viewer asks for it
in a given framing and level filter, and every other viewer with the same view gets the same
bytes. A viewer whose position fell out of the log (more than ``capacity`` events behind) has
lagged: it resyncs from the store, as a full queue made it do before.
"""

from __future__ import annotations

import asyncio
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING

from .store.base import Framing, LogLine, frame_lines, level_number

if TYPE_CHECKING:
    from .tail import TailEvent


class Published:
    """An event as the follower published it, with its wire bytes cached per view."""

    __slots__ = ("_wire", "event")

    def __init__(self, event: TailEvent) -> None:
        self.event = event
        self._wire: dict[tuple[Framing, int], tuple[bytes, int]] | None = None

    def wire(
        self, lines: tuple[LogLine, ...], framing: Framing, threshold: int
    ) -> tuple[bytes, int]:
        """The lines at or above ``threshold`` in ``framing`` (their global seqs kept), and how
        many there are; encoded on the first request for that view, shared afterwards."""
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
        return found


class Fanout:
    """The bounded log of a follower's events and the one signal that wakes its viewers."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: deque[Published] = deque()
        self._first = 0  # position of _items[0]
        self._signal = asyncio.Event()

    @property
    def end(self) -> int:
        """The position the next event will take: where a new viewer starts reading."""
        return self._first + len(self._items)

    def publish(self, event: TailEvent) -> None:
        self._items.append(Published(event))
        if len(self._items) > self.capacity:
            self._items.popleft()
            self._first += 1
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
