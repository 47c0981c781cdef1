"""The conformance suite against a jobtail server configured for Supabase (``JOBTAIL_STORE=
supabase``, in its own process): its generic streams are the ``jobtail_stream_*`` functions
called by rpc through supabase-py, over real HTTP to the PostgREST stand-in
(``tests/store/fake_postgrest.py``), which runs them on the real PostgreSQL. Waiting readers
poll here (no LISTEN through PostgREST)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerThread, free_port
from tests.store.fake_postgrest import SERVICE_KEY, FakePostgrest, PostgrestApp

from .harness import jobtail_server, run_suite
from .test_conformance import check, suite  # noqa: F401 - the suite fixture

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
def postgrest(pg_url: str) -> Iterator[str]:
    fake = FakePostgrest(pg_url)
    server = ServerThread(PostgrestApp(fake)).start()
    yield server.url
    server.stop()
    fake.close()


def test_conformance_supabase(suite: None, tmp_path: Path, postgrest: str) -> None:  # noqa: F811
    environ = {"SUPABASE_URL": postgrest, "SUPABASE_SERVICE_KEY": SERVICE_KEY}
    with jobtail_server("supabase", tmp_path, free_port(), **environ) as server:
        check(run_suite(server.url, tmp_path))
