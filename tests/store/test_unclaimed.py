"""A queued run takes no fenced write before its claim, on every backend (the stores agree with
the HTTP producer's 409, 2dbdbc3): an append, heartbeat or close naming an epoch, 0 included, is
RunFencedError("unclaimed") and the run stays queued, empty and claimable; an unfenced writer
(epoch None: the janitor failing a queued run with a line saying why) still may write."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from jobtail.store.base import LogLine, LogStore, RunFencedError, RunStatus
from jobtail.store.migrate import MIGRATIONS_DIR


def line(seq: int) -> LogLine:
    return LogLine(seq, datetime.now(UTC), "INFO", f"line {seq}")


def test_a_write_naming_an_epoch_on_a_queued_run_is_refused_as_unclaimed(
    store: LogStore,
) -> None:
    run_id = store.create_run("up", "svc").run_id
    attempts: dict[str, Callable[[], object]] = {
        "one line (the fast path)": lambda: store.append(run_id, [line(1)], epoch=0),
        "a batch": lambda: store.append(run_id, [line(1), line(2)], epoch=0),
        "nothing (an empty batch)": lambda: store.append(run_id, [], epoch=0),
        "a line numbered by the store": lambda: store.append(run_id, [line(0)], epoch=0),
        "a heartbeat": lambda: store.heartbeat(run_id, epoch=0),
        "a close": lambda: store.finish_run(run_id, RunStatus.SUCCEEDED, epoch=0),
        "a close with lines": lambda: store.finish_run(
            run_id, RunStatus.SUCCEEDED, lines=[line(1)], epoch=0
        ),
        "the next epoch, unclaimed": lambda: store.append(run_id, [line(1)], epoch=1),
    }
    for what, attempt in attempts.items():
        with pytest.raises(RunFencedError) as refused:
            attempt()
        assert refused.value.reason == "unclaimed", what
        assert "claim it" in str(refused.value), what
    run = store.get_run(run_id)
    assert run is not None
    assert (run.status, run.epoch, run.last_seq, run.heartbeat_at) == (
        RunStatus.QUEUED, 0, 0, None
    )  # fmt: skip
    claimed = store.claim_run(run_id)
    assert claimed is not None and claimed.epoch == 1
    assert store.append(run_id, [line(1)], epoch=1) == 1
    store.heartbeat(run_id, epoch=1)


def test_an_unfenced_writer_may_fail_a_queued_run_with_a_line_saying_why(
    store: LogStore,
) -> None:
    """Epoch None owns no epoch a claim could take: its heartbeat leaves a queued run as it is,
    and its close (the janitor's: its explanation numbered by the store) ends it."""
    run_id = store.create_run("up", "svc").run_id
    store.heartbeat(run_id)
    assert store.get_run(run_id).heartbeat_at is None  # type: ignore[union-attr]
    why = LogLine(0, datetime.now(UTC), "ERROR", "Run failed: no worker started it")
    assert store.finish_run(run_id, RunStatus.FAILED, "stale", lines=[why])
    run = store.get_run(run_id)
    assert run is not None and (run.status, run.last_seq) == (RunStatus.FAILED, 1)
    assert [entry.message for entry in store.read(run_id)] == [why.message]


def _write_function(name: str) -> str:
    text = (MIGRATIONS_DIR / name).read_text()
    found = re.search(r"create or replace function jobtail__write\(.*?\n\$\$;", text, re.S)
    assert found, f"{name} defines jobtail__write"
    return found.group(0)


def test_jobtail_write_is_0006s_but_for_the_unclaimed_check() -> None:
    """0014 redefines jobtail__write only to refuse a fenced write on a queued run first."""
    check = (
        "    if p_epoch is not null and r.status = 'queued' then\n"
        "        perform jobtail__refuse(r, 'unclaimed');\n"
        "    end if;\n"
    )
    before = _write_function("0006_notify.sql")
    stale = "    if p_epoch is not null and p_epoch <> r.epoch then\n"
    assert stale in before
    assert _write_function("0014_unclaimed.sql") == before.replace(stale, check + stale)
