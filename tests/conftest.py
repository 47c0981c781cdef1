"""Fixtures shared by the whole suite: real SQLite stores, a real uvicorn server in a thread."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp

from jobtail.store.migrate import apply_migrations
from jobtail.store.sqlite import SQLiteStore

from .pg import PgCluster
from .store.fake_postgrest import FakePostgrest
from .waiting import wait_for


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "store.db")
    yield store
    store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """uvicorn serving an ASGI app on a free loopback port, in a background thread."""

    def __init__(self, app: ASGIApp, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> ServerThread:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout, "uvicorn did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def serve() -> Iterator[Callable[[ASGIApp], ServerThread]]:
    started: list[ServerThread] = []

    def start(app: ASGIApp) -> ServerThread:
        server = ServerThread(app).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    with PgCluster.temporary() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh database with the migrations applied."""
    name = pg_cluster.create_database()
    url = pg_cluster.url(name)
    apply_migrations(url)
    yield url
    pg_cluster.drop_database(name)


@pytest.fixture
def fake_postgrest(pg_url: str) -> Iterator[FakePostgrest]:
    """PostgREST's RPC contract over that database, for SupabaseStore's real client."""
    fake = FakePostgrest(pg_url)
    yield fake
    fake.close()
