"""FastAPI ``BackgroundTasks``: run a job after the response, in the server's process.

    @app.post("/imports/{upload_id}")
    def start(upload_id: str, tasks: BackgroundTasks) -> dict[str, str]:
        run = jobtail.queues.background.add_task(tasks, store, upload_id, "import", do_import)
        return {"run_id": run.run_id}          # the page follows /run/{run_id}/logs

    def do_import(log: RunLogger) -> None: ...  # or an async def

The job's exception ends its run failed (with the traceback) and is logged, not raised into
Starlette: the response was sent long ago and the run says what happened.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from fastapi import BackgroundTasks

from ..run import run
from ..store import LogStore, Run
from . import create_run

__all__ = ["add_task"]

log = logging.getLogger(__name__)


def add_task(
    tasks: BackgroundTasks,
    store: LogStore | str,
    upload_id: str,
    service: str,
    job: Callable[..., Any],
    *args: Any,
    run_options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Run:
    """Create the run now; after the response, ``job(log, *args, **kwargs)`` runs inside it.
    ``run_options`` go to ``jobtail.run`` (``capture``, ``heartbeat_interval``...)."""
    created = create_run(store, upload_id, service)
    options = run_options or {}
    if inspect.iscoroutinefunction(job):
        tasks.add_task(_run_async, store, created.run_id, options, job, args, kwargs)
    else:
        tasks.add_task(_run_sync, store, created.run_id, options, job, args, kwargs)
    return created


def _run_sync(
    store: LogStore | str,
    run_id: str,
    options: dict[str, Any],
    job: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    try:
        with run(store, run_id=run_id, **options) as logger:
            job(logger, *args, **kwargs)
    except Exception as exc:  # the run holds the traceback
        log.warning("run %s failed: %s", run_id, exc)


async def _run_async(
    store: LogStore | str,
    run_id: str,
    options: dict[str, Any],
    job: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    try:
        async with run(store, run_id=run_id, **options) as logger:
            await job(logger, *args, **kwargs)
    except Exception as exc:
        log.warning("run %s failed: %s", run_id, exc)
