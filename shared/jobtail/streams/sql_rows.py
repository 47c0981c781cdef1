"""The rows the SQL stream operations read and write, and the pure steps over them.

A ``streams`` row (``Row``: its columns, whether it has expired, its metadata), the one
transaction the operations are given (``Tx``), a JSON body as the messages stored, a producer's
closing key, and stored rows cut to a range: none of it touches a database, so ``sql.py`` holds
only the operations.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from .base import Expiry, Producer, StreamInvalid, StreamMeta

COLUMNS = (
    "stream_id, path, content_type, ttl, expires_at, touched_at, tail, closed, closed_by,"
    " stream_seq, fork_of, fork_offset, forks, deleted"
)


class Cursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    """One open transaction: ``execute`` takes ``?`` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...


@dataclass
class Row:
    """A ``streams`` row."""

    stream_id: str
    path: str
    content_type: str
    ttl: int | None
    expires_at: float | None
    touched_at: float
    tail: int
    closed: bool
    closed_by: str | None
    stream_seq: str | None
    fork_of: str | None
    fork_offset: int | None
    forks: int
    deleted: bool

    @classmethod
    def of(cls, r: Sequence[Any]) -> Row:
        return cls(
            r[0], r[1], r[2], r[3], r[4], r[5], int(r[6]), bool(r[7]), r[8], r[9], r[10],
            None if r[11] is None else int(r[11]), int(r[12]), bool(r[13]),
        )  # fmt: skip

    def expired(self, now: float) -> bool:
        if self.expires_at is not None and now >= self.expires_at:
            return True
        return self.ttl is not None and now >= self.touched_at + self.ttl

    def meta(self) -> StreamMeta:
        expires = None
        if self.expires_at is not None:
            expires = datetime.fromtimestamp(self.expires_at, UTC)
        return StreamMeta(
            self.stream_id, self.content_type, self.tail, self.closed, Expiry(self.ttl, expires)
        )


def producer_key(producer: Producer | None) -> str | None:
    return None if producer is None else f"{producer.epoch}:{producer.seq}:{producer.id}"


def json_messages(body: bytes, *, allow_empty: bool) -> list[str]:
    """A JSON body as stored messages: one level of array flattened, each re-encoded compactly."""
    if allow_empty and not body.strip():
        return []
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise StreamInvalid(f"body is not valid JSON: {exc}") from exc
    items = value if isinstance(value, list) else [value]
    if not items and not allow_empty:
        raise StreamInvalid("an empty JSON array appends nothing: send at least one message")
    return [json.dumps(item, separators=(",", ":"), ensure_ascii=False) for item in items]


def _sliced(
    rows: list[Any], start: int, end: int, json_rows: bool
) -> Iterator[tuple[int, int, bytes]]:
    """Rows cut to ``[start, end)``: by bytes, or by messages (lines) for JSON batches."""
    for r in rows:
        r_start, r_stop, data = int(r[0]), int(r[1]), bytes(r[2])
        lo, hi = max(r_start, start), min(r_stop, end)
        if lo != r_start or hi != r_stop:
            if json_rows:
                data = b"\n".join(data.split(b"\n")[lo - r_start : hi - r_start])
            else:
                data = data[lo - r_start : hi - r_start]
        yield lo, hi, data
