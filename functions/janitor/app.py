"""Janitor function: on a schedule, fail runs whose worker died, purge runs past retention and
remove expired streams."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from jobtail.aws import lambda_settings
from jobtail.config import Settings
from jobtail.janitor import sweep
from jobtail.store import LogStore, from_url

logger = Logger()
tracer = Tracer()
metrics = Metrics()
_setup: tuple[Settings, LogStore] | None = None


def setup(
    settings: Settings | None = None, store: LogStore | None = None
) -> tuple[Settings, LogStore]:
    """Open the store for this execution environment; tests hand in their own."""
    global _setup
    settings = settings or lambda_settings()
    _setup = settings, store or from_url(settings.store, settings.data_dir)
    return _setup


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """One sweep: the stale runs failed (each with a last line saying why), old runs purged,
    expired streams removed."""
    settings, store = _setup or setup()
    result = sweep(
        store,
        stale_after=settings.stale_after,
        retention_days=settings.retention_days,
        queued_after=settings.queued_timeout,
    )
    metrics.add_metric(name="RunsFailedStale", unit=MetricUnit.Count, value=len(result.failed))
    metrics.add_metric(name="RunsPurged", unit=MetricUnit.Count, value=result.purged)
    expired = result.streams_expired
    metrics.add_metric(name="StreamsExpired", unit=MetricUnit.Count, value=expired)
    logger.info("sweep done", failed=result.failed, purged=result.purged, streams_expired=expired)
    return {"failed": result.failed, "purged": result.purged, "streams_expired": expired}
