"""PostgreSQL specifics on a real server: migrations, row-level security, LISTEN/NOTIFY, a server
restart in the middle of a run, and the errors a user sees when something is wrong."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobtail.store.base import LogLine, StoreError
from jobtail.store.migrate import MIGRATIONS_DIR, apply_migrations
from jobtail.store.postgres import PostgresStore, lines_json
from tests.pg import PgCluster
from tests.waiting import wait_for

pytestmark = pytest.mark.postgres

MIGRATIONS = sorted(path.name for path in MIGRATIONS_DIR.glob("*.sql"))


def line(seq: int) -> LogLine:
    return LogLine(seq=seq, timestamp=datetime.now(UTC), log_level="INFO", message=f"line {seq}")


@pytest.fixture
def empty_url(pg_cluster: PgCluster) -> Iterator[str]:
    """A fresh database without migrations."""
    name = pg_cluster.create_database()
    yield pg_cluster.url(name)
    pg_cluster.drop_database(name)


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(pg_url)
    yield store
    store.close()


# -- migrations -----------------------------------------------------------------------------
def test_migrations_apply_once_and_are_idempotent(empty_url: str) -> None:
    assert MIGRATIONS[:4] == [
        "0001_runs.sql",
        "0002_functions.sql",
        "0003_rls.sql",
        "0004_fencing.sql",
    ]
    assert apply_migrations(empty_url) == MIGRATIONS
    assert apply_migrations(empty_url) == []
    with psycopg.connect(empty_url, autocommit=True) as conn:
        for _ in range(2):  # the files themselves are safe to run again
            for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
                conn.execute(path.read_bytes())
        applied = conn.execute("select name from jobtail_migrations order by name").fetchall()
    assert [row[0] for row in applied] == MIGRATIONS
    store = PostgresStore(empty_url, listen=False)
    try:
        store.check()
        run = store.create_run("u1", "pydantic")
        assert store.append(run.run_id, [line(1)]) == 1
    finally:
        store.close()


def test_a_failing_migration_applies_nothing_of_itself(empty_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("create table if not exists ok (id int);")
    (tmp_path / "0002_bad.sql").write_text("create table half (id int); select no_such_fn();")
    with pytest.raises(StoreError, match=r"0002_bad\.sql"):
        apply_migrations(empty_url, tmp_path)
    with psycopg.connect(empty_url) as conn:
        names = [row[0] for row in conn.execute("select name from jobtail_migrations")]
        assert names == ["0001_ok.sql"]
        assert conn.execute("select to_regclass('half')").fetchone() == (None,)
    with pytest.raises(StoreError, match="no migrations folder"):
        apply_migrations(empty_url, tmp_path / "missing")


def test_nul_characters_become_replacement_characters(pg_store: PostgresStore) -> None:
    run_id = pg_store.create_run("u1", "pydantic").run_id
    fields = {"nul": "c\x00d", "escaped": "\\u0000 stays text", "both": "\\\x00"}
    stamp = datetime.now(UTC)
    pg_store.append(run_id, [LogLine(1, stamp, "INFO", "x\x00y", fields)])
    [got] = pg_store.read(run_id)
    assert got.message == "x\ufffdy"
    assert got.fields == {"nul": "c\ufffdd", "escaped": "\\u0000 stays text", "both": "\\\ufffd"}


# -- row-level security ---------------------------------------------------------------------
@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_client_roles_can_neither_read_nor_write_nor_call(pg_url: str, role: str) -> None:
    statements = [
        "select * from runs",
        "select * from runs_logs",
        "insert into runs (run_id, upload_id, service_name) values ('x', 'u', 's')",
        "insert into runs_logs (run_id, seq, upload_id, service_name, timestamp, log_level,"
        " level_no, message) values ('r1', 1, 'u', 's', now(), 'INFO', 20, 'm')",
        "select jobtail_read('r1')",
        "select jobtail_get_run('r1')",
        "select jobtail_append('r1', '[]')",
        "select jobtail_create_run('r2', 'u', 's')",
    ]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("select jobtail_create_run('r1', 'u', 's')")
        for statement in statements:
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(f"set local role {role}")
                conn.execute(statement)
        callable_ = conn.execute(
            "select count(*) from pg_proc where proname like 'jobtail\\_%%'"
            " and has_function_privilege(%s, oid, 'execute')",
            (role,),
        ).fetchone()
        assert callable_ == (0,)


def test_row_level_security_holds_even_with_table_grants(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("select jobtail_create_run('r1', 'u', 's')")
        secured = conn.execute(
            "select relname, relrowsecurity from pg_class"
            " where relname in ('runs', 'runs_logs') order by relname"
        ).fetchall()
        assert secured == [("runs", True), ("runs_logs", True)]
        with conn.transaction(force_rollback=True):
            conn.execute("grant select, insert on runs to anon")
            conn.execute("set local role anon")
            assert conn.execute("select count(*) from runs").fetchone() == (0,)
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level"):
                conn.execute(
                    "insert into runs (run_id, upload_id, service_name) values ('x', 'u', 's')"
                )


# -- LISTEN/NOTIFY ----------------------------------------------------------------------------
def test_a_write_on_another_connection_wakes_listeners(
    pg_store: PostgresStore, pg_url: str
) -> None:
    heard: list[str] = []
    pg_store.listeners.add(heard.append)
    wait_for(lambda: pg_store.listen_connects >= 1, what="LISTEN")
    with psycopg.connect(pg_url, autocommit=True) as other:  # as if another process
        other.execute("select jobtail_create_run('r1', 'u', 's')")
        wait_for(lambda: "r1" in heard, what="the NOTIFY of create")
        heard.clear()
        other.execute("select jobtail_append('r1', %s::jsonb)", (lines_json([line(1)]),))
        wait_for(lambda: "r1" in heard, what="the NOTIFY of append")
        heard.clear()
        other.execute("select jobtail_finish_run('r1', 'succeeded')")
        wait_for(lambda: "r1" in heard, what="the NOTIFY of finish")


# -- a server restart in the middle of a run -------------------------------------------------
@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    """A cluster this test may kill without disturbing the session's."""
    with PgCluster.temporary() as cluster:
        yield cluster


