"""Streams through the SQL functions of ``0007_stream_functions.sql``: one call per operation,
each one transaction in the database, for PostgreSQL (psycopg) and Supabase (PostgREST's rpc)
alike. The rules (locking, producers, forks, expiry) live in the functions; this side prepares
what SQL is poor at (a JSON body parsed into compact message texts) and turns results and
refusals (SQLSTATE ``PT<status>`` with a JSON detail) back into the stream types.
"""

from __future__ import annotations

import base64
import json
from abc import abstractmethod
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .base import (
    Appended,
    AppendRequest,
    Chunk,
    Created,
    CreateRequest,
    Expiry,
    Producer,
    SequenceGapError,
    StaleEpochError,
    StreamClosedError,
    StreamConflict,
    StreamError,
    StreamExpired,
    StreamGone,
    StreamInvalid,
    StreamMeta,
    StreamNotFound,
    StreamStore,
    expiring,
    is_json,
    parse_offset,
)
from .sql import DEFAULT_CONTENT_TYPE, ROWS_PER_READ, json_messages

_KINDS: dict[str, type[StreamError]] = {
    "invalid": StreamInvalid,
    "not_found": StreamNotFound,
    "gone": StreamGone,
    "conflict": StreamConflict,
}


def refused(sqlstate: str | None, message: str, detail: str | None) -> StreamError | None:
    """The stream error a function's refusal describes; None if the error is not one."""
    if not (sqlstate or "").startswith("PT"):
        return None
    try:
        data = json.loads(detail or "")
    except ValueError:
        return None
    if not isinstance(data, dict) or "stream_error" not in data:
        return None
    kind = data["stream_error"]
    if "expired" in data:
        return StreamExpired(str(data["expired"]))
    if kind == "closed":
        return StreamClosedError(str(data["next_offset"]))
    if kind == "stale_epoch":
        return StaleEpochError(int(data["epoch"]))
    if kind == "gap":
        return SequenceGapError(int(data["expected"]), int(data["received"]))
    return _KINDS.get(kind, StreamError)(message)


def _encodable(message: str) -> str:
    """A message PostgreSQL text can hold: a lone surrogate (from a ``\\ud800`` escape) is kept
    as an escape."""
    try:
        message.encode()
    except UnicodeEncodeError:
        return json.dumps(json.loads(message), separators=(",", ":"))
    return message


def body_params(body: bytes, content_type: str | None, *, allow_empty: bool) -> dict[str, Any]:
    """A body as the functions take it: the bytes for a byte stream, the parsed messages (or
    why they are not JSON) for a JSON stream; both when the stream's type is not known here."""
    if not body:
        return {}
    params: dict[str, Any] = {}
    if content_type is None or not is_json(content_type):
        params["p_body"] = body
    if content_type is None or is_json(content_type):
        try:
            messages = [_encodable(m) for m in json_messages(body, allow_empty=allow_empty)]
        except StreamInvalid as exc:
            params["p_json_error"] = str(exc)
        else:
            params["p_messages"] = "\n".join(messages)
            params["p_count"] = len(messages)
    return params


def decode_meta(data: Mapping[str, Any]) -> StreamMeta:
    expires = data.get("expires_at")
    at = None if expires is None else datetime.fromtimestamp(float(expires), UTC)
    ttl = data.get("ttl")
    return StreamMeta(
        str(data["stream_id"]),
        str(data["content_type"]),
        int(data["tail"]),
        bool(data["closed"]),
        Expiry(None if ttl is None else int(ttl), at),
    )


