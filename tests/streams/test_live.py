"""Live readers of one stream share their wake-ups and reads (``streams.live``), but a reader
never gets an answer older than what it must see: one read before a change it was woken by, or
before it began to watch."""

from __future__ import annotations

import asyncio
import threading

from jobtail.store.base import ListenerSet
from jobtail.streams.base import Chunk, StreamMeta
from jobtail.streams.live import ANY, Live

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
        assert "s" not in source.changes and "s" not in source.since
        assert len(listeners._listeners) == 1
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


def test_readers_that_begin_together_share_a_read_begun_since_the_stream_was_watched() -> None:
    """Every change made here since a stream was first watched is heard, so a read begun since
    then is one a newcomer may join; one begun before, or in an earlier watch, is not."""

    async def main() -> None:
        live, listeners, reads = Live(), ListenerSet(), Reads()
        before = asyncio.create_task(live.read(listeners, "s", "s", "5", reads))
        await started(before)
        stop_first = live.watch(listeners, "s", asyncio.Event())
        since = live.watched_since(listeners, "s")
        first = asyncio.create_task(live.read(listeners, "s", "s", "5", reads, since))
        await started(first)
        assert reads.calls == 2  # the read from before the watch is not joined
        stop_second = live.watch(listeners, "s", asyncio.Event())
        assert live.watched_since(listeners, "s") == since
        second = asyncio.create_task(
            live.read(listeners, "s", "s", "5", reads, live.watched_since(listeners, "s"))
        )
        await started(second)
        assert reads.calls == 2  # begun since the stream was watched: joined
        stop_first()
        stop_second()
        stop_third = live.watch(listeners, "s", asyncio.Event())  # a new watch
        third = asyncio.create_task(
            live.read(listeners, "s", "s", "5", reads, live.watched_since(listeners, "s"))
        )
        await started(third)
        assert reads.calls == 3  # the earlier watch's read is not this one's
        reads.release.set()
        one, two, three, four = await asyncio.gather(before, first, second, third)
        assert two is three and len({id(one), id(two), id(four)}) == 3
        stop_third()

    asyncio.run(main())
