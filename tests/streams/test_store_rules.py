"""Each rule of the stream storage, refusal by refusal, on every backend (the ``streams``
fixture): what a client relies on when it creates, confirms, forks, appends to, closes, reads
and deletes a stream. ``test_store.py`` holds the transactional promises; this file the rules."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from jobtail.streams.base import (
    AppendRequest,
    CreateRequest,
    Expiry,
    Producer,
    SequenceGapError,
    StaleEpochError,
    StreamClosedError,
    StreamConflict,
    StreamGone,
    StreamInvalid,
    StreamNotFound,
    StreamStore,
    format_offset,
)

from .test_store import sql, text

PLAIN = "text/plain"
JSON = "application/json"
LATER = datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)
BOTH = "send Stream-TTL or Stream-Expires-At, not both"
NOT_ABOVE = "is not above the last '5'"
FORK_TYPE = "a fork's content type must match its source's"
EMPTY_ARRAY = "an empty JSON array appends nothing: send at least one message"
EMPTY_BODY = "empty body: send data, or Stream-Closed: true to close"
WRONG_TYPE = "content type 'text/html' does not match the stream's 'text/plain'"
NEW_EPOCH = "a new producer epoch must start at Producer-Seq 0"
NEGATIVE_SUB = "Stream-Fork-Sub-Offset must be a non-negative integer"
PAST_BOUNDARY = "Stream-Fork-Sub-Offset is past the next data boundary"
FORK_BEYOND = "Stream-Fork-Offset is beyond the source stream's tail"
REUSED = "stream 'src' was deleted; its path cannot be reused"
OTHER_CONFIG = "stream 'c' exists with another configuration"


def exactly(message: str) -> str:
    """The whole refusal, word for word: what a client is shown."""
    return f"^{re.escape(message)}$"


def put(streams: StreamStore, path: str, body: bytes, content_type: str = PLAIN) -> None:
    streams.append(path, AppendRequest(body, content_type))


def test_create_refuses_a_ttl_and_a_deadline_together(streams: StreamStore) -> None:
    both = CreateRequest(PLAIN, Expiry(ttl=60, expires_at=LATER))
    with pytest.raises(
        StreamInvalid, match=exactly("send Stream-TTL or Stream-Expires-At, not both")
    ):
        streams.create("both", both)
    with pytest.raises(StreamNotFound):
        streams.head("both")


def test_a_stream_made_without_a_content_type_holds_bytes(streams: StreamStore) -> None:
    created = streams.create("raw", CreateRequest(body=b"\x00\xff"))
    assert created.created and created.meta.content_type == "application/octet-stream"
    assert created.meta.tail == 2 and not created.meta.closed
    assert streams.head("raw").content_type == "application/octet-stream"
    other = streams.create("other", CreateRequest(PLAIN)).meta.stream_id
    assert created.meta.stream_id and streams.head("raw").stream_id == created.meta.stream_id
    assert other and other != created.meta.stream_id  # what ETags are made of
    assert text(streams, "raw") == b"\x00\xff"


def test_a_stream_keeps_its_deadline(streams: StreamStore) -> None:
    meta = streams.create("dated", CreateRequest(PLAIN, Expiry(expires_at=LATER))).meta
    assert meta.expiry == Expiry(None, LATER)
    assert streams.head("dated").expiry == Expiry(None, LATER)
    assert not streams.create("dated", CreateRequest(PLAIN, Expiry(expires_at=LATER))).created


def test_a_repeated_create_confirms_only_the_same_configuration(streams: StreamStore) -> None:
    first = streams.create("c", CreateRequest(PLAIN, Expiry(ttl=60), body=b"abc"))
    again = streams.create("c", CreateRequest("Text/Plain; charset=utf-8", Expiry(ttl=60)))
    assert first.created and not again.created
    assert again.meta.tail == 3 and again.meta.expiry.ttl == 60
    assert text(streams, "c") == b"abc"  # the confirming body is not written
    for other in (
        CreateRequest("text/html", Expiry(ttl=60)),
        CreateRequest(PLAIN, Expiry(ttl=61)),
        CreateRequest(PLAIN),
        CreateRequest(PLAIN, Expiry(expires_at=LATER)),
        CreateRequest(PLAIN, Expiry(ttl=60), closed=True),
        CreateRequest(PLAIN, Expiry(ttl=60), fork_from="c"),
    ):
        with pytest.raises(StreamConflict, match=exactly(OTHER_CONFIG)):
            streams.create("c", other)
    assert text(streams, "c") == b"abc"


def test_a_stream_created_closed_is_finished(streams: StreamStore) -> None:
    created = streams.create("done", CreateRequest(PLAIN, closed=True, body=b"all"))
    assert created.meta.closed and created.meta.tail == 3
    chunk = streams.read("done", "-1")
    assert chunk.data == b"all" and chunk.closed
    with pytest.raises(StreamClosedError) as refused:
        put(streams, "done", b"more")
    assert refused.value.next_offset == format_offset(3)
    closing = streams.append("done", AppendRequest(close=True))  # closing again: a no-op
    assert closing.duplicate and closing.meta.closed and closing.meta.tail == 3
    late = Producer("late", 0, 0)
    closing = streams.append("done", AppendRequest(close=True, producer=late))
    assert closing.duplicate and closing.producer == late and closing.meta.tail == 3
    assert not streams.create("done", CreateRequest(PLAIN, closed=True)).created


def test_json_bodies_are_stored_as_messages(streams: StreamStore) -> None:
    assert streams.create("j", CreateRequest(JSON, body=b"[]")).meta.tail == 0
    assert streams.create("blank", CreateRequest(JSON, body=b"  \n")).meta.tail == 0
    with pytest.raises(StreamInvalid, match="not valid JSON"):
        streams.create("bad", CreateRequest(JSON, body=b"{nope"))
    with pytest.raises(StreamInvalid, match=exactly(EMPTY_ARRAY)):
        streams.append("j", AppendRequest(b"[]", JSON))
    with pytest.raises(StreamInvalid, match="not valid JSON"):
        streams.append("j", AppendRequest(b"\xff", JSON))
    appended = streams.append("j", AppendRequest(b'{"a": 1}', JSON))
    assert appended.meta.tail == 1 and appended.meta.next_offset == format_offset(1)
    assert streams.append("j", AppendRequest('[[1, 2], "é x"]'.encode(), JSON)).meta.tail == 3
    chunk = streams.read("j", "-1")
    assert chunk.messages == ('{"a":1}', "[1,2]", '"é x"') and chunk.stop == 3
    assert chunk.body() == '[{"a":1},[1,2],"é x"]'.encode()
    assert streams.read("j", format_offset(2)).messages == ('"é x"',)


def test_appends_are_refused_for_what_they_lack(streams: StreamStore) -> None:
    with pytest.raises(StreamNotFound, match=exactly("no stream at 'nowhere'")):
        put(streams, "nowhere", b"x")
    streams.create("s", CreateRequest(PLAIN, body=b"ab"))
    with pytest.raises(StreamInvalid, match=exactly(EMPTY_BODY)):
        streams.append("s", AppendRequest())
    with pytest.raises(StreamConflict, match=exactly(WRONG_TYPE)):
        put(streams, "s", b"<p>", "text/html")
    assert streams.append("s", AppendRequest(b"c")).meta.tail == 3  # no type: the stream's
    assert streams.append("s", AppendRequest(b"d", "text/plain; charset=utf-8")).meta.tail == 4
    closed = streams.append("s", AppendRequest(content_type="text/html", close=True))
    assert closed.meta.closed and not closed.duplicate  # a bare close carries no data to type
    assert text(streams, "s") == b"abcd"


def test_stream_seq_must_rise(streams: StreamStore) -> None:
    streams.create("seq", CreateRequest(PLAIN))

    def send(body: bytes, seq: str | None) -> int:
        return streams.append("seq", AppendRequest(body, PLAIN, stream_seq=seq)).meta.tail

    assert send(b"a", "5") == 1
    for stale in ("5", "4", "10"):  # compared as strings: "10" sorts before "5"
        with pytest.raises(
            StreamConflict, match=f"^Stream-Seq '{stale}' is not above the last '5'$"
        ):
            send(b"x", stale)
    assert send(b"b", None) == 2  # no Stream-Seq: no check, the last one stays
    with pytest.raises(StreamConflict):
        send(b"x", "5")
    assert send(b"c", "6") == 3
    assert text(streams, "seq") == b"abc"


def test_producer_rules(streams: StreamStore) -> None:
    streams.create("p", CreateRequest(PLAIN))

    def send(producer: Producer, body: bytes = b"x") -> tuple[bool, Producer | None]:
        appended = streams.append("p", AppendRequest(body, PLAIN, producer=producer))
        return appended.duplicate, appended.producer

    with pytest.raises(SequenceGapError) as gap:
        send(Producer("a", 0, 2))
    assert (gap.value.expected, gap.value.received) == (0, 2)
    assert send(Producer("a", 3, 0)) == (False, Producer("a", 3, 0))
    assert send(Producer("a", 3, 1)) == (False, Producer("a", 3, 1))
    assert send(Producer("a", 3, 0)) == (True, Producer("a", 3, 1))  # the highest accepted
    retry = streams.append("p", AppendRequest(b"x", PLAIN, producer=Producer("a", 3, 1)))
    assert retry.duplicate and retry.meta.tail == 2 and not retry.meta.closed
    assert send(Producer("b", 0, 0)) == (False, Producer("b", 0, 0))  # producers are apart
    with pytest.raises(SequenceGapError) as gap:
        send(Producer("a", 3, 3))
    assert (gap.value.expected, gap.value.received) == (2, 3)
    with pytest.raises(StreamInvalid, match=exactly(NEW_EPOCH)):
        send(Producer("a", 4, 1))
    with pytest.raises(StaleEpochError) as stale:
        send(Producer("a", 2, 0))
    assert stale.value.epoch == 3
    assert send(Producer("a", 4, 0)) == (False, Producer("a", 4, 0))
    assert send(Producer("a", 4, 1)) == (False, Producer("a", 4, 1))
    assert text(streams, "p") == b"x" * 5


def test_a_closed_stream_takes_only_retries_of_its_close(streams: StreamStore) -> None:
    streams.create("c", CreateRequest(PLAIN))
    closer = Producer("w", 0, 0)
    closing = streams.append("c", AppendRequest(b"end", PLAIN, close=True, producer=closer))
    assert closing.meta.closed and not closing.duplicate and closing.meta.tail == 3
    retry = streams.append("c", AppendRequest(b"end", PLAIN, close=True, producer=closer))
    assert retry.duplicate and retry.producer == closer and retry.meta.tail == 3
    for late in (Producer("w", 0, 1), Producer("other", 0, 0), None):
        with pytest.raises(StreamClosedError) as refused:
            streams.append("c", AppendRequest(b"late", PLAIN, producer=late))
        assert refused.value.next_offset == format_offset(3)
    assert text(streams, "c") == b"end"


def test_a_close_without_a_producer_is_not_a_producers(streams: StreamStore) -> None:
    streams.create("c", CreateRequest(PLAIN))
    streams.append("c", AppendRequest(b"end", PLAIN, close=True))
    with pytest.raises(StreamClosedError):  # its retry with data cannot be told from a late write
        streams.append("c", AppendRequest(b"end", PLAIN, close=True))
    with pytest.raises(StreamClosedError):
        streams.append("c", AppendRequest(b"end", PLAIN, close=True, producer=Producer("w", 0, 0)))


def test_writes_wake_listeners_and_retries_do_not(
    streams: StreamStore, request: pytest.FixtureRequest
) -> None:
    if getattr(streams, "listening", None) is not None:  # PostgreSQL: without its NOTIFY echo
        from jobtail.streams.postgres import PostgresStreams

        streams = PostgresStreams(request.getfixturevalue("pg_url"), listen=False)
        request.addfinalizer(streams.close)
    heard: list[str] = []
    streams.listeners.add(heard.append)
    streams.create("w", CreateRequest(PLAIN))
    streams.create("w", CreateRequest(PLAIN))  # confirmed: nothing changed
    producer = Producer("p", 0, 0)
    streams.append("w", AppendRequest(b"x", PLAIN, producer=producer))
    assert heard == ["w", "w"]
    streams.append("w", AppendRequest(b"x", PLAIN, producer=producer))  # a retry
    assert heard == ["w", "w"]
    streams.delete("w")
    assert heard == ["w", "w", "w"]


def test_a_deleted_stream_is_gone_and_its_path_free(streams: StreamStore) -> None:
    with pytest.raises(StreamNotFound):
        streams.delete("nowhere")
    streams.create("d", CreateRequest(PLAIN, body=b"old"))
    streams.delete("d")
    with pytest.raises(StreamNotFound):
        streams.read("d", "-1")
    with pytest.raises(StreamNotFound):
        streams.delete("d")
    assert streams.create("d", CreateRequest(JSON)).created
    assert streams.head("d").tail == 0


def test_a_soft_deleted_source_refuses_everything_but_its_forks_reads(
    streams: StreamStore,
) -> None:
    streams.create("src", CreateRequest(PLAIN, body=b"abc"))
    streams.create("fork", CreateRequest(fork_from="src"))
    streams.delete("src")
    for call in (
        lambda: streams.head("src"),
        lambda: streams.read("src", "-1"),
        lambda: put(streams, "src", b"x"),
        lambda: streams.delete("src"),
    ):
        with pytest.raises(StreamGone):
            call()
    with pytest.raises(StreamConflict, match=exactly(REUSED)):
        streams.create("src", CreateRequest(PLAIN))
    with pytest.raises(StreamConflict, match=exactly("fork source 'src' was deleted")):
        streams.create("fork2", CreateRequest(fork_from="src"))
    with pytest.raises(StreamGone, match=exactly("stream 'src' was deleted")):
        streams.head("src")
    assert text(streams, "fork") == b"abc"


def test_fork_refusals(streams: StreamStore) -> None:
    streams.create("src", CreateRequest(PLAIN, body=b"hello"))
    put(streams, "src", b" world")  # stored as [0, 5) and [5, 11)
    with pytest.raises(StreamNotFound, match=exactly("fork source 'missing' does not exist")):
        streams.create("f", CreateRequest(fork_from="missing"))
    with pytest.raises(
        StreamConflict, match=exactly("a fork's content type must match its source's")
    ):
        streams.create("f", CreateRequest(JSON, fork_from="src"))
    with pytest.raises(StreamInvalid, match=exactly(FORK_BEYOND)):
        streams.create("f", CreateRequest(fork_from="src", fork_offset=format_offset(12)))
    with pytest.raises(StreamInvalid, match=exactly(NEGATIVE_SUB)):
        streams.create("f", CreateRequest(fork_from="src", fork_offset="-1", fork_sub_offset=-1))
    for offset, sub in ((0, 6), (2, 4), (5, 7), (11, 1)):
        with pytest.raises(StreamInvalid, match=exactly(PAST_BOUNDARY)):
            streams.create(
                "f", CreateRequest(fork_from="src", fork_offset=format_offset(offset),
                                   fork_sub_offset=sub)
            )  # fmt: skip
    with pytest.raises(StreamNotFound):
        streams.head("f")
    with pytest.raises(StreamConflict, match=exactly("fork source 'missing' does not exist")):
        streams.create("src", CreateRequest(PLAIN, fork_from="missing"))  # confirmed, not 404


def test_forks_start_where_they_are_told(streams: StreamStore) -> None:
    streams.create("src", CreateRequest(PLAIN, body=b"hello"))
    put(streams, "src", b" world")
    cases = {"at0": (0, 5, b"hello"), "in": (2, 3, b"hello"), "end": (5, 6, b"hello world")}
    for path, (offset, sub, want) in cases.items():
        request = CreateRequest(
            "text/plain; charset=utf-8", fork_from="src", fork_offset=format_offset(offset),
            fork_sub_offset=sub,
        )  # fmt: skip
        created = streams.create(path, request)
        assert created.meta.tail == offset + sub and created.meta.content_type == PLAIN
        assert text(streams, path) == want
    assert streams.create("tail", CreateRequest(fork_from="src")).meta.tail == 11
    assert text(streams, "tail") == b"hello world"
    assert streams.create("mid", CreateRequest(fork_from="src", fork_offset=format_offset(3)))
    assert text(streams, "mid") == b"hel"
    assert text(streams, "mid", format_offset(1)) == b"el"


def test_a_fork_is_confirmed_by_its_source_and_offset(streams: StreamStore) -> None:
    streams.create("src", CreateRequest(PLAIN, body=b"abc"))
    streams.create("src2", CreateRequest(PLAIN, body=b"abc"))
    fork = CreateRequest(fork_from="src", fork_offset=format_offset(2))
    assert streams.create("f", fork).created
    assert not streams.create("f", fork).created
    for other in (
        CreateRequest(fork_from="src", fork_offset=format_offset(1)),
        CreateRequest(fork_from="src2", fork_offset=format_offset(2)),
        CreateRequest(PLAIN),
    ):
        with pytest.raises(StreamConflict):
            streams.create("f", other)
    assert not streams.create("src", CreateRequest(PLAIN)).created  # its forks count apart


def test_a_fork_inherits_its_sources_expiry_unless_it_has_one(streams: StreamStore) -> None:
    streams.create("ttl", CreateRequest(PLAIN, Expiry(ttl=3600)))
    streams.create("dated", CreateRequest(PLAIN, Expiry(expires_at=LATER)))
    assert streams.create("f1", CreateRequest(fork_from="ttl")).meta.expiry == Expiry(3600)
    assert streams.create("f2", CreateRequest(fork_from="dated")).meta.expiry == Expiry(None, LATER)
    own = streams.create("f3", CreateRequest(fork_from="dated", expiry=Expiry(ttl=60)))
    assert own.meta.expiry == Expiry(60)
    assert streams.head("f3").expiry == Expiry(60)


def test_the_last_fork_of_a_chain_takes_the_deleted_sources_with_it(
    streams: StreamStore, request: pytest.FixtureRequest
) -> None:
    streams.create("a", CreateRequest(PLAIN, body=b"a"))
    streams.create("b", CreateRequest(fork_from="a"))
    put(streams, "b", b"b")
    streams.create("c", CreateRequest(fork_from="b"))
    put(streams, "c", b"c")
    streams.create("other", CreateRequest(fork_from="a"))
    streams.delete("a")
    streams.delete("b")
    assert text(streams, "c") == b"abc"
    streams.delete("c")  # b goes; a stays for "other"
    with pytest.raises(StreamNotFound):
        streams.head("b")
    with pytest.raises(StreamGone):
        streams.head("a")
    assert text(streams, "other") == b"a"
    streams.delete("other")
    with pytest.raises(StreamNotFound):
        streams.head("a")
    assert sql(streams, request, "SELECT count(*) FROM streams WHERE path <> ?", "") == 0
    assert sql(streams, request, "SELECT count(*) FROM streams_chunks WHERE 1 = ? OR 1 = 1", 1) == 0


def test_deleting_a_fork_of_a_live_source_keeps_the_source(streams: StreamStore) -> None:
    streams.create("src", CreateRequest(PLAIN, body=b"s"))
    streams.create("f", CreateRequest(fork_from="src"))
    streams.delete("f")
    streams.delete("src")  # no forks left: deleted outright
    with pytest.raises(StreamNotFound):
        streams.head("src")


def test_reads_slice_stored_rows_and_page_by_budget(streams: StreamStore) -> None:
    streams.create("r", CreateRequest(PLAIN, body=b"abc"))
    put(streams, "r", b"def")
    put(streams, "r", b"ghi")
    whole = streams.read("r", format_offset(1))
    assert (whole.data, whole.start, whole.stop, whole.up_to_date) == (b"bcdefghi", 1, 9, True)
    assert whole.next_offset == format_offset(9)
    now = streams.read("r", None)
    assert (now.start, now.stop, now.data, now.empty) == (9, 9, b"", True)
    with pytest.raises(StreamInvalid, match=exactly("offset is beyond the stream's tail")):
        streams.read("r", format_offset(10))
    with pytest.raises(StreamInvalid, match="malformed"):
        streams.read("r", "12")
    streams.max_read_bytes = 4  # a read stops after the row that reaches the budget
    first = streams.read("r", "-1")
    assert (first.data, first.stop, first.up_to_date) == (b"abcdef", 6, False)
    assert streams.read("r", format_offset(4)).data == b"efghi"
    assert streams.read("r", format_offset(6)).data == b"ghi"


def test_a_fork_read_stops_inside_its_source_when_the_budget_is_spent(
    streams: StreamStore,
) -> None:
    streams.create("src", CreateRequest(PLAIN, body=b"abc"))
    put(streams, "src", b"def")
    streams.create("f", CreateRequest(fork_from="src"))
    put(streams, "f", b"ghi")
    assert text(streams, "f") == b"abcdefghi"
    assert text(streams, "f", format_offset(4)) == b"efghi"
    streams.max_read_bytes = 2
    pages = []
    offset = "-1"
    while not (chunk := streams.read("f", offset)).empty:
        pages.append(chunk.data)
        offset = chunk.next_offset
    assert pages == [b"abc", b"def", b"ghi"]
    streams.max_read_bytes = 5
    assert streams.read("f", "-1").data == b"abcdef"
    assert streams.read("f", format_offset(5)).data == b"fghi"


def test_a_fork_read_from_past_its_fork_point_starts_there(streams: StreamStore) -> None:
    streams.create("src", CreateRequest(PLAIN, body=b"abc"))
    streams.create("f", CreateRequest(fork_from="src"))  # forked at 3
    put(streams, "f", b"def")
    put(streams, "f", b"ghi")
    assert text(streams, "f", format_offset(3)) == b"defghi"
    assert text(streams, "f", format_offset(5)) == b"fghi"  # not from the fork point


def test_a_past_deadline_ends_a_stream(streams: StreamStore) -> None:
    past = datetime(2020, 1, 1, tzinfo=UTC)
    streams.create("old", CreateRequest(PLAIN, Expiry(expires_at=past), body=b"x"))
    with pytest.raises(StreamNotFound):
        streams.head("old")
    assert streams.create("old", CreateRequest(PLAIN)).created


def test_an_expired_source_lives_on_for_its_forks(
    streams: StreamStore, request: pytest.FixtureRequest
) -> None:
    streams.create("src", CreateRequest(PLAIN, Expiry(ttl=3600), body=b"abc"))
    streams.create("f", CreateRequest(fork_from="src", expiry=Expiry(ttl=7200)))
    sql(streams, request, "UPDATE streams SET touched_at = touched_at - 4000 WHERE path = ?", "src")
    with pytest.raises((StreamNotFound, StreamGone)):
        streams.head("src")
    assert text(streams, "f") == b"abc"
    streams.delete("f")
    with pytest.raises(StreamNotFound):
        streams.head("src")


def test_a_read_that_fills_its_budget_exactly_stops_there(streams: StreamStore) -> None:
    streams.create("src", CreateRequest(PLAIN, body=b"ab"))
    put(streams, "src", b"cd")
    put(streams, "src", b"ef")
    streams.create("fork", CreateRequest(fork_from="src", fork_offset=format_offset(4)))
    put(streams, "fork", b"gh")
    streams.max_read_bytes = 4
    assert streams.read("src", "-1").data == b"abcd"
    assert streams.read("fork", "-1").data == b"abcd"  # spent in the source: not on into the fork


def test_a_fork_inside_a_stored_row_reads_only_its_part(streams: StreamStore) -> None:
    streams.create("src", CreateRequest(PLAIN, body=b"hello"))
    put(streams, "src", b" world")  # [5, 11): the fork point 7 is inside it
    streams.create("f", CreateRequest(fork_from="src", fork_offset=format_offset(7)))
    put(streams, "f", b"!")
    assert text(streams, "f") == b"hello w!"
    streams.create("j", CreateRequest(JSON, body=b"[1, 2]"))
    streams.append("j", AppendRequest(b"[3, 4, 5]", JSON))  # [2, 5)
    streams.create("jf", CreateRequest(fork_from="j", fork_offset=format_offset(3)))
    assert streams.read("jf", "-1").messages == ("1", "2", "3")
