"""A follower sees writers in other processes only by polling: it asks the store how long to wait
after each poll, counting the empty polls since lines last came (``next_poll_interval(idle)``),
so a backend can poll fast while lines flow and back off while the run is quiet."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from jobtail.store.base import LogLine, Run
from jobtail.store.sqlite import SQLiteStore
from jobtail.tail import EndEvent, LinesEvent, Tailer, TailEvent

from .waiting import wait_for_async as wait_until

pytestmark = pytest.mark.anyio

WRITER = """
import sys
from jobtail.logger import RunLogger
from jobtail.store.base import RunStatus
from jobtail.store.sqlite import SQLiteStore

store = SQLiteStore(sys.argv[1])
run_id = sys.argv[2]
logger = RunLogger(store, run_id)
print("ready", flush=True)
for command in sys.stdin:
    if command.strip() == "finish":
        store.finish_run(run_id, RunStatus.SUCCEEDED)
    else:
        logger.info(command.strip())
    print("ok", flush=True)
store.close()
"""


class Writer:
    """A job's writer in its own process: its commits wake no listener in the test's process."""

    def __init__(self, path: Path, run_id: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), run_id],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )

    def _ready(self) -> None:
        assert self.process.stdout is not None
        assert self.process.stdout.readline() == "ready\n"

    async def ready(self) -> None:
        """Wait until it is up (imports take seconds on a busy machine)."""
        await anyio.to_thread.run_sync(self._ready)

    def _send(self, command: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline() == "ok\n"

    async def send(self, *commands: str) -> None:
        for command in commands:
            await anyio.to_thread.run_sync(self._send, command)

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()


class PollingStore(SQLiteStore):
    """A real SQLite store that records its polls (how many lines each found) and each wait the
    follower asked for, in order."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.polls: list[tuple[str, int]] = []  # ("poll", lines found) or ("wait", idle)

    async def apoll(self, run_id: str, after: int, limit: int) -> tuple[Run | None, list[LogLine]]:
        found, lines = await super().apoll(run_id, after, limit)
        self.polls.append(("poll", len(lines)))
        return found, lines

    def next_poll_interval(self, idle_polls: int) -> float:
        self.polls.append(("wait", idle_polls))
        return 0.005

    def waits_since_lines(self) -> int:
        """Waits asked for since the last poll that found lines."""
        waits = 0
        for kind, value in reversed(self.polls):
            if kind == "poll" and value:
                break
            waits += kind == "wait"
        return waits


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PollingStore]:
    store = PollingStore(tmp_path / "polled.db")
    yield store
    store.close()


async def test_the_follower_counts_idle_polls_since_lines_from_another_process_came(
    store: PollingStore, tmp_path: Path
) -> None:
    run = store.create_run("up", "svc")
    store.start_run(run.run_id)
    tailer = Tailer(store)
    writer = Writer(tmp_path / "polled.db", run.run_id)
    events: list[TailEvent] = []

    async def view() -> None:
        with anyio.fail_after(60):
            async for event in tailer.follow(run.run_id):
                events.append(event)

    def seqs() -> list[int]:
        return [line.seq for e in events if isinstance(e, LinesEvent) for line in e.lines]

    try:
        await writer.ready()
        async with anyio.create_task_group() as tg:
            tg.start_soon(view)
            await wait_until(lambda: store.waits_since_lines() >= 3)  # quiet from the start
            await writer.send("one", "two")
            await wait_until(lambda: seqs() == [1, 2] and store.waits_since_lines() >= 3)
            await writer.send("three")
            await wait_until(lambda: seqs() == [1, 2, 3] and store.waits_since_lines() >= 2)
            await writer.send("finish")
    finally:
        writer.close()
    assert seqs() == [1, 2, 3] and isinstance(events[-1], EndEvent)
    # each wait is asked for with the number of empty polls since lines last came (or since
    # the follower started): 1, 2, 3, ... while quiet, and 0 right after a poll found lines
    idle, asked = 0, []
    for kind, value in store.polls:
        if kind == "poll":
            idle = 0 if value else idle + 1
        else:
            assert value == idle, store.polls
            asked.append(value)
    assert asked[:3] == [1, 2, 3]
    assert 0 in asked and asked.count(2) >= 2
    assert tailer.follower_count == 0
