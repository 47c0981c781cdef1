"""Stores that fail on demand, over a real SQLite file: the faults the tail must survive."""

from __future__ import annotations

from jobtail.store.base import StoreError
from jobtail.store.sqlite import SQLiteStore

from ..figures import FIGURES


class FlakyStore(SQLiteStore):
    """A real SQLite store whose async reads fail on demand: the next ``fail_polls`` polls, and
    every read while ``down`` is set."""

    fail_polls = 0
    fail_reads = 0
    down = False
    failures = 0

    def _maybe_fail(self, counter: str | None) -> None:
        if counter and getattr(self, counter) > 0:
            setattr(self, counter, getattr(self, counter) - 1)
            self.failures += 1
            FIGURES["store reads failed on purpose"] += 1
            raise StoreError("injected: store unreachable")
        if self.down:
            self.failures += 1
            FIGURES["store reads failed on purpose"] += 1
            raise StoreError("injected: store down")

    async def apoll(self, run_id: str, after: int, limit: int):  # type: ignore[no-untyped-def]
        self._maybe_fail("fail_polls")
        return await super().apoll(run_id, after, limit)

    async def aread(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._maybe_fail("fail_reads")
        return await super().aread(*args, **kwargs)

    async def aget_run(self, run_id: str):  # type: ignore[no-untyped-def]
        self._maybe_fail(None)
        return await super().aget_run(run_id)
