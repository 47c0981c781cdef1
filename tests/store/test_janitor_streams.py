"""The janitor removes expired streams beside the runs, on every backend, by the store's clock:
``sweep`` and the in-process ``Janitor`` count them in their result; a sweep whose streams part
the database refuses still fails dead runs and is no outage."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import pytest

from jobtail.janitor import Janitor, sweep
from jobtail.store.base import LogStore, RunStatus
from jobtail.store.postgres import PostgresStore
from jobtail.streams import CreateRequest, Expiry, StreamNotFound, StreamStore, open_streams

DAY = timedelta(days=1)


@pytest.fixture
def streams(store: LogStore) -> Iterator[StreamStore]:
    """The stream tables beside ``store``, as the app serving them opens them."""
    opened = open_streams(store)
    assert opened is not None
    yield opened
    opened.close()


def _expired_and_live(streams: StreamStore) -> None:
    streams.create("brief", CreateRequest("text/plain", Expiry(ttl=0), body=b"gone"))
    streams.create("hour", CreateRequest("text/plain", Expiry(ttl=3600), body=b"kept"))


@pytest.mark.parametrize("off", [DAY, -DAY], ids=["ahead", "behind"])
def test_a_sweep_removes_expired_streams_by_the_stores_clock(
    store: LogStore, streams: StreamStore, off: timedelta
) -> None:
    """The janitor's ``now`` a day ahead keeps a stream with an hour to live; a day behind, it
    still removes one that expired: streams are judged by the store's clock alone."""
    _expired_and_live(streams)
    result = sweep(store, stale_after=60, retention_days=1, now=store.clock() + off)
    assert result.streams_expired == 1
    with pytest.raises(StreamNotFound):
        streams.head("brief")
    assert streams.read("hour", "-1").data == b"kept"
    assert sweep(store, stale_after=60, retention_days=1).streams_expired == 0


def test_the_in_process_janitor_counts_them(store: LogStore, streams: StreamStore) -> None:
    _expired_and_live(streams)
    assert Janitor(store, stale_after=60, retention_days=1).sweep().streams_expired == 1
    assert streams.head("hour").tail == 4


@pytest.mark.postgres
def test_a_database_without_the_sweep_still_fails_dead_runs(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Not migrated to 0016 (no ``jobtail_stream_sweep``): the runs are swept, the streams part
    is a warning, and the janitor does not take it for an outage (which would restart every
    running run's clock instead of failing the dead ones)."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("drop function jobtail_stream_sweep(text, integer)")
    store = PostgresStore(pg_url, listen=False)
    try:
        run = store.create_run("dead", "svc")
        janitor = Janitor(store, stale_after=60, retention_days=1, queued_after=60)
        with caplog.at_level(logging.WARNING, logger="jobtail.streams.sweep"):
            result = sweep(store, stale_after=60, retention_days=1, now=store.clock() + DAY)
        assert result.failed == [run.run_id] and result.streams_expired == 0
        assert "could not sweep the expired streams" in caplog.text
        assert janitor.sweep().streams_expired == 0 and not janitor.outage
        found = store.get_run(run.run_id)
        assert found is not None and found.status is RunStatus.FAILED
    finally:
        store.close()


def test_a_sweep_that_only_removed_streams_says_so(
    store: LogStore, streams: StreamStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The sweep's one info line is written when expired streams were all it removed."""
    _expired_and_live(streams)
    caplog.set_level(logging.INFO, logger="jobtail.janitor")
    assert sweep(store, stale_after=60, retention_days=1).streams_expired == 1
    said = [message for message in caplog.messages if message.startswith("janitor:")]
    assert said == ["janitor: failed 0 stale runs, purged 0 old runs, removed 1 expired streams"]
