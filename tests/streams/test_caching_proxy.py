"""Through a caching proxy that honours Cache-Control and collapses identical misses (what the
protocol asks of a CDN), many long-poll readers of a live run each get every line once, while
the origin serves about one request per line however many readers there are."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.conftest import ServerThread

from .conftest import LiveRun
from .proxy import CachingProxy, fan_out

LINES = 12


@pytest.mark.parametrize("readers", [10, 500])
def test_readers_through_a_cache_cost_the_origin_the_same(
    new_run: Callable[..., LiveRun], readers: int
) -> None:
    run = new_run()
    proxy = CachingProxy(run.server)
    front = ServerThread(proxy)
    front.server.config.timeout_keep_alive = 75  # readers reuse their connections
    front.start()
    received = asyncio.run(fan_out(front.url, run, readers, LINES))
    assert all(seqs == list(range(1, LINES + 1)) for seqs in received)
    # one long-poll per line, plus the last one that learns of the close
    front.stop()
    assert proxy.origin_requests <= LINES + 3, proxy.origin_requests
