"""jobtail's router in a host app: its auth, plain run ids, stream tokens, the lifespan."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount

import jobtail.fastapi
from jobtail.logger import RunLogger
from jobtail.store import RunStatus
from jobtail.store.sqlite import SQLiteStore

from ..conftest import ServerThread
from .hostapp import PREFIX, USER_HEADER, host_app


@pytest.fixture
def finished(sqlite_store: SQLiteStore) -> str:
    run = sqlite_store.create_run("import", "nightly")
    sqlite_store.start_run(run.run_id)
    with RunLogger(sqlite_store, run.run_id) as log:
        for n in range(1, 6):
            log.info(f"row batch {n}", rows=n * 100)
    sqlite_store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    return run.run_id


@pytest.fixture
def clients(
    sqlite_store: SQLiteStore, serve: Callable[[object], ServerThread]
) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    server = serve(host_app(sqlite_store))
    base = server.url + PREFIX
    with (
        httpx.Client(base_url=base, headers=USER_HEADER, timeout=10) as user,
        httpx.Client(base_url=base, timeout=10) as anonymous,
    ):
        yield user, anonymous


def test_a_run_by_plain_id_behind_the_hosts_auth(
    clients: tuple[httpx.Client, httpx.Client], finished: str
) -> None:
    user, anonymous = clients
    status = user.get(f"/run/{finished}/status").json()
    assert status["status"] == "succeeded" and status["last_seq"] == 5
    assert status["last_event_id"] == f"{finished}:5" and status["token"]
    final = user.get(f"/run/{finished}/logs/final").json()
    assert [x["message"] for x in final["logs"]] == [f"row batch {n}" for n in range(1, 6)]
    by_key = user.get("/runs/import/nightly/logs/final").json()
    assert by_key["logs"] == final["logs"]
    stream = user.get(f"/run/{finished}/logs")
    assert stream.status_code == 200 and "event: end" in stream.text
    assert stream.text.count("\ndata: {") == 5 + 2  # lines, status, end
    for path in ("/status", "/logs", "/logs/final"):  # the host's auth guards every route
        refused = anonymous.get(f"/run/{finished}{path}")
        assert refused.status_code == 401 and "X-Host-User" in refused.json()["detail"]
    assert user.get("/run/nope/status").json() == {"detail": "no run 'nope'"}
    assert user.get("/run/bad id/status").status_code == 422
    resumed = user.get(f"/run/{finished}/logs", headers={"Last-Event-ID": "other:2"})
    assert resumed.status_code == 422 and "names run 'other'" in resumed.json()["detail"]
    done = user.get(f"/run/{finished}/logs", headers={"Last-Event-ID": f"{finished}:5"})
    assert done.status_code == 204


def test_eventsource_gets_in_with_the_runs_stream_token_only(
    clients: tuple[httpx.Client, httpx.Client], finished: str, sqlite_store: SQLiteStore
) -> None:
    user, anonymous = clients
    token = user.get(f"/run/{finished}/status").json()["token"]
    stream = anonymous.get(f"/run/{finished}/logs", params={"token": token})
    assert stream.status_code == 200 and "event: end" in stream.text
    final = anonymous.get("/runs/import/nightly/logs/final", params={"token": token})
    assert final.status_code == 200 and len(final.json()["logs"]) == 5
    other = sqlite_store.create_run("import", "weekly").run_id
    refused = anonymous.get(f"/run/{other}/logs", params={"token": token})
    assert refused.status_code == 401 and "not valid for this run" in refused.json()["detail"]
    assert anonymous.get(f"/run/{finished}/status", params={"token": token}).status_code == 401
    assert anonymous.get(f"/run/{finished}/logs", params={"token": ""}).status_code == 401


def test_no_job_routes_without_services_and_no_token_twins_in_the_schema(
    clients: tuple[httpx.Client, httpx.Client],
) -> None:
    user, _ = clients
    assert user.post("/runs/a/b/generate").status_code in (404, 405)
    assert user.post("/uploads").status_code in (404, 405)
    page = user.get("/static/index.html")  # the browser client is served beside the routes
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    paths = user.get(user.base_url.join("/openapi.json")).json()["paths"]
    assert sorted(p for p in paths if p.startswith(PREFIX)) == [
        f"{PREFIX}/run/{{run_id}}/logs",
        f"{PREFIX}/run/{{run_id}}/logs/final",
        f"{PREFIX}/run/{{run_id}}/logs/search",
        f"{PREFIX}/run/{{run_id}}/status",
        f"{PREFIX}/runs",
        f"{PREFIX}/runs/{{upload_id}}/{{service}}/logs",
        f"{PREFIX}/runs/{{upload_id}}/{{service}}/logs/final",
        f"{PREFIX}/runs/{{upload_id}}/{{service}}/logs/search",
        f"{PREFIX}/runs/{{upload_id}}/{{service}}/runs",
        f"{PREFIX}/runs/{{upload_id}}/{{service}}/status",
    ]


def test_the_lifespan_starts_and_stops_the_tail_hub_and_a_store_url_is_opened_and_closed(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    jobs = jobtail.fastapi.router(url)
    app = FastAPI()
    app.include_router(jobs, prefix="/jobs")
    store = jobs.context.store
    run = store.create_run("u", "s")
    for _ in range(2):  # a second start gets a fresh hub
        server = ServerThread(app).start()
        try:
            assert len(store.listeners._listeners) == 1
            status = httpx.get(f"{server.url}/jobs/run/{run.run_id}/status").json()
            assert status["status"] == "queued" and "token" not in status  # no secret, no tokens
        finally:
            server.stop()
        assert store.listeners._listeners == []


def test_the_lifespan_helper_for_a_mounted_sub_app(sqlite_store: SQLiteStore) -> None:
    """A sub-app's lifespan never runs under a Starlette Mount: the outer app runs the hub's."""
    jobs = jobtail.fastapi.router(sqlite_store)
    inner = FastAPI()
    inner.include_router(jobs)
    outer = Starlette(routes=[Mount("/jobs", app=inner)], lifespan=jobtail.fastapi.lifespan(jobs))
    run = sqlite_store.create_run("u", "s")
    server = ServerThread(outer).start()
    try:
        assert len(sqlite_store.listeners._listeners) == 1
        stream = httpx.get(f"{server.url}/jobs/run/{run.run_id}/status")
        assert stream.json()["status"] == "queued"
    finally:
        server.stop()
    assert sqlite_store.listeners._listeners == []
