"""One behaviour suite for every store backend (the ``store`` fixture is parametrized)."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobtail.store.base import (
    LogLine,
    LogStore,
    RunActiveError,
    RunFencedError,
    RunStatus,
    SeqGapError,
    StoreError,
    utcnow,
)
from tests.waiting import wait_for

LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def line(
    seq: int, message: str | None = None, level: str = "INFO", fields: dict[str, Any] | None = None
) -> LogLine:
    return LogLine(
        seq=seq,
        timestamp=datetime(2025, 1, 2, 3, 4, 5, seq % 1_000_000, tzinfo=UTC),
        log_level=level,
        message=f"line {seq}" if message is None else message,
        fields=fields,
    )


def seqs(lines: list[LogLine]) -> list[int]:
    return [item.seq for item in lines]


def started(store: LogStore, upload_id: str = "u1", service: str = "pydantic") -> str:
    run = store.create_run(upload_id, service)
    assert store.start_run(run.run_id)
    return run.run_id


# -- lines ----------------------------------------------------------------------------------
def test_append_is_idempotent_on_run_and_seq(store: LogStore) -> None:
    run_id = started(store)
    assert store.append(run_id, [line(1), line(2), line(3)]) == 3
    assert store.append(run_id, [line(2, "retried"), line(3, "retried")]) == 3
    assert store.append(run_id, [line(3), line(4)]) == 4
    assert store.append(run_id, []) == 4
    lines = store.read(run_id)
    assert seqs(lines) == [1, 2, 3, 4]
    assert [item.message for item in lines] == ["line 1", "line 2", "line 3", "line 4"]
    run = store.get_run(run_id)
    assert run is not None and run.last_seq == 4


def test_a_gap_is_refused_and_changes_nothing(store: LogStore) -> None:
    run_id = started(store)
    with pytest.raises(SeqGapError) as gap:
        store.append(run_id, [line(2)])
    assert (gap.value.expected, gap.value.received) == (1, 2)
    store.append(run_id, [line(1), line(2)])
    for bad in ([line(4)], [line(3), line(5)], [line(6), line(5)], [line(2), line(4)]):
        with pytest.raises(SeqGapError):
            store.append(run_id, bad)
    with pytest.raises(SeqGapError):
        store.append(run_id, [line(4)], epoch=1)  # the one-line fast path too
    assert seqs(store.read(run_id)) == [1, 2]
    assert store.get_run(run_id).last_seq == 2  # type: ignore[union-attr]
    assert store.append(run_id, [line(1)]) == 2  # an old retry: a no-op, not a gap


def test_append_to_unknown_run_fails(store: LogStore) -> None:
    with pytest.raises(StoreError):
        store.append("no-such-run", [line(1)])


def test_reads_are_ordered_ranges(store: LogStore) -> None:
    run_id = started(store)
    store.append(run_id, [line(seq, level=LEVELS[seq % 5]) for seq in range(1, 21)])
    assert seqs(store.read(run_id, after=3, limit=4)) == [4, 5, 6, 7]
    assert seqs(store.read(run_id, before=4)) == [1, 2, 3]
    assert seqs(store.read(run_id, after=2, before=6)) == [3, 4, 5]
    assert seqs(store.read(run_id, after=20)) == []
    assert seqs(store.read(run_id, limit=1)) == [1]
    assert seqs(store.read_last(run_id, 3)) == [18, 19, 20]
    assert seqs(store.read("no-such-run")) == []


def test_min_level_filter_keeps_global_seq(store: LogStore) -> None:
    run_id = started(store)
    store.append(run_id, [line(seq, level=LEVELS[seq % 5]) for seq in range(1, 11)])
    store.append(run_id, [line(11, level="NOTICE"), line(12, level="WARNING")])
    warnings = store.read(run_id, min_level="WARNING")
    assert seqs(warnings) == [2, 3, 4, 7, 8, 9, 12]
    assert {item.log_level for item in warnings} == {"WARNING", "ERROR", "CRITICAL"}
    assert seqs(store.read(run_id, min_level="ERROR", after=3, limit=2)) == [4, 8]
    assert seqs(store.read(run_id, min_level="info", before=7)) == [1, 2, 3, 4, 6]
    assert 11 in seqs(store.read(run_id, min_level="INFO"))  # unknown levels count as INFO
    assert seqs(store.read(run_id, min_level="DEBUG")) == list(range(1, 13))


def test_messages_and_fields_round_trip_intact(store: LogStore) -> None:
    run_id = started(store)
    big = ("0123456789abcdé🌍\n" * 62_000)[:1_000_000]
    messages = [
        "héllo wörld — 中文 🌍",
        "first\nsecond\r\nthird\rfourth\ttabbed",
        "quotes \" ' and backslashes \\ \\n \\u0000 literal",
        '{"looks": "like json"}',
        "",
        big,
    ]
    fields = {"n": 1, "x": 2.5, "list": [1, "two", None], "nested": {"ok": True, "é": "ü"}}
    lines = [line(seq, text) for seq, text in enumerate(messages, start=1)]
    lines.append(line(7, "with fields", fields=fields))
    lines.append(line(8, "odd field", fields={"when": datetime(2025, 1, 1, tzinfo=UTC)}))
    store.append(run_id, lines)
    got = store.read(run_id)
    assert [item.message for item in got[:6]] == messages
    assert len(got[5].message) == 1_000_000
    assert got[0].fields is None
    assert got[6].fields == fields
    assert got[7].fields == {"when": "2025-01-01T00:00:00Z"}
    assert [item.timestamp for item in got] == [item.timestamp for item in lines]
    assert [item.log_level for item in got] == ["INFO"] * 8


# -- runs -----------------------------------------------------------------------------------
def test_run_status_transitions(store: LogStore) -> None:
    run = store.create_run("u1", "pydantic")
    assert (run.status, run.last_seq, run.started_at, run.finished_at) == (
        RunStatus.QUEUED, 0, None, None,
    )  # fmt: skip
    assert store.start_run(run.run_id) is True
    assert store.start_run(run.run_id) is False  # claimed once only
    running = store.get_run(run.run_id)
    assert running is not None and running.status is RunStatus.RUNNING
    assert running.started_at is not None and running.heartbeat_at is not None
    store.heartbeat(run.run_id)
    beat = store.get_run(run.run_id)
    assert beat is not None and beat.heartbeat_at is not None
    assert beat.heartbeat_at >= running.heartbeat_at
    store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    store.finish_run(run.run_id, RunStatus.FAILED, "too late")  # a finished run stays as it is
    done = store.get_run(run.run_id)
    assert done is not None and done.status is RunStatus.SUCCEEDED
    assert done.error is None and done.finished_at is not None and not done.active
    assert store.start_run(run.run_id) is False
    with pytest.raises(ValueError):
        store.finish_run(run.run_id, RunStatus.RUNNING)
    assert store.get_run("no-such-run") is None


def test_failed_run_keeps_its_error(store: LogStore) -> None:
    run = store.create_run("u1", "pydantic")
    store.finish_run(run.run_id, RunStatus.FAILED, "boom: ünïcode")
    failed = store.get_run(run.run_id)
    assert failed is not None and failed.status is RunStatus.FAILED
    assert failed.error == "boom: ünïcode"


def test_one_active_run_per_key(store: LogStore) -> None:
    first = store.create_run("u1", "pydantic", run_id="run-a")
    with pytest.raises(RunActiveError) as raised:
        store.create_run("u1", "pydantic", run_id="run-b")
    assert raised.value.run.run_id == "run-a"
    store.start_run(first.run_id)
    with pytest.raises(RunActiveError):
        store.create_run("u1", "pydantic")
    assert store.create_run("u1", "dataclasses").active  # another key
    assert store.create_run("u2", "pydantic").active
    store.finish_run(first.run_id, RunStatus.FAILED, "x")
    assert store.create_run("u1", "pydantic", run_id="run-b").run_id == "run-b"


def test_latest_run_and_list_runs_newest_first(store: LogStore) -> None:
    ids = []
    for _ in range(3):
        run = store.create_run("u1", "pydantic")
        ids.append(run.run_id)
        if len(ids) < 3:
            store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    other = store.create_run("u2", "pydantic").run_id
    latest = store.latest_run("u1", "pydantic")
    assert latest is not None and latest.run_id == ids[2]
    assert store.latest_run("u1", "msgspec") is None
    assert [run.run_id for run in store.list_runs("u1", "pydantic")] == ids[::-1]
    assert [run.run_id for run in store.list_runs()] == [other, *ids[::-1]]
    assert [run.run_id for run in store.list_runs(limit=2)] == [other, ids[2]]
    assert [run.run_id for run in store.list_runs(upload_id="u2")] == [other]
    assert [run.run_id for run in store.list_runs(service_name="pydantic", limit=1)] == [other]


def test_fail_stale_fails_only_quiet_active_runs(store: LogStore) -> None:
    running = started(store, "u1")
    queued = store.create_run("u2", "pydantic").run_id
    done = store.create_run("u3", "pydantic").run_id
    store.finish_run(done, RunStatus.SUCCEEDED)
    assert store.fail_stale(utcnow() - timedelta(hours=1), "stale") == []
    assert sorted(store.fail_stale(utcnow() + timedelta(seconds=5), "stale")) == sorted(
        [running, queued]
    )
    for run_id in (running, queued):
        run = store.get_run(run_id)
        assert run is not None and run.status is RunStatus.FAILED and run.error == "stale"
        assert run.finished_at is not None
    kept = store.get_run(done)
    assert kept is not None and kept.status is RunStatus.SUCCEEDED and kept.error is None


def test_queued_runs_may_wait_longer_than_running_ones_may_be_silent(store: LogStore) -> None:
    running = started(store, "u1")
    queued = store.create_run("u2", "pydantic").run_id
    soon, later = utcnow() + timedelta(seconds=5), utcnow() - timedelta(hours=1)
    assert store.fail_stale(soon, "stale", queued_before=later) == [running]
    assert store.get_run(queued).status is RunStatus.QUEUED  # type: ignore[union-attr]
    assert store.fail_stale(later, "stale", queued_before=soon) == [queued]


def test_purge_deletes_finished_runs_and_their_lines(store: LogStore) -> None:
    old = started(store, "u1")
    store.append(old, [line(1), line(2)])
    store.finish_run(old, RunStatus.SUCCEEDED)
    active = started(store, "u2")
    store.append(active, [line(1)])
    assert store.purge(utcnow() - timedelta(hours=1)) == 0
    assert store.purge(utcnow() + timedelta(seconds=5)) == 1
    assert store.get_run(old) is None
    assert store.read(old) == []
    assert seqs(store.read(active)) == [1]
    # the key is free again and its new run starts from nothing
    fresh = store.create_run("u1", "pydantic")
    assert fresh.last_seq == 0 and store.read(fresh.run_id) == []


# -- fencing: one writer at a time, a closed run takes nothing -------------------------------
def test_each_claim_is_a_new_epoch_and_fences_the_old_writer(store: LogStore) -> None:
    run_id = store.create_run("u1", "pydantic").run_id
    assert store.get_run(run_id).epoch == 0  # type: ignore[union-attr]
    first = store.claim_run(run_id)
    assert first is not None and first.epoch == 1 and first.status is RunStatus.RUNNING
    assert store.claim_run(run_id) is None  # claimed once only
    store.append(run_id, [line(1)], epoch=1)
    store.heartbeat(run_id, epoch=1)
    # a live writer cannot be taken over; a silent one can
    assert store.claim_run(run_id, takeover_stale_before=utcnow() - timedelta(hours=1)) is None
    second = store.claim_run(run_id, takeover_stale_before=utcnow() + timedelta(seconds=5))
    assert second is not None and second.epoch == 2 and second.last_seq == 1
    with pytest.raises(RunFencedError) as stale:
        store.append(run_id, [line(2, "zombie")], epoch=1)
    assert stale.value.reason == "stale_epoch" and stale.value.epoch == 2
    with pytest.raises(RunFencedError):
        store.append(run_id, [line(1)], epoch=1)  # even a retry: the zombie must learn
    with pytest.raises(RunFencedError):
        store.heartbeat(run_id, epoch=1)
    store.append(run_id, [line(2, "new owner")], epoch=2)
    assert [x.message for x in store.read(run_id)] == ["line 1", "new owner"]


def test_an_empty_append_checks_its_writer_as_one_with_lines(store: LogStore) -> None:
    """Nothing to write is no way past the fence: an unknown run, a queued run (for an epoch)
    and a stale epoch are refused as they are with lines; the owner, an unfenced writer, and a
    writer of a closed run at its epoch (a retry that adds nothing) get the run's last_seq."""
    with pytest.raises(StoreError):
        store.append("no-such-run", [])
    run_id = store.create_run("u1", "pydantic").run_id
    assert store.append(run_id, []) == 0
    with pytest.raises(RunFencedError) as unclaimed:
        store.append(run_id, [], epoch=0)
    assert unclaimed.value.reason == "unclaimed"
    assert store.claim_run(run_id) is not None
    store.append(run_id, [line(1)], epoch=1)
    assert store.claim_run(run_id, takeover_stale_before=utcnow() + timedelta(seconds=5))
    with pytest.raises(RunFencedError) as stale:
        store.append(run_id, [], epoch=1)
    assert (stale.value.reason, stale.value.epoch) == ("stale_epoch", 2)
    assert store.append(run_id, [], epoch=2) == 1
    assert store.finish_run(run_id, RunStatus.SUCCEEDED, lines=[line(2)], epoch=2)
    assert store.append(run_id, [], epoch=2) == store.append(run_id, []) == 2
    with pytest.raises(RunFencedError) as closed:
        store.append(run_id, [], epoch=1)
    assert closed.value.reason == "stale_epoch"


