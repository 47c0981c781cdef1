"""The log store protocol: what every backend (SQLite, PostgreSQL, Supabase) must do.

A run has one writer, which numbers its lines ``seq = 1, 2, 3 ...``. Appends are idempotent on
``(run_id, seq)`` so a retried write never duplicates, and ``runs.last_seq`` advances in the same
transaction as the rows, so a reader that sees a finished run with ``last_seq = N`` knows lines
``1..N`` are all committed. Readers ask for ``seq > cursor``: they can neither skip nor repeat.

The protocol is synchronous and thread-safe: writers are job threads, and the async tail calls
reads through a worker thread. Backends announce changes to in-process listeners so that tails
wake at once; readers in other processes poll.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import anyio.to_thread
import msgspec

LEVELS: dict[str, int] = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}

Listener = Callable[[str], None]
"""Called with a run id after that run's lines or status changed (from any thread)."""


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


@dataclass(frozen=True, slots=True)
class LogLine:
    """One committed log line. JSON keeps the first prototype's names for page compatibility."""

    seq: int
    timestamp: datetime
    log_level: str
    message: str
    fields: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "seq": self.seq,
            "timestamp": self.timestamp.isoformat(),
            "log_level": self.log_level,
            "message": self.message,
        }
        if self.fields:
            data["fields"] = self.fields
        return data


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

    @property
    def active(self) -> bool:
        return self.status.active

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
        }


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

    @abstractmethod
    def latest_run(self, upload_id: str, service_name: str) -> Run | None: ...

    @abstractmethod
    def list_runs(
        self, upload_id: str | None = None, service_name: str | None = None, limit: int = 100
    ) -> list[Run]:
        """Newest first."""

    @abstractmethod
    def start_run(self, run_id: str) -> bool:
        """Claim a queued run for a worker (queued -> running). False if it was not queued."""

    @abstractmethod
    def heartbeat(self, run_id: str) -> None: ...

    @abstractmethod
    def finish_run(self, run_id: str, status: RunStatus, error: str | None = None) -> None:
        """Mark an active run succeeded or failed; a finished run is left as it is."""

    @abstractmethod
    def fail_stale(
        self, heartbeat_before: datetime, error: str, queued_before: datetime | None = None
    ) -> list[str]:
        """Fail running runs whose heartbeat is older than ``heartbeat_before`` and queued runs
        created before ``queued_before`` (default: the same bound); return their ids."""

    @abstractmethod
    def purge(self, finished_before: datetime) -> int:
        """Delete finished runs (and their lines) that ended before the bound; count runs."""

    # -- lines ----------------------------------------------------------------------------
    @abstractmethod
    def append(self, run_id: str, lines: Sequence[LogLine]) -> int:
        """Commit lines idempotently on (run_id, seq); return the run's last_seq."""

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
