"""``jobtail.run``: a run around any job, in one line.

    with jobtail.run(store, "import-42", "nightly") as log:
        log.info("starting")            # committed before it returns; viewers see it live

It creates the run (or takes the one named by ``run_id``, created where the job was enqueued),
claims it (a new epoch: a redelivered message cannot run it twice, and a writer fenced off by
the janitor is refused), heartbeats from a thread so the janitor knows the job is alive, and
ends it: ``succeeded`` when the block exits, ``failed`` when it raises, with the traceback
(server paths shortened) as the last ERROR line, stored together with the final status. The
exception still propagates. ``async with`` does the store calls in a worker thread.
With ``capture``, what the job prints and what chosen loggers log go into the run too
(``jobtail.capture``).

``store`` may also be a jobtail server's ``http(s)://`` URL: the job then writes its run's
Durable Stream as a producer (``jobtail.streams.producer.HttpStore``) with ``token``, the run's
write token, and needs no database credentials:

    with jobtail.run("https://jobtail.example.com", run_id=run_id, token=token) as log: ...
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, ExitStack
from types import TracebackType
from typing import Any

from .capture import capturing, line_fields
from .logger import MAX_LINE_CHARS, RunLogger
from .store import LogStore, Run, RunStatus, StoreError, from_url
from .store.base import RunFencedError, SeqGapError
from .tracebacks import format_exception, shorten_paths

__all__ = ["JobLogger", "RunClaimError", "RunHandle", "run"]

log = logging.getLogger(__name__)


class RunClaimError(StoreError):
    """The run named to ``jobtail.run`` cannot be claimed: it is already running elsewhere or
    finished (a redelivered message), or it does not exist."""

    def __init__(self, run_id: str, status: str | None) -> None:
        what = f"is already {status}" if status else "does not exist"
        super().__init__(f"run {run_id} {what}: not running it again")
        self.run_id, self.status = run_id, status


class JobLogger(RunLogger):
    """A RunLogger whose lines also carry the OpenTelemetry severity number and, inside an
    active span, its trace and span ids (``jobtail.severity``)."""

    def log(self, level: str, message: str, **fields: Any) -> int | None:
        return super().log(level, message, **line_fields(level, fields))


class _Heartbeat:
    """Touches the run every ``interval`` seconds from a daemon thread; stops when fenced."""

    def __init__(self, store: LogStore, run: Run, interval: float) -> None:
        self.store, self.run, self.interval = store, run, interval
        self.refused: RunFencedError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"jobtail-heartbeat-{run.run_id}", daemon=True
        )
        self._thread.start()

    def _beat(self) -> None:
        """An outage is said twice, when it starts and when it ends, not once per beat: a store
        down for ten minutes would otherwise write a hundred warnings into the job's output."""
        missed = 0
        while not self._stop.wait(self.interval):
            try:
                self.store.heartbeat(self.run.run_id, epoch=self.run.epoch)
            except RunFencedError as exc:
                self.refused = exc
                return
            except (StoreError, OSError) as exc:  # a missed beat is not a failed job
                missed += 1
                if missed == 1:
                    log.warning(
                        "run %s: heartbeat failed: %s (retrying every %g s)",
                        self.run.run_id,
                        exc,
                        self.interval,
                    )
                continue
            if missed:
                log.warning("run %s: heartbeat back after %d missed", self.run.run_id, missed)
                missed = 0

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)


