"""The janitor judges staleness by the store's clock, on every backend: on PostgreSQL and
Supabase the database stamps heartbeats and creations with its own clock, and the janitor's
machine may run an hour ahead of it (it failed every live run) or behind it (it failed dead runs
an hour late)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from jobtail.janitor import Janitor
from jobtail.store.base import LogLine, LogStore, RunStatus, utcnow
from jobtail.store.postgres import PostgresStore
from jobtail.store.sqlite import SQLiteStore
from tests.store.clocks import skew_clock

STALE_AFTER = 60
HOUR = timedelta(hours=1)


def _silence(store: LogStore, request: pytest.FixtureRequest, run_id: str) -> None:
    """Set the run's last heartbeat twice ``STALE_AFTER`` back on the store's own clock."""
    if isinstance(store, SQLiteStore):
        then = (store.clock() - timedelta(seconds=2 * STALE_AFTER)).isoformat()
        with store._use() as db:
            db.execute("UPDATE runs SET heartbeat_at = ? WHERE run_id = ?", (then, run_id))
        return
    sql = (
        "update runs set heartbeat_at = clock_timestamp() - make_interval(secs => %s)"
        " where run_id = %s"
    )
    writer = PostgresStore(request.getfixturevalue("pg_url"), listen=False)
    try:
        writer._rows(sql + " returning run_id", (2 * STALE_AFTER, run_id))
    finally:
        writer.close()


def _claimed(store: LogStore, upload_id: str) -> str:
    run = store.claim_run(store.create_run(upload_id, "svc").run_id)
    assert run is not None
    return run.run_id


@pytest.mark.parametrize("skew", [HOUR, -HOUR], ids=["ahead", "behind"])
def test_staleness_is_judged_by_the_stores_clock_not_the_janitors(
    store: LogStore,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    skew: timedelta,
) -> None:
    """A live run (fresh heartbeat) and a fresh queued run are kept; a run silent for twice
    ``stale_after`` by the store's clock is failed, whichever way the janitor's clock is off."""
    live, dead = _claimed(store, "live"), _claimed(store, "dead")
    skew_clock(monkeypatch, skew)  # on SQLite the store's clock moves with it
    _silence(store, request, dead)
    store.heartbeat(live)  # all stamped by the store's clock (on PostgreSQL the database's)
    queued = store.create_run("queued", "svc").run_id
    janitor = Janitor(store, stale_after=STALE_AFTER, retention_days=1)
    assert janitor.sweep().failed == [dead]
    expected = {live: RunStatus.RUNNING, dead: RunStatus.FAILED, queued: RunStatus.QUEUED}
    for run_id, status in expected.items():
        run = store.get_run(run_id)
        assert run is not None and run.status is status, run_id


def test_a_fresh_claim_by_a_worker_whose_clock_runs_behind_is_not_stale(
    store: LogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim's first heartbeat is the store's clock too, not the claiming worker's (which is
    the key a retried claim finds its run by): judged by the database's clock, a worker an hour
    behind it had its fresh claim an hour silent until its first heartbeat."""
    skew_clock(monkeypatch, -HOUR)  # this process's: the worker's, and on SQLite the store's
    claimed = _claimed(store, "claimed")
    janitor = Janitor(store, stale_after=STALE_AFTER, retention_days=1)
    assert janitor.sweep().failed == []
    run = store.get_run(claimed)
    assert run is not None and run.status is RunStatus.RUNNING


@pytest.mark.parametrize("skew", [HOUR, -HOUR], ids=["ahead", "behind"])
def test_the_explanation_is_stamped_by_the_stores_clock_after_the_runs_last_line(
    store: LogStore,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    skew: timedelta,
) -> None:
    """The janitor's last line is stamped with the clock that judged the run silent, never
    before the line it follows: stamped with the janitor's own clock, it was an hour after the
    run's end (ahead) or an hour before the run's last line (behind). On SQLite the store's
    clock is the janitor's, so there it is the run's last line that bounds it."""
    dead = _claimed(store, "dead")
    started = LogLine(1, utcnow() - 2 * HOUR, "INFO", "started")  # the worker's clock
    store.append(dead, [started, LogLine(2, utcnow(), "INFO", "working")])
    skew_clock(monkeypatch, skew)  # the janitor's (and on SQLite the store's)
    _silence(store, request, dead)
    before = store.clock()
    assert Janitor(store, stale_after=STALE_AFTER, retention_days=1).sweep().failed == [dead]
    after = store.clock()
    _, worked, explained = store.read(dead)
    assert explained.message.startswith("Run failed:") and explained.log_level == "ERROR"
    assert max(before, worked.timestamp) <= explained.timestamp <= max(after, worked.timestamp)
