"""The log store protocol: what every backend (SQLite, PostgreSQL, Supabase) must do.

A run's log is an append-only stream with one fenced writer. The writer numbers its lines
``seq = 1, 2, 3 ...``; lines at or below ``last_seq`` are idempotent no-ops (a retry after a lost
reply), the first new one must be ``last_seq + 1`` (a gap is refused), and ``last_seq`` advances
in the same transaction as the rows, so a reader that sees a finished run with ``last_seq = N``
knows lines ``1..N`` are all committed. Readers ask for ``seq > cursor``: they can neither skip
nor repeat.

Fencing, as Durable Streams' idempotent producers do it: each claim of a run bumps its
``epoch``; a writer that passes an older epoch is refused (``RunFencedError``, "stale_epoch"),
and a finished run is closed: it refuses every new line ("closed"). Finishing is atomic with
the final lines (``finish_run(..., lines=...)``), so a committed position never changes and
``end`` is provable. The janitor closes a silent run with a compare-and-close
(``if_stale_before``) that also bumps the epoch, so a stalled worker that wakes up is refused
instead of writing after ``end``.

The protocol is synchronous and thread-safe: writers are job threads, and the async tail calls
reads through a worker thread. Backends announce changes to in-process listeners so that tails
wake at once; readers in other processes poll.

The runs, errors and writer checks the protocol speaks of are in ``models`` (re-exported here):
this module is ``LogStore``, the methods a backend implements and the defaults it may keep.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio.to_thread

from .lines import JSON_LINES as JSON_LINES
from .lines import TEXT_LINES as TEXT_LINES
from .lines import FramedLines as FramedLines
from .lines import Framing as Framing
from .lines import LogLine as LogLine
from .lines import frame_lines as frame_lines
from .lines import line_json as line_json
from .lines import line_text as line_text
from .models import LEVELS as LEVELS
from .models import Listener as Listener
from .models import ListenerSet as ListenerSet
from .models import Run as Run
from .models import RunActiveError as RunActiveError
from .models import RunFencedError as RunFencedError
from .models import RunNotFoundError as RunNotFoundError
from .models import RunStatus as RunStatus
from .models import SeqGapError as SeqGapError
from .models import StoreError as StoreError
from .models import check_writer as check_writer
from .models import dump_json as dump_json
from .models import dump_pg_json as dump_pg_json
from .models import level_number as level_number
from .models import new_lines as new_lines
from .models import new_run_id as new_run_id
from .models import normalize_level as normalize_level
from .models import refusal as refusal
from .models import utcnow as utcnow

if TYPE_CHECKING:
    from .matching import SearchHits, SearchQuery

SEARCH_PAGE = 5000
"""Lines per read of the default (Python) search."""


class LogStore(ABC):
    """Durable runs and their numbered lines. Subclasses implement the abstract methods."""

    #: seconds between polls for readers that cannot be woken (other processes' writers)
    poll_interval: float = 0.25

    def __init__(self) -> None:
        self.listeners = ListenerSet()

    # -- runs -----------------------------------------------------------------------------
    @abstractmethod
    def create_run(self, upload_id: str, service_name: str, run_id: str | None = None) -> Run:
        """Create a queued run; raise RunActiveError if the key has a queued or running run."""

    @abstractmethod
    def get_run(self, run_id: str) -> Run | None: ...

    def latest_run(self, upload_id: str, service_name: str) -> Run | None:
        runs = self.list_runs(upload_id, service_name, limit=1)
        return runs[0] if runs else None

    @abstractmethod
    def list_runs(
        self, upload_id: str | None = None, service_name: str | None = None, limit: int = 100
    ) -> list[Run]:
        """Newest first."""

    @abstractmethod
    def claim_run(
        self, run_id: str, *, takeover_stale_before: datetime | None = None
    ) -> Run | None:
        """Claim a run for a writer: queued -> running with a new epoch; with
        ``takeover_stale_before``, also a running run silent since before that bound (its old
        writer is fenced). The claimed run, or None if it was not claimable."""

    def start_run(self, run_id: str) -> bool:
        """Claim a queued run (see ``claim_run``); False if it was not queued."""
        return self.claim_run(run_id) is not None

    @abstractmethod
    def heartbeat(self, run_id: str, *, epoch: int | None = None) -> None:
        """Touch a running run; RunFencedError if ``epoch`` no longer owns it, it ended, or it is
        queued ("unclaimed": no epoch owns it before the claim). Unfenced (``epoch`` None), a run
        that is not running is left as it is."""

    @abstractmethod
    def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        error: str | None = None,
        *,
        lines: Sequence[LogLine] = (),
        epoch: int | None = None,
        if_stale_before: datetime | None = None,
        omitted: int = 0,
    ) -> bool:
        """Append ``lines`` and set the final status in one transaction: the run's ``end``.

        Lines numbered 0 are numbered by the store after ``last_seq`` (for a closer that is not
        the writer, the janitor). With ``if_stale_before``, close only a run whose last sign of
        life is older than that bound, and bump its epoch (the silent writer is fenced); else
        write nothing and return False. A run already finished stays as it is: False for a
        retry that adds no line, RunFencedError("closed") for new lines. True if this call
        closed the run. ``omitted`` records how many lines the writer dropped past its cap.
        """

    @abstractmethod
    def stale_runs(
        self, heartbeat_before: datetime, queued_before: datetime | None = None, limit: int = 1000
    ) -> list[Run]:
        """Running runs silent since before ``heartbeat_before`` and queued runs created before
        ``queued_before`` (default: the same bound), oldest first."""

    @abstractmethod
    def restart_heartbeats(self, after: str = "", limit: int = 1000) -> list[str]:
        """Heartbeat up to ``limit`` running runs whose id follows ``after``, in id order, with
        the store's own clock (as their workers' heartbeats are): the janitor's restart after an
        outage. Returns the page's ids; the next page follows the last. Keyed on the id, so the
        paging never depends on two clocks agreeing."""

    def clock(self) -> datetime:
        """The store's own clock, the one it stamps creations and heartbeats with (on PostgreSQL
        and Supabase the database's): the janitor's bounds are taken from it, so a janitor whose
        machine's clock runs ahead of the database's never fails live runs, nor one behind it
        dead runs late."""
        return utcnow()

    def queued_runs(
        self, after: tuple[datetime, str] | None = None, limit: int = 1000
    ) -> list[Run]:
        """Queued runs, oldest first, after the ``(created_at, run_id)`` of the last one of the
        previous page. This default sees only the oldest ``limit`` (through ``stale_runs``);
        stores that can page override it."""
        bound = utcnow() + timedelta(days=1)
        queued = self.stale_runs(datetime(1970, 1, 1, tzinfo=UTC), bound, limit)
        return [
            run
            for run in queued
            if run.status is RunStatus.QUEUED
            and (after is None or (run.created_at, run.run_id) > after)
        ]

    def fail_stale(
        self,
        heartbeat_before: datetime,
        error: str,
        queued_before: datetime | None = None,
        explain: Callable[[Run], str] | None = None,
    ) -> list[str]:
        """Close every stale run as failed, each with its explanation (``explain(run)``) as the
        last line, atomically and only if it is still stale; return the ids closed. The line is
        stamped with the store's clock (the one that judged the run silent, not the caller's
        machine's), and never before the run's last line."""
        failed = []
        queued_bound = queued_before or heartbeat_before
        for run in self.stale_runs(heartbeat_before, queued_bound):
            bound = heartbeat_before if run.status is RunStatus.RUNNING else queued_bound
            lines = []
            if explain is not None:
                fields = {"reason": "stale", "janitor": True}
                last = (
                    self.read(run.run_id, after=run.last_seq - 1, limit=1) if run.last_seq else []
                )
                at = max([self.clock(), *(line.timestamp for line in last)])
                lines.append(LogLine(0, at, "ERROR", explain(run), fields))
            try:
                closed = self.finish_run(
                    run.run_id, RunStatus.FAILED, error, lines=lines, if_stale_before=bound
                )
            except RunFencedError:  # finished in between
                continue
            if closed:
                failed.append(run.run_id)
        return failed

    @abstractmethod
    def purge(self, finished_before: datetime) -> int:
        """Delete finished runs (and their lines) that ended before the bound; count runs."""

    # -- lines ----------------------------------------------------------------------------
    @abstractmethod
    def append(self, run_id: str, lines: Sequence[LogLine], *, epoch: int | None = None) -> int:
        """Commit consecutive lines; return the run's last_seq.

        Lines at or below last_seq are no-ops (retries); the first new one must be last_seq + 1
        (SeqGapError). A finished run refuses new lines, a stale ``epoch`` is refused, and so is
        any ``epoch`` on a queued run ("unclaimed": claim it first) (RunFencedError); an unfenced
        writer (``epoch`` None) may write to a queued run; StoreError for an unknown run."""

    @abstractmethod
    def read(
        self,
        run_id: str,
        after: int = 0,
        limit: int = 1000,
        min_level: str | None = None,
        before: int | None = None,
    ) -> list[LogLine]:
        """Lines with after < seq (< before), in seq order, at or above min_level."""

    def read_last(self, run_id: str, count: int) -> list[LogLine]:
        """The last ``count`` lines of a run, in order."""
        run = self.get_run(run_id)
        if run is None:
            return []
        return self.read(run_id, after=max(0, run.last_seq - count), limit=count)

    def read_framed(
        self,
        run_id: str,
        after: int = 0,
        limit: int = 1000,
        min_level: str | None = None,
        before: int | None = None,
        framing: Framing = JSON_LINES,
    ) -> FramedLines:
        """``read``, already encoded: the lines' JSON in ``framing``, byte for byte what
        ``frame_lines`` makes of ``read``'s lines. Backends may build it in the database."""
        lines = self.read(run_id, after=after, limit=limit, min_level=min_level, before=before)
        last = lines[-1].seq if lines else 0
        return FramedLines(frame_lines(lines, framing), len(lines), last)

    def search(
        self, run_id: str, query: SearchQuery, *, after: int, upto: int, limit: int, deadline: float
    ) -> SearchHits:
        """Seqs of the lines ``after < seq <= upto`` whose visible text matches ``query`` (at or
        above its level), in order, at most ``limit``. Past ``deadline`` (``time.monotonic()``)
        it stops and ``scanned_to`` says how far it got; SearchTimeoutError if it got nowhere.
        Backends run it in their database; this default reads pages and matches in Python."""
        from .matching import SearchHits, SearchTimeoutError

        matches_line = query.matcher(deadline)
        hits: list[int] = []
        cursor = after
        while cursor < upto:
            lines = self.read(run_id, cursor, SEARCH_PAGE, query.min_level, upto + 1)
            for line in lines:
                try:
                    found = matches_line(line.message)
                except TimeoutError:
                    if line.seq - 1 <= after:
                        raise SearchTimeoutError(after) from None
                    return SearchHits(hits, line.seq - 1)
                if found:
                    hits.append(line.seq)
                    if len(hits) >= limit:
                        return SearchHits(hits, line.seq)
            cursor = lines[-1].seq if len(lines) == SEARCH_PAGE else upto
            if time.monotonic() >= deadline:
                break
        return SearchHits(hits, cursor)

    # -- async reads: the tail's hot path ------------------------------------------------
    async def aget_run(self, run_id: str) -> Run | None:
        """``get_run`` from async code; backends with an async driver override the a* trio,
        the default runs the sync call in a worker thread."""
        return await anyio.to_thread.run_sync(self.get_run, run_id)

    async def aread(
        self,
        run_id: str,
        after: int = 0,
        limit: int = 1000,
        min_level: str | None = None,
        before: int | None = None,
    ) -> list[LogLine]:
        return await anyio.to_thread.run_sync(
            lambda: self.read(run_id, after=after, limit=limit, min_level=min_level, before=before)
        )

    async def aread_framed(
        self,
        run_id: str,
        after: int = 0,
        limit: int = 1000,
        min_level: str | None = None,
        before: int | None = None,
        framing: Framing = JSON_LINES,
    ) -> FramedLines:
        """``read_framed`` from async code (a worker thread unless a backend overrides it)."""
        return await anyio.to_thread.run_sync(
            lambda: self.read_framed(run_id, after, limit, min_level, before, framing)
        )

    async def apoll(self, run_id: str, after: int, limit: int) -> tuple[Run | None, list[LogLine]]:
        """The run, then its lines after the cursor, in one hop: a follower's every wake-up.
        Status first, so a finished run with last_seq N guarantees the lines include all to N."""

        def poll() -> tuple[Run | None, list[LogLine]]:
            return self.get_run(run_id), self.read(run_id, after=after, limit=limit)

        return await anyio.to_thread.run_sync(poll)

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what the async reads of the running event loop hold."""

    def next_poll_interval(self, idle_polls: int) -> float:
        """Seconds a tail waits for a wake-up before polling again; backends may adapt it."""
        return self.poll_interval

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def check(self) -> None:  # noqa: B027 - optional hook
        """Raise StoreError naming what is wrong if the store cannot be used."""
