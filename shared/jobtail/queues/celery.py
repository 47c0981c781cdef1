"""Celery: the run travels as the task's first argument.

    @app.task(name="imports.run")
    @jobtail.queues.celery.with_run(STORE_URL)
    def do_import(log: RunLogger, path: str) -> int: ...

    run = jobtail.queues.celery.enqueue(do_import, store, upload_id, "import", "/data/x.csv")

A worker with no database credentials: ``with_run("https://jobtail.example.com")`` and
``enqueue(..., write_token=True)``: the message carries the run's write token.

The task's exception ends the run failed and is raised on, so Celery's own failure handling
(retries, result backend, ``task_failure``) sees it. A redelivered message whose run already
ran (or runs elsewhere) does nothing. When the pool process running the task dies (killed,
out of memory, a hard time limit), Celery's ``task_failure`` signal ends the run at once with a
line saying so (the janitor would, but only after ``stale_after``); a worker that logs over HTTP
ends it with the write token its message carried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..run import RunClaimError, run
from ..store import LogStore, Run
from . import create_run, end_lost_run, fail_unsent, take_token, token_for

__all__ = ["enqueue", "with_run"]

log = logging.getLogger(__name__)


def enqueue(
    task: Any,
    store: LogStore | str,
    upload_id: str,
    service: str,
    *args: Any,
    write_token: bool = False,
    **kwargs: Any,
) -> Run:
    """Create the run, then send ``task(run_id, *args, **kwargs)``; the run is failed at once
    if the message cannot be sent. ``write_token``: the message also carries the run's write
    token, for a worker that logs over HTTP (``with_run(server_url)``)."""
    created = create_run(store, upload_id, service)
    try:
        kwargs = {**kwargs, **token_for(created, write_token)}
        task.apply_async(args=(created.run_id, *args), kwargs=kwargs)
    except Exception as exc:
        fail_unsent(store, created, exc)
        raise
    return created


def with_run(store: LogStore | str, **run_options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Turns ``job(log, *args)`` into a task body ``(run_id, *args)`` that runs inside the run
    (``run_options`` go to ``jobtail.run``)."""

    _listen_for_lost_workers()

    def wrap(job: Callable[..., Any]) -> Callable[..., Any]:
        def task(run_id: str, *args: Any, **kwargs: Any) -> Any:
            try:
                token = take_token(store, kwargs)
                handle = run(store, run_id=run_id, token=token, **run_options)
                logger = handle.__enter__()
            except RunClaimError as exc:
                log.info("%s", exc)  # a redelivery: at most once
                return None
            try:
                result = job(logger, *args, **kwargs)
            except BaseException as exc:
                handle.__exit__(type(exc), exc, exc.__traceback__)
                raise
            handle.__exit__(None, None, None)
            return result

        # Celery names and checks a task by these (not by __wrapped__: the signature differs)
        task.__name__, task.__qualname__ = job.__name__, job.__qualname__
        task.__module__, task.__doc__ = job.__module__, job.__doc__
        task.jobtail_store = store  # type: ignore[attr-defined]  # for the failure hook
        return task

    return wrap


def _listen_for_lost_workers() -> None:
    from celery.signals import task_failure

    task_failure.connect(_on_task_failure, weak=False, dispatch_uid="jobtail-lost-worker")


def _on_task_failure(
    sender: Any = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    **_: Any,
) -> None:
    """In the worker's main process, after a task failed: a run still active means the process
    that ran it is gone (an exception inside the task would have ended the run). A worker that
    logs over HTTP ends it with the write token its message carried."""
    store = getattr(getattr(sender, "run", None), "jobtail_store", None)
    if store is not None and args:
        token = take_token(store, dict(kwargs)) if isinstance(kwargs, dict) else None
        end_lost_run(store, str(args[0]), exception, token)