def test_finishing_is_atomic_with_the_last_lines_and_closes_the_run(store: LogStore) -> None:
    run = store.claim_run(store.create_run("u1", "pydantic").run_id)
    assert run is not None
    store.append(run.run_id, [line(1)], epoch=run.epoch)
    last = [line(2, "pending"), line(3, "Run succeeded")]
    assert store.finish_run(run.run_id, RunStatus.SUCCEEDED, lines=last, epoch=run.epoch)
    done = store.get_run(run.run_id)
    assert done is not None and done.status is RunStatus.SUCCEEDED and done.last_seq == 3
    # a retry of the same end (its reply was lost) is a no-op, not an error
    assert not store.finish_run(run.run_id, RunStatus.SUCCEEDED, lines=last, epoch=run.epoch)
    assert store.append(run.run_id, [line(3, "Run succeeded")], epoch=run.epoch) == 3
    # anything new is refused, never silently dropped, with or without an epoch
    for epoch in (run.epoch, None):
        with pytest.raises(RunFencedError) as closed:
            store.append(run.run_id, [line(4, "after the end")], epoch=epoch)
        assert closed.value.reason == "closed" and closed.value.status == "succeeded"
    with pytest.raises(RunFencedError):
        store.finish_run(run.run_id, RunStatus.FAILED, lines=[line(4)], epoch=run.epoch)
    with pytest.raises(RunFencedError):
        store.heartbeat(run.run_id, epoch=run.epoch)
    assert seqs(store.read(run.run_id)) == [1, 2, 3]


