"""Task-queue helpers: the run is created where the job is enqueued (so a viewer can follow it
from the first moment, even while it waits in the queue), its id travels with the message, and
the worker logs into it with ``jobtail.run(store, run_id=...)``, which claims it once (a
redelivered message runs nothing) and ends it.

A worker that logs over HTTP (``with_run("https://jobtail.example.com")``: no database
credentials) gets its run's write token with the message: ``enqueue(..., write_token=True)``
mints it (``jobtail.producer_token``, with ``JOBTAIL_SECRET``) and sends it as the task's
``jobtail_token`` keyword, which ``with_run`` takes off before calling the job.

One module per queue: ``background`` (FastAPI ``BackgroundTasks``), ``celery``, ``arq``. A
worker killed mid-job stops heartbeating; the janitor (``jobtail.fastapi.router(...,
janitor=True)``, jobtail's app, or the scheduled function) then fails its run, so its viewers
still get their ``end``.
"""

from __future__ import annotations

import logging
from typing import Any

from ..capture import line_fields
from ..run import is_server_url, open_store
from ..store import LogLine, LogStore, Run, RunStatus, StoreError, from_url
from ..store.base import utcnow
from ..tracebacks import shorten_paths

__all__ = ["TOKEN_KWARG", "create_run", "end_lost_run", "fail_unsent", "take_token", "token_for"]

log = logging.getLogger(__name__)
TOKEN_KWARG = "jobtail_token"


def token_for(run: Run, write_token: bool) -> dict[str, str]:
    """The message's extra keyword: the run's write token, for a worker that logs over HTTP."""
    if not write_token:
        return {}
    from ..web.auth import producer_token

    return {TOKEN_KWARG: producer_token(run.run_id)}


def take_token(store: LogStore | str, kwargs: dict[str, Any]) -> str | None:
    """The token a message carried, off the job's keywords; used only by a worker that writes
    to a jobtail server (one with the store itself has no use for it)."""
    token = kwargs.pop(TOKEN_KWARG, None)
    return token if isinstance(token, str) and is_server_url(store) else None


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


def end_lost_run(
    store: LogStore | str, run_id: str, exc: BaseException | None, token: str | None = None
) -> bool:
    """A queue's failure hook saw the worker process die (killed, out of memory, a hard time
    limit): end its run now, with a last line saying so, instead of after the janitor's wait.
    Nothing happens to a run that already ended (the job's own exception ended it). ``token``:
    the run's write token the message carried (``take_token``), for a jobtail server's URL."""
    opened = open_store(store, token) if isinstance(store, str) else store
    try:
        run = opened.get_run(run_id)
        if run is None or not run.active:
            return False
        why = "the worker process was lost" + (
            f" ({shorten_paths(f'{type(exc).__name__}: {exc}')})" if exc is not None else ""
        )
        line = LogLine(  # seq 0: numbered by the store, after the dead writer's last line
            seq=0,
            timestamp=utcnow(),
            log_level="ERROR",
            message=f"Run failed: {why}",
            fields=line_fields("ERROR", {"reason": "worker_lost"}),
        )
        return opened.finish_run(run_id, RunStatus.FAILED, why, lines=[line])
    except StoreError as error:  # the janitor ends it later
        log.warning("run %s: could not end it after its worker was lost: %s", run_id, error)
        return False
    finally:
        if isinstance(store, str):
            opened.close()
