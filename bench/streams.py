"""Origin requests for N long-poll readers of one live run behind a caching proxy (the
protocol's CDN story): they should not grow with N. Uses the tests' proxy and readers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from starlette.types import ASGIApp

from jobtail.config import Settings
from jobtail.services import Services
from jobtail.store.sqlite import SQLiteStore
from jobtail.web.app import create_app
from tests.conftest import ServerThread
from tests.streams.conftest import LiveRun
from tests.streams.proxy import CachingProxy, fan_out

Row = tuple[str, str, str, bool]
LINES = 20


def _serve(app: ASGIApp) -> ServerThread:
    server = ServerThread(app)
    server.server.config.timeout_keep_alive = 75
    return server.start()


def cdn_readers(tmp: Path, counts: tuple[int, ...] = (10, 100, 500)) -> list[Row]:
    store = SQLiteStore(tmp / "store.db")
    services = Services.from_settings(Settings(data_dir=tmp, stale_after=3600), store=store)
    origin = _serve(create_app(services=services))
    rows: list[Row] = []
    try:
        for readers in counts:
            run = store.create_run("bench", f"cdn-{readers}")
            claimed = store.claim_run(run.run_id)
            assert claimed is not None
            live = LiveRun(store, origin.url, run.run_id, claimed.epoch)
            proxy = CachingProxy(origin.url)
            front = _serve(proxy)
            started = time.monotonic()
            received = asyncio.run(fan_out(front.url, live, readers, LINES))
            took = time.monotonic() - started
            front.stop()
            every = all(seqs == list(range(1, LINES + 1)) for seqs in received)
            rows.append(
                (
                    f"{readers} long-poll readers via a cache, {LINES} lines",
                    f"{proxy.origin_requests} origin requests ({took:.1f} s)",
                    f"every line; <= {LINES + 3}",
                    every and proxy.origin_requests <= LINES + 3,
                )
            )
    finally:
        origin.stop()
        services.close()
    return rows
