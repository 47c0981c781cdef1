"""Graceful shutdown: stop taking work, give running jobs a bounded time, fail the rest with a
line that says why, and let viewers end (their ``end``, or ``retry:`` to resume elsewhere).

While it drains the app keeps answering: ``/healthz`` says 503 ``draining`` at once (a load
balancer stops sending traffic, no store call needed) and ``generate`` answers 503 with
``Retry-After`` without creating a run. Runs still queued stay queued in the store; the next
start hands them over again. The drain runs on the first SIGTERM (``web/serving.py``), before the
listener closes, and again, as a no-op or a bounded fallback, in the app's lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import anyio.to_thread
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..jobs.dispatch import InlineDispatcher
from ..services import Services
from ..store.base import LogLine, RunStatus, utcnow
from ..tail import Tailer

log = logging.getLogger(__name__)


def shutdown_error(grace: float) -> str:
    return (
        f"the server shut down before the job ended (it was given {grace:g} s); start the run again"
    )


class Shutdown:
    """The drain, once per process; ``draining`` flips first so requests see it at once."""

    def __init__(self, services: Services, tailer: Callable[[], Tailer]) -> None:
        self.services, self._tailer = services, tailer
        self.draining = False
        self._done: asyncio.Event | None = None

    async def drain(self, viewers_grace: float = 2.0) -> None:
        if self._done is not None:
            await self._done.wait()
            return
        self._done = asyncio.Event()
        self.draining = True
        try:
            await self._drain(viewers_grace)
        finally:
            self._done.set()

    async def _drain(self, viewers_grace: float) -> None:
        dispatcher, grace = self.services.dispatcher, self.services.settings.shutdown_grace
        if isinstance(dispatcher, InlineDispatcher):
            left = await anyio.to_thread.run_sync(dispatcher.drain, grace)
            for run_id in left:
                await anyio.to_thread.run_sync(self._fail, run_id, grace)
        tailer = self._tailer()  # the router's hub (a new one after a restart of the app)
        with anyio.move_on_after(viewers_grace):  # let followers deliver those ends
            while tailer.follower_count:
                await asyncio.sleep(0.05)
        await tailer.stop_following()  # the rest end with retry: and resume elsewhere

    def _fail(self, run_id: str, grace: float) -> None:
        """Explain and fail in one transaction (the store numbers the line); from then on the
        store refuses the job's appends (RunFencedError), so nothing lands after the end."""
        error = shutdown_error(grace)
        line = LogLine(0, utcnow(), "ERROR", f"Run failed: {error}", {"reason": "shutdown"})
        try:
            if self.services.store.finish_run(run_id, RunStatus.FAILED, error, lines=[line]):
                log.warning("run %s failed: %s", run_id, error)
        except Exception:  # finished meanwhile, or the store is down: the janitor ends it
            log.exception("run %s: cannot record the shutdown", run_id)


class DrainingMiddleware:
    """While draining: ``/healthz`` is 503 ``draining`` and new runs are refused with 503."""

    def __init__(self, app: ASGIApp, shutdown: Shutdown) -> None:
        self.app, self.shutdown = app, shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.shutdown.draining:
            path: str = scope["path"]
            if path.endswith("/healthz"):
                body = {"status": "draining", "detail": "the server is shutting down"}
                await JSONResponse(body, status_code=503)(scope, receive, send)
                return
            if scope["method"] == "POST" and path.endswith("/generate"):
                body = {"detail": "the server is shutting down; start the run again shortly"}
                headers = {"Retry-After": "5"}
                await JSONResponse(body, status_code=503, headers=headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)
