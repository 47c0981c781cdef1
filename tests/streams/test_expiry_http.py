"""An expired stream over HTTP, through a real server (uvicorn) on SQLite and PostgreSQL: one
without forks is 404, one whose forks still read it is soft-deleted: 410 Gone on every request,
the first included, and its path cannot be created again (409) while they read it (PROTOCOL.md
§4.2)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from jobtail.config import Settings
from jobtail.services import Services
from jobtail.web.app import create_app
from tests.conftest import ServerThread

from .conftest import open_store

PLAIN = {"Content-Type": "text/plain"}


def run_sql(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, query: str, path: str
) -> tuple[int, object]:
    """Run ``query`` (one ``?``: the path) on the server's database: its row count and first
    value (None without one)."""
    if kind == "sqlite":
        with sqlite3.connect(tmp_path / "store.db") as db:
            cursor = db.execute(query, (path,))
            row = cursor.fetchone()
            return cursor.rowcount, None if row is None else row[0]
    import psycopg

    with psycopg.connect(request.getfixturevalue("pg_url"), autocommit=True) as conn:
        found = conn.execute(query.replace("?", "%s"), (path,))  # type: ignore[arg-type]
        row = found.fetchone() if found.description else None
        return found.rowcount, None if row is None else row[0]


def expire(kind: str, request: pytest.FixtureRequest, tmp_path: Path, path: str) -> None:
    """Move the stream's last touch to 1970: its sliding TTL ran out (no sleeping for it)."""
    query = "UPDATE streams SET touched_at = 0 WHERE path = ?"
    assert run_sql(kind, request, tmp_path, query, path)[0] == 1


ROWS = (
    "SELECT count(*) FROM (SELECT stream_id FROM streams UNION ALL SELECT stream_id FROM"
    " streams_chunks UNION ALL SELECT stream_id FROM streams_producers) t WHERE stream_id = ?"
)
"""Rows a stream (by its id) has in the three tables: its own, its data, its producers'."""


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_expired_source_with_forks_answers_410_every_time(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    serve: Callable[[object], ServerThread],
) -> None:
    settings = Settings(data_dir=tmp_path, store="sqlite:///unused")
    services = Services.from_settings(settings, store=open_store(kind, request, tmp_path))
    client = httpx.Client(base_url=f"{serve(create_app(services=services)).url}/v1/stream")
    ids: dict[str, str] = {}

    def stored(path: str) -> object:
        return run_sql(kind, request, tmp_path, ROWS, ids[path])[1]

    try:
        for path, headers, body in (
            ("old", {**PLAIN, "Stream-TTL": "3600"}, b"kept"),
            ("lone", {**PLAIN, "Stream-TTL": "3600"}, b""),
            ("young", {"Stream-Forked-From": "/v1/stream/old", "Stream-TTL": "3600"}, b""),
        ):
            created = client.put(f"/{path}", headers=headers, content=body)
            assert created.status_code == 201, (path, created.text)
            query = "SELECT stream_id FROM streams WHERE path = ?"
            ids[path] = str(run_sql(kind, request, tmp_path, query, path)[1])
        expire(kind, request, tmp_path, "old")
        expire(kind, request, tmp_path, "lone")
        statuses = [
            client.request(method, path, headers=PLAIN, content=body).status_code
            for _ in range(3)
            for method, path, body in (
                ("HEAD", "/old", b""),
                ("GET", "/old", b""),
                ("POST", "/old", b"more"),
                ("PUT", "/old", b""),  # its path stays taken while forks read it
                ("GET", "/lone", b""),
            )
        ]
        assert statuses == [410, 410, 410, 409, 404] * 3, " ".join(map(str, statuses))
        assert stored("lone") == 0  # gone from the tables, not hidden
        assert stored("old") == 2  # its row and data, for its fork
        query = "SELECT deleted FROM streams WHERE path = ?"
        assert run_sql(kind, request, tmp_path, query, "old")[1] == 1  # committed, not answered
        assert client.get("/young", params={"offset": "-1"}).content == b"kept"
        assert client.delete("/young").status_code == 204  # its last fork: the source goes
        assert client.head("/old").status_code == 404
        assert stored("old") == 0
    finally:
        client.close()
        services.close()
