"""``Streams.follow`` and ``Streams.wait_read`` on a real SQLite file: readers of one stream share
each read (``streams.live``), get what came while they read or before they watched at once, end
at their deadline, and a write no listener heard is read at the next poll."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from jobtail.store.sqlite import SQLiteStore
from jobtail.streams.base import AppendRequest, Chunk, CreateRequest, StreamUnsupported
from jobtail.streams.service import Streams
from jobtail.streams.sqlite import SQLiteStreams
from tests.waiting import wait_for_async


class CountingStreams(SQLiteStreams):
    """Counts its reads. Its readers never poll: every write here is in this process, heard."""

    poll_interval = 60.0

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads = self.done = 0
        self._count = threading.Lock()
        self.hold: threading.Event | None = None  # set: the next read waits for it once read
        self.holding = threading.Event()

    def read(self, path: str, offset: str | None) -> Chunk:
        with self._count:
            self.reads += 1
        chunk = super().read(path, offset)
        with self._count:
            self.done += 1
        hold, self.hold = self.hold, None
        if hold is not None:
            self.holding.set()
            hold.wait(10)
        return chunk


def test_followers_of_one_stream_read_it_once_per_append(tmp_path: Path) -> None:
    """Before, each follower read the store after every append, then once more to find
    nothing new: 20 followers, 40 reads; and each read once on its own as it began."""
    store = SQLiteStore(tmp_path / "store.db")
    generic = CountingStreams(tmp_path / "store.db")
    streams = Streams.over(store, generic, sse_seconds=30)
    generic.create("s", CreateRequest(content_type="application/json", body=b""))
    followers, appends = 20, 5

    async def follow(first: Chunk, got: list[str], caught_up: asyncio.Event) -> None:
        async for chunk in streams.follow("s", first, time.monotonic() + 30):
            got.extend(chunk.messages)
            if len(got) >= appends or chunk.closed:
                caught_up.set()
                return
            caught_up.set()

    async def main() -> list[list[str]]:
        firsts = [await streams.read("s", "-1") for _ in range(followers)]
        gots: list[list[str]] = [[] for _ in range(followers)]
        flags = [asyncio.Event() for _ in range(followers)]
        tasks = [
            asyncio.create_task(follow(first, got, flag))
            for first, got, flag in zip(firsts, gots, flags, strict=True)
        ]
        # the first reads: the route's, one each, then the followers', shared: they began to
        # watch together, so a read one began after the stream was first watched serves all
        await wait_for_async(
            lambda: generic.done > followers and not streams.live._reads, 10, "the first reads"
        )
        assert generic.reads == followers + 1
        generic.reads = 0
        for n in range(appends):
            for flag in flags:
                flag.clear()
            await streams.append("s", AppendRequest(body=b'{"n":%d}' % n))
            await asyncio.wait_for(asyncio.gather(*(f.wait() for f in flags)), 10)
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        # one read per append, shared by every follower: each waits once it is up to date
        assert generic.reads == appends, f"{generic.reads} store reads for {appends} appends"
        return gots

    try:
        gots = asyncio.run(main())
    finally:
        streams.close()
        store.close()
    assert all(got == [f'{{"n":{n}}}' for n in range(appends)] for got in gots)


def test_a_change_during_a_read_is_read_at_once(tmp_path: Path) -> None:
    """A follower up to date as of its read still reads again at once if a change came while
    it read, rather than wait for the next change or poll (60 s here)."""
    store = SQLiteStore(tmp_path / "store.db")
    generic = CountingStreams(tmp_path / "store.db")
    streams = Streams.over(store, generic, sse_seconds=30)
    generic.create("s", CreateRequest(content_type="application/json", body=b""))

    async def main() -> list[str]:
        first = await streams.read("s", "-1")
        got: list[str] = []
        gate = generic.hold = threading.Event()

        async def follow() -> None:
            async for chunk in streams.follow("s", first, time.monotonic() + 30):
                got.extend(chunk.messages)
                if len(got) == 2:
                    return

        task = asyncio.create_task(follow())
        await streams.append("s", AppendRequest(body=b'{"n":0}'))
        await asyncio.to_thread(generic.holding.wait, 10)  # its read has n=0, not yet n=1
        await streams.append("s", AppendRequest(body=b'{"n":1}'))
        gate.set()
        await asyncio.wait_for(task, 10)
        return got

    try:
        got = asyncio.run(main())
    finally:
        streams.close()
        store.close()
    assert got == ['{"n":0}', '{"n":1}']


def test_a_change_before_the_follow_began_is_read_at_once(tmp_path: Path) -> None:
    """The first chunk is read before the follow watches: what came between is read at once,
    not at the next change or poll (60 s here)."""
    store = SQLiteStore(tmp_path / "store.db")
    generic = CountingStreams(tmp_path / "store.db")
    streams = Streams.over(store, generic, sse_seconds=30)
    generic.create("s", CreateRequest(content_type="application/json", body=b""))

    async def main() -> list[str]:
        first = await streams.read("s", "-1")
        await streams.append("s", AppendRequest(body=b'{"n":0}'))
        async for chunk in streams.follow("s", first, time.monotonic() + 30):
            return list(chunk.messages)
        return []

    try:
        got = asyncio.run(asyncio.wait_for(main(), 10))
    finally:
        streams.close()
        store.close()
    assert got == ['{"n":0}']


@pytest.fixture
def opened(tmp_path: Path) -> tuple[Streams, CountingStreams]:
    store = SQLiteStore(tmp_path / "store.db")
    generic = CountingStreams(tmp_path / "store.db")
    streams = Streams.over(store, generic, long_poll_seconds=30, sse_seconds=30)
    for path in ("s", "t"):
        generic.create(path, CreateRequest(content_type="application/json", body=b""))
    yield streams, generic
    streams.close()
    store.close()


def test_a_follow_ends_at_its_deadline(opened: tuple[Streams, CountingStreams]) -> None:
    streams, _ = opened

    async def main() -> list[Chunk]:
        first = await streams.read("s", "-1")
        return [chunk async for chunk in streams.follow("s", first, time.monotonic() + 0.3)]

    assert asyncio.run(asyncio.wait_for(main(), 10)) == []


def test_a_follow_near_its_deadline_still_reads_what_came(
    opened: tuple[Streams, CountingStreams],
) -> None:
    streams, _ = opened

    async def main() -> list[str]:
        first = await streams.read("s", "-1")
        await streams.append("s", AppendRequest(body=b'{"n":0}'))
        async for chunk in streams.follow("s", first, time.monotonic() + 0.5):
            return list(chunk.messages)
        return []

    assert asyncio.run(asyncio.wait_for(main(), 10)) == ['{"n":0}']


def test_a_write_nobody_heard_is_read_at_the_next_poll(tmp_path: Path) -> None:
    """Another process's writer wakes nobody here: the follower polls."""
    store = SQLiteStore(tmp_path / "store.db")
    streams = Streams.over(store, SQLiteStreams(tmp_path / "store.db"), sse_seconds=30)
    elsewhere = SQLiteStreams(tmp_path / "store.db")  # its listeners are not ours
    elsewhere.create("s", CreateRequest(content_type="application/json", body=b""))

    async def main() -> list[str]:
        first = await streams.read("s", "-1")
        following = streams.follow("s", first, time.monotonic() + 30)
        reading = asyncio.ensure_future(anext(following))
        await wait_for_async(lambda: streams.live._sources, 10, "the follow watches")
        await asyncio.to_thread(elsewhere.append, "s", AppendRequest(body=b'{"n":0}'))
        chunk = await asyncio.wait_for(reading, 10)
        await following.aclose()
        return list(chunk.messages)

    try:
        assert asyncio.run(main()) == ['{"n":0}']
    finally:
        elsewhere.close()
        streams.close()
        store.close()


