"""``HttpStore``, the worker's LogStore over HTTP, against a real server (uvicorn): what it
sends (the requests, seen through an httpx event hook), and each server answer mapped back onto
the store's errors. ``test_producer.py`` runs it from another process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from jobtail.config import Settings
from jobtail.services import Services
from jobtail.store import LogLine, RunStatus, StoreError
from jobtail.store.base import RunFencedError, SeqGapError, utcnow
from jobtail.store.sqlite import SQLiteStore
from jobtail.streams.producer import PRODUCER_ID, CredentialRefused, HttpStore, _reason
from jobtail.web.app import create_app
from jobtail.web.auth import make_write_token
from tests.conftest import ServerThread

API_KEY = "k" * 16
SECRET = "s" * 32
BASE = "http://127.0.0.1:9"  # the discard port: nothing listens


@dataclass
class App:
    store: SQLiteStore
    settings: Settings
    url: str
    client: httpx.Client
    sent: list[httpx.Request]

    def worker(self, **credential: str) -> HttpStore:
        return HttpStore(self.url + "/", client=self.client, **credential)


@pytest.fixture(params=["none", "apikey"])
def app(
    request: pytest.FixtureRequest, tmp_path: Path, serve: Callable[[object], ServerThread]
) -> Iterator[App]:
    settings = Settings(
        data_dir=tmp_path, store="sqlite:///unused", stale_after=3600, auth=request.param,
        api_keys=[SecretStr(API_KEY)], secret=SecretStr(SECRET),
    )  # fmt: skip
    store = SQLiteStore(tmp_path / "store.db")
    services = Services.from_settings(settings, store=store)
    sent: list[httpx.Request] = []
    server = serve(create_app(services=services))
    with httpx.Client(timeout=30, event_hooks={"request": [sent.append]}) as client:
        yield App(store, settings, server.url, client, sent)
    services.close()


def line(seq: int, message: str = "") -> LogLine:
    return LogLine(seq, utcnow(), "INFO", message or f"line {seq}")


def key(app: App) -> dict[str, str]:
    return {"api_key": API_KEY} if app.settings.auth == "apikey" else {}


def test_it_needs_a_server_url_and_one_credential() -> None:
    with pytest.raises(ValueError, match=r"^HttpStore takes a token or an api_key, not both$"):
        HttpStore(BASE, token="a", api_key="b")
    for url in ("testserver", "ftp://x", "/v1"):
        with pytest.raises(ValueError, match="http\\(s\\) URL"):
            HttpStore(url)
    assert HttpStore("https://x.example/base//").url == "https://x.example/base"
    assert HttpStore("https://x.example/BOX/").url == "https://x.example/BOX"  # slashes only
    assert HttpStore(BASE)._headers == {}
    assert HttpStore(BASE, token="t")._headers == {"Authorization": "Bearer t"}
    assert HttpStore(BASE, api_key="k")._headers == {"Authorization": "Bearer k"}


def test_a_worker_claims_writes_and_ends_a_run(app: App) -> None:
    queued = app.store.create_run("petstore", "svc")
    worker = app.worker(**key(app))
    run = worker.get_run(queued.run_id)
    assert run is not None
    assert (run.run_id, run.upload_id, run.service_name, run.status, run.epoch, run.last_seq) == (
        queued.run_id, "petstore", "svc", RunStatus.QUEUED, queued.epoch, 0,
    )  # fmt: skip
    claimed = worker.claim_run(queued.run_id)
    assert claimed is not None and claimed.status is RunStatus.RUNNING
    assert claimed.epoch == queued.epoch + 1
    claim = app.sent[-2]  # the claim's POST, then the HEAD that reads the claimed run
    assert claim.method == "POST" and claim.url.path == f"/v1/stream/runs/{queued.run_id}"
    assert claim.headers["producer-id"] == PRODUCER_ID
    assert claim.headers["producer-epoch"] == str(claimed.epoch)
    assert claim.headers["producer-seq"] == "0" and claim.headers["jobtail-heartbeat"] == "true"
    assert "content-type" not in claim.headers
    assert worker.claim_run(queued.run_id) is None  # running: not claimable
    assert worker.append(queued.run_id, [line(1), line(2)]) == 2  # epoch looked up
    batch = app.sent[-1]
    assert batch.headers["producer-seq"] == "0"
    assert batch.headers["content-type"] == "application/json"
    assert batch.headers["producer-epoch"] == str(claimed.epoch)
    assert worker.append(queued.run_id, [line(1), line(2)], epoch=claimed.epoch) == 2  # retry
    assert worker.append(queued.run_id, []) == 2
    worker.heartbeat(queued.run_id)
    beat = app.sent[-1]
    assert beat.headers["producer-epoch"] == str(claimed.epoch)
    assert beat.headers["jobtail-heartbeat"] == "true" and beat.headers["producer-seq"] == "0"
    assert worker.finish_run(
        queued.run_id, RunStatus.FAILED, "bad ☃", lines=[line(3)], epoch=claimed.epoch,
        omitted=4,
    )  # fmt: skip
    end = app.sent[-1]
    assert end.headers["stream-closed"] == "true" and end.headers["jobtail-run-status"] == "failed"
    assert end.headers["jobtail-run-error"] == "bad ?" and end.headers["jobtail-run-omitted"] == "4"
    assert end.headers["producer-seq"] == "2"
    finished = app.store.get_run(queued.run_id)
    assert finished is not None and finished.status is RunStatus.FAILED
    assert (finished.error, finished.omitted, finished.last_seq) == ("bad ?", 4, 3)
    assert not worker.finish_run(
        queued.run_id, RunStatus.FAILED, lines=[line(3)], epoch=claimed.epoch
    )  # a retry with its lines: nothing new closed
    assert [x.message for x in app.store.read(queued.run_id)] == ["line 1", "line 2", "line 3"]
    worker.close()
    assert not app.client.is_closed  # not its own client: left open


def test_an_end_without_lines_or_error(app: App) -> None:
    queued = app.store.create_run("petstore", "svc")
    worker = app.worker(**key(app))
    claimed = worker.claim_run(queued.run_id)
    assert claimed is not None
    assert worker.finish_run(queued.run_id, RunStatus.SUCCEEDED, epoch=claimed.epoch)
    end = app.sent[-1]
    assert end.headers["producer-seq"] == "0" and end.content == b""
    assert "jobtail-run-error" not in end.headers and "jobtail-run-omitted" not in end.headers
    long_error = "x" * 1500
    with pytest.raises(RunFencedError):
        worker.finish_run(queued.run_id, RunStatus.FAILED, long_error, lines=[line(1)])
    assert len(app.sent[-1].headers["jobtail-run-error"]) == 1000
    finished = app.store.get_run(queued.run_id)
    assert finished is not None and finished.status is RunStatus.SUCCEEDED


def test_an_end_with_a_line_numbered_by_the_store(app: App) -> None:
    """A closer that is not the writer (a queue's hook, its worker lost) sends its line as seq 0:
    it lands after the run's last line, at the run's epoch, with Producer-Seq that last seq."""
    queued = app.store.create_run("petstore", "svc")
    worker = app.worker(**key(app))
    claimed = worker.claim_run(queued.run_id)
    assert claimed is not None
    worker.append(queued.run_id, [line(1), line(2)], epoch=claimed.epoch)
    why = LogLine(0, utcnow(), "ERROR", "Run failed: the worker process was lost")
    assert worker.finish_run(queued.run_id, RunStatus.FAILED, "lost", lines=[why])
    end = app.sent[-1]
    assert end.headers["producer-seq"] == "2"
    assert end.headers["producer-epoch"] == str(claimed.epoch)
    finished = app.store.get_run(queued.run_id)
    assert finished is not None and (finished.status, finished.last_seq) == (RunStatus.FAILED, 3)
    assert app.store.read(queued.run_id)[-1].message == why.message


def test_refusals_come_back_as_the_stores_errors(app: App) -> None:
    queued = app.store.create_run("petstore", "svc")
    worker = app.worker(**key(app))
    claimed = worker.claim_run(queued.run_id)
    assert claimed is not None
    worker.append(queued.run_id, [line(1)], epoch=claimed.epoch)
    with pytest.raises(SeqGapError) as gap:
        worker.append(queued.run_id, [line(4)], epoch=claimed.epoch)
    assert (gap.value.run_id, gap.value.expected, gap.value.received) == (queued.run_id, 2, 4)
    taken = app.store.claim_run(queued.run_id, takeover_stale_before=utcnow() + timedelta(hours=1))
    assert taken is not None
    with pytest.raises(RunFencedError) as fenced:
        worker.append(queued.run_id, [line(2)], epoch=claimed.epoch)
    assert (fenced.value.reason, fenced.value.epoch) == ("stale_epoch", taken.epoch)
    assert fenced.value.run_id == queued.run_id
    with pytest.raises(RunFencedError) as empty:  # nothing to send is fenced the same
        worker.append(queued.run_id, [], epoch=claimed.epoch)
    assert (empty.value.reason, empty.value.epoch) == ("stale_epoch", taken.epoch)
    assert worker.append(queued.run_id, [], epoch=taken.epoch) == 1
    unclaimed = app.store.create_run("petstore", "other").run_id
    with pytest.raises(RunFencedError) as early:
        worker.append(unclaimed, [], epoch=0)
    assert early.value.reason == "unclaimed"
    assert not isinstance(fenced.value, CredentialRefused)
    for zombie in (  # the old epoch is sent as given, not looked up: fenced too
        lambda: worker.heartbeat(queued.run_id, epoch=claimed.epoch),
        lambda: worker.finish_run(queued.run_id, RunStatus.FAILED, epoch=claimed.epoch),
    ):
        with pytest.raises(RunFencedError, match="claimed by a newer writer"):
            zombie()
    app.store.finish_run(queued.run_id, RunStatus.SUCCEEDED, epoch=taken.epoch)
    with pytest.raises(RunFencedError) as closed:
        worker.append(queued.run_id, [line(2)], epoch=taken.epoch)
    assert (closed.value.reason, closed.value.run_id) == ("closed", queued.run_id)
    with pytest.raises(StoreError, match=rf"no run 'nope' at {app.url}$"):
        worker.heartbeat("nope")
    assert worker.get_run("nope") is None and worker.claim_run("nope") is None
    with pytest.raises(StoreError, match=rf"no run 'nope' at {app.url}$"):
        worker.append("nope", [])  # nothing to send: still an unknown run, as on every store
    with pytest.raises(StoreError, match=r"jobtail server refused \(400\): .*seq"):
        worker._post(queued.run_id, taken.epoch, 0, b"[{}]")


def test_a_claim_lost_to_another_worker_is_none(app: App) -> None:
    queued = app.store.create_run("petstore", "svc")
    worker = app.worker(**key(app))

    def rival(request: httpx.Request) -> None:
        if request.method == "POST":  # another worker claims between the HEAD and the POST
            app.store.claim_run(queued.run_id)

    app.client.event_hooks["request"].append(rival)
    assert worker.claim_run(queued.run_id) is None


def test_an_unreachable_server_is_a_store_error() -> None:
    worker = HttpStore(BASE)
    for call in (
        lambda: worker.get_run("r"),
        lambda: worker.heartbeat("r", epoch=1),
        lambda: worker.create_run("u", "s"),
    ):
        with pytest.raises(StoreError, match=f"jobtail server at {BASE} unreachable"):
            call()
    worker.close()
    assert worker._client.is_closed  # its own client


def test_server_side_operations_are_refused_by_name() -> None:
    worker = HttpStore(BASE)
    for call, what in (
        (lambda: worker.list_runs(), "listing runs"),
        (lambda: worker.stale_runs(utcnow()), "the janitor"),
        (lambda: worker.restart_heartbeats(), "the janitor"),
        (lambda: worker.purge(utcnow()), "purging"),
        (lambda: worker.read("r"), "reading \\(use jobtail.streams.client.follow\\)"),
    ):
        with pytest.raises(StoreError, match=f"^{what} is done by the jobtail server"):
            call()
    worker.close()


def test_a_refused_credential_says_why_and_stops_the_job(app: App) -> None:
    if app.settings.auth == "none":
        pytest.skip("no credential to refuse")
    queued = app.store.create_run("petstore", "svc")
    other = app.store.create_run("petstore", "other")
    with pytest.raises(CredentialRefused) as head:  # a HEAD: the reason from the challenge
        app.worker(api_key="wrong" * 4).get_run(queued.run_id)
    assert head.value.status_code == 401 and head.value.reason == "refused"
    assert head.value.run_id == queued.run_id
    assert str(head.value) == (
        f"jobtail server refused the credential for run {queued.run_id} (401): unknown API key"
    )
    with pytest.raises(CredentialRefused) as post:  # a POST: the JSON detail
        app.worker(api_key="wrong" * 4).heartbeat(queued.run_id, epoch=1)
    assert str(post.value).endswith("(401): unknown API key")
    scoped = app.worker(token=make_write_token(app.settings, other.run_id))
    with pytest.raises(CredentialRefused) as claim:  # another run's token: 403, not fenced
        scoped.claim_run(queued.run_id)
    assert claim.value.status_code == 403 and isinstance(claim.value, RunFencedError)


def test_the_reason_falls_back_to_the_text_then_the_phrase() -> None:
    request = httpx.Request("GET", BASE)
    as_json = httpx.Response(400, json={"detail": "because"}, request=request)
    assert _reason(as_json) == "because"
    not_str = httpx.Response(400, json={"detail": ["x"]}, text=None, request=request)
    assert _reason(not_str) == '{"detail":["x"]}' or _reason(not_str).startswith("{")
    challenge = 'Bearer error="invalid_token", error_description="expired token"'
    headed = httpx.Response(401, headers={"WWW-Authenticate": challenge}, request=request)
    assert _reason(headed) == "expired token"
    plain = httpx.Response(502, text="bad gateway body", request=request)
    assert _reason(plain) == "bad gateway body"
    assert _reason(httpx.Response(503, request=request)) == "Service Unavailable"
    other = httpx.Response(401, headers={"WWW-Authenticate": "Basic realm=x"}, request=request)
    assert _reason(other) == "Unauthorized"


def test_a_key_holder_creates_a_queued_run_as_the_server_stored_it(app: App) -> None:
    worker = app.worker(**key(app))
    made = worker.create_run("petstore", "made")
    assert made == app.store.get_run(made.run_id)  # every field, the creation time included
    assert (made.status, made.epoch, made.last_seq, made.omitted) == (RunStatus.QUEUED, 0, 0, 0)
    with pytest.raises(StoreError, match=r"^the jobtail server names new runs: create_run takes"):
        worker.create_run("petstore", "made", run_id="mine")
    if app.settings.auth == "apikey":
        with pytest.raises(StoreError) as refused:
            app.worker(api_key="wrong" * 4).create_run("petstore", "made")
        assert str(refused.value) == (
            "jobtail server refused to create a run (401): unknown API key; creating runs takes"
            " an API key (a write token only writes its own run)"
        )
