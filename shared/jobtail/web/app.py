"""``create_app``: the FastAPI application, for uvicorn locally and Lambda (Mangum or LWA).

It is jobtail's own router (``jobtail.fastapi.router``, the one any host app mounts) given
jobtail's ``Services`` and bearer keys, plus the page and the health check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from starlette.types import ASGIApp

from .. import __version__
from ..config import Settings
from ..fastapi import router
from ..jobs.dispatch import redispatch_queued
from ..services import Services
from . import errors
from .deps import Authorized
from .handoff import HandoffMiddleware
from .openapi import AllowMiddleware, document_errors
from .routes import pages
from .shutdown import DrainingMiddleware, Shutdown

log = logging.getLogger(__name__)


async def _janitor(services: Services) -> None:
    """Sweep now and then, so a run whose worker died (a killed server) still ends (and
    expired streams nobody meets again go)."""
    while True:
        try:
            await anyio.to_thread.run_sync(services.sweep)
        except Exception:
            log.exception("janitor sweep failed; retrying later")
        await asyncio.sleep(services.settings.stale_after / 2)


async def _redispatch(services: Services) -> None:
    """Runs left queued by a previous process (killed, or shut down with a backlog)."""
    assert services.dispatcher is not None
    try:
        await anyio.to_thread.run_sync(redispatch_queued, services.store, services.dispatcher)
    except Exception:
        log.exception("cannot hand the queued runs over again; the janitor will fail them")


class JobtailApp(FastAPI):
    """FastAPI with the stream hand-off layer (``web.handoff``) outside even Starlette's error
    middleware: a live stream's writes reach the server's ``send`` through no wrapper at all,
    and its request keeps no frame of the chain. A handed-off body that fails is logged by the
    server, as any error after a response has started is in the end."""

    def build_middleware_stack(self) -> ASGIApp:
        return HandoffMiddleware(super().build_middleware_stack())


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Build the app; pass ``services`` to share a store/dispatcher (tests, Lambda).

    An app that built its own services also owns their lifecycle: at start it hands over the
    runs a previous process left queued, and at shutdown it drains (``web/shutdown.py``).
    """
    owned = services is None
    services = services or Services.from_settings(settings)
    jobs = router(services, dependencies=[Authorized])
    shutdown = Shutdown(services, lambda: jobs.context.tailer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        janitor = None
        if services.settings.dispatcher == "inline":  # on AWS a scheduled function does it
            janitor = asyncio.create_task(_janitor(services))
            if owned:
                await _redispatch(services)
        yield
        if owned:
            await shutdown.drain()
        if janitor is not None:
            janitor.cancel()
        if owned:
            services.close()

    app = JobtailApp(title="jobtail", version=__version__, lifespan=lifespan)
    app.state.services = services
    app.state.jobtail = jobs.context
    app.state.tailer = jobs.context.tailer
    app.state.streams = jobs.context.gate
    app.state.shutdown = shutdown
    app.add_middleware(DrainingMiddleware, shutdown=shutdown)
    app.add_middleware(AllowMiddleware, spec=app.openapi)
    errors.install(app)
    app.include_router(pages.router)
    app.include_router(jobs)  # its lifespan (tail hub, streams) runs inside the app's
    app.get("/livez", include_in_schema=False)(lambda: {"status": "alive"})  # no store: LWA ready
    document_errors(app, services.registry.names)
    return app
