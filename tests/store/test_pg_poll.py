"""PostgresStore.apoll coalesces concurrent polls into one statement (``store/pg_poll.py``), on a
real PostgreSQL: fewer statements, each caller's answer that of its own ``POLL_SQL``, unknown
runs, a failed statement, polls queued behind one in flight, the batch bound."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from jobtail.store.base import LogLine, Run, RunStatus, StoreError
from jobtail.store.postgres import RUN_COLUMNS, RUN_WIDTH, PostgresStore, _line, _run
from tests.waiting import wait_for_async

POLL_SQL = (
    f"select {', '.join(f'r.{c.strip()}' for c in RUN_COLUMNS.split(','))},"
    ' l.seq, l."timestamp", l.log_level, l.message, l.fields'
    " from jobtail_get_run(%s) r"
    " left join lateral jobtail_read(r.run_id, %s, %s, 0, null) l on true order by l.seq"
)
"""One follower's poll on its own, as apoll sent it per run before the batches: the oracle."""

Polled = tuple[Run | None, list[LogLine]]


class CountingStore(PostgresStore):
    """A real PostgresStore that records the runs of each statement its async reads send, and
    holds them while ``gate`` is closed (or, for a run in ``held``, its own event is not set)."""

    def __init__(self, url: str) -> None:
        super().__init__(url, listen=False)
        self.sent: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.events: list[str] = []
        self.held: dict[str, asyncio.Event] = {}  # a statement with this run waits for it

    async def _arows(self, query: Any, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        assert isinstance(params, Sequence)
        runs = params[0]
        self.sent.append(list(runs) if isinstance(runs, list) else [runs])
        try:
            await self.gate.wait()
            for run in self.sent[-1]:
                if run in self.held:
                    await self.held[run].wait()
            return await super()._arows(query, params)
        finally:
            self.events.append("statement ended")

    def queued(self) -> int:
        """Polls waiting for a statement, on every loop."""
        return sum(batcher.pending for batcher in getattr(self, "_batchers", {}).values())


@pytest.fixture
def store(pg_url: str) -> Iterator[CountingStore]:
    opened = CountingStore(pg_url)
    yield opened
    opened.close()


def lone(store: PostgresStore, run_id: str, after: int, limit: int) -> Polled:
    """What the run's own ``POLL_SQL`` reads (the statement apoll sent per run before)."""
    rows = store._rows(POLL_SQL, (run_id, after, limit))
    if not rows:
        return None, []
    return _run(rows[0]), [_line(r[RUN_WIDTH:]) for r in rows if r[RUN_WIDTH] is not None]


def line(seq: int) -> LogLine:
    stamp = datetime(2026, 1, 2, 3, 4, 5, seq, tzinfo=UTC)
    return LogLine(seq, stamp, "ERROR" if seq % 4 == 0 else "INFO", f"m{seq}", {"n": seq})


def runs_with_lines(store: PostgresStore, count: int) -> list[str]:
    """``count`` runs, the k-th with k lines; the last one finished."""
    ids = []
    for k in range(count):
        run_id = store.create_run("poll", f"s{k}").run_id
        if k:
            store.append(run_id, [line(seq) for seq in range(1, k + 1)])
        ids.append(run_id)
    assert store.finish_run(ids[-1], RunStatus.SUCCEEDED)
    return ids


async def poll_all(store: PostgresStore, polls: list[tuple[str, int, int]]) -> list[Polled]:
    return await asyncio.gather(*(store.apoll(*poll) for poll in polls))


@pytest.mark.anyio
async def test_concurrent_polls_of_many_runs_are_one_statement_each_answered_as_alone(
    store: CountingStore,
) -> None:
    ids = runs_with_lines(store, 12)
    polls = [(run_id, k // 3, 4) for k, run_id in enumerate(ids)]  # some past their limit
    got = await poll_all(store, polls)
    assert store.sent == [ids]
    assert got == [lone(store, *poll) for poll in polls]
    assert [len(lines) for _run, lines in got] == [0, 1, 2, 2, 3, 4, 4, 4, 4, 4, 4, 4]
    assert got[-1][0] is not None and got[-1][0].status is RunStatus.SUCCEEDED
    await store.aclose()


@pytest.mark.anyio
async def test_an_unknown_run_among_them_is_none_and_the_others_keep_their_own_lines(
    store: CountingStore,
) -> None:
    ids = runs_with_lines(store, 4)
    polls = [("no-such-run", 0, 10), *((run_id, 1, 10) for run_id in ids[:2])]
    polls += [("gone", 0, 10), *((run_id, 0, 10) for run_id in ids[2:]), ("no-such-run", 0, 1)]
    got = await poll_all(store, polls)
    assert len(store.sent) == 1
    assert [run is None for run, _lines in got] == [True, False, False, True, False, False, True]
    assert got == [lone(store, *poll) for poll in polls]
    assert [[x.seq for x in lines] for _run, lines in got] == [
        [],
        [],
        [],
        [],
        [1, 2],
        [1, 2, 3],
        [],
    ]
    await store.aclose()


@pytest.mark.anyio
async def test_a_failed_statement_fails_every_caller_of_its_batch_and_the_next_batch_works(
    store: CountingStore,
) -> None:
    ids = runs_with_lines(store, 5)
    polls = [(run_id, 0, -1 if k == 2 else 10) for k, run_id in enumerate(ids)]  # LIMIT -1: refused
    got = await asyncio.gather(*(store.apoll(*poll) for poll in polls), return_exceptions=True)
    assert all(isinstance(error, StoreError) for error in got), got
    assert len(store.sent) == 1
    assert "LIMIT must not be negative" in str(got[0])
    again = [(run_id, 0, 10) for run_id in ids]
    assert await poll_all(store, again) == [lone(store, *poll) for poll in again]
    assert len(store.sent) == 2
    await store.aclose()


@pytest.mark.anyio
async def test_a_lone_poll_goes_at_once_and_polls_arriving_meanwhile_go_in_the_next(
    store: CountingStore,
) -> None:
    first, second, third = runs_with_lines(store, 3)
    store.gate.clear()
    alone = asyncio.create_task(store.apoll(first, 0, 10))
    await wait_for_async(lambda: store.sent, 5, "the lone poll's statement, sent at once")
    assert store.sent == [[first]]
    behind = [asyncio.create_task(store.apoll(run_id, 0, 10)) for run_id in (second, third)]
    await wait_for_async(lambda: store.queued() == 2 or len(store.sent) > 1, 5, "queued")
    assert store.sent == [[first]]  # they wait for the statement in flight
    store.gate.set()
    got = [await alone, *[await task for task in behind]]
    assert store.sent == [[first], [second, third]]
    assert got == [lone(store, run_id, 0, 10) for run_id in (first, second, third)]
    await store.aclose()


@pytest.mark.anyio
async def test_a_caller_that_leaves_while_queued_is_left_out_and_the_others_answered(
    store: CountingStore,
) -> None:
    first, second, third = runs_with_lines(store, 3)
    store.gate.clear()
    alone = asyncio.create_task(store.apoll(first, 0, 10))
    await wait_for_async(lambda: store.sent, 5, "the first statement")
    left = asyncio.create_task(store.apoll(second, 0, 10))
    stays = asyncio.create_task(store.apoll(third, 0, 10))
    await wait_for_async(lambda: store.queued() == 2 or len(store.sent) > 1, 5, "queued")
    left.cancel()
    store.gate.set()
    assert await alone == lone(store, first, 0, 10)
    assert await stays == lone(store, third, 0, 10)
    assert left.cancelled()
    assert store.sent == [[first], [third]]
    await store.aclose()


@pytest.mark.anyio
async def test_a_statement_holds_at_most_poll_batch_polls(store: CountingStore) -> None:
    store.poll_batch = 3
    ids = runs_with_lines(store, 7)
    polls = [(run_id, 0, 10) for run_id in ids]
    got = await poll_all(store, polls)
    assert sorted(len(runs) for runs in store.sent) == [1, 3, 3]
    assert sorted(run for runs in store.sent for run in runs) == sorted(ids)
    assert got == [lone(store, *poll) for poll in polls]
    await store.aclose()


@pytest.mark.anyio
async def test_a_full_batch_goes_at_once_even_while_a_statement_is_in_flight(
    store: CountingStore,
) -> None:
    store.poll_batch = 3
    first, *full = runs_with_lines(store, 4)
    store.gate.clear()
    alone = asyncio.create_task(store.apoll(first, 0, 10))
    await wait_for_async(lambda: store.sent, 5, "the first statement")
    behind = [asyncio.create_task(store.apoll(run_id, 0, 10)) for run_id in full]
    await wait_for_async(lambda: len(store.sent) == 2, 5, "the full batch, not waiting")
    assert store.sent == [[first], full] and store.queued() == 0
    store.gate.set()
    got = [await alone, *[await task for task in behind]]
    assert got == [lone(store, run_id, 0, 10) for run_id in (first, *full)]
    await store.aclose()


@pytest.mark.anyio
async def test_a_poll_waits_while_any_statement_is_in_flight_not_only_the_first(
    store: CountingStore,
) -> None:
    """Two statements in flight (a lone poll's, then a full batch's): the first ending does not
    let a new poll go before the second ends."""
    store.poll_batch = 3
    first, *full, last = runs_with_lines(store, 5)
    store.held = {first: asyncio.Event(), full[0]: asyncio.Event()}
    alone = asyncio.create_task(store.apoll(first, 0, 10))
    await wait_for_async(lambda: store.sent, 5, "the first statement")
    behind = [asyncio.create_task(store.apoll(run_id, 0, 10)) for run_id in full]
    await wait_for_async(lambda: len(store.sent) == 2, 5, "the full batch")
    store.held[first].set()
    assert await alone == lone(store, first, 0, 10)
    later = asyncio.create_task(store.apoll(last, 0, 10))
    await wait_for_async(lambda: store.queued() == 1 or len(store.sent) > 2, 5, "queued")
    assert store.sent == [[first], full]  # the full batch's statement is still in flight
    store.held[full[0]].set()
    got = [*[await task for task in behind], await later]
    assert store.sent == [[first], full, [last]]
    assert got == [lone(store, run_id, 0, 10) for run_id in (*full, last)]
    await store.aclose()


@pytest.mark.anyio
async def test_aclose_cancels_the_statement_in_flight_and_the_polls_queued_behind_it(
    store: CountingStore,
) -> None:
    """Both callers are cancelled, and the statement has ended before its pool closes."""
    first, second = runs_with_lines(store, 2)
    await store.apoll(first, 0, 10)  # the loop's pool, opened
    pool = store._apools[asyncio.get_running_loop()]
    close_pool = pool.close

    async def closing(timeout: float = 5.0) -> None:
        store.events.append("pool closing")
        await close_pool(timeout)

    pool.close = closing  # type: ignore[method-assign]
    store.gate.clear()
    sent = asyncio.create_task(store.apoll(first, 0, 10))
    await wait_for_async(lambda: len(store.sent) == 2, 5, "the statement")
    queued = asyncio.create_task(store.apoll(second, 0, 10))
    await wait_for_async(lambda: store.queued() == 1, 5, "the second poll, queued")
    await asyncio.wait_for(store.aclose(), 10)  # the gate stays closed: nothing is answered
    assert store.events == ["statement ended", "statement ended", "pool closing"]
    done, _ = await asyncio.wait([sent, queued], timeout=10)
    assert done == {sent, queued}
    assert sent.cancelled() and queued.cancelled()
    assert store.sent == [[first], [first]]


@pytest.mark.anyio
async def test_polls_of_one_iteration_schedule_one_send_and_a_later_poll_waits_its_turn(
    store: CountingStore,
) -> None:
    """Two polls in one iteration go out together in the next; a poll made in that next
    iteration, once their statement is in flight, waits for it, as any poll behind one."""
    first, second, third = runs_with_lines(store, 3)
    store.gate.clear()

    async def a_turn_later() -> Polled:
        await asyncio.sleep(0)  # runs again in the next iteration, after the batch went out
        return await store.apoll(second, 0, 10)

    tasks = [
        asyncio.create_task(store.apoll(first, 0, 10)),
        asyncio.create_task(a_turn_later()),
        asyncio.create_task(store.apoll(third, 0, 10)),
    ]
    await wait_for_async(lambda: store.queued() == 1 or len(store.sent) > 1, 5, "queued")
    assert store.sent == [[first, third]]
    store.gate.set()
    got = [await task for task in tasks]
    assert store.sent == [[first, third], [second]]
    assert got == [lone(store, run_id, 0, 10) for run_id in (first, second, third)]
    await store.aclose()
