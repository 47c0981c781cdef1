"""The janitor's sweep of expired streams (``StreamStore.sweep_expired``) on SQLite, real
PostgreSQL and Supabase (its SQL by rpc over that PostgreSQL): expired streams nobody meets again
go with their data and producers, in batches; live ones, sliding ones read lately and sources
their forks still read stay (the last as 410 until their last fork goes)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from jobtail.config import Settings
from jobtail.janitor import Janitor, sweep
from jobtail.services import Services
from jobtail.store.sqlite import SQLiteStore
from jobtail.streams.base import (
    AppendRequest,
    CreateRequest,
    Expiry,
    Producer,
    StreamGone,
    StreamNotFound,
    StreamStore,
)
from jobtail.streams.sqlite import SQLiteStreams
from jobtail.web.app import create_app
from tests.conftest import ServerThread
from tests.waiting import wait_for

from .test_store import expire, rows_of, sql, text

HOUR = CreateRequest("text/plain", Expiry(ttl=3600), body=b"data")


def age(streams: StreamStore, request: pytest.FixtureRequest, seconds: int) -> None:
    """Every stream as if ``seconds`` had passed since (no sleeping for it): its last touch
    and its deadline that much earlier."""
    query = f"UPDATE streams SET touched_at = touched_at - {seconds}, expires_at = expires_at"
    sql(streams, request, f"{query} - {seconds} WHERE path <> ?", "")


def count(streams: StreamStore, request: pytest.FixtureRequest) -> int:
    return int(sql(streams, request, "SELECT count(*) FROM streams WHERE path <> ?", ""))


def test_expired_streams_go_in_batches_and_live_ones_stay(
    streams: StreamStore, request: pytest.FixtureRequest
) -> None:
    """Seven expired streams (sliding TTLs run out, deadlines passed), batches of three: the
    first batch removes three, the sweep the rest, rows, data and producers; the live stay."""
    ids = []
    for n in range(4):
        ids.append(streams.create(f"slid-{n}", HOUR).meta.stream_id)
        streams.append(f"slid-{n}", AppendRequest(b"!", "text/plain", producer=Producer("p", 0, 0)))
        expire(streams, request, f"slid-{n}")
    for n in range(3):
        ids.append(
            streams.create(f"due-{n}", CreateRequest("text/plain", Expiry(ttl=3600))).meta.stream_id
        )
        sql(
            streams,
            request,
            "UPDATE streams SET ttl = NULL, expires_at = 1 WHERE path = ?",
            f"due-{n}",
        )
    streams.create("forever", CreateRequest("text/plain", body=b"kept"))
    streams.create("hour", HOUR)
    assert streams._sweep_batch("", 3)[:2] == (3, 3)  # type: ignore[attr-defined]
    assert count(streams, request) == 6
    assert streams.sweep_expired(batch=3) == 4
    assert [rows_of(streams, request, stream_id) for stream_id in ids] == [0] * 7
    assert count(streams, request) == 2
    assert text(streams, "forever") == b"kept" and text(streams, "hour") == b"data"
    assert streams.sweep_expired(batch=3) == 0


def test_a_sliding_ttl_read_lately_is_kept(
    streams: StreamStore, request: pytest.FixtureRequest
) -> None:
    """Two streams with an hour's sliding TTL, both last touched 50 minutes ago; one is read,
    then 20 minutes pass: the sweep removes only the one nobody read."""
    streams.create("read", HOUR)
    streams.create("unread", HOUR)
    age(streams, request, 3000)
    assert text(streams, "read") == b"data"
    age(streams, request, 1200)
    assert streams.sweep_expired() == 1
    assert text(streams, "read") == b"data"
    with pytest.raises(StreamNotFound):
        streams.head("unread")


def test_an_expired_source_stays_as_gone_for_its_forks_until_the_last_goes(
    streams: StreamStore, request: pytest.FixtureRequest
) -> None:
    """Swept, an expired source that a live fork reads is soft-deleted (410 every time), its
    data kept for the fork; once the fork expires too, the next sweep takes both."""
    old = streams.create("old", HOUR).meta.stream_id
    young = streams.create("young", CreateRequest(expiry=Expiry(ttl=3600), fork_from="old"))
    expire(streams, request, "old")
    assert streams.sweep_expired() == 1
    assert sql(streams, request, "SELECT deleted FROM streams WHERE path = ?", "old") == 1
    assert rows_of(streams, request, old) == 2
    for _ in range(2):
        with pytest.raises(StreamGone):
            streams.head("old")
    assert text(streams, "young") == b"data"
    assert streams.sweep_expired() == 0
    expire(streams, request, "young")
    assert streams.sweep_expired() == 1
    assert rows_of(streams, request, old) == rows_of(streams, request, young.meta.stream_id) == 0


def test_an_expired_source_and_its_expired_fork_go_together(
    streams: StreamStore, request: pytest.FixtureRequest
) -> None:
    """Whichever comes first by id, one sweep leaves nothing of either, and counts both."""
    old = streams.create("old", HOUR).meta.stream_id
    young = streams.create("young", CreateRequest(fork_from="old")).meta.stream_id
    expire(streams, request, "old")
    expire(streams, request, "young")
    assert streams.sweep_expired() == 2
    assert rows_of(streams, request, old) == rows_of(streams, request, young) == 0


def test_a_clean_store_sweeps_nothing(streams: StreamStore) -> None:
    assert streams.sweep_expired() == 0
    with pytest.raises(ValueError):
        streams.sweep_expired(batch=0)


@pytest.mark.postgres
def test_a_stream_a_request_holds_is_left_to_the_next_sweep(pg_url: str) -> None:
    """The sweep does not wait on a stream's row lock (a request at work on it): it passes over
    it, on to the next batches, and a later sweep removes it once the lock is released."""
    import psycopg

    from jobtail.streams.postgres import PostgresStreams

    streams = PostgresStreams(pg_url, listen=False)
    try:
        for n in range(3):
            streams.create(f"brief-{n}", CreateRequest("text/plain", Expiry(ttl=0)))
        with psycopg.connect(pg_url) as holder:
            first = holder.execute(
                "select path from streams order by stream_id limit 1 for update"
            ).fetchone()
            assert first is not None
            assert streams.sweep_expired(batch=1) == 2
        assert streams.sweep_expired(batch=1) == 1
        with pytest.raises(StreamNotFound):
            streams.head(first[0])
    finally:
        streams.close()


def test_a_sqlite_sweep_with_nothing_to_remove_takes_no_write_lock(tmp_path: Path) -> None:
    """SQLite has one write lock for the whole file (every run's appends): a sweep that finds
    nothing expired reads a snapshot and answers while another connection holds the lock."""
    streams = SQLiteStreams(tmp_path / "store.db")
    streams.create("hour", CreateRequest("text/plain", Expiry(ttl=3600)))
    writer = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        answers: list[int] = []
        sweeping = threading.Thread(target=lambda: answers.append(streams.sweep_expired()))
        sweeping.start()
        sweeping.join(timeout=3)  # the lock would hold it for the busy timeout (10 s)
        assert answers == [0]
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        sweeping.join(timeout=15)
        streams.close()


def test_the_local_server_s_janitor_sweeps_them(
    tmp_path: Path, serve: Callable[[object], ServerThread]
) -> None:
    """``jobtail serve`` (inline dispatcher) sweeps from its own process: an expired stream no
    request meets goes by itself, a live one stays."""
    store = SQLiteStore(tmp_path / "store.db")
    streams = SQLiteStreams.from_store(store)
    streams.create("brief", CreateRequest("text/plain", Expiry(ttl=3600)))
    streams.create("hour", CreateRequest("text/plain", Expiry(ttl=3600)))
    with streams._tx() as tx:
        tx.execute("UPDATE streams SET touched_at = 0 WHERE path = 'brief'")
    settings = Settings(data_dir=tmp_path, store="sqlite:///unused", stale_after=3600)
    services = Services.from_settings(settings, store=store)
    try:
        serve(create_app(services=services))

        def swept() -> bool:
            with streams._tx() as tx:
                return [r[0] for r in tx.execute("SELECT path FROM streams").fetchall()] == ["hour"]

        wait_for(swept, 10, "the server's janitor to remove the expired stream")
    finally:
        streams.close()
        services.close()


@pytest.mark.postgres
def test_removing_a_stream_finds_its_forks_by_index(pg_url: str) -> None:
    """Each removal checks the foreign key ``fork_of`` for rows still pointing at the stream;
    without an index that read every stream (a sweep of 10,000 expired streams among 100,000
    took 89 s, 0.7 s with it)."""
    import psycopg

    rows = [(f"s{n:06d}", f"p{n}", "text/plain", 0.0, 0, 0, 0, 0) for n in range(20_000)]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        with conn.cursor() as cursor:
            cursor.executemany(
                "insert into streams (stream_id, path, content_type, touched_at, tail, closed,"
                " forks, deleted) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
        conn.execute("analyze streams")
        plan = conn.execute(  # the query PostgreSQL's foreign key check runs
            "explain select 1 from only streams x where fork_of = 's000001' for key share of x"
        ).fetchall()
    assert "streams_fork_of" in " ".join(str(row[0]) for row in plan)


def test_a_sqlite_sweep_creates_no_stream_tables(tmp_path: Path) -> None:
    """A SQLite file that never served streams has none to sweep: the janitor (``router(
    janitor=True)``, ``jobtail serve``) leaves it without the three stream tables; once a server
    made them, expired streams go as ever."""
    store = SQLiteStore(tmp_path / "store.db")

    def tables() -> list[str]:
        with sqlite3.connect(tmp_path / "store.db") as db:
            found = db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'streams%'"
            )
            return sorted(row[0] for row in found)

    try:
        assert sweep(store, stale_after=60, retention_days=1).streams_expired == 0
        assert Janitor(store, stale_after=60, retention_days=1).sweep().streams_expired == 0
        assert tables() == []
        streams = SQLiteStreams.from_store(store)
        streams.create("brief", CreateRequest("text/plain", Expiry(ttl=0)))
        streams.create("hour", HOUR)
        streams.close()
        assert tables() == ["streams", "streams_chunks", "streams_producers"]
        assert sweep(store, stale_after=60, retention_days=1).streams_expired == 1
    finally:
        store.close()
