"""The search loop PostgreSQL and Supabase share (``pg_search.scan``) and how a query becomes
SQL matching (``plan``), without a database: ``scan`` takes its ``fetch`` (one call of
``jobtail_search``), here a Python one over a list of matching seqs that records its calls.
tests/store/test_search.py runs the same loop over the real backends."""

from __future__ import annotations

import itertools
import time

import pytest

from jobtail.store.matching import SearchHits, SearchQuery, SearchTimeoutError
from jobtail.store.pg_search import (
    CancelledError,
    PatternRefusedError,
    Plan,
    min_level_number,
    plan,
    scan,
)

Call = tuple[int, int, int]


class Fetch:
    """``jobtail_search`` over ``matching`` (the seqs that match, in order): the first ``want``
    of those in ``lo < seq <= hi``; ``fail`` raises on the call of that index."""

    def __init__(self, matching: list[int], fail: dict[int, Exception] | None = None) -> None:
        self.matching, self.fail = matching, fail or {}
        self.calls: list[Call] = []
        self.deadlines: list[float] = []

    def __call__(self, lo: int, hi: int, want: int, deadline: float) -> list[int]:
        self.calls.append((lo, hi, want))
        self.deadlines.append(deadline)
        if len(self.calls) - 1 in self.fail:
            raise self.fail[len(self.calls) - 1]
        return [seq for seq in self.matching if lo < seq <= hi][:want]


def later() -> float:
    return time.monotonic() + 60


def test_a_scan_asks_one_window_after_another_up_to_the_end() -> None:
    fetch = Fetch([5, 1500, 2500])
    deadline = later()
    hits = scan(fetch, after=0, upto=2500, limit=10, deadline=deadline, window=1000)
    assert hits == SearchHits([5, 1500, 2500], 2500)
    assert fetch.calls == [(0, 1000, 10), (1000, 2000, 9), (2000, 2500, 8)]  # want: what is left
    assert fetch.deadlines == [deadline] * 3


def test_a_scan_starts_after_its_cursor_and_an_empty_span_asks_nothing() -> None:
    fetch = Fetch([1, 2, 3, 4])
    assert scan(fetch, after=2, upto=4, limit=10, deadline=later()) == SearchHits([3, 4], 4)
    assert fetch.calls == [(2, 4, 10)]
    empty = Fetch([1])
    assert scan(empty, after=4, upto=4, limit=10, deadline=later()) == SearchHits([], 4)
    assert empty.calls == []


def test_a_scan_stops_at_its_limit_and_says_it_scanned_to_the_last_hit() -> None:
    fetch = Fetch([10, 20, 30, 1200])
    hits = scan(fetch, after=0, upto=5000, limit=3, deadline=later(), window=1000)
    assert hits == SearchHits([10, 20, 30], 30)
    assert fetch.calls == [(0, 1000, 3)]
    fetch = Fetch([10, 1200, 1300])
    hits = scan(fetch, after=0, upto=5000, limit=2, deadline=later(), window=1000)
    assert hits == SearchHits([10, 1200], 1200)
    assert fetch.calls == [(0, 1000, 2), (1000, 2000, 1)]


def test_a_window_is_at_most_the_given_size_and_widens_while_statements_are_quick() -> None:
    fetch = Fetch([])
    assert scan(fetch, after=0, upto=5000, limit=10, deadline=later(), window=1000) == (
        SearchHits([], 5000)
    )
    assert [(lo, hi) for lo, hi, _ in fetch.calls] == [(n, n + 1000) for n in range(0, 5000, 1000)]
    fetch = Fetch([])
    assert scan(fetch, after=0, upto=3_000_000, limit=10, deadline=later()) == (
        SearchHits([], 3_000_000)
    )
    sizes = [hi - lo for lo, hi, _ in fetch.calls]
    assert sizes[0] == 2000 and max(sizes) == 100_000  # doubling, up to 100,000 by default
    pairs = itertools.pairwise(sizes[:-1])  # the last window ends at upto
    assert all(size in (before, 2 * before, 100_000) for before, size in pairs)


