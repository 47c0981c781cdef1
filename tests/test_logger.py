"""RunLogger: every line committed before log() returns, in order, never twice, never raising."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from jobtail.logger import MAX_LINE_CHARS, RunLogger, RunLogHandler
from jobtail.store.base import (
    LogLine,
    RunFencedError,
    RunStatus,
    SeqGapError,
    StoreError,
    utcnow,
)
from jobtail.store.sqlite import SQLiteStore

from .waiting import wait_for


def test_each_line_is_committed_before_log_returns(
    sqlite_store: SQLiteStore, tmp_path: Path
) -> None:
    run = sqlite_store.create_run("up", "svc")
    other = SQLiteStore(tmp_path / "store.db")  # a second connection, as another process would
    logger = RunLogger(sqlite_store, run.run_id)
    for n in range(1, 4):
        assert logger.info(f"line {n}") is None
        assert [line.message for line in other.read(run.run_id)][-1] == f"line {n}"
    assert other.get_run(run.run_id).last_seq == 3  # type: ignore[union-attr]
    other.close()


def test_levels_fields_progress_and_exception(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id)
    logger.debug("d")
    logger.warning("w", table="pets")
    logger.progress(150, "almost")
    try:
        raise KeyError("boom")
    except KeyError:
        logger.exception("failed")
    logger.log("warn", "legacy name")
    lines = sqlite_store.read(run.run_id)
    assert [(x.seq, x.log_level) for x in lines] == [
        (1, "DEBUG"),
        (2, "WARNING"),
        (3, "INFO"),
        (4, "ERROR"),
        (5, "WARNING"),
    ]
    assert lines[1].fields == {"table": "pets"}
    assert lines[2].fields == {"progress": 100.0} and lines[2].message == "almost"
    assert "KeyError: 'boom'" in lines[3].message and "Traceback" in lines[3].message


def test_resumes_numbering_after_existing_lines(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    RunLogger(sqlite_store, run.run_id).info("first writer")
    assert RunLogger(sqlite_store, run.run_id).log("INFO", "second writer") == 2


def test_long_messages_are_truncated_with_a_marker(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id)
    logger.info("x" * (MAX_LINE_CHARS + 10))
    logger.info("y" * MAX_LINE_CHARS)
    cut, whole = sqlite_store.read(run.run_id)
    assert cut.message.startswith("x" * MAX_LINE_CHARS)
    assert cut.message.endswith("[truncated 10 characters]") and cut.fields == {"truncated": 10}
    assert whole.message == "y" * MAX_LINE_CHARS and whole.fields is None


def test_line_cap_without_a_tail_ends_with_a_warning(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id, max_lines=10, keep_tail=0)
    seqs = [logger.info(f"n{n}") for n in range(20)]
    assert logger.close()
    lines = sqlite_store.read(run.run_id)
    assert seqs[10:] == [None] * 10
    assert [line.message for line in lines[:9]] == [f"n{n}" for n in range(9)]
    assert lines[9].log_level == "WARNING"
    assert lines[9].message == "line limit of 10 reached: later lines are dropped"
    assert lines[10].message == "… 11 lines omitted (line limit of 10) …"
    assert lines[10].log_level == "WARNING"
    assert len(lines) == 11 and logger.omitted == 11


def test_past_the_cap_the_head_and_the_tail_are_kept_and_the_gap_is_said(
    sqlite_store: SQLiteStore,
) -> None:
    """A huge log keeps its start and its end (where the error is), never fails the job, and
    says how many lines it left out, in the log and on the run."""
    run = sqlite_store.claim_run(sqlite_store.create_run("up", "svc").run_id)
    assert run is not None
    logger = RunLogger(sqlite_store, run.run_id, epoch=run.epoch, max_lines=20, keep_tail=5)
    returned = [logger.log("INFO", f"n{n}") for n in range(1, 101)]
    assert returned[:13] == list(range(1, 14)) and set(returned[13:]) == {None}
    live = sqlite_store.read(run.run_id)  # viewers see the head and the warning at once
    assert [x.message for x in live[:13]] == [f"n{n}" for n in range(1, 14)]
    assert live[13].log_level == "WARNING" and live[13].fields == {"limit": 20, "kept_tail": 5}
    assert "except the last 5, shown at the end" in live[13].message and len(live) == 14
    assert logger.finish(RunStatus.FAILED, "Run failed: boom", error="boom")
    lines = sqlite_store.read(run.run_id)
    assert [x.seq for x in lines] == list(range(1, len(lines) + 1))
    assert lines[14].message == "… 82 lines omitted (line limit of 20) …"
    assert lines[14].fields == {"omitted": 82}
    assert [x.message for x in lines[15:20]] == [f"n{n}" for n in range(96, 101)]
    assert lines[-1].message == "Run failed: boom" and len(lines) == 21  # the end is always kept
    ended = sqlite_store.get_run(run.run_id)
    assert ended is not None and ended.omitted == 82
    assert ended.to_json()["truncated"] is True and ended.to_json()["omitted"] == 82


class FlakyStore(SQLiteStore):
    """A real SQLite store whose appends fail on demand, and may commit then 'lose' the reply."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.failures = 0
        self.lose_reply = False

    def append(self, run_id: str, lines: Sequence[LogLine], *, epoch: int | None = None) -> int:
        if self.failures:
            self.failures -= 1
            if self.lose_reply:
                super().append(run_id, lines, epoch=epoch)
            raise StoreError("database is unreachable")
        return super().append(run_id, lines, epoch=epoch)

    def finish_run(self, run_id: str, status: RunStatus, *args: Any, **kwargs: Any) -> bool:
        if self.failures:
            self.failures -= 1
            if self.lose_reply:
                super().finish_run(run_id, status, *args, **kwargs)
            raise StoreError("database is unreachable")
        return super().finish_run(run_id, status, *args, **kwargs)


