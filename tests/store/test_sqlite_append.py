"""SQLite's one-line append: the common case (the run's owner adding its next line) is a single
statement, with no explicit transaction and no check round trip; everything else is refused or
accepted by the checked path, as the conformance tests pin."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobtail.store.base import LogLine, RunFencedError, SeqGapError, utcnow
from jobtail.store.sqlite import INSERT_NEXT, SQLiteStore


def _line(seq: int) -> LogLine:
    return LogLine(seq, utcnow(), "INFO", f"line {seq}")


def _statements(store: SQLiteStore, run_id: str, seq: int, epoch: int | None) -> list[str]:
    """The SQL statements one append ran on this thread's connection."""
    ran: list[str] = []
    db = store._db()
    db.set_trace_callback(ran.append)
    try:
        store.append(run_id, [_line(seq)], epoch=epoch)
    finally:
        db.set_trace_callback(None)
    return ran


def test_the_next_line_of_the_owner_is_one_statement(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    run = store.claim_run(store.create_run("u", "s").run_id)
    assert run is not None
    store.append(run.run_id, [_line(1)])  # the first also looks up (and caches) the run's key
    heard: list[str] = []
    store.listeners.add(heard.append)
    for seq, epoch in ((2, run.epoch), (3, None)):
        ran = _statements(store, run.run_id, seq, epoch)
        assert len(ran) == 1 and ran[0].startswith("INSERT INTO runs_logs"), ran
    assert heard == [run.run_id, run.run_id]
    assert [line.seq for line in store.read(run.run_id)] == [1, 2, 3]


def test_a_runs_first_line_is_one_statement_after_its_key_lookup(tmp_path: Path) -> None:
    """Every run has a first line: it takes the one-statement path too (seq 1 is a next line)."""
    store = SQLiteStore(tmp_path / "s.db")
    run = store.claim_run(store.create_run("u", "s").run_id)
    assert run is not None
    ran = _statements(store, run.run_id, 1, run.epoch)
    assert [sql.split()[:3] for sql in ran] == [
        ["SELECT", "upload_id,", "service_name"],  # the run's key, cached from now on
        ["INSERT", "INTO", "runs_logs"],
    ], ran
    assert [line.seq for line in store.read(run.run_id)] == [1]


def test_the_one_statement_copies_no_row_through_a_temporary_table(tmp_path: Path) -> None:
    """INSERT ... SELECT reading runs_logs made SQLite stage the row in an ephemeral table."""
    db = SQLiteStore(tmp_path / "s.db")._db()
    program = db.execute(
        "EXPLAIN " + INSERT_NEXT, ("r", 1, "t", "INFO", 20, "m", None, "u", "s", None)
    )
    assert "OpenEphemeral" not in {row[1] for row in program}


def test_anything_else_takes_the_checked_path(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    run = store.claim_run(store.create_run("u", "s").run_id)
    assert run is not None
    store.append(run.run_id, [_line(1)])
    ran = _statements(store, run.run_id, 1, None)  # a retry: a no-op, after a check
    assert "BEGIN IMMEDIATE" in ran and ran[-1] == "COMMIT"
    ran = _statements(store, run.run_id, 0, None)  # "the next one": numbered by the check
    assert ran[0] == "BEGIN IMMEDIATE" and ran[-1] == "COMMIT", ran  # no one-statement try
    with pytest.raises(SeqGapError):
        store.append(run.run_id, [_line(4)])
    with pytest.raises(RunFencedError):
        store.append(run.run_id, [_line(3)], epoch=run.epoch + 1)
    assert [line.seq for line in store.read(run.run_id)] == [1, 2]
