"""The janitor-versus-stalled-worker race, end to end: a worker that stalls past ``stale_after``
is closed by the janitor while a viewer watches over real HTTP; when the worker wakes up it is
refused. What the viewer saw before ``end`` is exactly ``logs/final``, and nothing lands after.
Run on SQLite and on real PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from jobtail.janitor import sweep
from jobtail.logger import RunLogger
from jobtail.services import Services
from jobtail.store.base import RunFencedError, RunStatus, utcnow
from jobtail.web.app import create_app

from .conftest import ServerThread
from .scripted import make_services
from .waiting import wait_for

KEY = "/runs/petstore/scripted"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def services(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    store = None
    if request.param == "postgres":
        from jobtail.store.postgres import PostgresStore

        store = PostgresStore(request.getfixturevalue("pg_url"))
    # the in-process janitor waits an hour: this test runs the sweep itself, at a chosen time
    made, _ = make_services(tmp_path, store, stale_after=3600, ping_seconds=0.2)
    yield made
    made.close()


def watch(client: httpx.Client, got: list[ServerSentEvent]) -> None:
    with connect_sse(client, "GET", f"{KEY}/logs") as source:
        for event in source.iter_sse():
            if event.data:
                got.append(event)


def test_a_stalled_worker_cannot_write_after_the_janitor_ended_its_run(
    services: Services, serve: Callable[[object], ServerThread]
) -> None:
    store = services.store
    run = store.create_run("petstore", "scripted")
    claimed = store.claim_run(run.run_id)
    assert claimed is not None
    worker = RunLogger(store, run.run_id, epoch=claimed.epoch)
    worker.info("step 1")
    worker.info("step 2")
    server = serve(create_app(services=services))
    got: list[ServerSentEvent] = []
    with httpx.Client(base_url=server.url, timeout=httpx.Timeout(10, read=30)) as client:
        viewer = threading.Thread(target=watch, args=(client, got), daemon=True)
        viewer.start()
        wait_for(lambda: sum(e.event == "message" for e in got) == 2, what="the first lines")
        # the worker stalls (no heartbeat) past stale_after: the janitor ends the run
        later = utcnow() + timedelta(minutes=5)
        assert sweep(store, stale_after=60, retention_days=1, now=later).failed == [run.run_id]
        viewer.join(timeout=20)
        assert not viewer.is_alive()
        # the worker wakes up and carries on: refused, never stored
        with pytest.raises(RunFencedError) as refused:
            worker.info("step 3, from the stalled worker")
        assert refused.value.reason == "stale_epoch"
        final = client.get(f"{KEY}/logs/final").json()
    seen = [json.loads(e.data) for e in got if e.event == "message"]
    assert seen == final["logs"]
    assert [line["message"] for line in seen][:2] == ["step 1", "step 2"]
    assert seen[-1]["message"].startswith("Run failed: the worker stopped sending heartbeats")
    end = got[-1]
    assert end.event == "end"
    assert json.loads(end.data)["last_seq"] == seen[-1]["seq"] == final["last_seq"] == 3
    ended = store.get_run(run.run_id)
    assert ended is not None and ended.status is RunStatus.FAILED and ended.last_seq == 3
