"""How a run ends when things go wrong at its end: a store outage, a deadline, a janitor that
closed the run under a stalled worker. Real SQLite, the real runner, a gated plug-in job."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobtail.janitor import sweep
from jobtail.jobs.generators import GeneratedCode, Generator, GeneratorRegistry
from jobtail.jobs.results import result_key
from jobtail.jobs.runner import Heartbeat, run_job
from jobtail.logger import RunLogger
from jobtail.store.base import (
    LogLine,
    RunFencedError,
    RunNotFoundError,
    RunStatus,
    StoreError,
    utcnow,
)
from jobtail.store.sqlite import SQLiteStore
from jobtail.uploads import ParsedUpload

Run = Callable[..., RunStatus]


class OutageStore(SQLiteStore):
    """A real SQLite store that can go down for writes (a full disk, a database restart)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.down = threading.Event()
        self.refused_ends = 0
        self.refused_beats = 0
        self.landed_beats = 0

    def _check(self) -> None:
        if self.down.is_set():
            raise StoreError("disk I/O error")

    def append(self, run_id: str, lines: Sequence[LogLine], *, epoch: int | None = None) -> int:
        self._check()
        return super().append(run_id, lines, epoch=epoch)

    def heartbeat(self, run_id: str, *, epoch: int | None = None) -> None:
        if self.down.is_set():  # read once: a beat is either refused or lands
            self.refused_beats += 1
            raise StoreError("disk I/O error")
        super().heartbeat(run_id, epoch=epoch)
        self.landed_beats += 1

    def finish_run(self, run_id: str, status: RunStatus, *args: Any, **kwargs: Any) -> bool:
        if self.down.is_set():
            self.refused_ends += 1
        self._check()
        return super().finish_run(run_id, status, *args, **kwargs)


class Scripted(Generator):
    """Logs, waits for the test at a gate, logs again, returns code; ``done`` when it returns
    or is refused."""

    name = "scripted"
    description = "logs around a gate"
    import_check = False

    def __init__(self, before_gate: Callable[[], None] = lambda: None) -> None:
        self.at_gate = threading.Event()
        self.gate = threading.Event()
        self.done = threading.Event()
        self.before_gate = before_gate
        self.raised: list[BaseException] = []
        self.thread: threading.Thread | None = None

    def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
        self.thread = threading.current_thread()
        try:
            log.info("before the gate")
            self.before_gate()
            log.info("still before the gate")
            self.at_gate.set()
            if not self.gate.wait(timeout=30):
                raise TimeoutError("the test never opened the gate")
            log.info("after the gate")
            return GeneratedCode("X = 1\n", "x.py")
        except BaseException as exc:
            self.raised.append(exc)
            raise
        finally:
            self.done.set()


@pytest.fixture
def outage_store(tmp_path: Path) -> OutageStore:
    return OutageStore(tmp_path / "outage.db")


def start(run: Run, run_id: str, **options: object) -> tuple[threading.Thread, list[RunStatus]]:
    results: list[RunStatus] = []
    worker = threading.Thread(target=lambda: results.append(run(run_id, **options)), daemon=True)
    worker.start()
    return worker, results


def test_an_outage_across_the_end_loses_no_line_and_keeps_the_success(
    outage_store: OutageStore,
    uploads: Any,
    blobs: Any,
    registry: GeneratorRegistry,
    wait_until: Callable[..., bool],
) -> None:
    """The store goes down mid-job and stays down past its end (two refused ends): every line
    is kept in order and lands, the last line is the success, and the run ends succeeded."""
    job = registry.register(Scripted(before_gate=lambda: outage_store.down.set()))
    assert isinstance(job, Scripted)
    created = outage_store.create_run("petstore", "scripted")
    results: list[RunStatus] = []

    def work() -> None:
        options = {"uploads": uploads, "blobs": blobs, "registry": registry}
        results.append(run_job(created.run_id, store=outage_store, **options))

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    assert job.at_gate.wait(timeout=10)
    job.gate.set()
    assert wait_until(lambda: outage_store.refused_ends >= 2, timeout=20)
    outage_store.down.clear()
    worker.join(timeout=30)
    assert results == [RunStatus.SUCCEEDED]
    run = outage_store.get_run(created.run_id)
    assert run is not None and run.status is RunStatus.SUCCEEDED
    lines = outage_store.read(created.run_id, limit=1000)
    assert [line.seq for line in lines] == list(range(1, run.last_seq + 1))
    messages = [line.message for line in lines]
    for expected in ("before the gate", "still before the gate", "after the gate"):
        assert messages.count(expected) == 1
    assert messages[-1].startswith("Run succeeded")


