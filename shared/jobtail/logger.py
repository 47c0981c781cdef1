"""RunLogger: a job's log, written through to the store one committed line at a time.

By default each call numbers its line and commits it before returning, so whatever a viewer has
seen is durable, and a viewer arriving later sees the same lines. A store that is down does not
raise into the job: unsent lines stay queued in order and every later call (and ``finish`` /
``close``) retries them with backoff; appends are idempotent on ``(run_id, seq)``, so a retry
after a lost reply duplicates nothing. What does raise is a *refusal*: the run was closed or
claimed by a newer writer (``RunFencedError``), and the job must stop, because nothing it writes
can land any more. A claimed run (the logger holds its epoch) that the store no longer has was
purged under a stalled writer: that is refused the same way, as closed ("purged").

Text is made storable where it is made: lone surrogates become visible escapes and long text is
cut and marked (``storable``, re-exported here), so one odd line can never block the lines after
it. ``RunLogHandler`` (standard ``logging`` into a run) is ``log_handler``'s, re-exported here.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

from .log_handler import RunLogHandler as RunLogHandler
from .storable import MAX_LINE_CHARS as MAX_LINE_CHARS
from .storable import TRUNCATION_MARKER as TRUNCATION_MARKER
from .storable import storable as storable
from .storable import storable_fields as storable_fields
from .storable import truncate as truncate
from .store.base import (
    LogLine,
    LogStore,
    RunFencedError,
    RunNotFoundError,
    RunStatus,
    SeqGapError,
    StoreError,
    normalize_level,
    utcnow,
)
from .tracebacks import format_exception

log = logging.getLogger(__name__)

_LEVEL_NAMES = {name: name for name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")}
"""The levels RunLogger's own methods pass, already normal: no per-line work for them."""