@pytest.mark.parametrize("lose_reply", [False, True])
def test_failing_store_never_raises_and_keeps_order_without_duplicates(
    tmp_path: Path, lose_reply: bool
) -> None:
    store = FlakyStore(tmp_path / "s.db")
    run = store.create_run("up", "svc")
    slept: list[float] = []
    logger = RunLogger(store, run.run_id, retry_delays=(0.01, 0.02), sleep=slept.append)
    logger.info("one")
    store.failures, store.lose_reply = 4, lose_reply  # more failures than one call's retries
    logger.info("two")
    assert logger.pending >= 1
    logger.info("three")
    assert logger.close() is True and logger.pending == 0
    assert [(x.seq, x.message) for x in store.read(run.run_id)] == [
        (1, "one"),
        (2, "two"),
        (3, "three"),
    ]
    assert slept, "retries back off"
    store.close()


def test_a_job_logs_on_through_an_outage_and_its_buffer_is_bounded(tmp_path: Path) -> None:
    """While lines wait, a call tries the store once per backoff step, without sleeping (the
    job goes on); at ``max_pending`` waiting lines each call waits out the whole backoff."""
    store = FlakyStore(tmp_path / "s.db")
    run = store.create_run("up", "svc")
    slept: list[float] = []
    logger = RunLogger(store, run.run_id, retry_delays=(60.0,), sleep=slept.append, max_pending=50)
    store.failures = 1_000_000
    for n in range(1, 50):
        logger.info(f"n{n}")
    assert 1_000_000 - store.failures == 2 and slept == [60.0]  # the first call's try + retry
    logger.info("n50")  # the 50th waiting line: this call waits for the store
    assert 1_000_000 - store.failures == 4 and slept == [60.0, 60.0] and logger.pending == 50
    store.failures = 0
    assert logger.close() is True
    assert [x.message for x in store.read(run.run_id)] == [f"n{n}" for n in range(1, 51)]
    store.close()


def test_close_reports_lines_that_never_landed(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path / "s.db")
    run = store.create_run("up", "svc")
    logger = RunLogger(store, run.run_id, retry_delays=(0.0,), sleep=lambda _: None)
    store.failures = 100
    logger.info("lost for now")
    assert logger.close() is False and logger.pending == 1
    store.failures = 0
    assert logger.close() is True and store.get_run(run.run_id).last_seq == 1  # type: ignore[union-attr]
    store.close()


