"""A janitor that lives on sweeps expired streams through one stream store on PostgreSQL: the
pool is set up at its first sweep, not at every one (each ``stale_after / 2`` s), and closed when
the janitor stops. Connections are counted by the database itself: a ``login`` event trigger
records every session that connects to the test's database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI

from jobtail.config import Settings
from jobtail.fastapi import router
from jobtail.janitor import Janitor
from jobtail.services import Services
from jobtail.store.postgres import PostgresStore
from jobtail.streams import CreateRequest, Expiry
from jobtail.streams.postgres import PostgresStreams
from tests.conftest import ServerThread
from tests.waiting import wait_for

pytestmark = pytest.mark.postgres

LOGINS = """
create table logins (at timestamptz not null default clock_timestamp());
create function count_login() returns event_trigger language plpgsql
    as $$ begin insert into logins default values; end $$;
create event trigger count_logins on login execute function count_login();
"""


class Watched:
    """The test's database as seen from a connection of its own (left out of its counts)."""

    def __init__(self, db: psycopg.Connection[Any]) -> None:
        self.db = db

    def _one(self, query: str, *args: str) -> int:
        row: Any = self.db.execute(query, args).fetchone()
        return int(row[0])

    def logins(self) -> int:
        """Sessions opened on the database so far."""
        return self._one("select count(*) from logins")

    def sessions(self) -> int:
        """Sessions open now."""
        return self._one(
            "select count(*) from pg_stat_activity where datname = current_database()"
            " and backend_type = 'client backend' and pid <> pg_backend_pid()"
        )

    def gone(self, path: str) -> bool:
        """The stream's row is gone (read from the table: a request would remove it itself)."""
        return self._one("select count(*) from streams where path = %s", path) == 0


@pytest.fixture
def watched(pg_url: str) -> Iterator[Watched]:
    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute(LOGINS)
        yield Watched(db)


def _expired(streams: PostgresStreams, path: str) -> None:
    streams.create(path, CreateRequest("text/plain", Expiry(ttl=0)))


def test_a_janitor_s_sweeps_share_one_stream_pool_it_closes(pg_url: str, watched: Watched) -> None:
    """Five sweeps after the first, each removing an expired stream, connect nothing; ``close``
    ends the pool's session, and a sweep after it opens none again."""
    store = PostgresStore(pg_url, listen=False)
    writer = PostgresStreams(pg_url, listen=False)
    janitor = Janitor(store, stale_after=60, retention_days=1)
    try:
        janitor.sweep()  # the first sweep opens the stream store
        before, open_ = watched.logins(), watched.sessions()
        for n in range(5):
            _expired(writer, f"brief-{n}")
            assert janitor.sweep().streams_expired == 1
        assert watched.logins() == before  # no connection set up by the later sweeps
        janitor.close()
        wait_for(lambda: watched.sessions() == open_ - 1, 10, "the janitor's stream pool to close")
        assert janitor.sweep().streams_expired == 0  # closed: nothing opened again
        assert watched.sessions() == open_ - 1
    finally:
        janitor.close()
        writer.close()
        store.close()


def test_the_router_s_janitor_keeps_one_stream_pool_until_shutdown(
    pg_url: str, watched: Watched
) -> None:
    """``router(janitor=True)`` sweeping every 0.2 s: expired streams still go, sweep after
    sweep, through the one pool its first sweep opened; at shutdown it is closed."""
    store = PostgresStore(pg_url, listen=False)
    writer = PostgresStreams(pg_url, listen=False)
    settings = Settings(stale_after=0.4, heartbeat_interval=0.1)
    app = FastAPI()
    app.include_router(router(store, settings=settings, janitor=True))
    try:
        idle = watched.sessions()
        server = ServerThread(app).start()
        try:
            _expired(writer, "first")
            wait_for(lambda: watched.gone("first"), 10, "the first sweep")
            before = watched.logins()
            for n in range(3):
                _expired(writer, f"brief-{n}")
                wait_for(lambda n=n: watched.gone(f"brief-{n}"), 10, f"sweep {n}")
            assert watched.logins() == before
            assert watched.sessions() == idle + 1  # the janitor's stream pool, one connection
        finally:
            server.stop()
        wait_for(lambda: watched.sessions() == idle, 10, "the stream pool to close at shutdown")
    finally:
        writer.close()
        store.close()


def test_the_served_app_s_janitor_keeps_one_stream_pool_until_services_close(
    pg_url: str, watched: Watched, tmp_path: Path
) -> None:
    """``jobtail serve``'s janitor is ``Services.sweep``: one pool for its sweeps, closed with
    the services at shutdown."""
    store = PostgresStore(pg_url, listen=False)
    services = Services.from_settings(Settings(data_dir=tmp_path), store=store)
    writer = PostgresStreams(pg_url, listen=False)
    try:
        services.sweep()
        before = watched.logins()
        for n in range(3):
            _expired(writer, f"brief-{n}")
            assert services.sweep().streams_expired == 1
        assert watched.logins() == before
    finally:
        services.close()
    try:
        wait_for(lambda: watched.sessions() == 1, 10, "only the writer's session to be left")
    finally:
        writer.close()
