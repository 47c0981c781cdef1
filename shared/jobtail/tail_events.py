"""What a tail yields (``Tailer.follow``): a run's lines, raw or in a viewer's framing, its status,
its end, the end of a window, a failing store. ``web.sse`` maps each to wire bytes."""

from __future__ import annotations

from dataclasses import dataclass

from .store.base import LogLine, Run


@dataclass(frozen=True, slots=True)
class LinesEvent:
    """Consecutive lines in seq order: batched so a replay is a few writes, not one per line."""

    lines: tuple[LogLine, ...]


@dataclass(frozen=True, slots=True)
class EncodedLinesEvent:
    """Consecutive lines already in the viewer's framing (``follow(framing=...)``): ``count``
    lines, the last of seq ``last_seq``. Live batches are the same bytes object for every viewer
    of the same view."""

    data: bytes
    count: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class StatusEvent:
    run: Run


@dataclass(frozen=True, slots=True)
class EndEvent:
    """The run is finished and every line up to ``run.last_seq`` was delivered."""

    run: Run


@dataclass(frozen=True, slots=True)
class WindowEndEvent:
    """The stream ends before the run did (its window closed, or its follower could not go on):
    resume with the last id."""

    cursor: int


@dataclass(frozen=True, slots=True)
class StoreDownEvent:
    """A store read failed; it is retried in ``retry_in`` seconds. ``run`` is the last known
    state of the run (None before it was first read)."""

    run: Run | None
    attempt: int
    retry_in: float


TailEvent = (
    LinesEvent | EncodedLinesEvent | StatusEvent | StoreDownEvent | EndEvent | WindowEndEvent
)


class StoreUnavailableError(Exception):
    """The store kept failing for longer than the tail waits for it."""
