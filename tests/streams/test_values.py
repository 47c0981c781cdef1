"""The stream value types clients see through headers and bodies: offsets, content types, what
a read chunk reports, and the words of each refusal."""

from __future__ import annotations

import pytest

from jobtail.streams.base import (
    Chunk,
    SequenceGapError,
    StaleEpochError,
    StreamClosedError,
    StreamInvalid,
    StreamMeta,
    format_offset,
    is_json,
    is_text,
    media_type,
    parse_offset,
    parse_position,
)


def test_offsets_are_sixteen_digit_pairs() -> None:
    assert format_offset(42) == "0000000000000042_0000000000000000"
    assert format_offset(7, 2) == "0000000000000007_0000000000000002"
    assert parse_position(format_offset(123, 1)) == (123, 1)
    assert parse_position("-1") == (0, 0)
    assert parse_offset(format_offset(9, 2)) == 9
    assert parse_offset("-1") == 0


@pytest.mark.parametrize(
    "text",
    ["now", "", "-2", "42", "0000000000000042", "0000000000000042_000000000000000",
     "x0000000000000042_0000000000000000", "0000000000000042_0000000000000000\nx"],
)  # fmt: skip
def test_a_malformed_offset_is_refused_with_the_forms_to_use(text: str) -> None:
    with pytest.raises(StreamInvalid) as refused:
        parse_position(text)
    assert str(refused.value) == f"malformed offset {text!r}: use -1, now or a Stream-Next-Offset"


def test_content_types_compare_by_media_type() -> None:
    assert media_type(" Text/Plain ; charset=utf-8; x=y") == "text/plain"
    assert is_json("Application/JSON; charset=utf-8")
    assert not is_json("application/json-seq") and not is_json("text/json")
    assert is_text("application/json") and is_text("TEXT/csv")
    assert not is_text("application/octet-stream") and not is_text("image/text")


def test_refusals_say_what_is_wrong() -> None:
    assert str(StreamClosedError(format_offset(3))) == "stream is closed: no further appends"
    assert str(StaleEpochError(4)) == "producer epoch is stale: the current epoch is 4"
    gap = SequenceGapError(2, 5)
    assert str(gap) == "producer sequence gap: expected 2, received 5"


def test_a_chunk_reports_where_it_stops_and_whether_the_stream_ended() -> None:
    live = StreamMeta("id", "text/plain", tail=5, closed=False)
    closed = StreamMeta("id", "text/plain", tail=5, closed=True)
    assert live.next_offset == format_offset(5) and not live.json
    partial = Chunk(closed, 0, 3, data=b"abc")
    assert partial.next_offset == format_offset(3)
    assert not partial.up_to_date and not partial.closed and not partial.empty
    end = Chunk(closed, 3, 5, data=b"de")
    assert end.up_to_date and end.closed and end.body() == b"de"
    assert Chunk(live, 5, 5).up_to_date and not Chunk(live, 5, 5).closed
    assert Chunk(live, 5, 5).empty
    hinted = Chunk(live, 0, 1, data=b"a", next=format_offset(1, 2))
    assert hinted.next_offset == format_offset(1, 2)


def test_a_json_chunk_is_one_array() -> None:
    meta = StreamMeta("id", "application/json; charset=utf-8", tail=2, closed=False)
    assert meta.json
    assert Chunk(meta, 0, 2, messages=('{"a":1}', "2")).body() == b'[{"a":1},2]'
    assert Chunk(meta, 2, 2).body() == b"[]"
