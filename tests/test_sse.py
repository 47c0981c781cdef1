"""The SSE mapping is pure: checked against the exact bytes on the wire."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobtail.store.base import LogLine, Run, RunStatus
from jobtail.tail import EndEvent, LinesEvent, StatusEvent, WindowEndEvent
from jobtail.web.sse import encode, parse_event_id

T = datetime(2026, 11, 24, 12, 0, 0, 123000, tzinfo=UTC)
RUN = Run("r1", "up", "pydantic", RunStatus.SUCCEEDED, T, last_seq=7)


def line(message: str, **fields: object) -> LinesEvent:
    return LinesEvent((LogLine(3, T, "INFO", message, fields or None),))


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            line("hello"),
            b'id: r1:3\ndata: {"seq":3,"timestamp":"2026-11-24T12:00:00.123000+00:00",'
            b'"log_level":"INFO","message":"hello"}\n\n',
        ),
        (
            line("two\nlines\r\nand\rreturns"),
            b'id: r1:3\ndata: {"seq":3,"timestamp":"2026-11-24T12:00:00.123000+00:00",'
            b'"log_level":"INFO","message":"two\\nlines\\r\\nand\\rreturns"}\n\n',
        ),
        (
            line("caf\u00e9 \u2603", step=2),
            '{"seq":3,"timestamp":"2026-11-24T12:00:00.123000+00:00","log_level":"INFO",'
            '"message":"caf\u00e9 \u2603","fields":{"step":2}}'.join(
                ["id: r1:3\ndata: ", "\n\n"]
            ).encode(),
        ),
        (
            StatusEvent(Run("r1", "up", "pydantic", RunStatus.RUNNING, T, last_seq=2)),
            b'event: status\ndata: {"run_id":"r1","status":"running","last_seq":2}\n\n',
        ),
        (
            EndEvent(RUN),
            b'id: r1:7\nevent: end\ndata: {"run_id":"r1","status":"succeeded","last_seq":7}\n\n',
        ),
        (
            WindowEndEvent(5),
            b": window closed: resume with Last-Event-ID\nid: r1:5\nretry: 1000\n\n",
        ),
    ],
)
def test_wire_bytes(event: object, expected: bytes) -> None:
    assert encode(event, "r1") == expected  # type: ignore[arg-type]


def test_a_batch_of_lines_is_consecutive_events() -> None:
    batch = LinesEvent(tuple(LogLine(n, T, "INFO", f"m{n}") for n in (4, 5)))
    wire = encode(batch, "r1").decode()
    assert wire.count("\n\n") == 2 and wire.index("id: r1:4") < wire.index("id: r1:5")


def test_framing_survives_hostile_messages() -> None:
    """Whatever the message, one event is exactly one data line and one blank line ends it."""
    hostile = "a\n\nb\r\rc\x00\u2028" + "x" * 100_000
    wire = encode(line(hostile), "r1").decode()
    body = wire.split("\n")
    assert body[0] == "id: r1:3" and body[1].startswith("data: ") and body[2:] == ["", ""]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("r1:0", ("r1", 0)), ("abc.D_e-f:42", ("abc.D_e-f", 42)), (" r:9 ", ("r", 9))],
)
def test_parse_event_id(value: str, expected: tuple[str, int]) -> None:
    assert parse_event_id(value) == expected


@pytest.mark.parametrize("value", ["", "r1", "r1:", ":3", "r1:-1", "r1:x", "../x:1", "r1:3:4"])
def test_parse_event_id_refuses(value: str) -> None:
    with pytest.raises(ValueError, match="Last-Event-ID"):
        parse_event_id(value)