def test_standard_logging_flows_into_the_run(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    handler = RunLogHandler(RunLogger(sqlite_store, run.run_id))
    library = logging.getLogger("some.library")
    library.addHandler(handler)
    library.setLevel(logging.DEBUG)
    try:
        library.info("parsed %d schemas", 3, extra={"fields": {"file": "a.yaml"}})
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            library.exception("division")
    finally:
        library.removeHandler(handler)
    info, error = sqlite_store.read(run.run_id)
    assert info.message == "parsed 3 schemas" and info.fields == {
        "logger": "some.library",
        "file": "a.yaml",
    }
    assert error.log_level == "ERROR" and "ZeroDivisionError" in error.message
    assert sqlite_store.get_run(run.run_id).status is RunStatus.QUEUED  # type: ignore[union-attr]


def test_write_behind_commits_in_the_background_in_order(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id, write_behind=0.01)
    for n in range(1, 5001):
        logger.info(f"n{n}")
    wait_for(lambda: sqlite_store.get_run(run.run_id).last_seq == 5000, 10, "the flusher")  # type: ignore[union-attr]
    assert [line.seq for line in sqlite_store.read(run.run_id, limit=10_000)] == list(
        range(1, 5001)
    )
    assert logger.close() is True


def test_write_behind_is_bounded_and_close_flushes(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id, write_behind=3600, max_pending=10)
    for n in range(25):
        logger.info(f"n{n}")
    assert sqlite_store.get_run(run.run_id).last_seq == 20 and logger.pending == 5  # type: ignore[union-attr]
    assert logger.close() is True and logger.pending == 0
    assert sqlite_store.get_run(run.run_id).last_seq == 25  # type: ignore[union-attr]
    logger.info("after close: written through")
    assert sqlite_store.get_run(run.run_id).last_seq == 26  # type: ignore[union-attr]


def test_write_behind_survives_a_failing_store(tmp_path: Path) -> None:
    store = FlakyStore(tmp_path / "s.db")
    run = store.create_run("up", "svc")
    logger = RunLogger(
        store, run.run_id, write_behind=0.01, retry_delays=(0.0,), sleep=lambda _: None
    )
    store.failures = 50
    for n in range(100):
        logger.info(f"n{n}")
    wait_for(logger.close, 10, "the store to come back")  # each close retries what is pending
    assert [line.seq for line in store.read(run.run_id)] == list(range(1, 101))
    store.close()


def test_a_lone_surrogate_is_kept_visible_and_blocks_no_later_line(
    sqlite_store: SQLiteStore,
) -> None:
    """One odd line used to block its run for good: the pending batch never encoded."""
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id)
    handler = RunLogHandler(logger)
    library = logging.getLogger("files")
    library.addHandler(handler)
    try:
        name = os.fsdecode(b"report-\xff.txt")  # surrogateescape, as os.listdir gives it
        library.warning("skipped %s", name, extra={"fields": {"path": name, "\udc80": 1}})
        logger.info("lone \ud800 surrogate")
        logger.info("the next line")
    finally:
        library.removeHandler(handler)
    assert logger.pending == 0
    got = sqlite_store.read(run.run_id)
    assert [line.message for line in got] == [
        "skipped report-\\udcff.txt",
        "lone \\ud800 surrogate",
        "the next line",
    ]
    assert got[0].fields == {"logger": "files", "path": "report-\\udcff.txt", "\\udc80": 1}


