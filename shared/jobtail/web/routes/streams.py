"""The Durable Streams protocol over HTTP under ``/v1/stream/{path}``: parse headers, call
``jobtail.streams.Streams``, shape the response. ``runs/...`` paths are run logs.

Every jobtail router serves the run reads (``add_read_routes``: GET and HEAD of
``runs/{run_id}`` and ``runs/{upload_id}/{service}``, behind the host's auth or the run's stream
token); jobtail's own app adds the rest of the protocol (``add_routes``: generic streams, a
run's producer writes), which checks jobtail's keys itself (``authorize``). Both find their
``Streams`` in the router's ``Context``, which its lifespan opens and closes. Headers are read
in ``web/stream_requests.py``; answers are shaped in ``web/stream_responses.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.routing import APIRoute

from ...config import Settings
from ...streams import (
    AppendRequest,
    CreateRequest,
    StreamError,
    StreamInvalid,
    StreamNotFound,
    Streams,
)
from ...streams.runs import is_run_path
from ..auth import AuthError, ScopeError, bearer_grant, challenge, check_stream_token
from ..deps import Context, ContextDep, Routes, TokenQuery, check_token
from ..stream_requests import count, expiry, flag, fork_source, producer, run_status, sub_offset
from ..stream_responses import (
    PROTOCOL_HEADERS,
    SECURITY,
    error_response,
    head_response,
    meta_headers,
    read_response,
)

routes = APIRouter(tags=["streams"])
ROUTE = "/v1/stream/{path:path}"
RUN_STREAM = "/v1/stream/runs/{run_id}"
KEY_STREAM = "/v1/stream/runs/{upload_id}/{service}"


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
