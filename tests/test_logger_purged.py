"""A claimed writer (``epoch``) whose run the retention purge deleted is refused for good, as a
closed run, since nothing it writes can ever land; a False end from the store is only a purge
when the run is gone: a retried close (the end committed, its answer lost) is stored."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from jobtail.logger import RunLogger
from jobtail.store.base import (
    Run,
    RunFencedError,
    RunNotFoundError,
    RunStatus,
    StoreError,
    utcnow,
)
from jobtail.store.sqlite import SQLiteStore


def claimed(store: SQLiteStore) -> Run:
    run = store.create_run("up", "svc")
    claim = store.claim_run(run.run_id)
    assert claim is not None and claim.epoch is not None
    return claim


def purge(store: SQLiteStore, run_id: str) -> None:
    """The janitor ends the run (fencing its writer), then the retention purge deletes it."""
    assert store.finish_run(run_id, RunStatus.FAILED, "stalled")
    assert store.purge(finished_before=utcnow() + timedelta(days=1)) == 1


def assert_purged_refusal(refused: RunFencedError, run: Run) -> None:
    assert (refused.run_id, refused.reason, refused.epoch, refused.status) == (
        run.run_id,
        "closed",
        run.epoch,
        "purged",
    )
    assert str(refused) == f"run {run.run_id} is closed (purged)"
    assert isinstance(refused.__cause__, RunNotFoundError)
    assert run.run_id in str(refused.__cause__)


def test_a_line_into_a_purged_run_is_refused_for_good(
    sqlite_store: SQLiteStore, caplog: pytest.LogCaptureFixture
) -> None:
    run = claimed(sqlite_store)
    logger = RunLogger(sqlite_store, run.run_id, start_seq=run.last_seq, epoch=run.epoch)
    logger.info("before the stall")
    purge(sqlite_store, run.run_id)
    with (
        caplog.at_level(logging.WARNING, logger="jobtail.logger"),
        pytest.raises(RunFencedError) as refused,
    ):
        logger.info("after the purge")
    assert_purged_refusal(refused.value, run)
    assert logger.refused is refused.value and logger.pending == 0
    assert caplog.messages == [
        f"run {run.run_id} refused this writer (run {run.run_id} is closed (purged)):"
        " 1 lines not stored"
    ]
    with pytest.raises(RunFencedError) as again:  # at once: the store is not asked again
        logger.info("later")
    assert again.value is refused.value


def test_the_end_of_a_purged_run_is_refused_not_reported_stored(
    sqlite_store: SQLiteStore,
) -> None:
    run = claimed(sqlite_store)
    logger = RunLogger(sqlite_store, run.run_id, start_seq=run.last_seq, epoch=run.epoch)
    logger.info("before the stall")
    purge(sqlite_store, run.run_id)  # SQLite's finish_run says False for a run it does not have
    with pytest.raises(RunFencedError) as refused:
        logger.finish(RunStatus.SUCCEEDED, "done", timeout=5)
    assert_purged_refusal(refused.value, run)
    assert logger.refused is refused.value


class RaisingFinishStore(SQLiteStore):
    """A real SQLite store whose ``finish_run`` raises ``RunNotFoundError`` for a missing run
    (as PostgreSQL's does) instead of saying False."""

    def finish_run(self, run_id: str, *args: object, **kwargs: object) -> bool:
        if self.get_run(run_id) is None:
            raise RunNotFoundError(run_id)
        return super().finish_run(run_id, *args, **kwargs)  # type: ignore[arg-type]


def test_an_end_refused_with_run_not_found_is_a_purge(tmp_path: Path) -> None:
    store = RaisingFinishStore(tmp_path / "raising.db")
    run = claimed(store)
    logger = RunLogger(store, run.run_id, start_seq=run.last_seq, epoch=run.epoch)
    purge(store, run.run_id)
    with pytest.raises(RunFencedError) as refused:
        logger.finish(RunStatus.SUCCEEDED, "done", timeout=5)
    assert_purged_refusal(refused.value, run)
    store.close()


class LostAnswerStore(SQLiteStore):
    """A real SQLite store whose first end commits, then loses its answer (a dropped
    connection); with ``unreadable`` its run reads fail as well, and with ``purge_after_end``
    the retention purge deletes the run just after its end commits."""

    lose_answer = True
    unreadable = False
    purge_after_end = False

    def finish_run(self, run_id: str, *args: object, **kwargs: object) -> bool:
        closed = super().finish_run(run_id, *args, **kwargs)  # type: ignore[arg-type]
        if self.purge_after_end:
            self.purge(finished_before=utcnow() + timedelta(days=1))
        if self.lose_answer:
            self.lose_answer = False
            raise StoreError("connection lost after the commit")
        return closed

    def get_run(self, run_id: str) -> Run | None:
        if self.unreadable:
            raise StoreError("store unreachable")
        return super().get_run(run_id)


@pytest.mark.parametrize("claim", [True, False], ids=["claimed", "unclaimed"])
@pytest.mark.parametrize("unreadable", [False, True], ids=["readable", "unreadable"])
def test_a_retried_close_whose_first_answer_was_lost_is_stored(
    tmp_path: Path, claim: bool, unreadable: bool
) -> None:
    store = LostAnswerStore(tmp_path / "lost.db")
    run = claimed(store)
    epoch = run.epoch if claim else None
    logger = RunLogger(store, run.run_id, start_seq=run.last_seq, epoch=epoch, retry_delays=(0.01,))
    logger.info("one")
    store.unreadable = unreadable  # the retry's False is not taken for a purge either way
    assert logger.finish(RunStatus.SUCCEEDED, "done", timeout=10) is True
    assert logger.refused is None and logger.pending == 0
    store.unreadable = False
    ended = store.get_run(run.run_id)
    assert ended is not None and ended.status is RunStatus.SUCCEEDED
    assert [line.message for line in store.read(run.run_id)] == ["one", "done"]
    store.close()


def test_an_end_stored_just_before_a_purge_is_reported_stored(tmp_path: Path) -> None:
    store = LostAnswerStore(tmp_path / "purged-after.db")
    store.lose_answer, store.purge_after_end = False, True
    run = claimed(store)
    logger = RunLogger(store, run.run_id, start_seq=run.last_seq, epoch=run.epoch)
    logger.info("one")
    assert logger.finish(RunStatus.SUCCEEDED, "done", timeout=10) is True
    assert logger.refused is None and store.get_run(run.run_id) is None
    store.close()
