"""A follower's reads of a store that is down are retried after 0.1 s, doubling up to 2 s, and it
gives up once 60 s of failures are spent (the README's figures, the Tailer's defaults).

The minute is not waited out: the event loop's clock, which the tail reads for its backoff and
its give-up, is moved forward by the test (``JumpingLoop``), and local commits wake the follower
for its next try, as they do in production."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from jobtail.logger import RunLogger
from jobtail.tail import LinesEvent, StoreDownEvent, Tailer, TailEvent, WindowEndEvent

from .faults.flaky import FlakyStore

pytestmark = pytest.mark.anyio


class JumpingLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock a test can move forward: timers due by then fire at once."""

    offset = 0.0

    def time(self) -> float:
        return super().time() + self.offset


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return "asyncio", {"loop_factory": JumpingLoop}


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[FlakyStore]:
    store = FlakyStore(tmp_path / "down.db")
    yield store
    store.close()


async def test_a_follower_backs_off_from_a_tenth_to_2_s_and_gives_up_past_60_s(
    flaky: FlakyStore,
) -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, JumpingLoop)
    run = flaky.create_run("up", "svc")
    flaky.start_run(run.run_id)
    tailer = Tailer(flaky)
    logger = RunLogger(flaky, run.run_id)
    events: list[TailEvent] = []

    async def commit(message: str) -> None:  # a local commit: wakes the follower at once
        await anyio.to_thread.run_sync(logger.info, message)

    async def view() -> None:
        async with contextlib.aclosing(tailer.follow(run.run_id)) as follow:
            async for event in follow:
                events.append(event)
                if isinstance(event, LinesEvent) and not flaky.down:
                    flaky.down = True  # from now on every read fails
                    await commit("two")
                elif isinstance(event, StoreDownEvent):
                    # the first 7 tries' backoff passes at once; the 8th try comes 57.5 s after the
                    # first (plus the real time the test took): 57.5 + 2 s of backoff stays within
                    # 60 s; the 9th comes at 58.5 s: its backoff would end past 60 s, so it gives up
                    if event.attempt < 7:
                        loop.offset += event.retry_in
                    elif event.attempt == 7:
                        loop.offset = 57.5
                    elif event.attempt == 8:
                        loop.offset = 58.5
                        await commit(f"during try {event.attempt}")
                    else:
                        return  # not given up: the assertions below say so

    with anyio.fail_after(150):  # on the loop's clock: 58.5 s of it are jumps, the rest real
        async with anyio.create_task_group() as tg:
            tg.start_soon(view)
            await commit("one")
    downs = [e for e in events if isinstance(e, StoreDownEvent)]
    assert [e.attempt for e in downs] == list(range(1, 9))
    assert [e.retry_in for e in downs] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0])
    # a poll already under way when the store went down may still see "two"
    delivered = [line.seq for e in events if isinstance(e, LinesEvent) for line in e.lines]
    assert delivered in ([1], [1, 2]) and events[-1] == WindowEndEvent(delivered[-1])
    assert tailer.follower_count == 0
