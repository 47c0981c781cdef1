"""A run's lines: live over SSE (replay from a cursor, then follow) and final, paged or exported.

The stream's store access happens inside its generator (never a request-scoped dependency that
closes before the stream ends); its status and cursor checks happen before it starts, so a bad
cursor is a JSON 4xx and a reconnect after the end is a 204 that stops EventSource.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Annotated, Any

import anyio.to_thread
from fastapi import Depends, Header, HTTPException, Query, Response
from sse_starlette import EventSourceResponse

from ...config import Settings
from ...levels import Level
from ...store import LogLine, LogStore, Run
from ...tail import LinesEvent, TailEvent, WindowEndEvent
from ..deps import Context, ContextDep, Routes, TokenQuery, check_token
from ..export import export_response
from ..sse import StreamResponse, encode, encode_within, framing, parse_event_id
from ..writer import Writer
from .runs import KEY, RUN, IdRef, KeyRef, RunRef, find_run

LevelQuery = Annotated[Level | None, Query(description="minimum severity to include")]
MAX_SEQ = 2**63 - 1  # a BIGINT: larger cursors are a 422, not a database error
AfterQuery = Annotated[
    int | None, Query(ge=0, le=MAX_SEQ, description="only lines with seq > after")
]


@dataclass
class StreamParams:
    """Where a stream starts and what it keeps: the query and the Last-Event-ID header."""

    after: AfterQuery = None
    level: LevelQuery = None
    tail: Annotated[int | None, Query(ge=1, le=1_000_000, description="start N lines back")] = None
    token: TokenQuery = None
    last_event_id: Annotated[str | None, Header()] = None


StreamQuery = Annotated[StreamParams, Depends()]


def _resolve(store: LogStore, ref: RunRef, params: StreamParams) -> tuple[Run, int | None]:
    """The run and cursor a stream request names: Last-Event-ID wins over the query."""
    after = params.after
    if params.last_event_id:
        try:
            run_id, after = parse_event_id(params.last_event_id)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        ref = ref.named(run_id)
    return find_run(store, ref), after


async def stream_logs(ref: KeyRef, params: StreamQuery, context: ContextDep) -> Response:
    """``text/event-stream`` of the run; 204 once a finished run was read to its end."""
    return await _stream(context, ref, params)


async def stream_run_logs(ref: IdRef, params: StreamQuery, context: ContextDep) -> Response:
    """``text/event-stream`` of the run; 204 once a finished run was read to its end."""
    return await _stream(context, ref, params)


async def _stream(context: Context, ref: RunRef, params: StreamParams) -> Response:
    run, cursor = await anyio.to_thread.run_sync(_resolve, context.store, ref, params)
    check_token(context, run.run_id, params.token)
    if cursor is not None and not run.active and cursor >= run.last_seq:
        return Response(status_code=204)
    if cursor is None:
        cursor = max(0, run.last_seq - params.tail) if params.tail else 0
    gate, tailer, settings = context.gate, context.tailer, context.settings
    if not gate.acquire():
        raise HTTPException(503, "too many open streams; retry later", headers={"Retry-After": "5"})
    min_level = params.level.value if params.level else None
    # unbudgeted streams let the follower write caught-up lines itself; budgeted ones count
    writer = Writer() if settings.stream_window_bytes is None else None

    async def events() -> AsyncIterator[bytes]:
        frame = framing(run.run_id) if settings.stream_window_bytes is None else None
        window = settings.stream_window
        follow = tailer.follow(run.run_id, cursor, min_level, window, frame, writer)
        async with aclosing(follow) as stream:
            if settings.stream_window_bytes is None:  # the common case: one layer less per batch
                async for event in stream:
                    yield encode(event, run.run_id, settings.retry_ms)
                return
            async for chunk in _windowed(stream, run.run_id, cursor, settings):
                yield chunk

    return StreamResponse(
        events(),
        ping=settings.ping_seconds,
        headers={"Cache-Control": "no-store"},
        on_close=gate.release,
        writer=writer,
    )


async def _windowed(
    events: AsyncIterator[TailEvent], run_id: str, cursor: int, settings: Settings
) -> AsyncIterator[bytes]:
    """Wire bytes of the events; with a byte budget (a buffering gateway caps a response),
    ends the response with the cursor to resume from once the budget is spent."""
    budget, sent = settings.stream_window_bytes, 0
    async for event in events:
        if budget is None or not isinstance(event, LinesEvent):
            yield encode(event, run_id, settings.retry_ms)
            continue
        chunk, last = encode_within(event, run_id, budget - sent, first=sent == 0)
        if chunk:
            yield chunk
            sent += len(chunk)
        cursor = last if last is not None else cursor
        if last != event.lines[-1].seq:
            yield encode(WindowEndEvent(cursor), run_id, settings.retry_ms)
            return


def _page(
    store: LogStore, run: Run, after: int, before: int | None, limit: int, level: str | None
) -> list[LogLine]:
    return store.read(run.run_id, after=after, limit=limit, min_level=level, before=before)


@dataclass
class FinalParams:
    """A page of stored lines, or the whole run as a download."""

    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0
    before: Annotated[int | None, Query(ge=1, le=MAX_SEQ)] = None
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000
    level: LevelQuery = None
    format: Annotated[str, Query(pattern="^(json|text|jsonl)$")] = "json"
    token: TokenQuery = None


FinalQuery = Annotated[FinalParams, Depends()]


def final_logs(ref: KeyRef, params: FinalQuery, context: ContextDep) -> Any:
    """The stored lines in order, a page at a time, or the whole run as a text/jsonl download."""
    return _final(context, ref, params)


def final_run_logs(ref: IdRef, params: FinalQuery, context: ContextDep) -> Any:
    """The stored lines in order, a page at a time, or the whole run as a text/jsonl download."""
    return _final(context, ref, params)


def _final(context: Context, ref: RunRef, params: FinalParams) -> Any:
    run = find_run(context.store, ref)
    check_token(context, run.run_id, params.token)
    min_level = params.level.value if params.level else None
    if params.format != "json":
        return export_response(context.store, run, min_level, params.format, params.before)
    lines = _page(context.store, run, params.after, params.before, params.limit, min_level)
    return {
        "run_id": run.run_id,
        "status": run.status.value,
        "last_seq": run.last_seq,
        "logs": [line.to_json() for line in lines],
        "next_after": lines[-1].seq if len(lines) == params.limit else None,
    }


def add_routes(routes: Routes) -> None:
    sse = {"response_class": EventSourceResponse}
    routes.readable(f"{KEY}/logs", stream_logs, name="logs", **sse)
    routes.readable(f"{KEY}/logs/final", final_logs, name="jobtail.final")
    routes.readable(f"{RUN}/logs", stream_run_logs, name="jobtail.run_logs", **sse)
    routes.readable(f"{RUN}/logs/final", final_run_logs, name="jobtail.run_final")
