"""The job: claim a run, heartbeat, generate with a RunLogger, save the result, end the run.

Queues deliver at least once, so the claim (``store.claim_run``: queued -> running, with a new
epoch) is what makes a run execute at most once: a redelivered message finds the run running or
finished and does nothing. Whatever happens inside, the run ends: its last line (success, or the
error) is committed together with the final status (``RunLogger.finish``), so a viewer that sees
the end has the whole log. The heartbeat keeps going until that end is stored, and the end is
retried while the store is down (``end_timeout``), so an outage at the end of a job neither
loses lines nor gets a finished job taken for a dead one. A writer that was fenced off (the
janitor closed the run, or a newer claim took it) stops at once and writes nothing more.
With a ``deadline`` (a Lambda's), the run is closed as failed a margin before it, so viewers get
their ``end`` at once instead of after the janitor's timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ..blobs import BlobNotFoundError, BlobStore
from ..documents import ParsedUpload, UploadError, parse_document
from ..logger import MAX_LINE_CHARS, RunLogger
from ..store.base import (
    LogStore,
    Run,
    RunFencedError,
    RunNotFoundError,
    RunStatus,
    SeqGapError,
    StoreError,
)
from ..tracebacks import format_exception, shorten_paths
from ..uploads import UploadNotFoundError, Uploads
from . import sandbox
from .generators import (
    GeneratedCode,
    Generator,
    GeneratorError,
    GeneratorRegistry,
    UnknownServiceError,
)
from .results import ResultInfo, result_key, save_result

__all__ = ["Heartbeat", "describe_error", "result_key", "run_job"]

log = logging.getLogger(__name__)

USER_ERRORS = (UploadNotFoundError, UnknownServiceError, GeneratorError, BlobNotFoundError)
"""Errors whose message alone explains the failure to the user."""

Outcome = tuple[RunStatus, str | None, str, dict[str, Any]]
"""(status, error, last line, its fields): how a job ended."""


class Heartbeat:
    """Touches the run every ``interval`` seconds from a thread, so the janitor sees it alive.

    Stops by itself when the store refuses the writer (``refused``): the run is someone else's,
    or gone (purged under a stalled worker). Leaving waits ``stop_timeout`` seconds at most for
    a beat under way: a store call that hangs must not hold a finished worker.
    """

    def __init__(
        self,
        store: LogStore,
        run_id: str,
        interval: float,
        epoch: int | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        if interval <= 0:
            raise ValueError("heartbeat interval must be positive")
        self.store, self.run_id, self.interval, self.epoch = store, run_id, interval, epoch
        self.stop_timeout = stop_timeout
        self.beats = 0
        self.refused: RunFencedError | RunNotFoundError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def _beat(self) -> None:
        missed = 0
        while not self._stop.wait(self.interval):
            try:
                self.store.heartbeat(self.run_id, epoch=self.epoch)
                self.beats += 1
            except (RunFencedError, RunNotFoundError) as exc:
                self.refused = exc
                return
            except (StoreError, OSError) as exc:  # a missed beat is not a failed job
                if not missed:  # said once per outage, not once per beat
                    log.warning("run %s: heartbeat failed: %s", self.run_id, exc)
                missed += 1
            else:
                if missed:
                    log.warning("run %s: heartbeat back after %d missed", self.run_id, missed)
                missed = 0

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.stop_timeout)


def run_job(
    run_id: str,
    *,
    store: LogStore,
    uploads: Uploads,
    blobs: BlobStore,
    registry: GeneratorRegistry,
    heartbeat_interval: float = 5.0,
    max_line_chars: int = MAX_LINE_CHARS,
    max_lines: int | None = None,
    keep_tail: int = 1000,
    end_timeout: float = 120.0,
    deadline: float | None = None,
    deadline_margin: float = 5.0,
) -> RunStatus:
    """Run one queued run to its end and return its final status; never raises for the job.

    A run that is not queued (a redelivery) is left alone and its current status returned;
    FAILED for an unknown run; QUEUED if the store could not be reached to claim it (retry).
    ``deadline`` is a ``time.monotonic()`` instant the worker must be done by.
    """
    if heartbeat_interval <= 0:
        raise ValueError("heartbeat_interval must be positive")
    claimed = _claim(store, run_id)
    if isinstance(claimed, RunStatus):
        return claimed
    logger = RunLogger(
        store,
        run_id,
        start_seq=claimed.last_seq,
        epoch=claimed.epoch,
        max_line_chars=max_line_chars,
        max_lines=max_lines,
        keep_tail=keep_tail,
    )
    job = _Job(claimed, logger, uploads, blobs, registry)
    with Heartbeat(store, run_id, heartbeat_interval, epoch=claimed.epoch):
        try:
            outcome = _execute(job, deadline, deadline_margin)
        except BaseException:  # KeyboardInterrupt, SystemExit: end the run, then go
            _end(
                logger,
                (
                    RunStatus.FAILED,
                    "the worker was interrupted",
                    "Run failed: the worker was interrupted",
                    {},
                ),
                end_timeout=1.0,
            )
            raise
        if outcome is None:  # fenced off: the run is someone else's now
            return _current_status(store, run_id)
        return _end(logger, outcome, end_timeout=end_timeout)


def _execute(job: _Job, deadline: float | None, margin: float) -> Outcome | None:
    """The job's outcome; with a deadline, the job runs in a thread we stop waiting for. What
    the job raises while the worker still waits (KeyboardInterrupt, SystemExit) is raised here,
    as without a deadline; after that it is only said."""
    if deadline is None:
        return job.execute()
    result: list[Outcome | BaseException | None] = []
    lock, moved_on = threading.Lock(), threading.Event()

    def execute() -> None:
        outcome: Outcome | BaseException | None
        try:
            outcome = job.execute()
        except BaseException as exc:
            outcome = exc
        with lock:
            if not moved_on.is_set():
                result.append(outcome)
                return
        if isinstance(outcome, BaseException):  # nobody waits for it now: say, never raise
            log.error(
                "run %s: the job failed after its worker moved on", job.run.run_id, exc_info=outcome
            )

    thread = threading.Thread(target=execute, name=f"job-{job.run.run_id}", daemon=True)
    thread.start()
    budget = deadline - margin - time.monotonic()
    thread.join(timeout=max(0.0, budget))
    with lock:
        moved_on.set()
    if result:
        if isinstance(result[0], BaseException):
            raise result[0]
        return result[0]
    seconds = max(0.0, deadline - job.started_monotonic)
    message = f"worker timeout ({seconds:.0f} s)"
    # the job thread may still log: its next line is refused once this end is stored
    return RunStatus.FAILED, message, f"Run failed: {message}", {"error": "WorkerTimeout"}


def _end(logger: RunLogger, outcome: Outcome, *, end_timeout: float) -> RunStatus:
    status, error, message, fields = outcome
    try:
        if not logger.finish(status, message, error=error, fields=fields, timeout=end_timeout):
            log.error("run %s: could not store its end; the janitor will close it", logger.run_id)
    except (RunFencedError, SeqGapError) as exc:
        log.warning("run %s: ended by someone else (%s)", logger.run_id, exc)
        return _current_status(logger.store, logger.run_id)
    return status


def _current_status(store: LogStore, run_id: str) -> RunStatus:
    try:
        run = store.get_run(run_id)
    except StoreError:
        return RunStatus.FAILED
    return run.status if run is not None else RunStatus.FAILED


def _claim(store: LogStore, run_id: str) -> Run | RunStatus:
    try:
        run = store.claim_run(run_id)
        if run is not None:
            return run
        current = store.get_run(run_id)
    except (StoreError, OSError):
        log.exception("run %s: cannot claim it; leaving it queued", run_id)
        return RunStatus.QUEUED
    if current is None:
        log.warning("run %s does not exist: nothing to do", run_id)
        return RunStatus.FAILED
    log.info("run %s is already %s: not running it again", run_id, current.status)
    return current.status


def describe_error(exc: BaseException) -> str:
    """The run's error text: the message alone for errors meant for users."""
    if isinstance(exc, UploadError):
        return shorten_paths(f"the upload is not usable: {exc}")
    if isinstance(exc, USER_ERRORS):
        return shorten_paths(str(exc))
    return shorten_paths(f"{type(exc).__name__}: {exc}")