def test_a_refused_end_writes_nothing(store: LogStore) -> None:
    run = store.claim_run(store.create_run("u1", "pydantic").run_id)
    assert run is not None
    store.append(run.run_id, [line(1)])
    with pytest.raises(SeqGapError):
        store.finish_run(run.run_id, RunStatus.SUCCEEDED, lines=[line(3)], epoch=run.epoch)
    with pytest.raises(RunFencedError):
        store.finish_run(run.run_id, RunStatus.SUCCEEDED, lines=[line(2)], epoch=run.epoch + 1)
    still = store.get_run(run.run_id)
    assert still is not None and still.status is RunStatus.RUNNING and still.last_seq == 1


def test_the_janitor_closes_only_a_run_still_silent_and_fences_its_writer(
    store: LogStore,
) -> None:
    """The race of a janitor with a stalled worker: the explanation is the last line, taken at
    the next seq by the store, and the worker's later lines are refused, never after `end`."""
    run = store.claim_run(store.create_run("u1", "pydantic").run_id)
    assert run is not None
    store.append(run.run_id, [line(1), line(2)], epoch=run.epoch)
    explanation = LogLine(0, utcnow(), "ERROR", "Run failed: no heartbeat")
    alive = store.finish_run(
        run.run_id, RunStatus.FAILED, "stale", lines=[explanation],
        if_stale_before=utcnow() - timedelta(hours=1),
    )  # fmt: skip
    assert alive is False
    assert store.get_run(run.run_id).status is RunStatus.RUNNING  # type: ignore[union-attr]
    assert seqs(store.read(run.run_id)) == [1, 2]
    assert store.finish_run(
        run.run_id, RunStatus.FAILED, "stale", lines=[explanation],
        if_stale_before=utcnow() + timedelta(seconds=5),
    )  # fmt: skip
    ended = store.get_run(run.run_id)
    assert ended is not None and ended.status is RunStatus.FAILED and ended.last_seq == 3
    assert ended.epoch == run.epoch + 1 and ended.error == "stale"
    assert store.read(run.run_id)[-1].message == "Run failed: no heartbeat"
    with pytest.raises(RunFencedError) as zombie:
        store.append(run.run_id, [line(3, "the stalled worker wakes up")], epoch=run.epoch)
    assert zombie.value.reason == "stale_epoch"
    with pytest.raises(RunFencedError):
        store.finish_run(run.run_id, RunStatus.SUCCEEDED, lines=[line(3)], epoch=run.epoch)
    assert [x.message for x in store.read(run.run_id)][-1] == "Run failed: no heartbeat"
    assert store.get_run(run.run_id).last_seq == 3  # type: ignore[union-attr]


