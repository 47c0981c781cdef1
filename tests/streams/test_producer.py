"""A job in another process logs into a run over HTTP as a Durable Streams producer, with no
database credentials: every line once, fenced like an in-process writer."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta

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
