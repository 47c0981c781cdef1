"""A worker elsewhere holds one credential: its run's write token. With it, a job in another
process writes that run from claim to close, every line once; anything else it tries (another
run, a generic stream, a read, the runs API) is a 403 that says why, an expired or altered one a
401, and a viewer's read token never writes. Through a real server (uvicorn, JOBTAIL_AUTH=apikey).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

import jobtail
from jobtail.config import Settings
from jobtail.run import RunClaimError
from jobtail.services import Services
from jobtail.store import LogLine, RunStatus
from jobtail.store.base import RunActiveError, RunFencedError, StoreError, utcnow
from jobtail.store.sqlite import SQLiteStore
from jobtail.streams.client import follow
from jobtail.streams.producer import CredentialRefused, HttpStore
from jobtail.web.app import create_app
from jobtail.web.auth import (
    AuthError,
    ScopeError,
    bearer_grant,
    check_bearer,
    check_stream_token,
    check_write_token,
    make_stream_token,
    make_write_token,
)
from tests.conftest import ServerThread

API_KEY = "k" * 16
SECRET = "s" * 32
PRODUCER = {"Producer-Id": "w", "Producer-Epoch": "1", "Producer-Seq": "0"}

JOB = """
import sys
import jobtail

server, run_id, token = sys.argv[1:4]
with jobtail.run(server, run_id=run_id, token=token, write_behind=0.01) as log:
    for n in range(1, 41):
        log.info(f"step {n}", n=n)
