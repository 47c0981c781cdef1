"""A run whose lines a test writes itself, on a real jobtail server (uvicorn), read as a
Durable Stream at ``/v1/stream/runs/{run_id}``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobtail.config import Settings
from jobtail.services import Services
from jobtail.store import LogLine, LogStore, RunStatus
from jobtail.store.base import utcnow
from jobtail.store.sqlite import SQLiteStore
from jobtail.streams.base import StreamStore
from jobtail.streams.sqlite import SQLiteStreams
from jobtail.web.app import create_app
from tests.backends import BACKENDS
from tests.conftest import ServerThread


@dataclass
class LiveRun:
    """A claimed run: ``write`` appends numbered lines as its worker would, ``finish`` ends it."""

    store: LogStore
    server: str
    run_id: str
    epoch: int
    written: int = 0

    @property
    def url(self) -> str:
        return f"{self.server}/v1/stream/runs/{self.run_id}"

    def write(self, count: int) -> None:
        lines = [
            LogLine(seq, utcnow(), "INFO", f"line {seq}", {"n": seq})
            for seq in range(self.written + 1, self.written + count + 1)
        ]
        self.store.append(self.run_id, lines, epoch=self.epoch)
        self.written += count

    def finish(self) -> None:
        self.store.finish_run(self.run_id, RunStatus.SUCCEEDED, epoch=self.epoch)


def open_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> LogStore:
    if kind == "postgres":
        from jobtail.store.postgres import PostgresStore

        return PostgresStore(request.getfixturevalue("pg_url"))
    return SQLiteStore(tmp_path / "store.db")


@pytest.fixture
def new_run(
    request: pytest.FixtureRequest, tmp_path: Path, serve: Callable[[object], ServerThread]
) -> Iterator[Callable[..., LiveRun]]:
    """Start a server over a store (``sqlite`` or ``postgres``); each call claims a new run."""
    opened: list[Services] = []

    def make(kind: str = "sqlite", key: tuple[str, str] = ("petstore", "scripted")) -> LiveRun:
        if not opened:
            store = open_store(kind, request, tmp_path)
            settings = Settings(data_dir=tmp_path, store="sqlite:///unused", stale_after=3600)
            opened.append(Services.from_settings(settings, store=store))
            make.server = serve(create_app(services=opened[0])).url  # type: ignore[attr-defined]
        services = opened[0]
        run = services.store.create_run(*key)
        claimed = services.store.claim_run(run.run_id)
        assert claimed is not None
        return LiveRun(services.store, make.server, run.run_id, claimed.epoch)  # type: ignore[attr-defined]

    yield make
    for services in opened:
        services.close()


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
