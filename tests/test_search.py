"""Server-side search of a run (jobtail.search) on a real SQLite store, and its route."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from jobtail.config import Settings
from jobtail.search import SearchQuery, SearchQueryError, search_run
from jobtail.store import LogLine, RunStatus
from jobtail.store.base import JSON_LINES, TEXT_LINES, frame_lines
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


def test_search_pages_by_seq_within_a_limit(client: httpx.Client) -> None:
    store = client.app.state.services.store  # type: ignore[attr-defined]
    fill(store, [("INFO", f"line {n}") for n in range(1, 1001)])
    found: list[int] = []
    params: dict[str, str | int] = {"q": "line 1", "limit": 50}
    while True:
        body = client.get("/runs/up/svc/logs/search", params=params).json()
        assert body["upto"] == 1000 and not body["timed_out"]
        found += body["matches"]
        if body["next_after"] is None:
            break
        assert body["truncated"] and body["next_after"] == body["matches"][-1]
        params["after"] = body["next_after"]
    assert found == [1, *range(10, 20), *range(100, 200), 1000]
    assert search_run(store, fill(store, MESSAGES), SearchQuery("disk"), upto=4).matches == [4]


def test_a_pattern_that_backtracks_is_refused_in_about_a_second(client: httpx.Client) -> None:
    """(a|aa)+$ on 40 a's would run for minutes: the answer is a 422 that says why, at the
    search's time budget, and the server answers the next request at once."""
    store = client.app.state.services.store  # type: ignore[attr-defined]
    fill(store, [("INFO", "a" * 40 + "!")])
    began = time.monotonic()
    slow = client.get("/runs/up/svc/logs/search", params={"q": "(a|aa)+$", "regex": "true"})
    assert slow.status_code == 422 and "simplify" in slow.json()["detail"]
    assert time.monotonic() - began < 10
    assert client.get("/runs/up/svc/logs/search", params={"q": "a!"}).json()["matches"] == [1]


def test_a_bad_pattern_says_why() -> None:
    with pytest.raises(SearchQueryError, match="not a valid regular expression"):
        SearchQuery("(unclosed", regex=True).check()


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


def test_export_bytes_are_the_lines_up_to_the_seq_in_the_file_name(client: httpx.Client) -> None:
    """Lines appended while a download streams are not in it: it holds exactly lines 1..upto,
    byte for byte, in both formats (three store pages here)."""
    store = client.app.state.services.store  # type: ignore[attr-defined]
    run = store.create_run("up", "big")
    store.start_run(run.run_id)
    now = datetime.now(UTC)
    lines = [
        LogLine(
            n,
            now,
            "WARNING" if n % 3 else "INFO",
            f"l{n} \u00e9\x1b[1m",
            {"n": n} if n % 2 else None,
        )
        for n in range(1, 25_001)
    ]
    store.append(run.run_id, lines)
    for fmt, framing in (("text", TEXT_LINES), ("jsonl", JSON_LINES)):
        with client.stream("GET", "/runs/up/big/logs/final", params={"format": fmt}) as resp:
            assert f"-upto-{len(lines)}." in resp.headers["content-disposition"]
            chunks = resp.iter_bytes()
            body = next(chunks)
            late = [LogLine(len(lines) + k, now, "INFO", "late") for k in range(1, 4)]
            store.append(run.run_id, late)
            body += b"".join(chunks)
        assert body == frame_lines(lines, framing)
        lines += late
    warned = client.get("/runs/up/big/logs/final", params={"format": "text", "level": "WARNING"})
    assert warned.content == frame_lines([x for x in lines if x.log_level == "WARNING"], TEXT_LINES)
    assert warned.headers["x-jobtail-upto"] == "25006"