def test_a_record_whose_format_fails_is_kept_with_why(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    handler = RunLogHandler(RunLogger(sqlite_store, run.run_id))
    library = logging.getLogger("careless")
    library.addHandler(handler)
    library.propagate = False  # pytest's own capture handler would fail on it first
    try:
        library.error("%d items", "many")
    finally:
        library.removeHandler(handler)
        library.propagate = True
    [line] = sqlite_store.read(run.run_id)
    assert line.log_level == "ERROR" and "'%d items'" in line.message
    assert "format failed: TypeError" in line.message and "'many'" in line.message


def test_fields_are_bounded_like_messages(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id, max_line_chars=100)
    logger.info("big fields", blob="x" * 10_000_000, nested={"list": ["y" * 150, 3]})
    [line] = sqlite_store.read(run.run_id)
    assert line.fields is not None
    assert line.fields["blob"].startswith("x" * 100) and len(line.fields["blob"]) < 200
    assert line.fields["nested"]["list"][0].endswith("[truncated 50 characters]")
    assert line.fields["truncated_fields"] == 10_000_000 - 100 + 50


def test_critical_exists(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    RunLogger(sqlite_store, run.run_id).critical("on fire", code=7)
    [line] = sqlite_store.read(run.run_id)
    assert (line.log_level, line.message, line.fields) == ("CRITICAL", "on fire", {"code": 7})


def test_a_fenced_writer_gets_run_fenced_error_and_stops_writing(
    sqlite_store: SQLiteStore,
) -> None:
    run = sqlite_store.create_run("up", "svc")
    first = sqlite_store.claim_run(run.run_id)
    assert first is not None
    zombie = RunLogger(sqlite_store, run.run_id, epoch=first.epoch, write_behind=3600)
    zombie.info("mine")
    assert zombie.flush()
    takeover = sqlite_store.claim_run(run.run_id, takeover_stale_before=utcnow())
    assert takeover is not None
    zombie.info("pending while fenced")
    with pytest.raises(RunFencedError) as refused:
        zombie.flush()
    assert refused.value.reason == "stale_epoch" and zombie.pending == 0
    with pytest.raises(RunFencedError):
        zombie.info("any later line")
    owner = RunLogger(sqlite_store, run.run_id, epoch=takeover.epoch)
    assert owner.finish(RunStatus.SUCCEEDED, "done by the new owner")
    assert [line.message for line in sqlite_store.read(run.run_id)] == [
        "mine",
        "done by the new owner",
    ]
    with pytest.raises(RunFencedError):  # the end was stored: the owner is closed too
        owner.info("after the end")


def test_finish_waits_out_an_outage_and_ends_with_every_line(tmp_path: Path) -> None:
    """The store refuses the closing write twice: the run still ends with the line last."""
    store = FlakyStore(tmp_path / "s.db")
    run = store.create_run("up", "svc")
    slept: list[float] = []
    logger = RunLogger(store, run.run_id, retry_delays=(0.01,), sleep=slept.append)
    store.failures = 4  # the append and its retry, then two refused ends
    logger.info("kept while the store is down")
    assert logger.pending == 1
    assert logger.finish(RunStatus.SUCCEEDED, "Run succeeded", timeout=5) is True
    assert slept == [0.01] * 3  # one in log(), then one per refused end
    ended = store.get_run(run.run_id)
    assert ended is not None and ended.status is RunStatus.SUCCEEDED
    assert [(x.seq, x.message) for x in store.read(run.run_id)] == [
        (1, "kept while the store is down"),
        (2, "Run succeeded"),
    ]
    store.failures = 100
    other = store.create_run("up", "svc2")
    late = RunLogger(store, other.run_id, retry_delays=(0.01,), sleep=slept.append)
    assert late.finish(RunStatus.FAILED, "gave up", timeout=0.0) is False
    assert late.pending == 1  # kept, not dropped: the janitor ends the run if it never lands
    store.close()


def test_a_write_the_database_refuses_keeps_the_line_pending(sqlite_store: SQLiteStore) -> None:
    """A trigger that aborts stands in for a full disk: the failed INSERT is a StoreError, never
    reported as committed, and the line lands once the database takes writes again."""
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id, retry_delays=(0.0,), sleep=lambda _: None)
    db = sqlite_store._db()
    db.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON runs_logs BEGIN SELECT RAISE(ABORT, 'disk full');"
        " END"
    )
    with pytest.raises(StoreError, match="disk full"):
        sqlite_store.append(run.run_id, [LogLine(1, utcnow(), "INFO", "x")])
    logger.info("refused for now")
    logger.info("and this one")
    assert logger.pending == 2 and sqlite_store.read(run.run_id) == []
    db.execute("DROP TRIGGER refuse")
    logger.info("taken")
    assert logger.pending == 0
    assert [x.message for x in sqlite_store.read(run.run_id)] == [
        "refused for now",
        "and this one",
        "taken",
    ]


def test_after_its_end_a_logger_refuses_without_asking_the_store(tmp_path: Path) -> None:
    """A job left running past its deadline may log after the worker closed the store: the
    line is refused at once (the job stops), never an error from a closed database."""
    store = SQLiteStore(tmp_path / "s.db")
    run = store.claim_run(store.create_run("up", "svc").run_id)
    assert run is not None
    logger = RunLogger(store, run.run_id, epoch=run.epoch)
    assert logger.finish(RunStatus.FAILED, "Run failed: worker timeout (9 s)")
    store.close()
    with pytest.raises(RunFencedError) as refused:
        logger.info("the job carries on")
    assert refused.value.reason == "closed"
    assert logger.close() is True


