"""The api function (Mangum behind a buffered REST API), invoked with the events/ files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobtail.jobs.dispatch import JobMessage
from jobtail.logger import RunLogger
from jobtail.store.base import LogStore, RunStatus
from jobtail.store.sqlite import SQLiteStore
from tests.events import load_event
from tests.scripted import make_services
from tests.waiting import wait_for as until

from .conftest import API_KEY, Aws
from .lambdas import FakeContext, for_key, load_handler, parse_sse, with_header, with_query


def body(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


def finished_run(store: LogStore, messages: list[str]) -> str:
    """A run of the sample key that a worker ran to its end, with these lines."""
    run = store.create_run("petstore", "pydantic")
    store.start_run(run.run_id)
    with RunLogger(store, run.run_id) as log:
        for message in messages:
            log.info(message)
    store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    return run.run_id


def test_generate_queues_the_run_and_links_the_stream_under_the_stage(
    lambda_env: Aws, context: FakeContext, store: SQLiteStore
) -> None:
    response = load_handler("api").handler(load_event("api-generate"), context)
    assert response["statusCode"] == 202, response["body"]
    started = body(response)
    run_id = started["run_id"]
    assert started["stream_url"] == f"/Prod/runs/petstore/pydantic/logs?run_id={run_id}"
    assert started["token"]  # EventSource cannot send the bearer key: a stream token instead
    [message] = lambda_env.receive()
    assert JobMessage.parse(message["Body"]) == JobMessage(
        run_id=run_id, upload_id="petstore", service_name="pydantic"
    )
    run = store.get_run(run_id)
    assert run is not None and run.status is RunStatus.QUEUED


def test_status_reports_the_run_with_its_resume_cursor(
    lambda_env: Aws, context: FakeContext
) -> None:
    api = load_handler("api")
    run_id = body(api.handler(load_event("api-generate"), context))["run_id"]
    response = api.handler(load_event("api-status"), context)
    assert response["statusCode"] == 200
    status = body(response)
    assert (status["run_id"], status["status"], status["active"]) == (run_id, "queued", True)
    assert status["last_event_id"] == f"{run_id}:0" and status["token"]


def test_logs_of_a_finished_run_then_204_and_the_final_page(
    lambda_env: Aws, context: FakeContext, store: SQLiteStore
) -> None:
    run_id = finished_run(store, [f"step {n}" for n in range(1, 6)])
    api = load_handler("api")
    response = api.handler(load_event("api-logs"), context)
    assert response["statusCode"] == 200
    assert response["headers"]["content-type"].startswith("text/event-stream")
    sse = parse_sse(response["body"])
    expected = [line.to_json() for line in store.read(run_id)]
    assert sse.lines() == expected
    [end] = sse.named("end")
    assert end.json() == {"run_id": run_id, "status": "succeeded", "last_seq": 5}
    assert sse.events[-1] == end and sse.last_id == f"{run_id}:5"
    again = with_header(load_event("api-logs"), "Last-Event-ID", sse.last_id)
    assert api.handler(again, context)["statusCode"] == 204  # EventSource stops here
    final = api.handler(load_event("api-logs-final"), context)
    assert final["statusCode"] == 200 and body(final)["logs"] == expected


def test_the_stream_token_from_generate_opens_the_stream(
    lambda_env: Aws, context: FakeContext, store: SQLiteStore
) -> None:
    api = load_handler("api")
    token = body(api.handler(load_event("api-generate"), context))["token"]
    logs = with_header(load_event("api-logs"), "Authorization", None)
    assert api.handler(logs, context)["statusCode"] == 401
    store.finish_run(store.latest_run("petstore", "pydantic").run_id, RunStatus.FAILED)  # type: ignore[union-attr]
    assert api.handler(with_query(logs, token=token), context)["statusCode"] == 200


@pytest.mark.parametrize("name", ["api-generate", "api-status", "api-logs-final"])
def test_a_request_without_the_key_gets_a_json_401(
    name: str, lambda_env: Aws, context: FakeContext, store: SQLiteStore
) -> None:
    finished_run(store, ["secret line"])
    event = with_header(load_event(name), "Authorization", None)
    response = load_handler("api").handler(event, context)
    assert response["statusCode"] == 401
    assert "bearer" in body(response)["detail"]
    assert API_KEY not in response["body"]


def test_a_key_with_no_run_is_a_json_404(lambda_env: Aws, context: FakeContext) -> None:
    response = load_handler("api").handler(load_event("api-status"), context)
    assert response["statusCode"] == 404 and "no run" in body(response)["detail"]


def has_line(store: LogStore, run_id: str, message: str) -> bool:
    return any(line.message == message for line in store.read(run_id, limit=100_000))


def test_a_run_longer_than_the_window_is_read_whole_by_chaining_invocations(
    tmp_path: Path, context: FakeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "jobtail")
    services, generator = make_services(tmp_path, stream_window=0.3)
    generator.stepped = True
    api = load_handler("api")
    api.setup(services)
    store = services.store
    generated = api.handler(for_key(load_event("api-generate"), "petstore", "scripted"), context)
    run_id = body(generated)["run_id"]
    logs = for_key(load_event("api-logs"), "petstore", "scripted")
    got: list[dict[str, Any]] = []
    last_id: str | None = None
    windows = 0

    def window() -> Any:
        nonlocal last_id, windows
        event = with_header(logs, "Last-Event-ID", last_id) if last_id else logs
        response = api.handler(event, context)
        if response["statusCode"] == 204:
            return None
        assert response["statusCode"] == 200
        sse = parse_sse(response["body"])
        got.extend(sse.lines())
        last_id, windows = sse.last_id, windows + 1
        return sse

    try:
        for target in (5, 10, 15):
            generator.step(5)
            until(lambda t=target: has_line(store, run_id, f"line {t}"))  # type: ignore[misc]
            sse = window()
            assert not sse.named("end") and sse.retry == services.settings.retry_ms
            assert last_id == f"{run_id}:{got[-1]['seq']}"  # the id-only event: resume here
        generator.step(5)
        until(lambda: not store.get_run(run_id).active)  # type: ignore[union-attr]
        while (sse := window()) is not None and not sse.named("end"):
            pass
        assert sse is not None and window() is None  # after the end: 204
    finally:
        services.close()
    assert got == [line.to_json() for line in store.read(run_id, limit=100_000)]
    assert [line["seq"] for line in got] == list(range(1, len(got) + 1))
    assert [x["message"] for x in got if x["message"].startswith("line ")] == generator.messages
    assert windows >= 4
