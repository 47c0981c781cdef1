"""jobtail: live, durable logs for background jobs.

A job writes through a :class:`RunLogger`; every line is committed to a :class:`LogStore` before
``log()`` returns; viewers follow a run with :class:`Tailer` (over SSE in the web app) from any
cursor, live or long after the job ended.
"""

from __future__ import annotations

from .logger import RunLogger, RunLogHandler
from .store import LogLine, LogStore, Run, RunStatus, from_url
from .tail import Tailer

__all__ = [
    "LogLine",
    "LogStore",
    "Run",
    "RunLogHandler",
    "RunLogger",
    "RunStatus",
    "Tailer",
    "from_url",
]
__version__ = "0.1.0"