def test_every_level_method_writes_its_level_message_and_fields(
    sqlite_store: SQLiteStore,
) -> None:
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id)
    logger.debug("d", n=1)
    logger.info("i", n=2)
    logger.warning("w", n=3)
    logger.error("e", n=4)
    logger.critical("c", n=5)
    logger.exception("no exception under way", n=6)
    try:
        raise KeyError("boom")
    except KeyError:
        logger.exception("x", n=7)
    got = [(x.log_level, x.message, x.fields) for x in sqlite_store.read(run.run_id)]
    assert got[:6] == [
        ("DEBUG", "d", {"n": 1}),
        ("INFO", "i", {"n": 2}),
        ("WARNING", "w", {"n": 3}),
        ("ERROR", "e", {"n": 4}),
        ("CRITICAL", "c", {"n": 5}),
        ("ERROR", "no exception under way", {"n": 6}),
    ]
    level, message, fields = got[6]
    assert (level, fields) == ("ERROR", {"n": 7})
    assert message.startswith("x\nTraceback") and message.endswith("KeyError: 'boom'")


def test_progress_is_clamped_and_says_its_percentage_when_given_no_message(
    sqlite_store: SQLiteStore,
) -> None:
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id)
    logger.progress(-5)
    logger.progress(42.4, step="load")
    logger.progress(250, "done")
    got = [(x.log_level, x.message, x.fields) for x in sqlite_store.read(run.run_id)]
    assert got == [
        ("INFO", "0%", {"progress": 0.0}),
        ("INFO", "42%", {"progress": 42.4, "step": "load"}),
        ("INFO", "done", {"progress": 100.0}),
    ]


def test_a_line_cut_to_a_smaller_limit_says_how_much_was_cut(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    RunLogger(sqlite_store, run.run_id, max_line_chars=10).info("x" * 25)
    [line] = sqlite_store.read(run.run_id)
    assert line.message == "x" * 10 + " … [truncated 15 characters]"
    assert line.fields == {"truncated": 15}


def test_a_logger_made_before_its_run_exists_starts_at_one(sqlite_store: SQLiteStore) -> None:
    """A worker may hold a run id before the run's row is visible: its lines wait, then land."""
    logger = RunLogger(sqlite_store, "r-later", retry_delays=(0.0,), sleep=lambda _: None)
    assert logger.log("INFO", "early") == 1 and logger.pending == 1
    sqlite_store.create_run("up", "svc", run_id="r-later")
    assert logger.log("INFO", "next") == 2 and logger.pending == 0
    assert [(x.seq, x.message) for x in sqlite_store.read("r-later")] == [(1, "early"), (2, "next")]


def test_an_end_before_its_run_exists_is_not_stored_and_its_lines_wait(
    sqlite_store: SQLiteStore,
) -> None:
    """Without a claim, a run the store does not have yet is not "already closed": finish says
    its end is not stored and keeps its lines, which land once the run exists."""
    logger = RunLogger(sqlite_store, "r-later", retry_delays=(0.0,), sleep=lambda _: None)
    logger.info("early")
    assert logger.finish(RunStatus.SUCCEEDED, "done", timeout=0) is False
    assert logger.pending == 2  # the line and the end's own line, in order
    sqlite_store.create_run("up", "svc", run_id="r-later")
    assert logger.flush()
    assert [(x.seq, x.message) for x in sqlite_store.read("r-later")] == [(1, "early"), (2, "done")]


@pytest.mark.parametrize(
    ("cap", "tail"),
    [(10, ["n48", "n49", "n50"]), (11, ["n47", "n48", "n49", "n50"])],
)
def test_a_capped_log_is_exactly_its_cap_long_with_the_longest_tail_that_fits(
    sqlite_store: SQLiteStore, cap: int, tail: list[str]
) -> None:
    """With the default tail, the head, the warning, "omitted" and the tail fill the cap."""
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id, max_lines=cap)
    for n in range(1, 51):
        logger.info(f"n{n}")
    assert logger.close()
    lines = sqlite_store.read(run.run_id)
    assert len(lines) == cap
    assert [x.message for x in lines[:5]] == ["n1", "n2", "n3", "n4", "n5"]
    assert lines[5].message == (
        f"line limit of {cap} reached: later lines are dropped,"
        f" except the last {len(tail)}, shown at the end"
    )
    assert lines[6].message == f"… {45 - len(tail)} lines omitted (line limit of {cap}) …"
    assert [x.message for x in lines[7:]] == tail


