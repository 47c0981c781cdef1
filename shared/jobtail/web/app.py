"""``create_app``: the FastAPI application, for uvicorn locally and Lambda (Mangum or LWA)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from .. import __version__
from ..config import Settings
from ..services import Services
from ..tail import Tailer
from . import errors
from .deps import StreamGate
from .routes import logs, pages, recent, runs, streams, uploads

log = logging.getLogger(__name__)


async def _janitor(services: Services) -> None:
    """Sweep now and then, so a run whose worker died (a killed server) still ends."""
    while True:
        try:
            await anyio.to_thread.run_sync(services.sweep)
        except Exception:
            log.exception("janitor sweep failed; retrying later")
        await asyncio.sleep(services.settings.stale_after / 2)


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Build the app; pass ``services`` to share a store/dispatcher (tests, Lambda)."""
    owned = services is None
    services = services or Services.from_settings(settings)
    tailer = Tailer(services.store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        janitor = None
        if services.settings.dispatcher == "inline":  # on AWS a scheduled function does it
            janitor = asyncio.create_task(_janitor(services))
        yield
        if janitor is not None:
            janitor.cancel()
        await tailer.close()
        if owned:
            services.close()

    app = FastAPI(title="jobtail", version=__version__, lifespan=lifespan)
    app.state.services = services
    app.state.tailer = tailer
    app.state.streams = StreamGate(services.settings.max_streams)
    errors.install(app)
    for module in (pages, uploads, runs, logs, recent):
        app.include_router(module.router)
    app.include_router(streams.router(services))  # Durable Streams under /v1/stream/
    return app
