"""Jobs: dispatch a run, execute it with a generator, save the result.

Wiring, as the app and the worker do it::

    registry = default_registry()
    job = functools.partial(run_job, store=store, uploads=uploads, blobs=blobs, registry=registry)
    dispatcher = InlineDispatcher(job)          # or SqsDispatcher(queue_url) on AWS
    dispatcher.submit(store.create_run(upload_id, service_name))
"""

from __future__ import annotations

from .dispatch import Dispatcher, DispatchError, InlineDispatcher, JobMessage, SqsDispatcher
from .generators import (
    GeneratedCode,
    Generator,
    GeneratorError,
    GeneratorRegistry,
    UnknownServiceError,
    default_registry,
)
from .results import ResultInfo, latest_result, read_manifest, result_key
from .runner import run_job

__all__ = [
    "DispatchError",
    "Dispatcher",
    "GeneratedCode",
    "Generator",
    "GeneratorError",
    "GeneratorRegistry",
    "InlineDispatcher",
    "JobMessage",
    "ResultInfo",
    "SqsDispatcher",
    "UnknownServiceError",
    "default_registry",
    "latest_result",
    "read_manifest",
    "result_key",
    "run_job",
]
