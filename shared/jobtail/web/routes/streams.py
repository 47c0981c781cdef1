"""The Durable Streams protocol over HTTP under ``/v1/stream/{path}``: parse headers, call
``jobtail.streams.Streams``, shape the response. ``runs/...`` paths are run logs.

Every jobtail router serves the run reads (``add_read_routes``: GET and HEAD of
``runs/{run_id}`` and ``runs/{upload_id}/{service}``, behind the host's auth or the run's stream
token); jobtail's own app adds the rest of the protocol (``add_routes``: generic streams, a
run's producer writes), which checks jobtail's keys itself (``authorize``). Both find their
``Streams`` in the router's ``Context``, which its lifespan opens and closes."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute

from ...config import Settings
from ...store import RunStatus
from ...streams import (
    AppendRequest,
    Chunk,
    CreateRequest,
    Expiry,
    Producer,
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
from ...streams.base import MAX_SAFE_INT
from ...streams.runs import is_run_path
from ..auth import AuthError, ScopeError, bearer_grant, challenge, check_stream_token
from ..deps import Context, ContextDep, Routes, TokenQuery, check_token

routes = APIRouter(tags=["streams"])
ROUTE = "/v1/stream/{path:path}"
RUN_STREAM = "/v1/stream/runs/{run_id}"
KEY_STREAM = "/v1/stream/runs/{upload_id}/{service}"
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
_TTL = re.compile(r"^(0|[1-9][0-9]*)$")
_INT = re.compile(r"^(0|[1-9][0-9]*)$")
_NEWLINE = re.compile(r"\r\n|\r|\n")  # every SSE line end: a lone \r must not start a field


@dataclass
class Mounted:
    """What the protocol's routes need: the streams and settings of the router they serve in."""

    streams: Streams
    settings: Settings


def get_mounted(context: ContextDep) -> Mounted:
    """From the jobtail router whose route answers: its lifespan opened the streams."""
    return Mounted(context.streams, context.settings)


MountedDep = Annotated[Mounted, Depends(get_mounted)]


def add_read_routes(target: Routes) -> None:
    """A run's stream (catch-up, long-poll, SSE, HEAD) for every router, behind the host's auth
    or the run's stream token: ``/v1/stream/runs/{run_id}`` and ``.../{upload_id}/{service}``."""
    for path, read_one, head_one in (
        (RUN_STREAM, read_run, head_run),
        (KEY_STREAM, read_key, head_key),
    ):
        target.readable(path, read_one, include_in_schema=False)
        target.readable(path, head_one, method="HEAD", include_in_schema=False)


def add_routes(target: Routes) -> None:
    """jobtail's own app: the whole protocol under ``/v1/stream/{path}`` (generic streams, a
    run's producer writes), after the run reads; these routes authorize themselves."""
    for route in routes.routes:
        assert isinstance(route, APIRoute)
        target.router.add_api_route(
            route.path,
            route.endpoint,
            methods=sorted(route.methods or ()),
            name=route.name,
            include_in_schema=False,
        )


# -- request parsing -------------------------------------------------------------------------
def flag(request: Request, name: str) -> bool:
    return request.headers.get(name, "").strip().lower() == "true"


