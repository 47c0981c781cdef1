"""Live readers of one stream share their wake-ups and reads (``streams.live``), but a reader
never gets an answer older than what it must see: one read before a change it was woken by, or
before it began to watch."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from jobtail.store.base import ListenerSet
from jobtail.store.sqlite import SQLiteStore
from jobtail.streams.base import AppendRequest, Chunk, CreateRequest, StreamMeta
from jobtail.streams.live import ANY, Live
from jobtail.streams.service import Streams
from jobtail.streams.sqlite import SQLiteStreams
from tests.waiting import wait_for_async

META = StreamMeta("s", "application/json", tail=0, closed=False)


class Reads:
    """A read function whose calls are counted and held until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self) -> Chunk:
        self.calls += 1
        number = self.calls
        await self.release.wait()
        return Chunk(META, number, number)


async def started(*tasks: asyncio.Task[Chunk]) -> None:
    for _ in range(10):  # a few loop turns: each task reaches its await
        await asyncio.sleep(0)
    assert not any(task.done() for task in tasks)


def test_readers_at_one_offset_share_a_read_in_flight() -> None:
    async def main() -> None:
        live, listeners, reads = Live(), ListenerSet(), Reads()
        stops = [live.watch(listeners, "s", asyncio.Event()) for _ in range(3)]
        tasks = [asyncio.create_task(live.read(listeners, "s", "s", "5", reads)) for _ in range(3)]
        await started(*tasks)
        assert reads.calls == 1
        other = asyncio.create_task(live.read(listeners, "s", "s", "6", reads))  # another offset
        await started(other)
        assert reads.calls == 2
        reads.release.set()
        answers = await asyncio.gather(*tasks, other)
        assert answers[0] is answers[1] is answers[2] and answers[3] is not answers[0]
        for stop in stops:
            stop()

    asyncio.run(main())


def test_a_change_heard_after_a_read_began_starts_a_new_one() -> None:
    async def main() -> None:
        live, listeners, reads = Live(), ListenerSet(), Reads()
        stop = live.watch(listeners, "s", changed := asyncio.Event())
        first = asyncio.create_task(live.read(listeners, "s", "s", "5", reads))
        await started(first)
        listeners.notify("t")  # another stream: the read in flight still answers for "s"
        await asyncio.sleep(0)
        joined = asyncio.create_task(live.read(listeners, "s", "s", "5", reads))
        await started(joined)
        assert reads.calls == 1 and not changed.is_set()
        listeners.notify("s")  # a commit to "s" after the read began: a reader woken by it...
        await asyncio.wait_for(changed.wait(), 5)
        woken = asyncio.create_task(live.read(listeners, "s", "s", "5", reads))
        await started(woken)
        assert reads.calls == 2  # ...does not take the older answer
        reads.release.set()
        one, two, three = await asyncio.gather(first, joined, woken)
        assert one is two and three is not one
        stop()

    asyncio.run(main())


def test_any_change_overtakes_a_read_watched_by_any() -> None:
    async def main() -> None:
        live, listeners, reads = Live(), ListenerSet(), Reads()
        stop = live.watch(listeners, ANY, changed := asyncio.Event())
        first = asyncio.create_task(live.read(listeners, ANY, "runs/u/s", "5", reads))
        await started(first)
        listeners.notify("some-run")
        await asyncio.wait_for(changed.wait(), 5)
        second = asyncio.create_task(live.read(listeners, ANY, "runs/u/s", "5", reads))
        await started(second)
        assert reads.calls == 2
        reads.release.set()
        await asyncio.gather(first, second)
        stop()

    asyncio.run(main())


def test_a_first_read_never_joins_one_older_than_its_watch() -> None:
    """Changes nobody watches are not heard: a read that began before the reader watched may
    predate a commit the reader must see."""

    async def main() -> None:
        live, listeners, reads = Live(), ListenerSet(), Reads()
        older = asyncio.create_task(live.read(listeners, "s", "s", "5", reads))
        await started(older)
        stop = live.watch(listeners, "s", asyncio.Event())
        after = live.started
        mine = asyncio.create_task(live.read(listeners, "s", "s", "5", reads, after))
        await started(mine)
        assert reads.calls == 2
        later = asyncio.create_task(live.read(listeners, "s", "s", "5", reads, after))
        await started(later)
        assert reads.calls == 2  # started after the watch: joined
        reads.release.set()
        one, two, three = await asyncio.gather(older, mine, later)
        assert two is three and one is not two
        stop()

    asyncio.run(main())


def test_a_reader_that_leaves_does_not_cancel_the_read_of_the_others() -> None:
    async def main() -> None:
        live, listeners, reads = Live(), ListenerSet(), Reads()
        leaving = asyncio.create_task(live.read(listeners, "s", "s", "5", reads))
        staying = asyncio.create_task(live.read(listeners, "s", "s", "5", reads))
        await started(leaving, staying)
        leaving.cancel()
        await asyncio.wait([leaving])
        reads.release.set()
        assert (await asyncio.wait_for(staying, 5)).start == 1 and reads.calls == 1

    asyncio.run(main())


def test_a_failed_read_fails_every_reader_of_it() -> None:
    async def failing() -> Chunk:
        await asyncio.sleep(0)
        raise OSError("disk gone")

    async def main() -> None:
        live, listeners = Live(), ListenerSet()
        tasks = [
            asyncio.create_task(live.read(listeners, "s", "s", "5", failing)) for _ in range(3)
        ]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert [type(r) for r in results] == [OSError] * 3
        assert live._reads == {}  # settled: the next read is a new one

    asyncio.run(main())


