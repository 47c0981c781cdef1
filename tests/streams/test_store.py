"""The stream storage itself, on SQLite, real PostgreSQL and Supabase (the same SQL functions
by rpc, through the real supabase-py client and the PostgREST stand-in over that PostgreSQL):
what the protocol asks of the transaction (producer state with the data, closing atomic with the
last append, serialized appends), forks that copy nothing, expiry."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

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
    StreamNotFound,
    StreamStore,
)
from jobtail.streams.sqlite import SQLiteStreams
from tests.waiting import wait_for


def sql(
    streams: StreamStore, request: pytest.FixtureRequest, query: str, path: str = "slide"
) -> Any:
    """Run ``query`` (one ``?``: the path) on the backend's database; its first value."""
    if isinstance(streams, SQLiteStreams):
        with streams._tx() as tx:
            row = tx.execute(query, (path,)).fetchone()
    else:
        import psycopg

        with psycopg.connect(request.getfixturevalue("pg_url"), autocommit=True) as conn:
            cursor = conn.execute(query.replace("?", "%s"), (path,))  # type: ignore[arg-type]
            row = cursor.fetchone() if cursor.description else None
    return None if row is None else row[0]


def chunk_rows(streams: StreamStore, request: pytest.FixtureRequest, path: str) -> int:
    """Data rows the stream at ``path`` holds itself (not through its fork source)."""
    query = (
        "SELECT count(*) FROM streams_chunks c JOIN streams s USING (stream_id) WHERE s.path = ?"
    )
    return int(sql(streams, request, query, path))


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


def test_an_expired_source_with_forks_is_gone_every_time(
    streams: StreamStore, request: pytest.FixtureRequest
) -> None:
    """Expiry deletes a stream; one with forks is soft-deleted, so it answers 410 from the
    first request on (never a 404 first), until its last fork goes."""
    streams.create("old", CreateRequest("text/plain", Expiry(ttl=3600), body=b"kept"))
    fork = CreateRequest(expiry=Expiry(ttl=3600), fork_from="old")
    streams.create("young", fork)
    sql(streams, request, "UPDATE streams SET touched_at = 0 WHERE path = ?", "old")
    for _ in range(2):
        for attempt in (
            lambda: streams.head("old"),
            lambda: streams.read("old", "-1"),
            lambda: streams.append("old", AppendRequest(b"more", "text/plain")),
            lambda: streams.delete("old"),
        ):
            with pytest.raises(StreamGone):
                attempt()
        with pytest.raises(StreamConflict):  # its path stays taken while forks read it
            streams.create("old", CreateRequest("text/plain"))
    assert text(streams, "young") == b"kept"
    streams.delete("young")  # the last fork: the source goes too
    with pytest.raises(StreamNotFound):
        streams.head("old")


def rows_of(streams: StreamStore, request: pytest.FixtureRequest, stream_id: str) -> int:
    """Rows a stream still has in the three tables (its own row, data, producer state)."""
    query = (
        "SELECT count(*) FROM (SELECT stream_id FROM streams UNION ALL SELECT stream_id FROM"
        " streams_chunks UNION ALL SELECT stream_id FROM streams_producers) t WHERE stream_id = ?"
    )
    return int(sql(streams, request, query, stream_id))


def expire(streams: StreamStore, request: pytest.FixtureRequest, path: str) -> None:
    """Move the stream's last touch to 1970: its sliding TTL ran out (no sleeping for it)."""
    sql(streams, request, "UPDATE streams SET touched_at = 0 WHERE path = ?", path)


MEETINGS: dict[str, Callable[[StreamStore], object]] = {
    "head": lambda s: s.head("brief"),
    "read": lambda s: s.read("brief", "-1"),
    "append": lambda s: s.append("brief", AppendRequest(b"more", "text/plain")),
    "delete": lambda s: s.delete("brief"),
    "fork": lambda s: s.create("twig", CreateRequest(fork_from="brief")),
}


