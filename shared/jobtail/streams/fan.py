"""Many SSE readers of one stream in one process: one task reads each new chunk and writes it.

Readers of a stream share their wake-ups and reads (``streams.live``), but each still woke its
own task for every chunk, resumed its generators and sent through its response: at 5,000 SSE
readers of one run that saturated the server's core (``python -m bench.fanout 5000 stream``,
p99 4-5 s; the logs route, whose follower writes to its caught-up viewers itself, 86 ms). Here
the same as the logs route (``fanout``): a reader that is caught up, and whose response can be
written to at once, hands itself to its stream's ``Fan``. One task per stream and loop waits for
changes, reads the next chunk once and writes it to every reader at that offset, encoded once
per ``key`` (readers with one cursor get the same bytes). The reader's own task sleeps until the
fan hands it back, and then reads for itself from where the fan left it:

- when the chunk closes the stream (the reader sends the end itself, and its response ends);
- when its response is busy (a full socket: what it sends next must wait for that write);
- when its deadline passes, or a read fails (the reader meets the failure itself, or not).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..fanout import Sink
from .base import Chunk

Follow = Callable[["Fan", str], Awaitable[None]]  # the fan's loop: reads at fan.offset, publishes
_Slot = tuple[asyncio.AbstractEventLoop, str]  # a fan's loop and path


@dataclass(eq=False)
class Reader:
    """One SSE response, as the fan sees it: where it is (``offset``), how a chunk is sent to
    it (``encode`` into ``sink``), and who gets the same bytes (``key``, its cursor)."""

    sink: Sink
    encode: Callable[[Chunk], bytes]
    key: str = ""
    offset: str = ""
    woken: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self.woken is not None and not self.woken.done():
            self.woken.set_result(None)


@dataclass(eq=False)
class Fan:
    """The readers of one stream at ``offset``, the next offset its task reads from."""

    offset: str
    readers: dict[Reader, None] = field(default_factory=dict)  # insertion order: a fair order
    task: asyncio.Task[None] | None = None

    def publish(self, offset: str, chunk: Chunk) -> None:
        """Write the chunk read from ``offset`` to every reader there whose response is free;
        hand every other reader back, and all of them at the stream's end."""
        encoded: dict[str, bytes] = {}
        readers, next_offset, last = self.readers, chunk.next_offset, chunk.closed
        for reader in list(readers):
            sink = reader.sink
            if last or reader.offset != offset or not sink.ready:
                del readers[reader]
                reader.wake()
                continue
            data = encoded.get(reader.key)
            if data is None:
                data = encoded[reader.key] = reader.encode(chunk)
            sink.write(data)
            reader.offset = next_offset
        self.offset = next_offset

    def release(self) -> None:
        """The fan's task is over: every reader left goes back to its own."""
        readers, self.readers = self.readers, {}
        for reader in readers:
            reader.wake()


@dataclass
class Fans:
    """The fans of this process, one per loop and path (tests and hosts may run several loops)."""

    _fans: dict[_Slot, Fan] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._fans)

    async def join(self, path: str, reader: Reader, follow: Follow, timeout: float) -> bool:
        """Hand ``reader`` to the fan of ``path`` until the fan hands it back or ``timeout``
        passes; False (at once) if that fan reads from another offset. A fan starts with its
        first reader (its task: ``follow(fan, path)``) and stops with its last."""
        loop = asyncio.get_running_loop()
        slot = (loop, path)
        fan = self._fans.get(slot)
        if fan is None:
            fan = self._fans[slot] = Fan(reader.offset)
            fan.task = loop.create_task(self._run(slot, fan, follow))
        elif fan.offset != reader.offset:
            return False
        reader.woken = loop.create_future()
        fan.readers[reader] = None
        try:
            async with asyncio.timeout(timeout):
                await reader.woken
        except TimeoutError:
            pass
        finally:
            fan.readers.pop(reader, None)
            if not fan.readers:
                self._stop(slot, fan)
        return True

    async def _run(self, slot: _Slot, fan: Fan, follow: Follow) -> None:
        try:
            await follow(fan, slot[1])
        finally:
            self._stop(slot, fan)
            fan.release()

    def _stop(self, slot: _Slot, fan: Fan) -> None:
        if self._fans.get(slot) is fan:
            del self._fans[slot]
        task = fan.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
