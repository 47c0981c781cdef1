"""The whole AWS flow through the handlers: generate -> SQS -> worker -> store -> logs."""

from __future__ import annotations

import json

from jobtail.store.base import RunStatus
from jobtail.store.sqlite import SQLiteStore
from tests.events import load_event

from .conftest import BUCKET, Aws
from .lambdas import FakeContext, load_handler, parse_sse, sqs_event, with_header


def test_generate_queue_worker_stream_then_204(
    lambda_env: Aws, context: FakeContext, store: SQLiteStore
) -> None:
    api, worker = load_handler("api"), load_handler("worker")  # two execution environments

    generated = api.handler(load_event("api-generate"), context)
    assert generated["statusCode"] == 202
    run_id = json.loads(generated["body"])["run_id"]

    [message] = lambda_env.receive()
    answer = worker.handler(sqs_event(message["Body"]), FakeContext())
    assert answer == {"batchItemFailures": []}
    run = store.get_run(run_id)
    assert run is not None and run.status is RunStatus.SUCCEEDED, run
    saved = lambda_env.s3.list_objects_v2(
        Bucket=BUCKET, Prefix=f"results/petstore/pydantic/{run_id}/"
    )
    assert {item["Key"].rsplit("/", 1)[1] for item in saved["Contents"]} == {
        "result",
        "manifest.json",
    }

    response = api.handler(load_event("api-logs"), context)
    assert response["statusCode"] == 200
    sse = parse_sse(response["body"])
    lines = store.read(run_id, limit=100_000)
    assert sse.lines() == [line.to_json() for line in lines]
    assert len(lines) == run.last_seq > 5
    assert lines[-1].message.startswith("Run succeeded")
    assert sse.events[-1].event == "end"
    assert sse.events[-1].json() == {
        "run_id": run_id,
        "status": "succeeded",
        "last_seq": run.last_seq,
    }

    resumed = with_header(load_event("api-logs"), "Last-Event-ID", sse.last_id)
    assert api.handler(resumed, context)["statusCode"] == 204