def test_fail_stale_explains_each_run_and_lists_the_silent_ones(store: LogStore) -> None:
    running = started(store, "u1")
    store.append(running, [line(1)])
    queued = store.create_run("u2", "pydantic").run_id
    bound = utcnow() + timedelta(seconds=5)
    assert {run.run_id for run in store.stale_runs(bound)} == {running, queued}
    assert store.stale_runs(utcnow() - timedelta(hours=1)) == []
    failed = store.fail_stale(bound, "stale", explain=lambda run: f"why {run.status}")
    assert sorted(failed) == sorted([running, queued])
    assert [(x.seq, x.message) for x in store.read(running)] == [(1, "line 1"), (2, "why running")]
    assert [(x.seq, x.message) for x in store.read(queued)] == [(1, "why queued")]
    assert store.read(queued)[0].fields == {"reason": "stale", "janitor": True}
    assert store.fail_stale(bound, "stale", explain=lambda run: "again") == []


# -- notification and concurrency -----------------------------------------------------------
def test_listeners_hear_appends_and_status_changes(store: LogStore) -> None:
    heard: list[str] = []
    remove = store.listeners.add(heard.append)
    run_id = store.create_run("u1", "pydantic").run_id
    store.start_run(run_id)
    heard.clear()
    store.append(run_id, [line(1)])
    wait_for(lambda: run_id in heard, what="a notice of the append")
    heard.clear()
    store.finish_run(run_id, RunStatus.SUCCEEDED)
    wait_for(lambda: run_id in heard, what="a notice of the status change")
    remove()


