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
from datetime import datetime

from ..store import LogLine, LogStore, Run, RunStatus
from ..store.base import RunFencedError, SeqGapError, normalize_level, utcnow
from .base import (
    Appended,
    AppendRequest,
    Chunk,
    Producer,
    SequenceGapError,
    StaleEpochError,
    StreamClosedError,
    StreamConflict,
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
class RunUnclaimed(StreamConflict):
    """A producer write to a run no worker has claimed yet (409, ``Jobtail-Run-Status:
    queued``): its lines, heartbeats and close wait for a claim."""

    run_id: str
    epoch: int

    def __str__(self) -> str:
        return (
            f"run {self.run_id} is queued: claim it first (an empty POST with Producer-Epoch:"
            f" {self.epoch + 1}, Producer-Seq: 0, Jobtail-Heartbeat: true), then write at"
            " that epoch"
        )


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
        extra = (
            ("Jobtail-Run-Status", run.status.value),
            ("Jobtail-Run-Epoch", str(run.epoch)),
            ("Jobtail-Upload-Id", run.upload_id),
            ("Jobtail-Service", run.service_name),
        )
        return StreamMeta(run.run_id, CONTENT_TYPE, run.last_seq, not run.active, extra=extra)

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

    def write(self, path: str, request: AppendRequest, heartbeat: bool = False) -> Appended:
        """A worker's batch of lines (or heartbeat, or end) onto the store's fenced writes.

        ``Producer-Epoch`` is the run's claim epoch; the run's epoch + 1 with ``Producer-Seq``
        0 claims a queued run. At the queued run's own epoch (0) anything else (a line, a
        heartbeat, a close) is refused with ``RunUnclaimed`` (409): no writer owns that epoch
        yet. A write that claimed it implicitly would have to move it to epoch 1, which the
        protocol's producer did not send (its next write at epoch 0 would be stale) and which
        is the epoch of the real worker's own claim (found taken: that worker would not run).
        Lines carry their ``seq`` and the store's append is idempotent on it, so
        ``Producer-Seq`` is the seq before the batch: a retry is a no-op (204), a gap is refused
        (409 naming the expected seq), a stale epoch is 403 and a finished run 409 with
        ``Stream-Closed``. Closing stores the final lines and status in one transaction.
        A claim is not a duplicate; a claim that lost the race to another worker is, at the
        winner's epoch, indistinguishable from the winner's heartbeat and is one."""
        parts = path[len(PREFIX) :].split("/")
        if len(parts) != 1 or request.producer is None:
            raise StreamUnsupported("write to runs/<run_id> with Producer-Id/-Epoch/-Seq headers")
        producer = request.producer
        found = self.run_of(path)
        run = self._owned(found, producer)
        try:
            if heartbeat and not request.body and not request.close:
                self.store.heartbeat(run.run_id, epoch=producer.epoch)
                claimed = run.epoch != found.epoch  # this request claimed it: not a duplicate
                return Appended(self.meta(run), duplicate=not claimed, producer=producer)
            lines = parse_lines(request.body) if request.body else []
            if request.close:
                closed = self.store.finish_run(
                    run.run_id,
                    request.status,
                    request.error,
                    lines=lines,
                    epoch=producer.epoch,
                    omitted=request.omitted,
                )
                return Appended(self.meta(self.run_of(path)), not closed, producer)
            before = run.last_seq
            last = self.store.append(run.run_id, lines, epoch=producer.epoch)
        except RunFencedError as exc:
            if exc.reason == "closed":
                raise StreamClosedError(format_offset(self.run_of(path).last_seq)) from exc
            raise StaleEpochError(exc.epoch or producer.epoch + 1) from exc
        except SeqGapError as exc:
            raise SequenceGapError(exc.expected - 1, lines[0].seq - 1 if lines else 0) from exc
        meta = StreamMeta(run.run_id, CONTENT_TYPE, last, closed=False)
        return Appended(meta, duplicate=last == before, producer=producer)

    def _owned(self, run: Run, producer: Producer) -> Run:
        """The run, claimed for this producer's epoch if it asks to claim a queued run; a
        queued run takes nothing else (no writer owns its epoch yet)."""
        if producer.epoch == run.epoch + 1 and run.status is RunStatus.QUEUED:
            if producer.seq != 0:
                raise StreamInvalid("a claim (Producer-Epoch = run epoch + 1) starts at seq 0")
            claimed = self.store.claim_run(run.run_id)
            if claimed is None or claimed.epoch != producer.epoch:
                raise StaleEpochError(claimed.epoch if claimed else run.epoch)
            return claimed
        if producer.epoch != run.epoch:
            raise StaleEpochError(run.epoch)
        if run.status is RunStatus.QUEUED:
            raise RunUnclaimed(run.run_id, run.epoch)
        return run


def parse_lines(body: bytes) -> list[LogLine]:
    """A batch body: a JSON array (or one object) of ``{seq, log_level, message, fields?,
    timestamp?}``; a missing timestamp is the time of arrival."""
    try:
        value = json.loads(body)
        items = value if isinstance(value, list) else [value]
        return [
            LogLine(
                int(item["seq"]),
                datetime.fromisoformat(item["timestamp"]) if item.get("timestamp") else utcnow(),
                normalize_level(str(item.get("log_level", "INFO"))),
                str(item["message"]),
                item.get("fields") or None,
            )
            for item in items
        ]
    except (ValueError, TypeError, KeyError) as exc:
        raise StreamInvalid(
            f"a run's lines are JSON objects with seq, log_level and message: {exc}"
        ) from exc
