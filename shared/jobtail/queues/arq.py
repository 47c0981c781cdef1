"""arq: the run travels as the job's first argument after arq's ``ctx``.

    @jobtail.queues.arq.with_run(STORE_URL)
    async def do_import(ctx: dict, log: RunLogger, path: str) -> int: ...

    class WorkerSettings:
        functions = [do_import]

    run = await jobtail.queues.arq.enqueue(redis, "do_import", store, upload_id, "import", path)

The job's exception ends the run failed and is raised on to arq (its retries, its result).
A worker with no database credentials: ``with_run("https://jobtail.example.com")`` and
``enqueue(..., write_token=True)``: the job carries the run's write token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..run import RunClaimError, run
from ..store import LogStore, Run
from . import create_run, fail_unsent, take_token, token_for

__all__ = ["enqueue", "with_run"]

log = logging.getLogger(__name__)


async def enqueue(
    redis: Any,
    function: str,
    store: LogStore | str,
    upload_id: str,
    service: str,
    *args: Any,
    write_token: bool = False,
    **kwargs: Any,
) -> Run:
    """Create the run, then ``redis.enqueue_job(function, run_id, *args, **kwargs)`` (an
    ``ArqRedis``); the run is failed at once if the job cannot be enqueued. ``write_token``:
    the job also carries the run's write token, for a worker that logs over HTTP."""
    created = await asyncio.to_thread(create_run, store, upload_id, service)
    try:
        kwargs = {**kwargs, **token_for(created, write_token)}
        job = await redis.enqueue_job(function, created.run_id, *args, **kwargs)
        if job is None:  # arq: a job with that id exists already
            raise RuntimeError("arq refused the job (duplicate job id)")
    except Exception as exc:
        await asyncio.to_thread(fail_unsent, store, created, exc)
        raise
    return created


def with_run(
    store: LogStore | str, **run_options: Any
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Turns ``async job(ctx, log, *args)`` into an arq function ``(ctx, run_id, *args)`` that
    runs inside the run (``run_options`` go to ``jobtail.run``)."""

    def wrap(job: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def task(ctx: dict[str, Any], run_id: str, *args: Any, **kwargs: Any) -> Any:
            handle = run(store, run_id=run_id, token=take_token(store, kwargs), **run_options)
            try:
                logger = await handle.__aenter__()
            except RunClaimError as exc:
                log.info("%s", exc)  # a retried job whose run already ran: at most once
                return None
            try:
                result = await job(ctx, logger, *args, **kwargs)
            except BaseException as exc:
                await handle.__aexit__(type(exc), exc, exc.__traceback__)
                raise
            await handle.__aexit__(None, None, None)
            return result

        task.__name__, task.__qualname__ = job.__name__, job.__qualname__  # arq's job name
        task.__module__, task.__doc__ = job.__module__, job.__doc__
        return task

    return wrap
