"""Durable Streams storage: the protocol every backend implements, and its small value types.

A stream (PROTOCOL.md of durable-streams/durable-streams) is an append-only sequence addressed
by path. Positions are counted in *units*: bytes for byte streams, messages for JSON streams
(``application/json``), so a fork's sub-offset is just more units. Offsets are those counts,
zero-padded (``format_offset``): opaque to clients, sortable, never ``-1`` or ``now``.

Errors are exceptions the HTTP layer maps onto status codes; the core knows nothing of HTTP.
"""

from __future__ import annotations

import dataclasses
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from ..store.base import ListenerSet, RunStatus

_OFFSET = re.compile(r"^([0-9]{16})_([0-9]{16})$")
MAX_SAFE_INT = 2**53 - 1


def format_offset(units: int, hint: int = 0) -> str:
    """``<units>_<hint>``, both 16 digits. The hint is how much a read from here returns (run
    streams: 0 = one line, 1 = the rest of a complete block); generic streams use 0."""
    return f"{units:016d}_{hint:016d}"


def parse_position(text: str) -> tuple[int, int]:
    """``(units, hint)`` of an offset; ``-1`` is ``(0, 0)``. ``now`` is handled by callers."""
    if text == "-1":
        return 0, 0
    found = _OFFSET.match(text)
    if found is None:
        raise StreamInvalid(f"malformed offset {text!r}: use -1, now or a Stream-Next-Offset")
    return int(found.group(1)), int(found.group(2))


def parse_offset(text: str) -> int:
    """Units before an offset."""
    return parse_position(text)[0]


def media_type(content_type: str) -> str:
    """``Text/Plain; charset=utf-8`` -> ``text/plain``: what content types are compared by."""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(content_type: str) -> bool:
    return media_type(content_type) == "application/json"


def is_text(content_type: str) -> bool:
    return is_json(content_type) or media_type(content_type).startswith("text/")


class StreamError(Exception):
    """Base of every refusal; the message says what is wrong."""


class StreamInvalid(StreamError):
    """Malformed request (400)."""


class StreamNotFound(StreamError):
    """No such stream, or it expired (404)."""


class StreamGone(StreamError):
    """Soft-deleted: kept only for its forks (410)."""


@dataclass
class StreamExpired(StreamError):
    """The stream at ``path`` was found expired inside an operation's transaction. Never an
    answer: ``expiring`` removes it in a transaction of its own and runs the operation again.
    Removing it inside the operation's transaction would not stick: the 404 or 410 that
    operation then raises rolls the removal back with it."""

    path: str

    def __str__(self) -> str:
        return f"stream {self.path!r} expired"


class StreamConflict(StreamError):
    """Exists with another configuration, content type mismatch, Stream-Seq regression (409)."""


@dataclass
class StreamClosedError(StreamError):
    """Append to a closed stream (409 with ``Stream-Closed: true``)."""

    next_offset: str

    def __str__(self) -> str:
        return "stream is closed: no further appends"


@dataclass
class StaleEpochError(StreamError):
    """A producer epoch older than the stream's (403): the writer was fenced."""

    epoch: int

    def __str__(self) -> str:
        return f"producer epoch is stale: the current epoch is {self.epoch}"


@dataclass
class SequenceGapError(StreamError):
    """A producer sequence number beyond the next expected one (409)."""

    expected: int
    received: int

    def __str__(self) -> str:
        return f"producer sequence gap: expected {self.expected}, received {self.received}"


class StreamUnsupported(StreamError):
    """This stream does not accept the operation (405)."""


@dataclass(frozen=True, slots=True)
class Producer:
    """An idempotent producer's request: ``Producer-Id``/``-Epoch``/``-Seq``."""

    id: str
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class Expiry:
    """A sliding TTL (seconds, reset by reads and writes) or an absolute deadline, or neither."""

    ttl: int | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class StreamMeta:
    """What HEAD reports, and what every response derives its headers from."""

    stream_id: str
    content_type: str
    tail: int
    closed: bool
    expiry: Expiry = Expiry()
    extra: tuple[tuple[str, str], ...] = ()  # extension headers for HEAD (a run's status...)

    @property
    def json(self) -> bool:
        return is_json(self.content_type)

    @property
    def next_offset(self) -> str:
        return format_offset(self.tail)


@dataclass(frozen=True, slots=True)
class Created:
    meta: StreamMeta
    created: bool  # False: it already existed with the same configuration


@dataclass(frozen=True, slots=True)
class Appended:
    meta: StreamMeta
    duplicate: bool = False  # an idempotent retry: nothing was written
    producer: Producer | None = None  # echoed: epoch and the highest accepted seq


