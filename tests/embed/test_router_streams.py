"""A run's Durable Stream read through jobtail's router in a host app: under the host's prefix,
behind the host's auth or the run's stream token, through a real server (uvicorn)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from jobtail.store.sqlite import SQLiteStore
from jobtail.streams.client import StreamReadError, follow

from ..conftest import ServerThread
from ..streams.conftest import LiveRun
from .hostapp import PREFIX, USER_HEADER, host_app


@pytest.fixture
def live(sqlite_store: SQLiteStore, serve: Callable[[object], ServerThread]) -> LiveRun:
    """A claimed run of ``import/nightly`` whose lines the test writes, served by the host."""
    server = serve(host_app(sqlite_store))
    run = sqlite_store.create_run("import", "nightly")
    claimed = sqlite_store.claim_run(run.run_id)
    assert claimed is not None
    return LiveRun(sqlite_store, server.url + PREFIX, run.run_id, claimed.epoch)


@pytest.fixture
def clients(live: LiveRun) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    """The host's user (its credential) and a client without one, both at the stream."""
    timeout = httpx.Timeout(10, read=30)
    with (
        httpx.Client(headers=USER_HEADER, timeout=timeout) as user,
        httpx.Client(timeout=timeout) as anonymous,
    ):
        yield user, anonymous


def seqs(response: httpx.Response) -> list[int]:
    return [line["seq"] for line in response.json()]


def catch_up(client: httpx.Client, url: str, **params: str) -> tuple[list[int], httpx.Response]:
    """Read from the start until up to date (a read returns at most one aligned block)."""
    offset, got = "-1", []
    while True:
        response = client.get(url, params={"offset": offset, **params})
        assert response.status_code == 200, response.text
        got += seqs(response)
        if response.headers.get("stream-up-to-date") == "true":
            return got, response
        offset = response.headers["stream-next-offset"]


