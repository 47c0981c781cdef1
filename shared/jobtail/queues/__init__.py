"""Task-queue helpers: the run is created where the job is enqueued (so a viewer can follow it
from the first moment, even while it waits in the queue), its id travels with the message, and
the worker logs into it with ``jobtail.run(store, run_id=...)``, which claims it once (a
redelivered message runs nothing) and ends it.

One module per queue: ``background`` (FastAPI ``BackgroundTasks``), ``celery``, ``arq``. A
worker killed mid-job stops heartbeating; the janitor (``jobtail.fastapi.router(...,
janitor=True)``, jobtail's app, or the scheduled function) then fails its run, so its viewers
still get their ``end``.
"""

from __future__ import annotations

import logging

from ..store import LogStore, Run, RunStatus, from_url

__all__ = ["create_run", "fail_unsent"]

log = logging.getLogger(__name__)


def create_run(store: LogStore | str, upload_id: str, service: str) -> Run:
    """A queued run for the key (RunActiveError while one is queued or running)."""
    if isinstance(store, str):
        opened = from_url(store)
        try:
            return opened.create_run(upload_id, service)
        finally:
            opened.close()
    return store.create_run(upload_id, service)


def fail_unsent(store: LogStore | str, run: Run, exc: BaseException) -> None:
    """The message never left: end the run at once rather than leave it queued."""
    opened = from_url(store) if isinstance(store, str) else store
    try:
        opened.finish_run(run.run_id, RunStatus.FAILED, f"could not enqueue the job: {exc}")
    except Exception:
        log.exception("run %s: could not record that its job was never enqueued", run.run_id)
    finally:
        if isinstance(store, str):
            opened.close()
