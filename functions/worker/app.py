"""Worker function: runs the jobs SQS delivers, one record at a time, failing records alone.

SQS delivers at least once. ``run_job`` claims a run (queued -> running) before doing anything,
so a redelivered message finds the run running or finished and leaves it alone: a job never
runs twice, and no line is written twice. A record that cannot be processed (a bad body, a
store that cannot be reached to claim the run) is reported in ``batchItemFailures``; SQS
delivers it again and moves it to the dead-letter queue after ``maxReceiveCount`` tries.
"""

from __future__ import annotations

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

from jobtail.aws import lambda_settings
from jobtail.jobs.dispatch import JobMessage
from jobtail.services import Services
from jobtail.store import RunStatus

logger = Logger()
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
_services: Services | None = None


class RetryLater(RuntimeError):
    """The run could not be claimed (store unreachable): let SQS deliver the message again."""


def setup(services: Services | None = None) -> Services:
    """Build the services for this execution environment; tests hand in their own."""
    global _services
    _services = services or Services.from_settings(lambda_settings())
    return _services


def record_handler(record: SQSRecord) -> None:
    """Run the message's job to its end; raise to have SQS deliver the record again."""
    message = JobMessage.parse(record.body)
    logger.append_keys(run_id=message.run_id)
    status = (_services or setup()).run(message.run_id)
    metrics.add_metric(name=f"Runs{str(status).title()}", unit=MetricUnit.Count, value=1)
    if status == RunStatus.QUEUED:
        raise RetryLater(f"run {message.run_id} could not be claimed; SQS will retry")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """A batch of job messages in; the ids of the records to deliver again out."""
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
