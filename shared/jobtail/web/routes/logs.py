"""A run's lines: live over SSE (replay from a cursor, then follow) and final, paged or exported.

The stream's store access happens inside its generator (never a request-scoped dependency that
closes before the stream ends); its status and cursor checks happen before it starts, so a bad
cursor is a JSON 4xx and a reconnect after the end is a 204 that stops EventSource.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Header, HTTPException, Query, Response
from fastapi.responses import StreamingResponse
from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from ...config import Settings
from ...levels import Level
from ...store import LogLine, LogStore, Run
from ...tail import LinesEvent, TailEvent, WindowEndEvent
from ..deps import (
    GateDep,
    ServiceName,
    ServicesDep,
    StreamGate,
    TailerDep,
    UploadId,
    authorize_run_read,
)
from ..sse import SEP, encode, encode_within, parse_event_id
from .runs import RunIdQuery, find_run

router = APIRouter(prefix="/runs/{upload_id}/{service}")

EXPORT_PAGE = 5000


LevelQuery = Annotated[Level | None, Query(description="minimum severity to include")]
AfterQuery = Annotated[int | None, Query(ge=0, description="only lines with seq > after")]


def _resolve(
    services: ServicesDep,
    upload_id: str,
    service: str,
    run_id: str | None,
    after: int | None,
    last_event_id: str | None,
) -> tuple[Run, int | None]:
    """The run and cursor a stream request names: Last-Event-ID wins over the query."""
    if last_event_id:
        try:
            run_id, after = parse_event_id(last_event_id)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
    return find_run(services, upload_id, service, run_id), after


@router.get("/logs", name="logs", response_class=EventSourceResponse)
async def stream_logs(
    upload_id: UploadId,
    service: ServiceName,
    services: ServicesDep,
    tailer: TailerDep,
    gate: GateDep,
    run_id: RunIdQuery = None,
    after: AfterQuery = None,
    level: LevelQuery = None,
    tail: Annotated[int | None, Query(ge=1, le=1_000_000, description="start N lines back")] = None,
    token: Annotated[str | None, Query(description="stream token from generate/status")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    """``text/event-stream`` of the run; 204 once a finished run was read to its end."""
    authorize_run_read(services.settings, None, authorization, token)
    run, cursor = await anyio.to_thread.run_sync(
        _resolve, services, upload_id, service, run_id, after, last_event_id
    )
    authorize_run_read(services.settings, run.run_id, authorization, token)
    if cursor is not None and not run.active and cursor >= run.last_seq:
        return Response(status_code=204)
    if cursor is None:
        cursor = max(0, run.last_seq - tail) if tail else 0
    if not gate.acquire():
        raise HTTPException(503, "too many open streams; retry later", headers={"Retry-After": "5"})
    settings = services.settings
    min_level = level.value if level else None

    async def events() -> AsyncIterator[bytes]:
        follow = tailer.follow(run.run_id, cursor, min_level, settings.stream_window)
        async with aclosing(follow) as stream:
            async for chunk in _windowed(stream, run.run_id, cursor, settings):
                yield chunk

    return GatedEventSourceResponse(
        gate, events(), ping=settings.ping_seconds, sep=SEP, headers={"Cache-Control": "no-store"}
    )


class GatedEventSourceResponse(EventSourceResponse):
    """Gives its stream slot back when the response is over, however it ended (even when the
    client left before the body was first read)."""

    def __init__(self, gate: StreamGate, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.gate.release()


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


def _export(store: LogStore, run: Run, level: str | None, fmt: str) -> Iterator[bytes]:
    after = 0
    while True:
        lines = store.read(run.run_id, after=after, limit=EXPORT_PAGE, min_level=level)
        for line in lines:
            if fmt == "jsonl":
                yield json.dumps(line.to_json(), ensure_ascii=False).encode() + b"\n"
            else:
                stamp = line.timestamp.isoformat(timespec="milliseconds")
                yield f"{stamp} {line.log_level:<8} {line.message}\n".encode()
        if len(lines) < EXPORT_PAGE:
            return
        after = lines[-1].seq


@router.get("/logs/final")
def final_logs(
    upload_id: UploadId,
    service: ServiceName,
    services: ServicesDep,
    run_id: RunIdQuery = None,
    after: Annotated[int, Query(ge=0)] = 0,
    before: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
    level: LevelQuery = None,
    format: Annotated[str, Query(pattern="^(json|text|jsonl)$")] = "json",
    token: Annotated[str | None, Query()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Any:
    """The stored lines in order, a page at a time, or the whole run as a text/jsonl download."""
    authorize_run_read(services.settings, None, authorization, token)
    run = find_run(services, upload_id, service, run_id)
    authorize_run_read(services.settings, run.run_id, authorization, token)
    min_level = level.value if level else None
    if format != "json":
        media = "application/x-ndjson" if format == "jsonl" else "text/plain; charset=utf-8"
        name = f"{upload_id}-{service}-{run.run_id}.{'jsonl' if format == 'jsonl' else 'log'}"
        return StreamingResponse(
            _export(services.store, run, min_level, format),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    lines = _page(services.store, run, after, before, limit, min_level)
    return {
        "run_id": run.run_id,
        "status": run.status.value,
        "last_seq": run.last_seq,
        "logs": [line.to_json() for line in lines],
        "next_after": lines[-1].seq if len(lines) == limit else None,
    }
