"""The janitor: fail runs whose worker died, and purge runs past retention.

A worker that is killed (a Lambda timeout, a crash) stops heartbeating and never finishes its
run, so its viewers would wait forever. ``sweep`` closes each such run as failed with a last
ERROR line saying why, in one compare-and-close per run (``LogStore.fail_stale`` ->
``finish_run(..., if_stale_before=...)``): the line and the status change commit together, and
only if the run is still silent at that moment. A worker whose heartbeat lands first keeps its
run and nothing is written; a worker that was only stalled and wakes up later finds its run
closed and its epoch bumped, so its next line is refused instead of landing after ``end``.
A queued run counts from its creation and may wait ``queued_after`` (a queue backlog is not a
dead worker) before it fails the same way, with a message saying no worker started it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .store.base import LogStore, Run, RunStatus, utcnow

__all__ = ["SweepResult", "explain", "stale_error", "sweep"]

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


def explain(run: Run, stale_after: float, queued_after: float) -> str:
    """The last line of a run the janitor fails: why, in the run's own terms."""
    seen = run.last_sign_of_life().isoformat(timespec="seconds")
    if run.status is RunStatus.QUEUED:
        why = f"no worker started it within {queued_after:g} s (queued since {seen})"
    else:
        why = (
            f"the worker stopped sending heartbeats for more than {stale_after:g} s"
            f" (last at {seen}): killed or timed out"
        )
    return f"Run failed: {why}"


def sweep(
    store: LogStore,
    *,
    stale_after: float,
    retention_days: int,
    queued_after: float | None = None,
    now: datetime | None = None,
) -> SweepResult:
    """Explain and fail the stale runs, then purge finished runs older than the retention.

    A running run is stale after ``stale_after`` seconds without a heartbeat; a queued one
    after ``queued_after`` seconds without a worker (default: ``stale_after``).
    """
    if stale_after <= 0 or retention_days < 1 or (queued_after is not None and queued_after <= 0):
        raise ValueError("stale_after must be positive and retention_days at least 1")
    now = now or utcnow()
    waited = stale_after if queued_after is None else queued_after
    failed = store.fail_stale(
        now - timedelta(seconds=stale_after),
        stale_error(stale_after),
        queued_before=now - timedelta(seconds=waited),
        explain=lambda run: explain(run, stale_after, waited),
    )
    purged = store.purge(now - timedelta(days=retention_days))
    if failed or purged:
        log.info("janitor: failed %d stale runs, purged %d old runs", len(failed), purged)
    return SweepResult(failed=failed, purged=purged)
