"""The tail's polls of many runs, coalesced into one statement (``PostgresStore.apoll``).

One process following 100 runs woke each run's follower on its own, and each polled on its
own: a statement, a pool checkout and a round trip per run per wake-up, about 1 ms of the
viewer's CPU per line. Here polls that arrive in the same event-loop iteration, or while the
previous batch's statement is in flight, go out together as one statement (``batch_sql``: per
run, the run's row and its new lines, in one snapshot), as a DataLoader does. A lone poll is sent at
once, in the next iteration, never after a timer; a full batch (``max_batch`` polls) goes
without waiting. Each caller gets the rows a statement of its own would have returned, none for an
unknown run; a failed statement's error reaches every caller of that batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

Execute = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]
"""Runs one statement with its parameters and returns its rows (``PostgresStore._arows``)."""

MAX_BATCH = 100
"""Polls per statement at most: the rows of one statement are ``limit`` lines per run."""


def batch_sql(run_columns: str) -> str:
    """Per (run, after, limit) of the arrays, by their position: the run's columns, then a
    line's (null for a run with no new line); a run that does not exist gives no row."""
    columns = ", ".join(f"r.{c.strip()}" for c in run_columns.split(","))
    return (
        f'select p.i, {columns}, l.seq, l."timestamp", l.log_level, l.message, l.fields'
        " from unnest(%s::text[], %s::bigint[], %s::integer[]) with ordinality"
        " as p(run_id, after, lim, i)"
        " cross join lateral jobtail_get_run(p.run_id) r"
        " left join lateral jobtail_read(r.run_id, p.after, p.lim, 0, null) l on true"
        " order by p.i, l.seq"
    )


@dataclass(slots=True)
class _Poll:
    run_id: str
    after: int
    limit: int
    rows: asyncio.Future[list[Any]]


class PollBatcher:
    """Coalesces the polls of one event loop into statements run by ``execute``."""

    def __init__(self, execute: Execute, sql: str, max_batch: int = MAX_BATCH) -> None:
        self._execute = execute
        self._sql = sql
        self.max_batch = max_batch
        self._pending: list[_Poll] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Polls waiting for a statement."""
        return len(self._pending)

    async def poll(self, run_id: str, after: int, limit: int) -> list[Any]:
        """This run's rows (its columns, then a line's), in seq order; none for an unknown run."""
        loop = asyncio.get_running_loop()
        rows: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append(_Poll(run_id, after, limit, rows))
        if len(self._pending) >= self.max_batch:
            self._send()
        elif not self._in_flight and not self._scheduled:
            self._scheduled = True  # the others woken in this iteration join it
            loop.call_soon(self._flush)
        return await rows

    async def close(self) -> None:
        """Cancel the waiting polls and the statements in flight, and wait for those (before
        their pool closes)."""
        for poll in self._pending:
            poll.rows.cancel()
        self._pending.clear()
        for task in tuple(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _flush(self) -> None:
        self._scheduled = False
        if self._pending:
            self._send()

    def _send(self) -> None:
        """Send up to ``max_batch`` pending polls (those whose caller is still there)."""
        batch = [p for p in self._pending[: self.max_batch] if not p.rows.done()]
        del self._pending[: self.max_batch]
        if not batch:
            return
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Poll]) -> None:
        try:
            params = (
                [p.run_id for p in batch],
                [p.after for p in batch],
                [p.limit for p in batch],
            )
            each = self._split(await self._execute(self._sql, params), len(batch))
        except asyncio.CancelledError:
            for poll in batch:
                poll.rows.cancel()
            raise
        except Exception as exc:  # the statement's error is every caller's
            for poll in batch:
                if not poll.rows.done():
                    poll.rows.set_exception(exc)
        else:
            for poll, got in zip(batch, each, strict=True):
                if not poll.rows.done():
                    poll.rows.set_result(got)
        finally:
            self._in_flight -= 1
            if self._pending and not self._scheduled:
                self._send()  # the polls that queued up behind this statement

    @staticmethod
    def _split(rows: list[Any], count: int) -> list[list[Any]]:
        """Each caller's rows, by the ordinal leading each row (1-based, rows in its order)."""
        each: list[list[Any]] = [[] for _ in range(count)]
        for row in rows:
            each[row[0] - 1].append(row[1:])
        return each
