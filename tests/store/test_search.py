"""``LogStore.search`` on every backend: the same seqs as Python's matching of the visible text,
paged by seq, within a deadline."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg
import pytest

from jobtail.store.base import SEARCH_PAGE, LogLine, LogStore, RunStatus
from jobtail.store.matching import SearchHits, SearchQuery, SearchTimeoutError, required_text
from jobtail.store.pg_search import pg_pattern
from jobtail.store.postgres import PostgresStore
from jobtail.store.supabase import SupabaseStore
from tests.store.fake_postgrest import FakePostgrest

T = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
MESSAGES = [
    ("INFO", "starting"),  # 1
    ("DEBUG", "Cache MISS for key a"),  # 2
    ("WARNING", "cache miss rate high"),  # 3
    ("INFO", "\x1b[31mErr\x1b[0mor: disk almost full"),  # 4: colours split the word
    ("ERROR", "error: disk full"),  # 5
    ("INFO", "100% done"),  # 6
    ("INFO", "1000 done"),  # 7: what an unescaped % would match
    ("INFO", "file_name.txt"),  # 8
    ("INFO", "fileXname.txt"),  # 9: what an unescaped _ would match
    ("INFO", "C:\\temp\\x"),  # 10
    ("INFO", "C:tempx"),  # 11: what a lost \ would match
    ("WARNING", "Grüße an ÄRGER"),  # 12
    ("INFO", "a+b (x) literally"),  # 13
    ("INFO", "multi\nline message"),  # 14
    ("INFO", "cat and concatenate"),  # 15
    ("INFO", "concatenate only"),  # 16
    ("INFO", "31m is not in the text of line 4"),  # 17
]
HARD = [
    (SearchQuery("cache miss"), [2, 3]),
    (SearchQuery("cache miss", case_sensitive=True), [3]),
    (SearchQuery("error"), [4, 5]),  # ANSI escapes neither hide a word...
    (SearchQuery("31m"), [17]),  # ...nor match
    (SearchQuery("100%"), [6]),
    (SearchQuery("%"), [6]),
    (SearchQuery("file_name"), [8]),
    (SearchQuery("_"), [8]),
    (SearchQuery("\\temp"), [10]),
    (SearchQuery("\\"), [10]),
    (SearchQuery("ärger"), [12]),  # folded beyond ASCII
    (SearchQuery("ÄRGER", case_sensitive=True), [12]),
    (SearchQuery("ärger", case_sensitive=True), []),
    (SearchQuery("a+b (x)"), [13]),
    (SearchQuery("miss", min_level="WARNING"), [3]),
    (SearchQuery("", min_level="WARNING"), [3, 5, 12]),
    (SearchQuery("", min_level="ERROR"), [5]),
    (SearchQuery("nothing like it"), []),
    (SearchQuery(r"disk (almost )?full", regex=True), [4, 5]),
    (SearchQuery(r"^error", regex=True, case_sensitive=True), [5]),
    (SearchQuery(r"Error: \w+ \w+ full", regex=True), [4]),  # the needed text is split by ANSI
    (SearchQuery(r"^ERROR", regex=True), [4, 5]),
    (SearchQuery(r"multi.line", regex=True), []),  # . is not a newline
    (SearchQuery(r"multi\sline", regex=True), [14]),
    (SearchQuery(r"^line", regex=True), []),  # ^ is the start of the message
    (SearchQuery(r"\bcat\b", regex=True), [15]),
    (SearchQuery(r"txt$", regex=True), [8, 9]),
    (SearchQuery(r"[_X]name", regex=True), [8, 9]),
    (SearchQuery(r"\x47r\xfc", regex=True, case_sensitive=True), [12]),
    (SearchQuery(r"(?P<w>cat) and conc", regex=True), [15]),  # Python-only: matched in Python
    (SearchQuery(r"(\w)\1", regex=True, min_level="WARNING"), [3, 5]),  # back reference
    (SearchQuery(r"(?i)GRÜSSE|miss", regex=True, case_sensitive=True), [2, 3]),
]


@pytest.fixture
def store(store_or_defaults: LogStore) -> LogStore:
    """Every backend, and LogStore's Python default of this method over SQLite."""
    return store_or_defaults


