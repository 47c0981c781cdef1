"""The LISTEN sessions killed (``pg_terminate_backend``) under two real ``jobtail serve``
processes on one PostgreSQL database: the job and the stream writer talk to one, the SSE viewers
and a Durable Streams long-poll reader to the other, so every wake-up the readers get from the
writers' commits travels by NOTIFY. With the sessions gone the readers fall back to polling,
the listeners connect and LISTEN again, and every line and message arrives once, in order,
followed by ``end`` / the stream's close."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from jobtail.store.pg_listen import FIRST_DELAY, HELD, MAX_DELAY, reconnect_delay
from jobtail.store.postgres import PostgresStore
from jobtail.streams.postgres import PostgresStreams

from ..figures import FIGURES
from ..waiting import wait_for
from .harness import Server, Viewer, check_run

pytestmark = [pytest.mark.faults, pytest.mark.postgres]

LISTENING = (
    "select pid from pg_stat_activity where datname = current_database()"
    " and query ilike 'listen %%' and pid <> pg_backend_pid()"
)


def listening(url: str) -> set[int]:
    with closing(psycopg.connect(url, autocommit=True)) as conn:
        return {row[0] for row in conn.execute(LISTENING)}


def kill_listeners(url: str) -> set[int]:
    with closing(psycopg.connect(url, autocommit=True)) as conn:
        pids = {row[0] for row in conn.execute(LISTENING)}
        for pid in pids:
            conn.execute("select pg_terminate_backend(%s)", (pid,))
    FIGURES["LISTEN sessions killed"] += len(pids)
    return pids


class LongPoll:
    """Reads a JSON-mode Durable Stream like a client: catch-up, then long-poll echoing the
    cursor, until ``Stream-Closed``. Runs in a thread; ``join`` waits for the close."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.messages: list[Any] = []
        self.closed = False
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        offset, cursor, live = "-1", None, False
        with httpx.Client(timeout=httpx.Timeout(5, read=30)) as client:
            for _ in range(10_000):
                params = {"offset": offset}
                if live:
                    params["live"] = "long-poll"
                if cursor:
                    params["cursor"] = cursor
                try:
                    response = client.get(self.url, params=params)
                except httpx.TransportError as exc:
                    self.errors.append(repr(exc))
                    continue
                if response.status_code >= 400:
                    self.errors.append(f"{response.status_code} {response.text}")
                    return
                if response.status_code == 200:
                    self.messages += response.json()
                if response.headers.get("stream-closed") == "true":
                    self.closed = True
                    return
                offset = response.headers.get("stream-next-offset", offset)
                cursor = response.headers.get("stream-cursor", cursor)
                live = live or response.headers.get("stream-up-to-date") == "true"

    def join(self, timeout: float = 30) -> LongPoll:
        self.thread.join(timeout)
        return self


@pytest.fixture
def servers(tmp_path: Path, pg_url: str) -> Iterator[tuple[Server, Server]]:
    env = {"JOBTAIL_STORE": pg_url, "FAULT_LINES": "150", "FAULT_PACE": "0.02"}
    env["JOBTAIL_LONG_POLL_SECONDS"] = "2"
    reader = Server(tmp_path / "reader", **env)
    writer = Server(tmp_path / "writer", **env)
    try:
        reader.start()
        writer.start()
        yield reader, writer
    finally:
        reader.stop()
        writer.stop()


def test_listen_sessions_killed_under_sse_viewers_and_a_long_poll_reader(
    servers: tuple[Server, Server], pg_url: str
) -> None:
    reader, writer = servers
    stream = "/v1/stream/faults/listen-killed"
    created = httpx.put(f"{writer.url}{stream}", headers={"Content-Type": "application/json"})
    assert created.status_code == 201, created.text
    poller = LongPoll(f"{reader.url}{stream}")
    run_id = writer.generate()
    viewers = [Viewer(reader.url, run_id) for _ in range(2)]

    def post(numbers: range, **headers: str) -> None:
        with httpx.Client(base_url=writer.url, timeout=10) as client:
            for n in numbers:
                answer = client.post(stream, json={"n": n}, headers=headers)
                assert answer.status_code in (200, 204), answer.text

    post(range(1, 21))
    wait_for(lambda: len(poller.messages) == 20, what="the long-poll reader to be live")
    wait_for(lambda: all(len(v.lines) >= 20 for v in viewers), what="the viewers to be live")
    before = listening(pg_url)
    assert len(before) == 4  # each process: the log store's and the streams' LISTEN
    killed = kill_listeners(pg_url)
    FIGURES["process faults injected"] += 1
    post(range(21, 61))  # while nobody LISTENs: the readers poll
    wait_for(
        lambda: len(now := listening(pg_url)) == 4 and not now & killed,
        20,
        "every process to LISTEN again",
    )
    post(range(61, 81))
    post(range(81, 82), **{"Stream-Closed": "true"})
    poller.join(30)
    for viewer in viewers:
        viewer.join(60)
    assert not poller.errors and poller.closed
    assert poller.messages == [{"n": n} for n in range(1, 82)]
    FIGURES["stream messages checked against a long-poll reader"] += len(poller.messages)
    check_run(writer, run_id, viewers, "succeeded")


@pytest.mark.parametrize(
    ("delay", "held", "expected"),
    [
        (FIRST_DELAY, 0.0, (FIRST_DELAY, FIRST_DELAY * 2)),
        (0.4, 0.01, (0.4, 0.8)),  # lost at once again: keep backing off, no busy loop
        (MAX_DELAY, 0.01, (MAX_DELAY, MAX_DELAY)),
        (MAX_DELAY, HELD, (FIRST_DELAY, FIRST_DELAY * 2)),  # it held: a new outage
    ],
)
def test_the_listen_backoff_starts_over_only_after_a_connection_that_held(
    delay: float, held: float, expected: tuple[float, float]
) -> None:
    assert reconnect_delay(delay, held) == expected


def test_closing_the_stores_ends_their_listen_threads(pg_url: str) -> None:
    """``close`` joins both LISTEN threads (no thread, no session left behind)."""
    store = PostgresStore(pg_url)
    streams = PostgresStreams(pg_url)
    wait_for(lambda: store.listen_connects >= 1 and streams.connects >= 1, what="LISTEN")
    assert len(listening(pg_url)) == 2
    listener, thread = store._listener, streams._listener
    assert listener is not None and thread is not None
    store.close()
    streams.close()
    assert not listener.alive and not thread.is_alive()
    wait_for(lambda: not listening(pg_url), 10, "the LISTEN sessions to end")
