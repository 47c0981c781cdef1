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


def _open(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> LogStore:
    if backend == "sqlite":
        return SQLiteStore(tmp_path / "s.db")
    if backend == "postgres":
        return PostgresStore(request.getfixturevalue("pg_url"))
    return SupabaseStore(request.getfixturevalue("fake_postgrest").client())


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogStore]:
    """The same store protocol over each backend."""
    opened = _open(request.param, request, tmp_path)
    yield opened
    opened.close()