def test_server_restart_mid_run_loses_and_duplicates_nothing(own_cluster: PgCluster) -> None:
    url = own_cluster.url(own_cluster.create_database())
    apply_migrations(url)
    store = PostgresStore(url, pool_timeout=5)
    heard: list[str] = []
    store.listeners.add(heard.append)
    run_id = store.create_run("u1", "pydantic").run_id
    store.start_run(run_id)
    state = {"seq": 0, "failures": 0}
    stop = threading.Event()

    def write() -> None:
        """The writer: numbered batches, each retried as it is until it lands."""
        deadline = time.monotonic() + 90
        while not stop.is_set() and time.monotonic() < deadline:
            batch = [line(seq) for seq in range(state["seq"] + 1, state["seq"] + 6)]
            try:
                store.append(run_id, batch)
            except StoreError:
                state["failures"] += 1
                continue
            state["seq"] = batch[-1].seq

    writer = threading.Thread(target=write, daemon=True)
    try:
        writer.start()
        wait_for(lambda: state["seq"] >= 300, what="writes before the restart")
        blocker = _hold_until_a_batch_waits(url, run_id)  # so the crash hits a batch in flight
        own_cluster.stop("immediate")
        at_restart = state["seq"]
        own_cluster.start()
        blocker.close()
        wait_for(lambda: state["seq"] >= at_restart + 300, 45, "writes after the restart")
        stop.set()
        writer.join(timeout=30)
        assert not writer.is_alive()
        total = state["seq"]
        assert state["failures"] >= 1  # the batch in flight failed and was sent again
        with psycopg.connect(url) as conn:
            seqs = conn.execute(
                "select seq from runs_logs where run_id = %s order by seq, id", (run_id,)
            ).fetchall()
            assert [row[0] for row in seqs] == list(range(1, total + 1))
        run = store.get_run(run_id)
        assert run is not None and run.last_seq == total
        # the LISTEN thread reconnected and hears other connections again
        wait_for(lambda: store.listen_connects >= 2, 45, "LISTEN to reconnect")
        heard.clear()
        with psycopg.connect(url, autocommit=True) as other:
            other.execute("select jobtail_heartbeat(%s)", (run_id,))
            other.execute("select jobtail_finish_run(%s, 'succeeded')", (run_id,))
        wait_for(lambda: run_id in heard, what="a NOTIFY after the restart")
    finally:
        stop.set()
        store.close()


def _hold_until_a_batch_waits(url: str, run_id: str) -> psycopg.Connection[Any]:
    """Lock the run's row from another session until the writer's append is stuck behind it."""
    blocker = psycopg.connect(url)  # the caller keeps it open: the crash ends its transaction
    blocker.execute("select 1 from runs where run_id = %s for update", (run_id,))

    def waiting() -> bool:
        row = blocker.execute(
            "select count(*) from pg_stat_activity"
            " where wait_event_type = 'Lock' and query like '%%jobtail_append%%'"
        ).fetchone()
        return row is not None and row[0] > 0

    wait_for(waiting, what="the writer to wait on the lock")
    return blocker


# -- errors a user can act on ----------------------------------------------------------------
def test_unreachable_server_is_a_clear_error_not_a_hang() -> None:
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"cannot connect to PostgreSQL at 127\.0\.0\.1:1/jobtail"):
        PostgresStore("postgresql://postgres@127.0.0.1:1/jobtail", connect_timeout=2)
    with pytest.raises(StoreError, match="cannot connect"):
        PostgresStore("postgresql://postgres@/jobtail?host=/nonexistent", connect_timeout=2)
    assert time.monotonic() - started < 10


def test_bad_url_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="bad PostgreSQL URL"):
        PostgresStore("postgresql://host/db?no_such_option=1")
    with pytest.raises(StoreError, match="port"):
        PostgresStore.from_url("postgresql://user:secret@127.0.0.1:notaport/db")


def test_database_without_migrations_names_the_fix(empty_url: str) -> None:
    store = PostgresStore(empty_url, listen=False)
    try:
        with pytest.raises(StoreError, match=r"run `jobtail migrate <url>`.*runs, runs_logs"):
            store.check()
        with pytest.raises(StoreError, match="jobtail migrate"):
            store.get_run("r1")
    finally:
        store.close()


def test_check_passes_on_a_migrated_database(pg_store: PostgresStore) -> None:
    pg_store.check()
    assert PostgresStore.poll_interval == 1.0