@pytest.mark.parametrize("waiting", ["follow", "wait_read"])
def test_a_shared_read_is_the_streams_own_at_its_offset(
    opened: tuple[Streams, CountingStreams], waiting: str
) -> None:
    """Readers of two streams at one offset, woken together, each get their own stream's
    lines, from a read recorded under the stream's path, offset, change source and key."""
    streams, generic = opened

    async def one(path: str, first: Chunk) -> list[str]:
        if waiting == "wait_read":
            chunk = await streams.wait_read(path, first.next_offset, 30)
            return list(chunk.messages)
        async for chunk in streams.follow(path, first, time.monotonic() + 30):
            return list(chunk.messages)
        return []

    async def main() -> tuple[list[str], list[str]]:
        firsts = [await streams.read(path, "-1") for path in ("s", "t")]
        gate = threading.Event()
        readers = [asyncio.create_task(one(p, f)) for p, f in zip("st", firsts, strict=True)]
        await wait_for_async(lambda: generic.done == 4, 10, "each reader's first read")
        generic.hold = gate  # the next read stops once it has read, for a look at it
        await streams.append("s", AppendRequest(body=b'{"s":1}'))
        await asyncio.to_thread(generic.holding.wait, 10)
        ((slot, shared),) = streams.live._reads.items()
        source = streams.live._sources[(asyncio.get_running_loop(), id(generic.listeners))]
        assert slot[1:] == ("s", firsts[0].next_offset)
        assert shared.source is source and shared.key == "s"
        gate.set()
        await streams.append("t", AppendRequest(body=b'{"t":1}'))
        got_s, got_t = await asyncio.wait_for(asyncio.gather(*readers), 10)
        return got_s, got_t

    assert asyncio.run(main()) == (['{"s":1}'], ['{"t":1}'])


def test_long_polls_woken_together_share_their_read(
    opened: tuple[Streams, CountingStreams],
) -> None:
    streams, generic = opened

    async def main() -> list[list[str]]:
        tail = (await streams.read("s", "-1")).next_offset
        polls = [asyncio.create_task(streams.wait_read("s", tail, 30)) for _ in range(5)]
        await wait_for_async(lambda: generic.done == 6, 10, "each poll's first read")
        generic.reads = 0
        await streams.append("s", AppendRequest(body=b'{"n":0}'))
        chunks = await asyncio.wait_for(asyncio.gather(*polls), 10)
        assert generic.reads == 1
        return [list(chunk.messages) for chunk in chunks]

    assert asyncio.run(main()) == [['{"n":0}']] * 5


def test_a_stream_path_without_stream_storage_is_unsupported(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    streams = Streams.over(store, None)
    try:
        with pytest.raises(StreamUnsupported):
            asyncio.run(streams.wait_read("s", "-1", 1))
    finally:
        store.close()
