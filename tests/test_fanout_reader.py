"""The fan-out log read from a position, and its readers: a caught-up viewer's batch is written to
its sink by the publish itself (its task sleeps on), and the viewer's task is woken instead
whenever it must see the event itself: a sink not ready, a batch it already has in part, or an
event that is not lines."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import anyio
import pytest

from jobtail.fanout import Fanout, Published, Reader
from jobtail.store.base import LogLine, frame_lines
from jobtail.tail import LinesEvent, WindowEndEvent
from jobtail.web.sse import framing

from .waiting import wait_for_async as wait_until

pytestmark = pytest.mark.anyio

T = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
VIEW = framing("r1")


class ListSink:
    """A viewer's response that keeps what it was sent."""

    def __init__(self, ready: bool = True) -> None:
        self.ready = ready
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)


def batch(*seqs: int) -> tuple[LogLine, ...]:
    return tuple(LogLine(seq, T, "INFO", f"line {seq}") for seq in seqs)


def test_the_log_is_read_from_a_position() -> None:
    fanout = Fanout(3)
    for n in range(1, 5):  # the first is dropped: capacity 3
        fanout.publish(WindowEndEvent(n))

    def events(position: int) -> list[object]:
        return [item.event for item in fanout.since(position) or []]

    assert fanout.since(0) is None
    assert events(1) == [WindowEndEvent(2), WindowEndEvent(3), WindowEndEvent(4)]
    assert events(2) == [WindowEndEvent(3), WindowEndEvent(4)]
    assert events(3) == [WindowEndEvent(4)]
    assert events(4) == []


@pytest.fixture
def fanout() -> Iterator[Fanout]:
    yield Fanout(10)


async def reading(fanout: Fanout, reader: Reader) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(fanout.read(reader))
    await wait_until(lambda: reader in fanout._readers)
    return task


def publish(fanout: Fanout, lines: tuple[LogLine, ...]) -> None:
    fanout.publish(LinesEvent(lines), lines)


async def test_a_caught_up_reader_is_written_to_and_sleeps_on(fanout: Fanout) -> None:
    sink = ListSink()
    reader = Reader(sink, VIEW, 0, fanout.end, 0)
    task = await reading(fanout, reader)
    publish(fanout, batch(1, 2))
    publish(fanout, batch(3))
    assert sink.sent == [frame_lines(batch(1, 2), VIEW), frame_lines(batch(3), VIEW)]
    assert (reader.position, reader.cursor) == (2, 3)
    assert reader in fanout._readers and not task.done()
    fanout.publish(WindowEndEvent(3))  # not lines: the viewer's task sees it itself
    with anyio.fail_after(10):
        await task
    assert reader not in fanout._readers and len(sink.sent) == 2


@pytest.mark.parametrize("case", ["not ready", "has part of it"])
async def test_a_reader_that_cannot_take_a_batch_is_woken_for_it(fanout: Fanout, case: str) -> None:
    sink = ListSink(ready=case != "not ready")
    reader = Reader(sink, VIEW, 0, fanout.end, 8)  # it has up to seq 8
    task = await reading(fanout, reader)
    publish(fanout, batch(8, 9) if case == "has part of it" else batch(9))
    with anyio.fail_after(10):
        await task  # woken: its own task reads the batch from its position
    assert sink.sent == [] and (reader.position, reader.cursor) == (0, 8)
    assert reader not in fanout._readers


def test_a_batch_is_encoded_once_per_view_even_when_views_alternate() -> None:
    """Viewers of two views (say two level filters) take turns: each view's bytes are the same
    object every time, encoded once, not again whenever the other view came in between."""
    lines = batch(1, 2)
    item = Published(LinesEvent(lines))
    other = framing("r2")
    first, again = item.wire(lines, VIEW, 0), item.wire(lines, other, 0)
    assert item.wire(lines, VIEW, 0)[0] is first[0] and first == (frame_lines(lines, VIEW), 2)
    assert item.wire(lines, other, 0)[0] is again[0]
