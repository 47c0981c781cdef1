"""The janitor: fail runs whose worker died, purge runs past retention, remove expired streams.

A worker that is killed (a Lambda timeout, a crash) stops heartbeating and never finishes its
run, so its viewers would wait forever. ``sweep`` closes each such run as failed with a last
ERROR line saying why, in one compare-and-close per run (``LogStore.fail_stale`` ->
``finish_run(..., if_stale_before=...)``): the line and the status change commit together, and
only if the run is still silent at that moment. A worker whose heartbeat lands first keeps its
run and nothing is written; a worker that was only stalled and wakes up later finds its run
closed and its epoch bumped, so its next line is refused instead of landing after ``end``.
A queued run counts from its creation and may wait ``queued_after`` (a queue backlog is not a
dead worker) before it fails the same way, with a message saying no worker started it.

Staleness is judged by the store's clock (``LogStore.clock``), the one the heartbeats carry: on
PostgreSQL and Supabase the database stamps them, and the janitor's machine need not agree with
it (a janitor an hour ahead judged every live run an hour silent). ``now=`` overrides it (tests,
and a caller whose clock is the store's). The explanation line is stamped with that clock too,
and never before the run's last line: with the janitor's own, it came an hour after the run's
end, or before the lines it follows.

A store outage is not a dead worker: while the store is down no worker can heartbeat, so once
it is back every run looks silent. ``Janitor`` (the in-process sweeper) therefore fails nothing
after a sweep the store refused: its next sweeps touch the heartbeat of every running run
instead, and only once that write landed (the store takes writes again, and every run's clock
restarted) does it judge runs again, ``stale_after`` later. A dead worker's run is failed that
much later; a live one is never taken for dead because of an outage. The restart pages through
the running runs by id and the store stamps them with its own clock (on PostgreSQL and Supabase
the database's, as the workers' heartbeats), so it reaches every run whatever the janitor's
clock says.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .store.base import LogStore, Run, RunStatus, StoreError
from .streams.sweep import StreamSweeper, sweep_streams

__all__ = ["Janitor", "SweepResult", "explain", "stale_error", "sweep"]

log = logging.getLogger(__name__)

RESTART_PAGE = 1000  # running runs heartbeaten per read after an outage


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep did: the runs it failed, how many finished runs it deleted, and how many
    expired streams it removed (``streams.sweep``)."""

    failed: list[str] = field(default_factory=list)
    purged: int = 0
    streams_expired: int = 0


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
    streams: StreamSweeper | None = None,
) -> SweepResult:
    """Explain and fail the stale runs, then purge finished runs older than the retention.

    A running run is stale after ``stale_after`` seconds without a heartbeat; a queued one
    after ``queued_after`` seconds without a worker (default: ``stale_after``). Both count on
    the store's clock, unless ``now`` is given. Expired streams go through ``streams`` (a
    janitor's, kept between sweeps), else through a stream store opened for this sweep alone.
    """
    if stale_after <= 0 or retention_days < 1 or (queued_after is not None and queued_after <= 0):
        raise ValueError("stale_after must be positive and retention_days at least 1")
    now = now or store.clock()
    waited = stale_after if queued_after is None else queued_after
    failed = store.fail_stale(
        now - timedelta(seconds=stale_after),
        stale_error(stale_after),
        queued_before=now - timedelta(seconds=waited),
        explain=lambda run: explain(run, stale_after, waited),
    )
    purged = store.purge(now - timedelta(days=retention_days))
    # by the store's clock always, whatever now says
    expired = streams.sweep() if streams is not None else sweep_streams(store)
    if failed or purged or expired:
        log.info(
            "janitor: failed %d stale runs, purged %d old runs, removed %d expired streams",
            len(failed), purged, expired,
        )  # fmt: skip
    return SweepResult(failed=failed, purged=purged, streams_expired=expired)


class Janitor:
    """``sweep`` with a memory of store outages, for a process that sweeps now and then.

    After a sweep the store refused, the running runs get a heartbeat from the janitor instead
    of their end; once that lands (the outage is over), sweeping resumes.
    A refused sweep is one warning, not a traceback: an outage is expected weather.
    Its sweeps share one stream store (``streams``), released by ``close`` when it stops.
    """

    def __init__(
        self,
        store: LogStore,
        *,
        stale_after: float,
        retention_days: int,
        queued_after: float | None = None,
        streams: StreamSweeper | None = None,
    ) -> None:
        self.store, self.stale_after = store, stale_after
        self.retention_days, self.queued_after = retention_days, queued_after
        self.outage = False
        """True from a refused sweep until the janitor's heartbeats land."""
        self.streams = streams or StreamSweeper(store)

    def sweep(self) -> SweepResult:
        try:
            if self.outage:
                self._restart_clocks()
                self.outage = False
                log.info("janitor: the store takes writes again; runs get a fresh stale_after")
                return SweepResult()
            return sweep(
                self.store,
                stale_after=self.stale_after,
                retention_days=self.retention_days,
                queued_after=self.queued_after,
                streams=self.streams,
            )
        except (StoreError, OSError) as exc:
            if not self.outage:
                log.warning(
                    "janitor: the store refused a sweep; no run fails until it is back: %s", exc
                )
            self.outage = True
            return SweepResult()

    def close(self) -> None:
        """Release the stream store its sweeps kept (after a sweep under way ends)."""
        self.streams.close()

    def _restart_clocks(self) -> None:
        """Heartbeat every running run on its worker's behalf: each gets a fresh
        ``stale_after`` from now, as its worker could not beat during the outage. Pages follow
        each other by run id (not by "silent since before the janitor's now": a database clock
        behind the janitor's kept a page beaten in that set, and the restart ended at it); a
        short page is the last."""
        page = self.store.restart_heartbeats("", RESTART_PAGE)
        while len(page) == RESTART_PAGE:
            page = self.store.restart_heartbeats(page[-1], RESTART_PAGE)