@dataclass(frozen=True, slots=True)
class Chunk:
    """Data read from ``start`` to ``stop`` (units): bytes, or JSON message texts."""

    meta: StreamMeta
    start: int
    stop: int
    data: bytes = b""
    messages: tuple[str, ...] = ()
    next: str | None = None  # the offset to read on from, when the source chose one

    @property
    def next_offset(self) -> str:
        return self.next or format_offset(self.stop)

    @property
    def up_to_date(self) -> bool:
        return self.stop >= self.meta.tail

    @property
    def closed(self) -> bool:
        """EOF: the stream is closed and this read reached its final offset."""
        return self.meta.closed and self.up_to_date

    @property
    def empty(self) -> bool:
        return self.stop == self.start

    def followed_by(self, more: Chunk) -> Chunk:
        """This and ``more``, read on from this one's end, as one chunk."""
        data, messages = self.data + more.data, self.messages + more.messages
        return dataclasses.replace(more, start=self.start, data=data, messages=messages)

    def body(self) -> bytes:
        if self.meta.json:
            return ("[" + ",".join(self.messages) + "]").encode()
        return self.data


@dataclass(frozen=True, slots=True)
class CreateRequest:
    content_type: str | None = None
    expiry: Expiry = Expiry()
    closed: bool = False
    body: bytes = b""
    fork_from: str | None = None
    fork_offset: str | None = None
    fork_sub_offset: int = 0


@dataclass(frozen=True, slots=True)
class AppendRequest:
    body: bytes = b""
    content_type: str | None = None
    close: bool = False
    producer: Producer | None = None
    stream_seq: str | None = None
    status: RunStatus = RunStatus.SUCCEEDED  # run streams: how a close ends the run
    error: str | None = None
    omitted: int = 0  # run streams: lines a capped logger left out


SWEEP_BATCH = 100
"""Expired streams one sweep transaction removes at most (each with its data and producers)."""


class StreamStore(ABC):
    """Durable streams by path. Thread-safe and synchronous; async callers use a thread."""

    #: seconds between checks for writes a wake-up cannot announce (other processes)
    poll_interval: float = 0.1
    #: catch-up reads return about this many bytes at most (at least one stored unit)
    max_read_bytes: int = 1 << 20

    def __init__(self) -> None:
        self.listeners = ListenerSet()

    @abstractmethod
    def create(self, path: str, request: CreateRequest) -> Created:
        """Create (or confirm, with the same configuration) a stream, or a fork of another."""

    @abstractmethod
    def append(self, path: str, request: AppendRequest) -> Appended:
        """Append (and/or close), validating producer and Stream-Seq in the same transaction."""

    @abstractmethod
    def delete(self, path: str) -> None:
        """Delete; a stream with forks is soft-deleted (410 from then on) until they go."""

    @abstractmethod
    def head(self, path: str) -> StreamMeta:
        """Metadata; does not reset a sliding TTL."""

    @abstractmethod
    def read(self, path: str, offset: str | None) -> Chunk:
        """Data from an offset (``-1`` the start; ``None`` the tail, for ``offset=now``)."""

    def sweep_expired(self, batch: int = SWEEP_BATCH) -> int:
        """Remove the expired streams no request met again (one that forks read is soft-deleted,
        410 as on access, and goes with its last fork), judged by the store's clock; return how
        many. Pages by stream id, ``batch`` streams per short write transaction: the janitor's."""
        if batch < 1:
            raise ValueError("batch must be at least 1")
        expired, after = 0, ""
        while True:
            removed, seen, last = self._sweep_batch(after, batch)
            expired += removed
            if seen < batch or last is None:
                return expired
            after = last

    @abstractmethod
    def _sweep_batch(self, after: str, batch: int) -> tuple[int, int, str | None]:
        """One transaction: remove up to ``batch`` expired streams whose id follows ``after``,
        each checked again under the write lock; return how many it removed, how many candidates
        it read and the last one's id."""

    def next_poll_interval(self, idle_polls: int) -> float:
        """Seconds a waiting read waits for a wake-up before polling again, after
        ``idle_polls`` polls in a row found nothing; backends may back off."""
        return self.poll_interval

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


EXPIRY_ROUNDS = 4
"""Operation attempts per request: each expired stream it meets (its own, a fork's source) is
removed before the next; a path that keeps expiring reads as absent after that many."""


class Expires(Protocol):
    def _expire(self, path: str) -> None:
        """Remove (with live forks: soft-delete) the stream at ``path`` if it is expired, in a
        transaction of its own that holds the stream's write lock."""


S = TypeVar("S", bound=Expires)
P = ParamSpec("P")
T = TypeVar("T")


def expiring(operation: Callable[Concatenate[S, P], T]) -> Callable[Concatenate[S, P], T]:
    """A store operation that removes the expired streams it meets and runs again: the removal
    commits on its own before the answer (404, or 410 while forks still read the stream), so
    their rows go as the protocol's reference server drops an expired stream on access. Two
    requests meeting the same expired stream both remove it; the second finds nothing to do."""

    @wraps(operation)
    def run(store: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        for _ in range(EXPIRY_ROUNDS):
            try:
                return operation(store, *args, **kwargs)
            except StreamExpired as exc:
                store._expire(exc.path)
        raise StreamNotFound("the stream expired")

    return run
