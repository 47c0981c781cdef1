"""The rest of the SSE mapping, byte for byte: a failed run's end names its error, a failing store
is a ``status`` event (or a comment before the run was read), a window's retry is the caller's,
a byte budget keeps whole events only, and anything else is refused by name."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from jobtail.store.base import LogLine, Run, RunStatus
from jobtail.tail import EndEvent, LinesEvent, StoreDownEvent, WindowEndEvent
from jobtail.web.sse import _ping, encode, encode_within, line_event, to_sse

T = datetime(2026, 11, 24, 12, 0, 0, 123000, tzinfo=UTC)
FAILED = Run("r1", "up", "pydantic", RunStatus.FAILED, T, last_seq=7, error="boom")


def frame(seq: int, message: str) -> bytes:
    return (
        f'id: r1:{seq}\ndata: {{"seq":{seq},"timestamp":"2026-11-24T12:00:00.123000+00:00",'
        f'"log_level":"INFO","message":"{message}"}}\n\n'
    ).encode()


def test_the_end_of_a_failed_run_names_its_error() -> None:
    assert encode(EndEvent(FAILED), "r1") == (
        b'id: r1:7\nevent: end\ndata: {"run_id":"r1","status":"failed","last_seq":7,'
        b'"error":"boom"}\n\n'
    )


def test_a_failing_store_is_a_status_event_with_the_last_known_run() -> None:
    assert encode(StoreDownEvent(FAILED, 3, 0.4), "r1") == (
        b'event: status\ndata: {"run_id":"r1","status":"failed","last_seq":7,'
        b'"store":"unreachable","detail":"the log store is unreachable; retrying (attempt 3, '
        b'next in 0.4 s)","retry_in":0.4}\n\n'
    )


def test_a_failing_store_before_the_run_was_read_is_a_comment() -> None:
    assert encode(StoreDownEvent(None, 1, 0.1), "r1") == (
        b": the log store is unreachable; retrying (attempt 1, next in 0.1 s)\n\n"
    )


def test_a_closed_window_carries_the_callers_retry() -> None:
    assert encode(WindowEndEvent(5), "r1", retry_ms=2500) == (
        b": window closed: resume with Last-Event-ID\nid: r1:5\nretry: 2500\n\n"
    )
    assert to_sse(WindowEndEvent(5), "r1").encode() == (  # a second by default
        b": window closed: resume with Last-Event-ID\nid: r1:5\nretry: 1000\n\n"
    )


def test_one_line_as_one_event() -> None:
    line = LogLine(3, T, "INFO", "hi")
    assert line_event("r1", line).encode() == frame(3, "hi")


BATCH = LinesEvent(tuple(LogLine(n, T, "INFO", "m" * 10) for n in (4, 5, 6)))
ONE = len(frame(4, "m" * 10))


@pytest.mark.parametrize(
    ("budget", "first", "seqs"),
    [
        (ONE * 3, False, [4, 5, 6]),
        (ONE * 2, False, [4, 5]),  # exactly two events fit
        (ONE * 2 - 1, False, [4]),  # one byte short of the second: never half an event
        (ONE - 1, False, []),
        (ONE - 1, True, [4]),  # the first event of a window goes whatever its size
        (5, True, [4]),
    ],
)
def test_a_byte_budget_keeps_whole_events(budget: int, first: bool, seqs: list[int]) -> None:
    if first:
        data, last = encode_within(BATCH, "r1", budget, first=True)
    else:  # not the first of its window by default
        data, last = encode_within(BATCH, "r1", budget)
    assert data == b"".join(frame(seq, "m" * 10) for seq in seqs)
    assert last == (seqs[-1] if seqs else None)


def test_anything_else_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"^not a tail event: 'nope'$"):
        to_sse("nope", "r1")  # type: ignore[arg-type]


def test_the_keep_alive_comment_names_the_time() -> None:
    ping = _ping().decode()
    assert re.fullmatch(r": ping - \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\+00:00\n\n", ping), ping
