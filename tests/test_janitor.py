"""The janitor's own contract, without Lambda: its arguments, its words, what it logs.

(tests/functions/test_janitor.py drives it as the scheduled function; the races are in
tests/store/test_conformance.py and tests/test_fencing_http.py.)
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobtail import janitor as janitor_module
from jobtail.janitor import Janitor, explain, stale_error, sweep
from jobtail.store.base import Run, RunStatus, StoreError
from jobtail.store.sqlite import SQLiteStore

from .waiting import wait_for

MOMENT = datetime(2026, 11, 30, 20, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stale_after", "retention_days", "queued_after"),
    [(0, 1, None), (-1, 1, None), (60, 0, None), (60, 1, 0), (60, 1, -5.0)],
)
def test_sweep_refuses_bounds_that_would_fail_live_runs_or_purge_everything(
    sqlite_store: SQLiteStore, stale_after: float, retention_days: int, queued_after: float | None
) -> None:
    with pytest.raises(ValueError) as caught:
        sweep(
            sqlite_store,
            stale_after=stale_after,
            retention_days=retention_days,
            queued_after=queued_after,
        )
    assert str(caught.value) == "stale_after must be positive and retention_days at least 1"


def test_the_smallest_valid_bounds_are_accepted(sqlite_store: SQLiteStore) -> None:
    result = sweep(sqlite_store, stale_after=0.001, retention_days=1, queued_after=0.001)
    assert result.failed == [] and result.purged == 0


def test_the_words_of_a_failed_run() -> None:
    assert stale_error(90) == (
        "no heartbeat from the worker for more than 90 s: it was killed, timed out or never started"
    )
    running = Run(
        "r1", "up", "svc", RunStatus.RUNNING, MOMENT - timedelta(hours=2), None, None, MOMENT
    )
    assert explain(running, 60, 3600) == (
        "Run failed: the worker stopped sending heartbeats for more than 60 s "
        "(last at 2026-11-30T20:00:00+00:00): killed or timed out"
    )
    queued = Run("r2", "up", "svc", RunStatus.QUEUED, MOMENT)
    assert explain(queued, 60, 1.5) == (
        "Run failed: no worker started it within 1.5 s (queued since 2026-11-30T20:00:00+00:00)"
    )


def test_a_sweep_that_did_something_says_so_in_the_log(
    sqlite_store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    run = sqlite_store.create_run("up", "svc")
    caplog.set_level(logging.INFO, logger="jobtail.janitor")
    later = datetime.now(UTC) + timedelta(minutes=5)
    sweep(sqlite_store, stale_after=60, retention_days=1, now=later - timedelta(minutes=9))
    assert caplog.messages == []  # nothing failed, nothing purged: nothing said
    result = sweep(sqlite_store, stale_after=60, retention_days=1, now=later)
    assert result.failed == [run.run_id] and result.purged == 0
    assert caplog.messages == [
        "janitor: failed 1 stale runs, purged 0 old runs, removed 0 expired streams"
    ]


class WritesFail(SQLiteStore):
    """A real SQLite store whose writes fail while ``down`` (a full disk: reads still work)."""

    down = False

    def finish_run(self, *args: Any, **kwargs: Any) -> bool:
        if self.down:
            raise StoreError("database or disk is full")
        return super().finish_run(*args, **kwargs)

    def heartbeat(self, run_id: str, *, epoch: int | None = None) -> None:
        if self.down:
            raise StoreError("database or disk is full")
        super().heartbeat(run_id, epoch=epoch)

    def restart_heartbeats(self, after: str = "", limit: int = 1000) -> list[str]:
        if self.down:
            raise StoreError("database or disk is full")
        return super().restart_heartbeats(after, limit)


def test_a_store_outage_is_not_a_dead_worker(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a sweep the store refused, the janitor restarts the runs' clocks instead of
    failing them (their workers could not heartbeat); a dead worker's run still fails later."""
    store = WritesFail(tmp_path / "s.db")
    run = store.create_run("up", "svc")
    assert store.claim_run(run.run_id) is not None
    janitor = Janitor(store, stale_after=0.05, retention_days=1)
    store.down = True
    caplog.set_level(logging.INFO, logger="jobtail.janitor")
    refused = [
        "janitor: the store refused a sweep; no run fails until it is back: "
        "database or disk is full"
    ]
    wait_for(lambda: janitor.sweep() and janitor.outage, 5, "a sweep the store refuses")
    assert caplog.messages == refused  # said at once
    assert janitor.sweep().failed == [] and janitor.sweep().failed == []
    assert caplog.messages == refused  # one warning per outage, no traceback
    before = store.get_run(run.run_id).heartbeat_at  # type: ignore[union-attr]
    store.down = False
    assert janitor.sweep().failed == [] and not janitor.outage  # clocks restarted, none failed
    assert caplog.messages[1:] == [
        "janitor: the store takes writes again; runs get a fresh stale_after"
    ]
    after = store.get_run(run.run_id)
    assert after is not None and after.status is RunStatus.RUNNING
    assert after.heartbeat_at is not None and before is not None and after.heartbeat_at > before
    wait_for(lambda: janitor.sweep().failed == [run.run_id], 5, "the dead worker's run to fail")
    store.close()


