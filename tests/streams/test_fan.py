"""``Streams.follow`` with a reader (an SSE response) on a real SQLite file: while it is caught
up, its stream's fan writes each new chunk to it, encoded once per cursor, and its own follow
yields nothing; it is handed back, and reads for itself from where the fan left it, when its
response is busy, at the stream's end, at its deadline, or when a read fails (``streams.fan``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from jobtail.store.base import LogLine, utcnow
from jobtail.store.sqlite import SQLiteStore
from jobtail.streams.base import AppendRequest, Chunk, CreateRequest, StreamError
from jobtail.streams.fan import Fan, Fans, Reader
from jobtail.streams.service import Streams
from jobtail.streams.sqlite import SQLiteStreams
from tests.waiting import wait_for_async

from .test_follow import CountingStreams


@dataclass
class Sink:
    """A response the fan can write to while ``ready``."""

    ready: bool = True
    written: list[bytes] = field(default_factory=list)
    while_busy: int = 0  # writes it was given while not ready: none, ever

    def write(self, data: bytes) -> None:
        self.while_busy += not self.ready
        self.written.append(data)


@dataclass
class Follower:
    """One follow with a reader: what the fan wrote, and what the follow yielded itself."""

    reader: Reader
    sink: Sink
    yielded: list[Chunk] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def messages(self) -> list[str]:
        """Everything it was sent, in order (the fan's writes and its own, as they came)."""
        return [m for part in self.sink.written for m in part.decode().split("|") if m]


class Encoder:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, chunk: Chunk) -> bytes:
        self.calls += 1
        return "|".join(chunk.messages).encode() + b"|"


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[tuple[Streams, CountingStreams]]:
    store = SQLiteStore(tmp_path / "store.db")
    generic = CountingStreams(tmp_path / "store.db")
    streams = Streams.over(store, generic, sse_seconds=30)
    generic.create("s", CreateRequest(content_type="application/json", body=b""))
    yield streams, generic
    streams.close()
    store.close()


async def start(
    streams: Streams, count: int, encode: Encoder, keys: tuple[str, ...] = ("c",), until: float = 30
) -> list[Follower]:
    """``count`` followers of ``s``, each sending what its follow yields through its sink (as
    ``sse_events`` and ``StreamResponse`` do), once all of them are with the fan."""
    followers = []
    for n in range(count):
        sink = Sink()
        reader = Reader(sink, encode, keys[n % len(keys)])
        follower = Follower(reader, sink)
        first = await streams.read("s", "-1")
        follower.task = asyncio.create_task(run(streams, follower, first, until))
        followers.append(follower)
    await wait_for_async(lambda: readers(streams) == count, 10, "every reader with the fan")
    return followers


async def run(streams: Streams, follower: Follower, first: Chunk, until: float) -> None:
    async for chunk in streams.follow("s", first, time.monotonic() + until, follower.reader):
        follower.yielded.append(chunk)
        # as ``StreamResponse``: its own send goes after what the socket still owes
        await wait_for_async(lambda: follower.sink.ready, 10, "the response to be free")
        follower.sink.written.append("|".join(chunk.messages).encode() + b"|")


def cancel(followers: Iterable[Follower]) -> None:
    """Their clients leave."""
    for follower in followers:
        assert follower.task is not None
        follower.task.cancel()


def readers(streams: Streams) -> int:
    return sum(len(fan.readers) for fan in streams.fans._fans.values())


def fan_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if "Fans._run" in repr(t.get_coro())]


async def append(streams: Streams, n: int) -> None:
    await streams.append("s", AppendRequest(body=b'{"n":%d}' % n))


def message(n: int) -> str:
    return f'{{"n":{n}}}'


def test_caught_up_readers_are_written_to_by_the_fan_with_one_read_and_encoding_each(
    opened: tuple[Streams, CountingStreams],
) -> None:
    streams, generic = opened

    async def main() -> tuple[list[Follower], int, int]:
        encode = Encoder()
        followers = await start(streams, 20, encode)
        generic.reads = 0
        for n in range(5):
            await append(streams, n)
            await wait_for_async(lambda n=n: all(len(f.messages) == n + 1 for f in followers), 10)
        reads, calls = generic.reads, encode.calls
        cancel(followers)
        await asyncio.wait([f.task for f in followers if f.task])
        await wait_for_async(lambda: not fan_tasks() and len(streams.fans) == 0, 10, "no fan")
        return followers, reads, calls

    followers, reads, calls = asyncio.run(main())
    for follower in followers:
        assert follower.messages == [message(n) for n in range(5)]
        assert follower.yielded == [], "the reader's own follow woke for lines"
    assert reads == 5, f"{reads} store reads for 5 appends"
    assert calls == 5, f"{calls} encodings for 5 chunks"


