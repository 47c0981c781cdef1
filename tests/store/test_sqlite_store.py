"""What only the SQLite store does: its file, its modes, its own errors, its rows as other SQL
readers of the file see them, and the paths the behaviour suite crosses only on the way."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobtail.store.base import (
    LogLine,
    RunFencedError,
    RunNotFoundError,
    RunStatus,
    SeqGapError,
    StoreError,
    utcnow,
)
from jobtail.store.matching import SearchHits, SearchQuery, SearchTimeoutError
from jobtail.store.sqlite import SQLiteStore

T = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def line(seq: int, message: str = "m", level: str = "INFO") -> LogLine:
    return LogLine(seq, T, level, message)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "deep" / "er" / "s.db")  # its folders are made
    yield opened
    opened.close()


def raw(store: SQLiteStore) -> sqlite3.Connection:
    """Another connection to the file, as any SQL reader of it has."""
    return sqlite3.connect(store.path)


def test_the_synchronous_mode_is_checked_and_applied(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unknown SQLite synchronous mode 'sometimes'"):
        SQLiteStore(tmp_path / "a.db", synchronous="sometimes")
    full = SQLiteStore(tmp_path / "b.db", synchronous="full")
    assert full.synchronous == "FULL"
    assert full._db().execute("PRAGMA synchronous").fetchone()[0] == 2
    full.close()
    assert SQLiteStore(tmp_path / "c.db").synchronous == "NORMAL"
    for mode, number in (("off", 0), ("Extra", 3)):
        other = SQLiteStore(tmp_path / f"{mode}.db", synchronous=mode)
        assert other._db().execute("PRAGMA synchronous").fetchone()[0] == number
        other.close()


def test_a_database_from_before_epochs_and_caps_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, upload_id TEXT NOT NULL,"
        " service_name TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL,"
        " started_at TEXT, finished_at TEXT, heartbeat_at TEXT, error TEXT)"
    )
    old.execute("INSERT INTO runs VALUES ('r1', 'u', 's', 'queued', ?, NULL, NULL, NULL, NULL)",
                (T.isoformat(),))  # fmt: skip
    old.commit()
    old.close()
    store = SQLiteStore(path)
    run = store.get_run("r1")
    assert run is not None and (run.epoch, run.omitted) == (0, 0)
    claimed = store.claim_run("r1")
    assert claimed is not None and claimed.epoch == 1
    assert store.finish_run("r1", RunStatus.SUCCEEDED, lines=[line(1)], epoch=1, omitted=3)
    assert store.get_run("r1").omitted == 3  # type: ignore[union-attr]
    store.close()
    SQLiteStore(path).close()  # and opening it again changes nothing


def test_a_refused_write_and_a_broken_database_are_store_errors(store: SQLiteStore) -> None:
    run = store.create_run("u", "s").run_id
    db = raw(store)
    db.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON runs_logs BEGIN SELECT RAISE(ABORT, 'disk full');"
        " END"
    )
    db.commit()
    for lines in ([line(1)], [line(1), line(2)]):  # the one-line path and the checked one
        with pytest.raises(StoreError, match=r"^refused by the database: disk full$"):
            store.append(run, lines)
    db.execute("DROP TRIGGER refuse")
    db.execute(
        "CREATE TRIGGER broken BEFORE INSERT ON runs_logs BEGIN"
        " INSERT INTO no_such_table VALUES (1); END"
    )
    db.commit()
    with pytest.raises(StoreError) as broken:
        store.append(run, [line(1)])
    assert str(broken.value) == f"SQLite {store.path}: no such table: main.no_such_table"
    assert type(broken.value) is StoreError
    db.execute("DROP TRIGGER broken")
    db.commit()
    db.close()
    again = SQLiteStore(store.path)  # a connection that has not cached the broken schema
    assert again.append(run, [line(1)]) == 1  # the refused transactions left nothing behind
    assert [x.seq for x in again.read(run)] == [1]
    again.close()


def test_each_line_row_carries_its_runs_key(store: SQLiteStore) -> None:
    first = store.create_run("upload-a", "svc-a").run_id
    second = store.create_run("upload-b", "svc-b").run_id
    store.append(first, [line(1)])
    store.append(first, [line(2), line(3)])
    store.append(second, [line(1)])
    store.finish_run(second, RunStatus.FAILED, lines=[line(0, "end")])
    db = raw(store)
    rows = db.execute(
        "SELECT run_id, seq, upload_id, service_name, level_no FROM runs_logs ORDER BY run_id, seq"
    ).fetchall()
    db.close()
    assert sorted(rows) == sorted(
        [
            (first, 1, "upload-a", "svc-a", 20),
            (first, 2, "upload-a", "svc-a", 20),
            (first, 3, "upload-a", "svc-a", 20),
            (second, 1, "upload-b", "svc-b", 20),
            (second, 2, "upload-b", "svc-b", 20),
        ]
    )


def test_level_numbers_are_stored_for_any_case_and_custom_levels(store: SQLiteStore) -> None:
    run = store.create_run("u", "s").run_id
    levels = ["warning", "NOTICE", "CRITICAL", "debug"]
    store.append(run, [line(n, level=level) for n, level in enumerate(levels, 1)])
    db = raw(store)
    numbers = [row[0] for row in db.execute("SELECT level_no FROM runs_logs ORDER BY seq")]
    db.close()
    assert numbers == [30, 20, 50, 10]
    assert [x.seq for x in store.read(run, min_level="WARNING")] == [1, 3]
    assert [x.seq for x in store.read(run, min_level="DEBUG")] == [1, 2, 3, 4]


def test_appends_notify_only_when_a_line_landed(store: SQLiteStore) -> None:
    run = store.create_run("u", "s").run_id
    heard: list[str] = []
    store.listeners.add(heard.append)
    assert store.append(run, [line(1)]) == 1  # the one-line path
    assert store.append(run, [line(2), line(3)]) == 3  # the checked path
    assert store.append(run, [line(0, "numbered by the store")]) == 4
    assert heard == [run] * 3
    assert store.append(run, [line(2)]) == 4  # a retry: nothing new, nobody woken
    assert store.append(run, [line(3), line(4)]) == 4
    assert store.append(run, []) == 4
    assert heard == [run] * 3
    assert store.read(run)[-1].message == "numbered by the store"


def test_a_one_line_append_checks_its_writer(store: SQLiteStore) -> None:
    run = store.claim_run(store.create_run("u", "s").run_id)
    assert run is not None
    assert store.append(run.run_id, [line(1)], epoch=run.epoch) == 1
    with pytest.raises(RunFencedError) as stale:
        store.append(run.run_id, [line(2)], epoch=run.epoch + 1)
    assert stale.value.reason == "stale_epoch"
    assert store.append(run.run_id, [line(2)], epoch=None) == 2  # no epoch: not fenced by one
    with pytest.raises(RunNotFoundError) as unknown:
        store.append("no-such-run", [line(1)])
    assert unknown.value.run_id == "no-such-run"
    with pytest.raises(RunNotFoundError) as unknown:
        store.append("no-such-run", [line(1), line(2)])
    assert unknown.value.run_id == "no-such-run"
    with pytest.raises(SeqGapError) as gap:
        store.append(run.run_id, [line(4), line(5)])
    assert (gap.value.run_id, gap.value.expected) == (run.run_id, 3)


def test_heartbeats_of_a_writer_that_lost_its_run(store: SQLiteStore) -> None:
    queued = store.create_run("u1", "s").run_id
    store.heartbeat(queued)  # no epoch, not running: nothing to touch, nothing to refuse
    assert store.get_run(queued).heartbeat_at is None  # type: ignore[union-attr]
    run = store.claim_run(store.create_run("u2", "s").run_id)
    assert run is not None
    with pytest.raises(RunFencedError) as stale:
        store.heartbeat(run.run_id, epoch=run.epoch - 1)
    assert (stale.value.reason, stale.value.epoch, stale.value.status) == (
        "stale_epoch", run.epoch, "running",
    )  # fmt: skip
    assert stale.value.run_id == run.run_id
    store.finish_run(run.run_id, RunStatus.SUCCEEDED, epoch=run.epoch)
    with pytest.raises(RunFencedError) as closed:
        store.heartbeat(run.run_id, epoch=run.epoch)
    assert (closed.value.reason, closed.value.status) == ("closed", "succeeded")
    with pytest.raises(RunNotFoundError):
        store.heartbeat("no-such-run", epoch=1)


def test_a_close_by_its_writer_keeps_the_epoch_and_one_by_another_fences_it(
    store: SQLiteStore,
) -> None:
    own = store.claim_run(store.create_run("u1", "s").run_id)
    other = store.claim_run(store.create_run("u2", "s").run_id)
    assert own is not None and other is not None
    assert store.finish_run(own.run_id, RunStatus.SUCCEEDED, epoch=own.epoch)
    assert store.finish_run(other.run_id, RunStatus.FAILED, "killed")
    assert store.get_run(own.run_id).epoch == own.epoch  # type: ignore[union-attr]
    assert store.get_run(other.run_id).epoch == other.epoch + 1  # type: ignore[union-attr]
    assert store.finish_run("no-such-run", RunStatus.FAILED) is False


def test_the_janitors_close_judges_by_the_heartbeat_not_the_creation(store: SQLiteStore) -> None:
    run = store.claim_run(store.create_run("u", "s").run_id)
    assert run is not None
    store.heartbeat(run.run_id)
    beat = store.get_run(run.run_id).heartbeat_at  # type: ignore[union-attr]
    assert beat is not None
    assert not store.finish_run(run.run_id, RunStatus.FAILED, if_stale_before=beat)
    assert store.finish_run(
        run.run_id, RunStatus.FAILED, if_stale_before=beat + timedelta(microseconds=1)
    )
    assert not store.finish_run(  # already ended: nothing to explain
        run.run_id, RunStatus.FAILED, if_stale_before=beat + timedelta(hours=1)
    )


def test_a_takeover_judges_by_the_heartbeat(store: SQLiteStore) -> None:
    run = store.claim_run(store.create_run("u", "s").run_id)
    assert run is not None and run.heartbeat_at is not None
    assert store.claim_run(run.run_id, takeover_stale_before=run.heartbeat_at) is None
    taken = store.claim_run(
        run.run_id, takeover_stale_before=run.heartbeat_at + timedelta(microseconds=1)
    )
    assert taken is not None and taken.epoch == run.epoch + 1
    assert taken.started_at is not None and taken.started_at > run.heartbeat_at


def test_stale_runs_oldest_first_up_to_a_limit(store: SQLiteStore) -> None:
    ids = [store.create_run(f"u{n}", "s").run_id for n in range(4)]
    store.claim_run(ids[1])
    done = ids[3]
    store.finish_run(done, RunStatus.SUCCEEDED)
    soon = utcnow() + timedelta(seconds=5)
    assert [run.run_id for run in store.stale_runs(soon)] == ids[:3]
    assert [run.run_id for run in store.stale_runs(soon, limit=2)] == ids[:2]
    past = utcnow() - timedelta(hours=1)
    assert [run.run_id for run in store.stale_runs(soon, queued_before=past)] == [ids[1]]
    assert [run.run_id for run in store.stale_runs(past, queued_before=soon)] == [ids[0], ids[2]]


def test_queued_runs_page_by_creation_then_id(store: SQLiteStore) -> None:
    ids = [store.create_run(f"u{n}", "s", run_id=f"r{n}").run_id for n in range(5)]
    store.claim_run(ids[2])
    db = raw(store)  # two runs created in the same microsecond: the id orders them
    db.execute("UPDATE runs SET created_at = (SELECT created_at FROM runs WHERE run_id = 'r0')"
               " WHERE run_id = 'r1'")  # fmt: skip
    db.commit()
    db.close()
    first = store.queued_runs(limit=2)
    assert [run.run_id for run in first] == ["r0", "r1"]
    after = (first[-1].created_at, first[-1].run_id)
    assert [run.run_id for run in store.queued_runs(after, limit=2)] == ["r3", "r4"]
    assert [run.run_id for run in store.queued_runs((first[0].created_at, "r0"))] == [
        "r1", "r3", "r4",
    ]  # fmt: skip
    assert store.queued_runs((utcnow(), "")) == []


def test_purge_counts_only_finished_runs_past_the_bound(store: SQLiteStore) -> None:
    ids = [store.create_run(f"u{n}", "s").run_id for n in range(3)]
    store.finish_run(ids[0], RunStatus.SUCCEEDED)
    store.finish_run(ids[1], RunStatus.FAILED)
    ended = store.get_run(ids[1]).finished_at  # type: ignore[union-attr]
    assert ended is not None
    assert store.purge(ended) == 1  # the one that ended before the other
    assert store.purge(utcnow() + timedelta(seconds=5)) == 1
    assert [run.run_id for run in store.list_runs()] == [ids[2]]


def test_a_new_run_and_its_claim_are_announced(store: SQLiteStore) -> None:
    heard: list[str] = []
    store.listeners.add(heard.append)
    run = store.create_run("u", "s", run_id="mine")
    assert heard == ["mine"]
    assert store.get_run("mine") == run
    assert (run.upload_id, run.service_name, run.status) == ("u", "s", RunStatus.QUEUED)
    assert store.claim_run("mine") is not None
    assert heard == ["mine", "mine"]  # and so is its claim


def test_search_scans_window_by_window_within_its_bounds(store: SQLiteStore) -> None:
    run = store.create_run("u", "s").run_id
    store.append(run, [line(n, f"line {n}") for n in range(1, 31)])
    store.search_window = 4
    deadline = time.monotonic() + 30
    hits = store.search(run, SearchQuery("line 1"), after=5, upto=25, limit=3, deadline=deadline)
    assert hits == SearchHits([10, 11, 12], 12)
    hits = store.search(run, SearchQuery("line 2"), after=12, upto=21, limit=99, deadline=deadline)
    assert hits == SearchHits([20, 21], 21)
    try:  # past its deadline: the statement under way finishes, one window, no more
        hits = store.search(run, SearchQuery("line"), after=0, upto=30, limit=99, deadline=0.0)
    except SearchTimeoutError:
        pass  # or SQLite's progress handler stopped that statement too
    else:
        assert hits == SearchHits([1, 2, 3, 4], 4)


def test_the_default_page_sizes(store: SQLiteStore) -> None:
    """What a caller that names no limit gets: 100 runs, 1,000 queued or stale runs, 1,000
    lines."""
    db = raw(store)
    now = utcnow()
    db.executemany(
        "INSERT INTO runs (run_id, upload_id, service_name, status, created_at)"
        " VALUES (?, ?, 's', 'queued', ?)",
        [(f"r{n:04}", f"u{n}", (now - timedelta(seconds=n)).isoformat()) for n in range(1001)],
    )
    db.commit()
    db.close()
    assert len(store.list_runs()) == 100
    assert len(store.queued_runs()) == 1000
    assert len(store.stale_runs(now + timedelta(seconds=5))) == 1000
    run = store.create_run("lines", "s").run_id
    store.append(run, [line(n) for n in range(1, 1002)])
    assert len(store.read(run)) == 1000
    framed = store.read_framed(run)
    assert (framed.count, framed.last_seq) == (1000, 1000)


def test_an_end_without_a_count_omitted_nothing_and_a_live_status_is_no_end(
    store: SQLiteStore,
) -> None:
    run = store.create_run("u", "s").run_id
    with pytest.raises(ValueError, match=r"^finish_run needs a final status, not running$"):
        store.finish_run(run, RunStatus.RUNNING)
    assert store.finish_run(run, RunStatus.SUCCEEDED)
    ended = store.get_run(run)
    assert ended is not None and ended.omitted == 0 and ended.to_json()["truncated"] is False


def test_a_refused_end_names_its_run(store: SQLiteStore) -> None:
    run = store.claim_run(store.create_run("u", "s").run_id)
    assert run is not None
    with pytest.raises(SeqGapError) as gap:
        store.finish_run(run.run_id, RunStatus.SUCCEEDED, lines=[line(2)], epoch=run.epoch)
    assert (gap.value.run_id, gap.value.expected, gap.value.received) == (run.run_id, 1, 2)
    with pytest.raises(RunFencedError) as stale:
        store.finish_run(run.run_id, RunStatus.SUCCEEDED, epoch=run.epoch + 1)
    assert (stale.value.run_id, stale.value.reason) == (run.run_id, "stale_epoch")


def test_the_run_key_cache_starts_over_past_10_000_runs(store: SQLiteStore) -> None:
    """Each line row repeats its run's key, cached per run: a long-lived server writing to
    ever new runs must not keep every key. 10,001 are kept; the next new run starts over."""
    first, second = (store.claim_run(store.create_run(f"u{i}", "s").run_id) for i in range(2))
    assert first is not None and second is not None
    store._keys.update({f"old{i}": ("u", "s") for i in range(10_000)})  # as if written to
    store.append(first.run_id, [line(1)])
    assert len(store._keys) == 10_001
    store.append(second.run_id, [line(1)])
    assert store._keys == {second.run_id: ("u1", "s")}
