"""The janitor: dead runs get a last line saying why, then their end; old runs are purged."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from jobtail.janitor import SweepResult, stale_error, sweep
from jobtail.logger import RunLogger
from jobtail.store.base import LogLine, LogStore, Run, RunFencedError, RunStatus, utcnow
from jobtail.store.sqlite import SQLiteStore
from jobtail.streams import CreateRequest, Expiry, StreamNotFound
from jobtail.streams.sqlite import SQLiteStreams
from jobtail.tail import EndEvent, LinesEvent, Tailer, TailEvent
from tests.events import load_event
from tests.waiting import wait_for as until

from .conftest import Aws
from .lambdas import FakeContext, load_handler


class RecordingStore(SQLiteStore):
    """A real SQLite store that records the order of the writes the janitor makes."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: list[str] = []

    def append(self, run_id: str, lines: Sequence[LogLine], *, epoch: int | None = None) -> int:
        self.calls.append(f"append {run_id}")
        return super().append(run_id, lines, epoch=epoch)

    def finish_run(self, run_id: str, status: RunStatus, *args: Any, **kwargs: Any) -> bool:
        closed = super().finish_run(run_id, status, *args, **kwargs)
        lines = len(kwargs.get("lines", ()))
        self.calls.append(f"finish {run_id} {status} with {lines} lines: {closed}")
        return closed


@pytest.fixture
def recording(tmp_path: Path) -> RecordingStore:
    return RecordingStore(tmp_path / "store.db")


def running_run(store: LogStore, *messages: str, upload_id: str = "petstore") -> str:
    """A run a worker claimed and logged to, then stopped heartbeating (it was killed)."""
    run = store.create_run(upload_id, "pydantic")
    store.start_run(run.run_id)
    with RunLogger(store, run.run_id) as log:
        for message in messages:
            log.info(message)
    return run.run_id


def test_a_stale_run_gets_its_reason_as_last_line_before_it_fails(
    recording: RecordingStore,
) -> None:
    run_id = running_run(recording, "working", "still working")
    result = sweep(
        recording, stale_after=60, retention_days=30, now=utcnow() + timedelta(minutes=2)
    )
    assert result == SweepResult(failed=[run_id], purged=0)
    run = recording.get_run(run_id)
    assert run is not None and run.status is RunStatus.FAILED and run.error == stale_error(60)
    *_, last = recording.read(run_id)
    assert (last.seq, last.log_level) == (run.last_seq, "ERROR") == (3, "ERROR")
    assert last.message.startswith("Run failed: the worker stopped sending heartbeats")
    assert last.fields == {"reason": "stale", "janitor": True}
    # the line and the status in one compare-and-close, nothing appended on its own
    assert recording.calls[-1] == f"finish {run_id} failed with 1 lines: True"
    assert not [call for call in recording.calls if call == f"append {run_id}"][2:]


def test_a_run_no_worker_started_is_explained_as_such(recording: RecordingStore) -> None:
    run = recording.create_run("petstore", "pydantic")
    sweep(recording, stale_after=60, retention_days=30, now=utcnow() + timedelta(minutes=2))
    [line] = recording.read(run.run_id)
    assert line.message.startswith("Run failed: no worker started it within 60 s")


def test_a_queued_run_may_wait_longer_than_a_silent_worker(recording: RecordingStore) -> None:
    queued = recording.create_run("petstore", "pydantic")
    dead = running_run(recording, "dead", upload_id="invoice")
    later = utcnow() + timedelta(minutes=2)
    result = sweep(recording, stale_after=60, retention_days=30, queued_after=600, now=later)
    assert result.failed == [dead]
    assert recording.get_run(queued.run_id).status is RunStatus.QUEUED  # type: ignore[union-attr]
    much_later = utcnow() + timedelta(minutes=11)
    result = sweep(recording, stale_after=60, retention_days=30, queued_after=600, now=much_later)
    assert result.failed == [queued.run_id]
    [line] = recording.read(queued.run_id)
    assert line.message.startswith("Run failed: no worker started it within 600 s")


def test_live_runs_and_recent_history_are_left_alone(recording: RecordingStore) -> None:
    alive = running_run(recording, "working")
    done = running_run(recording, "done", upload_id="invoice")
    recording.finish_run(done, RunStatus.SUCCEEDED)
    assert sweep(recording, stale_after=60, retention_days=1) == SweepResult()
    assert recording.get_run(alive).status is RunStatus.RUNNING  # type: ignore[union-attr]
    assert len(recording.read(alive)) == 1 and recording.get_run(done) is not None


def test_finished_runs_past_retention_are_purged_with_their_lines(
    recording: RecordingStore,
) -> None:
    old = running_run(recording, "a", "b")
    recording.finish_run(old, RunStatus.SUCCEEDED)
    result = sweep(recording, stale_after=60, retention_days=30, now=utcnow() + timedelta(days=31))
    assert result == SweepResult(failed=[], purged=1)
    assert recording.get_run(old) is None and recording.read(old) == []


class BeatInBetween(RecordingStore):
    """The worker's heartbeat lands after the janitor listed the run as stale."""

    def stale_runs(self, *args: Any, **kwargs: Any) -> list[Run]:
        stale = super().stale_runs(*args, **kwargs)
        for run in stale:
            self.heartbeat(run.run_id)
        return stale


