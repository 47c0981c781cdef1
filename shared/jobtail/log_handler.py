"""RunLogHandler: standard ``logging`` records into a run, through its RunLogger.

A ``logging.Handler`` only: it uses RunLogger's public API and nothing of its state, so library
code that logs the usual way lands in the job's run. A record that cannot be formatted is kept
with why; a refused writer is raised, not handled, because the job must stop.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .store.base import RunFencedError, SeqGapError
from .tracebacks import format_exception

if TYPE_CHECKING:
    from .logger import RunLogger


class RunLogHandler(logging.Handler):
    """Routes standard ``logging`` records into a run, so library code logs into the job."""

    def __init__(self, run_logger: RunLogger, level: int = logging.DEBUG) -> None:
        super().__init__(level)
        self.run_logger = run_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = _message(record)
            if record.exc_info and record.exc_info[1] is not None:
                message = f"{message}\n{format_exception(record.exc_info[1])}"
            fields: dict[str, Any] = {"logger": record.name}
            extra = getattr(record, "fields", None)
            if isinstance(extra, dict):
                fields.update(extra)
            self.run_logger.log(record.levelname, message, **fields)
        except (RunFencedError, SeqGapError):
            raise  # the writer was refused for good: the job must stop, nothing it logs lands
        except Exception:
            self.handleError(record)


def _message(record: logging.LogRecord) -> str:
    """The record's message; a record whose format fails is kept, with why, not dropped."""
    try:
        return record.getMessage()
    except Exception as exc:
        return f"{record.msg!r} % {record.args!r} (format failed: {type(exc).__name__}: {exc})"