class RunLogger:
    """Writes one run's lines. One writer per run: seq numbering lives here.

    ``epoch`` is the writer's claim (``LogStore.claim_run``): with it, the store refuses this
    logger once the run was claimed again or closed by someone else (the janitor).

    Past ``max_lines`` the log keeps its head and its tail: after the head a WARNING says the
    cap was reached, the next lines are held in memory (the last ``keep_tail`` of them) and
    counted, and ``finish``/``close`` write "N lines omitted" then the kept tail, so the end of
    a huge log (where the error is) is never lost; ``omitted`` is recorded with the run's end.

    ``write_behind=seconds`` trades "committed when log() returns" for throughput: lines are
    batched and committed by a background thread at most that many seconds later (and at
    once when ``max_pending`` are waiting, which also holds log() back: the buffer is bounded).
    ``flush()``, ``finish()`` and ``close()`` commit everything pending.
    """

    def __init__(
        self,
        store: LogStore,
        run_id: str,
        *,
        start_seq: int | None = None,
        epoch: int | None = None,
        max_line_chars: int = MAX_LINE_CHARS,
        max_lines: int | None = None,
        keep_tail: int = 1000,
        retry_delays: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
        sleep: Callable[[float], None] = time.sleep,
        write_behind: float | None = None,
        max_pending: int = 10_000,
    ) -> None:
        self.store = store
        self.run_id = run_id
        if start_seq is None:
            run = store.get_run(run_id)
            start_seq = run.last_seq if run else 0
        self.seq = start_seq
        self.epoch = epoch
        self.max_line_chars = max_line_chars
        self.max_lines = max_lines
        room = (max_lines - 3) // 2 if max_lines is not None else 0
        self.keep_tail = max(0, min(keep_tail, room))
        self._tail: deque[tuple[str, str, dict[str, Any]]] = deque(maxlen=self.keep_tail)
        self.omitted = 0
        """Lines dropped past the cap so far (not counting the kept tail)."""
        self._reported = 0  # of those, already told in an "omitted" line
        self.retry_delays = retry_delays
        self._sleep = sleep
        self._pending: list[LogLine] = []
        self._waiting_since: float | None = None  # when lines started waiting for the store
        self._tries, self._next_try = 0, 0.0  # during that outage: tries so far, when the next
        self._lock = threading.Lock()
        self._capped = False
        self.refused: StoreError | None = None
        """The refusal that fenced this logger off its run, once one came."""
        self._ended: RunFencedError | None = None  # set once this logger stored the run's end
        self.write_behind = write_behind
        self.max_pending = max_pending
        self._closed = threading.Event()
        self._flusher: threading.Thread | None = None
        if write_behind is not None:
            if write_behind <= 0:
                raise ValueError("write_behind must be a positive number of seconds")
            self._flusher = threading.Thread(
                target=self._flush_now_and_then, name=f"jobtail-flush-{run_id}", daemon=True
            )
            self._flusher.start()

    # -- the API jobs use -----------------------------------------------------------------
    def debug(self, message: str, **fields: Any) -> None:
        self.log("DEBUG", message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self.log("INFO", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.log("WARNING", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.log("ERROR", message, **fields)

    def critical(self, message: str, **fields: Any) -> None:
        self.log("CRITICAL", message, **fields)

    def exception(self, message: str, **fields: Any) -> None:
        """ERROR line carrying the current exception's traceback (server paths shortened)."""
        current = sys.exception()
        if current is not None:
            message = f"{message}\n{format_exception(current)}"
        self.log("ERROR", message, **fields)

    def progress(self, pct: float, message: str = "", **fields: Any) -> None:
        """An INFO line with ``fields.progress`` (0-100) for progress bars."""
        pct = max(0.0, min(100.0, float(pct)))
        self.log("INFO", message or f"{pct:.0f}%", progress=pct, **fields)

    def log(self, level: str, message: str, **fields: Any) -> int | None:
        """Number one line and try to commit it (with everything pending) before returning.

        Returns its seq, or None once the per-run line cap was reached. If the store is down
        the line stays pending, in order, for the next call; while lines wait, a call tries the
        store once per backoff step (``retry_delays``, without sleeping), so a job goes on
        logging through an outage, until ``max_pending`` lines wait: then each call waits out
        the whole backoff (the buffer is bounded). If the run refused this writer, raises
        RunFencedError.
        """
        with self._lock:
            self._raise_if_refused()
            if self._ended is not None:  # a line after our own end: refused here, no store trip
                raise self._ended
            line = self._make_line(level, str(message), fields)
            if line is None:
                return None
            self._pending.append(line)
            behind = self._flusher is not None and not self._closed.is_set()
            if len(self._pending) >= self.max_pending and self._waiting_since is not None:
                self._flush(self.retry_delays)  # bounded: the job waits for the store now
            elif not behind or len(self._pending) >= self.max_pending:
                if self._waiting_since is None:
                    self._flush(self.retry_delays[:1])
                elif time.monotonic() >= self._next_try:  # an outage: one try per backoff step
                    self._flush(())
            return None if self._capped else line.seq

    def flush(self) -> bool:
        """Commit what is pending now, retrying with the full backoff; True if all landed."""
        with self._lock:
            self._raise_if_refused()
            return self._flush(self.retry_delays)

    def close(self) -> bool:
        """Stop the write-behind thread, if any, write the kept tail, and flush; True if every
        line landed."""
        self._stop_flusher()
        with self._lock:
            self._raise_if_refused()
            if self._ended is not None:
                return True  # the end stored everything
            self._drain_tail()
            return self._flush(self.retry_delays)

    def finish(
        self,
        status: RunStatus,
        message: str,
        *,
        level: str | None = None,
        error: str | None = None,
        fields: dict[str, Any] | None = None,
        timeout: float = 0.0,
    ) -> bool:
        """End the run: every pending line, then ``message`` as the last line, committed
        together with the final status (the run's ``end``), retried with backoff for up to
        ``timeout`` seconds while the store is down. The last line is written even past the
        line cap. True once the end is stored; RunFencedError if the run refused us.
        """
        self._stop_flusher()
        level = level or ("INFO" if status is RunStatus.SUCCEEDED else "ERROR")
        with self._lock:
            self._raise_if_refused()
            self._drain_tail()
            self._pending.append(self._number(level, message, dict(fields or {})))  # always kept
            deadline = time.monotonic() + timeout
            attempt = 0
            while True:
                try:
                    closed = self.store.finish_run(
                        self.run_id,
                        status,
                        error,
                        lines=self._pending,
                        epoch=self.epoch,
                        omitted=self.omitted,
                    )
                    if not closed and self._purged():  # a store may say False for no run
                        raise RunNotFoundError(self.run_id)
                except (RunFencedError, SeqGapError) as exc:
                    self._refuse(exc)
                    raise
                except (StoreError, OSError) as exc:  # the store is down: wait for it
                    self._refuse_if_purged(exc)
                    delay = self.retry_delays[min(attempt, len(self.retry_delays) - 1)]
                    if time.monotonic() + delay > deadline:
                        log.warning("run %s: its end is not yet stored: %s", self.run_id, exc)
                        return False
                    self._sleep(delay)
                    attempt += 1
                else:
                    self._pending.clear()
                    self._ended = RunFencedError(self.run_id, "closed", status=status.value)
                    return True

    def _stop_flusher(self) -> None:
        self._closed.set()
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join()

    def _flush_now_and_then(self) -> None:
        assert self.write_behind is not None
        while not self._closed.wait(self.write_behind):
            with self._lock:
                if self.refused is None:
                    self._flush(self.retry_delays[:1])

    def __enter__(self) -> RunLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.refused is None:
            self.close()

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- internals ------------------------------------------------------------------------
    def _raise_if_refused(self) -> None:
        if self.refused is not None:
            raise self.refused

    def _refuse(self, exc: StoreError) -> None:
        """Fenced off: the pending lines can never land; later calls raise at once."""
        self.refused = exc
        if self._pending:
            log.warning(
                "run %s refused this writer (%s): %d lines not stored",
                self.run_id,
                exc,
                len(self._pending),
            )
        self._pending.clear()

    def _refuse_if_purged(self, exc: BaseException) -> None:
        """Refuse for good, as closed, a claimed run the store no longer has: it was purged
        (without an epoch the run's row may just not be visible yet: its lines wait)."""
        if isinstance(exc, RunNotFoundError) and self.epoch is not None:
            purged = RunFencedError(self.run_id, "closed", epoch=self.epoch, status="purged")
            self._refuse(purged)
            raise purged from exc

    def _purged(self) -> bool:
        """Whether the run is gone (a False end with no exception: a retried close, or no run
        at all); an unreadable store counts as not gone. For a claimed run that is for good
        (``_refuse_if_purged``); without a claim the run may not be visible yet, so the end
        waits like any line."""
        try:
            return self.store.get_run(self.run_id) is None
        except (StoreError, OSError):
            return False

    def _make_line(self, level: str, message: str, fields: dict[str, Any]) -> LogLine | None:
        """The next line, or None past the cap (then it is held for the tail, or counted)."""
        if self._capped:
            if len(self._tail) == self.keep_tail:
                self.omitted += 1  # the oldest held line (or this one, with no tail) drops out
            if self.keep_tail:
                self._tail.append((level, message, fields))
            return None
        reserved = 2 if self.keep_tail else 1  # the cap's warning, and the "omitted" line
        if self.max_lines is not None and self.seq >= self.max_lines - self.keep_tail - reserved:
            self._capped = True
            warning = f"line limit of {self.max_lines} reached: later lines are dropped" + (
                f", except the last {self.keep_tail}, shown at the end" if self.keep_tail else ""
            )
            cap = {"limit": self.max_lines, "kept_tail": self.keep_tail}
            line = self._number("WARNING", warning, cap)
            self._make_line(level, message, fields)  # this call's own line: held or counted
            return line
        return self._number(level, message, fields)

    def _drain_tail(self) -> None:
        """Queue "N lines omitted" and the kept tail, numbered after the head. Holds the lock."""
        news = self.omitted - self._reported
        if news:
            text = f"… {news:,} lines omitted (line limit of {self.max_lines}) …"
            self._pending.append(self._number("WARNING", text, {"omitted": news}))
            self._reported = self.omitted
        while self._tail:
            self._pending.append(self._number(*self._tail.popleft()))

    def _number(self, level: str, message: str, fields: dict[str, Any]) -> LogLine:
        message, dropped = truncate(storable(message), self.max_line_chars)
        if fields:
            fields, dropped_in_fields = storable_fields(fields, self.max_line_chars)
            if dropped_in_fields:
                fields["truncated_fields"] = dropped_in_fields
        if dropped:
            fields = {**fields, "truncated": dropped}
        self.seq += 1
        return LogLine(
            seq=self.seq,
            timestamp=utcnow(),
            log_level=_LEVEL_NAMES.get(level) or normalize_level(storable(level)),
            message=message,
            fields=fields or None,
        )

    def _flush(self, delays: tuple[float, ...]) -> bool:
        """Append all pending lines, in order; keep them on failure. Caller holds the lock."""
        for attempt in range(len(delays) + 1):
            if not self._pending:
                return True
            try:
                self.store.append(self.run_id, self._pending, epoch=self.epoch)
            except (RunFencedError, SeqGapError) as exc:
                self._refuse(exc)
                raise
            except (StoreError, OSError) as exc:  # down or busy: keep the lines, retry
                self._refuse_if_purged(exc)
                if attempt == len(delays):
                    step = self.retry_delays[min(self._tries, len(self.retry_delays) - 1)]
                    self._tries += 1
                    self._next_try = time.monotonic() + step
                    if self._waiting_since is None:  # once per outage, not once per line
                        self._waiting_since = time.monotonic()
                        log.warning(
                            "run %s: lines not yet stored (they wait in order): %s",
                            self.run_id,
                            exc,
                        )
                    return False
                self._sleep(delays[attempt])
            else:
                count = len(self._pending)
                self._pending.clear()
                if self._waiting_since is not None:
                    waited = time.monotonic() - self._waiting_since
                    self._waiting_since, self._tries = None, 0
                    log.warning(
                        "run %s: the store is back: %d waiting lines stored after %.1f s",
                        self.run_id,
                        count,
                        waited,
                    )
        return not self._pending
