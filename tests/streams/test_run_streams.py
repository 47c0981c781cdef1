"""A run's log as a read-only stream (``RunStreams``) over a real SQLite log store, without a
server: the paths it answers, the block hints its offsets carry, and a worker's writes (claim,
lines, heartbeat, end) mapped onto the store's fenced writes and back onto stream refusals."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobtail.store import LogLine, Run, RunStatus
from jobtail.store.base import utcnow
from jobtail.store.sqlite import SQLiteStore
from jobtail.streams.base import (
    AppendRequest,
    Producer,
    SequenceGapError,
    StaleEpochError,
    StreamClosedError,
    StreamInvalid,
    StreamMeta,
    StreamNotFound,
    StreamUnsupported,
    format_offset,
)
from jobtail.streams.runs import (
    BLOCK,
    RunStreams,
    block_end,
    is_run_path,
    line_json,
    next_offset,
    parse_lines,
)

WRITE_HOW = "write to runs/<run_id> with Producer-Id/-Epoch/-Seq headers"
BEYOND = "offset is beyond the run's last line, or not one of ours"
CLAIM_AT_0 = "a claim (Producer-Epoch = run epoch + 1) starts at seq 0"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "store.db")
    yield opened
    opened.close()


def lines_body(first: int, count: int) -> bytes:
    seqs = range(first, first + count)
    items = [{"seq": s, "log_level": "INFO", "message": f"m{s}"} for s in seqs]
    return json.dumps(items).encode()


def claimed_run(store: SQLiteStore, lines: int = 0) -> tuple[str, int]:
    run = store.create_run("up", "svc")
    claimed = store.claim_run(run.run_id)
    assert claimed is not None
    if lines:
        batch = [LogLine(s, utcnow(), "INFO", f"m{s}", None) for s in range(1, lines + 1)]
        store.append(run.run_id, batch, epoch=claimed.epoch)
    return run.run_id, claimed.epoch


def test_block_hints() -> None:
    assert is_run_path("runs/x") and not is_run_path("run/x") and not is_run_path("x/runs/")
    assert block_end(0, 32) == 32 and block_end(31, 32) == 32 and block_end(32, 32) == 64
    assert next_offset(0, 0) == format_offset(0, 0)
    assert next_offset(0, 31) == format_offset(0, 0)
    assert next_offset(0, 32) == format_offset(0, 1)
    assert next_offset(0, 1023) == format_offset(0, 1)
    assert next_offset(0, 1024) == format_offset(0, 2)
    assert next_offset(1000, 1024) == format_offset(1000, 2)
    assert next_offset(1024, 2047) == format_offset(1024, 1)
    assert next_offset(5, 9, (1, 4)) == format_offset(5, 1)
    assert line_json({"b": "é", "a": 1}) == '{"b":"é","a":1}'


def test_a_run_is_found_by_its_id_or_its_key(store: SQLiteStore) -> None:
    runs = RunStreams(store)
    older = store.create_run("up", "svc")
    claimed = store.claim_run(older.run_id)
    assert claimed is not None
    store.finish_run(older.run_id, RunStatus.SUCCEEDED, epoch=claimed.epoch)
    latest = store.create_run("up", "svc")
    assert runs.run_of(f"runs/{older.run_id}").run_id == older.run_id
    assert runs.run_of("runs/up/svc").run_id == latest.run_id
    elsewhere = store.create_run("other", "svc")  # the same service under another upload
    assert runs.run_of("runs/up/svc").run_id == latest.run_id
    assert runs.run_of("runs/other/svc").run_id == elsewhere.run_id
    for path in ("runs/", "runs/nope", "runs/up/", "runs//svc", "runs/up/nope", "runs/up/svc/x"):
        with pytest.raises(StreamNotFound) as missing:
            runs.run_of(path)
        assert str(missing.value) == (
            f"no run at {path!r}: use runs/<run_id> or runs/<upload>/<service>"
        )


def test_the_meta_says_the_runs_status_and_ends_with_it(store: SQLiteStore) -> None:
    runs = RunStreams(store)
    run_id, epoch = claimed_run(store, 3)
    meta = runs.head(f"runs/{run_id}")
    assert (meta.stream_id, meta.content_type, meta.tail, meta.closed) == (
        run_id, "application/json", 3, False,
    )  # fmt: skip
    assert dict(meta.extra) == {
        "Jobtail-Run-Status": "running", "Jobtail-Run-Epoch": str(epoch),
        "Jobtail-Upload-Id": "up", "Jobtail-Service": "svc",
    }  # fmt: skip
    store.finish_run(run_id, RunStatus.FAILED, "boom", epoch=epoch)
    assert runs.head(f"runs/{run_id}").closed


def test_reads_return_the_hinted_block_and_hint_the_next(store: SQLiteStore) -> None:
    runs = RunStreams(store)
    run_id, _ = claimed_run(store, 40)
    path = f"runs/{run_id}"
    first = runs.read(path, "-1")  # hint 0: one line
    assert [json.loads(m)["seq"] for m in first.messages] == [1]
    assert (first.start, first.stop) == (0, 1)
    assert first.next_offset == format_offset(1, 1)  # 1..32 is complete: the rest of it next
    assert len(runs.read(path, first.next_offset).messages) == 31
    block = runs.read(path, format_offset(0, 1))
    assert [json.loads(m)["seq"] for m in block.messages] == list(range(1, 33))
    assert block.next_offset == format_offset(32, 0)  # 33..64 is not complete
    rest = runs.read(path, format_offset(32, 1))  # the rest of the partial block, no further
    assert [json.loads(m)["seq"] for m in rest.messages] == list(range(33, 41))
    assert rest.stop == 40 and rest.up_to_date and not rest.closed
    assert json.loads(first.messages[0]) == {
        "seq": 1, "timestamp": json.loads(first.messages[0])["timestamp"],
        "log_level": "INFO", "message": "m1",
    }  # fmt: skip
    now = runs.read(path, None)
    assert now.empty and now.start == 40
    for wrong in (format_offset(41), format_offset(0, 3)):
        with pytest.raises(StreamInvalid, match=f"^{re.escape(BEYOND)}$"):
            runs.read(path, wrong)
    assert runs.read(path, format_offset(0, 2)).stop == 40  # hint 2: up to 1024 lines


def test_a_long_log_is_read_in_blocks(store: SQLiteStore) -> None:
    runs = RunStreams(store)
    run_id, _ = claimed_run(store, BLOCK + 40)
    offset, sizes = "-1", []
    while True:
        chunk = runs.read(f"runs/{run_id}", offset)
        sizes.append(len(chunk.messages))
        offset = chunk.next_offset
        if chunk.up_to_date:
            break
    assert sizes == [1, 1023, 32] + [1] * 8  # to the whole 1024 block, a whole 32, then lines


def test_writes_need_a_run_id_path_and_a_producer(store: SQLiteStore) -> None:
    runs = RunStreams(store)
    run_id, epoch = claimed_run(store)
    for path, request in (
        ("runs/up/svc", AppendRequest(lines_body(1, 1), producer=Producer("w", epoch, 0))),
        (f"runs/{run_id}", AppendRequest(lines_body(1, 1))),
    ):
        with pytest.raises(StreamUnsupported, match=f"^{re.escape(WRITE_HOW)}$"):
            runs.write(path, request)
    assert store.read(run_id) == []


def test_a_worker_claims_a_queued_run_with_the_next_epoch(store: SQLiteStore) -> None:
    runs = RunStreams(store)
    run = store.create_run("up", "svc")
    path = f"runs/{run.run_id}"
    with pytest.raises(StreamInvalid, match=f"^{re.escape(CLAIM_AT_0)}$"):
        runs.write(path, AppendRequest(producer=Producer("w", run.epoch + 1, 1)), heartbeat=True)
    with pytest.raises(StaleEpochError) as stale:  # not a claim: the epoch is not the run's
        runs.write(path, AppendRequest(producer=Producer("w", run.epoch + 2, 0)), heartbeat=True)
    assert stale.value.epoch == run.epoch
    claim = runs.write(path, AppendRequest(producer=Producer("w", run.epoch + 1, 0)), True)
    assert not claim.duplicate and claim.producer == Producer("w", run.epoch + 1, 0)
    claimed = store.get_run(run.run_id)
    assert claimed is not None and claimed.status is RunStatus.RUNNING
    assert claimed.epoch == run.epoch + 1 and claim.meta.extra[1][1] == str(claimed.epoch)
    late = runs.write(path, AppendRequest(producer=Producer("x", run.epoch + 1, 0)), True)
    assert late.duplicate  # the same claim again: the owner's heartbeat, not a claim (HTTP 204)
    with pytest.raises(StaleEpochError) as stale:  # a claim for an epoch beyond the run's
        runs.write(path, AppendRequest(producer=Producer("x", run.epoch + 2, 0)), heartbeat=True)
    assert stale.value.epoch == claimed.epoch


def test_a_worker_heartbeats_appends_and_retries(store: SQLiteStore) -> None:
    runs = RunStreams(store)
    run_id, epoch = claimed_run(store)
    path = f"runs/{run_id}"
    store_heartbeat = store.get_run(run_id)
    assert store_heartbeat is not None
    beat = runs.write(path, AppendRequest(producer=Producer("w", epoch, 0)), heartbeat=True)
    after = store.get_run(run_id)
    assert beat.duplicate and after is not None and after.heartbeat_at is not None
    previous = store_heartbeat.heartbeat_at
    assert previous is None or after.heartbeat_at >= previous
    request = AppendRequest(lines_body(1, 3), producer=Producer("w", epoch, 0))
    appended = runs.write(path, request, heartbeat=True)  # lines with the header: lines
    assert not appended.duplicate
    assert appended.meta == StreamMeta(run_id, "application/json", 3, closed=False)
    assert appended.producer == Producer("w", epoch, 0)
    assert runs.write(path, request).duplicate  # a retry adds nothing
    with pytest.raises(SequenceGapError) as gap:
        runs.write(path, AppendRequest(lines_body(6, 1), producer=Producer("w", epoch, 5)))
    assert (gap.value.expected, gap.value.received) == (3, 5)
    with pytest.raises(StaleEpochError) as stale:
        runs.write(path, AppendRequest(lines_body(4, 1), producer=Producer("w", epoch - 1, 3)))
    assert stale.value.epoch == epoch
    assert [line.message for line in store.read(run_id)] == ["m1", "m2", "m3"]


def test_a_worker_ends_its_run_with_its_last_lines(store: SQLiteStore) -> None:
    runs = RunStreams(store)
    run_id, epoch = claimed_run(store)
    path = f"runs/{run_id}"
    closing = AppendRequest(
        lines_body(1, 2), close=True, producer=Producer("w", epoch, 0),
        status=RunStatus.FAILED, error="boom", omitted=7,
    )  # fmt: skip
    ended = runs.write(path, closing)
    assert not ended.duplicate and ended.meta.closed and ended.meta.tail == 2
    assert ended.producer == Producer("w", epoch, 0)  # echoed: Producer-Epoch/-Seq headers
    run = store.get_run(run_id)
    assert run is not None and (run.status, run.error, run.omitted) == (RunStatus.FAILED, "boom", 7)
    assert runs.write(path, AppendRequest(close=True, producer=Producer("w", epoch, 2))).duplicate
    with pytest.raises(StreamClosedError) as closed:
        runs.write(path, AppendRequest(lines_body(3, 1), producer=Producer("w", epoch, 2)))
    assert closed.value.next_offset == format_offset(2)


def test_a_taken_over_worker_is_told_the_new_epoch(store: SQLiteStore) -> None:
    runs = RunStreams(store)
    run_id, epoch = claimed_run(store)
    path = f"runs/{run_id}"
    stale_before = datetime(2999, 1, 1, tzinfo=UTC)
    taken = store.claim_run(run_id, takeover_stale_before=stale_before)
    assert taken is not None and taken.epoch > epoch
    with pytest.raises(StaleEpochError) as stale:
        runs.write(path, AppendRequest(lines_body(1, 1), producer=Producer("w", epoch, 0)))
    assert stale.value.epoch == taken.epoch


def test_line_batches_are_parsed_or_refused() -> None:
    before = utcnow()
    one = parse_lines(b'{"seq": 4, "message": "hi"}')
    assert [(x.seq, x.log_level, x.message, x.fields) for x in one] == [(4, "INFO", "hi", None)]
    assert before <= one[0].timestamp <= utcnow()
    many = parse_lines(
        b'[{"seq": "1", "log_level": "warn", "message": 2, "fields": {"a": 1},'
        b' "timestamp": "2026-01-02T03:04:05+00:00"}, {"seq": 2, "message": "x", "fields": {}}]'
    )
    assert many[0].timestamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert (many[0].seq, many[0].log_level, many[0].message, many[0].fields) == (
        1, "WARNING", "2", {"a": 1},
    )  # fmt: skip
    assert many[1].fields is None
    for bad in (
        b"nope", b'[{"message": "no seq"}]', b'[{"seq": 1}]', b'[{"seq": "x", "message": ""}]',
        b"[1]", b'[{"seq": 1, "message": "", "timestamp": "yesterday"}]',
    ):  # fmt: skip
        with pytest.raises(StreamInvalid, match="JSON objects with seq, log_level and message"):
            parse_lines(bad)


class RivalStore(SQLiteStore):
    """A store on which another worker claims the run just before each claim of ours."""

    def claim_run(self, run_id: str, **kwargs: object) -> Run | None:
        super().claim_run(run_id)
        return super().claim_run(run_id, **kwargs)  # type: ignore[arg-type]


def test_a_claim_that_loses_the_race_in_the_store_is_stale(tmp_path: Path) -> None:
    store = RivalStore(tmp_path / "rival.db")
    runs = RunStreams(store)
    run = store.create_run("up", "svc")
    claim = AppendRequest(producer=Producer("w", run.epoch + 1, 0))
    with pytest.raises(StaleEpochError) as stale:
        runs.write(f"runs/{run.run_id}", claim, heartbeat=True)
    assert stale.value.epoch == run.epoch
    store.close()


def test_a_bare_write_without_the_heartbeat_header_changes_nothing(store: SQLiteStore) -> None:
    runs = RunStreams(store)
    run_id, epoch = claimed_run(store, 1)
    before = store.get_run(run_id)
    bare = runs.write(f"runs/{run_id}", AppendRequest(producer=Producer("w", epoch, 1)))
    after = store.get_run(run_id)
    assert bare.duplicate and bare.meta.tail == 1
    assert before is not None and after is not None and after.heartbeat_at == before.heartbeat_at


class TakeoverStore(SQLiteStore):
    """A store on which the janitor takes a silent run over just before a worker's write."""

    def _take_over(self, run_id: str) -> None:
        later = datetime(2999, 1, 1, tzinfo=UTC)
        for _ in range(2):  # two epochs on: a refusal names the newest
            assert self.claim_run(run_id, takeover_stale_before=later) is not None

    def heartbeat(self, run_id: str, *, epoch: int | None = None) -> None:
        self._take_over(run_id)
        super().heartbeat(run_id, epoch=epoch)

    def append(self, run_id: str, lines: Sequence[LogLine], *, epoch: int | None = None) -> int:
        self._take_over(run_id)
        return super().append(run_id, lines, epoch=epoch)


@pytest.mark.parametrize("body", [b"", b'[{"seq": 1, "log_level": "INFO", "message": "zombie"}]'])
def test_a_takeover_between_the_check_and_the_write_fences_it(tmp_path: Path, body: bytes) -> None:
    store = TakeoverStore(tmp_path / "takeover.db")
    run = store.create_run("up", "svc")
    claimed = SQLiteStore.claim_run(store, run.run_id)
    assert claimed is not None
    runs = RunStreams(store)
    request = AppendRequest(body, producer=Producer("w", claimed.epoch, 0))
    with pytest.raises(StaleEpochError) as stale:
        runs.write(f"runs/{run.run_id}", request, heartbeat=True)
    assert stale.value.epoch == claimed.epoch + 2
    assert store.read(run.run_id) == []
    store.close()


def test_a_run_stream_hints_the_blocks_it_was_given(store: SQLiteStore) -> None:
    runs = RunStreams(store, blocks=(1, 4))
    run_id, _ = claimed_run(store, 10)
    first = runs.read(f"runs/{run_id}", "-1")
    assert first.next_offset == format_offset(1, 1)  # 2..4 is a complete block of 4
    assert len(runs.read(f"runs/{run_id}", first.next_offset).messages) == 3
