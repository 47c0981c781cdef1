"""The apps the task-queue tests run in real worker processes: a Celery app, arq worker
settings and a FastAPI app with BackgroundTasks, all on the store and Redis named by the
environment (``JOBTAIL_TEST_STORE``, ``JOBTAIL_TEST_REDIS``), the same job in each."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, ClassVar

from arq.connections import RedisSettings
from celery import Celery
from fastapi import BackgroundTasks, FastAPI

import jobtail.queues.arq
import jobtail.queues.background
import jobtail.queues.celery
from jobtail import RunLogger

STORE = os.environ.get("JOBTAIL_TEST_STORE", "sqlite:///unset.db")
REDIS = os.environ.get("JOBTAIL_TEST_REDIS", "redis://127.0.0.1:1/0")
RUN_OPTIONS: dict[str, Any] = {"heartbeat_interval": 0.2}


def import_rows(log: RunLogger, rows: int, block: bool = False) -> int:
    """The job: a few lines, then (``block``) work that only a kill interrupts."""
    for n in range(1, rows + 1):
        log.info(f"row {n}", row=n)
    if block:
        log.info("waiting for a slow upstream", pid=os.getpid())
        threading.Event().wait(300)
    return rows


celery_app = Celery("jobtail-tests", broker=REDIS)
celery_app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_lost_wait=0.2,  # how long the worker waits for a dead pool process's result
)
celery_import = celery_app.task(name="tests.import_rows")(
    jobtail.queues.celery.with_run(STORE, **RUN_OPTIONS)(import_rows)
)


@jobtail.queues.arq.with_run(STORE, **RUN_OPTIONS)
async def arq_import(ctx: dict[str, Any], log: RunLogger, rows: int, block: bool = False) -> int:
    for n in range(1, rows + 1):
        log.info(f"row {n}", row=n)
    if block:
        log.info("waiting for a slow upstream")
        await asyncio.Event().wait()
    return rows


class WorkerSettings:
    functions: ClassVar[list[Any]] = [arq_import]
    redis_settings = RedisSettings.from_dsn(REDIS)
    job_timeout = 300


background_app = FastAPI()


@background_app.post("/imports/{upload_id}")
def start_import(upload_id: str, tasks: BackgroundTasks, rows: int, block: bool = False) -> Any:
    run = jobtail.queues.background.add_task(
        tasks, STORE, upload_id, "import", import_rows, rows, block, run_options=RUN_OPTIONS
    )
    return {"run_id": run.run_id}