def test_concurrent_writers_and_tailing_readers_see_every_line_once(store: LogStore) -> None:
    runs, total, readers_per_run = 4, 300, 2
    run_ids = [started(store, f"u{index}") for index in range(runs)]
    changed = threading.Condition()
    store.listeners.add(lambda _run_id: _notify_all(changed))
    seen: dict[tuple[str, int], list[int]] = {}
    errors: list[BaseException] = []

    def write(run_id: str, seed: int) -> None:
        rng, seq = random.Random(seed), 0
        while seq < total:
            batch = [line(s) for s in range(seq + 1, min(total, seq + rng.randint(1, 12)) + 1)]
            store.append(run_id, batch)
            seq = batch[-1].seq
        store.finish_run(run_id, RunStatus.SUCCEEDED)

    def tail(run_id: str, reader: int) -> None:
        got = seen.setdefault((run_id, reader), [])
        while True:
            lines = store.read(run_id, after=got[-1] if got else 0, limit=25)
            got.extend(seqs(lines))
            if lines:
                continue
            run = store.get_run(run_id)
            assert run is not None
            if not run.active and (got[-1] if got else 0) >= run.last_seq:
                return
            with changed:
                changed.wait(0.05)  # woken by the store, or poll again

    def guarded(target: object, *args: object) -> threading.Thread:
        def body() -> None:
            try:
                target(*args)  # type: ignore[operator]
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=body, daemon=True)
        thread.start()
        return thread

    threads = [guarded(tail, run_id, r) for run_id in run_ids for r in range(readers_per_run)]
    threads += [guarded(write, run_id, seed) for seed, run_id in enumerate(run_ids)]
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    assert len(seen) == runs * readers_per_run
    for got in seen.values():
        assert got == list(range(1, total + 1))


