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
from jobtail.store.base import FramedLines, LogLine, RunStatus, frame_lines
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
        await wait_until(lambda: tailer.follower_count == 1)
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


@pytest.mark.parametrize("encoded", [False, True], ids=["plain", "encoded"])
async def test_a_level_filtered_viewer_replays_the_buffer_at_its_level_and_above(
    tmp_path: Path, encoded: bool
) -> None:
    store = ReplayReadsStore(tmp_path / "levels.db")
    run = store.create_run("up", "svc")
    store.start_run(run.run_id)
    tailer = Tailer(store, buffer_lines=6)
    logger = RunLogger(store, run.run_id)
    levels = ["DEBUG", "INFO", "WARNING", "ERROR", "DEBUG", "INFO"]  # seq 1..6
    view = framing(run.run_id) if encoded else None
    first: list[TailEvent] = []
    second: list[TailEvent] = []

    async def gather(into: list[TailEvent], min_level: str | None) -> None:
        with anyio.fail_after(60):
            async for event in tailer.follow(run.run_id, min_level=min_level, framing=view):
                into.append(event)

    async with anyio.create_task_group() as tg:
        tg.start_soon(gather, first, None)
        await wait_until(lambda: tailer.follower_count == 1)
        for n, level in enumerate(levels, 1):
            await anyio.to_thread.run_sync(logger.log, level, f"line {n}")
        follower = tailer._followers[run.run_id]
        await wait_until(lambda: len(follower.buffer) == 6)
        tg.start_soon(gather, second, "INFO")  # replays all six from the buffer
        await wait_until(lambda: any(isinstance(e, LinesEvent | EncodedLinesEvent) for e in second))
        await anyio.to_thread.run_sync(store.finish_run, run.run_id, RunStatus.SUCCEEDED)
    assert store.replay_reads == []
    got = [e for e in second if isinstance(e, LinesEvent | EncodedLinesEvent)]
    if encoded:
        wanted = [line for line in store.read(run.run_id) if line.log_level != "DEBUG"]
        assert b"".join(e.data for e in got) == frame_lines(tuple(wanted), view)  # type: ignore[arg-type, union-attr]
    else:
        assert [(line.seq, line.log_level) for e in got for line in e.lines] == [  # type: ignore[union-attr]
            (2, "INFO"),
            (3, "WARNING"),
            (4, "ERROR"),
            (6, "INFO"),
        ]
    assert isinstance(second[-1], EndEvent)
    store.close()
