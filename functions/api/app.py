"""API function: the FastAPI app behind the API Gateway REST API, through Mangum.

API Gateway buffers this function's whole answer, so an endless SSE response would never leave:
the logs route runs with ``JOBTAIL_STREAM_WINDOW`` seconds, answers with the replay and what
arrived within the window, and ends with ``retry:`` and the cursor, so an EventSource resumes
with ``Last-Event-ID`` and loses nothing. The live stream is the stream function's job. Jobs
go to SQS (``JOBTAIL_DISPATCHER=sqs``); the app is built once per execution environment.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from mangum import Mangum

from jobtail.aws import StagePrefix, lambda_settings
from jobtail.services import Services
from jobtail.web.app import create_app

logger = Logger()
tracer = Tracer()
metrics = Metrics()
_asgi: Mangum | None = None


def setup(services: Services | None = None) -> Mangum:
    """Build the app for this execution environment; tests hand in their own Services."""
    global _asgi
    app = create_app(services=services or Services.from_settings(lambda_settings()))
    _asgi = Mangum(StagePrefix(app), lifespan="off")
    return _asgi


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """One API Gateway request in, one buffered response out."""
    response: dict[str, Any] = (_asgi or setup())(event, context)
    metrics.add_metric(
        name=f"Http{response['statusCode'] // 100}xx", unit=MetricUnit.Count, value=1
    )
    return response
