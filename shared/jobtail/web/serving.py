"""uvicorn as ``jobtail serve`` runs it: uvloop and httptools where installed, bounded
connections and a graceful SIGTERM.

- A connection must send a whole request head within ``header_timeout`` seconds of opening
  (or of its last response): idle sockets and slowloris clients that trickle header bytes are
  closed, where uvicorn's keep-alive timer only starts after a first response and restarts on
  any byte. ``limit_concurrency`` answers 503 beyond a bound instead of exhausting descriptors.
- The access log never holds a stream token: ``token=`` values in logged paths are redacted.
- The garbage collector runs less often (``tune_gc``): its full collections stalled every
  stream for over half a second at 10,000 viewers.
- The first SIGTERM/SIGINT drains (``web/shutdown.py``) while the listener stays open, so health
  checks get their fast 503 ``draining``; then uvicorn exits. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
from types import FrameType
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..config import Settings

__all__ = [
    "GC_THRESHOLD", "GracefulServer", "HeadTimeoutH11Protocol", "RedactTokens", "protocol",
    "serve", "tune_gc",
]  # fmt: skip

_TOKEN = re.compile(r"((?:^|[?&])token=)[^&\s]*")


class RedactTokens(logging.Filter):
    """Replaces ``token=...`` in uvicorn's access-log paths with ``token=[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _TOKEN.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


class _HeadDeadline(asyncio.Protocol):
    """A deadline on each request head, not reset by trickled bytes (mixed into uvicorn's
    protocols: ``loop``, ``transport``, ``cycle`` and the hooks below are theirs)."""

    header_timeout = 10.0
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if timer := getattr(self, "_head_timer", None):
            timer.cancel()

    def _arm_head_deadline(self) -> None:
        if timer := getattr(self, "_head_timer", None):
            timer.cancel()
        self._heads_when_armed = getattr(self, "_heads", 0)
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_deadline)

    def _head_deadline(self) -> None:
        """Close if the client still has not sent a whole request head."""
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and not self._head_received() and not self.transport.is_closing():
            self.transport.close()

    def _head_received(self) -> bool:
        return getattr(self, "_heads", 0) != self._heads_when_armed


class HeadTimeoutH11Protocol(_HeadDeadline, H11Protocol):
    """h11 with a deadline on each request head."""

    def _head_received(self) -> bool:
        return self.conn.their_state is not h11.IDLE


def _fast_protocol() -> tuple[str, type[_HeadDeadline]] | None:
    """uvloop and httptools, if installed (``pip install 'jobtail[serve]'``): with thousands of
    viewers they cut the stream's p99 about threefold (``python -m bench.fanout 2000
    loop=uvloop http=httptools``)."""
    try:
        import httptools  # noqa: F401
        import uvloop  # noqa: F401
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None

    class HeadTimeoutHttpToolsProtocol(_HeadDeadline, HttpToolsProtocol):
        """httptools with a deadline on each request head: a head counts once parsed."""

        def on_headers_complete(self) -> None:
            self._heads = getattr(self, "_heads", 0) + 1
            super().on_headers_complete()

    return "uvloop", HeadTimeoutHttpToolsProtocol


def protocol(settings: Settings) -> tuple[str, type[_HeadDeadline]]:
    """The event loop and HTTP protocol ``jobtail serve`` runs: uvloop and httptools where both
    are installed, else asyncio and h11; either with the head deadline of ``settings``."""
    loop, base = _fast_protocol() or ("asyncio", HeadTimeoutH11Protocol)
    timeout = {"header_timeout": settings.header_timeout}
    return loop, type(f"Deadline{base.__name__}", (base,), timeout)


class GracefulServer(uvicorn.Server):
    """On the first signal, drains the app before uvicorn stops listening."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.app = app
        self._draining: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining is None and self._loop is not None and not self.should_exit:
            self._loop.call_soon_threadsafe(self._start_drain, sig, frame)
            return
        super().handle_exit(sig, frame)

    def _start_drain(self, sig: int, frame: FrameType | None) -> None:
        self._draining = asyncio.create_task(self._drain_then_exit(sig, frame))

    async def _drain_then_exit(self, sig: int, frame: FrameType | None) -> None:
        try:
            await self.app.state.shutdown.drain()
        finally:
            super().handle_exit(sig, frame)  # now uvicorn stops listening and exits


GC_THRESHOLD = (10_000, 20, 100)
"""CPython's thresholds for ``tune_gc``, against its default (700, 10, 10)."""


def tune_gc() -> None:
    """Fewer and shorter stop-the-world pauses for a process holding thousands of streams.

    Each viewer's connection is a few hundred long-lived objects. At CPython's default
    thresholds a full collection runs each time such objects grow by a quarter, and every
    stream stops while it runs: while 10,000 viewers connected (``python -m bench.fanout
    10000``, 2 pairs with ``JOBTAIL_GC_TUNING=false`` back to back) the longest pause was
    0.69 s; here 0.12-0.13 s. The objects that exist before serving (modules, the app) are
    frozen out of the collector, and collections run 14 times less often at the young end and
    far less at the old. Cyclic garbage waits longer to be freed; most garbage is freed at once
    by reference counting anyway. Lines already flowing to a steady audience are not faster
    (p99 within the noise in the same runs): it is viewers arriving that no longer stall the
    rest."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def serve(app: FastAPI, settings: Settings) -> None:
    """Run the app on ``settings.host:port`` until a signal ends it (after the drain)."""
    loop, http = protocol(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        loop=loop,
        http=http,
        ws="none",
        timeout_keep_alive=5,
        limit_concurrency=settings.max_streams + 200,
        backlog=2048,
        timeout_graceful_shutdown=5,
    )
    server = GracefulServer(config, app)  # its Config configured uvicorn's loggers already
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    if settings.gc_tuning:
        tune_gc()
    server.run()
