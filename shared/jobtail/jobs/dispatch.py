"""Dispatchers hand a created run to whatever executes it: a thread here, SQS on AWS.

A dispatcher only delivers the run id; the run's state lives in the store, and ``run_job``
claims the run before doing anything, so at-least-once delivery (SQS) never runs a job twice.
A run that was never delivered (a crash between create and submit, a pool closed with
``cancel_pending``) stays queued until the janitor fails it.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..store.base import Run

__all__ = ["DispatchError", "Dispatcher", "InlineDispatcher", "JobMessage", "SqsDispatcher"]

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
        self._futures: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, run: Run) -> None:
        with self._lock:
            if self._closed:
                raise DispatchError(f"cannot run {run.run_id}: the dispatcher is closed")
            future = self._pool.submit(self._run, run.run_id)
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _run(self, run_id: str) -> None:
        try:
            self.job(run_id)
        except Exception:  # run_job never raises; a custom job might
            log.exception("job for run %s raised", run_id)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every submitted job ended; False on timeout (for tests and shutdown)."""
        with self._lock:
            pending = set(self._futures)
        return not wait_for(pending, timeout=timeout).not_done

    def close(self, wait: bool = True, cancel_pending: bool = False) -> None:
        """Stop taking runs; wait for running jobs; optionally drop those not yet started."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=cancel_pending)


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
