"""``jobtail.run``: a run around any job, in a thread, a process, a Lambda and an asyncio task."""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest

import jobtail
from jobtail.run import RunClaimError
from jobtail.store import RunActiveError, RunStatus
from jobtail.store.base import RunFencedError, StoreError
from jobtail.store.sqlite import SQLiteStore

from ..functions.lambdas import FakeContext, sqs_event
from ..waiting import wait_for
from .jobs import handler, import_rows


def lines(store: SQLiteStore, run_id: str) -> list[Any]:
    return store.read(run_id, after=0, limit=10_000)


def only_run(store: SQLiteStore, upload_id: str) -> Any:
    (found,) = store.list_runs(upload_id)
    return found


def test_a_block_that_ends_is_a_run_that_succeeded(sqlite_store: SQLiteStore) -> None:
    with jobtail.run(sqlite_store, "report", "monthly") as log:
        log.info("reading", rows=3)
        log.critical("disk almost full")
        run = sqlite_store.get_run(log.run_id)
        assert run is not None and run.status is RunStatus.RUNNING and run.epoch == 1
    run = sqlite_store.get_run(log.run_id)
    assert run is not None and run.status is RunStatus.SUCCEEDED
    got = lines(sqlite_store, run.run_id)
    assert [x.message for x in got[:2]] == ["reading", "disk almost full"]
    assert got[0].fields == {"severity_number": 9, "rows": 3}
    assert got[1].log_level == "CRITICAL" and got[1].fields == {"severity_number": 21}
    assert got[-1].message.startswith("Run succeeded in ") and run.last_seq == 3


def test_an_exception_fails_the_run_with_a_traceback_without_server_paths(
    sqlite_store: SQLiteStore,
) -> None:
    with pytest.raises(ZeroDivisionError), jobtail.run(sqlite_store, "report", "daily") as log:
        log.info("dividing")
        _ = 1 / 0
    run = sqlite_store.get_run(log.run_id)
    assert run is not None and run.status is RunStatus.FAILED
    assert run.error == "ZeroDivisionError: division by zero"
    last = lines(sqlite_store, run.run_id)[-1]
    assert last.log_level == "ERROR" and last.seq == run.last_seq == 2
    assert last.message.startswith("Run failed: ZeroDivisionError: division by zero\nTraceback")
    assert 'File "tests/embed/test_run.py"' in last.message
    assert os.getcwd() not in last.message and str(Path.home()) not in last.message
    assert last.fields is not None and last.fields["error"] == "ZeroDivisionError"


def test_a_run_created_at_enqueue_is_claimed_once(sqlite_store: SQLiteStore) -> None:
    queued = sqlite_store.create_run("mail", "digest")
    with jobtail.run(sqlite_store, run_id=queued.run_id) as log:
        log.info("sending")
    assert sqlite_store.get_run(queued.run_id).status is RunStatus.SUCCEEDED  # type: ignore[union-attr]
    with pytest.raises(RunClaimError, match="already succeeded"):  # a redelivered message
        jobtail.run(sqlite_store, run_id=queued.run_id).__enter__()
    with pytest.raises(RunClaimError, match="does not exist"):
        jobtail.run(sqlite_store, run_id="nope").__enter__()
    with pytest.raises(ValueError, match="upload_id, service"):
        jobtail.run(sqlite_store)


def test_a_key_with_an_active_run_is_refused(sqlite_store: SQLiteStore) -> None:
    with jobtail.run(sqlite_store, "mail", "digest"), pytest.raises(RunActiveError):
        jobtail.run(sqlite_store, "mail", "digest").__enter__()


def test_the_heartbeat_runs_while_the_job_does(sqlite_store: SQLiteStore) -> None:
    with jobtail.run(sqlite_store, "slow", "job", heartbeat_interval=0.05) as log:
        first = sqlite_store.get_run(log.run_id).heartbeat_at  # type: ignore[union-attr]
        wait_for(
            lambda: sqlite_store.get_run(log.run_id).heartbeat_at != first,  # type: ignore[union-attr]
            5,
            "a heartbeat",
        )


def test_a_job_fenced_off_by_the_janitor_stops_and_writes_nothing_more(
    sqlite_store: SQLiteStore,
) -> None:
    with pytest.raises(RunFencedError), jobtail.run(sqlite_store, "stuck", "job") as log:
        log.info("working")
        sqlite_store.finish_run(log.run_id, RunStatus.FAILED, "janitor: no heartbeat")
        log.info("still working?")
    run = sqlite_store.get_run(log.run_id)
    assert run is not None and run.status is RunStatus.FAILED and run.last_seq == 1


