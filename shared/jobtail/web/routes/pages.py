"""The viewer page and the health check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from ...aws import EDGE_HEADER
from ...services import Services
from ...store import StoreError
from ..deps import ServicesDep

router = APIRouter()
STATIC = Path(__file__).resolve().parent.parent / "static"


PAGE = (STATIC / "index.html").read_text()
LOG_ELEMENT = '<jobtail-log id="log"'


@router.get("/", include_in_schema=False)
def index(request: Request, services: ServicesDep) -> HTMLResponse:
    """The page; its log element reads the run's Durable Stream (cacheable at a CDN) when
    ``page_transport`` says so, or (auto) when the page itself came through CloudFront."""
    transport = services.settings.page_transport
    if transport == "auto":
        transport = "streams" if EDGE_HEADER in request.headers else "sse"
    html = PAGE
    if transport == "streams":
        html = PAGE.replace(LOG_ELEMENT, f'{LOG_ELEMENT} transport="streams"', 1)
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


_health_threads: list[anyio.CapacityLimiter] = []


@router.get("/healthz")
async def healthz(request: Request) -> Any:
    """Checks the store in a thread of its own limiter: not behind the default thread pool's
    40 tokens, which hundreds of viewers' store reads may hold (it took 4 s with 300 viewers)."""
    services: Services = request.app.state.services
    if not _health_threads:
        _health_threads.append(anyio.CapacityLimiter(2))
    try:
        await anyio.to_thread.run_sync(services.store.check, limiter=_health_threads[0])
    except StoreError as exc:
        raise HTTPException(503, f"store unavailable: {exc}") from exc
    return {"status": "ok"}
