"""Search every line of a run: substring or regular expression, case option, minimum level.

The store runs the scan in its database (``LogStore.search``: SQLite ``instr``/``LIKE``,
PostgreSQL ``strpos``/``ILIKE``/``~``), so no Python object is built per line. Each call stops
after a time budget or a number of matches and says where to go on (``next_after``), so a request
never runs long however big the run is, and the caller pages through by seq; a pattern that makes
no progress within the budget is refused (SearchTimeoutError). ``upto`` pins the end of the scan,
so the pages of one search agree even while the run grows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .store.base import LogStore
from .store.matching import (
    MAX_PATTERN,
    SearchQuery,
    SearchQueryError,
    SearchTimeoutError,
    visible,
)

__all__ = [
    "MAX_PATTERN",
    "SearchPage",
    "SearchQuery",
    "SearchQueryError",
    "SearchTimeoutError",
    "search_run",
    "visible",
]


@dataclass(frozen=True, slots=True)
class SearchPage:
    """Matching seqs in order; ``next_after`` is None once ``upto`` was reached. ``truncated``:
    the page stopped at its limit of matches; ``timed_out``: at its time budget."""

    matches: list[int]
    next_after: int | None
    scanned_to: int
    upto: int
    truncated: bool
    timed_out: bool = False


def search_run(
    store: LogStore,
    run_id: str,
    query: SearchQuery,
    *,
    upto: int,
    after: int = 0,
    limit: int = 10_000,
    budget: float = 1.0,
) -> SearchPage:
    """Scan ``after < seq <= upto`` until done, ``limit`` matches, or ``budget`` seconds."""
    query.check()
    if after >= upto:
        return SearchPage([], None, upto, upto, truncated=False)
    deadline = time.monotonic() + budget
    hits = store.search(run_id, query, after=after, upto=upto, limit=limit, deadline=deadline)
    done = hits.scanned_to >= upto
    truncated = len(hits.matches) >= limit
    return SearchPage(
        hits.matches,
        None if done else hits.scanned_to,
        hits.scanned_to,
        upto,
        truncated=truncated,
        timed_out=not done and not truncated,
    )