class RunHandle:
    """What ``jobtail.run`` returns: a context manager (sync and async) yielding the logger."""

    def __init__(
        self,
        store: LogStore | str,
        upload_id: str | None,
        service: str | None,
        *,
        run_id: str | None,
        capture: bool | Iterable[str],
        heartbeat_interval: float,
        end_timeout: float,
        write_behind: float | None,
        max_line_chars: int,
        max_lines: int | None,
        token: str | None = None,
    ) -> None:
        if token is not None and not is_server_url(store):
            raise ValueError("token= is for a jobtail server URL (https://...), not a store")
        if run_id is None and (upload_id is None or service is None):
            raise ValueError("jobtail.run needs (upload_id, service) or run_id=")
        if heartbeat_interval <= 0:
            raise ValueError("heartbeat_interval must be positive")
        self._store_arg, self._token = store, token
        self.upload_id, self.service, self.run_id = upload_id, service, run_id
        self.capture = capture
        self.heartbeat_interval, self.end_timeout = heartbeat_interval, end_timeout
        self._logger_options: dict[str, Any] = {
            "write_behind": write_behind,
            "max_line_chars": max_line_chars,
            "max_lines": max_lines,
        }
        self.store: LogStore | None = None
        self.run: Run | None = None
        self.logger: JobLogger | None = None
        self.status: RunStatus | None = None
        self._heartbeat: _Heartbeat | None = None
        self._stack = ExitStack()  # what _close releases last: a store opened from a URL
        self._capture: AbstractContextManager[Any] | None = None
        self._started = 0.0

    # -- sync -----------------------------------------------------------------------------
    def __enter__(self) -> JobLogger:
        logger = self._open()
        self._start_capture(logger)
        return logger

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_capture()  # its partial lines land before the last line
        self._close(exc)

    # -- async: the same, with the blocking store calls in a worker thread -----------------
    async def __aenter__(self) -> JobLogger:
        logger = await asyncio.to_thread(self._open)
        self._start_capture(logger)
        return logger

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_capture()
        await asyncio.shield(asyncio.to_thread(self._close, exc))

    def _start_capture(self, logger: JobLogger) -> None:
        self._capture = capturing(logger, self.capture)
        self._capture.__enter__()

    def _stop_capture(self) -> None:
        if self._capture is not None:
            self._capture.__exit__(None, None, None)
            self._capture = None

    # -- the run's life -------------------------------------------------------------------
    def _open(self) -> JobLogger:
        """Create or take the run, claim it, start the heartbeat; the logger to write with."""
        store = self._store_arg
        if isinstance(store, str):
            store = open_store(store, self._token)
            self._stack.callback(store.close)
        self.store = store
        try:
            self.run = _claim(store, self.upload_id, self.service, self.run_id)
        except BaseException:
            self._stack.close()
            raise
        self._started = time.monotonic()
        self._heartbeat = _Heartbeat(store, self.run, self.heartbeat_interval)
        self.logger = JobLogger(
            store,
            self.run.run_id,
            start_seq=self.run.last_seq,
            epoch=self.run.epoch,
            **self._logger_options,
        )
        return self.logger

    def _close(self, exc: BaseException | None) -> None:
        """End the run: succeeded, or failed with the traceback as its last line."""
        assert self.logger is not None and self._heartbeat is not None
        try:
            if isinstance(exc, RunFencedError | SeqGapError) or self.logger.refused:
                self.status = _current_status(self.logger)  # not ours any more: write nothing
                return
            status, message, error, fields = _outcome(exc, time.monotonic() - self._started)
            try:
                if self.logger.finish(
                    status, message, error=error, fields=fields, timeout=self.end_timeout
                ):
                    self.status = status
                else:  # the store stayed down: the janitor ends it once the heartbeat stops
                    log.error("run %s: could not store its end (%s)", self.logger.run_id, status)
            except (RunFencedError, SeqGapError) as refused:
                log.warning("run %s: ended by someone else (%s)", self.logger.run_id, refused)
                self.status = _current_status(self.logger)
        finally:
            self._heartbeat.stop()  # only now: a job that ended is never taken for a dead one
            self._stack.close()


def run(
    store: LogStore | str,
    upload_id: str | None = None,
    service: str | None = None,
    *,
    run_id: str | None = None,
    capture: bool | Iterable[str] = False,
    heartbeat_interval: float = 5.0,
    end_timeout: float = 30.0,
    write_behind: float | None = None,
    max_line_chars: int = MAX_LINE_CHARS,
    max_lines: int | None = None,
    token: str | None = None,
) -> RunHandle:
    """A run around a job: ``with jobtail.run(store, upload_id, service) as log: ...``.

    ``store`` is a LogStore or a store URL (opened and closed here), or a jobtail server's
    ``http(s)://`` URL with ``token``, the run's write token (``run_id=`` then names the run).
    The run is new for the key ``(upload_id, service)`` (RunActiveError while another is queued
    or running), or the queued one ``run_id`` names (RunClaimError if it is not queued).
    ``capture``: True for the job's print output and every logger, or names: ``"print"`` and
    logger names (``"httpx"``).
    ``end_timeout``: seconds the end is retried while the store is down.
    """
    return RunHandle(
        store,
        upload_id,
        service,
        run_id=run_id,
        capture=capture,
        heartbeat_interval=heartbeat_interval,
        end_timeout=end_timeout,
        write_behind=write_behind,
        max_line_chars=max_line_chars,
        max_lines=max_lines,
        token=token,
    )


def is_server_url(store: LogStore | str) -> bool:
    return isinstance(store, str) and store.startswith(("http://", "https://"))


def open_store(url: str, token: str | None) -> LogStore:
    """A store URL opened, or a jobtail server's URL as the producer side of its run streams."""
    if is_server_url(url):
        from .streams.producer import HttpStore

        return HttpStore(url, token=token)
    return from_url(url)


def _claim(store: LogStore, upload_id: str | None, service: str | None, run_id: str | None) -> Run:
    if run_id is None:
        assert upload_id is not None and service is not None
        run_id = store.create_run(upload_id, service).run_id
    claimed = store.claim_run(run_id)
    if claimed is None:
        current = store.get_run(run_id)
        raise RunClaimError(run_id, current.status.value if current else None)
    return claimed


def _outcome(
    exc: BaseException | None, seconds: float
) -> tuple[RunStatus, str, str | None, dict[str, Any]]:
    """(status, last line, error, fields) for a block that ended with ``exc`` (or None)."""
    if exc is None:
        text = f"Run succeeded in {seconds:.2f} s"
        return RunStatus.SUCCEEDED, text, None, line_fields("INFO", {"seconds": round(seconds, 3)})
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
        error = f"the job was interrupted ({type(exc).__name__})"
        return RunStatus.FAILED, f"Run failed: {error}", error, line_fields("ERROR", {})
    error = shorten_paths(f"{type(exc).__name__}: {exc}")
    message = f"Run failed: {error}\n{format_exception(exc)}"
    fields = line_fields("ERROR", {"error": type(exc).__name__, "seconds": round(seconds, 3)})
    return RunStatus.FAILED, message, error, fields


def _current_status(logger: RunLogger) -> RunStatus | None:
    try:
        found = logger.store.get_run(logger.run_id)
    except StoreError:
        return None
    return found.status if found else None