def test_in_threads_each_job_its_own_run(sqlite_store: SQLiteStore) -> None:
    def job(n: int) -> None:
        with jobtail.run(sqlite_store, f"t{n}", "thread") as log:
            for i in range(20):
                log.info(f"job {n} line {i}")

    threads = [threading.Thread(target=job, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for n in range(4):
        run = only_run(sqlite_store, f"t{n}")
        assert run.status is RunStatus.SUCCEEDED and run.last_seq == 21
        assert {x.message.split(" line")[0] for x in lines(sqlite_store, run.run_id)[:-1]} == {
            f"job {n}"
        }


def test_in_a_process_with_a_store_url(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    spawn = multiprocessing.get_context("spawn")
    ok = spawn.Process(target=import_rows, args=(url, "ok", 5))
    bad = spawn.Process(target=import_rows, args=(url, "bad", 5, True))
    for process in (ok, bad):
        process.start()
    for process in (ok, bad):
        process.join(60)
    assert (ok.exitcode, bad.exitcode) == (0, 1)
    store = jobtail.from_url(url)
    try:
        good, failed = only_run(store, "ok"), only_run(store, "bad")  # type: ignore[arg-type]
        assert good.status is RunStatus.SUCCEEDED and good.last_seq == 6
        assert failed.status is RunStatus.FAILED and failed.error == "RuntimeError: row 4 has no id"
        last = lines(store, failed.run_id)[-1]  # type: ignore[arg-type]
        assert 'File "tests/embed/jobs.py"' in last.message and "raise RuntimeError" in last.message
    finally:
        store.close()


def test_in_a_lambda_handler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    monkeypatch.setenv("JOBS_STORE", url)
    store = jobtail.from_url(url)
    try:
        queued = [store.create_run(f"doc{n}", "lambda") for n in range(2)]
        bodies = [
            json.dumps({"run_id": r.run_id, "upload_id": r.upload_id, "service_name": "lambda"})
            for r in queued
        ]
        result = handler(sqs_event(*bodies), FakeContext())
        assert result == {"done": [r.run_id for r in queued]}
        for queued_run in queued:
            run = store.get_run(queued_run.run_id)
            assert run is not None and run.status is RunStatus.SUCCEEDED and run.last_seq == 3
            first = lines(store, run.run_id)[0]  # type: ignore[arg-type]
            assert first.fields is not None and first.fields["remaining_ms"] > 0
        with pytest.raises(RunClaimError):  # SQS delivers at least once: a retry runs nothing
            handler(sqs_event(bodies[0]), FakeContext())
    finally:
        store.close()


def test_async_with_in_concurrent_tasks(sqlite_store: SQLiteStore) -> None:
    async def job(n: int) -> str:
        async with jobtail.run(sqlite_store, f"a{n}", "async") as log:
            for i in range(5):
                log.info(f"task {n} step {i}")
                await asyncio.sleep(0)
            return log.run_id

    async def failing() -> None:
        async with jobtail.run(sqlite_store, "a-bad", "async"):
            raise KeyError("missing")

    async def main() -> list[str]:
        tasks = [asyncio.create_task(job(n)) for n in range(3)]
        with pytest.raises(KeyError):
            await asyncio.create_task(failing())
        return await asyncio.gather(*tasks)

    run_ids = asyncio.run(main())
    for n, run_id in enumerate(run_ids):
        run = sqlite_store.get_run(run_id)
        assert run is not None and run.status is RunStatus.SUCCEEDED and run.last_seq == 6
        assert lines(sqlite_store, run_id)[0].message == f"task {n} step 0"
    assert only_run(sqlite_store, "a-bad").status is RunStatus.FAILED


def test_a_cancelled_task_ends_its_run_failed(sqlite_store: SQLiteStore) -> None:
    started = asyncio.Event()

    async def job() -> None:
        async with jobtail.run(sqlite_store, "cancel", "async"):
            started.set()
            await asyncio.sleep(60)

    async def main() -> None:
        task = asyncio.create_task(job())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    run = only_run(sqlite_store, "cancel")
    assert run.status is RunStatus.FAILED and "interrupted (CancelledError)" in run.error


class FlakyHeartbeats(SQLiteStore):
    """A store whose heartbeats fail while ``down`` is set (an outage), counting every try."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.down = threading.Event()
        self.tries = 0

    def heartbeat(self, run_id: str, *, epoch: int | None = None) -> None:
        self.tries += 1
        if self.down.is_set():
            raise StoreError("the database is unreachable")
        super().heartbeat(run_id, epoch=epoch)


def test_a_heartbeat_outage_is_said_once_when_it_starts_and_once_when_it_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyHeartbeats(tmp_path / "s.db")
    caplog.set_level(logging.WARNING, logger="jobtail")
    with jobtail.run(store, "flaky", "beat", heartbeat_interval=0.01) as log:
        store.down.set()
        begun = store.tries
        wait_for(lambda: store.tries >= begun + 5, 10, "five missed beats")
        store.down.clear()
        wait_for(lambda: "heartbeat back" in caplog.text, 10, "the heartbeat back")
        log.info("done")
    said = [r.getMessage() for r in caplog.records if "heartbeat" in r.getMessage()]
    assert len(said) == 2, said
    assert "heartbeat failed: the database is unreachable (retrying every 0.01 s)" in said[0]
    missed = int(said[1].split("back after ")[1].split()[0])
    assert missed >= 5
    store.close()
