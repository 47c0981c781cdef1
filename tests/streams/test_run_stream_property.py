"""Property: reading a run's stream from any offset and following ``Stream-Next-Offset`` yields
the rest of the log exactly once, in order, with EOF (``Stream-Closed``) only at the end; and a
non-empty read is byte-identical when fetched again, while the run is live or after it ended.
Through a real server; catch-up reads, then long-poll at the end of a live run."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobtail.streams.base import format_offset
from jobtail.streams.runs import BLOCK

from .conftest import LiveRun

LIVE_LINES = 2 * BLOCK + 70  # whole blocks of 1024 and 32 lines, then single lines


def follow(client: httpx.Client, url: str, offset: str) -> tuple[list[int], dict[str, bytes]]:
    """Catch-up reads from ``offset`` until up to date or closed: the seqs, and each non-empty
    response's bytes by request URL."""
    seqs: list[int] = []
    bodies: dict[str, bytes] = {}
    while True:
        response = client.get(url, params={"offset": offset})
        assert response.status_code == 200, response.text
        items = response.json()
        closed = response.headers.get("stream-closed") == "true"
        if items:
            bodies[str(response.url)] = response.content
            seqs += [item["seq"] for item in items]
        if closed or (not items and response.headers.get("stream-up-to-date") == "true"):
            return seqs, bodies
        assert "stream-closed" not in response.headers
        offset = response.headers["stream-next-offset"]


def test_any_offset_reads_the_rest_once_and_reads_never_change(
    new_run: Callable[..., LiveRun],
) -> None:
    run = new_run()
    run.write(LIVE_LINES)
    seen: dict[str, bytes] = {}
    client = httpx.Client(timeout=30)
    check = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])

    @check
    @given(start=st.integers(0, LIVE_LINES))
    def live(start: int) -> None:
        seqs, bodies = follow(client, run.url, format_offset(start))
        assert seqs == list(range(start + 1, LIVE_LINES + 1))
        seen.update(bodies)

    live()
    run.write(25)
    run.finish()
    total = LIVE_LINES + 25

    @check
    @given(start=st.integers(0, total))
    def finished(start: int) -> None:
        seqs, bodies = follow(client, run.url, format_offset(start))
        assert seqs == list(range(start + 1, total + 1))
        seen.update(bodies)

    finished()
    everything, _ = follow(client, run.url, "-1")
    assert everything == list(range(1, total + 1))
    for url, body in seen.items():  # live or finished, the same request returns the same bytes
        assert client.get(url).content == body, url
    eof = client.get(run.url, params={"offset": format_offset(total)})
    assert eof.json() == [] and eof.headers["stream-closed"] == "true"
    client.close()


def test_long_poll_at_the_live_edge_gets_each_new_line_then_eof(
    new_run: Callable[..., LiveRun],
) -> None:
    run = new_run()
    run.write(1)
    with httpx.Client(timeout=30) as client:
        first = client.get(run.url, params={"offset": "-1", "live": "long-poll"})
        assert [m["seq"] for m in first.json()] == [1]
        edge = first.headers["stream-next-offset"]
        cursor = first.headers["stream-cursor"]
        run.write(1)
        second = client.get(run.url, params={"offset": edge, "live": "long-poll", "cursor": cursor})
        assert [m["seq"] for m in second.json()] == [2]
        assert int(second.headers["stream-cursor"]) > int(cursor)
        run.finish()
        last = client.get(
            run.url, params={"offset": second.headers["stream-next-offset"], "live": "long-poll"}
        )
        assert last.status_code == 204 and last.headers["stream-closed"] == "true"
