"""``redispatch_queued`` hands over every queued run, oldest first, page by page: it used to
look at the newest 1,000 runs of any status only, so on a busy store older queued runs stayed
queued until the janitor failed them. Supabase pages too (``jobtail_queued_runs``, migration
0009), where it used to see only the oldest page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jobtail.jobs.dispatch import Dispatcher, DispatchError, redispatch_queued
from jobtail.store.base import LogStore, Run, RunStatus
from jobtail.store.postgres import PostgresStore
from jobtail.store.sqlite import SQLiteStore
from jobtail.store.supabase import SupabaseStore
from tests.backends import BACKENDS


class Recording(Dispatcher):
    """Takes ``room`` runs, then refuses (a closed pool)."""

    def __init__(self, room: int = 1_000_000) -> None:
        self.runs: list[str] = []
        self.room = room

    def submit(self, run: Run) -> None:
        if len(self.runs) == self.room:
            raise DispatchError("closed")
        self.runs.append(run.run_id)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LogStore]:
    opened: LogStore
    if request.param == "sqlite":
        opened = SQLiteStore(tmp_path / "s.db")
    elif request.param == "postgres":
        opened = PostgresStore(request.getfixturevalue("pg_url"))
    else:
        opened = SupabaseStore(request.getfixturevalue("fake_postgrest").client())
    yield opened
    opened.close()


def finished(store: LogStore, upload_id: str) -> None:
    run = store.create_run(upload_id, "svc")
    store.finish_run(run.run_id, RunStatus.SUCCEEDED)


def test_every_queued_run_page_by_page_oldest_first(store: LogStore) -> None:
    queued = []
    for n in range(5):
        finished(store, f"done-{n}")
        queued.append(store.create_run(f"up-{n}", "svc").run_id)
    claimed = store.create_run("running", "svc")
    assert store.claim_run(claimed.run_id) is not None
    dispatcher = Recording()
    assert redispatch_queued(store, dispatcher, page=2) == queued == dispatcher.runs
    assert store.queued_runs(limit=2) == [store.get_run(r) for r in queued[:2]]


def test_a_refusing_dispatcher_stops_the_hand_over(store: LogStore) -> None:
    queued = [store.create_run(f"up-{n}", "svc").run_id for n in range(5)]
    assert redispatch_queued(store, Recording(room=3), page=2) == queued[:3]


def test_an_old_queued_run_behind_a_thousand_newer_ones(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db", synchronous="OFF")
    old = store.create_run("old", "svc").run_id
    for n in range(1001):
        finished(store, f"done-{n}")
    newest = store.create_run("new", "svc").run_id
    assert redispatch_queued(store, Recording()) == [old, newest]  # old main: [newest]
    store.close()


def test_the_default_for_stores_that_cannot_page_sees_the_oldest_page(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    queued = [store.create_run(f"up-{n}", "svc").run_id for n in range(3)]
    finished(store, "done")
    first = LogStore.queued_runs(store, limit=2)  # through stale_runs: the oldest queued
    assert [run.run_id for run in first] == queued[:2]
    after = (first[-1].created_at, first[-1].run_id)
    assert LogStore.queued_runs(store, after, limit=2) == []  # no second page
    store.close()