def expiry(request: Request) -> Expiry:
    ttl_text, expires_text = (
        request.headers.get("stream-ttl"),
        request.headers.get("stream-expires-at"),
    )
    ttl = expires = None
    if ttl_text is not None:
        if not _TTL.match(ttl_text.strip()):
            raise StreamInvalid("Stream-TTL must be a whole number of seconds, like 3600")
        ttl = int(ttl_text)
    if expires_text is not None:
        try:
            expires = datetime.fromisoformat(expires_text.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise StreamInvalid("Stream-Expires-At must be an RFC 3339 timestamp") from exc
        if expires.tzinfo is None:
            raise StreamInvalid("Stream-Expires-At needs a time zone offset")
    return Expiry(ttl, expires)


def producer(request: Request) -> Producer | None:
    names = ("producer-id", "producer-epoch", "producer-seq")
    values = [request.headers.get(name) for name in names]
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        raise StreamInvalid("send Producer-Id, Producer-Epoch and Producer-Seq together")
    pid, epoch, seq = (str(v).strip() for v in values)
    if not pid:
        raise StreamInvalid("Producer-Id must not be empty")
    numbers = []
    for name, text in (("Producer-Epoch", epoch), ("Producer-Seq", seq)):
        if not _INT.match(text) or int(text) > MAX_SAFE_INT:
            raise StreamInvalid(f"{name} must be an integer from 0 to 2^53-1")
        numbers.append(int(text))
    return Producer(pid, numbers[0], numbers[1])


def count(request: Request, name: str) -> int:
    text = request.headers.get(name, "0").strip()
    if not _INT.match(text):
        raise StreamInvalid(f"{name} must be a non-negative integer")
    return int(text)


def run_status(request: Request) -> RunStatus:
    """Extension for run streams: how a close ends the run (``Jobtail-Run-Status``)."""
    value = request.headers.get("jobtail-run-status", "succeeded").strip().lower()
    if value not in ("succeeded", "failed"):
        raise StreamInvalid("Jobtail-Run-Status must be succeeded or failed")
    return RunStatus(value)


def fork_source(request: Request) -> str | None:
    value = request.headers.get("stream-forked-from")
    if value is None:
        return None
    value = value.strip()
    marker = "/v1/stream/"
    return value.split(marker, 1)[1] if marker in value else value.lstrip("/")


def sub_offset(request: Request) -> int:
    text = request.headers.get("stream-fork-sub-offset")
    if text is None:
        return 0
    if not _INT.match(text.strip()):
        raise StreamInvalid("Stream-Fork-Sub-Offset must be a non-negative integer")
    return int(text)


# -- auth ---------------------------------------------------------------------------------------
async def authorize(request: Request, mounted: Mounted, path: str, write: bool) -> bool:
    """API keys may do anything; a run's stream token only reads that run; a run's write token
    only writes (POST) and HEADs ``runs/{its run id}``. Returns whether the response is
    user-specific (``private`` caching)."""
    settings, streams = mounted.settings, mounted.streams
    if settings.auth == "none":
        return False
    token = request.query_params.get("token")
    authorization = request.headers.get("authorization")
    if token is not None and authorization is None and write:
        raise refusal(403, READ_ONLY)
    try:
        if token is not None and is_run_path(path) and not write:
            check_stream_token(settings, await streams.run_id(path), token)
            return False  # same bytes for every holder of a run token: shared caches may keep it
        run_id = bearer_grant(settings, authorization)
    except AuthError as exc:
        if write and is_read_token(settings, path, authorization):
            raise refusal(403, READ_ONLY) from exc
        raise refusal(401, str(exc)) from exc
    if run_id is not None and (path != f"{RUN_PREFIX}{run_id}" or request.method not in WRITER):
        raise refusal(403, str(ScopeError(run_id)))
    return True


READ_ONLY = "a run's stream token only reads its run: writing needs its write token or an API key"
RUN_PREFIX = "runs/"
WRITER = ("POST", "HEAD")  # a write token's producer: append/close, and look up the epoch


def is_read_token(settings: Settings, path: str, authorization: str | None) -> bool:
    """Whether a refused bearer is the run's read token (to say why it cannot write)."""
    run_id = path.removeprefix(RUN_PREFIX)
    key = (authorization or "").partition(" ")[2].strip()
    if run_id == path or "/" in run_id or not key:
        return False
    try:
        check_stream_token(settings, run_id, key)
    except AuthError:
        return False
    return True


def refusal(status: int, detail: str) -> HTTPException:
    return HTTPException(status, detail, headers={"WWW-Authenticate": challenge(status, detail)})


# -- responses -----------------------------------------------------------------------------------
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


# -- routes -------------------------------------------------------------------------------------
@routes.options(ROUTE, include_in_schema=False)
async def preflight(request: Request, path: str) -> Response:
    asked = request.headers.get("access-control-request-headers")
    return Response(
        status_code=204,
        headers={
            **SECURITY,
            "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": asked
            or f"Authorization, Content-Type, If-None-Match, {PROTOCOL_HEADERS}",
            "Access-Control-Max-Age": "86400",
        },
    )


@routes.put(ROUTE, include_in_schema=False)
async def create(request: Request, path: str, mounted: MountedDep) -> Response:
    streams = mounted.streams
    await authorize(request, mounted, path, write=True)
    try:
        wanted = CreateRequest(
            content_type=request.headers.get("content-type"),
            expiry=expiry(request),
            closed=flag(request, "stream-closed"),
            body=await request.body(),
            fork_from=fork_source(request),
            fork_offset=request.headers.get("stream-fork-offset"),
            fork_sub_offset=sub_offset(request),
        )
        if wanted.fork_from is None and (
            request.headers.get("stream-fork-offset") is not None
            or request.headers.get("stream-fork-sub-offset") is not None
        ):
            raise StreamInvalid("Stream-Fork-Offset needs Stream-Forked-From")
        result = await streams.create(path, wanted)
    except StreamError as exc:
        return error_response(exc)
    headers = {**meta_headers(result.meta), **SECURITY, "Content-Type": result.meta.content_type}
    if result.created:
        headers["Location"] = str(request.url.replace(query=""))
    return Response(status_code=201 if result.created else 200, headers=headers)


@routes.post(ROUTE, include_in_schema=False)
async def append(request: Request, path: str, mounted: MountedDep) -> Response:
    streams = mounted.streams
    await authorize(request, mounted, path, write=True)
    try:
        body = await request.body()
        content_type = request.headers.get("content-type")
        if body and content_type is None:
            raise StreamInvalid("an append with a body needs a Content-Type")
        wanted = AppendRequest(
            body=body,
            content_type=content_type,
            close=flag(request, "stream-closed"),
            producer=producer(request),
            stream_seq=request.headers.get("stream-seq"),
            status=run_status(request),
            error=request.headers.get("jobtail-run-error"),
            omitted=count(request, "jobtail-run-omitted"),
        )
        heartbeat = flag(request, "jobtail-heartbeat")
        result = await streams.append(path, wanted, heartbeat)
    except StreamError as exc:
        return error_response(exc)
    headers = {**meta_headers(result.meta), **SECURITY}
    status = 204
    if result.producer is not None:
        headers["Producer-Epoch"] = str(result.producer.epoch)
        headers["Producer-Seq"] = str(result.producer.seq)
        # 200: data landed, or a bare heartbeat claimed a queued run (204: another worker had)
        claim = heartbeat and not wanted.close
        status = 200 if (wanted.body or claim) and not result.duplicate else 204
    return Response(status_code=status, headers=headers)


@routes.delete(ROUTE, include_in_schema=False)
async def delete(request: Request, path: str, mounted: MountedDep) -> Response:
    streams = mounted.streams
    await authorize(request, mounted, path, write=True)
    try:
        await streams.delete(path)
    except StreamError as exc:
        return error_response(exc)
    return Response(status_code=204, headers=SECURITY)


@routes.head(ROUTE, include_in_schema=False)
async def head(request: Request, path: str, mounted: MountedDep) -> Response:
    await authorize(request, mounted, path, write=False)
    return await head_response(mounted.streams, path)


@routes.get(ROUTE, include_in_schema=False)
async def read(request: Request, path: str, mounted: MountedDep) -> Response:
    private = await authorize(request, mounted, path, write=False)
    return await read_response(request, mounted.streams, path, private)


# -- run reads, for any router ----------------------------------------------------------------
async def read_run(
    request: Request, run_id: str, context: ContextDep, token: TokenQuery = None
) -> Response:
    """The run's log as a Durable Stream: ``offset`` (``-1``, a ``Stream-Next-Offset`` or
    ``now``), ``live=long-poll`` echoing ``cursor``, or ``live=sse``."""
    path = f"runs/{run_id}"
    private = await run_reader(context, path, token)
    return await read_response(request, context.streams, path, private)


async def read_key(
    request: Request, upload_id: str, service: str, context: ContextDep, token: TokenQuery = None
) -> Response:
    """The key's latest run as a Durable Stream (not cacheable: the latest run changes)."""
    path = f"runs/{upload_id}/{service}"
    private = await run_reader(context, path, token)
    return await read_response(request, context.streams, path, private)


async def head_run(run_id: str, context: ContextDep, token: TokenQuery = None) -> Response:
    path = f"runs/{run_id}"
    await run_reader(context, path, token)
    return await head_response(context.streams, path)


async def head_key(
    upload_id: str, service: str, context: ContextDep, token: TokenQuery = None
) -> Response:
    path = f"runs/{upload_id}/{service}"
    await run_reader(context, path, token)
    return await head_response(context.streams, path)


async def run_reader(context: Context, path: str, token: str | None) -> bool:
    """Whether a run read is private. The route ran the host's auth, or (``?token=``, when
    tokens are on) matched on the token alone, which must then be this run's."""
    if token is None or not context.tokens:
        return context.private
    try:
        run_id = await context.streams.run_id(path)
    except StreamNotFound as exc:  # the token route answers it as a wrong token (#10)
        raise HTTPException(404, str(exc)) from exc
    check_token(context, run_id, token)
    return False  # the same bytes for every holder of the run's token: shared caches may keep it


# -- reads ----------------------------------------------------------------------------------------
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
    headers = {**SECURITY, "Cache-Control": "no-cache", "Content-Type": "text/event-stream"}
    if not is_text(first.meta.content_type):
        headers["stream-sse-data-encoding"] = "base64"
    return StreamingResponse(sse_events(path, streams, first, cursor), headers=headers)


async def sse_events(path: str, streams: Streams, chunk: Chunk, cursor: str) -> AsyncIterator[str]:
    """Data then control for each read; an empty first read still says where the tail is; ends
    at closure or after ``sse_seconds`` so caches can collapse reconnecting clients."""
    deadline = time.monotonic() + streams.sse_seconds
    announce = True
    while True:
        # data and its control go out in one send: a reader that stops at the first complete
        # event after a marker (the conformance suite's does) must see both, and it is one
        # write instead of two
        event = sse_data(chunk) if not chunk.empty else ""
        if not chunk.empty or announce or chunk.closed:
            event += sse_control(chunk, cursor)
            announce = False
        if event:
            yield event
        if chunk.closed:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        chunk = await streams.wait_read(path, chunk.next_offset, remaining)