def test_a_deadline_closes_the_run_failed_and_the_late_job_is_refused(
    store: SQLiteStore, run: Run, registry: GeneratorRegistry
) -> None:
    job = registry.register(Scripted())
    assert isinstance(job, Scripted)
    created = store.create_run("petstore", "scripted")
    worker, results = start(
        run, created.run_id, deadline=time.monotonic() + 1.0, deadline_margin=0.2
    )
    worker.join(timeout=10)  # returns at the deadline while the job still waits at its gate
    assert results == [RunStatus.FAILED]
    ended = store.get_run(created.run_id)
    assert ended is not None and ended.status is RunStatus.FAILED
    assert ended.error == "worker timeout (1 s)"  # the whole time the worker had
    last = store.read(created.run_id)[-1]
    assert (last.log_level, last.message) == ("ERROR", "Run failed: worker timeout (1 s)")
    assert last.fields == {"error": "WorkerTimeout"}
    job.gate.set()
    assert job.done.wait(timeout=10)
    assert [type(exc).__name__ for exc in job.raised] == ["RunFencedError"]
    assert store.read(created.run_id)[-1] == last  # nothing after the end
    assert store.get_run(created.run_id).last_seq == ended.last_seq  # type: ignore[union-attr]


def test_a_job_done_before_its_deadline_ends_as_usual_in_its_own_daemon_thread(
    store: SQLiteStore, run: Run, registry: GeneratorRegistry
) -> None:
    """With a deadline the job runs in a thread of its own (a daemon: one left behind at the
    deadline must not keep the process alive); done in time, its run ends as it would without."""
    job = registry.register(Scripted())
    assert isinstance(job, Scripted)
    job.gate.set()
    created = store.create_run("petstore", "scripted")
    status = run(created.run_id, deadline=time.monotonic() + 60, deadline_margin=0.2)
    assert status is RunStatus.SUCCEEDED
    ended = store.get_run(created.run_id)
    assert ended is not None and ended.status is RunStatus.SUCCEEDED and ended.error is None
    assert store.read(created.run_id, limit=1000)[-1].message.startswith("Run succeeded")
    assert job.thread is not None and job.thread is not threading.current_thread()
    assert job.thread.name == f"job-{created.run_id}" and job.thread.daemon


def test_a_worker_ends_its_run_five_seconds_before_its_deadline_by_default(
    store: SQLiteStore, run: Run, registry: GeneratorRegistry
) -> None:
    """The default margin is 5 s (time to store the end before Lambda stops the function):
    the worker waits for the job until then, and no longer."""
    job = registry.register(Scripted())
    assert isinstance(job, Scripted)
    created = store.create_run("petstore", "scripted")
    deadline = time.monotonic() + 6.5
    assert run(created.run_id, deadline=deadline) is RunStatus.FAILED
    assert deadline - 5.05 <= time.monotonic() < deadline  # a join never returns early
    ended = store.get_run(created.run_id)
    assert ended is not None and ended.error == "worker timeout (6 s)"
    job.gate.set()
    assert job.done.wait(timeout=10)