"""


@dataclass
class Secured:
    """A jobtail server with API keys; ``api`` holds a key, ``queue`` makes a run + tokens."""

    services: Services
    url: str
    api: httpx.Client

    def queue(self, service: str) -> dict[str, object]:
        created = self.api.post(f"/runs/petstore/{service}/runs")
        assert created.status_code == 201, created.text
        body: dict[str, object] = created.json()
        return body


@pytest.fixture
def secured(tmp_path: Path, serve: Callable[[object], ServerThread]) -> Iterator[Secured]:
    settings = Settings(
        data_dir=tmp_path,
        store="sqlite:///unused",
        stale_after=3600,
        auth="apikey",
        api_keys=[SecretStr(API_KEY)],
        secret=SecretStr(SECRET),
    )
    services = Services.from_settings(settings, store=SQLiteStore(tmp_path / "store.db"))
    server = serve(create_app(services=services))
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_KEY}"})
    yield Secured(services, server.url, api)
    api.close()
    services.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_worker_with_only_the_write_token_writes_its_run(secured: Secured) -> None:
    queued = secured.queue("remote")
    run_id, token = str(queued["run_id"]), str(queued["write_token"])
    assert token.startswith("jtw_") and queued["stream"] == f"/v1/stream/runs/{run_id}"
    received: list[dict[str, object]] = []
    done = threading.Event()

    def read() -> None:
        received.extend(follow(f"{secured.url}{queued['stream']}", api_key=API_KEY))
        done.set()

    threading.Thread(target=read, daemon=True).start()
    env = {"PATH": "/usr/bin:/bin"}  # no JOBTAIL_* and no store: the token is all it has
    job = subprocess.run(
        [sys.executable, "-c", JOB, secured.url, run_id, token],
        capture_output=True,
        timeout=60,
        env=env,
    )
    assert job.returncode == 0, job.stderr.decode()
    assert done.wait(20), "the reader did not see the run end"
    run = secured.services.store.get_run(run_id)
    assert run is not None and run.status is RunStatus.SUCCEEDED
    assert [m["seq"] for m in received] == list(range(1, run.last_seq + 1))
    steps = [m["message"] for m in received if str(m["message"]).startswith("step")]
    assert steps == [f"step {n}" for n in range(1, 41)]
    assert str(received[-1]["message"]).startswith("Run succeeded")
    # the run is closed: its token can write nothing more
    again = HttpStore(secured.url, token=token)
    assert again.claim_run(run_id) is None
    again.close()


def test_the_write_token_is_refused_for_anything_else(secured: Secured) -> None:
    mine, other = secured.queue("mine"), secured.queue("other")
    run_id, token = str(mine["run_id"]), str(mine["write_token"])
    anon = httpx.Client(base_url=secured.url, headers=bearer(token))
    refused = {
        ("POST", f"/v1/stream/runs/{other['run_id']}"): PRODUCER,  # another run
        ("HEAD", f"/v1/stream/runs/{other['run_id']}"): {},
        ("GET", f"/v1/stream/runs/{run_id}"): {},  # a producer writes; viewers read
        ("GET", "/v1/stream/runs/petstore/mine"): {},
        ("PUT", "/v1/stream/scratch"): {"Content-Type": "text/plain"},  # generic streams
        ("POST", "/v1/stream/scratch"): {"Content-Type": "text/plain"},
        ("GET", "/v1/stream/scratch"): {},
        ("DELETE", f"/v1/stream/runs/{run_id}"): {},
        ("GET", f"/run/{run_id}/status"): {},  # the runs API
        ("GET", "/runs/petstore/mine/status"): {},
        ("GET", "/runs/petstore/mine/logs/final"): {},
        ("POST", "/runs/petstore/third/runs"): {},
        ("POST", f"/run/{run_id}/write-token"): {},
    }
    for (method, path), headers in refused.items():
        answer = anon.request(method, path, headers=headers, content=b"x" if headers else b"")
        assert answer.status_code == 403, (method, path, answer.status_code, answer.text)
        assert "insufficient_scope" in answer.headers["www-authenticate"], (method, path)
        if method != "HEAD":
            assert f"only writes run {run_id}" in answer.json()["detail"], (method, path)
    # nothing landed anywhere; its own run is untouched and still queued
    assert secured.api.get("/v1/stream/scratch").status_code == 404
    for queued in (mine, other):
        run = secured.services.store.get_run(str(queued["run_id"]))
        assert run is not None and run.status is RunStatus.QUEUED and run.last_seq == 0
    anon.close()


def test_expired_altered_and_read_tokens_cannot_write(secured: Secured) -> None:
    queued = secured.queue("fenced")
    run_id, stream = str(queued["run_id"]), f"{secured.url}{queued['stream']}"
    settings = secured.services.settings
    expired = make_write_token(settings, run_id, ttl=60, now=time.time() - 61)
    good = str(queued["write_token"])
    altered = good[:-10] + ("A" if good[-10] != "A" else "B") + good[-9:]  # not the padding bits
    for token, reason in ((expired, "expired"), (altered, "not valid")):
        answer = httpx.post(stream, headers={**bearer(token), **PRODUCER})
        assert answer.status_code == 401 and reason in answer.json()["detail"], answer.text
        with pytest.raises(CredentialRefused, match=reason):  # HEAD: the reason in its header
            jobtail.run(secured.url, run_id=run_id, token=token).__enter__()
    read = make_stream_token(settings, run_id)
    assert str(queued["token"]) and httpx.get(stream, params={"token": read}).status_code == 200
    for params, headers in (({"token": read}, PRODUCER), ({}, {**PRODUCER, **bearer(read)})):
        answer = httpx.post(stream, params=params, headers=headers)
        assert answer.status_code == 403, answer.text
        assert "only reads its run" in answer.json()["detail"]
    run = secured.services.store.get_run(run_id)
    assert run is not None and run.status is RunStatus.QUEUED and run.epoch == 0


def test_the_api_key_still_writes_and_mints_tokens(secured: Secured) -> None:
    queued = secured.queue("keyed")
    run_id = str(queued["run_id"])
    with jobtail.run(secured.url, run_id=run_id, token=API_KEY) as log:
        log.info("with the API key")
        fresh = secured.api.post(f"/run/{run_id}/write-token")
        assert fresh.status_code == 200 and fresh.json()["expires_in"] == 86_400
    run = secured.services.store.get_run(run_id)
    assert run is not None and run.status is RunStatus.SUCCEEDED
    ended = secured.api.post(f"/run/{run_id}/write-token")
    assert ended.status_code == 409 and "succeeded" in ended.json()["detail"]
    # the fresh token still only meets a closed stream
    late = HttpStore(secured.url, token=fresh.json()["write_token"])
    line = LogLine(9, utcnow(), "INFO", "late")
    with pytest.raises(RunFencedError) as closed:
        late.append(run_id, [line], epoch=run.epoch)
    assert closed.value.reason == "closed"
    late.close()


def test_a_host_that_creates_the_run_mints_the_token_itself(
    secured: Secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = secured.services.store
    created = store.create_run("petstore", "hosted")
    monkeypatch.setenv("JOBTAIL_SECRET", SECRET)
    token = jobtail.producer_token(created.run_id, ttl=600)
    with jobtail.run(secured.url, run_id=created.run_id, token=token) as log:
        log.info("hosted")
    assert store.read(created.run_id)[0].message == "hosted"
    # a redelivered message: the token cannot run it twice
    with pytest.raises(RunClaimError, match="already succeeded"):
        jobtail.run(secured.url, run_id=created.run_id, token=token).__enter__()
    monkeypatch.delenv("JOBTAIL_SECRET")
    with pytest.raises(AuthError, match="JOBTAIL_SECRET"):
        jobtail.producer_token(created.run_id)
    with pytest.raises(ValueError, match="server URL"):
        jobtail.run("sqlite:///x.db", run_id=created.run_id, token=token)


def rows(log: jobtail.RunLogger, count: int) -> int:
    for n in range(1, count + 1):
        log.info(f"row {n}")
    return count


def test_a_celery_message_carries_the_token_to_a_worker_over_http(
    secured: Secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker is a list here (the real-worker queue tests are tests/embed/test_queues.py):
    what ``enqueue`` sends is what the worker's task body receives."""
    import jobtail.queues.celery

    sent: list[tuple[tuple[object, ...], dict[str, object]]] = []

    class Task:
        def apply_async(self, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
            sent.append((args, kwargs))

    monkeypatch.setenv("JOBTAIL_SECRET", SECRET)
    store = secured.services.store
    created = jobtail.queues.celery.enqueue(
        Task(), store, "petstore", "queued", 3, write_token=True
    )
    [(args, kwargs)] = sent
    assert args == (created.run_id, 3) and str(kwargs["jobtail_token"]).startswith("jtw_")
    worker = jobtail.queues.celery.with_run(secured.url)(rows)  # only the server's URL
    assert worker(*args, **kwargs) == 3
    assert worker(*args, **kwargs) is None  # a redelivery runs nothing
    assert [line.message for line in store.read(created.run_id)][:3] == ["row 1", "row 2", "row 3"]
    run = store.get_run(created.run_id)
    assert run is not None and run.status is RunStatus.SUCCEEDED


@pytest.mark.anyio
async def test_an_arq_job_carries_the_token_to_a_worker_over_http(
    secured: Secured, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jobtail.queues.arq

    sent: list[tuple[tuple[object, ...], dict[str, object]]] = []

    class Redis:
        async def enqueue_job(self, function: str, *args: object, **kwargs: object) -> object:
            sent.append((args, kwargs))
            return object()

    async def job(ctx: dict[str, object], log: jobtail.RunLogger, count: int) -> int:
        return rows(log, count)

    monkeypatch.setenv("JOBTAIL_SECRET", SECRET)
    store = secured.services.store
    created = await jobtail.queues.arq.enqueue(
        Redis(), "job", store, "petstore", "arq", 2, write_token=True
    )
    [(args, kwargs)] = sent
    worker = jobtail.queues.arq.with_run(secured.url)(job)
    assert await worker({}, *args, **kwargs) == 2
    run = store.get_run(created.run_id)
    assert run is not None and run.status is RunStatus.SUCCEEDED and run.last_seq == 3


def test_the_two_kinds_of_run_token_never_pass_for_each_other() -> None:
    settings = Settings(secret=SecretStr(SECRET), auth="apikey", api_keys=[SecretStr(API_KEY)])
    write, read = make_write_token(settings, "run-a"), make_stream_token(settings, "run-a")
    assert check_write_token(settings, write) == "run-a"
    with pytest.raises(AuthError):
        check_stream_token(settings, "run-a", write)
    with pytest.raises(AuthError):
        check_stream_token(settings, "run-a", write.removeprefix("jtw_"))
    with pytest.raises(AuthError):
        check_write_token(settings, "jtw_" + read)
    with pytest.raises(ScopeError, match="only writes run run-a"):
        check_bearer(settings, f"Bearer {write}")  # the API's check: known, but not a key
    assert bearer_grant(settings, f"Bearer {API_KEY}") is None
    # rotating the secret keeps outstanding write tokens valid while the old one is listed
    rotated = Settings(secret=SecretStr("t" * 32), old_secrets=[SecretStr(SECRET)], auth="apikey")
    assert check_write_token(rotated, write) == "run-a"
    with pytest.raises(AuthError, match="not valid"):
        check_write_token(Settings(secret=SecretStr("t" * 32)), write)
    with pytest.raises(AuthError, match="expired"):
        check_write_token(settings, write, now=time.time() + 86_400)


def test_a_job_with_an_api_key_makes_its_own_run_over_http(secured: Secured) -> None:
    """``jobtail.run(server, upload, service, token=api_key)``: the server creates the run,
    the job claims and writes it; a second one for the same key while it runs is refused
    (RunActiveError), and a write token cannot create runs."""
    with jobtail.run(secured.url, "petstore", "own", token=API_KEY) as log:
        log.info("made here")
        run_id = log.run_id
        with (
            pytest.raises(RunActiveError) as active,
            jobtail.run(secured.url, "petstore", "own", token=API_KEY),
        ):
            pass
        assert active.value.run.run_id == run_id
    run = secured.services.store.get_run(run_id)
    assert run is not None and run.status is RunStatus.SUCCEEDED
    assert (run.upload_id, run.service_name) == ("petstore", "own")
    lines = secured.services.store.read(run_id)
    assert lines[0].message == "made here" and lines[-1].message.startswith("Run succeeded")
    token = str(secured.queue("tokened")["write_token"])
    worker = HttpStore(secured.url, token=token)
    with pytest.raises(StoreError, match=r"\(403\).*takes an API key"):
        worker.create_run("petstore", "else")
    with pytest.raises(StoreError, match="names new runs"):
        worker.create_run("petstore", "else", run_id="mine")
    worker.close()
