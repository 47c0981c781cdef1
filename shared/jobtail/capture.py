"""Capture what a job already prints and logs into its run (opt-in: ``jobtail.run(capture=)``).

The run being captured lives in a context variable, so two runs in one process (threads,
asyncio tasks) never mix: ``sys.stdout``/``sys.stderr`` get a proxy (installed once) that
sends a write to the run of the writer's context, else to the real stream; chosen loggers get a
handler (installed once per logger) that does the same with records. Threads a job starts
inherit its run (``Thread.start`` carries it over), and a task submitted to a thread pool runs
in its submitter's context, so a pool thread never keeps a finished run's output. structlog set
up over the standard library (``structlog.stdlib.LoggerFactory``) arrives as records like any
other; ``add_run_id`` is a structlog processor that binds the run id.

Every line written through ``jobtail.run`` carries the OpenTelemetry severity number beside the
level name, and the trace and span ids when a span is active (``opentelemetry-api`` optional).
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

from .logger import RunLogger
from .store import StoreError
from .tracebacks import format_exception

__all__ = ["add_run_id", "capturing", "current_run_id", "line_fields", "severity_number"]

SEVERITY_NUMBERS = {"DEBUG": 5, "INFO": 9, "WARNING": 13, "ERROR": 17, "CRITICAL": 21}
"""OpenTelemetry log data model: the first number of each severity range."""

STREAM_LEVELS = {"stdout": "INFO", "stderr": "WARNING"}

_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

_current: ContextVar[_RunCapture | None] = ContextVar("jobtail_capture", default=None)
_busy = threading.local()  # a capture writing must not capture its own store's output
_install_lock = threading.Lock()


def severity_number(level: str) -> int:
    """OpenTelemetry SeverityNumber of a level name (custom levels count as INFO)."""
    return SEVERITY_NUMBERS.get(level.upper(), SEVERITY_NUMBERS["INFO"])


def _otel_trace() -> Any:
    """OpenTelemetry's trace API if the application uses it: a span can only be active when
    something imported it, so a job without OpenTelemetry pays neither the import nor a lookup."""
    return sys.modules.get("opentelemetry.trace")


def line_fields(level: str, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` plus ``severity_number``, and ``trace_id``/``span_id`` inside a span."""
    extra: dict[str, Any] = {"severity_number": severity_number(level)}
    trace = _otel_trace()
    if trace is not None:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            extra["trace_id"] = format(context.trace_id, "032x")
            extra["span_id"] = format(context.span_id, "016x")
    return {**extra, **fields}


def current_run_id() -> str | None:
    """The run whose output this context captures, if any."""
    capture = _current.get()
    return capture.logger.run_id if capture is not None and capture.active else None


