"""``tests/pg.py``: a test process killed outright (mutmut ends a mutant's run that overran its
time that way) leaves no PostgreSQL server behind; one a ``make mutants MARKS='not browser'``
run left per timed-out mutant, each with its folder under the temp dir."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[1]
HOLD = """
from tests.pg import PgCluster
with PgCluster.temporary() as cluster:
    print(cluster.pgdata, flush=True)
    input()
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.postgres
def test_a_killed_test_process_leaves_no_postgres_server() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["shared", "."])}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD], cwd=ROOT, env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdout is not None
    pgdata = Path(holder.stdout.readline().strip())
    postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
    try:
        holder.kill()
        holder.wait()
        wait_for(lambda: not _alive(postmaster), 20, "the killed process's server to stop")
        wait_for(lambda: not pgdata.parent.exists(), 20, "its folder to go")
    finally:
        if _alive(postmaster):
            os.kill(postmaster, signal.SIGQUIT)
            wait_for(lambda: not _alive(postmaster), 20, "the leaked server to stop")
        shutil.rmtree(pgdata.parent, ignore_errors=True)
