"""The HTTP SupabaseStreams sends through the real supabase-py client (the stream functions of
``0007_stream_functions.sql`` by rpc), its retries, and how refusals come back.

The PostgREST stand-in runs each call on real PostgreSQL, so these bodies are also proven to be
ones the functions accept; ``tests/streams/test_store.py`` runs the behaviour on this backend.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from jobtail.store.supabase import SupabaseStore
from jobtail.streams import Streams, open_streams
from jobtail.streams.base import (
    AppendRequest,
    CreateRequest,
    Producer,
    SequenceGapError,
    StaleEpochError,
    StreamClosedError,
    StreamConflict,
    StreamError,
    StreamGone,
    StreamInvalid,
    StreamNotFound,
)
from jobtail.streams.supabase import SupabaseStreams
from tests.store.fake_postgrest import ANON_KEY, SERVICE_KEY, FakePostgrest
from tests.store.test_supabase_contract import Sleeps, sent

pytestmark = pytest.mark.postgres
RPC = "/rest/v1/rpc/jobtail_stream_"


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def streams(fake_postgrest: FakePostgrest, sleeps: Sleeps) -> SupabaseStreams:
    return SupabaseStreams(SupabaseStore(fake_postgrest.client(), sleep=sleeps))


def test_requests_follow_the_postgrest_rpc_contract(
    streams: SupabaseStreams, fake_postgrest: FakePostgrest
) -> None:
    streams.create("b", CreateRequest("text/plain", body=b"hi\x00"))
    streams.create("j", CreateRequest("application/json", body=b'[{"a": 1}, "\xc3\xa9"]'))
    streams.append(
        "j", AppendRequest(b'{"b": 2}', "application/json", producer=Producer("p", 1, 0))
    )
    streams.append("b", AppendRequest(b"!", "text/plain", close=True, stream_seq="0001"))
    assert streams.head("b").closed
    assert streams.read("j", "-1").messages == ('{"a":1}', '"é"', '{"b":2}')
    assert streams.read("b", "0000000000000001_0000000000000000").data == b"i\x00!"
    streams.delete("j")
    expected = [
        ("POST", RPC + "create", {}, {"p_path": "b", "p_content_type": "text/plain",
         "p_closed": False, "p_body": "\\x686900"}),
        ("POST", RPC + "create", {}, {"p_path": "j", "p_content_type": "application/json",
         "p_closed": False, "p_messages": '{"a":1}\n"é"', "p_count": 2}),
        ("POST", RPC + "append", {}, {"p_path": "j", "p_content_type": "application/json",
         "p_close": False, "p_messages": '{"b":2}', "p_count": 1, "p_producer_id": "p",
         "p_epoch": 1, "p_seq": 0}),
        ("POST", RPC + "append", {}, {"p_path": "b", "p_content_type": "text/plain",
         "p_close": True, "p_body": "\\x21", "p_stream_seq": "0001"}),
        ("GET", RPC + "head", {"p_path": "b"}, None),
        ("POST", RPC + "read", {}, {"p_path": "j", "p_offset": 0, "p_budget": 1 << 20,
         "p_limit": 5000}),
        ("POST", RPC + "read", {}, {"p_path": "b", "p_offset": 1, "p_budget": 1 << 20,
         "p_limit": 5000}),
        ("POST", RPC + "delete", {}, {"p_path": "j"}),
    ]  # fmt: skip
    assert [sent(request) for request in fake_postgrest.requests] == expected
    for request in fake_postgrest.requests:
        assert request.headers["apikey"] == SERVICE_KEY
        assert request.headers["authorization"] == f"Bearer {SERVICE_KEY}"


def test_a_read_answers_bytes_in_base64_and_messages_as_lines(
    streams: SupabaseStreams, fake_postgrest: FakePostgrest
) -> None:
    streams.create("b", CreateRequest("application/octet-stream", body=bytes(range(256))))
    fake_postgrest.requests.clear()
    assert streams.read("b", "-1").data == bytes(range(256))
    args = {"p_path": "b", "p_offset": 0}
    body = json.loads(fake_postgrest._call("jobtail_stream_read", args, None, False).content)
    assert base64.b64decode(body["data"]) == bytes(range(256))
    assert (body["start"], body["stop"], body["meta"]["tail"]) == (0, 256, 256)
    streams.create("j", CreateRequest("application/json", body=b'[1, {"a": "x\\ny"}]'))
    args = {"p_path": "j", "p_offset": 1}
    body = json.loads(fake_postgrest._call("jobtail_stream_read", args, None, False).content)
    assert body["data"] == '{"a":"x\\ny"}' and (body["start"], body["stop"]) == (1, 2)


def test_refusals_come_back_as_the_stream_errors_they_are(
    streams: SupabaseStreams, fake_postgrest: FakePostgrest
) -> None:
    """PT4xx from the functions are HTTP 4xx through PostgREST; the JSON detail rebuilds the
    error (and its headers' values); none is retried."""
    streams.create("s", CreateRequest("text/plain"))
    streams.append("s", AppendRequest(b"a", "text/plain", producer=Producer("p", 2, 0)))
    fake_postgrest.requests.clear()
    with pytest.raises(StaleEpochError) as stale:
        streams.append("s", AppendRequest(b"z", "text/plain", producer=Producer("p", 1, 1)))
    assert stale.value.epoch == 2
    with pytest.raises(SequenceGapError) as gap:
        streams.append("s", AppendRequest(b"z", "text/plain", producer=Producer("p", 2, 5)))
    assert (gap.value.expected, gap.value.received) == (1, 5)
    with pytest.raises(StreamConflict, match="does not match"):
        streams.append("s", AppendRequest(b"{}", "application/json"))
    with pytest.raises(StreamConflict, match="another configuration"):
        streams.create("s", CreateRequest("application/json"))
    with pytest.raises(StreamInvalid, match="beyond the stream's tail"):
        streams.read("s", "0000000000000009_0000000000000000")
    with pytest.raises(StreamNotFound, match="no stream at 'nope'"):
        streams.head("nope")
    streams.append("s", AppendRequest(b"", close=True))
    with pytest.raises(StreamClosedError) as closed:
        streams.append("s", AppendRequest(b"late", "text/plain"))
    assert closed.value.next_offset == "0000000000000001_0000000000000000"
    streams.create("fork", CreateRequest(fork_from="s"))
    streams.delete("s")
    with pytest.raises(StreamGone):
        streams.read("s", "-1")
    assert len(fake_postgrest.requests) == 11  # each call once: no retries
    reply = fake_postgrest._call("jobtail_stream_head", {"p_path": "s"}, None, True)
    assert reply.status_code == 410
    assert reply.json()["code"] == "PT410"
    assert json.loads(reply.json()["details"]) == {"stream_error": "gone"}


def test_a_json_body_that_is_not_json_is_refused_in_the_protocols_order(
    streams: SupabaseStreams,
) -> None:
    streams.create("j", CreateRequest("application/json"))
    with pytest.raises(StreamInvalid, match="not valid JSON"):
        streams.append("j", AppendRequest(b"{", "application/json"))
    with pytest.raises(StreamInvalid, match="empty JSON array"):
        streams.append("j", AppendRequest(b"[]", "application/json"))
    streams.append("j", AppendRequest(b"", close=True))
    with pytest.raises(StreamClosedError):  # closed comes before the body's validity
        streams.append("j", AppendRequest(b"{", "application/json"))
    lone = streams.create("u", CreateRequest("application/json", body=b'"\\ud800x"'))
    assert lone.meta.tail == 1
    assert streams.read("u", "-1").messages == ('"\\ud800x"',)


def test_only_calls_safe_to_repeat_are_sent_again_after_a_lost_reply(
    streams: SupabaseStreams, fake_postgrest: FakePostgrest, sleeps: Sleeps
) -> None:
    streams.create("s", CreateRequest("text/plain"))
    fake_postgrest.lost_replies = 1  # a producer append: the repeat is a duplicate
    request = AppendRequest(b"a", "text/plain", producer=Producer("p", 0, 0))
    assert streams.append("s", request).duplicate
    fake_postgrest.lost_replies = 1  # a plain append: a repeat would write it twice
    with pytest.raises(StreamError, match="may or may not have run"):
        streams.append("s", AppendRequest(b"b", "text/plain"))
    fake_postgrest.faults.append(httpx.Response(504, text="gateway timeout"))
    with pytest.raises(StreamError, match="504"):
        streams.append("s", AppendRequest(b"c", "text/plain"))
    fake_postgrest.faults.extend(
        [
            httpx.ConnectError("connection refused"),  # never sent
            httpx.Response(503, json={"code": "PGRST001", "message": "Database client error"}),
        ]
    )
    streams.append("s", AppendRequest(b"d", "text/plain"))
    fake_postgrest.lost_replies = 1
    fake_postgrest.faults.append(httpx.ReadTimeout("timed out"))
    assert streams.read("s", "-1").data == b"abd"
    assert sleeps == [0.1, 0.1, 0.2, 0.1, 0.2]


def test_a_client_key_or_a_project_without_the_functions_is_a_clear_error(
    fake_postgrest: FakePostgrest,
) -> None:
    anon = SupabaseStreams(SupabaseStore(fake_postgrest.client(ANON_KEY)))
    with pytest.raises(StreamError, match="service role key"):
        anon.create("s", CreateRequest("text/plain"))
    with fake_postgrest.pool.connection() as conn:
        conn.execute("drop function jobtail_stream_head(text)")
    store = SupabaseStreams(SupabaseStore(fake_postgrest.client()))
    with pytest.raises(StreamError, match="supabase db push"):
        store.head("s")


def test_a_supabase_store_gets_generic_streams(fake_postgrest: FakePostgrest) -> None:
    store = SupabaseStore(fake_postgrest.client())
    generic = open_streams(store)
    assert isinstance(generic, SupabaseStreams) and generic.store is store
    assert generic.poll_interval == store.poll_interval  # no LISTEN: waiting readers poll
    assert Streams.over(store, generic).generic() is generic


def test_waiting_readers_back_off_as_the_log_stores_tails_do(streams: SupabaseStreams) -> None:
    """Every poll is an HTTP request: an idle long-poll waits 0.1 s, then longer, up to 2 s."""
    waits = [streams.next_poll_interval(n) for n in range(8)]
    assert waits == [streams.store.next_poll_interval(n) for n in range(8)]
    assert waits[0] == 0.1 and waits[1] == 0.2 and waits[-1] == 2.0
