"""Durable Streams answers: stream metadata and chunks as headers and bodies (catch-up,
long-poll, ``offset=now``, SSE), with the caching each one allows and the protocol's status
for each refusal. The routes in ``routes/streams.py`` parse, authorize and call these."""

from __future__ import annotations

import base64
import collections
import functools
import json
import re
import time
from collections.abc import AsyncIterator

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from ..streams import (
    Chunk,
    SequenceGapError,
    StaleEpochError,
    StreamClosedError,
    StreamConflict,
    StreamError,
    StreamGone,
    StreamInvalid,
    StreamMeta,
    StreamNotFound,
    Streams,
    StreamUnsupported,
    is_text,
    next_cursor,
)
from ..streams.fan import Reader
from ..streams.runs import RunUnclaimed, is_run_path
from .sse import StreamResponse
from .writer import Writer

PROTOCOL_HEADERS = (
    "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Stream-TTL,"
    " Stream-Expires-At, Stream-Seq, Stream-Forked-From, Stream-Fork-Offset,"
    " Stream-Fork-Sub-Offset, Producer-Id, Producer-Epoch, Producer-Seq,"
    " Producer-Expected-Seq, Producer-Received-Seq, stream-sse-data-encoding,"
    " Jobtail-Run-Status, Jobtail-Run-Epoch, Jobtail-Upload-Id, Jobtail-Service"
)
SECURITY = {
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": f"{PROTOCOL_HEADERS}, ETag, Location, Content-Type",
}
CACHEABLE = "max-age=60, stale-while-revalidate=300"
_NEWLINE = re.compile(r"\r\n|\r|\n")  # every SSE line end: a lone \r must not start a field


def meta_headers(meta: StreamMeta) -> dict[str, str]:
    headers = {"Stream-Next-Offset": meta.next_offset}
    if meta.closed:
        headers["Stream-Closed"] = "true"
    return headers


def error_response(exc: StreamError) -> JSONResponse:
    status, headers = 400, {}
    if isinstance(exc, StreamNotFound):
        status = 404
    elif isinstance(exc, StreamGone):
        status = 410
    elif isinstance(exc, StreamUnsupported):
        status, headers = 405, {"Allow": "GET, HEAD, OPTIONS"}
    elif isinstance(exc, StreamClosedError):
        status = 409
        headers = {"Stream-Closed": "true", "Stream-Next-Offset": exc.next_offset}
    elif isinstance(exc, StaleEpochError):
        status, headers = 403, {"Producer-Epoch": str(exc.epoch)}
    elif isinstance(exc, SequenceGapError):
        status = 409
        headers = {
            "Producer-Expected-Seq": str(exc.expected),
            "Producer-Received-Seq": str(exc.received),
        }
    elif isinstance(exc, RunUnclaimed):
        status = 409
        headers = {"Jobtail-Run-Status": "queued", "Jobtail-Run-Epoch": str(exc.epoch)}
    elif isinstance(exc, StreamConflict):
        status = 409
    elif not isinstance(exc, StreamInvalid):
        status = 503
    headers.update(SECURITY)
    return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)


def etag(chunk: Chunk) -> str:
    closed = ":c" if chunk.closed else ""
    return f'"{chunk.meta.stream_id}:{chunk.start}:{chunk.stop}{closed}"'


def cache_control(path: str, chunk: Chunk, private: bool) -> str:
    """Data by position never changes, nor does EOF; an empty open tail, or a run addressed
    by its key (whose latest run can change), must not be cached."""
    if (chunk.empty and not chunk.closed) or (is_run_path(path) and path.count("/") > 1):
        return "no-store"
    return f"{'private' if private else 'public'}, {CACHEABLE}"


def chunk_response(
    request: Request, path: str, chunk: Chunk, private: bool, cursor: str | None
) -> Response:
    headers = {
        "Stream-Next-Offset": chunk.next_offset,
        "ETag": etag(chunk),
        "Cache-Control": cache_control(path, chunk, private),
        **SECURITY,
    }
    if chunk.up_to_date:
        headers["Stream-Up-To-Date"] = "true"
    if chunk.closed:
        headers["Stream-Closed"] = "true"
        # a finished run's outcome never changes: readers at EOF need no HEAD to learn it
        headers.update((k, v) for k, v in chunk.meta.extra if k == "Jobtail-Run-Status")
    elif cursor is not None:
        headers["Stream-Cursor"] = cursor
    if request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    headers["Content-Type"] = chunk.meta.content_type
    return Response(chunk.body(), headers=headers)


async def head_response(streams: Streams, path: str) -> Response:
    try:
        meta = await streams.head(path)
    except StreamError as exc:
        failed = error_response(exc)
        return Response(status_code=failed.status_code, headers=dict(failed.headers))
    headers = {**meta_headers(meta), **SECURITY, "Cache-Control": "no-store", **dict(meta.extra)}
    headers["Content-Type"] = meta.content_type
    if meta.expiry.ttl is not None:
        headers["Stream-TTL"] = str(meta.expiry.ttl)
    if meta.expiry.expires_at is not None:
        headers["Stream-Expires-At"] = meta.expiry.expires_at.isoformat().replace("+00:00", "Z")
    return Response(status_code=200, headers=headers)


