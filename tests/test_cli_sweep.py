"""``jobtail sweep``: the janitor once, for a store that no server or scheduled function sweeps
(a cron job beside someone else's app)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobtail.cli import main
from jobtail.store.base import RunStatus
from jobtail.store.sqlite import SQLiteStore
from tests.test_cli import runner


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_a_sweep_fails_dead_runs_and_says_what_it_did(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SQLiteStore(path)
    dead = store.create_run("u1", "svc").run_id
    alive = store.create_run("u2", "svc").run_id
    for run_id in (dead, alive):
        assert store.claim_run(run_id) is not None
    old = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    with store._use() as db:
        db.execute("UPDATE runs SET heartbeat_at = ? WHERE run_id = ?", (old, dead))
    store.close()
    env = {"JOBTAIL_STALE_AFTER": "60"}
    code, out, err = run_cli("sweep", "--store", f"sqlite:///{path}", env=env)
    assert code == 0, err
    assert json.loads(out) == {"failed": [dead], "purged": 0, "streams_expired": 0}
    store = SQLiteStore(path)
    try:
        failed, running = store.get_run(dead), store.get_run(alive)
        assert failed is not None and failed.status is RunStatus.FAILED
        assert running is not None and running.status is RunStatus.RUNNING
        assert "stopped sending heartbeats" in store.read(dead)[-1].message
    finally:
        store.close()
    code, out, _ = run_cli("sweep", "--store", f"sqlite:///{path}", env=env)
    assert code == 0 and json.loads(out)["failed"] == []  # once is enough


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--store", "mysql://nope"], {}, "mysql"),
        (["--store", "sqlite:///x.db"], {"JOBTAIL_STALE_AFTER": "-1"}, "stale_after"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], says: str
) -> None:
    code, out, err = run_cli("sweep", *args, "--data-dir", str(tmp_path), env=env)
    assert code == 2 and out == "" and says in err.lower() and "Traceback" not in err
    assert err.startswith("jobtail: ") and err.count("\n") == 1
