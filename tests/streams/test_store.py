"""The stream storage itself, on SQLite, real PostgreSQL and Supabase (the same SQL functions
by rpc, through the real supabase-py client and the PostgREST stand-in over that PostgreSQL):
what the protocol asks of the transaction (producer state with the data, closing atomic with the
last append, serialized appends), forks that copy nothing, expiry."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobtail.streams.base import (
    AppendRequest,
    CreateRequest,
    Expiry,
    Producer,
    SequenceGapError,
    StaleEpochError,
    StreamClosedError,
    StreamGone,
    StreamNotFound,
    StreamStore,
)
from jobtail.streams.sqlite import SQLiteStreams
from tests.store.fake_postgrest import FakePostgrest

BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("supabase", marks=pytest.mark.postgres),
]


@pytest.fixture
def fake_postgrest(pg_url: str) -> Iterator[FakePostgrest]:
    fake = FakePostgrest(pg_url)
    yield fake
    fake.close()


def open_streams(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> StreamStore:
    if kind == "postgres":
        from jobtail.streams.postgres import PostgresStreams

        return PostgresStreams(request.getfixturevalue("pg_url"), max_size=20)
    if kind == "supabase":
        from jobtail.store.supabase import SupabaseStore
        from jobtail.streams.supabase import SupabaseStreams

        fake = request.getfixturevalue("fake_postgrest")
        return SupabaseStreams(SupabaseStore(fake.client()))
    return SQLiteStreams(tmp_path / "store.db")


@pytest.fixture(params=BACKENDS)
def streams(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StreamStore]:
    opened = open_streams(request.param, request, tmp_path)
    yield opened
    opened.close()


def chunk_rows(streams: StreamStore, request: pytest.FixtureRequest, path: str) -> int:
    """Data rows the stream at ``path`` holds itself (not through its fork source)."""
    query = "SELECT count(*) FROM streams_chunks c JOIN streams s USING (stream_id) WHERE s.path = "
    if isinstance(streams, SQLiteStreams):
        with streams._tx() as tx:
            return int(tx.execute(query + "?", (path,)).fetchone()[0])
    import psycopg

    with psycopg.connect(request.getfixturevalue("pg_url")) as conn:
        row = conn.execute(query + "%s", (path,)).fetchone()
    assert row is not None
    return int(row[0])


def text(streams: StreamStore, path: str, offset: str = "-1") -> bytes:
    return streams.read(path, offset).data


def test_producer_state_commits_with_the_data(streams: StreamStore) -> None:
    streams.create("s", CreateRequest("text/plain"))

    def send(epoch: int, seq: int, body: bytes, close: bool = False) -> bool:
        request = AppendRequest(body, "text/plain", close, Producer("p", epoch, seq))
        return streams.append("s", request).duplicate

    assert not send(0, 0, b"a") and not send(0, 1, b"b")
    assert send(0, 1, b"b")  # a retry writes nothing
    with pytest.raises(SequenceGapError) as gap:
        send(0, 3, b"d")
    assert (gap.value.expected, gap.value.received) == (2, 3)
    assert not send(1, 0, b"c")  # a restarted producer claims a new epoch
    with pytest.raises(StaleEpochError) as stale:
        send(0, 2, b"zombie")
    assert stale.value.epoch == 1
    assert not send(1, 1, b"!", close=True)  # the last append and the close, together
    assert send(1, 1, b"!", close=True)  # its retry is a no-op
    with pytest.raises(StreamClosedError):
        send(1, 2, b"late")
    assert text(streams, "s") == b"abc!"
    assert streams.head("s").closed


def test_concurrent_identical_appends_land_once(streams: StreamStore) -> None:
    streams.create("race", CreateRequest("text/plain"))
    barrier = threading.Barrier(8)
    outcomes: list[bool] = []

    def send() -> None:
        barrier.wait()
        request = AppendRequest(b"once", "text/plain", producer=Producer("p", 0, 0))
        outcomes.append(streams.append("race", request).duplicate)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(outcomes) == [False] + [True] * 7
    assert text(streams, "race") == b"once"


def test_forks_share_their_source_without_copying(
    streams: StreamStore, request: pytest.FixtureRequest
) -> None:
    streams.create("src", CreateRequest("text/plain", body=b"hello world"))
    fork = CreateRequest("text/plain", fork_from="src", fork_offset="-1")
    assert streams.create("fork", fork).meta.tail == 0
    middle = CreateRequest(fork_from="src", fork_offset="-1", fork_sub_offset=5)
    assert streams.create("mid", middle).meta.tail == 5
    streams.append("mid", AppendRequest(b", fork", "text/plain"))
    streams.append("src", AppendRequest(b"!", "text/plain"))
    assert text(streams, "mid") == b"hello, fork"
    assert text(streams, "src") == b"hello world!"
    assert chunk_rows(streams, request, "mid") == 1  # the fork holds only its own bytes
    streams.delete("src")  # soft: its forks still read through it
    with pytest.raises(StreamGone):
        streams.head("src")
    assert text(streams, "mid") == b"hello, fork"
    streams.delete("mid")
    streams.delete("fork")  # the last fork: the source goes too
    with pytest.raises(StreamNotFound):
        streams.head("src")


def test_an_expired_stream_is_gone(streams: StreamStore) -> None:
    streams.create("brief", CreateRequest("text/plain", Expiry(ttl=0)))
    with pytest.raises(StreamNotFound):
        streams.read("brief", "-1")
    assert streams.create("brief", CreateRequest("text/plain")).created


@pytest.mark.postgres
def test_another_process_writes_wake_this_ones_waiters(pg_url: str) -> None:
    from jobtail.streams.postgres import PostgresStreams

    writer, reader = PostgresStreams(pg_url), PostgresStreams(pg_url)
    woken = threading.Event()
    reader.listeners.add(lambda path: path == "shared" and woken.set())
    try:
        assert reader.listening.wait(10), "the LISTEN connection did not come up"
        writer.create("shared", CreateRequest("text/plain"))
        assert woken.wait(10), "no NOTIFY reached the other store"
        woken.clear()
        writer.append("shared", AppendRequest(b"x", "text/plain"))
        assert woken.wait(10)
    finally:
        writer.close()
        reader.close()