async def read_response(request: Request, streams: Streams, path: str, private: bool) -> Response:
    query = request.query_params
    live, offset_text = query.get("live"), query.get("offset")
    try:
        if live not in (None, "long-poll", "sse"):
            raise StreamInvalid("live must be long-poll or sse")
        if live is not None and offset_text is None:
            raise StreamInvalid(f"live={live} needs an offset (-1 for the start, or now)")
        now = offset_text == "now"
        offset = None if now else ("-1" if offset_text is None else offset_text)
        cursor = next_cursor(query.get("cursor"))
        if live == "sse":
            first = await streams.read(path, offset)  # 404 before the stream starts
            return sse_response(path, streams, first, cursor)
        if live == "long-poll":
            chunk = await streams.wait_read(path, offset, streams.long_poll_seconds)
        else:
            chunk = await streams.read(path, offset)
    except StreamError as exc:
        return error_response(exc)
    if now and live is None:
        return now_response(chunk)
    if live == "long-poll" and chunk.empty:
        return timeout_response(chunk, cursor)
    return chunk_response(request, path, chunk, private, cursor if live else None)


def now_response(chunk: Chunk) -> Response:
    headers = {
        **meta_headers(chunk.meta), **SECURITY, "Cache-Control": "no-store",
        "Stream-Up-To-Date": "true",
    }  # fmt: skip
    headers["Content-Type"] = chunk.meta.content_type
    return Response(b"[]" if chunk.meta.json else b"", headers=headers)


def timeout_response(chunk: Chunk, cursor: str) -> Response:
    headers = {
        **meta_headers(chunk.meta), **SECURITY, "Cache-Control": "no-store",
        "Stream-Up-To-Date": "true",
    }  # fmt: skip
    if not chunk.meta.closed:
        headers["Stream-Cursor"] = cursor
    else:
        headers.update((k, v) for k, v in chunk.meta.extra if k == "Jobtail-Run-Status")
    return Response(status_code=204, headers=headers)


# -- SSE -------------------------------------------------------------------------------------------
def sse_data(chunk: Chunk) -> str:
    if chunk.meta.json:
        lines = ["["] + [m + "," for m in chunk.messages[:-1]] + [chunk.messages[-1], "]"]
    elif is_text(chunk.meta.content_type):
        lines = _NEWLINE.split(chunk.data.decode(errors="replace"))
    else:
        lines = [base64.b64encode(chunk.data).decode()]
    return "event: data\n" + "".join(f"data:{line}\n" for line in lines) + "\n"


_ENCODED: collections.OrderedDict[tuple[int, str, bool], tuple[Chunk, bytes]] = (
    collections.OrderedDict()
)
_ENCODED_KEPT = 16  # chunks a round of readers shares: enough for a few streams at a time


def _event(chunk: Chunk, cursor: str, announce: bool) -> bytes:
    """Data and its control in one send: a reader that stops at the first complete event after
    a marker (the conformance suite's does) must see both, and it is one write, not two.
    Encoded once per chunk and cursor: readers woken together share one read (``streams.live``),
    so each of them sends the same chunk, mostly with the same cursor. Keyed by the chunk's
    identity, kept with its bytes so that its id is not reused while it is here."""
    key = (id(chunk), cursor, announce)
    kept = _ENCODED.get(key)
    if kept is not None and kept[0] is chunk:
        return kept[1]
    event = sse_data(chunk) if not chunk.empty else ""
    if not chunk.empty or announce or chunk.closed:
        event += sse_control(chunk, cursor)
    data = event.encode()
    if not announce:  # a first read is the reader's own: nobody shares it
        _ENCODED[key] = (chunk, data)
        if len(_ENCODED) > _ENCODED_KEPT:
            _ENCODED.popitem(last=False)
    return data


def sse_control(chunk: Chunk, cursor: str) -> str:
    control: dict[str, object] = {"streamNextOffset": chunk.next_offset}
    if chunk.closed:
        control["streamClosed"] = True
        control["upToDate"] = True
    else:
        control["streamCursor"] = cursor
        if chunk.up_to_date:
            control["upToDate"] = True
    return f"event: control\ndata:{json.dumps(control, separators=(',', ':'))}\n\n"


def sse_response(path: str, streams: Streams, first: Chunk, cursor: str) -> Response:
    """The lean path of the logs' SSE (``web.sse.StreamResponse``: two tasks per viewer, handed
    off past the request's chain); while the reader is caught up, its stream's fan writes each
    chunk to it (``streams.fan``) and its own task sleeps."""
    headers = {**SECURITY, "Cache-Control": "no-cache", "Content-Type": "text/event-stream"}
    if not is_text(first.meta.content_type):
        headers["stream-sse-data-encoding"] = "base64"
    writer = Writer()
    reader = Reader(writer, functools.partial(_event, cursor=cursor, announce=False), cursor)
    body = sse_events(path, streams, first, cursor, reader)
    return StreamResponse(body, ping=0, headers=headers, writer=writer)


async def sse_events(
    path: str, streams: Streams, first: Chunk, cursor: str, reader: Reader | None = None
) -> AsyncIterator[bytes]:
    """Data then control for each read; an empty first read still says where the tail is; ends
    at closure or after ``sse_seconds`` so caches can collapse reconnecting clients."""
    yield _event(first, cursor, announce=True)
    until = time.monotonic() + streams.sse_seconds
    async for chunk in streams.follow(path, first, until, reader):
        yield _event(chunk, cursor, announce=False)