def add_run_id(logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: binds ``run_id`` when the event happens inside a captured run."""
    run_id = current_run_id()
    if run_id is not None:
        event_dict.setdefault("run_id", run_id)
    return event_dict


class _RunCapture:
    """One run's capture: which outputs it takes, and its half-written lines."""

    def __init__(self, logger: RunLogger, prints: bool, loggers: tuple[str, ...]) -> None:
        self.logger, self.prints, self.loggers = logger, prints, loggers
        self.active = True
        self._partial: dict[tuple[int, str], str] = {}
        self._lock = threading.Lock()

    def wants(self, record_name: str, handler_name: str) -> bool:
        """A record reaches the handler of every captured logger above it: the most specific
        one writes it, once."""
        matches = [n for n in self.loggers if n == "" or _within(record_name, n)]
        return bool(matches) and max(matches, key=len) == handler_name

    def write(self, stream: str, text: str) -> None:
        key = (threading.get_ident(), stream)
        with self._lock:
            buffered = self._partial.pop(key, "") + text
            *complete, rest = buffered.split("\n")
            if rest:
                self._partial[key] = rest
        for line in complete:
            self.emit(STREAM_LEVELS[stream], line.rstrip("\r"), stream=stream)

    def emit(self, level: str, message: str, **fields: Any) -> None:
        if not self.active or getattr(_busy, "on", False):
            return
        _busy.on = True
        try:
            self.logger.log(level, message, **fields)
        except StoreError:  # fenced or down: the job's own next log call says so
            pass
        finally:
            _busy.on = False

    def close(self) -> None:
        with self._lock:
            partial, self._partial = self._partial, {}
        for (_, stream), text in partial.items():
            self.emit(STREAM_LEVELS[stream], text, stream=stream)
        self.active = False


def _within(name: str, parent: str) -> bool:
    return name == parent or name.startswith(parent + ".")


class _StreamProxy:
    """Stands in for sys.stdout/sys.stderr: a captured run's writes go to its log (and, with
    ``tee``, on to the real stream); everyone else's go to the real stream untouched."""

    def __init__(self, inner: TextIO, name: str, tee: bool = True) -> None:
        self._inner, self._name, self._tee = inner, name, tee

    def write(self, text: str) -> int:
        capture = _current.get()
        if capture is not None and capture.active and capture.prints:
            capture.write(self._name, text)
            if not self._tee:
                return len(text)
        return self._inner.write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _RouteHandler(logging.Handler):
    """On a captured logger: sends each record to the run of the context it was made in."""

    def __init__(self, logger_name: str) -> None:
        super().__init__(logging.DEBUG)
        self.logger_name = logger_name

    def emit(self, record: logging.LogRecord) -> None:
        capture = _current.get()
        if capture is None or not capture.active or record.name.startswith("jobtail"):
            return
        if not capture.wants(record.name, self.logger_name):
            return
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message = f"{message}\n{format_exception(record.exc_info[1])}"
            fields = {  # extras (structlog's key-values among them) become the line's fields
                k if k not in ("level", "message") else f"{k}_": v
                for k, v in record.__dict__.items()
                if k not in _RECORD_ATTRS
            }
            capture.emit(record.levelname, message, logger=record.name, **fields)
        except Exception:
            self.handleError(record)


_handlers: dict[str, _RouteHandler] = {}


def _install_streams() -> None:
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, _StreamProxy):
            setattr(sys, name, _StreamProxy(stream, name))


def _install_logger(name: str) -> None:
    target = logging.getLogger(name or None)
    handler = _handlers.get(name)
    if handler is None:
        handler = _handlers[name] = _RouteHandler(name)
    if handler not in target.handlers:
        target.addHandler(handler)
    if name and target.level == logging.NOTSET and target.getEffectiveLevel() > logging.INFO:
        target.setLevel(logging.INFO)  # a library's INFO records (httpx requests) get made


_threads_patched = False


def _carry_into_threads() -> None:
    """Threads started inside a captured run inherit it; pool tasks run in their submitter's
    context (a pool thread outlives the run that happened to start it)."""
    global _threads_patched
    if _threads_patched:
        return
    _threads_patched = True
    start = threading.Thread.start
    submit = ThreadPoolExecutor.submit

    def start_in_run(self: threading.Thread) -> None:
        capture = _current.get()
        if capture is not None:
            body = self.run

            def run_in_capture() -> None:
                _current.set(capture)
                body()

            self.run = run_in_capture  # type: ignore[method-assign]
        start(self)

    def submit_in_context(
        self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Future[Any]:
        return submit(self, contextvars.copy_context().run, fn, *args, **kwargs)

    threading.Thread.start = start_in_run  # type: ignore[method-assign]
    ThreadPoolExecutor.submit = submit_in_context  # type: ignore[method-assign,assignment]


def _what(capture: bool | Iterable[str]) -> tuple[bool, tuple[str, ...]]:
    if capture is True:
        return True, ("",)
    if capture is False:
        return False, ()
    if isinstance(capture, str):
        raise TypeError('capture takes a list of names, e.g. ["print", "httpx"]')
    names = tuple(capture)
    return "print" in names, tuple(n for n in names if n != "print")


@contextmanager
def capturing(logger: RunLogger, capture: bool | Iterable[str]) -> Iterator[None]:
    """Within the block, this context's prints and chosen loggers' records go into the run."""
    prints, loggers = _what(capture)
    if not prints and not loggers:
        yield
        return
    with _install_lock:
        _carry_into_threads()
        if prints:
            _install_streams()
        for name in loggers:
            _install_logger(name)
    state = _RunCapture(logger, prints, loggers)
    token = _current.set(state)
    try:
        yield
    finally:
        state.close()
        _current.reset(token)
