"""The worker function: SQS records in, runs to their end, failures reported record by record."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from types import ModuleType

import pytest

from jobtail.aws import retry_delay
from jobtail.config import Settings
from jobtail.jobs.dispatch import JobMessage
from jobtail.services import Services
from jobtail.store.base import RunStatus, StoreError
from jobtail.store.sqlite import SQLiteStore
from jobtail.uploads import ParsedUpload
from tests.events import load_event
from tests.scripted import ScriptedGenerator, make_services

from .conftest import Aws
from .lambdas import FakeContext, load_handler, sqs_event

FIRST_RETRY = retry_delay(1)


class CountingGenerator(ScriptedGenerator):
    """The scripted plug-in generator, counting how often a job really ran."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def generate(self, upload: ParsedUpload, log):  # type: ignore[no-untyped-def]
        self.calls += 1
        return super().generate(upload, log)


@pytest.fixture(autouse=True)
def powertools(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "jobtail")


@pytest.fixture
def scripted(tmp_path: Path) -> tuple[Services, CountingGenerator]:
    services, _ = make_services(tmp_path)
    generator = CountingGenerator()
    services.registry.register(generator, replace=True)
    return services, generator


def worker_with(services: Services) -> ModuleType:
    """A fresh worker execution environment running with these services."""
    worker = load_handler("worker")
    worker.setup(services)
    return worker


def message_for(services: Services, upload_id: str = "petstore") -> str:
    run = services.store.create_run(upload_id, "scripted")
    return JobMessage.from_run(run).to_body()


def test_the_sample_event_for_an_unknown_run_is_consumed(
    lambda_env: Aws, context: FakeContext, store: SQLiteStore
) -> None:
    response = load_handler("worker").handler(load_event("worker-sqs"), context)
    assert response == {"batchItemFailures": []}  # nothing to run, nothing to retry
    assert store.list_runs() == []


def test_the_same_message_twice_runs_the_job_once(
    scripted: tuple[Services, CountingGenerator], context: FakeContext
) -> None:
    services, generator = scripted
    event = sqs_event(message_for(services))
    worker = worker_with(services)
    try:
        assert worker.handler(event, context) == {"batchItemFailures": []}
        lines = services.store.read(services.store.list_runs()[0].run_id, limit=10_000)
        assert worker.handler(event, context) == {"batchItemFailures": []}
        run = services.store.list_runs()[0]
        assert services.store.read(run.run_id, limit=10_000) == lines
    finally:
        services.close()
    assert generator.calls == 1 and run.status is RunStatus.SUCCEEDED
    assert [line.seq for line in lines] == list(range(1, run.last_seq + 1))


def test_a_redelivery_while_the_job_runs_leaves_it_alone(
    scripted: tuple[Services, CountingGenerator], context: FakeContext, tmp_path: Path
) -> None:
    """Visibility timeout ran out mid-job: SQS hands the message to a second environment."""
    services, generator = scripted
    generator.stepped = True
    event = sqs_event(message_for(services))
    first = worker_with(services)
    other_store = SQLiteStore(tmp_path / "store.db")  # the second environment's connection
    second = worker_with(
        Services.from_settings(services.settings, store=other_store, registry=services.registry)
    )
    answers: list[object] = []
    running = threading.Thread(target=lambda: answers.append(first.handler(event, context)))
    running.start()
    try:
        assert generator.started.wait(10)
        assert second.handler(event, FakeContext()) == {"batchItemFailures": []}
    finally:
        generator.step(len(generator.messages))
        running.join(20)
        other_store.close()
    run = services.store.list_runs()[0]
    lines = services.store.read(run.run_id, limit=10_000)
    services.close()
    assert answers == [{"batchItemFailures": []}]
    assert generator.calls == 1 and run.status is RunStatus.SUCCEEDED
    assert [line.seq for line in lines] == list(range(1, run.last_seq + 1))
    messages = [line.message for line in lines]
    assert [m for m in messages if m.startswith("line ")] == generator.messages
    assert sum(m.startswith("Run succeeded") for m in messages) == 1


