"""The janitor: fail runs whose worker died, and purge runs past retention.

A worker that is killed (a Lambda timeout, a crash) stops heartbeating and never finishes its
run, so its viewers would wait forever. ``sweep`` gives each such run a last ERROR line saying
why, then marks it failed. The order matters: a tail ends once the run is finished *and* every
line up to ``last_seq`` was delivered, so the line must be committed before the status flips,
or a viewer could get its ``end`` without the explanation.

``LogStore.fail_stale`` flips every stale run in one statement; the runs to explain first are
found among the newest ``scan_limit`` runs. A stale run outside that window is still failed,
and explained just after (its viewers already hold the error in the ``end`` event's data).
A queued run counts from its creation and may wait ``queued_after`` (a queue backlog is not a
dead worker) before it fails the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .logger import RunLogger
from .store.base import LogStore, Run, RunStatus, utcnow

__all__ = ["SweepResult", "stale_error", "sweep"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep did: the runs it failed and how many finished runs it deleted."""

    failed: list[str] = field(default_factory=list)
    purged: int = 0


def stale_error(stale_after: float) -> str:
    """The error recorded on a run the janitor failed."""
    return (
        f"no heartbeat from the worker for more than {stale_after:g} s: "
        "it was killed, timed out or never started"
    )


def sweep(
    store: LogStore,
    *,
    stale_after: float,
    retention_days: int,
    queued_after: float | None = None,
    now: datetime | None = None,
    scan_limit: int = 1000,
) -> SweepResult:
    """Explain and fail the stale runs, then purge finished runs older than the retention.

    A running run is stale after ``stale_after`` seconds without a heartbeat; a queued one
    after ``queued_after`` seconds without a worker (default: ``stale_after``), since a queue
    backlog is not a death.
    """
    if stale_after <= 0 or retention_days < 1 or (queued_after is not None and queued_after <= 0):
        raise ValueError("stale_after must be positive and retention_days at least 1")
    now = now or utcnow()
    waits = {
        RunStatus.RUNNING: stale_after,
        RunStatus.QUEUED: stale_after if queued_after is None else queued_after,
    }
    explained = set()
    for run in store.list_runs(limit=scan_limit):
        if run.active and _last_sign_of_life(run) < now - timedelta(seconds=waits[run.status]):
            _explain(store, run, waits[run.status])
            explained.add(run.run_id)
    failed = store.fail_stale(
        now - timedelta(seconds=stale_after),
        stale_error(stale_after),
        queued_before=now - timedelta(seconds=waits[RunStatus.QUEUED]),
    )
    for run_id in failed:
        if run_id not in explained and (found := store.get_run(run_id)) is not None:
            _explain(store, found, waits.get(found.status, stale_after))
    for run_id in explained.difference(failed):
        log.warning("run %s came back to life while the janitor explained its failure", run_id)
    purged = store.purge(now - timedelta(days=retention_days))
    if failed or purged:
        log.info("janitor: failed %d stale runs, purged %d old runs", len(failed), purged)
    return SweepResult(failed=failed, purged=purged)


def _last_sign_of_life(run: Run) -> datetime:
    """The time ``fail_stale`` judges a run by: its last heartbeat, else its creation."""
    return run.heartbeat_at or run.created_at


def _explain(store: LogStore, run: Run, waited: float) -> None:
    """Append the run's last line: why it failed (committed before the status changes)."""
    seen = _last_sign_of_life(run).isoformat(timespec="seconds")
    if run.status is RunStatus.QUEUED:
        why = f"no worker started it within {waited:g} s (queued since {seen})"
    else:
        why = f"the worker stopped sending heartbeats (last at {seen}): killed or timed out"
    logger = RunLogger(store, run.run_id)
    logger.error(f"Run failed: {why}", reason="stale", janitor=True)
    if not logger.close():
        log.warning("run %s: the janitor's explanation could not be written", run.run_id)