@pytest.mark.parametrize("meet", list(MEETINGS))
def test_an_expired_stream_s_rows_go_when_a_request_meets_it(
    streams: StreamStore, request: pytest.FixtureRequest, meet: str
) -> None:
    """The removal commits although the request is refused (404): before, it rolled back with
    the refusal and the row, its data and its producers' state stayed for good."""
    body = CreateRequest("text/plain", Expiry(ttl=3600), body=b"data")
    stream_id = streams.create("brief", body).meta.stream_id
    streams.append("brief", AppendRequest(b"!", "text/plain", producer=Producer("p", 0, 0)))
    assert rows_of(streams, request, stream_id) == 4
    expire(streams, request, "brief")
    for _ in range(2):
        with pytest.raises(StreamNotFound):
            MEETINGS[meet](streams)
        assert rows_of(streams, request, stream_id) == 0
    assert sql(streams, request, "SELECT count(*) FROM streams WHERE path = ?", "twig") == 0


def test_an_expired_source_stays_for_its_forks_and_goes_with_the_last(
    streams: StreamStore, request: pytest.FixtureRequest
) -> None:
    """Met expired, a source that forks read is soft-deleted for good (committed, not only
    answered 410), its data kept for them; the last fork, expired in turn, takes it along."""
    old = streams.create("old", CreateRequest("text/plain", Expiry(ttl=3600), body=b"kept"))
    fork = CreateRequest(expiry=Expiry(ttl=3600), fork_from="old")
    young = streams.create("young", fork).meta.stream_id
    streams.create("other", fork)
    expire(streams, request, "old")
    with pytest.raises(StreamGone):
        streams.read("old", "-1")
    assert sql(streams, request, "SELECT deleted FROM streams WHERE path = ?", "old") == 1
    assert rows_of(streams, request, old.meta.stream_id) == 2
    streams.delete("other")
    assert text(streams, "young") == b"kept"
    expire(streams, request, "young")
    with pytest.raises(StreamNotFound):
        streams.head("young")
    assert rows_of(streams, request, young) == 0
    assert rows_of(streams, request, old.meta.stream_id) == 0


def test_a_last_fork_takes_its_expired_source_along(
    streams: StreamStore, request: pytest.FixtureRequest
) -> None:
    """A source that expired unseen (never met, so never soft-deleted) goes with its last
    fork, as a deleted one does, not left for a request that may never come."""
    old = streams.create("old", CreateRequest("text/plain", Expiry(ttl=3600), body=b"kept"))
    streams.create("young", CreateRequest(expiry=Expiry(ttl=3600), fork_from="old"))
    expire(streams, request, "old")
    streams.delete("young")
    assert rows_of(streams, request, old.meta.stream_id) == 0