def fill(store: LogStore, messages: list[tuple[str, str]], *, finish: bool = True) -> str:
    run = store.create_run("up", f"svc{time.monotonic_ns()}")
    assert store.start_run(run.run_id)
    lines = [LogLine(n, T, level, text) for n, (level, text) in enumerate(messages, 1)]
    for start in range(0, len(lines), 5000):
        store.append(run.run_id, lines[start : start + 5000])
    if finish:
        store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    return run.run_id


def reference(query: SearchQuery, messages: list[tuple[str, str]]) -> list[int]:
    """Python's own matching of every line: what each backend must agree with."""
    matches = query.matcher()
    level = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}
    low = level[query.min_level] if query.min_level else 0
    return [n for n, (lv, text) in enumerate(messages, 1) if level[lv] >= low and matches(text)]


def find(
    store: LogStore, run_id: str, query: SearchQuery, span: tuple[int, int], limit: int = 999
) -> SearchHits:
    """``store.search`` of ``after < seq <= upto`` with time to spare."""
    after, upto = span
    return store.search(
        run_id, query, after=after, upto=upto, limit=limit, deadline=time.monotonic() + 30
    )


def everything(store: LogStore, run_id: str, query: SearchQuery, upto: int) -> list[int]:
    hits = find(store, run_id, query, (0, upto))
    assert hits.scanned_to == upto
    return hits.matches


@pytest.mark.parametrize(("query", "expected"), HARD, ids=[repr(q) for q, _ in HARD])
def test_search_finds_exactly_the_matching_lines(
    store: LogStore, query: SearchQuery, expected: list[int]
) -> None:
    run_id = fill(store, MESSAGES)
    assert reference(query, MESSAGES) == expected
    assert everything(store, run_id, query, len(MESSAGES)) == expected


def test_search_pages_by_seq_in_windows_and_by_limit(store: LogStore) -> None:
    messages = [("WARNING" if n % 7 == 0 else "INFO", f"line {n}") for n in range(1, 1001)]
    run_id = fill(store, messages, finish=False)
    store.search_window = 64  # type: ignore[attr-defined]  # many windows, each one statement
    for query in (SearchQuery("line 1"), SearchQuery("E 1", min_level="WARNING")):
        found, after, pages = [], 0, 0
        while after < 1000:
            hits = store.search(
                run_id, query, after=after, upto=1000, limit=50, deadline=time.monotonic() + 30
            )
            assert hits.scanned_to > after and all(
                after < s <= hits.scanned_to for s in hits.matches
            )
            found += hits.matches
            after, pages = hits.scanned_to, pages + 1
        assert found == reference(query, messages)
        assert pages == len(found) // 50 + 1
    hits = store.search(
        run_id,
        SearchQuery("line 1"),
        after=100,
        upto=150,
        limit=999,
        deadline=time.monotonic() + 30,
    )
    assert hits.matches == list(range(101, 151)) and hits.scanned_to == 150


def test_a_search_past_its_deadline_says_how_far_it_got(store: LogStore) -> None:
    run_id = fill(store, [("INFO", f"line {n}") for n in range(1, 20_001)])
    if type(store).search is not LogStore.search:  # the stores that search in their database
        store.search_window = 10  # type: ignore[attr-defined]
    try:  # a backend may finish the statement under way: one window, no more
        hits = store.search(
            run_id,
            SearchQuery("line"),
            after=0,
            upto=20_000,
            limit=99_999,
            deadline=time.monotonic(),
        )
    except SearchTimeoutError as exc:
        assert "ran out of time before it got past line 0" in str(exc)
    else:
        python = type(store).search is LogStore.search  # the default reads pages
        one_window = SEARCH_PAGE if python else store.search_window  # type: ignore[attr-defined]
        assert hits.scanned_to <= one_window and hits.matches == list(range(1, hits.scanned_to + 1))


