"""A viewer joining a live run past the start of its follower's buffer replays from memory: no
store read at all, plain or encoded (thousands of viewers joining cost the store nothing); one
behind the buffer reads the store only for the lines older than it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from jobtail.logger import RunLogger
from jobtail.store.base import FramedLines, LogLine, RunStatus
from jobtail.store.sqlite import SQLiteStore
from jobtail.tail import EncodedLinesEvent, EndEvent, LinesEvent, Tailer, TailEvent
from jobtail.web.sse import framing

from .waiting import wait_for_async as wait_until

pytestmark = pytest.mark.anyio


class ReplayReadsStore(SQLiteStore):
    """A real SQLite store that records each replay read (plain or encoded) as
    ``(after, before)``; a follower's polls are not replay reads."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.replay_reads: list[tuple[int, int | None]] = []

    async def aread(self, run_id: str, after: int = 0, *args: Any, **kwargs: Any) -> list[LogLine]:
        self.replay_reads.append((after, kwargs.get("before")))
        return await super().aread(run_id, after, *args, **kwargs)

    async def aread_framed(
        self, run_id: str, after: int = 0, *args: Any, **kwargs: Any
    ) -> FramedLines:
        self.replay_reads.append((after, kwargs.get("before")))
        return await super().aread_framed(run_id, after, *args, **kwargs)


def last_seq(events: list[TailEvent]) -> int:
    seqs = [
        e.last_seq if isinstance(e, EncodedLinesEvent) else e.lines[-1].seq
        for e in events
        if isinstance(e, LinesEvent | EncodedLinesEvent)
    ]
    return seqs[-1] if seqs else 0


@pytest.mark.parametrize("encoded", [False, True], ids=["plain", "encoded"])
@pytest.mark.parametrize(
    ("after", "reads"), [(7, []), (9, []), (3, [(3, 8)])], ids=["at", "inside", "behind"]
)
async def test_a_viewer_reads_the_store_only_for_lines_older_than_the_followers_buffer(
    tmp_path: Path, encoded: bool, after: int, reads: list[tuple[int, int]]
) -> None:
    store = ReplayReadsStore(tmp_path / "buffer.db")
    run = store.create_run("up", "svc")
    store.start_run(run.run_id)
    tailer = Tailer(store, buffer_lines=3)
    logger = RunLogger(store, run.run_id)
    view = framing(run.run_id) if encoded else None
    first: list[TailEvent] = []
    second: list[TailEvent] = []

    async def gather(into: list[TailEvent], after: int) -> None:
        with anyio.fail_after(60):
            async for event in tailer.follow(run.run_id, after=after, framing=view):
                into.append(event)

    async with anyio.create_task_group() as tg:
        tg.start_soon(gather, first, 0)
        await wait_until(lambda: tailer.followers == 1)
        for n in range(1, 11):
            await anyio.to_thread.run_sync(logger.info, f"line {n}")
        follower = tailer._followers[run.run_id]
        await wait_until(lambda: [line.seq for line in follower.buffer] == [8, 9, 10])
        await wait_until(lambda: last_seq(first) == 10)
        assert store.replay_reads == []  # the first viewer came before any line
        tg.start_soon(gather, second, after)
        await wait_until(lambda: last_seq(second) == 10)
        assert store.replay_reads == reads  # (after, before): up to the buffer's first line
        await anyio.to_thread.run_sync(store.finish_run, run.run_id, RunStatus.SUCCEEDED)
    assert isinstance(second[-1], EndEvent)
    store.close()
