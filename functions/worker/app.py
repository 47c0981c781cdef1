"""Worker function: runs the jobs SQS delivers, one record at a time, failing records alone.

SQS delivers at least once. ``run_job`` claims a run (queued -> running) before doing anything,
so a redelivered message finds the run running or finished and leaves it alone: a job never
runs twice, and no line is written twice. A record that cannot be processed (a bad body, a
store that cannot be reached to claim the run) is reported in ``batchItemFailures``; SQS
delivers it again and moves it to the dead-letter queue after ``maxReceiveCount`` tries.

Two things the queue alone would do badly: a run whose claim failed would wait out the whole
visibility timeout (30 minutes) before its next try, so the record is made visible again
within seconds (``ChangeMessageVisibility``, backing off); and a job still running when Lambda
stops the function would leave its viewers waiting for the janitor, so the job gets the
invocation's deadline and the run is closed as failed ("worker timeout") just before it.
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from jobtail.aws import lambda_settings, retry_delay
from jobtail.jobs.dispatch import JobMessage
from jobtail.services import Services
from jobtail.store import RunStatus

logger = Logger()
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
_services: Services | None = None

RESERVE_SECONDS = 3.0
"""Kept back from the invocation's remaining time: the batch response and the metrics flush."""


class RetryLater(RuntimeError):
    """The run could not be claimed (store unreachable): let SQS deliver the message again."""


def setup(services: Services | None = None) -> Services:
    """Build the services for this execution environment; tests hand in their own."""
    global _services
    _services = services or Services.from_settings(lambda_settings())
    return _services


@cache
def _sqs() -> Any:
    import boto3

    return boto3.client("sqs")


@cache
def _queue_url(queue_arn: str) -> str:
    _, _, _, _, account, name = queue_arn.split(":", 5)
    return str(_sqs().get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])


def retry_soon(record: SQSRecord) -> None:
    """Make the record visible again in seconds, not after the queue's visibility timeout.

    Best effort: if SQS cannot be told, the record still comes back, only later.
    """
    delay = retry_delay(int(record.attributes.approximate_receive_count or 1))
    try:
        _sqs().change_message_visibility(
            QueueUrl=_queue_url(record.event_source_arn),
            ReceiptHandle=record.receipt_handle,
            VisibilityTimeout=delay,
        )
    except Exception as exc:
        logger.warning("cannot shorten the retry; SQS retries after its timeout", error=str(exc))
    else:
        logger.info("claim failed; the message comes back soon", retry_in_seconds=delay)


def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> None:
    """Run the message's job to its end; raise to have SQS deliver the record again."""
    message = JobMessage.parse(record.body)
    logger.append_keys(run_id=message.run_id)
    remaining = lambda_context.get_remaining_time_in_millis() / 1000
    deadline = time.monotonic() + remaining - RESERVE_SECONDS
    status = (_services or setup()).run(message.run_id, deadline=deadline)
    metrics.add_metric(name=f"Runs{str(status).title()}", unit=MetricUnit.Count, value=1)
    if status == RunStatus.QUEUED:
        retry_soon(record)
        raise RetryLater(f"run {message.run_id} could not be claimed; SQS will retry")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """A batch of job messages in; the ids of the records to deliver again out."""
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
