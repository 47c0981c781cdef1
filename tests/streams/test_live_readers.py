"""Many SSE readers of one run's Durable Stream, through a real server, while its worker writes
in bursts: each reader gets every line once, in order, then the closed end, while the readers
share their wake-ups and store reads (``streams.live``). That no reader takes a read begun
before the change it was woken by is ``test_live.py``'s: here polling would hide it as lateness."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import httpx
import pytest

from tests.embed.test_router_streams import sse_events
from tests.waiting import wait_for

from .conftest import LiveRun

READERS = 24
LINES = 60


def read_all(url: str, into: list[int], ended: list[bool], ready: threading.Event) -> None:
    with (
        httpx.Client(timeout=30) as client,
        client.stream("GET", url, params={"offset": "-1", "live": "sse"}) as response,
    ):
        for name, data in sse_events(response):
            if name == "data":
                into.extend(message["seq"] for message in data)
            elif name == "control":
                ready.set()
                if data.get("streamClosed"):
                    ended.append(True)
                    return


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_every_reader_gets_every_line_once_in_order(
    new_run: Callable[..., LiveRun], kind: str
) -> None:
    run = new_run(kind)
    got: list[list[int]] = [[] for _ in range(READERS)]
    ended: list[list[bool]] = [[] for _ in range(READERS)]
    ready = [threading.Event() for _ in range(READERS)]
    threads = [
        threading.Thread(target=read_all, args=(run.url, got[n], ended[n], ready[n]), daemon=True)
        for n in range(READERS)
    ]
    for thread in threads:
        thread.start()
    for flag in ready:
        assert flag.wait(30), "a reader never got its first control event"
    shuffle = random.Random(11)
    while run.written < LINES:  # bursts of 1 to 5 lines, some while readers are mid-read
        run.write(min(shuffle.randint(1, 5), LINES - run.written))
        if shuffle.random() < 0.5:
            wait_for(lambda: all(len(g) == run.written for g in got), 20, "readers caught up")
    run.finish()
    for thread in threads:
        thread.join(30)
    assert [len(e) for e in ended] == [1] * READERS
    assert all(g == list(range(1, LINES + 1)) for g in got), [g[-3:] for g in got]
