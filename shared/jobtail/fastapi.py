"""jobtail's run routes for any FastAPI app: status, live logs (SSE), final logs and the run's
Durable Stream reads, under any prefix, behind the host app's own auth.

    jobs = jobtail.fastapi.router(store, dependencies=[Depends(my_auth)], secret=KEY)
    app.include_router(jobs, prefix="/api/jobs")

Runs are addressed by key (``/runs/{upload_id}/{service}/...``) or by plain id
(``/run/{run_id}/status``, ``/run/{run_id}/logs``, ``/run/{run_id}/logs/final``); their
Durable Streams are ``/v1/stream/runs/{run_id}`` and ``/v1/stream/runs/{upload_id}/{service}``
(catch-up, long-poll, SSE, HEAD; read-only here). With a ``secret``, ``status`` hands out a
stream token scoped to the run; a request carrying ``?token=`` (EventSource, download links and
CDN-cached stream reads carry no headers) is then let through without the host's dependencies,
on that token alone. The router's lifespan starts and stops the tail hub (and, in jobtail's own
app, the generic stream tables); ``include_router`` merges it into the app's (or use
``lifespan(router)`` yourself). jobtail's own app (``web.app.create_app``) is built from this
router, given its ``Services``, which adds the job routes (uploads, generate, result) and the
rest of the Durable Streams protocol (generic streams, a worker's producer writes).

``app.add_middleware(HandoffMiddleware)``, added last, lets live streams leave the host's
middleware chain once their headers are out (``web.handoff``: less memory per viewer, lines
past the middleware's send wrappers), where no middleware must see a stream's body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.params import Depends
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from pydantic import SecretStr
from starlette.routing import Match
from starlette.types import Scope

from .config import Settings
from .janitor import Janitor
from .services import Services
from .store import LogStore, StoreError, from_url
from .streams import Streams, open_streams
from .tail import Tailer
from .web.deps import Context, Routes, StreamGate
from .web.handoff import HandoffMiddleware
from .web.routes import logs, recent, runs, search, streams, uploads
from .web.routes.pages import STATIC

__all__ = ["HandoffMiddleware", "JobtailRouter", "lifespan", "router"]

log = logging.getLogger("jobtail.web")

READ_ROUTES: tuple[Callable[[Routes], None], ...] = (
    recent.add_routes,
    runs.add_read_routes,
    logs.add_routes,
    search.add_routes,
    streams.add_read_routes,
)
"""Route sets every router serves, the run's Durable Stream reads (``/v1/stream/runs/...``)
among them."""

JOB_ROUTES: tuple[Callable[[Routes], None], ...] = (
    uploads.add_routes,
    runs.add_job_routes,
    streams.add_routes,
)
"""jobtail's own job (uploads, generate, result) and the rest of the Durable Streams protocol
(generic streams, a worker's producer writes, under jobtail's keys): only with ``Services``."""


class JobtailRouter(APIRouter):
    """An APIRouter that knows its ``Context`` (store, settings, tail hub, stream gate)."""

    context: Context


def router(
    store: LogStore | str | Services,
    *,
    dependencies: Sequence[Depends] = (),
    secret: str | None = None,
    settings: Settings | None = None,
    janitor: bool = False,
) -> JobtailRouter:
    """The routes over ``store`` (a LogStore, a store URL, or jobtail's ``Services``).

    ``dependencies`` guard every route (your auth); ``secret`` enables stream tokens;
    ``settings`` tunes streams (ping, windows, stream cap; default: ``JOBTAIL_*`` variables).
    ``janitor``: sweep from this app (every ``stale_after / 2`` s), so a run whose worker was
    killed (a Celery or arq worker, a server) ends for its viewers; one sweeper is enough.
    """
    owned = isinstance(store, str)
    services = store if isinstance(store, Services) else None
    settings = settings or (services.settings if services else Settings())
    if secret is not None:
        settings = settings.model_copy(update={"secret": SecretStr(secret)})
    if isinstance(store, Services):
        store = store.store
    elif isinstance(store, str):
        store = from_url(store, settings.data_dir)
    context = Context(
        store,
        settings,
        Tailer(store),
        StreamGate(settings.max_streams),
        _streams(store, settings),
        services,
        # reads let in by an auth dependency are per-user; jobtail's own keys may be off
        private=settings.auth != "none" if services else bool(dependencies),
    )
    route, token_route = _route_classes(context)
    built = JobtailRouter(route_class=route, lifespan=_lifespan(context, owned, janitor))
    built.context = context
    routes = Routes(built, tuple(dependencies), token_route if context.tokens else None)
    for add in (*READ_ROUTES, *(JOB_ROUTES if services else ())):
        add(routes)
    # the browser client (ES modules, the <jobtail-log> element) beside the routes it reads
    built.mount("/static", StaticFiles(directory=STATIC), name="jobtail-static")
    return built


def lifespan(built: JobtailRouter) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """The router's lifespan, for apps that do not merge it themselves (Starlette mounts)."""
    return built.lifespan_context


def _streams(store: LogStore, settings: Settings, generic: bool = False) -> Streams:
    """Run logs as streams (nothing to open); ``generic``: also the stream tables beside them."""
    tables = open_streams(store) if generic else None
    return Streams.over(store, tables, settings.long_poll_seconds, settings.sse_seconds)


def _lifespan(
    context: Context, owned: bool, janitor: bool
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    closed = False

    @asynccontextmanager
    async def span(app: Any) -> AsyncIterator[None]:
        nonlocal closed
        if closed:  # started again (a test client per test): a fresh hub
            context.tailer = Tailer(context.store)
        if context.services is not None:  # jobtail's own app serves generic streams too
            store, settings = context.store, context.settings
            context.streams = await anyio.to_thread.run_sync(_streams, store, settings, True)
        sweeps = _janitor(context) if janitor else None
        sweeper = asyncio.create_task(_sweep_now_and_then(sweeps)) if sweeps else None
        try:
            yield
        finally:
            closed = True
            if sweeper is not None:
                sweeper.cancel()
                await asyncio.wait([sweeper])  # a sweep under way ends first
            if sweeps is not None:  # its stream store (a pool on PostgreSQL) goes with it
                await anyio.to_thread.run_sync(sweeps.close)
            await context.tailer.close()
            await anyio.to_thread.run_sync(context.streams.close)
            if owned:
                context.store.close()

    return span


def _janitor(context: Context) -> Janitor:
    """The router's janitor: it remembers store outages, and keeps one stream store, between
    sweeps."""
    settings = context.settings
    return Janitor(
        context.store,
        stale_after=settings.stale_after,
        retention_days=settings.retention_days,
        queued_after=settings.queued_timeout,
    )


async def _sweep_now_and_then(janitor: Janitor) -> None:
    while True:
        try:
            await anyio.to_thread.run_sync(janitor.sweep)
        except Exception:
            log.exception("janitor sweep failed; retrying later")
        await asyncio.sleep(janitor.stale_after / 2)


def _route_classes(context: Context) -> tuple[type[APIRoute], type[APIRoute]]:
    """Route classes carrying ``context``; the second only matches requests with a token."""

    class Route(APIRoute):
        jobtail = context

        def get_route_handler(self) -> Callable[[Request], Any]:
            handler = super().get_route_handler()

            async def answer(request: Request) -> Response:
                try:
                    response: Response = await handler(request)
                except StoreError as exc:  # the host app's handlers need not know ours
                    log.warning("store error on %s: %s", request.url.path, exc)
                    return JSONResponse({"detail": f"store unavailable: {exc}"}, 503)
                return response

            return answer

    class TokenRoute(Route):
        def matches(self, scope: Scope) -> tuple[Match, Scope]:
            query = scope.get("query_string", b"").decode("latin-1")
            if "token" not in parse_qs(query, keep_blank_values=True):
                return Match.NONE, {}
            return super().matches(scope)

        def get_route_handler(self) -> Callable[[Request], Any]:
            handler = super().get_route_handler()

            async def answer(request: Request) -> Response:
                """A token names one run: for a run that does not exist, the same 401 as a
                wrong token, so a token-bearer cannot tell which keys exist (#10)."""
                try:
                    response: Response = await handler(request)
                except HTTPException as exc:
                    if exc.status_code != 404:
                        raise
                    token = request.query_params.get("token", "")
                    bad = "stream token is not valid for this run" if "." in token else None
                    return JSONResponse({"detail": bad or "malformed stream token"}, 401)
                return response

            return answer

    return Route, TokenRoute
