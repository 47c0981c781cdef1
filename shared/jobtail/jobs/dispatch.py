"""Dispatchers hand a created run to whatever executes it: a thread here, SQS on AWS.

A dispatcher only delivers the run id; the run's state lives in the store, and ``run_job``
claims the run before doing anything, so at-least-once delivery (SQS) never runs a job twice.
A run that was never delivered (a crash between create and submit, a pool closed with
``cancel_pending``, a server killed with runs in its pool) stays queued in the store; the next
start hands it over again (``redispatch_queued``), and the janitor fails it only after
``queued_timeout``.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..store.base import LogStore, Run

__all__ = [
    "DispatchError",
    "Dispatcher",
    "InlineDispatcher",
    "JobMessage",
    "SqsDispatcher",
    "redispatch_queued",
]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

log = logging.getLogger(__name__)


class DispatchError(RuntimeError):
    """The run could not be handed over; the caller should fail it or tell the user."""


class Dispatcher(ABC):
    """Delivers created runs to a worker."""

    @abstractmethod
    def submit(self, run: Run) -> None:
        """Hand the run over; raise DispatchError if that is impossible."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release threads or clients."""


class InlineDispatcher(Dispatcher):
    """Runs jobs in a thread pool of this process: the local default."""

    def __init__(self, job: Callable[[str], object], max_workers: int = 2) -> None:
        self.job = job
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="jobtail-job")
        self._futures: dict[Future[None], str] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._drained = False

    def submit(self, run: Run) -> None:
        with self._lock:
            if self._closed:
                raise DispatchError(f"cannot run {run.run_id}: the dispatcher is closed")
            future = self._pool.submit(self._run, run.run_id)
            self._futures[future] = run.run_id
        future.add_done_callback(self._forget)

    def _run(self, run_id: str) -> None:
        try:
            self.job(run_id)
        except Exception:  # run_job never raises; a custom job might
            log.exception("job for run %s raised", run_id)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.pop(future, None)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every submitted job ended; False on timeout (for tests and shutdown)."""
        with self._lock:
            pending = set(self._futures)
        return not wait_for(pending, timeout=timeout).not_done

    def drain(self, timeout: float) -> list[str]:
        """Stop taking runs, drop those not started (they stay queued in the store for the next
        start), give the running ones ``timeout`` seconds; return the ids still running."""
        with self._lock:
            self._closed = self._drained = True
            futures = dict(self._futures)
        running = {future: run_id for future, run_id in futures.items() if not future.cancel()}
        wait_for(running, timeout=timeout)
        return [run_id for future, run_id in running.items() if not future.done()]

    def close(self, wait: bool = True, cancel_pending: bool = False) -> None:
        """Stop taking runs; wait for running jobs (not after a ``drain``: it bounded that
        wait already); optionally drop those not yet started."""
        with self._lock:
            self._closed = True
            drained = self._drained
        self._pool.shutdown(wait=wait and not drained, cancel_futures=cancel_pending or drained)


class JobMessage(BaseModel):
    """The SQS message body: which run to execute (the rest is in the store)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: str = Field(pattern=ID_PATTERN)
    upload_id: str = Field(pattern=ID_PATTERN)
    service_name: str = Field(pattern=ID_PATTERN)

    @classmethod
    def from_run(cls, run: Run) -> JobMessage:
        return cls(run_id=run.run_id, upload_id=run.upload_id, service_name=run.service_name)

    def to_body(self) -> str:
        return self.model_dump_json()

    @classmethod
    def parse(cls, body: str | bytes) -> JobMessage:
        """Read a message body; raise ValueError naming what is wrong with it."""
        try:
            return cls.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
                for error in exc.errors(include_url=False)
            )
            raise ValueError(f"bad job message: {problems}") from None


class SqsDispatcher(Dispatcher):
    """Sends a JobMessage per run to an SQS queue; the worker Lambda runs it."""

    def __init__(self, queue_url: str, client: Any = None) -> None:
        if not queue_url:
            raise ValueError("SqsDispatcher needs a queue URL")
        self.queue_url = queue_url
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("sqs")
        return self._client

    def submit(self, run: Run) -> None:
        request: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MessageBody": JobMessage.from_run(run).to_body(),
        }
        if self.queue_url.endswith(".fifo"):
            request["MessageGroupId"] = f"{run.upload_id}/{run.service_name}"
            request["MessageDeduplicationId"] = run.run_id
        try:
            self.client.send_message(**request)
        except Exception as exc:
            raise DispatchError(f"cannot queue run {run.run_id}: {exc}") from exc


def redispatch_queued(store: LogStore, dispatcher: Dispatcher, page: int = 1000) -> list[str]:
    """Hand every queued run over again, oldest first, reading them ``page`` at a time: after
    a crash, runs that sat in a dead process's pool would otherwise wait for the janitor.
    (It used to look at the newest 1,000 runs only: a busy store's older queued runs stayed
    queued.) Safe with several processes on one store: the worker's claim lets only one of
    them run it."""
    handed: list[str] = []
    after: tuple[datetime, str] | None = None
    while True:
        queued = store.queued_runs(after, limit=page)
        for run in queued:
            try:
                dispatcher.submit(run)
            except DispatchError as exc:
                log.warning("cannot hand queued run %s over again: %s", run.run_id, exc)
                queued = []
                break
            handed.append(run.run_id)
        if len(queued) < page:
            break
        after = (queued[-1].created_at, queued[-1].run_id)
    if handed:
        shown = ", ".join(handed[:20]) + (
            f" and {len(handed) - 20} more" if len(handed) > 20 else ""
        )
        log.info("handed %d queued run(s) over again: %s", len(handed), shown)
    return handed