def test_each_chunk_is_encoded_once_per_cursor(opened: tuple[Streams, CountingStreams]) -> None:
    streams, _ = opened

    async def main() -> tuple[int, list[Follower]]:
        encode = Encoder()
        followers = await start(streams, 9, encode, keys=("a", "b", "c"))
        for n in range(3):
            await append(streams, n)
            await wait_for_async(lambda n=n: all(len(f.messages) == n + 1 for f in followers), 10)
        cancel(followers)
        return encode.calls, followers

    calls, followers = asyncio.run(main())
    assert calls == 9  # 3 chunks x 3 cursors, for 9 readers
    assert all(f.messages == [message(n) for n in range(3)] for f in followers)


def test_a_busy_response_is_handed_back_and_sends_the_chunk_itself_in_order(
    opened: tuple[Streams, CountingStreams],
) -> None:
    streams, _ = opened

    async def main() -> tuple[Follower, Follower]:
        encode = Encoder()
        busy, other = await start(streams, 2, encode)
        await append(streams, 0)
        await wait_for_async(lambda: len(busy.messages) == 1 and len(other.messages) == 1, 10)
        busy.sink.ready = False  # its socket is full: the fan may not write to it
        await append(streams, 1)
        await wait_for_async(lambda: len(other.messages) == 2, 10)
        await wait_for_async(lambda: len(busy.yielded) == 1, 10, "the busy reader's own read")
        assert readers(streams) == 1 and len(busy.messages) == 1
        busy.sink.ready = True  # its own next send waited for the socket
        await wait_for_async(lambda: len(busy.messages) == 2, 10, "the busy reader's own read")
        await wait_for_async(lambda: readers(streams) == 2, 10, "the busy reader back")
        await append(streams, 2)
        await wait_for_async(lambda: len(busy.messages) == 3 and len(other.messages) == 3, 10)
        cancel((busy, other))
        return busy, other

    busy, other = asyncio.run(main())
    assert busy.messages == other.messages == [message(n) for n in range(3)]
    assert busy.sink.while_busy == 0
    assert [c.messages for c in busy.yielded] == [(message(1),)]  # only what it was handed back
    assert other.yielded == []


def test_at_the_end_every_reader_sends_the_end_itself_and_the_fan_is_gone(
    opened: tuple[Streams, CountingStreams],
) -> None:
    streams, _ = opened

    async def main() -> list[Follower]:
        followers = await start(streams, 5, Encoder())
        await append(streams, 0)
        await streams.append("s", AppendRequest(body=b'{"n":1}', close=True))
        await asyncio.wait_for(asyncio.gather(*(f.task for f in followers if f.task)), 10)
        assert len(streams.fans) == 0 and not fan_tasks()
        return followers

    for follower in asyncio.run(main()):
        assert follower.messages == [message(0), message(1)]
        assert follower.yielded[-1].closed
        assert sum(chunk.closed for chunk in follower.yielded) == 1


def test_a_reader_with_the_fan_still_ends_at_its_deadline(
    opened: tuple[Streams, CountingStreams],
) -> None:
    streams, _ = opened

    async def main() -> Follower:
        (follower,) = await start(streams, 1, Encoder(), until=0.5)
        assert follower.task is not None
        await asyncio.wait_for(follower.task, 10)
        assert len(streams.fans) == 0
        await wait_for_async(lambda: not fan_tasks(), 10, "the fan's task to end")
        return follower

    follower = asyncio.run(main())
    assert follower.yielded == [] and follower.messages == []


def test_the_last_reader_leaving_stops_the_fan(opened: tuple[Streams, CountingStreams]) -> None:
    streams, _ = opened

    async def main() -> None:
        followers = await start(streams, 3, Encoder())
        (task,) = fan_tasks()
        for n, follower in enumerate(followers):
            cancel([follower])
            await asyncio.wait([follower.task])
            assert readers(streams) == 2 - n
            assert task.done() == (n == 2)
        await asyncio.wait([task])
        assert task.cancelled() and len(streams.fans) == 0

    asyncio.run(main())