def test_a_worker_whose_heartbeat_lands_first_keeps_its_run_and_its_next_seq(
    tmp_path: Path,
) -> None:
    """The status-less race: the janitor judged the run stale, but the worker beat in between.
    Nothing may be written: the worker's next line keeps its seq, and the run stays alive."""
    store = BeatInBetween(tmp_path / "store.db")
    run_id = running_run(store, "working")
    beat = store.get_run(run_id).heartbeat_at  # type: ignore[union-attr]
    until(lambda: utcnow() - beat > timedelta(milliseconds=50))  # type: ignore[operator]
    result = sweep(store, stale_after=0.05, retention_days=30)
    assert result.failed == []
    assert store.get_run(run_id).status is RunStatus.RUNNING  # type: ignore[union-attr]
    assert RunLogger(store, run_id).log("INFO", "the worker's own next line") == 2
    assert [line.message for line in store.read(run_id)] == [
        "working",
        "the worker's own next line",
    ]
    assert f"finish {run_id} failed with 1 lines: False" in store.calls  # asked, wrote nothing


def test_a_stalled_worker_that_wakes_up_after_the_janitor_is_refused(
    recording: RecordingStore,
) -> None:
    """The janitor-versus-stalled-worker race of the Durable Streams issue, with the real
    logger: whatever a viewer saw before `end` is the whole log, and nothing lands after it."""
    run = recording.create_run("petstore", "pydantic")
    claimed = recording.claim_run(run.run_id)
    assert claimed is not None
    worker = RunLogger(recording, run.run_id, epoch=claimed.epoch)
    worker.info("step 1")
    worker.info("step 2")
    sweep(recording, stale_after=60, retention_days=30, now=utcnow() + timedelta(minutes=2))
    ended = recording.get_run(run.run_id)
    assert ended is not None and ended.status is RunStatus.FAILED and ended.last_seq == 3
    with pytest.raises(RunFencedError):
        worker.info("step 3, written by a worker that was only stalled")
    with pytest.raises(RunFencedError):  # and it stays fenced without asking the store
        worker.info("step 4")
    messages = [line.message for line in recording.read(run.run_id)]
    assert messages[:2] == ["step 1", "step 2"] and len(messages) == 3
    assert messages[2].startswith("Run failed: the worker stopped sending heartbeats")


@pytest.mark.anyio
async def test_a_viewer_of_a_dead_run_gets_the_reason_then_its_end(
    recording: RecordingStore,
) -> None:
    run_id = running_run(recording, "working")
    tailer = Tailer(recording)
    events: list[TailEvent] = []

    async def view() -> None:
        async for event in tailer.follow(run_id):
            events.append(event)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(view)
            while tailer.follower_count == 0:
                await anyio.sleep(0.005)
            later = utcnow() + timedelta(minutes=2)
            await anyio.to_thread.run_sync(
                lambda: sweep(recording, stale_after=60, retention_days=30, now=later)
            )
    await tailer.close()
    lines = [line for event in events if isinstance(event, LinesEvent) for line in event.lines]
    assert [line.seq for line in lines] == [1, 2]
    assert lines[-1].message.startswith("Run failed: the worker stopped")
    assert isinstance(events[-1], EndEvent) and events[-1].run.last_seq == 2


def test_the_scheduled_event_runs_a_sweep(
    lambda_env: Aws,
    context: FakeContext,
    store: SQLiteStore,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JOBTAIL_STALE_AFTER", "0.001")
    monkeypatch.setenv("JOBTAIL_HEARTBEAT_INTERVAL", "0.0005")
    run_id = running_run(store, "working")
    streams = SQLiteStreams.from_store(store)
    streams.create("brief", CreateRequest("text/plain", Expiry(ttl=0)))  # expired, never met
    streams.create("hour", CreateRequest("text/plain", Expiry(ttl=3600)))
    heartbeat = store.get_run(run_id).heartbeat_at  # type: ignore[union-attr]
    until(lambda: utcnow() - heartbeat > timedelta(milliseconds=2))  # type: ignore[operator]
    answer = load_handler("janitor").handler(load_event("janitor-schedule"), context)
    assert answer == {"failed": [run_id], "purged": 0, "streams_expired": 1}
    assert store.get_run(run_id).status is RunStatus.FAILED  # type: ignore[union-attr]
    assert '"StreamsExpired":[1.0]' in capsys.readouterr().out.replace(" ", "")
    with pytest.raises(StreamNotFound):
        streams.head("brief")
    assert streams.head("hour").tail == 0
    streams.close()


def test_staleness_is_judged_by_the_heartbeat_not_the_age(recording: RecordingStore) -> None:
    """A long job created two hours ago with a fresh heartbeat is alive."""
    run_id = running_run(recording, "a long job")
    two_hours_ago = (utcnow() - timedelta(hours=2)).isoformat()
    recording._db().execute(
        "UPDATE runs SET created_at = ?, started_at = ? WHERE run_id = ?",
        (two_hours_ago, two_hours_ago, run_id),
    )
    recording.heartbeat(run_id)
    assert sweep(recording, stale_after=60, retention_days=30).failed == []
    assert recording.get_run(run_id).status is RunStatus.RUNNING  # type: ignore[union-attr]
