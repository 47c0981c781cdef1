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


def expire(kind: str, request: pytest.FixtureRequest, tmp_path: Path, path: str) -> None:
    """Move the stream's last touch to 1970: its sliding TTL ran out (no sleeping for it)."""
    query = "UPDATE streams SET touched_at = 0 WHERE path = ?"
    if kind == "sqlite":
        with sqlite3.connect(tmp_path / "store.db") as db:
            assert db.execute(query, (path,)).rowcount == 1
        return
    import psycopg

    with psycopg.connect(request.getfixturevalue("pg_url"), autocommit=True) as conn:
        assert conn.execute(query.replace("?", "%s"), (path,)).rowcount == 1


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
    try:
        for path, headers, body in (
            ("old", {**PLAIN, "Stream-TTL": "3600"}, b"kept"),
            ("lone", {**PLAIN, "Stream-TTL": "3600"}, b""),
            ("young", {"Stream-Forked-From": "/v1/stream/old", "Stream-TTL": "3600"}, b""),
        ):
            created = client.put(f"/{path}", headers=headers, content=body)
            assert created.status_code == 201, (path, created.text)
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
        assert client.get("/young", params={"offset": "-1"}).content == b"kept"
        assert client.delete("/young").status_code == 204  # its last fork: the source goes
        assert client.head("/old").status_code == 404
    finally:
        client.close()
        services.close()