def test_after_an_outage_every_running_run_gets_a_fresh_clock(tmp_path: Path) -> None:
    """A backlog of older queued runs does not crowd the running ones out of the restart."""
    store = WritesFail(tmp_path / "s.db")
    old = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    db = sqlite3.connect(store.path)
    db.executemany(
        "INSERT INTO runs (run_id, upload_id, service_name, status, created_at)"
        " VALUES (?, ?, 's', 'queued', ?)",
        [(f"q{n:04}", f"u{n}", old) for n in range(1000)],
    )
    db.commit()
    db.close()
    run = store.create_run("up", "svc")
    assert store.claim_run(run.run_id) is not None
    janitor = Janitor(store, stale_after=0.05, retention_days=1, queued_after=3600)
    store.down = True
    janitor.sweep()
    before = store.get_run(run.run_id).heartbeat_at  # type: ignore[union-attr]
    store.down = False
    janitor.sweep()
    after = store.get_run(run.run_id).heartbeat_at  # type: ignore[union-attr]
    assert before is not None and after is not None and after > before
    assert store.get_run("q0000").heartbeat_at is None  # type: ignore[union-attr]
    store.close()


def test_after_an_outage_more_running_runs_than_a_page_all_get_a_fresh_clock(
    tmp_path: Path,
) -> None:
    """The restart pages through every running run, not only the oldest page of them."""
    store = WritesFail(tmp_path / "s.db")
    old = datetime.now(UTC) - timedelta(hours=1)
    db = sqlite3.connect(store.path)
    db.executemany(  # oldest first: r1000 is past the first page of 1,000
        "INSERT INTO runs (run_id, upload_id, service_name, status, created_at, heartbeat_at)"
        " VALUES (?, ?, 's', 'running', ?, ?)",
        [
            (f"r{n:04}", f"u{n}", (old + timedelta(seconds=n)).isoformat(), old.isoformat())
            for n in range(1001)
        ],
    )
    db.commit()
    db.close()
    janitor = Janitor(store, stale_after=0.05, retention_days=1, queued_after=3600)
    store.down = True
    janitor.sweep()
    assert janitor.outage
    store.down = False
    assert janitor.sweep().failed == [] and not janitor.outage
    for run_id in ("r0000", "r0999", "r1000"):
        beat = store.get_run(run_id).heartbeat_at  # type: ignore[union-attr]
        assert beat is not None and beat > old + timedelta(minutes=59), run_id
    store.close()


class CountsReads(WritesFail):
    """``WritesFail`` counting the janitor's pages of heartbeats."""

    reads = 0

    def restart_heartbeats(self, after: str = "", limit: int = 1000) -> list[str]:
        self.reads += 1
        return super().restart_heartbeats(after, limit)


