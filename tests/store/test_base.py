"""The store protocol's shared pieces (``store/base.py``): the refusals every backend raises and
reads back from its SQL, the checks of a writer's lines, the models' JSON and wire forms."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobtail.store.base import (
    JSON_LINES,
    SEARCH_PAGE,
    TEXT_LINES,
    FramedLines,
    Framing,
    ListenerSet,
    LogLine,
    LogStore,
    Run,
    RunActiveError,
    RunFencedError,
    RunNotFoundError,
    RunStatus,
    SeqGapError,
    check_writer,
    dump_json,
    dump_pg_json,
    frame_lines,
    level_number,
    line_json,
    line_text,
    new_lines,
    new_run_id,
    normalize_level,
    refusal,
    utcnow,
)
from jobtail.store.matching import SearchHits, SearchQuery, SearchTimeoutError
from jobtail.store.sqlite import SQLiteStore

T = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def line(seq: int, message: str = "m") -> LogLine:
    return LogLine(seq, T, "INFO", message)


# -- refusals --------------------------------------------------------------------------------
def test_refusals_say_what_happened() -> None:
    run = Run("r1", "u", "s", RunStatus.RUNNING, T)
    assert str(RunActiveError(run)) == "run r1 is still running"
    closed = RunFencedError("r1", "closed", epoch=3, status="failed")
    assert str(closed) == "run r1 is closed (failed)"
    assert (closed.run_id, closed.reason, closed.epoch, closed.status) == (
        "r1",
        "closed",
        3,
        "failed",
    )
    stale = RunFencedError("r1", "stale_epoch", epoch=4)
    assert str(stale) == "run r1 was claimed by a newer writer (epoch 4)"
    gap = SeqGapError("r1", 5, 7)
    assert str(gap) == "run r1 expects seq 5 next, not 7"
    assert (gap.run_id, gap.expected, gap.received) == ("r1", 5, 7)


def test_a_sql_refusal_detail_becomes_the_same_error() -> None:
    gap = refusal('{"reason": "gap", "run_id": 12, "expected": "3", "received": 5}')
    assert isinstance(gap, SeqGapError)
    assert (gap.run_id, gap.expected, gap.received) == ("12", 3, 5)
    stale = refusal(json.dumps({"reason": "stale_epoch", "run_id": "r", "epoch": 2}))
    assert isinstance(stale, RunFencedError)
    assert (stale.reason, stale.epoch, stale.status) == ("stale_epoch", 2, None)
    closed = refusal(json.dumps({"reason": "closed", "run_id": "r", "status": "succeeded"}))
    assert isinstance(closed, RunFencedError)
    assert (closed.run_id, closed.reason, closed.status) == ("r", "closed", "succeeded")


@pytest.mark.parametrize(
    "detail",
    [None, "", "not json", "[1, 2]", '{"reason": "gap"}', '{"reason": "other", "run_id": "r"}'],
)
def test_other_sql_errors_are_not_refusals(detail: str | None) -> None:
    assert refusal(detail) is None


# -- values ----------------------------------------------------------------------------------
def test_stored_json_is_compact_with_datetimes_and_odd_values_as_text() -> None:
    assert dump_json({"a": [1, None], "when": T, "path": Path("/tmp/x")}) == (
        '{"a":[1,null],"when":"2026-01-02T03:04:05.678901Z","path":"/tmp/x"}'
    )


def test_postgres_json_replaces_nul_but_not_an_escaped_backslash() -> None:
    assert dump_pg_json({"a": "x\x00y"}) == '{"a":"x\\ufffdy"}'
    assert dump_pg_json("\\u0000") == '"\\\\u0000"'  # a backslash, then the text u0000
    assert dump_pg_json("\\\x00") == '"\\\\\\ufffd"'  # a backslash, then NUL
    assert dump_pg_json("plain") == '"plain"'


def test_run_ids_are_time_ordered_and_unique() -> None:
    before = time.time_ns() // 1_000_000
    first = new_run_id()
    after = time.time_ns() // 1_000_000
    assert len(first) == 24 and int(first, 16) >= 0
    assert before <= int(first[:12], 16) <= after
    ids = [new_run_id() for _ in range(50)]
    assert len(set(ids)) == 50 and all(len(i) == 24 and int(i, 16) >= 0 for i in ids)
    stamps = [first[:12], *(i[:12] for i in ids)]
    assert stamps == sorted(stamps)


def test_now_is_aware_utc() -> None:
    now = utcnow()
    assert now.tzinfo is UTC and abs(now.timestamp() - time.time()) < 5


def test_levels_by_name() -> None:
    assert level_number(None) == 0
    assert [level_number(name) for name in ("debug", "Info", "WARNING", "error", "CRITICAL")] == [
        10, 20, 30, 40, 50,
    ]  # fmt: skip
    assert level_number("NOTICE") == 20  # a custom level counts as INFO
    assert [normalize_level(name) for name in ("warn", "fatal", "error", "Custom")] == [
        "WARNING", "CRITICAL", "ERROR", "CUSTOM",
    ]  # fmt: skip


def test_run_status_active() -> None:
    assert [status.active for status in RunStatus] == [True, True, False, False]


# -- lines on the wire -----------------------------------------------------------------------
def test_a_line_as_json_and_as_text() -> None:
    plain = LogLine(7, T, "WARNING", 'say "hi"\n')
    assert plain.to_json() == {
        "seq": 7, "timestamp": T.isoformat(), "log_level": "WARNING", "message": 'say "hi"\n',
    }  # fmt: skip
    assert LogLine(7, T, "INFO", "m", {}).to_json().get("fields") is None
    assert LogLine(7, T, "INFO", "m", {"a": 1}).to_json()["fields"] == {"a": 1}
    assert line_json(plain) == (
        b'{"seq":7,"timestamp":"2026-01-02T03:04:05.678901+00:00","log_level":"WARNING",'
        b'"message":"say \\"hi\\"\\n"}'
    )
    assert line_text(plain) == '2026-01-02T03:04:05.678+00:00 WARNING  say "hi"\n'
    assert line_text(LogLine(1, T, "VERBOSE_LEVEL", "x")).endswith("+00:00 VERBOSE_LEVEL x")


def test_framing_by_table() -> None:
    lines = [LogLine(1, T, "INFO", "a"), LogLine(2, T, "ERROR", "b")]
    one, two = line_json(lines[0]), line_json(lines[1])
    assert frame_lines(lines, JSON_LINES) == one + b"\n" + two + b"\n"
    sse = Framing("id: r:", "\ndata: ", "\n\n")
    assert (
        frame_lines(lines, sse) == b"id: r:1\ndata: " + one + b"\n\nid: r:2\ndata: " + two + b"\n\n"
    )
    assert frame_lines(lines, TEXT_LINES) == (
        b"2026-01-02T03:04:05.678+00:00 INFO     a\n2026-01-02T03:04:05.678+00:00 ERROR    b\n"
    )
    assert frame_lines(lines, Framing(text=True, tail="|")).count(b"|") == 2
    assert frame_lines([], JSON_LINES) == b""


def test_a_run_as_json_and_its_last_sign_of_life() -> None:
    run = Run("r", "u", "s", RunStatus.RUNNING, T, started_at=T, last_seq=4, epoch=2)
    assert run.active and run.last_sign_of_life() == T
    beat = T + timedelta(seconds=9)
    run.heartbeat_at = beat
    assert run.last_sign_of_life() == beat
    assert run.to_json() == {
        "run_id": "r",
        "upload_id": "u",
        "service_name": "s",
        "status": "running",
        "active": True,
        "created_at": T.isoformat(),
        "started_at": T.isoformat(),
        "finished_at": None,
        "heartbeat_at": beat.isoformat(),
        "lines": 4,
        "last_seq": 4,
        "error": None,
        "epoch": 2,
        "truncated": False,
        "omitted": 0,
    }
    ended = Run("r", "u", "s", RunStatus.FAILED, T, finished_at=T, error="boom", omitted=1)
    data = ended.to_json()
    assert (data["active"], data["finished_at"], data["error"]) == (False, T.isoformat(), "boom")
    assert (data["truncated"], data["omitted"]) == (True, 1)


# -- a writer's lines ------------------------------------------------------------------------
def test_new_lines_drops_retries_numbers_zeros_and_refuses_gaps() -> None:
    assert new_lines("r", 2, [line(1), line(2), line(3), line(4)]) == [line(3), line(4)]
    assert [x.seq for x in new_lines("r", 2, [line(0), line(0)])] == [3, 4]
    assert new_lines("r", 2, [line(2)]) == []
    with pytest.raises(SeqGapError) as gap:
        new_lines("r", 2, [line(3), line(5)])
    assert (gap.value.expected, gap.value.received) == (4, 5)


def test_a_writer_is_checked_for_its_epoch_then_the_end_then_gaps() -> None:
    running, ended = (RunStatus.RUNNING, 2, 3), (RunStatus.SUCCEEDED, 2, 3)
    with pytest.raises(RunFencedError) as stale:
        check_writer("r", ended, [line(9)], epoch=1)  # stale first, though closed and a gap
    assert (stale.value.reason, stale.value.epoch, stale.value.status) == (
        "stale_epoch", 2, "succeeded",
    )  # fmt: skip
    with pytest.raises(RunFencedError) as closed:
        check_writer("r", ended, [line(9)], epoch=2)  # closed before the gap
    assert (closed.value.reason, closed.value.epoch, closed.value.status) == (
        "closed", 2, "succeeded",
    )  # fmt: skip
    assert closed.value.run_id == "r"
    with pytest.raises(RunFencedError):
        check_writer("r", ended, [line(0)], epoch=None)  # a closer's numbered-by-the-store line
    assert check_writer("r", ended, [line(3)], epoch=2) == []  # a retried close
    with pytest.raises(SeqGapError):
        check_writer("r", running, [line(5)], epoch=None)
    assert check_writer("r", running, [line(3), line(4)], epoch=2) == [line(4)]
    assert check_writer("r", (RunStatus.QUEUED, 0, 0), [line(1)], epoch=None) == [line(1)]


def test_listeners_are_called_until_removed() -> None:
    heard: list[str] = []
    listeners = ListenerSet()
    remove = listeners.add(heard.append)
    other = listeners.add(lambda run_id: heard.append(run_id.upper()))
    listeners.notify("a")
    remove()
    remove()  # twice is harmless
    listeners.notify("b")
    other()
    listeners.notify("c")
    assert heard == ["a", "A", "B"]


# -- the defaults a backend inherits ---------------------------------------------------------
def test_the_inherited_defaults(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    try:
        run = store.create_run("u", "s")
        assert store.start_run(run.run_id) is True and store.start_run(run.run_id) is False
        store.append(run.run_id, [line(n, f"m{n}") for n in range(1, 6)])
        assert [x.seq for x in store.read_last(run.run_id, 2)] == [4, 5]
        assert [x.seq for x in store.read_last(run.run_id, 9)] == [1, 2, 3, 4, 5]
        assert store.read_last("no-such-run", 2) == []
        assert LogStore.poll_interval == 0.25
        assert LogStore.next_poll_interval(store, 7) == store.poll_interval == 0.1
        store.check()  # the default check: nothing to say
    finally:
        store.close()


def test_the_default_search_reads_page_by_page_within_its_bounds(tmp_path: Path) -> None:
    """LogStore.search, the Python matching a backend without its own gets, over SQLite."""
    store = SQLiteStore(tmp_path / "s.db")
    run = store.create_run("u", "s").run_id
    levels = ["INFO", "ERROR"]
    store.append(
        run, [LogLine(n, T, levels[n % 2], f"line {n}") for n in range(1, SEARCH_PAGE + 11)]
    )
    late = time.monotonic() + 30

    def search(query: SearchQuery, after: int, upto: int, limit: int = 99_999) -> SearchHits:
        return LogStore.search(store, run, query, after=after, upto=upto, limit=limit,
                               deadline=late)  # fmt: skip

    last = SEARCH_PAGE + 10
    began = time.monotonic()
    assert search(SearchQuery("line 500"), 0, last) == SearchHits([500, *range(5000, 5010)], last)
    assert search(SearchQuery("line 1"), 0, last, limit=3) == SearchHits([1, 10, 11], 11)
    assert search(SearchQuery("line 1"), 11, 19) == SearchHits([12, 13, 14, 15, 16, 17, 18, 19], 19)
    assert search(SearchQuery("line", min_level="ERROR"), 0, 6) == SearchHits([1, 3, 5], 6)
    assert search(SearchQuery("nothing"), 7, 7) == SearchHits([], 7)
    assert search(SearchQuery("line 9"), 0, 9) == SearchHits([9], 9)
    assert time.monotonic() - began < 10  # done when scanned, not at the deadline
    assert search(SearchQuery("line 5010"), SEARCH_PAGE, last) == SearchHits([5010], last)
    slow = SearchQuery(r"(a|aa)+$", regex=True)
    store.append(run, [LogLine(last + n, T, "INFO", "a" * 40 + "!") for n in (1, 2)])
    with pytest.raises(SearchTimeoutError) as stuck:
        LogStore.search(store, run, slow, after=last, upto=last + 2, limit=9, deadline=0.0)
    assert stuck.value.after == last
    passed = LogStore.search(
        store, run, SearchQuery(r"line \d+$|(a|aa)+$", regex=True), after=last - 1,
        upto=last + 2, limit=9, deadline=time.monotonic() + 0.3,
    )  # fmt: skip
    assert passed == SearchHits([last], last)  # stopped at the line it could not do
    ended = LogStore.search(store, run, SearchQuery("line"), after=0, upto=last, limit=99_999,
                            deadline=0.0)  # fmt: skip
    assert ended == SearchHits(list(range(1, SEARCH_PAGE + 1)), SEARCH_PAGE)  # one page, no more
    store.close()


class WorkerWinsTheRace(SQLiteStore):
    """Between the janitor's scan and its close, each running run's worker heartbeats and each
    queued run is claimed: the race ``fail_stale`` must lose without a trace."""

    def stale_runs(
        self, heartbeat_before: datetime, queued_before: datetime | None = None, limit: int = 1000
    ) -> list[Run]:
        runs = super().stale_runs(heartbeat_before, queued_before, limit)
        for run in runs:
            if run.status is RunStatus.RUNNING:
                self.heartbeat(run.run_id)
            else:
                self.claim_run(run.run_id)
        return runs


def test_fail_stale_closes_only_runs_still_silent_when_it_closes_them(tmp_path: Path) -> None:
    store = WorkerWinsTheRace(tmp_path / "s.db")
    running = store.create_run("u1", "s").run_id
    store.claim_run(running)
    queued = store.create_run("u2", "s").run_id
    bound = utcnow() + timedelta(milliseconds=1)
    while utcnow() <= bound:  # both silent since before the bound
        pass
    failed = store.fail_stale(bound, "stale", explain=lambda run: "Run failed")
    assert failed == []
    for run_id in (running, queued):
        run = store.get_run(run_id)
        assert run is not None and run.status is RunStatus.RUNNING and run.last_seq == 0
    store.close()


def test_the_default_queue_sees_its_oldest_page_only(tmp_path: Path) -> None:
    """LogStore.queued_runs, for a store that cannot page: the oldest queued runs, after a
    cursor within them; no running or finished run."""
    store = SQLiteStore(tmp_path / "s.db")
    queued = [store.create_run(f"u{n}", "s").run_id for n in range(4)]
    store.claim_run(queued[1])
    store.finish_run(store.create_run("done", "s").run_id, RunStatus.SUCCEEDED)
    first = LogStore.queued_runs(store, limit=2)
    assert [run.run_id for run in first] == [queued[0], queued[2]]
    everything = LogStore.queued_runs(store)
    assert [run.run_id for run in everything] == [queued[0], queued[2], queued[3]]
    after = (everything[0].created_at, everything[0].run_id)
    assert [run.run_id for run in LogStore.queued_runs(store, after)] == queued[2:]
    assert LogStore.queued_runs(store, (everything[-1].created_at, queued[3])) == []
    db = sqlite3.connect(store.path)
    db.executemany(
        "INSERT INTO runs (run_id, upload_id, service_name, status, created_at)"
        " VALUES (?, ?, 's', 'queued', ?)",
        [(f"r{n:04}", f"k{n}", (utcnow() + timedelta(hours=20)).isoformat()) for n in range(998)],
    )
    db.commit()
    db.close()
    assert len(LogStore.queued_runs(store)) == 1000  # 1,000 by default, a day ahead included
    store.close()


@pytest.mark.anyio
async def test_the_default_async_framed_read_is_the_sync_one(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    run = store.create_run("u", "s").run_id
    levels = ["INFO", "WARNING", "ERROR"]
    store.append(run, [LogLine(n, T, levels[n % 3], f"m{n}") for n in range(1, 1002)])
    sse = Framing("id: r:", "\ndata: ", "\n\n")
    page = await store.aread_framed(run, 1, 3, "WARNING", 9, sse)
    assert page == store.read_framed(run, 1, 3, "WARNING", 9, sse) and page.count == 3
    assert page.data.startswith(b"id: r:2\ndata: ")
    bounded = await store.aread_framed(run, 1, 99, "WARNING", 6, sse)
    assert bounded == store.read_framed(run, 1, 99, "WARNING", 6, sse) and bounded.count == 3
    text = await store.aread_framed(run, 5, 2, framing=TEXT_LINES)
    assert text.data.decode().endswith(" m6\n" + text.data.decode().split("\n")[1] + "\n")
    assert (text.count, text.last_seq) == (2, 7)
    whole = await store.aread_framed(run)
    assert whole == store.read_framed(run) and (whole.count, whole.last_seq) == (1000, 1000)
    store.close()


class ClosedMeanwhile(SQLiteStore):
    """A backend that refuses the janitor's close of a run that ended in between as "closed"
    (as a SQL function may) instead of answering False."""

    def finish_run(self, run_id: str, *args: Any, **kwargs: Any) -> bool:
        if run_id == "first":
            raise RunFencedError(run_id, "closed", status="succeeded")
        return super().finish_run(run_id, *args, **kwargs)


def test_fail_stale_goes_on_past_a_run_that_ended_meanwhile(tmp_path: Path) -> None:
    store = ClosedMeanwhile(tmp_path / "s.db")
    store.create_run("u1", "s", run_id="first")
    store.create_run("u2", "s", run_id="second")
    soon = utcnow() + timedelta(seconds=5)
    assert store.fail_stale(soon, "stale", explain=lambda run: f"Run failed: {run.run_id}") == [
        "second"
    ]
    explained = store.read("second")
    assert [(x.log_level, x.message) for x in explained] == [("ERROR", "Run failed: second")]
    store.close()


def test_the_default_framed_read_is_frame_lines_of_read(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    run = store.create_run("u", "s").run_id
    levels = ["INFO", "WARNING", "ERROR"]
    store.append(run, [LogLine(n, T, levels[n % 3], f"m{n}") for n in range(1, 1002)])
    sse = Framing("id: r:", "\ndata: ", "\n\n")
    for after, limit, before, seqs in ((1, 3, 99, [2, 4, 5]), (1, 99, 6, [2, 4, 5])):
        page = LogStore.read_framed(store, run, after, limit, "WARNING", before, sse)
        assert page == store.read_framed(run, after, limit, "WARNING", before, sse)
        assert page.data == frame_lines(store.read(run, after, 99, "WARNING", seqs[-1] + 1), sse)
        assert (page.count, page.last_seq) == (3, 5)
    whole = LogStore.read_framed(store, run)
    assert whole == store.read_framed(run) and (whole.count, whole.last_seq) == (1000, 1000)
    assert LogStore.read_framed(store, run, after=1001) == FramedLines(b"", 0, 0)
    store.close()


@pytest.mark.anyio
async def test_the_default_async_reads_and_the_last_lines(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    run = store.create_run("u", "s").run_id
    store.append(run, [LogLine(n, T, "INFO", f"m{n}") for n in range(1, 1002)])
    whole = await store.aread(run)
    assert [x.seq for x in whole] == list(range(1, 1001))  # from the start, 1,000
    polled, lines = await store.apoll(run, 5, 2)
    assert polled == store.get_run(run) and [x.seq for x in lines] == [6, 7]
    assert [x.seq for x in store.read_last(run, 1001)] == list(range(1, 1002))
    assert str(RunNotFoundError("r9")) == "no run 'r9'" and RunNotFoundError("r9").run_id == "r9"
    store.close()
