"""A run's log as a read-only JSON-mode stream, over the log store (no copy of the lines).

Paths: ``runs/{run_id}`` (stable and cacheable) and ``runs/{upload_id}/{service}`` (the key's
latest run). The offset is the number of lines before a position (``seq - 1`` of the next line),
the stream is closed once the run is finished, and each message is a line's JSON
``{seq, timestamp, log_level, message, fields}``.

Reads are immutable by offset, so any cache may keep them: a read from offset ``X`` returns the
rest of ``X``'s block of ``BLOCK`` lines once that block is complete, and otherwise exactly one
line. The same request therefore always returns the same bytes, live or finished; a catch-up
takes one request per block, and a live follower one per line it waits for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..store import LogStore, Run
from .base import Chunk, StreamMeta, StreamNotFound, StreamUnsupported

PREFIX = "runs/"
BLOCK = 1000
CONTENT_TYPE = "application/json"


def is_run_path(path: str) -> bool:
    return path.startswith(PREFIX)


def line_json(line: object) -> str:
    """A line as its stream message: the same compact JSON every time it is read."""
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False)


def read_window(offset: int, tail: int, block: int = BLOCK) -> int:
    """Where a read from ``offset`` stops: the end of its block if complete, else one line."""
    if offset >= tail:
        return offset
    end = (offset // block + 1) * block
    return end if tail >= end else offset + 1


@dataclass
class RunStreams:
    """Read-only streams over a LogStore; the run id is also the internal stream id."""

    store: LogStore
    block: int = BLOCK

    def run_of(self, path: str) -> Run:
        parts = path[len(PREFIX) :].split("/")
        run = None
        if len(parts) == 1 and parts[0]:
            run = self.store.get_run(parts[0])
        elif len(parts) == 2 and all(parts):
            run = self.store.latest_run(parts[0], parts[1])
        if run is None:
            raise StreamNotFound(
                f"no run at {path!r}: use runs/<run_id> or runs/<upload>/<service>"
            )
        return run

    @staticmethod
    def meta(run: Run) -> StreamMeta:
        return StreamMeta(run.run_id, CONTENT_TYPE, run.last_seq, closed=not run.active)

    def head(self, path: str) -> StreamMeta:
        return self.meta(self.run_of(path))

    def read(self, path: str, offset: int | None) -> Chunk:
        run = self.run_of(path)  # status first: a finished run's lines are all committed
        meta = self.meta(run)
        start = meta.tail if offset is None else min(offset, meta.tail)
        stop = read_window(start, meta.tail, self.block)
        lines = self.store.read(run.run_id, after=start, before=stop + 1, limit=stop - start)
        texts = tuple(line_json(line.to_json()) for line in lines)
        return Chunk(meta, start, start + len(texts), messages=texts)

    def write(self, path: str) -> None:
        raise StreamUnsupported(
            "a run's stream is written by its worker: appends over HTTP are not enabled here"
        )
