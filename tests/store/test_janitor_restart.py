"""The janitor's restart of the heartbeat clocks after an outage, on every backend, with the
janitor's clock an hour ahead of the store's (on PostgreSQL and Supabase the database stamps
heartbeats with its own clock; the two machines need not agree)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from jobtail import janitor as janitor_module
from jobtail.janitor import Janitor
from jobtail.store.base import LogStore, RunStatus
from tests.store.clocks import skew_clock

PAGE = 3
RUNS = 3 * PAGE + 1  # three full pages and a short one


def _running(store: LogStore) -> dict[str, datetime]:
    """RUNS running runs, each with its heartbeat as claimed."""
    beats = {}
    for n in range(RUNS):
        run = store.claim_run(store.create_run(f"up{n}", "svc").run_id)
        assert run is not None and run.heartbeat_at is not None
        beats[run.run_id] = run.heartbeat_at
    return beats


def test_every_running_run_gets_a_fresh_clock_whatever_the_janitors_clock_says(
    store: LogStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(janitor_module, "RESTART_PAGE", PAGE)
    before = _running(store)
    skew_clock(monkeypatch, timedelta(hours=1))  # the janitor's, after the workers' claims
    queued = store.create_run("queued", "svc").run_id
    ended = store.claim_run(store.create_run("ended", "svc").run_id)
    assert ended is not None and store.finish_run(ended.run_id, RunStatus.SUCCEEDED)
    janitor = Janitor(store, stale_after=60, retention_days=1)
    janitor.outage = True  # a sweep the store refused: the next one restarts the clocks
    assert janitor.sweep().failed == [] and not janitor.outage
    for run_id, beat in before.items():
        after = store.get_run(run_id)
        assert after is not None and after.heartbeat_at is not None
        assert after.heartbeat_at > beat, run_id
    assert store.get_run(queued).heartbeat_at is None  # type: ignore[union-attr]
    assert store.get_run(ended.run_id).heartbeat_at == ended.heartbeat_at  # type: ignore[union-attr]
