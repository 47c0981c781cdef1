"""A run's log as a read-only JSON-mode stream, over the log store (no copy of the lines).

Paths: ``runs/{run_id}`` (stable and cacheable) and ``runs/{upload_id}/{service}`` (the key's
latest run). The offset is the number of lines before a position (``seq - 1`` of the next line),
the stream is closed once the run is finished, and each message is a line's JSON
``{seq, timestamp, log_level, message, fields}``.

Reads are immutable by URL, so any cache may keep them, live or finished. An offset carries a
hint (``format_offset``) chosen when it was handed out: the largest of the aligned blocks of
``BLOCKS`` lines (1, 32, 1024) around it that was complete then; a read from it returns the rest
of that block (hint 0: exactly one line, waited for in long-poll). Lines never change and a
complete block stays complete, so the same request always returns the same bytes; a catch-up
takes about one request per 1,024 lines (plus at most 31 + 31 for the last partial blocks), and
a follower at the live edge one per line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..store import LogStore, Run
from .base import (
    Chunk,
    StreamInvalid,
    StreamMeta,
    StreamNotFound,
    StreamUnsupported,
    format_offset,
    parse_position,
)

PREFIX = "runs/"
BLOCKS = (1, 32, 1024)
BLOCK = BLOCKS[-1]
CONTENT_TYPE = "application/json"


def is_run_path(path: str) -> bool:
    return path.startswith(PREFIX)


def line_json(line: object) -> str:
    """A line as its stream message: the same compact JSON every time it is read."""
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False)


def block_end(units: int, size: int) -> int:
    return (units // size + 1) * size


def next_offset(stop: int, tail: int, blocks: tuple[int, ...] = BLOCKS) -> str:
    """The offset to read on from, hinting the largest complete block around it."""
    hint = max(i for i, size in enumerate(blocks) if i == 0 or tail >= block_end(stop, size))
    return format_offset(stop, hint)


@dataclass
class RunStreams:
    """Read-only streams over a LogStore; the run id is also the internal stream id."""

    store: LogStore
    blocks: tuple[int, ...] = BLOCKS

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

    def read(self, path: str, offset: str | None) -> Chunk:
        run = self.run_of(path)  # status first: a finished run's lines are all committed
        meta = self.meta(run)
        start, hint = (meta.tail, 0) if offset is None else parse_position(offset)
        if start > meta.tail or hint >= len(self.blocks):
            raise StreamInvalid("offset is beyond the run's last line, or not one of ours")
        wanted = block_end(start, self.blocks[hint])
        stop = min(wanted, meta.tail)
        lines = self.store.read(run.run_id, after=start, before=stop + 1, limit=stop - start)
        texts = tuple(line_json(line.to_json()) for line in lines)
        stop = start + len(texts)
        return Chunk(
            meta, start, stop, messages=texts, next=next_offset(stop, meta.tail, self.blocks)
        )

    def write(self, path: str) -> None:
        raise StreamUnsupported(
            "a run's stream is written by its worker: appends over HTTP are not enabled here"
        )
