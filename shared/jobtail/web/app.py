"""``create_app``: the FastAPI application, for uvicorn locally and Lambda (Mangum or LWA)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from .. import __version__
from ..config import Settings
from ..services import Services
from ..tail import Tailer
from . import errors
from .deps import StreamGate
from .routes import logs, pages, runs, uploads


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """Build the app; pass ``services`` to share a store/dispatcher (tests, Lambda)."""
    owned = services is None
    services = services or Services.from_settings(settings)
    tailer = Tailer(services.store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await tailer.close()
        if owned:
            services.close()

    app = FastAPI(title="jobtail", version=__version__, lifespan=lifespan)
    app.state.services = services
    app.state.tailer = tailer
    app.state.streams = StreamGate(services.settings.max_streams)
    errors.install(app)
    for module in (pages, uploads, runs, logs):
        app.include_router(module.router)
    return app
