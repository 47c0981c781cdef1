"""Viewers over real HTTP (uvicorn, httpx-sse) while the store's reads fail: nothing is lost,
viewers are told, and no viewer waits forever."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx_sse import ServerSentEvent, connect_sse

from jobtail.services import Services
from jobtail.web.app import create_app

from ..conftest import ServerThread
from ..scripted import ScriptedGenerator, make_services
from ..test_http import KEY, stream
from ..waiting import wait_for as until

# the tail's backoff, kept short so an outage costs tens of milliseconds
from .flaky import FlakyStore


class Env:
    def __init__(
        self, services: Services, generator: ScriptedGenerator, url: str, app: FastAPI
    ) -> None:
        self.services, self.generator, self.tailer = services, generator, app.state.tailer
        self.store: FlakyStore = services.store  # type: ignore[assignment]
        self.client = httpx.Client(base_url=url, timeout=httpx.Timeout(10, read=30))

    def final(self) -> list[dict[str, Any]]:
        return self.client.get(f"{KEY}/logs/final", params={"limit": 5000}).json()["logs"]

    def viewer(self, into: list[ServerSentEvent], last_id: str | None = None) -> threading.Thread:
        """A viewer in its own thread, appending events as they come (keep-alives left out)."""

        def run() -> None:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            with (
                httpx.Client(base_url=str(self.client.base_url), timeout=30) as own,
                connect_sse(own, "GET", f"{KEY}/logs", headers=headers) as source,
            ):
                into.extend(e for e in source.iter_sse() if e.data or e.retry)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread


@pytest.fixture
def env(tmp_path: Path, serve: Callable[[object], ServerThread]) -> Iterator[Env]:
    store = FlakyStore(tmp_path / "store.db")
    services, generator = make_services(tmp_path, store, ping_seconds=0.2)
    app = create_app(services=services)
    app.state.tailer.retry_first, app.state.tailer.retry_max = 0.02, 0.1
    server = serve(app)
    environment = Env(services, generator, server.url, app)
    environment.generator.messages = [f"line {n}" for n in range(1, 101)]
    environment.generator.stepped = True
    yield environment
    environment.client.close()
    services.close()


def lines(events: list[ServerSentEvent]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in events if e.event == "message" and e.data]


def unreachable(events: list[ServerSentEvent]) -> list[dict[str, Any]]:
    notices = [json.loads(e.data) for e in events if e.event == "status"]
    return [n for n in notices if n.get("store") == "unreachable"]


def test_one_failed_poll_under_live_and_late_viewers(env: Env) -> None:
    run_id = env.client.post(f"{KEY}/generate").json()["run_id"]
    live: list[ServerSentEvent] = []
    early = env.viewer(live)
    env.generator.step(5)
    until(lambda: len(lines(live)) >= 5)
    env.store.fail_polls = 1
    env.generator.step(95)
    until(lambda: env.store.fail_polls == 0)
    early.join(20)
    late: list[ServerSentEvent] = []
    env.viewer(late).join(20)
    final = env.final()
    assert [x["seq"] for x in final] == list(range(1, len(final) + 1))
    for events in (live, late):
        assert lines(events) == final
        assert events[-1].event == "end"
        assert json.loads(events[-1].data)["last_seq"] == len(final)
    assert len(unreachable(live)) == 1
    assert stream(env.client, last_id=f"{run_id}:{len(final)}")[0] == 204


def test_a_store_down_for_a_while_under_live_and_late_viewers(env: Env) -> None:
    env.client.post(f"{KEY}/generate")
    live: list[ServerSentEvent] = []
    early = env.viewer(live)
    env.generator.step(5)
    until(lambda: len(lines(live)) >= 5)
    env.store.down = True
    env.generator.step(45)  # the job keeps writing: only reads fail
    late: list[ServerSentEvent] = []
    joining = env.viewer(late)  # joins the live run during the outage
    until(lambda: len(unreachable(live)) >= 5 and len(unreachable(late)) >= 1)
    env.store.down = False
    env.generator.step(50)
    early.join(20)
    joining.join(20)
    final = env.final()
    for events in (live, late):
        assert lines(events) == final and events[-1].event == "end"
    notice = unreachable(live)[0]
    assert notice["status"] == "running" and "unreachable" in notice["detail"]
    assert "injected" not in json.dumps(unreachable(live))  # error text stays in the server log


def test_a_store_down_too_long_ends_the_stream_with_retry_and_resumes(env: Env) -> None:
    run_id = env.client.post(f"{KEY}/generate").json()["run_id"]
    live: list[ServerSentEvent] = []
    first = env.viewer(live)
    env.generator.step(5)
    until(lambda: len(lines(live)) >= 5)
    env.tailer.give_up_after = 0.3
    env.store.down = True
    env.generator.step(10)
    first.join(20)
    assert not first.is_alive() and live[-1].retry == 1000  # ended by the server, with retry:
    assert live[-1].id == f"{run_id}:{lines(live)[-1]['seq']}" and env.tailer.follower_count == 0
    env.store.down = False
    env.generator.step(85)
    rest: list[ServerSentEvent] = []
    env.viewer(rest, last_id=live[-1].id).join(20)
    assert lines(live) + lines(rest) == env.final() and rest[-1].event == "end"