class FunctionStreams(StreamStore):
    """The operations as calls; subclasses send them (``_call``)."""

    @abstractmethod
    def _call(
        self, name: str, params: dict[str, Any], *, get: bool = False, retry: bool = True
    ) -> Any:
        """The JSON result of ``jobtail_stream_<name>`` with these named arguments (a None one
        left out for its default). ``get``: the call only reads (PostgREST may run it as a GET
        in a read-only transaction). ``retry``: safe to send again after a lost reply."""

    def _expire(self, path: str) -> None:
        """``jobtail_stream_expire`` (``0011_stream_expiry_commit.sql``): its own transaction, so
        the removal commits, unlike inside the call that met the expired stream and refused."""
        if self._call("expire", {"p_path": path}):
            self.listeners.notify(path)

    def _sweep_batch(self, after: str, batch: int) -> tuple[int, int, str | None]:
        """``jobtail_stream_sweep`` (``0016_stream_sweep.sql``): one call, one transaction."""
        result = self._call("sweep", {"p_after": after, "p_limit": batch})
        last = result["last"]
        return int(result["expired"]), int(result["seen"]), None if last is None else str(last)

    @expiring
    def create(self, path: str, request: CreateRequest) -> Created:
        expiry = request.expiry
        if expiry.ttl is not None and expiry.expires_at is not None:
            raise StreamInvalid("send Stream-TTL or Stream-Expires-At, not both")
        forked = request.fork_from is not None
        fork_offset = None
        if forked and request.fork_offset is not None:
            fork_offset = parse_offset(request.fork_offset)
        content_type = request.content_type or (None if forked else DEFAULT_CONTENT_TYPE)
        params = {
            "p_path": path,
            "p_content_type": request.content_type or None,
            "p_ttl": expiry.ttl,
            "p_expires_at": expiry.expires_at.timestamp() if expiry.expires_at else None,
            "p_closed": request.closed,
            **body_params(request.body, content_type, allow_empty=True),
            "p_fork_from": request.fork_from,
            "p_fork_offset": fork_offset,
            "p_fork_sub_offset": request.fork_sub_offset if forked else None,
        }
        result = self._call("create", params)
        if result["created"]:
            self.listeners.notify(path)
        return Created(decode_meta(result["meta"]), created=bool(result["created"]))

    @expiring
    def append(self, path: str, request: AppendRequest) -> Appended:
        if not request.body and not request.close:
            raise StreamInvalid("empty body: send data, or Stream-Closed: true to close")
        producer = request.producer
        content_type = request.content_type or None
        params: dict[str, Any] = {
            "p_path": path,
            "p_content_type": content_type,
            "p_close": request.close,
            **body_params(request.body, content_type, allow_empty=False),
            "p_stream_seq": request.stream_seq,
        }
        if producer is not None:
            params.update(p_producer_id=producer.id, p_epoch=producer.epoch, p_seq=producer.seq)
        result = self._call("append", params, retry=producer is not None)
        echoed = result.get("producer")
        if echoed is not None:
            echoed = Producer(str(echoed["id"]), int(echoed["epoch"]), int(echoed["seq"]))
        duplicate = bool(result["duplicate"])
        if not duplicate:
            self.listeners.notify(path)
        return Appended(decode_meta(result["meta"]), duplicate=duplicate, producer=echoed)

    @expiring
    def delete(self, path: str) -> None:
        self._call("delete", {"p_path": path}, retry=False)
        self.listeners.notify(path)

    @expiring
    def head(self, path: str) -> StreamMeta:
        return decode_meta(self._call("head", {"p_path": path}, get=True))

    @expiring
    def read(self, path: str, offset: str | None) -> Chunk:
        params = {
            "p_path": path,
            "p_offset": None if offset is None else parse_offset(offset),
            "p_budget": self.max_read_bytes,
            "p_limit": ROWS_PER_READ,
        }
        result = self._call("read", params)  # not a GET: it resets a sliding TTL
        meta = decode_meta(result["meta"])
        start, stop, data = int(result["start"]), int(result["stop"]), str(result["data"])
        if meta.json:
            messages = tuple(data.split("\n")) if stop > start else ()
            return Chunk(meta, start, stop, messages=messages)
        return Chunk(meta, start, stop, data=base64.b64decode(data))
