"""Dispatchers: the in-process thread pool and SQS (moto) with its JSON message."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from jobtail.blobs import LocalBlobs
from jobtail.jobs.dispatch import DispatchError, InlineDispatcher, JobMessage, SqsDispatcher
from jobtail.jobs.generators import GeneratorRegistry
from jobtail.jobs.runner import run_job
from jobtail.store.base import RunStatus
from jobtail.store.sqlite import SQLiteStore
from jobtail.uploads import Uploads


def test_inline_dispatcher_runs_real_jobs(
    store: SQLiteStore, uploads: Uploads, blobs: LocalBlobs, registry: GeneratorRegistry
) -> None:
    job = functools.partial(run_job, store=store, uploads=uploads, blobs=blobs, registry=registry)
    dispatcher = InlineDispatcher(job, max_workers=2)
    runs = [store.create_run(sample, "msgspec") for sample in ("petstore", "invoice", "bookshop")]
    for run in runs:
        dispatcher.submit(run)
    assert dispatcher.wait(timeout=30)
    dispatcher.close()
    for run in runs:
        finished = store.get_run(run.run_id)
        assert finished is not None and finished.status is RunStatus.SUCCEEDED


def test_inline_dispatcher_close_cancels_pending_and_refuses_more(store: SQLiteStore) -> None:
    gate, entered, seen = threading.Event(), threading.Event(), []

    def job(run_id: str) -> None:
        seen.append(run_id)
        entered.set()
        gate.wait(timeout=10)

    dispatcher = InlineDispatcher(job, max_workers=1)
    first, second = store.create_run("a", "s"), store.create_run("b", "s")
    dispatcher.submit(first)
    dispatcher.submit(second)
    assert entered.wait(timeout=10)
    dispatcher.close(wait=False, cancel_pending=True)  # the second has not started: dropped
    gate.set()
    assert dispatcher.wait(timeout=10)
    assert seen == [first.run_id]
    with pytest.raises(DispatchError, match="closed"):
        dispatcher.submit(store.create_run("c", "s"))


def test_a_raising_job_does_not_kill_the_pool(
    store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    done = threading.Event()

    def job(run_id: str) -> None:
        if run_id.startswith("bad"):
            raise RuntimeError("custom job bug")
        done.set()

    dispatcher = InlineDispatcher(job, max_workers=1)
    dispatcher.submit(store.create_run("a", "s", run_id="bad-1"))
    dispatcher.submit(store.create_run("b", "s", run_id="good-1"))
    assert done.wait(timeout=10)
    dispatcher.close()
    assert "job for run bad-1 raised" in caplog.text


def test_job_message_round_trip_and_clear_errors() -> None:
    message = JobMessage(run_id="r1", upload_id="petstore", service_name="pydantic")
    assert JobMessage.parse(message.to_body()) == message
    assert (
        JobMessage.parse(b'{"run_id":"r","upload_id":"u","service_name":"s","v":2}').run_id == "r"
    )
    for body, problem in [
        ("not json", "bad job message: body: Invalid JSON"),
        ("[]", "bad job message: body: Input should be an object"),
        ('{"run_id": "r"}', "upload_id: Field required"),
        ('{"run_id": "../x", "upload_id": "u", "service_name": "s"}', "run_id: String should"),
    ]:
        with pytest.raises(ValueError) as caught:
            JobMessage.parse(body)
        assert problem in str(caught.value), str(caught.value)


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def test_sqs_dispatcher_sends_a_job_message(sqs: Any, store: SQLiteStore) -> None:
    url = sqs.create_queue(QueueName="jobtail-jobs")["QueueUrl"]
    run = store.create_run("petstore", "pydantic")
    SqsDispatcher(url, client=sqs).submit(run)
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(received) == 1
    assert JobMessage.parse(received[0]["Body"]) == JobMessage.from_run(run)
    assert json.loads(received[0]["Body"]) == {
        "run_id": run.run_id,
        "upload_id": "petstore",
        "service_name": "pydantic",
    }


def test_sqs_fifo_queues_get_group_and_dedup_ids(sqs: Any, store: SQLiteStore) -> None:
    url = sqs.create_queue(QueueName="jobtail.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    run = store.create_run("invoice", "msgspec")
    dispatcher = SqsDispatcher(url, client=sqs)
    dispatcher.submit(run)
    dispatcher.submit(run)  # deduplicated by run id
    received = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["MessageGroupId"]
    )["Messages"]
    assert len(received) == 1
    assert received[0]["Attributes"]["MessageGroupId"] == "invoice/msgspec"


def test_sqs_failure_is_a_dispatch_error(sqs: Any, store: SQLiteStore) -> None:
    missing = "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue"
    with pytest.raises(DispatchError, match="cannot queue run"):
        SqsDispatcher(missing, client=sqs).submit(store.create_run("a", "s"))