class EndSignallingStore(SQLiteStore):
    """A real SQLite store that says when a run's end has been stored (``ended``)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.ended = threading.Event()

    def finish_run(self, run_id: str, status: RunStatus, *args: Any, **kwargs: Any) -> bool:
        stored = super().finish_run(run_id, status, *args, **kwargs)
        self.ended.set()
        return stored


def test_a_worker_out_of_time_ends_the_run_at_once_without_waiting_for_the_job(
    tmp_path: Path, uploads: Any, blobs: Any, registry: GeneratorRegistry
) -> None:
    """No time left before the margin: the worker ends the run failed at once, even though the
    job would be done a moment later (it waits for that end, or 0.6 s); the timeout counts the
    time the worker had (none), and the job's next line is refused, wherever it had got to."""
    store = EndSignallingStore(tmp_path / "ends.db")
    job = registry.register(Scripted(before_gate=lambda: store.ended.wait(timeout=0.6)))
    assert isinstance(job, Scripted)
    job.gate.set()
    created = store.create_run("petstore", "scripted")
    options = {"uploads": uploads, "blobs": blobs, "registry": registry}
    status = run_job(created.run_id, store=store, deadline=time.monotonic(), **options)
    assert status is RunStatus.FAILED
    ended = store.get_run(created.run_id)
    assert ended is not None and ended.error == "worker timeout (0 s)"
    last = store.read(created.run_id, limit=1000)[-1]
    assert last.message == "Run failed: worker timeout (0 s)"
    for thread in [t for t in threading.enumerate() if t.name == f"job-{created.run_id}"]:
        thread.join(timeout=10)  # the job, refused at its next line wherever it had got to
        assert not thread.is_alive()
    assert store.read(created.run_id, limit=1000)[-1] == last
    assert not job.raised or [type(exc).__name__ for exc in job.raised] == ["RunFencedError"]
    store.close()


def test_a_worker_stalled_past_the_janitor_stops_and_writes_nothing_after_the_end(
    store: SQLiteStore, run: Run, registry: GeneratorRegistry
) -> None:
    job = registry.register(Scripted())
    assert isinstance(job, Scripted)
    created = store.create_run("petstore", "scripted")
    worker, results = start(run, created.run_id, heartbeat_interval=3600)
    assert job.at_gate.wait(timeout=10)
    result = sweep(store, stale_after=60, retention_days=1, now=utcnow() + timedelta(minutes=5))
    assert result.failed == [created.run_id]
    seen_at_end = store.read(created.run_id, limit=1000)
    job.gate.set()  # the stalled worker resumes
    worker.join(timeout=10)
    assert results == [RunStatus.FAILED]
    assert store.read(created.run_id, limit=1000) == seen_at_end
    assert seen_at_end[-1].message.startswith("Run failed: the worker stopped sending heartbeats")
    assert not [line for line in seen_at_end if line.message.startswith("Run succeeded")]


class Crashes(Generator):
    name = "crashes"
    description = "fails deep in a library"
    import_check = False

    def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
        import json

        json.loads(f"{{not json from {Path.cwd() / 'secret.json'}")
        raise AssertionError("unreachable")


def test_a_failed_run_shows_its_error_last_and_no_server_path(
    store: SQLiteStore, run: Run, registry: GeneratorRegistry
) -> None:
    registry.register(Crashes())
    created = store.create_run("petstore", "crashes")
    assert run(created.run_id) is RunStatus.FAILED
    lines = store.read(created.run_id, limit=1000)
    assert lines[-1].log_level == "ERROR" and lines[-1].message.startswith("Run failed: JSON")
    assert lines[-1].fields == {"error": "JSONDecodeError"}  # the exception's type, for tools
    traceback_line = next(line for line in lines if line.message.startswith("Traceback:"))
    assert 'File "json/decoder.py"' in traceback_line.message
    everything = "\n".join(line.message for line in lines)
    for secret in (str(Path.cwd()), sys.prefix, str(Path(__file__).resolve().parents[2])):
        assert secret not in everything