def describe_schema(schema: Any) -> str:
    """A few words on a schema for the DEBUG line that lists it."""
    if not isinstance(schema, dict):
        return "not an object"
    for word in ("oneOf", "anyOf", "allOf"):
        if isinstance(schema.get(word), list):
            return f"{word} with {len(schema[word])} schemas"
    if "enum" in schema:
        return f"enum of {len(schema['enum'])} values"
    if isinstance(schema.get("properties"), dict):
        required = len(schema.get("required", []) or [])
        return f"object, {len(schema['properties'])} properties ({required} required)"
    if "$ref" in schema:
        return f"reference to {schema['$ref']}"
    return str(schema.get("type", "any"))


class _Job:
    """The steps of one claimed run, each logged."""

    def __init__(
        self,
        run: Run,
        logger: RunLogger,
        uploads: Uploads,
        blobs: BlobStore,
        registry: GeneratorRegistry,
    ) -> None:
        self.run, self.log = run, logger
        self.uploads, self.blobs, self.registry = uploads, blobs, registry
        self.started = time.perf_counter()
        self.started_monotonic = time.monotonic()

    def execute(self) -> Outcome | None:
        """How the job ended, or None if the run refused this writer (nothing more to say)."""
        try:
            info = self._steps()
        except (RunFencedError, SeqGapError) as exc:
            log.warning("run %s: this worker was fenced off (%s); stopping", self.run.run_id, exc)
            return None
        except Exception as exc:
            message = describe_error(exc)
            try:
                self.log.debug(f"Traceback:\n{format_exception(exc)}")
            except (RunFencedError, SeqGapError):
                return None
            return (
                RunStatus.FAILED,
                message,
                f"Run failed: {message}",
                {"error": type(exc).__name__},
            )
        seconds = time.perf_counter() - self.started
        text = f"Run succeeded in {seconds:.2f} s: {info.filename}, {info.lines:,} lines"
        return RunStatus.SUCCEEDED, None, text, {"seconds": round(seconds, 3)}

    def _steps(self) -> ResultInfo:
        run = self.run
        self.log.progress(
            0, f"Run {run.run_id}: service {run.service_name!r} for upload {run.upload_id!r}"
        )
        generator = self.registry.get(run.service_name)
        self.log.info(f"Generator {generator.name!r}: {generator.description}")
        upload = self._load()
        generated = self._generate(generator, upload)
        classes = self._check(generator, generated)
        info = save_result(self.blobs, run, generated, classes)
        self.log.progress(100, f"Saved {generated.filename} ({info.bytes:,} bytes) as {info.key}")
        return info

    def _load(self) -> ParsedUpload:
        upload_id = self.run.upload_id
        data = self.uploads.load(upload_id)
        filename = self.uploads.filename(upload_id)
        named = f", {filename}" if filename else ""
        self.log.info(f"Loaded upload {upload_id!r} ({len(data):,} bytes{named})", bytes=len(data))
        # the size limit guards POST /uploads; a stored or bundled document was accepted already
        upload = parse_document(data, filename, max_bytes=max(len(data), self.uploads.max_bytes))
        self.log.info(
            f"Parsed {upload.syntax.upper()}: {upload.summary()}",
            kind=upload.kind,
            schemas=len(upload.schemas),
            paths=len(upload.paths),
        )
        for note in upload.notes:
            self.log.warning(note)
        for name, schema in upload.schemas.items():
            self.log.debug(f"Schema {name}: {describe_schema(schema)}")
        self.log.progress(20, "Upload checked")
        return upload

    def _generate(self, generator: Generator, upload: ParsedUpload) -> GeneratedCode:
        self.log.progress(30, f"Generating with {generator.name!r}")
        started = time.perf_counter()
        generated = generator.generate(upload, self.log)
        seconds = time.perf_counter() - started
        if not isinstance(generated, GeneratedCode):
            kind = type(generated).__name__
            raise GeneratorError(f"generator {generator.name!r} returned {kind}, not GeneratedCode")
        lines, size = len(generated.code.splitlines()), len(generated.code.encode())
        self.log.info(
            f"Generated {generated.filename} in {seconds:.2f} s: {lines:,} lines, {size:,} bytes",
            seconds=round(seconds, 3),
            lines=lines,
            bytes=size,
        )
        self.log.progress(70, "Code generated")
        return generated

    def _check(self, generator: Generator, generated: GeneratedCode) -> int | None:
        if generated.language != "python":
            self.log.info(f"Checks skipped: the output is {generated.language}, not Python")
            return None
        try:
            compile(generated.code, generated.filename, "exec")
        except (SyntaxError, ValueError) as exc:
            line = exc.lineno if isinstance(exc, SyntaxError) else None  # None: no position
            where = f" at line {line}" if line else ""
            reason = exc.msg if isinstance(exc, SyntaxError) else str(exc)
            raise GeneratorError(f"the generated code does not compile: {reason}{where}") from exc
        self.log.info("Compile check passed")
        classes = None
        if generator.import_check:  # in a separate process without secrets (jobs/sandbox.py)
            classes = sandbox.import_check(generated.code, generated.filename, self.log)
        else:
            self.log.info(f"Import check skipped: {generator.name!r} output is not executed here")
        self.log.progress(85, "Checks done")
        return classes