def sse_events(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    """(event, data) pairs of a Durable Streams SSE response, data parsed as JSON."""
    name, data = "", []
    for text in response.iter_lines():
        if text.startswith("event:"):
            name = text[len("event:") :].strip()
        elif text.startswith("data:"):
            data.append(text[len("data:") :])
        elif not text and name:
            yield name, json.loads("\n".join(data))
            name, data = "", []


def test_catch_up_long_poll_and_close_under_the_hosts_prefix(
    live: LiveRun, clients: tuple[httpx.Client, httpx.Client]
) -> None:
    user, _ = clients
    live.write(3)
    first = user.get(live.url, params={"offset": "-1"})
    assert first.status_code == 200 and first.json()[0]["message"] == "line 1"
    got, caught_up = catch_up(user, live.url)
    assert got == [1, 2, 3]
    assert caught_up.headers["cache-control"].startswith("private")  # let in by the host's auth
    edge = caught_up.headers["stream-next-offset"]

    waiting: dict[str, httpx.Response] = {}
    poll = threading.Thread(
        target=lambda: waiting.update(
            answer=user.get(live.url, params={"offset": edge, "live": "long-poll"})
        )
    )
    poll.start()  # waits at the live edge until the next line lands
    live.write(1)
    poll.join(20)
    woken = waiting["answer"]
    assert woken.status_code == 200 and seqs(woken) == [4]
    cursor = woken.headers["stream-cursor"]
    live.write(1)
    after = woken.headers["stream-next-offset"]
    echoed = user.get(live.url, params={"offset": after, "live": "long-poll", "cursor": cursor})
    assert seqs(echoed) == [5] and int(echoed.headers["stream-cursor"]) > int(cursor)

    head = user.head(live.url)
    assert head.status_code == 200 and head.headers["jobtail-run-status"] == "running"
    assert head.headers["jobtail-upload-id"] == "import" and "stream-closed" not in head.headers

    live.finish()
    closed = user.get(
        live.url, params={"offset": echoed.headers["stream-next-offset"], "live": "long-poll"}
    )
    assert closed.status_code == 204 and closed.headers["stream-closed"] == "true"
    assert closed.headers["jobtail-run-status"] == "succeeded"
    got, whole = catch_up(user, live.url)
    assert got == [1, 2, 3, 4, 5] and whole.headers["stream-closed"] == "true"
    assert whole.headers["jobtail-run-status"] == "succeeded"
    assert user.head(live.url).headers["stream-closed"] == "true"
    got, by_key = catch_up(user, f"{live.server}/v1/stream/runs/import/nightly")
    assert got == [1, 2, 3, 4, 5] and by_key.headers["cache-control"] == "no-store"
    # jobtail's own reader (catch-up, long-poll echoing the cursor) through the host's client
    assert [line["seq"] for line in follow(str(live.url), client=user)] == [1, 2, 3, 4, 5]


def test_sse_to_the_close_under_the_hosts_prefix(
    live: LiveRun, clients: tuple[httpx.Client, httpx.Client]
) -> None:
    user, _ = clients
    live.write(2)
    got: list[int] = []
    with user.stream("GET", live.url, params={"offset": "-1", "live": "sse"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event, data in sse_events(response):
            if event == "data":
                got += [line["seq"] for line in data]
            elif data.get("streamClosed"):
                break
            elif data.get("upToDate") and len(got) == 2:
                assert data["streamCursor"]
                live.write(1)  # a live line, then the end, over the open response
                live.finish()
    assert got == [1, 2, 3]


def test_the_hosts_auth_guards_the_stream_and_a_run_token_opens_its_own_run_only(
    live: LiveRun, clients: tuple[httpx.Client, httpx.Client], sqlite_store: SQLiteStore
) -> None:
    user, anonymous = clients
    live.write(2)
    for params in ({"offset": "-1"}, {"offset": "-1", "live": "long-poll"}, {"live": "sse"}):
        refused = anonymous.get(live.url, params=params)
        assert refused.status_code == 401 and "X-Host-User" in refused.json()["detail"]
    assert anonymous.head(live.url).status_code == 401
    by_key = anonymous.get(f"{live.server}/v1/stream/runs/import/nightly")
    assert by_key.status_code == 401

    token = user.get(f"{live.server}/run/{live.run_id}/status").json()["token"]
    got, viewer = catch_up(anonymous, live.url, token=token)
    assert got == [1, 2]
    assert viewer.headers["cache-control"].startswith("public")  # the same bytes for every holder
    assert anonymous.head(live.url, params={"token": token}).status_code == 200
    live.finish()
    lines = follow(str(live.url), client=anonymous, token=token)
    assert [line["seq"] for line in lines] == [1, 2]

    other = sqlite_store.create_run("import", "weekly").run_id
    wrong = anonymous.get(f"{live.server}/v1/stream/runs/{other}", params={"token": token})
    missing = anonymous.get(f"{live.server}/v1/stream/runs/nope", params={"token": token})
    assert wrong.status_code == 401 and "not valid for this run" in wrong.json()["detail"]
    assert (missing.status_code, missing.json()) == (wrong.status_code, wrong.json())
    assert anonymous.get(live.url, params={"token": "garbage"}).status_code == 401
    with pytest.raises(StreamReadError, match="401"):
        list(follow(str(live.url), client=anonymous))


def test_writes_stay_on_jobtails_own_app(
    live: LiveRun, clients: tuple[httpx.Client, httpx.Client]
) -> None:
    """A host's router reads run streams only: producers write through jobtail's app."""
    user, _ = clients
    headers = {"Content-Type": "application/json", "Producer-Id": "w", "Producer-Epoch": "1"}
    appended = user.post(live.url, content=b"[]", headers={**headers, "Producer-Seq": "0"})
    assert appended.status_code == 405
    assert user.put(f"{live.server}/v1/stream/mine").status_code == 404
    assert user.get(live.url, params={"offset": "-1"}).json() == []