def test_a_failed_read_hands_every_reader_back_to_meet_it(
    opened: tuple[Streams, CountingStreams],
) -> None:
    streams, generic = opened
    failing = {"on": False}
    read = generic.read

    def flaky(path: str, offset: str | None) -> Chunk:
        if failing["on"]:
            raise StreamError("the store is down")
        return read(path, offset)

    generic.read = flaky  # type: ignore[method-assign]

    async def main() -> list[BaseException | None]:
        followers = await start(streams, 3, Encoder())
        failing["on"] = True
        await append(streams, 0)
        done, _ = await asyncio.wait([f.task for f in followers if f.task], timeout=10)
        assert len(done) == 3 and len(streams.fans) == 0
        return [task.exception() for task in done]

    errors = asyncio.run(main())
    assert all(isinstance(e, StreamError) and "down" in str(e) for e in errors), errors


def test_a_write_nobody_heard_reaches_the_fan_at_the_next_poll(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    streams = Streams.over(store, SQLiteStreams(tmp_path / "store.db"), sse_seconds=30)
    elsewhere = SQLiteStreams(tmp_path / "store.db")  # another process's: we hear nothing
    elsewhere.create("s", CreateRequest(content_type="application/json", body=b""))

    async def main() -> list[Follower]:
        followers = await start(streams, 2, Encoder())
        await asyncio.to_thread(elsewhere.append, "s", AppendRequest(body=b'{"n":0}'))
        await wait_for_async(lambda: all(f.messages for f in followers), 10, "the poll")
        cancel(followers)
        return followers

    try:
        followers = asyncio.run(main())
    finally:
        streams.close()
        elsewhere.close()
        store.close()
    assert all(f.messages == [message(0)] and f.yielded == [] for f in followers)


def test_a_reader_at_another_offset_than_the_fan_is_not_taken() -> None:
    async def main() -> None:
        fans, hold = Fans(), asyncio.Event()

        async def follow(fan: Fan, path: str) -> None:
            await hold.wait()

        first = Reader(Sink(), Encoder(), offset="0_5")
        joined = asyncio.create_task(fans.join("s", first, follow, 10))
        await wait_for_async(lambda: len(fans) == 1, 10)
        other = Reader(Sink(), Encoder(), offset="0_3")
        assert await asyncio.wait_for(fans.join("s", other, follow, 10), 1) is False
        same = Reader(Sink(), Encoder(), offset="0_5")
        joining = asyncio.create_task(fans.join("s", same, follow, 10))
        await wait_for_async(lambda: len(fans._fans[asyncio.get_running_loop(), "s"].readers) == 2)
        hold.set()  # the fan's task ends: both go back to their own
        assert await asyncio.wait_for(joined, 10) is True
        assert await asyncio.wait_for(joining, 10) is True
        assert len(fans) == 0

    asyncio.run(main())


def test_a_fan_that_ends_is_gone_before_its_readers_are_handed_back() -> None:
    """Else a reader could join it in between, and wait for chunks nobody reads."""

    async def main() -> list[int]:
        fans, hold, seen = Fans(), asyncio.Event(), []

        class Seeing(Reader):
            def wake(self) -> None:
                seen.append(len(fans))
                super().wake()

        async def follow(fan: Fan, path: str) -> None:
            await hold.wait()

        joined = asyncio.create_task(fans.join("s", Seeing(Sink(), Encoder()), follow, 10))
        await wait_for_async(lambda: len(fans) == 1, 10)
        (fan,) = fans._fans.values()
        hold.set()
        assert await asyncio.wait_for(joined, 10) is True
        assert fan.task is not None and fan.task.done() and not fan.task.cancelled()
        return seen

    assert asyncio.run(main()) == [0]


def test_the_last_reader_leaving_unlists_the_fan_at_once() -> None:
    async def main() -> None:
        fans = Fans()

        async def follow(fan: Fan, path: str) -> None:
            await asyncio.Event().wait()

        assert await fans.join("s", Reader(Sink(), Encoder()), follow, 0.05) is True
        assert len(fans) == 0  # before its task has even seen its cancellation

    asyncio.run(main())


def test_a_reader_whose_wait_was_cancelled_can_still_be_handed_back() -> None:
    """Its client left (its task is cancelled) in the loop turn in which the fan ends: the fan
    hands back every reader still listed, that one too, before that one's task runs."""

    async def main() -> None:
        fans, hold = Fans(), asyncio.Event()

        async def follow(fan: Fan, path: str) -> None:
            await hold.wait()

        leaving = asyncio.create_task(fans.join("s", Reader(Sink(), Encoder()), follow, 10))
        staying = asyncio.create_task(fans.join("s", Reader(Sink(), Encoder()), follow, 10))
        await wait_for_async(lambda: sum(len(f.readers) for f in fans._fans.values()) == 2)
        (fan,) = fans._fans.values()
        hold.set()  # the fan's task runs first, with the leaving reader still listed
        leaving.cancel()
        assert await asyncio.wait_for(staying, 1) is True
        assert fan.task is not None and fan.task.exception() is None
        await asyncio.wait([leaving])

    asyncio.run(main())


class PollingStreams(SQLiteStreams):
    """Records the idle-poll count it is asked to pace (Supabase backs off by it); polls fast."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.idles: list[int] = []

    def next_poll_interval(self, idle_polls: int = 0) -> float:
        self.idles.append(idle_polls)
        return 0.01


def runs_from_zero(idles: list[int]) -> int:
    """How many times the count starts again from 0; fails if it ever does anything but count
    up by one, stay (a change heard, nothing new) or start again."""
    assert idles[0] == 0, idles
    for before, after in itertools.pairwise(idles):
        assert after in (before, before + 1, 0), idles
    return idles.count(0) - sum(1 for a, b in itertools.pairwise(idles) if a == b == 0)


@pytest.mark.parametrize("fanned", [True, False], ids=["the fan", "a follower alone"])
def test_idle_polls_count_up_until_something_comes_and_a_change_is_not_one(
    tmp_path: Path, fanned: bool
) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    polled = PollingStreams(tmp_path / "store.db")
    streams = Streams.over(store, polled, sse_seconds=30)
    elsewhere = SQLiteStreams(tmp_path / "store.db")  # its writes are heard only by polls
    elsewhere.create("s", CreateRequest(content_type="application/json", body=b""))

    async def main() -> tuple[list[int], int]:
        sink = Sink()
        follower = Follower(Reader(sink, Encoder()), sink)
        first = await streams.read("s", "-1")
        if fanned:
            follower.task = asyncio.create_task(run(streams, follower, first, 30))
        else:

            async def alone() -> None:
                async for chunk in streams.follow("s", first, time.monotonic() + 30):
                    sink.written.append("|".join(chunk.messages).encode())

            follower.task = asyncio.create_task(alone())
        await wait_for_async(lambda: len(polled.idles) >= 4, 10, "idle polls")
        await asyncio.to_thread(elsewhere.append, "s", AppendRequest(body=b'{"n":0}'))
        await wait_for_async(lambda: follower.messages == [message(0)], 10, "the poll's line")
        mark = len(polled.idles)
        await wait_for_async(lambda: polled.idles[-1] >= 2 and len(polled.idles) > mark, 10)
        heard = len(polled.idles)
        polled.listeners.notify("s")  # heard, and nothing new: not an idle poll
        await wait_for_async(lambda: len(polled.idles) >= heard + 3, 10)
        cancel([follower])
        return polled.idles[:], heard

    try:
        idles, heard = asyncio.run(main())
    finally:
        streams.close()
        elsewhere.close()
        store.close()
    assert runs_from_zero(idles) == 2, idles  # from 0, and from 0 again after the line
    assert any(a == b for a, b in itertools.pairwise(idles[heard - 1 :])), idles


def test_a_change_during_the_last_read_before_the_fan_is_read_by_it_at_once(
    opened: tuple[Streams, CountingStreams],
) -> None:
    """The reader's last read missed a line committed meanwhile: the fan it joins reads at
    once, rather than at the next change or poll (60 s here)."""
    streams, generic = opened

    async def main() -> Follower:
        sink = Sink()
        follower = Follower(Reader(sink, Encoder()), sink)
        first = await streams.read("s", "-1")
        gate = generic.hold = threading.Event()
        follower.task = asyncio.create_task(run(streams, follower, first, 30))
        await asyncio.to_thread(generic.holding.wait, 10)  # its read is done, without n=0
        await append(streams, 0)
        gate.set()
        await wait_for_async(lambda: follower.messages == [message(0)], 10, "the fan's read")
        cancel([follower])
        return follower

    follower = asyncio.run(main())
    assert follower.yielded == []  # the fan wrote it


def test_a_read_begun_before_the_stream_was_watched_is_not_joined(
    opened: tuple[Streams, CountingStreams],
) -> None:
    """A follower that left while its read was in flight; a write nobody here heard; then a
    new follower: it must not take that read's answer, which has not the write."""
    streams, generic = opened

    async def main() -> list[str]:
        first = await streams.read("s", "-1")
        gate = generic.hold = threading.Event()
        leaving = asyncio.create_task(
            anext(aiter(streams.follow("s", first, time.monotonic() + 30)))
        )
        await asyncio.to_thread(generic.holding.wait, 10)  # its read is in flight
        leaving.cancel()
        await asyncio.wait([leaving])
        await asyncio.to_thread(generic.append, "s", AppendRequest(body=b'{"n":0}'))
        try:
            async for chunk in streams.follow("s", first, time.monotonic() + 30):
                return list(chunk.messages)
        finally:
            gate.set()
        return []

    assert asyncio.run(asyncio.wait_for(main(), 10)) == [message(0)]


def test_a_fan_reads_beside_a_read_in_flight_and_carries_on(
    opened: tuple[Streams, CountingStreams],
) -> None:
    streams, generic = opened

    async def main() -> bool:
        (follower,) = await start(streams, 1, Encoder())
        (fan,) = streams.fans._fans.values()
        listeners, key = streams._source("s")
        held = asyncio.Event()

        async def slow() -> Chunk:
            await held.wait()
            return await streams.read("s", fan.offset)

        other = asyncio.create_task(streams.live.read(listeners, key, "s", fan.offset, slow))
        await asyncio.sleep(0)  # one turn: the read is in flight
        reads = generic.reads
        listeners.notify("s")  # the fan reads at its offset, where that read is in flight
        await wait_for_async(lambda: generic.reads > reads, 10, "the fan's read")
        held.set()
        await other
        alive = fan.task is not None and not fan.task.done()
        cancel([follower])
        return alive and streams.fans._fans.get((asyncio.get_running_loop(), "s")) is fan

    assert asyncio.run(main())


def test_a_fan_read_overtaken_by_a_change_is_not_joined(
    opened: tuple[Streams, CountingStreams],
) -> None:
    """Another reader that comes to the same offset after a change must not take the answer of
    the fan's read begun before it (the fan reads with the stream's change count)."""
    streams, generic = opened

    async def main() -> list[str]:
        first = await streams.read("s", "-1")
        (follower,) = await start(streams, 1, Encoder())
        gate = generic.hold = threading.Event()
        generic.listeners.notify("s")  # heard, nothing new: the fan reads, and is held
        await asyncio.to_thread(generic.holding.wait, 10)
        await append(streams, 0)
        try:
            async for chunk in streams.follow("s", first, time.monotonic() + 30):
                return list(chunk.messages)
        finally:
            gate.set()
            cancel([follower])
        return []

    assert asyncio.run(asyncio.wait_for(main(), 10)) == [message(0)]


@pytest.mark.parametrize("count, publishes", [(5, 1), (2000, 2)])
def test_lines_that_came_together_go_out_together(
    tmp_path: Path, count: int, publishes: int
) -> None:
    """A run's stream hands out one line per read at its live edge: the fan reads on while
    there is more (up to 1,024 lines), so a batch is one publish, not one per line."""
    store = SQLiteStore(tmp_path / "store.db")
    run = store.create_run("up", "svc")
    store.start_run(run.run_id)
    streams = Streams.over(store, None, sse_seconds=30)
    path = f"runs/{run.run_id}"

    async def main() -> Follower:
        sink = Sink()
        follower = Follower(Reader(sink, Encoder()), sink)
        first = await streams.read(path, "-1")

        async def follow() -> None:
            async for chunk in streams.follow(path, first, time.monotonic() + 30, follower.reader):
                follower.yielded.append(chunk)

        follower.task = asyncio.create_task(follow())
        await wait_for_async(lambda: readers(streams) == 1, 10, "the reader with the fan")
        lines = [LogLine(n, utcnow(), "INFO", f"line {n}") for n in range(1, count + 1)]
        await asyncio.to_thread(store.append, run.run_id, lines)
        await wait_for_async(lambda: len(follower.messages) >= count, 10, "every line")
        cancel([follower])
        return follower

    try:
        follower = asyncio.run(main())
    finally:
        streams.close()
        store.close()
    assert [json.loads(m)["seq"] for m in follower.messages] == list(range(1, count + 1))
    assert len(follower.sink.written) == publishes and follower.yielded == []
