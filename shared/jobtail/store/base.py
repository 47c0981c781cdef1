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
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import msgspec

from .lines import JSON_LINES as JSON_LINES
from .lines import TEXT_LINES as TEXT_LINES
from .lines import FramedLines as FramedLines
from .lines import Framing as Framing
from .lines import LogLine as LogLine
from .lines import frame_lines as frame_lines
from .lines import line_json as line_json
from .lines import line_text as line_text

if TYPE_CHECKING:
    from .matching import SearchHits, SearchQuery

LEVELS: dict[str, int] = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}

Listener = Callable[[str], None]
"""Called with a run id after that run's lines or status changed (from any thread)."""


SEARCH_PAGE = 5000
"""Lines per read of the default (Python) search."""


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        return self in (RunStatus.QUEUED, RunStatus.RUNNING)


class StoreError(Exception):
    """A store failed in a way the caller can explain to a user."""


class RunActiveError(StoreError):
    """A run for this key is still queued or running."""

    def __init__(self, run: Run) -> None:
        super().__init__(f"run {run.run_id} is still {run.status}")
        self.run = run


class RunFencedError(StoreError):
    """A write from a writer that does not own the run: the run is finished ("closed"), was
    claimed again by a newer epoch ("stale_epoch"), or is queued and nobody claimed it yet
    ("unclaimed": a write naming an epoch, 0 included, before the claim). Never retried: the job
    must stop."""

    def __init__(
        self, run_id: str, reason: str, *, epoch: int | None = None, status: str | None = None
    ) -> None:
        if reason == "closed":
            detail = f"run {run_id} is closed ({status})"
        elif reason == "unclaimed":
            detail = f"run {run_id} is queued: claim it (a new epoch) before writing"
        else:
            detail = f"run {run_id} was claimed by a newer writer (epoch {epoch})"
        super().__init__(detail)
        self.run_id, self.reason, self.epoch, self.status = run_id, reason, epoch, status


class SeqGapError(StoreError):
    """Lines that do not follow the run's last committed seq: another writer, or a bug."""

    def __init__(self, run_id: str, expected: int, received: int) -> None:
        super().__init__(f"run {run_id} expects seq {expected} next, not {received}")
        self.run_id, self.expected, self.received = run_id, expected, received


def refusal(detail: str | None) -> StoreError | None:
    """The RunFencedError or SeqGapError a SQL function's refusal describes (its error detail is
    JSON: ``{"reason", "run_id", ...}``); None if the detail is not one."""
    try:
        data = json.loads(detail or "")
    except ValueError:
        return None
    if not isinstance(data, dict) or "run_id" not in data:
        return None
    if data.get("reason") == "gap":
        return SeqGapError(str(data["run_id"]), int(data["expected"]), int(data["received"]))
    if data.get("reason") in ("closed", "stale_epoch", "unclaimed"):
        return RunFencedError(
            str(data["run_id"]), data["reason"], epoch=data.get("epoch"), status=data.get("status")
        )
    return None


class RunNotFoundError(StoreError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r}")
        self.run_id = run_id


_json = msgspec.json.Encoder(enc_hook=str)


def dump_json(value: object) -> str:
    """JSON for stored fields, alike on every backend: datetimes as RFC 3339, other odd
    values as their str()."""
    return _json.encode(value).decode()


_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")  # a \u0000 escape, not an escaped backslash


def dump_pg_json(value: object) -> str:
    """``dump_json`` for PostgreSQL, whose text cannot hold NUL: NUL becomes U+FFFD."""
    text = dump_json(value)
    return _JSON_NUL.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_run_id() -> str:
    """Time-ordered, URL-safe and within the id pattern: ms since epoch + 48 random bits."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(6)}"


def level_number(level: str | None) -> int:
    """Severity of a level name; unknown names (custom levels) count as INFO."""
    if level is None:
        return 0
    return LEVELS.get(level.upper(), LEVELS["INFO"])


def normalize_level(level: str) -> str:
    name = level.upper()
    if name == "WARN":
        return "WARNING"
    if name == "FATAL":
        return "CRITICAL"
    return name


@dataclass(slots=True)
class Run:
    """One attempt at a job for the key ``(upload_id, service_name)``."""

    run_id: str
    upload_id: str
    service_name: str
    status: RunStatus
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    last_seq: int = 0
    error: str | None = None
    epoch: int = 0
    omitted: int = 0
    """Lines the writer dropped past the per-run cap (between the head and the tail it kept)."""

    @property
    def active(self) -> bool:
        return self.status.active

    def last_sign_of_life(self) -> datetime:
        """What staleness is judged by: the last heartbeat, else the creation."""
        return self.heartbeat_at or self.created_at

    def to_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "run_id": self.run_id,
            "upload_id": self.upload_id,
            "service_name": self.service_name,
            "status": self.status.value,
            "active": self.active,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "heartbeat_at": iso(self.heartbeat_at),
            "lines": self.last_seq,
            "last_seq": self.last_seq,
            "error": self.error,
            "epoch": self.epoch,
            "truncated": self.omitted > 0,
            "omitted": self.omitted,
        }


def new_lines(run_id: str, last_seq: int, lines: Sequence[LogLine]) -> list[LogLine]:
    """The lines of an append not yet committed, checked: those at or below ``last_seq`` are
    retries and dropped, the rest must run ``last_seq + 1, + 2 ...`` (seq 0: "the next one")."""
    fresh: list[LogLine] = []
    expected = last_seq + 1
    for line in lines:
        if line.seq == 0:
            line = replace(line, seq=expected)
        elif line.seq <= last_seq:
            continue
        if line.seq != expected:
            raise SeqGapError(run_id, expected, line.seq)
        fresh.append(line)
        expected += 1
    return fresh


def check_writer(
    run_id: str,
    state: tuple[RunStatus, int, int],
    lines: Sequence[LogLine],
    epoch: int | None,
) -> list[LogLine]:
    """The lines a writer may commit to a run in ``state = (status, epoch, last_seq)``, in the
    protocol's order: a fenced writer (one naming an epoch) on a queued run is refused first (no
    writer owns an epoch before the claim), then a stale epoch, then new lines on a closed run,
    then gaps. Lines already committed are retries and yield nothing (so a retried close is a
    no-op). An unfenced writer (``epoch`` None: the janitor's explanation, a store user's own
    ``finish_run(lines=...)``) may write to a queued run, as to a running one: it owns no epoch
    a claim could take from it, and the janitor fails a queued run with a line saying why."""
    status, run_epoch, last_seq = state
    if epoch is not None and status is RunStatus.QUEUED:
        raise RunFencedError(run_id, "unclaimed", epoch=run_epoch, status=status.value)
    if epoch is not None and epoch != run_epoch:
        raise RunFencedError(run_id, "stale_epoch", epoch=run_epoch, status=status.value)
    if not status.active and any(line.seq == 0 or line.seq > last_seq for line in lines):
        raise RunFencedError(run_id, "closed", epoch=run_epoch, status=status.value)
    return new_lines(run_id, last_seq, lines)


@dataclass
class ListenerSet:
    """Thread-safe fan-out of change notices to in-process listeners."""

    _listeners: list[Listener] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, listener: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def notify(self, run_id: str) -> None:
        for listener in tuple(self._listeners):
            listener(run_id)


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
