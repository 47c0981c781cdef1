"""Server-side search of a run (jobtail.search) on a real SQLite store, and its route."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from jobtail.config import Settings
from jobtail.search import SearchQuery, SearchQueryError, search_run
from jobtail.store import LogLine, RunStatus
from jobtail.store.sqlite import SQLiteStore
from jobtail.web.app import create_app

from .conftest import ServerThread

MESSAGES = [
    ("INFO", "starting"),
    ("DEBUG", "Cache MISS for key a"),
    ("WARNING", "cache miss rate high"),
    ("INFO", "\x1b[31mError\x1b[0m: disk almost full"),
    ("ERROR", "error: disk full"),
    ("INFO", "done in 3.2s"),
]


def fill(store: SQLiteStore, messages: list[tuple[str, str]]) -> str:
    run = store.create_run("up", "svc")
    now = datetime.now(UTC)
    store.append(
        run.run_id, [LogLine(n, now, lvl, text) for n, (lvl, text) in enumerate(messages, 1)]
    )
    store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    return run.run_id


@pytest.fixture
def run_id(sqlite_store: SQLiteStore) -> str:
    return fill(sqlite_store, MESSAGES)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (SearchQuery("cache miss"), [2, 3]),
        (SearchQuery("cache miss", case_sensitive=True), [3]),
        (SearchQuery("error"), [4, 5]),  # ANSI escapes do not hide a word
        (SearchQuery(r"disk (almost )?full", regex=True), [4, 5]),
        (SearchQuery(r"^error", regex=True, case_sensitive=True), [5]),
        (SearchQuery("miss", min_level="WARNING"), [3]),
        (SearchQuery("", min_level="WARNING"), [3, 5]),
        (SearchQuery("nothing like it"), []),
    ],
)
def test_search_finds_exactly_the_matching_lines(
    sqlite_store: SQLiteStore, run_id: str, query: SearchQuery, expected: list[int]
) -> None:
    page = search_run(sqlite_store, run_id, query, upto=len(MESSAGES))
    assert page.matches == expected and page.next_after is None and not page.truncated


def test_search_pages_by_seq_within_a_limit_and_a_time_budget(
    sqlite_store: SQLiteStore,
) -> None:
    run_id = fill(sqlite_store, [("INFO", f"line {n}") for n in range(1, 1001)])
    query = SearchQuery("line 1")  # line 1, 10-19, 100-199, 1000: 112 matches
    found: list[int] = []
    after, pages = 0, 0
    while True:
        page = search_run(sqlite_store, run_id, query, upto=1000, after=after, limit=50, page=100)
        found += page.matches
        pages += 1
        if page.next_after is None:
            break
        after = page.next_after
    assert found == [1, *range(10, 20), *range(100, 200), 1000] and pages == 3

    ticks = iter(range(100))  # a clock that says each page took a second: one page per call
    page = search_run(
        sqlite_store, run_id, query, upto=1000, page=100, budget=0.5, clock=lambda: next(ticks)
    )
    assert page.next_after == 100 and page.matches == [1, *range(10, 20), 100]
    assert search_run(sqlite_store, run_id, query, upto=150).matches[-1] == 150  # upto bounds it


def test_a_bad_pattern_says_why() -> None:
    with pytest.raises(SearchQueryError, match="not a valid regular expression"):
        SearchQuery("(unclosed", regex=True).matcher()


@pytest.fixture
def client(tmp_path: Path, serve: Callable[[object], ServerThread]) -> Iterator[httpx.Client]:
    app = create_app(Settings(data_dir=tmp_path, store=f"sqlite:///{tmp_path}/s.db"))
    server = serve(app)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


def test_the_search_route_by_key_and_by_run_id(client: httpx.Client) -> None:
    store = client.app.state.services.store  # type: ignore[attr-defined]
    run_id = fill(store, MESSAGES)
    body = client.get("/runs/up/svc/logs/search", params={"q": "disk", "level": "ERROR"}).json()
    assert body["matches"] == [5] and body["next_after"] is None and body["upto"] == 6
    body = client.get(f"/run/{run_id}/logs/search", params={"q": "d.ne", "regex": "true"}).json()
    assert body["matches"] == [6]
    bad = client.get("/runs/up/svc/logs/search", params={"q": "(", "regex": "true"})
    assert bad.status_code == 422 and "regular expression" in bad.json()["detail"]
    assert client.get("/runs/up/nope/logs/search").status_code == 404


def test_export_states_the_seq_it_is_consistent_up_to(client: httpx.Client) -> None:
    store = client.app.state.services.store  # type: ignore[attr-defined]
    run = store.create_run("up", "live")
    now = datetime.now(UTC)
    store.append(run.run_id, [LogLine(n, now, "INFO", f"l{n}") for n in range(1, 8)])
    text = client.get("/runs/up/live/logs/final", params={"format": "text"})
    assert f'filename="up-live-{run.run_id}-upto-7.log"' in text.headers["content-disposition"]
    assert text.headers["x-jobtail-upto"] == "7" and text.text.count("\n") == 7
    jsonl = client.get("/runs/up/live/logs/final", params={"format": "jsonl", "before": 5})
    assert "upto-4.jsonl" in jsonl.headers["content-disposition"]
    assert [line for line in jsonl.text.splitlines()][-1].startswith('{"seq":4,')