def test_the_line_that_reaches_the_cap_is_kept_whole_in_the_tail(
    sqlite_store: SQLiteStore,
) -> None:
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id, max_lines=10)
    for n in range(1, 6):
        logger.info(f"n{n}")
    assert logger.log("ERROR", "the one past the cap", table="pets") is None
    assert logger.close()
    lines = sqlite_store.read(run.run_id)
    assert [x.message for x in lines[:5]] == ["n1", "n2", "n3", "n4", "n5"]
    assert lines[5].log_level == "WARNING" and lines[5].fields == {"limit": 10, "kept_tail": 3}
    assert (lines[6].log_level, lines[6].message, lines[6].fields) == (
        "ERROR",
        "the one past the cap",
        {"table": "pets"},
    )
    assert len(lines) == 7  # nothing omitted: no "omitted" line


def test_each_omitted_line_is_counted_once_across_close_and_finish(
    sqlite_store: SQLiteStore,
) -> None:
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id, max_lines=10, keep_tail=0)
    for n in range(1, 13):
        logger.info(f"n{n}")
    assert logger.close()
    logger.info("n13")
    logger.info("n14")
    assert logger.finish(RunStatus.SUCCEEDED, "done")
    omitted = [
        x.message for x in sqlite_store.read(run.run_id) if x.fields and "omitted" in x.fields
    ]
    assert omitted == [
        "… 3 lines omitted (line limit of 10) …",
        "… 2 lines omitted (line limit of 10) …",
    ]
    ended = sqlite_store.get_run(run.run_id)
    assert ended is not None and ended.omitted == 5


def test_by_default_a_capped_log_keeps_its_last_thousand_lines(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id, max_lines=2_010, write_behind=3600)
    for n in range(1, 3_001):
        logger.info(f"n{n}")
    assert logger.close()
    lines = sqlite_store.read(run.run_id, limit=10_000)
    kept = lines[[x.fields is not None and "omitted" in x.fields for x in lines].index(True) + 1 :]
    assert [x.message for x in kept] == [f"n{n}" for n in range(2_001, 3_001)]


def test_by_default_write_behind_holds_at_most_ten_thousand_lines(
    sqlite_store: SQLiteStore,
) -> None:
    run = sqlite_store.create_run("up", "svc")
    logger = RunLogger(sqlite_store, run.run_id, write_behind=3600)
    for n in range(1, 10_000):
        logger.info(f"n{n}")
    assert logger.pending == 9_999 and sqlite_store.read(run.run_id) == []
    logger.info("n10000")  # the buffer is full: this call commits it
    assert logger.pending == 0
    assert sqlite_store.get_run(run.run_id).last_seq == 10_000  # type: ignore[union-attr]
    assert logger.close()


@pytest.mark.parametrize("seconds", [0, -1])
def test_write_behind_needs_a_positive_interval(sqlite_store: SQLiteStore, seconds: float) -> None:
    run = sqlite_store.create_run("up", "svc")
    with pytest.raises(ValueError, match=r"^write_behind must be a positive number of seconds$"):
        RunLogger(sqlite_store, run.run_id, write_behind=seconds)


def test_a_with_block_commits_on_exit_and_leaves_no_thread(sqlite_store: SQLiteStore) -> None:
    run = sqlite_store.create_run("up", "svc")
    before = set(threading.enumerate())
    with RunLogger(sqlite_store, run.run_id, write_behind=3600) as logger:
        logger.info("one")
        logger.info("two")
        assert logger.pending == 2
    assert [x.message for x in sqlite_store.read(run.run_id)] == ["one", "two"]
    assert set(threading.enumerate()) <= before


def test_a_with_block_whose_writer_was_fenced_leaves_quietly(sqlite_store: SQLiteStore) -> None:
    """The job already got RunFencedError from its log call; leaving the block adds nothing."""
    first = sqlite_store.claim_run(sqlite_store.create_run("up", "svc").run_id)
    assert first is not None
    with RunLogger(sqlite_store, first.run_id, epoch=first.epoch) as zombie:
        sqlite_store.claim_run(first.run_id, takeover_stale_before=utcnow())
        with pytest.raises(RunFencedError):
            zombie.info("refused")
    assert zombie.refused is not None


