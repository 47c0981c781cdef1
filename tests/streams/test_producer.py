"""A job in another process logs into a run over HTTP as a Durable Streams producer, with no
database credentials: every line once, fenced like an in-process writer."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest

from jobtail.store import LogLine, RunStatus
from jobtail.store.base import RunFencedError, SeqGapError, utcnow
from jobtail.streams.client import follow
from jobtail.streams.producer import HttpStore
from tests.waiting import wait_for

from .conftest import LiveRun

JOB = """
import sys
import jobtail
from jobtail.streams.producer import HttpStore

server, run_id = sys.argv[1:3]
with jobtail.run(HttpStore(server), run_id=run_id, write_behind=0.01) as log:
    for n in range(1, 41):
        log.info(f"step {n}", n=n)
"""


def test_a_job_in_another_process_logs_over_http(new_run: Callable[..., LiveRun]) -> None:
    live = new_run()
    queued = live.store.create_run("petstore", "remote")
    url = f"{live.server}/v1/stream/runs/{queued.run_id}"
    received: list[dict[str, object]] = []
    done = threading.Event()

    def read() -> None:
        received.extend(follow(url))
        done.set()

    threading.Thread(target=read, daemon=True).start()
    job = subprocess.run(
        [sys.executable, "-c", JOB, live.server, queued.run_id], capture_output=True, timeout=60
    )
    assert job.returncode == 0, job.stderr.decode()
    assert done.wait(20), "the reader did not see the run end"
    run = live.store.get_run(queued.run_id)
    assert run is not None and run.status is RunStatus.SUCCEEDED
    assert [m["seq"] for m in received] == list(range(1, run.last_seq + 1))
    steps = [m["message"] for m in received if str(m["message"]).startswith("step")]
    assert steps == [f"step {n}" for n in range(1, 41)]
    assert str(received[-1]["message"]).startswith("Run succeeded")


def line(seq: int) -> LogLine:
    return LogLine(seq, utcnow(), "INFO", f"line {seq}")


def test_retries_are_no_ops_gaps_and_zombies_are_refused(new_run: Callable[..., LiveRun]) -> None:
    live = new_run()
    queued = live.store.create_run("petstore", "fenced")
    worker = HttpStore(live.server)
    claimed = worker.claim_run(queued.run_id)
    assert claimed is not None and claimed.status is RunStatus.RUNNING
    epoch = claimed.epoch
    assert worker.append(queued.run_id, [line(1), line(2)], epoch=epoch) == 2
    assert worker.append(queued.run_id, [line(1), line(2)], epoch=epoch) == 2  # a retry
    with pytest.raises(SeqGapError):
        worker.append(queued.run_id, [line(4)], epoch=epoch)
    # the janitor takes over a silent run: the old writer is fenced off (403)
    later = utcnow() + timedelta(hours=1)
    assert live.store.claim_run(queued.run_id, takeover_stale_before=later) is not None
    with pytest.raises(RunFencedError) as fenced:
        worker.append(queued.run_id, [line(3)], epoch=epoch)
    assert fenced.value.reason == "stale_epoch"
    current = worker.get_run(queued.run_id)
    assert current is not None
    assert worker.finish_run(queued.run_id, RunStatus.FAILED, "taken over", epoch=current.epoch)
    with pytest.raises(RunFencedError) as closed:
        worker.append(queued.run_id, [line(3)], epoch=current.epoch)
    assert closed.value.reason == "closed"
    lines = live.store.read(queued.run_id)
    assert [entry.seq for entry in lines] == [1, 2]
    wait_for(lambda: live.store.get_run(queued.run_id) is not None)
    worker.close()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_queued_run_takes_no_write_before_its_claim(
    new_run: Callable[..., LiveRun], kind: str
) -> None:
    """Epoch 0 is no claim: a line, a heartbeat or a close on a queued run is one 409 that says
    to claim first, and the run stays queued, empty and claimable by the worker it waits for."""
    live = new_run(kind)
    created = httpx.post(f"{live.server}/runs/petstore/unclaimed/runs")
    assert created.status_code == 201, created.text
    run_id = created.json()["run_id"]
    url = f"{live.server}/v1/stream/runs/{run_id}"
    producer = {"Producer-Id": "w", "Producer-Epoch": "0", "Producer-Seq": "0"}
    batch = b'[{"seq": 1, "log_level": "INFO", "message": "unclaimed"}]'
    attempts = {
        "a line": ({"Content-Type": "application/json"}, batch),
        "a heartbeat": ({"Jobtail-Heartbeat": "true"}, b""),
        "a close": ({"Stream-Closed": "true", "Jobtail-Run-Status": "succeeded"}, b""),
    }
    for what, (headers, body) in attempts.items():
        answer = httpx.post(url, headers={**producer, **headers}, content=body)
        assert answer.status_code == 409, (what, answer.status_code, answer.text)
        assert "claim it first" in answer.json()["detail"], what
        assert answer.headers["jobtail-run-status"] == "queued", what
        assert "stream-closed" not in answer.headers, what
    worker = HttpStore(live.server)
    for refused in (
        lambda: worker.append(run_id, [line(1)]),
        lambda: worker.heartbeat(run_id),
        lambda: worker.finish_run(run_id, RunStatus.SUCCEEDED),
    ):
        with pytest.raises(RunFencedError) as unclaimed:  # retrying would never help
            refused()
        assert unclaimed.value.reason == "unclaimed"
    run = live.store.get_run(run_id)
    assert run is not None and (run.status, run.epoch, run.last_seq) == (RunStatus.QUEUED, 0, 0)
    claimed = worker.claim_run(run_id)
    assert claimed is not None and claimed.epoch == 1
    assert worker.append(run_id, [line(1)], epoch=claimed.epoch) == 1
    worker.close()