def _notify_all(condition: threading.Condition) -> None:
    with condition:
        condition.notify_all()


@pytest.mark.anyio
async def test_async_reads_match_the_sync_ones(store: LogStore) -> None:
    """The tail's path (aget_run, aread, apoll): native async on PostgreSQL, threads elsewhere."""
    run_id = store.create_run("u", "async").run_id
    store.append(
        run_id, [line(seq, f"m{seq}", "ERROR" if seq % 3 == 0 else "INFO") for seq in range(1, 11)]
    )
    assert await store.aget_run(run_id) == store.get_run(run_id)
    assert await store.aget_run("no-such-run") is None
    assert await store.aread(run_id, 2, 5) == store.read(run_id, after=2, limit=5)
    assert await store.aread(run_id, 0, 100, "ERROR", 9) == store.read(
        run_id, min_level="ERROR", before=9
    )
    run, lines = await store.apoll(run_id, 7, 100)
    assert run == store.get_run(run_id) and [x.seq for x in lines] == [8, 9, 10]
    assert lines == store.read(run_id, after=7)
    run, lines = await store.apoll(run_id, 2, 3)
    assert run == store.get_run(run_id) and [x.seq for x in lines] == [3, 4, 5]
    assert await store.apoll(run_id, 10, 100) == (store.get_run(run_id), [])
    assert await store.apoll("no-such-run", 0, 100) == (None, [])
    await store.aclose()


def test_the_end_records_how_many_lines_the_writer_omitted(store: LogStore) -> None:
    run = store.claim_run(store.create_run("u1", "pydantic").run_id)
    assert run is not None
    assert store.get_run(run.run_id).omitted == 0  # type: ignore[union-attr]
    store.finish_run(run.run_id, RunStatus.SUCCEEDED, lines=[line(1)], epoch=run.epoch, omitted=7)
    ended = store.get_run(run.run_id)
    assert ended is not None and ended.omitted == 7 and ended.to_json()["truncated"] is True