def test_one_bad_message_fails_alone(
    scripted: tuple[Services, CountingGenerator], context: FakeContext
) -> None:
    services, generator = scripted
    event = sqs_event(message_for(services, "petstore"), '{"run_id": "../etc"}', "not json")
    event["Records"].append(sqs_event(message_for(services, "invoice"))["Records"][0])
    worker = worker_with(services)
    try:
        response = worker.handler(event, context)
    finally:
        services.close()
    bad = [record["messageId"] for record in event["Records"][1:3]]
    assert response == {"batchItemFailures": [{"itemIdentifier": id_} for id_ in bad]}
    assert generator.calls == 2
    assert {run.status for run in services.store.list_runs()} == {RunStatus.SUCCEEDED}


class UnreachableStore(SQLiteStore):
    """A real store whose claim fails, as a database that went away would."""

    def claim_run(self, run_id: str, **kwargs: object) -> None:
        raise StoreError("connection refused")


def test_a_run_that_cannot_be_claimed_is_delivered_again(
    aws: Aws, tmp_path: Path, context: FakeContext
) -> None:
    store = UnreachableStore(tmp_path / "store.db")
    services = Services.from_settings(Settings(data_dir=tmp_path), store=store)
    run = store.create_run("petstore", "pydantic")
    event = sqs_event(JobMessage.from_run(run).to_body())
    try:
        response = worker_with(services).handler(event, context)
    finally:
        services.close()
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert store.get_run(run.run_id).status is RunStatus.QUEUED  # type: ignore[union-attr]


def test_a_failed_claim_comes_back_within_seconds_not_the_visibility_timeout(
    aws: Aws, tmp_path: Path, context: FakeContext
) -> None:
    """moto's SQS: the record is made visible again after FIRST_RETRY s, not after 30 minutes."""
    store = UnreachableStore(tmp_path / "store.db")
    services = Services.from_settings(Settings(data_dir=tmp_path), store=store)
    run = store.create_run("petstore", "pydantic")
    sqs, queue = aws.sqs, aws.queue_url
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "1800"})
    sqs.send_message(QueueUrl=queue, MessageBody=JobMessage.from_run(run).to_body())
    (message,) = sqs.receive_message(QueueUrl=queue, AttributeNames=["All"])["Messages"]
    event = sqs_event(message["Body"])
    record = event["Records"][0]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    record.update(
        messageId=message["MessageId"],
        receiptHandle=message["ReceiptHandle"],
        eventSourceARN=arn["QueueArn"],
    )
    record["attributes"]["ApproximateReceiveCount"] = message["Attributes"][
        "ApproximateReceiveCount"
    ]
    failed_at = time.monotonic()
    try:
        response = worker_with(services).handler(event, context)
    finally:
        services.close()
    assert response == {"batchItemFailures": [{"itemIdentifier": message["MessageId"]}]}
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)  # not at once: backed off
    again: list[dict[str, object]] = []
    while not again and time.monotonic() - failed_at < 60:
        again = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2).get("Messages", [])
    waited = time.monotonic() - failed_at
    assert again and again[0]["MessageId"] == message["MessageId"], f"not back in {waited:.0f} s"
    assert FIRST_RETRY - 1 <= waited < 60


def test_a_job_running_into_the_lambda_deadline_closes_its_run_as_failed(
    scripted: tuple[Services, CountingGenerator],
) -> None:
    """Little time left in the invocation: the run ends failed, with the timeout line, before
    Lambda would stop the function (and leave the viewers waiting for the janitor)."""
    services, generator = scripted
    generator.stepped = True  # the job never finishes by itself
    worker = worker_with(services)
    left = worker.RESERVE_SECONDS + 5 + 1.5  # run_job's own margin is 5 s: ~1.5 s of job
    started = time.monotonic()
    try:
        response = worker.handler(
            sqs_event(message_for(services)), FakeContext(remaining_ms=int(left * 1000))
        )
        waited = time.monotonic() - started
        run = services.store.list_runs()[0]
        lines = services.store.read(run.run_id, limit=10_000)
    finally:
        generator.step(len(generator.messages))
        services.close()
    assert response == {"batchItemFailures": []}  # failed for good: no redelivery
    assert run.status is RunStatus.FAILED and waited < left - worker.RESERVE_SECONDS
    assert lines[-1].log_level == "ERROR"
    assert re.fullmatch(r"Run failed: worker timeout \(\d+ s\)", lines[-1].message)
    assert run.error is not None and "worker timeout" in run.error
