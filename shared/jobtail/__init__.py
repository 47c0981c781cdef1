"""jobtail: live, durable logs for background jobs.

A job runs inside ``jobtail.run(store, upload_id, service)`` (or writes through a
:class:`RunLogger`); every line is committed to a :class:`LogStore` before ``log()`` returns;
viewers follow a run with :class:`Tailer` (over SSE: ``jobtail.fastapi.router`` in any FastAPI
app) from any cursor, live or long after the job ended. ``jobtail.capture`` takes in what a job
prints and logs; ``jobtail.queues`` carries runs through task queues.
"""

from __future__ import annotations

import importlib
from typing import Any

from .logger import RunLogger, RunLogHandler
from .run import RunClaimError, run
from .store import LogLine, LogStore, Run, RunStatus, from_url
from .tail import Tailer

__all__ = [
    "LogLine",
    "LogStore",
    "Run",
    "RunClaimError",
    "RunLogHandler",
    "RunLogger",
    "RunStatus",
    "Tailer",
    "from_url",
    "producer_token",
    "run",
]

_LAZY = ("capture", "fastapi", "queues")


def __getattr__(name: str) -> Any:
    """``jobtail.fastapi`` and friends load on first use: a worker need not import FastAPI.
    ``producer_token(run_id)``: a run's write token, for a host that creates runs itself."""
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    if name == "producer_token":
        from .web.auth import producer_token

        return producer_token
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"