def test_a_full_page_is_asked_again_from_its_last_seq() -> None:
    """PostgREST's max rows (``page``) may cut a window's answer: the next call starts after
    the last seq it got, not at the window's end, and asks at most a page."""
    fetch = Fetch([1, 2, 3, 4, 5, 6, 7, 1500])
    hits = scan(fetch, after=0, upto=2000, limit=100, deadline=later(), window=1000, page=3)
    assert hits == SearchHits([1, 2, 3, 4, 5, 6, 7, 1500], 2000)
    assert fetch.calls == [(0, 1000, 3), (3, 1003, 3), (6, 1006, 3), (1006, 2000, 3)]
    fetch = Fetch([1, 2, 3, 4])
    hits = scan(fetch, after=0, upto=2000, limit=4, deadline=later(), window=1000, page=3)
    assert hits == SearchHits([1, 2, 3, 4], 4)
    assert fetch.calls == [(0, 1000, 3), (3, 1003, 1)]  # the limit is less than a page


def test_a_pattern_the_database_refuses_is_none() -> None:
    fetch = Fetch([5, 1500], fail={1: PatternRefusedError()})
    assert scan(fetch, after=0, upto=3000, limit=10, deadline=later(), window=1000) is None


def test_a_cancelled_statement_ends_the_scan_where_it_got() -> None:
    fetch = Fetch([5, 1500], fail={1: CancelledError()})
    hits = scan(fetch, after=0, upto=3000, limit=10, deadline=later(), window=1000)
    assert hits == SearchHits([5], 1000)
    assert len(fetch.calls) == 2


def test_a_scan_that_got_nowhere_before_its_deadline_says_so() -> None:
    cancelled = Fetch([5], fail={0: CancelledError()})
    with pytest.raises(SearchTimeoutError) as caught:
        scan(cancelled, after=7, upto=3000, limit=10, deadline=later(), window=1000)
    assert caught.value.after == 7
    past = Fetch([5])
    with pytest.raises(SearchTimeoutError) as caught:
        scan(past, after=0, upto=3000, limit=10, deadline=time.monotonic() - 1)
    assert caught.value.after == 0 and past.calls == []


@pytest.mark.parametrize(
    ("query", "folds_unicode", "expected"),
    [
        (SearchQuery(""), False, Plan("all")),
        (SearchQuery("", regex=True, min_level="ERROR"), False, Plan("all")),
        (SearchQuery("Disk 5%", case_sensitive=True), False, Plan("strpos", "Disk 5%")),
        (SearchQuery("disk_5%"), False, Plan("ilike", "%disk\\_5\\%%")),
        (SearchQuery("ärger"), True, Plan("ilike", "%ärger%")),
        (SearchQuery("ärger"), False, None),  # the locale folds ASCII only: Python matches
        (SearchQuery("ÄRGER", case_sensitive=True), False, Plan("strpos", "ÄRGER")),
        (SearchQuery("ärger", regex=True, case_sensitive=True), False, Plan("regex", "ärger")),
        (SearchQuery(r"a.b", regex=True), False, Plan("iregex", "a[^\\n]b")),
        (SearchQuery(r"a.b", regex=True, case_sensitive=True), False, Plan("regex", "a[^\\n]b")),
        (SearchQuery(r"(a)\1", regex=True), True, None),  # no translation: Python matches
    ],
)
def test_a_query_is_planned_as_sql_matching(
    query: SearchQuery, folds_unicode: bool, expected: Plan | None
) -> None:
    assert plan(query, folds_unicode) == expected


def test_a_plan_has_no_needle_unless_given() -> None:
    assert Plan("all").needle == ""


@pytest.mark.parametrize(
    ("level", "number"),
    [(None, 0), ("DEBUG", 0), ("debug", 0), ("INFO", 20), ("warning", 30), ("CUSTOM", 20)],
)
def test_the_level_bound_in_sql(level: str | None, number: int) -> None:
    """DEBUG is the lowest level: no bound, so lines of any level (even below it) count."""
    assert min_level_number(SearchQuery("x", min_level=level)) == number