def test_a_job_that_never_closes_its_write_behind_logger_still_exits(tmp_path: Path) -> None:
    """The background flusher must not keep the job's process alive."""
    job = (
        "import sys\n"
        "from jobtail.logger import RunLogger\n"
        "from jobtail.store.sqlite import SQLiteStore\n"
        "store = SQLiteStore(sys.argv[1])\n"
        "run = store.create_run('up', 'svc')\n"
        "RunLogger(store, run.run_id, write_behind=3600).info('never closed')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(
        [sys.executable, "-c", job, str(tmp_path / "s.db")], env=env, timeout=30, check=False
    )
    assert done.returncode == 0


def test_an_outage_is_reported_once_and_flush_waits_out_the_full_backoff(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Operators see one warning when lines start waiting and one when they landed; flush()
    retries with every delay and says whether its last try landed them."""
    store = FlakyStore(tmp_path / "s.db")
    run = store.create_run("up", "svc")
    slept: list[float] = []
    logger = RunLogger(store, run.run_id, retry_delays=(0.01, 5.0), sleep=slept.append)
    store.failures = 100
    with caplog.at_level(logging.WARNING, logger="jobtail.logger"):
        for n in range(3):
            logger.info(f"n{n}")
        assert slept == [0.01] and logger.pending == 3
        assert caplog.messages == [
            f"run {run.run_id}: lines not yet stored (they wait in order): database is unreachable"
        ]
        store.failures = 2  # the full backoff, and the last retry lands
        slept.clear()
        caplog.clear()
        assert logger.flush() is True and slept == [0.01, 5.0] and logger.pending == 0
    [back] = caplog.messages
    assert back.startswith(f"run {run.run_id}: the store is back: 3 waiting lines stored after ")
    assert 0 <= float(back.rsplit(" ", 2)[-2]) < 60  # seconds waited
    assert [x.message for x in store.read(run.run_id)] == ["n0", "n1", "n2"]
    store.close()


def test_during_an_outage_log_tries_once_per_backoff_step_and_each_outage_starts_over(
    tmp_path: Path,
) -> None:
    """A job logging all through an outage tries the store at 0, d0, d0 + d1, … (never on every
    call); once the lines landed, the next outage backs off from the first step again."""
    store = FlakyStore(tmp_path / "s.db")
    run = store.create_run("up", "svc")
    logger = RunLogger(store, run.run_id, retry_delays=(0.05, 0.1, 3600.0), sleep=lambda _: None)
    pause = threading.Event()

    def tries_while_logging_for(seconds: float) -> int:
        store.failures = before = 1_000_000
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            logger.info("during the outage")
            pause.wait(0.005)
        return before - store.failures

    for outage in (1, 2):
        # the first call tries and retries; then one try after 0.05 s, one 0.1 s later, and
        # none in the hour after that
        assert tries_while_logging_for(0.6) == 4, f"outage {outage}"
        store.failures = 0
        assert logger.flush() is True and logger.pending == 0
    store.close()


def test_the_write_behind_flusher_retries_once_per_round_while_the_store_is_down(
    tmp_path: Path,
) -> None:
    """The flusher holds the logger's lock while it writes: it never sits out the long delays."""
    store = FlakyStore(tmp_path / "s.db")
    run = store.create_run("up", "svc")
    slept: list[float] = []
    logger = RunLogger(
        store, run.run_id, write_behind=0.01, retry_delays=(0.001, 5.0), sleep=slept.append
    )
    store.failures = 1_000_000
    logger.info("waits")
    wait_for(lambda: len(slept) >= 3, 10, "three rounds of the flusher")
    store.failures = 0
    assert logger.close() is True
    assert set(slept) == {0.001}
    store.close()


def test_finish_backs_off_and_holds_at_the_longest_delay(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(tmp_path / "s.db")
    run = store.create_run("up", "svc")
    slept: list[float] = []
    logger = RunLogger(store, run.run_id, retry_delays=(0.01, 0.02, 0.03), sleep=slept.append)
    store.failures = 5
    assert logger.finish(RunStatus.SUCCEEDED, "done", timeout=60) is True
    assert slept == [0.01, 0.02, 0.03, 0.03, 0.03]
    other = store.create_run("up", "svc2")
    late = RunLogger(store, other.run_id, retry_delays=(0.01,), sleep=slept.append)
    store.failures = 100
    slept.clear()
    with caplog.at_level(logging.WARNING, logger="jobtail.logger"):
        assert late.finish(RunStatus.FAILED, "gave up") is False  # no timeout: one try
    assert slept == []
    assert caplog.messages == [
        f"run {other.run_id}: its end is not yet stored: database is unreachable"
    ]
    store.close()


def test_finish_stores_the_end_its_level_error_and_fields(sqlite_store: SQLiteStore) -> None:
    ok = sqlite_store.create_run("up", "ok")
    assert RunLogger(sqlite_store, ok.run_id).finish(RunStatus.SUCCEEDED, "Run succeeded")
    failed = sqlite_store.create_run("up", "failed")
    logger = RunLogger(sqlite_store, failed.run_id)
    assert logger.finish(RunStatus.FAILED, "Run failed: boom", error="boom", fields={"code": 2})
    [good] = sqlite_store.read(ok.run_id)
    [bad] = sqlite_store.read(failed.run_id)
    assert (good.log_level, good.message, good.fields) == ("INFO", "Run succeeded", None)
    assert (bad.log_level, bad.message, bad.fields) == ("ERROR", "Run failed: boom", {"code": 2})
    ended = sqlite_store.get_run(failed.run_id)
    assert ended is not None and ended.status is RunStatus.FAILED and ended.error == "boom"
    with pytest.raises(RunFencedError) as refused:
        logger.info("after the end")
    assert (refused.value.run_id, refused.value.reason, refused.value.status) == (
        failed.run_id,
        "closed",
        "failed",
    )
    assert str(refused.value) == f"run {failed.run_id} is closed (failed)"


def test_a_fenced_writer_cannot_end_the_run_and_says_what_it_lost(
    sqlite_store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    first = sqlite_store.claim_run(sqlite_store.create_run("up", "svc").run_id)
    assert first is not None
    zombie = RunLogger(sqlite_store, first.run_id, epoch=first.epoch)
    takeover = sqlite_store.claim_run(first.run_id, takeover_stale_before=utcnow())
    assert takeover is not None
    with (
        caplog.at_level(logging.WARNING, logger="jobtail.logger"),
        pytest.raises(RunFencedError) as refused,
    ):
        zombie.finish(RunStatus.SUCCEEDED, "done by the zombie")
    assert refused.value.reason == "stale_epoch"
    assert caplog.messages == [
        f"run {first.run_id} refused this writer ({refused.value}): 1 lines not stored"
    ]
    with pytest.raises(RunFencedError):
        zombie.info("any later line")
    assert sqlite_store.get_run(first.run_id).status is RunStatus.RUNNING  # type: ignore[union-attr]
    assert sqlite_store.read(first.run_id) == []


def test_a_logged_exception_that_was_never_raised_keeps_its_text(
    sqlite_store: SQLiteStore,
) -> None:
    """Libraries pass built exceptions as ``exc_info``: no traceback, but the error is kept."""
    run = sqlite_store.create_run("up", "svc")
    handler = RunLogHandler(RunLogger(sqlite_store, run.run_id))
    library = logging.getLogger("builder")
    library.addHandler(handler)
    try:
        library.error("could not parse", exc_info=ValueError("bad token at 3"))
    finally:
        library.removeHandler(handler)
    [line] = sqlite_store.read(run.run_id)
    assert line.message.startswith("could not parse\n")
    assert line.message.endswith("ValueError: bad token at 3")


def test_standard_logging_into_a_refused_run_stops_the_job(sqlite_store: SQLiteStore) -> None:
    """A seq gap refuses the writer for good, like a fence: a logging call says so."""
    run = sqlite_store.create_run("up", "svc")
    handler = RunLogHandler(RunLogger(sqlite_store, run.run_id, start_seq=5))
    library = logging.getLogger("gapped")
    library.addHandler(handler)
    library.propagate = False
    try:
        with pytest.raises(SeqGapError):
            library.warning("after a gap")
        with pytest.raises(SeqGapError):
            library.warning("and later")
    finally:
        library.removeHandler(handler)
        library.propagate = True
    assert sqlite_store.read(run.run_id) == []