def test_one_listener_per_source_and_loop_however_many_watch() -> None:
    async def main() -> None:
        live, listeners = Live(), ListenerSet()
        events = [asyncio.Event() for _ in range(50)]
        stops = [live.watch(listeners, "s" if n % 2 else "t", e) for n, e in enumerate(events)]
        assert len(listeners._listeners) == 1
        done = threading.Event()
        threading.Thread(target=lambda: (listeners.notify("s"), done.set())).start()
        await asyncio.wait_for(asyncio.to_thread(done.wait, 5), 6)
        await asyncio.wait_for(events[1].wait(), 5)
        assert [e.is_set() for e in events] == [bool(n % 2) for n in range(50)]
        listeners.notify("u")  # nobody watches "u": nothing crosses into the loop
        for _ in range(5):
            await asyncio.sleep(0)
        assert [source.heard for source in live._sources.values()] == [1]
        for stop in stops:
            stop()
        assert listeners._listeners == [] and live._sources == {}

    asyncio.run(main())


# -- through the service, on a real SQLite file ----------------------------------------------
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
    nothing new: 20 followers, 40 reads."""
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
        # the first reads: the route's, then each follower's own (it joins none from before it)
        await wait_for_async(lambda: generic.done == 2 * followers, 10, "the first reads")
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


def test_a_watcher_that_leaves_leaves_the_others_watching() -> None:
    async def main() -> None:
        live, listeners = Live(), ListenerSet()
        staying, leaving, other = asyncio.Event(), asyncio.Event(), asyncio.Event()
        stop_staying = live.watch(listeners, "s", staying)
        stop_leaving = live.watch(listeners, "s", leaving)
        stop_other = live.watch(listeners, "t", other)
        stop_leaving()
        stop_leaving()  # twice: harmless
        listeners.notify("s")
        await asyncio.wait_for(staying.wait(), 5)
        assert not leaving.is_set() and not other.is_set()
        stop_staying()  # the last of "s": its count goes, the source stays for "t"
        (source,) = live._sources.values()
        assert "s" not in source.changes and len(listeners._listeners) == 1
        stop_other()
        stop_other()
        assert listeners._listeners == [] and live._sources == {}

    asyncio.run(main())


def test_each_change_overtakes_the_reads_begun_before_it() -> None:
    """Every change counts, not only the first (per stream, and for a reader of any)."""

    async def main() -> None:
        for key, path in (("s", "s"), (ANY, "runs/u/s")):
            live, listeners, reads = Live(), ListenerSet(), Reads()
            stop = live.watch(listeners, key, changed := asyncio.Event())
            tasks = []
            for _ in range(3):  # a read, then a change, three times: three reads
                tasks.append(asyncio.create_task(live.read(listeners, key, path, "5", reads)))
                await started(*tasks)
                changed.clear()
                listeners.notify("s")
                await asyncio.wait_for(changed.wait(), 5)
            assert reads.calls == 3
            reads.release.set()
            await asyncio.gather(*tasks)
            stop()

    asyncio.run(main())


def test_a_change_to_another_stream_does_not_overtake_a_read() -> None:
    async def main() -> None:
        live, listeners, reads = Live(), ListenerSet(), Reads()
        stop_s = live.watch(listeners, "s", asyncio.Event())
        stop_t = live.watch(listeners, "t", heard := asyncio.Event())
        first = asyncio.create_task(live.read(listeners, "s", "s", "5", reads))
        await started(first)
        listeners.notify("t")  # heard here, but it is another stream's
        await asyncio.wait_for(heard.wait(), 5)
        joined = asyncio.create_task(live.read(listeners, "s", "s", "5", reads))
        await started(joined)
        assert reads.calls == 1
        reads.release.set()
        assert await first is await joined
        stop_s()
        stop_t()

    asyncio.run(main())


def test_a_read_with_nobody_watching_registers_nothing() -> None:
    async def main() -> None:
        live, listeners, reads = Live(), ListenerSet(), Reads()
        reads.release.set()
        await live.read(listeners, "s", "s", "5", reads)
        assert listeners._listeners == [] and live._sources == {} and live._reads == {}

    asyncio.run(main())


def test_a_read_that_fails_after_its_readers_left_is_not_reported_unretrieved() -> None:
    """Its readers were cancelled (they left); the loop must not log the failure as an
    exception nobody retrieved."""
    import gc

    async def main() -> list[dict[str, object]]:
        reported: list[dict[str, object]] = []
        asyncio.get_running_loop().set_exception_handler(
            lambda _, context: reported.append(context)
        )
        live, listeners, gate = Live(), ListenerSet(), asyncio.Event()

        async def failing() -> Chunk:
            await gate.wait()
            raise OSError("disk gone")

        reader = asyncio.create_task(live.read(listeners, "s", "s", "5", failing))
        await started(reader)
        reader.cancel()
        await asyncio.wait([reader])
        (shared,) = live._reads.values()
        gate.set()
        await asyncio.wait([shared.future])
        del shared
        await asyncio.sleep(0)  # the done callbacks run
        gc.collect()
        return reported

    assert asyncio.run(main()) == []
