"""``read_framed`` on every backend: the bytes ``frame_lines`` makes of ``read``, in bulk."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobtail.store.base import JSON_LINES, TEXT_LINES, Framing, LogLine, LogStore, frame_lines

SSE = Framing("id: r:", "\ndata: ", "\n\n")
T = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.fixture
def store(store_or_defaults: LogStore) -> LogStore:
    """Every backend, and LogStore's Python default of this method over SQLite."""
    return store_or_defaults


def test_framed_reads_match_the_python_encoding_of_read(store: LogStore) -> None:
    run = store.create_run("u1", "framed")
    assert store.start_run(run.run_id)
    lines = [
        LogLine(1, T, "INFO", 'quote " backslash \\ newline \n return \r \x01 \x7f'),
        LogLine(2, T.replace(microsecond=0), "WARNING", "caf\u00e9 \U0001f600 \u2028"),
        LogLine(3, T, "ERROR", "fields", {"step": 2, "ratio": 0.5, "nested": {"a": [1, None]}}),
        LogLine(4, T, "DEBUG", "last"),
    ]
    store.append(run.run_id, lines)
    for framing in (JSON_LINES, SSE):
        whole = store.read_framed(run.run_id, framing=framing)
        assert whole.data == frame_lines(store.read(run.run_id), framing)
        assert (whole.count, whole.last_seq) == (4, 4)
        warned = store.read_framed(run.run_id, min_level="WARNING", framing=framing)
        assert warned.data == frame_lines(store.read(run.run_id, min_level="WARNING"), framing)
        assert (warned.count, warned.last_seq) == (2, 3)
        page = store.read_framed(run.run_id, after=1, limit=2, before=4, framing=framing)
        assert page.data == frame_lines(store.read(run.run_id, 1, 2, before=4), framing)
        assert store.read_framed(run.run_id, after=4, framing=framing).count == 0
    assert frame_lines(store.read(run.run_id, limit=1), SSE).startswith(b'id: r:1\ndata: {"seq":1,')


def test_framed_text_is_the_download_line_by_line(store: LogStore) -> None:
    """The text download's lines, built by the store: milliseconds cut (not rounded), a zero
    fraction written out, levels padded to 8 (longer ones kept whole), messages as they are."""
    run = store.create_run("u1", "text")
    assert store.start_run(run.run_id)
    store.append(
        run.run_id,
        [
            LogLine(1, T, "INFO", "first"),
            LogLine(2, T.replace(microsecond=0), "WARNING", "caf\u00e9 \U0001f600 \x1b[31mred"),
            LogLine(3, T.replace(microsecond=999_999), "CRITICAL", "a\nb\tc"),
            LogLine(4, T.replace(microsecond=1), "VERBOSE_LEVEL", "long level"),
            LogLine(5, T, "DEBUG", ""),
        ],
    )
    whole = store.read_framed(run.run_id, framing=TEXT_LINES)
    assert whole.data == frame_lines(store.read(run.run_id), TEXT_LINES)
    assert whole.data.decode().split("\n")[:4] == [
        "2026-01-02T03:04:05.678+00:00 INFO     first",
        "2026-01-02T03:04:05.000+00:00 WARNING  caf\u00e9 \U0001f600 \x1b[31mred",
        "2026-01-02T03:04:05.999+00:00 CRITICAL a",
        "b\tc",
    ]
    assert (whole.count, whole.last_seq) == (5, 5)
    assert whole.data.endswith(
        b"05.000+00:00 VERBOSE_LEVEL long level\n2026-01-02T03:04:05.678+00:00 DEBUG    \n"
    )
    warned = store.read_framed(
        run.run_id, after=1, limit=2, min_level="WARNING", framing=TEXT_LINES
    )
    assert warned.data == frame_lines(store.read(run.run_id, 1, 2, "WARNING"), TEXT_LINES)
    assert (warned.count, warned.last_seq) == (2, 3)