def test_a_worker_whose_run_was_taken_over_returns_the_runs_status_and_stops(
    store: SQLiteStore, run: Run, registry: GeneratorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A newer worker claimed the stalled run: the old one says the run is running (its new
    owner's), not that it failed, writes nothing more, and says why it stopped."""
    job = registry.register(Scripted())
    assert isinstance(job, Scripted)
    created = store.create_run("petstore", "scripted")
    worker, results = start(run, created.run_id, heartbeat_interval=3600)
    assert job.at_gate.wait(timeout=10)
    newer = store.claim_run(created.run_id, takeover_stale_before=utcnow() + timedelta(minutes=5))
    assert newer is not None
    seen = store.read(created.run_id, limit=1000)
    job.gate.set()
    worker.join(timeout=10)
    assert results == [RunStatus.RUNNING]
    assert store.read(created.run_id, limit=1000) == seen
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.endswith("runner")]
    assert said == [
        (
            "WARNING",
            f"run {created.run_id}: this worker was fenced off (run {created.run_id} was claimed"
            f" by a newer writer (epoch {newer.epoch})); stopping",
        )
    ]


def test_a_taken_over_workers_heartbeat_stops_at_once(
    store: SQLiteStore, run: Run, registry: GeneratorRegistry, wait_until: Callable[..., bool]
) -> None:
    """The old worker beats as the writer it claimed as: its next beat after the takeover is
    refused and its heartbeat stops, while its job still waits."""
    job = registry.register(Scripted())
    assert isinstance(job, Scripted)
    created = store.create_run("petstore", "scripted")
    worker, results = start(run, created.run_id, heartbeat_interval=0.01)
    assert job.at_gate.wait(timeout=10)
    beating = [t for t in threading.enumerate() if t.name == f"heartbeat-{created.run_id}"]
    assert len(beating) == 1 and beating[0].is_alive()
    assert store.claim_run(created.run_id, takeover_stale_before=utcnow() + timedelta(minutes=5))
    assert wait_until(lambda: not beating[0].is_alive(), timeout=10)
    job.gate.set()
    worker.join(timeout=10)
    assert results == [RunStatus.RUNNING]


class StatusOutageStore(SQLiteStore):
    """A real SQLite store whose run reads fail once ``reads_down`` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.reads_down = threading.Event()

    def get_run(self, run_id: str) -> Any:
        if self.reads_down.is_set():
            raise StoreError("database is unreachable")
        return super().get_run(run_id)


def test_a_fenced_worker_that_cannot_read_the_run_reports_it_failed(
    tmp_path: Path, uploads: Any, blobs: Any, registry: GeneratorRegistry
) -> None:
    """Fenced off, then the store cannot say how the run stands: the worker reports failure
    (its job did not complete here) rather than raising or claiming success."""
    store = StatusOutageStore(tmp_path / "status.db")
    job = registry.register(Scripted())
    assert isinstance(job, Scripted)
    created = store.create_run("petstore", "scripted")
    results: list[RunStatus] = []

    def work() -> None:
        options = {"uploads": uploads, "blobs": blobs, "registry": registry}
        results.append(run_job(created.run_id, store=store, heartbeat_interval=3600, **options))

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    assert job.at_gate.wait(timeout=10)
    assert store.claim_run(created.run_id, takeover_stale_before=utcnow() + timedelta(minutes=5))
    store.reads_down.set()
    job.gate.set()
    worker.join(timeout=10)
    assert results == [RunStatus.FAILED]
    store.close()


class PurgeOnRefusalStore(SQLiteStore):
    """A real SQLite store where the retention purge lands just after a writer is refused."""

    def append(self, run_id: str, lines: Sequence[LogLine], *, epoch: int | None = None) -> int:
        try:
            return super().append(run_id, lines, epoch=epoch)
        except RunFencedError:
            self.purge(finished_before=utcnow() + timedelta(days=1))
            raise


def test_a_fenced_worker_whose_run_was_purged_reports_it_failed(
    tmp_path: Path, uploads: Any, blobs: Any, registry: GeneratorRegistry
) -> None:
    store = PurgeOnRefusalStore(tmp_path / "purged.db")
    job = registry.register(Scripted())
    assert isinstance(job, Scripted)
    created = store.create_run("petstore", "scripted")
    results: list[RunStatus] = []

    def work() -> None:
        options = {"uploads": uploads, "blobs": blobs, "registry": registry}
        results.append(run_job(created.run_id, store=store, heartbeat_interval=3600, **options))

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    assert job.at_gate.wait(timeout=10)
    swept = sweep(store, stale_after=60, retention_days=1, now=utcnow() + timedelta(minutes=5))
    assert swept.failed == [created.run_id]
    job.gate.set()
    worker.join(timeout=10)
    assert results == [RunStatus.FAILED]
    assert store.get_run(created.run_id) is None
    store.close()


def test_a_stalled_worker_whose_run_was_purged_is_refused_and_reports_it_failed(
    store: SQLiteStore, run: Run, registry: GeneratorRegistry, blobs: Any
) -> None:
    """The janitor closed the stalled run and the retention purge deleted it before the worker
    resumed: the worker's next line is refused (the run is gone, nothing can ever land), so it
    stops at once, saves no result and reports the run failed, not succeeded."""
    job = registry.register(Scripted())
    assert isinstance(job, Scripted)
    created = store.create_run("petstore", "scripted")
    worker, results = start(run, created.run_id, heartbeat_interval=3600, end_timeout=30)
    assert job.at_gate.wait(timeout=10)
    sweep(store, stale_after=60, retention_days=1, now=utcnow() + timedelta(minutes=5))
    assert store.purge(finished_before=utcnow() + timedelta(days=1)) == 1
    job.gate.set()
    worker.join(timeout=10)
    assert results == [RunStatus.FAILED]
    assert [type(exc).__name__ for exc in job.raised] == ["RunFencedError"]
    assert "purged" in str(job.raised[0])
    assert store.get_run(created.run_id) is None
    assert not blobs.exists(result_key(created))  # no result saved for a run that is gone


def test_a_claimed_writer_ending_a_purged_run_is_refused(store: SQLiteStore) -> None:
    """The end of a run purged under its writer is refused, not reported as stored."""
    created = store.create_run("petstore", "scripted")
    claimed = store.claim_run(created.run_id)
    assert claimed is not None
    logger = RunLogger(store, created.run_id, start_seq=claimed.last_seq, epoch=claimed.epoch)
    logger.info("before the stall")
    sweep(store, stale_after=60, retention_days=1, now=utcnow() + timedelta(minutes=5))
    assert store.purge(finished_before=utcnow() + timedelta(days=1)) == 1
    with pytest.raises(RunFencedError, match="purged"):
        logger.finish(RunStatus.SUCCEEDED, "Run succeeded", timeout=30)
    with pytest.raises(RunFencedError):
        logger.info("after the end")


def test_a_heartbeat_stops_when_its_run_was_purged(
    store: SQLiteStore, wait_until: Callable[..., bool], caplog: pytest.LogCaptureFixture
) -> None:
    """A purged run refuses the beat for good: the heartbeat stops instead of warning of a
    "missed" beat forever."""
    created = store.create_run("petstore", "scripted")
    claimed = store.claim_run(created.run_id)
    assert claimed is not None
    sweep(store, stale_after=60, retention_days=1, now=utcnow() + timedelta(minutes=5))
    assert store.purge(finished_before=utcnow() + timedelta(days=1)) == 1
    with Heartbeat(store, created.run_id, 0.01, epoch=claimed.epoch) as beat:
        assert wait_until(lambda: beat.refused is not None, timeout=10)
        assert wait_until(lambda: not beat._thread.is_alive(), timeout=10)
    assert isinstance(beat.refused, RunNotFoundError) and beat.beats == 0
    assert "heartbeat failed" not in caplog.text


def test_an_end_the_store_never_takes_is_said_and_left_to_the_janitor(
    outage_store: OutageStore,
    uploads: Any,
    blobs: Any,
    registry: GeneratorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The store stays down past ``end_timeout``: the worker says so once, as an error, and the
    run is left running (the janitor closes it); an end that was stored says nothing of it."""
    outages = [outage_store.down.set]  # the first run only

    def go_down() -> None:
        if outages:
            outages.pop()()

    job = registry.register(Scripted(before_gate=go_down))
    assert isinstance(job, Scripted)
    job.gate.set()
    created = outage_store.create_run("petstore", "scripted")
    options = {"uploads": uploads, "blobs": blobs, "registry": registry}
    run_job(created.run_id, store=outage_store, end_timeout=0.2, **options)
    outage_store.down.clear()
    stuck = outage_store.get_run(created.run_id)
    assert stuck is not None and stuck.status is RunStatus.RUNNING
    said = [r for r in caplog.records if "could not store its end" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in said] == [
        ("ERROR", f"run {created.run_id}: could not store its end; the janitor will close it")
    ]
    caplog.clear()
    ended = outage_store.create_run("invoice", "scripted")
    assert run_job(ended.run_id, store=outage_store, **options) is RunStatus.SUCCEEDED
    assert "could not store its end" not in caplog.text


class TakenOverAtTheEndStore(SQLiteStore):
    """A real SQLite store where a newer worker takes the run over just before its worker ends
    it (the old one looked stale)."""

    def finish_run(self, run_id: str, status: RunStatus, *args: Any, **kwargs: Any) -> bool:
        if kwargs.get("epoch") is not None:
            assert self.claim_run(run_id, takeover_stale_before=utcnow() + timedelta(minutes=5))
        return super().finish_run(run_id, status, *args, **kwargs)


def test_a_worker_whose_end_is_refused_says_who_ended_it_and_returns_the_runs_status(
    tmp_path: Path,
    uploads: Any,
    blobs: Any,
    registry: GeneratorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = TakenOverAtTheEndStore(tmp_path / "taken.db")
    job = registry.register(Scripted())
    assert isinstance(job, Scripted)
    job.gate.set()
    created = store.create_run("petstore", "scripted")
    options = {"uploads": uploads, "blobs": blobs, "registry": registry}
    assert run_job(created.run_id, store=store, **options) is RunStatus.RUNNING  # its new owner's
    now = store.get_run(created.run_id)
    assert now is not None and now.status is RunStatus.RUNNING
    said = [r.getMessage() for r in caplog.records if "ended by someone else" in r.getMessage()]
    assert said == [
        f"run {created.run_id}: ended by someone else (run {created.run_id} was claimed by a"
        f" newer writer (epoch {now.epoch}))"
    ]
    store.close()


def test_a_heartbeat_through_outages_says_so_once_each_way_and_counts_its_beats(
    outage_store: OutageStore,
    wait_until: Callable[..., bool],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Missed beats are not a failed job: one warning when an outage starts, one when a beat
    lands again with how many were missed (each outage counted on its own), and only landed
    beats are counted."""
    created = outage_store.create_run("petstore", "scripted")
    claimed = outage_store.claim_run(created.run_id)
    assert claimed is not None
    run_id = created.run_id

    def outage(beat: Heartbeat, number: int) -> int:
        """Down for at least three beats, then up until two more land: the beats missed."""
        refused = outage_store.refused_beats
        outage_store.down.set()
        assert wait_until(lambda: outage_store.refused_beats >= refused + 1, timeout=10)
        before = beat.beats  # the beat thread is past its last good beat
        assert wait_until(lambda: outage_store.refused_beats >= refused + 3, timeout=10)
        assert beat.beats == before
        outage_store.down.clear()
        assert wait_until(lambda: caplog.text.count("heartbeat back") == number, timeout=10)
        assert wait_until(lambda: beat.beats >= before + 2, timeout=10)  # and on it goes
        return outage_store.refused_beats - refused  # all refused before the one back

    with Heartbeat(outage_store, run_id, 0.01, epoch=claimed.epoch) as beat:
        assert beat._thread.name == f"heartbeat-{run_id}" and beat._thread.daemon
        assert wait_until(lambda: beat.beats >= 2, timeout=10)
        missed = [outage(beat, 1), outage(beat, 2)]
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.endswith("runner")]
    assert said == [
        ("WARNING", f"run {run_id}: heartbeat failed: disk I/O error"),
        ("WARNING", f"run {run_id}: heartbeat back after {missed[0]} missed"),
        ("WARNING", f"run {run_id}: heartbeat failed: disk I/O error"),
        ("WARNING", f"run {run_id}: heartbeat back after {missed[1]} missed"),
    ]
    assert beat.refused is None and not beat._thread.is_alive()
    assert beat.beats == outage_store.landed_beats
    alive = outage_store.get_run(run_id)
    assert alive is not None and alive.status is RunStatus.RUNNING


def test_a_heartbeat_that_starts_in_an_outage_says_so_once_each_way(
    outage_store: OutageStore,
    wait_until: Callable[..., bool],
    caplog: pytest.LogCaptureFixture,
) -> None:
    created = outage_store.create_run("petstore", "scripted")
    claimed = outage_store.claim_run(created.run_id)
    assert claimed is not None
    outage_store.down.set()
    with Heartbeat(outage_store, created.run_id, 0.01, epoch=claimed.epoch) as beat:
        assert wait_until(lambda: outage_store.refused_beats >= 2, timeout=10)
        outage_store.down.clear()
        assert wait_until(lambda: "heartbeat back" in caplog.text, timeout=10)
        missed = outage_store.refused_beats
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.endswith("runner")]
    assert said == [
        ("WARNING", f"run {created.run_id}: heartbeat failed: disk I/O error"),
        ("WARNING", f"run {created.run_id}: heartbeat back after {missed} missed"),
    ]
    assert beat.beats == outage_store.landed_beats >= 1


class HangingBeatStore(SQLiteStore):
    """A real SQLite store whose heartbeat hangs (a connection that never answers) until the
    test lets it go (``release``)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.hanging, self.release = threading.Event(), threading.Event()

    def heartbeat(self, run_id: str, *, epoch: int | None = None) -> None:
        self.hanging.set()
        self.release.wait(timeout=30)


def test_a_heartbeat_hung_in_the_store_does_not_hold_its_worker(tmp_path: Path) -> None:
    store = HangingBeatStore(tmp_path / "hangs.db")
    beat = Heartbeat(store, "r", 0.01, stop_timeout=0.2)
    assert beat.stop_timeout == 0.2 and Heartbeat(store, "r", 1).stop_timeout == 10.0
    began = time.monotonic()
    with beat:
        assert store.hanging.wait(timeout=10)
    assert time.monotonic() - began < 10  # left after 0.2 s, the beat still under way
    assert beat._thread.is_alive()
    store.release.set()
    beat._thread.join(timeout=10)
    assert not beat._thread.is_alive()
    store.close()


def test_a_heartbeat_interval_must_be_positive(store: SQLiteStore, run: Run) -> None:
    with pytest.raises(ValueError, match=r"^heartbeat interval must be positive$"):
        Heartbeat(store, "r", 0)
    created = store.create_run("petstore", "scripted")
    with pytest.raises(ValueError, match=r"^heartbeat_interval must be positive$"):
        run(created.run_id, heartbeat_interval=0)
    queued = store.get_run(created.run_id)
    assert queued is not None and queued.status is RunStatus.QUEUED  # refused before the claim


class ClaimOutageStore(SQLiteStore):
    """A real SQLite store that cannot be reached for claims while ``down``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.down = False

    def claim_run(self, run_id: str, **kwargs: Any) -> Any:
        if self.down:
            raise StoreError("database is unreachable")
        return super().claim_run(run_id, **kwargs)


def test_a_claim_says_why_a_run_is_not_run(
    tmp_path: Path,
    uploads: Any,
    blobs: Any,
    registry: GeneratorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Left queued (retry) when the store is down, FAILED when the run does not exist, its own
    status when it already ran; each said in the worker's log."""
    caplog.set_level(logging.INFO, logger="jobtail.jobs.runner")
    store = ClaimOutageStore(tmp_path / "claims.db")
    job = registry.register(Scripted())
    assert isinstance(job, Scripted)
    job.gate.set()
    options = {"uploads": uploads, "blobs": blobs, "registry": registry}
    created = store.create_run("petstore", "scripted")
    store.down = True
    assert run_job(created.run_id, store=store, **options) is RunStatus.QUEUED
    store.down = False
    queued = store.get_run(created.run_id)
    assert queued is not None and queued.status is RunStatus.QUEUED
    assert run_job("no-such-run", store=store, **options) is RunStatus.FAILED
    assert run_job(created.run_id, store=store, **options) is RunStatus.SUCCEEDED
    assert run_job(created.run_id, store=store, **options) is RunStatus.SUCCEEDED
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.endswith("runner")]
    assert said == [
        ("ERROR", f"run {created.run_id}: cannot claim it; leaving it queued"),
        ("WARNING", "run no-such-run does not exist: nothing to do"),
        ("INFO", f"run {created.run_id} is already succeeded: not running it again"),
    ]
    assert caplog.records[0].exc_info is not None  # the store's error, with its traceback
    store.close()


class Interrupted(Generator):
    name = "interrupted"
    description = "the worker is stopped mid-job"
    import_check = False

    def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
        log.info("working")
        raise KeyboardInterrupt


@pytest.mark.parametrize("seconds", [None, 60.0], ids=["no deadline", "a deadline"])
def test_an_interrupted_worker_ends_its_run_failed_then_stops(
    store: SQLiteStore, run: Run, registry: GeneratorRegistry, seconds: float | None
) -> None:
    """The same with a deadline (the job in a thread of its own) as without: what the job
    raises before the deadline stops the worker, not a "worker timeout" of all its time."""
    registry.register(Interrupted())
    created = store.create_run("petstore", "interrupted")
    deadline = None if seconds is None else time.monotonic() + seconds
    with pytest.raises(KeyboardInterrupt):
        run(created.run_id, deadline=deadline)
    ended = store.get_run(created.run_id)
    assert ended is not None and ended.status is RunStatus.FAILED
    assert ended.error == "the worker was interrupted"
    last = store.read(created.run_id, limit=1000)[-1]
    assert (last.log_level, last.message) == ("ERROR", "Run failed: the worker was interrupted")


class InterruptedLate(Generator):
    """Waits at a gate, then raises what stops a worker (its worker has moved on by then)."""

    name = "interrupted-late"
    description = "stopped after its deadline"
    import_check = False

    def __init__(self) -> None:
        self.at_gate = threading.Event()
        self.gate = threading.Event()

    def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
        self.at_gate.set()
        if not self.gate.wait(timeout=30):
            raise TimeoutError("the test never opened the gate")
        raise SystemExit(3)


def test_a_job_that_fails_after_its_worker_moved_on_is_said(
    store: SQLiteStore,
    run: Run,
    registry: GeneratorRegistry,
    wait_until: Callable[..., bool],
    caplog: pytest.LogCaptureFixture,
) -> None:
    job = registry.register(InterruptedLate())
    assert isinstance(job, InterruptedLate)
    created = store.create_run("petstore", "interrupted-late")
    worker, results = start(run, created.run_id, deadline=time.monotonic() + 2, deadline_margin=0)
    assert job.at_gate.wait(timeout=10)
    worker.join(timeout=10)  # at the deadline, while the job waits at its gate
    assert results == [RunStatus.FAILED]
    assert "moved on" not in caplog.text
    job.gate.set()
    assert wait_until(lambda: "moved on" in caplog.text, timeout=10)
    said = [r for r in caplog.records if "moved on" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in said] == [
        ("ERROR", f"run {created.run_id}: the job failed after its worker moved on")
    ]
    assert said[0].exc_info is not None and isinstance(said[0].exc_info[1], SystemExit)
    ended = store.get_run(created.run_id)
    assert ended is not None and ended.error == "worker timeout (2 s)"  # the end stands