def test_a_pattern_that_backtracks_is_stopped(store: LogStore) -> None:
    """(a|aa)+$ over 40 a's and a '!' takes minutes in a backtracking engine: the search stops
    at its deadline instead, and the route refuses it (tests/test_search.py)."""
    run_id = fill(store, [("INFO", "a" * 40 + "!") for _ in range(3)])
    query = SearchQuery(r"(a|aa)+$", regex=True)
    began = time.monotonic()
    try:
        hits = store.search(
            run_id, query, after=0, upto=3, limit=999, deadline=time.monotonic() + 0.3
        )
    except SearchTimeoutError:
        pass
    else:  # PostgreSQL's engine is not a backtracking one: it answers at once
        assert hits.matches == [] and hits.scanned_to == 3
    assert time.monotonic() - began < 5


@pytest.mark.parametrize(
    ("python", "postgres"),
    [
        (r"\bcat\b", r"\ycat\y"),
        (r"a.c$", "a[^\\n]c(?=\\n?$)"),
        (r"[.$]x", r"[.$]x"),
        (r"[\b]", None),
        (r"[]a]", r"[]a]"),
        (r"[^]a.]+", r"[^]a.]+"),
        (r"a{2,3}b{x", r"a{2,3}b\{x"),
        (r"\x41B", r"\u0041B"),
        (r"(?:a)(?=b)(?!c)", r"(?:a)(?=b)(?!c)"),
        (r"(?i)a", None),
        (r"(?<=a)b", None),
        (r"(a)\1", None),
        (r"[[:alpha:]]", None),
        (r"a{,3}", None),
        (r"a{3}", r"a{3}"),
        (r"a{2,}", r"a{2,}"),
        (r"a{1,x}", r"a\{1,x}"),
        (r"x{12", r"x\{12"),
        (r"}{2}", r"}{2}"),
        (r"a{2}b{x}", r"a{2}b\{x}"),
        (r"\Bx", r"\Yx"),
        (r"\w+\.txt", r"\w+\.txt"),
        (r"\x41", r"\u0041"),
        (r"a\x41", r"a\u0041"),
        (r"[[X]", r"[[X]"),
        # not Python patterns either (SearchQuery refuses them): not translated, nor raised on
        ("a\\", None),
        (r"[a[", None),
        (r"\X", None),
        (r"\x4", None),
    ],
)
def test_python_patterns_in_postgres_dialect(python: str, postgres: str | None) -> None:
    assert pg_pattern(python) == postgres


@pytest.mark.postgres
def test_postgres_cancels_a_slow_statement_at_the_deadline(pg_url: str) -> None:
    """PostgreSQL's regex engine does not backtrack without end, but a heavy scan still stops
    at the deadline: ``SET LOCAL statement_timeout`` cancels the window under way (the whole
    scan is about 0.7 s of work here), and the answer says how far it got. With time to spare
    the same scan finishes."""
    store = PostgresStore(pg_url)
    try:
        run_id = fill(store, [("INFO", "ab" * 1000 + str(n)) for n in range(20_000)])
        began = time.monotonic()
        try:
            hits = store.search(
                run_id,
                SearchQuery(r"(a|b)*c", regex=True),
                after=0,
                upto=20_000,
                limit=10,
                deadline=time.monotonic() + 0.05,
            )
        except SearchTimeoutError:
            pass  # not even the first window finished
        else:
            assert hits.scanned_to < 20_000 and hits.matches == []
        assert time.monotonic() - began < 0.5
        query = SearchQuery(r"(a|b)*c", regex=True)  # with time to spare: each statement's
        hits = find(store, run_id, query, (0, 20_000))  # limit is the time left, not less
        assert hits == SearchHits([], 20_000)
        store.search_window = 9  # its windows: it stops at the end of one of them
        hits = store.search(
            run_id, query, after=0, upto=20_000, limit=10, deadline=time.monotonic() + 0.3
        )
        assert hits.matches == [] and 0 < hits.scanned_to < 20_000 and hits.scanned_to % 9 == 0
    finally:
        store.close()