def test_after_an_outage_a_short_page_is_the_last_one_read(tmp_path: Path) -> None:
    """Fewer running runs than a page: the restart beats them and stops, with no call for the
    empty page after them (each sweep of a janitor in a loop would pay for it)."""
    store = CountsReads(tmp_path / "s.db")
    run = store.create_run("up", "svc")
    assert store.claim_run(run.run_id) is not None
    janitor = Janitor(store, stale_after=0.05, retention_days=1)
    store.down = True
    wait_for(lambda: janitor.sweep() and janitor.outage, 5, "a sweep the store refuses")
    store.down, store.reads = False, 0
    assert janitor.sweep().failed == [] and not janitor.outage
    assert store.reads == 1
    store.close()


class RecordsPages(SQLiteStore):
    """A SQLite store recording each page of heartbeats the janitor asks for, and its answer."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.pages: list[tuple[str, int, list[str]]] = []

    def restart_heartbeats(self, after: str = "", limit: int = 1000) -> list[str]:
        page = super().restart_heartbeats(after, limit)
        self.pages.append((after, limit, page))
        return page


def test_after_an_outage_each_page_starts_after_the_last_id_of_the_one_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of RESTART_PAGE runs, each after the previous page's last id: every running run
    once, in one read per page. A page that started earlier read runs again (one, or all but two,
    each time); a limit other than RESTART_PAGE (the store's default) breaks the test for the
    last page: above the default, a full page reads as a short one and the restart ends there."""
    monkeypatch.setattr(janitor_module, "RESTART_PAGE", 3)
    store = RecordsPages(tmp_path / "s.db")
    ids = []
    for n in range(8):
        run = store.claim_run(store.create_run(f"u{n}", "svc").run_id)
        assert run is not None
        ids.append(run.run_id)
    ids.sort()
    janitor = Janitor(store, stale_after=3600, retention_days=1)
    assert janitor.outage is False
    janitor.outage = True  # a sweep the store refused: the next one restarts the clocks
    assert janitor.sweep().failed == [] and janitor.outage is False
    assert store.pages == [("", 3, ids[:3]), (ids[2], 3, ids[3:6]), (ids[5], 3, ids[6:])]
    store.close()


class WakesInBetween(SQLiteStore):
    """Each stale run's worker shows up between the janitor's read of the stale runs and its
    close: a running run beats, a queued one is claimed."""

    def stale_runs(
        self, heartbeat_before: datetime, queued_before: datetime | None = None, limit: int = 1000
    ) -> list[Run]:
        found = super().stale_runs(heartbeat_before, queued_before, limit)
        for run in found:
            if run.status is RunStatus.RUNNING:
                self.heartbeat(run.run_id)
            else:
                self.claim_run(run.run_id)
        return found


def test_a_run_whose_worker_shows_up_before_the_close_is_kept(tmp_path: Path) -> None:
    """The close is a compare-and-close on each run's own bound: a run read as stale whose
    worker beat (or, queued, was claimed) in between is left running, with no line added."""
    store = WakesInBetween(tmp_path / "s.db")
    running = store.create_run("u1", "svc").run_id
    assert store.claim_run(running) is not None
    queued = store.create_run("u2", "svc").run_id
    old = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    with store._use() as db:
        db.execute("UPDATE runs SET heartbeat_at = ?, created_at = ?", (old, old))
    result = sweep(store, stale_after=60, retention_days=1, queued_after=120)
    assert result.failed == []
    for run_id in (running, queued):
        run = store.get_run(run_id)
        assert run is not None and run.status is RunStatus.RUNNING and run.last_seq == 0
    store.close()


def test_the_janitor_lets_queued_runs_wait_their_own_time(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    queued = store.create_run("u1", "svc").run_id
    running = store.create_run("u2", "svc").run_id
    assert store.claim_run(running) is not None
    janitor = Janitor(store, stale_after=0.05, retention_days=1, queued_after=3600)
    wait_for(lambda: janitor.sweep().failed == [running], 5, "the silent run to fail")
    assert store.get_run(queued).status is RunStatus.QUEUED  # type: ignore[union-attr]
    store.close()