def test_requests_meeting_an_expired_stream_at_once_all_answer_404(
    streams: StreamStore, request: pytest.FixtureRequest
) -> None:
    """Readers, a writer and a fork of an expired stream at the same moment: each removes it or
    finds it removed, none fails otherwise (SQLite: reads never take the write lock in their
    snapshot), and its rows are gone."""
    stream_id = streams.create("brief", CreateRequest("text/plain", Expiry(ttl=3600))).meta
    expire(streams, request, "brief")
    meetings = [MEETINGS[name] for name in ("head", "read", "read", "append", "fork")] * 2
    start = threading.Barrier(len(meetings))
    answers: list[BaseException | None] = [None] * len(meetings)

    def meet(index: int) -> None:
        start.wait(timeout=10)
        try:
            meetings[index](streams)
        except BaseException as exc:  # the answer is checked below
            answers[index] = exc

    threads = [threading.Thread(target=meet, args=(i,)) for i in range(len(meetings))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [type(answer) for answer in answers] == [StreamNotFound] * len(meetings)
    assert rows_of(streams, request, stream_id.stream_id) == 0
    assert sql(streams, request, "SELECT count(*) FROM streams WHERE path = ?", "twig") == 0


@pytest.mark.postgres
def test_a_fork_landing_as_its_source_expires_keeps_the_source_for_it(pg_url: str) -> None:
    """The removal of an expired source waits on the row lock of a fork being created from it
    and then counts that fork: the source is soft-deleted (410), not removed under the fork,
    which reads its data."""
    import psycopg

    from jobtail.streams.postgres import PostgresStreams

    streams = PostgresStreams(pg_url)
    try:
        streams.create("old", CreateRequest("text/plain", Expiry(ttl=3600), body=b"kept"))
        with psycopg.connect(pg_url) as forking, psycopg.connect(pg_url, autocommit=True) as watch:
            forking.execute("select jobtail_stream_create(p_path => 'young', p_fork_from => 'old')")
            forking.execute("update streams set touched_at = 0 where path = 'old'")  # expires now
            expiring = threading.Thread(target=streams._expire, args=("old",))
            expiring.start()

            def waits() -> bool:
                found = watch.execute(
                    "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
                    " and query like '%%jobtail_stream_expire%%'"
                ).fetchone()
                return found is not None and found[0] > 0

            wait_for(waits, what="the expiry to wait on the fork's lock")
            forking.commit()
            expiring.join(timeout=20)
        assert not expiring.is_alive()
        assert rows_of_pg(pg_url, "old") == (1, 1)  # soft-deleted, data kept
        with pytest.raises(StreamGone):
            streams.head("old")
        assert text(streams, "young") == b"kept"
    finally:
        streams.close()


def rows_of_pg(pg_url: str, path: str) -> tuple[int, int]:
    """The stream's deleted flag and how many data rows it holds, on PostgreSQL."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        found = conn.execute(
            "select s.deleted, count(c.start) from streams s left join streams_chunks c"
            " using (stream_id) where s.path = %s group by s.deleted",
            (path,),
        ).fetchone()
    assert found is not None
    return int(found[0]), int(found[1])


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


def test_concurrent_creates_of_a_path_make_one_stream(streams: StreamStore) -> None:
    barrier = threading.Barrier(6)
    created: list[bool] = []

    def create() -> None:
        barrier.wait()
        created.append(streams.create("once", CreateRequest("text/plain", body=b"x")).created)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(created) == [False] * 5 + [True]
    assert text(streams, "once") == b"x"  # the losers confirmed: their body was not written


def test_json_forks_and_small_reads_page_by_message(streams: StreamStore) -> None:
    streams.create("j", CreateRequest("application/json", body=b'[1, 2, {"three": "3\\n"}]'))
    streams.create("jf", CreateRequest(fork_from="j", fork_offset="-1", fork_sub_offset=2))
    streams.append("jf", AppendRequest(b'["four", 5]', "application/json"))
    streams.max_read_bytes = 1  # each read returns at least one stored unit, then stops
    seen: list[str] = []
    offset = "-1"
    while True:
        chunk = streams.read("jf", offset)
        if chunk.empty:
            break
        seen.extend(chunk.messages)
        offset = chunk.next_offset
    assert seen == ["1", "2", '"four"', "5"]
    assert chunk.up_to_date and chunk.meta.tail == 4
    assert streams.read("jf", None).empty  # offset=now: from the tail
    with pytest.raises(StreamConflict):
        streams.create("j", CreateRequest("application/json", Expiry(ttl=60)))
    assert not streams.create("j", CreateRequest("application/json; charset=utf-8")).created


def test_a_read_resets_a_sliding_ttl_and_head_does_not(
    streams: StreamStore, request: pytest.FixtureRequest
) -> None:
    streams.create("slide", CreateRequest("text/plain", Expiry(ttl=3600), body=b"a"))
    sql(streams, request, "UPDATE streams SET touched_at = touched_at - 1000 WHERE path = ?")
    touched = "SELECT touched_at FROM streams WHERE path = ?"
    before = sql(streams, request, touched)
    meta = streams.head("slide")
    assert meta.expiry.ttl == 3600 and meta.expiry.expires_at is None
    assert sql(streams, request, touched) == before
    assert text(streams, "slide") == b"a"
    assert sql(streams, request, touched) >= before + 999


@pytest.mark.postgres
def test_jobtail_notify_off_spares_the_notify(pg_url: str) -> None:
    import psycopg

    with (
        psycopg.connect(pg_url, autocommit=True) as listener,
        psycopg.connect(pg_url, autocommit=True) as writer,
    ):
        listener.execute("LISTEN jobtail_streams")
        writer.execute("set jobtail.notify = 'off'")
        writer.execute("select jobtail_stream_create(p_path => 'quiet')")
        writer.execute("set jobtail.notify = 'coalesced'")
        writer.execute("select jobtail_stream_create(p_path => 'heard')")
        first = next(listener.notifies(timeout=10, stop_after=1))
    assert first.payload == "heard"  # the quiet create, committed before, sent none
