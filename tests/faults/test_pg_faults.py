"""PostgreSQL stopped mid-run under a real ``jobtail serve``: the job's lines wait and are retried
in order, the viewer is told and resumes; nothing is lost or doubled."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobtail.store.migrate import apply_migrations

from ..figures import FIGURES
from ..pg import PgCluster
from ..waiting import wait_for
from .harness import Server, Viewer, check_run

pytestmark = [pytest.mark.faults, pytest.mark.postgres]


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    """A cluster of its own: this test stops it."""
    with PgCluster.temporary() as own:
        yield own


def test_postgres_stopped_for_seconds_mid_run(cluster: PgCluster, tmp_path: Path) -> None:
    url = cluster.url(cluster.create_database())
    apply_migrations(url)
    server = Server(
        tmp_path,
        JOBTAIL_STORE=url,
        JOBTAIL_STALE_AFTER="30",  # the outage is not a dead worker
        JOBTAIL_HEARTBEAT_INTERVAL="1",
        FAULT_LINES="300",
        FAULT_PACE="0.01",
    )
    try:
        server.start()
        run_id = server.generate()
        viewer = Viewer(server.url, run_id)
        wait_for(lambda: len(viewer.lines) >= 30, what="the run to be under way")
        cluster.stop()
        FIGURES["process faults injected"] += 1
        threading.Event().wait(3)  # the fault: the database is gone this long
        cluster.start()
        viewer.join(60)
        check_run(server, run_id, [viewer], "succeeded")
        assert len(server.journaled(run_id)) == 300
    finally:
        server.stop()


def test_postgres_stopped_across_the_end_of_a_run(cluster: PgCluster, tmp_path: Path) -> None:
    """The job logs its last lines and ends while the database is gone, for longer than
    STALE_AFTER (1.5 s): its end waits, the janitor takes no live run for dead, and once the
    server is back every line is stored once and the run ends succeeded."""
    url = cluster.url(cluster.create_database())
    apply_migrations(url)
    server = Server(tmp_path, JOBTAIL_STORE=url, FAULT_LINES="60", FAULT_PACE="0.01")
    try:
        server.start()
        run_id = server.generate()
        viewer = Viewer(server.url, run_id)
        wait_for(lambda: len(viewer.lines) >= 20, what="the run to be under way")
        cluster.stop()
        FIGURES["process faults injected"] += 1
        wait_for(lambda: len(server.journaled(run_id)) == 60, 30, "the job to log through")
        threading.Event().wait(2.5)  # the fault goes on past STALE_AFTER
        cluster.start()
        viewer.join(60)
        check_run(server, run_id, [viewer], "succeeded")
    finally:
        server.stop()
