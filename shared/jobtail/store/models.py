"""The log store protocol's types and rules, shared by every backend and by the callers.

A run (``Run``, ``RunStatus``), the errors a store raises, and what a writer may commit to a run
in a given state (``check_writer``: the fencing and the no-gap rule of ``base``, in the
protocol's order, so that every backend refuses alike and the SQL functions' refusals map back
to the same errors: ``refusal``). Also the helpers every backend needs the same: JSON for stored
fields, the clock, run ids, level numbers, the in-process listeners. Apart from ``base``, which
is the protocol itself (``LogStore``) and re-exports every name here.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import msgspec

from .lines import LogLine

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
