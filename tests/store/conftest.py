"""Store fixtures: every backend over real parts (SQLite file, embedded PostgreSQL, PostgREST's
RPC contract over that PostgreSQL), so one behaviour suite runs against each of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobtail.store.base import LogStore
from jobtail.store.postgres import PostgresStore
from jobtail.store.sqlite import SQLiteStore
from jobtail.store.supabase import SupabaseStore
from tests.backends import BACKENDS


class PythonDefaults(SQLiteStore):
    """SQLite with LogStore's own Python search and framed reads instead of its SQL ones: what
    a backend that does not build them in its database (Supabase) runs."""

    search = LogStore.search  # type: ignore[assignment]
    read_framed = LogStore.read_framed


def open_store(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> LogStore:
    """A store of ``backend`` (a BACKENDS name, or "defaults": ``PythonDefaults``)."""
    if backend == "sqlite":
        return SQLiteStore(tmp_path / "s.db")
    if backend == "defaults":
        return PythonDefaults(tmp_path / "s.db")
    if backend == "postgres":
        return PostgresStore(request.getfixturevalue("pg_url"))
    return SupabaseStore(request.getfixturevalue("fake_postgrest").client())


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogStore]:
    """The same store protocol over each backend."""
    opened = open_store(request.param, request, tmp_path)
    yield opened
    opened.close()


@pytest.fixture(params=[*BACKENDS, "defaults"])
def store_or_defaults(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogStore]:
    """``store``, and SQLite with LogStore's Python defaults, for what those defaults cover."""
    opened = open_store(request.param, request, tmp_path)
    yield opened
    opened.close()