@pytest.mark.parametrize(
    ("pattern", "case", "needed"),
    [
        (r"(?i)error.*time\d+out", True, ("error", True)),
        (r"line 50000\d ", False, ("line 50000", True)),
        (r"ab|cd", False, ("", True)),
        (r"disk (almost )?full", True, ("disk ", False)),
        (r"disk (almost )?full", False, ("full", True)),  # k and s fold from other letters
        (r"(?x) a b c ", True, ("abc", False)),
    ],
)
def test_the_text_a_regex_needs(pattern: str, case: bool, needed: tuple[str, bool]) -> None:
    assert required_text(SearchQuery(pattern, regex=True, case_sensitive=case)) == needed


def test_the_sql_function_removes_the_same_escapes_as_python() -> None:
    """``jobtail_search`` holds ANSI_PATTERN as a literal: the two must not drift apart."""
    from jobtail.store.matching import ANSI_PATTERN
    from jobtail.store.migrate import MIGRATIONS_DIR

    sql = (MIGRATIONS_DIR / "0008_search.sql").read_text()
    assert f"'{ANSI_PATTERN}'" in sql


@pytest.mark.postgres
def test_supabase_searches_in_sql_without_reading_lines(fake_postgrest: FakePostgrest) -> None:
    """A search over PostgREST sends no line over the network: one ``jobtail_search`` call per
    window, each a GET (read-only), and never ``jobtail_read``."""
    store = SupabaseStore(fake_postgrest.client())
    try:
        run_id = fill(store, [("INFO", f"line {n}") for n in range(1, 5001)])
        store.search_window = 2000
        del fake_postgrest.requests[:]
        hits = find(store, run_id, SearchQuery("line 4999"), (0, 5000))
        assert hits.matches == [4999] and hits.scanned_to == 5000
        calls = [(r.method, r.url.path.rsplit("/", 1)[-1]) for r in fake_postgrest.requests]
        searches = [call for call in calls if call[1] == "jobtail_search"]
        assert searches == [("GET", "jobtail_search")] * 3  # 2000 + 2000 + 1000 seqs
        assert "jobtail_read" not in {fn for _, fn in calls}
    finally:
        store.close()


@pytest.mark.postgres
def test_supabase_search_goes_on_after_a_full_page_of_hits(fake_postgrest: FakePostgrest) -> None:
    """PostgREST's max rows (1000 by default on Supabase) may cut an answer: a window with more
    hits than that is asked again from its last seq, so no hit is skipped."""
    store = SupabaseStore(fake_postgrest.client())
    try:
        run_id = fill(store, [("INFO", f"line {n}") for n in range(1, 2501)])
        hits = find(store, run_id, SearchQuery("line"), (0, 2500), limit=10_000)
        assert hits.matches == list(range(1, 2501)) and hits.scanned_to == 2500
        hits = find(store, run_id, SearchQuery("line"), (0, 2500), limit=1500)
        assert hits.matches == list(range(1, 1501)) and hits.scanned_to == 1500
    finally:
        store.close()


@pytest.mark.postgres
def test_supabase_matches_in_python_what_postgresql_refuses(
    fake_postgrest: FakePostgrest,
) -> None:
    """A pattern the translation passes but PostgreSQL's engine refuses (``a{1,300}``: its
    repeat bound is 255) is matched in Python, with the same answer."""
    store = SupabaseStore(fake_postgrest.client())
    try:
        run_id = fill(store, MESSAGES)
        query = SearchQuery("o{1,300}r", regex=True)
        assert everything(store, run_id, query, len(MESSAGES)) == reference(query, MESSAGES)
    finally:
        store.close()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("mode", "needle", "sqlstate"),
    [("bogus", "x", "22023"), (None, "x", "22023"), ("strpos", None, "22004")],
)
def test_the_sql_function_refuses_a_mode_it_does_not_know(
    pg_url: str, mode: str | None, needle: str | None, sqlstate: str
) -> None:
    store = PostgresStore(pg_url)
    try:
        with store._connection() as conn, pytest.raises(psycopg.Error) as caught:
            conn.execute(
                "select * from jobtail_search('r', 0, 10, 0, %s, %s, 10)", (mode, needle)
            ).fetchall()
        assert caught.value.sqlstate == sqlstate
    finally:
        store.close()
