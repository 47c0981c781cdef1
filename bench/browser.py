"""Browser figures (``python -m bench --only browser``): jobtail's page in Debian's Chromium on
finished 100,000- and 1,000,000-line runs and on a live run streaming 2,000 lines/s.

Measured in the page: time to the first screenful (any line rendered) and to the last (the
run's final line on screen and the end received), renderer memory (CDP
``Performance.getMetrics``: JS heap and DOM nodes), the longest main-thread task (a
``longtask`` PerformanceObserver) while loading and while streaming, and server-side search of
every line as the page sees it. Export is timed over HTTP beside the SSE replay of the same run.
"""

from __future__ import annotations

import shutil
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from jobtail.config import Settings
from jobtail.logger import RunLogger
from jobtail.services import Services
from jobtail.store.base import LogLine, LogStore, RunStatus, utcnow
from jobtail.store.matching import like_pattern
from jobtail.web.app import create_app
from tests.conftest import ServerThread

Row = tuple[str, str, str, bool]
SIZES = (100_000, 1_000_000)
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
LONGTASKS = """
window.__longest = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) {
    window.__longest = Math.max(window.__longest, entry.duration);
  }
}).observe({ type: "longtask", buffered: true });
"""


def _fill(store: LogStore, service: str, total: int) -> str:
    run = store.create_run("bench", service)
    store.start_run(run.run_id)
    now = utcnow()
    for start in range(1, total + 1, 10_000):
        end = min(total, start + 9_999)
        lines = [
            LogLine(seq, now, "WARNING" if seq % 1000 == 0 else "INFO", f"line {seq} of the bench")
            for seq in range(start, end + 1)
        ]
        store.append(run.run_id, lines)
    store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    return run.run_id


@contextmanager
def _chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    path = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _metrics(page: Any) -> dict[str, float]:
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    found = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    cdp.detach()
    return found


def _wait(page: Any, script: str, timeout_s: float = 300) -> None:
    page.wait_for_function(script, timeout=timeout_s * 1000, polling=16)


def _open(browser: Any, url: str, total: int) -> tuple[Any, dict[str, float]]:
    """Open the page at a finished run; the times to its first and last screenful."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.add_init_script(LONGTASKS)
    rows = 'document.querySelector("jobtail-log").shadowRoot'
    began = time.perf_counter()
    page.goto(url)
    _wait(page, f"() => {rows}.querySelector('.line[data-level]') !== null")
    first = time.perf_counter() - began
    _wait(
        page,
        f"() => {rows}.querySelector('.line[data-seq=\"{total}\"][data-level]') !== null"
        " && document.getElementById('conn').dataset.state === 'ended'",
    )
    last = time.perf_counter() - began
    return page, {"first": first, "last": last, "longest": page.evaluate("window.__longest")}


def _search(page: Any, text: str) -> float:
    """Seconds from typing to the final match count (the page's own measure, no debounce)."""
    page.fill("#search", text)
    _wait(page, "() => document.querySelector('jobtail-log').search.ms !== undefined")
    return float(page.evaluate("document.querySelector('jobtail-log').search.ms")) / 1000


def _sql_scan(db: Path, run_id: str, text: str) -> float:
    """The floor of a search: one SQL statement over every line (SQLite's ASCII-folding LIKE),
    no windows, no ANSI check, no HTTP."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        began = time.perf_counter()
        conn.execute(
            "SELECT seq FROM runs_logs WHERE run_id = ? AND message LIKE ? ESCAPE '\\'"
            " ORDER BY seq",
            (run_id, like_pattern(text)),
        ).fetchall()
        return time.perf_counter() - began


def _replay_and_export(base: str, total: int) -> tuple[float, float, float]:
    """Seconds for the SSE replay of the whole run and for its JSONL and text exports."""
    with httpx.Client(base_url=base, timeout=600) as client:
        began = time.perf_counter()
        count, cursor, ended = 0, "", False
        while not ended:  # a stream may end by its window: resume from the last id, as clients do
            headers = {"Last-Event-ID": cursor} if cursor else {}
            with connect_sse(client, "GET", "/runs/bench/pydantic/logs", headers=headers) as source:
                for event in source.iter_sse():
                    cursor = event.id or cursor
                    if event.event == "end":
                        ended = True
                        break
                    if event.event == "message" and event.data:
                        count += 1
        replay = time.perf_counter() - began
        assert count == total, (count, total)
        exports = []
        for fmt in ("jsonl", "text"):
            began = time.perf_counter()
            size = 0
            with client.stream("GET", f"/runs/bench/pydantic/logs/final?format={fmt}") as resp:
                for chunk in resp.iter_bytes():
                    size += len(chunk)
            exports.append(time.perf_counter() - began)
    return replay, exports[0], exports[1]


def _finished_run(browser: Any, tmp: Path, total: int) -> list[Row]:
    data = tmp / f"run{total}"
    services = Services.from_settings(Settings(data_dir=data, store=f"sqlite:///{data}/s.db"))
    run_id = _fill(services.store, "pydantic", total)
    server = ServerThread(create_app(services=services)).start()
    try:
        page, times = _open(browser, f"{server.url}/?upload=bench&service=pydantic", total)
        metrics = _metrics(page)
        heap = metrics["JSHeapTotalSize"] / 2**20
        found = _search(page, f"line {total // 2} ")
        page.close()
        sql = _sql_scan(data / "s.db", run_id, f"line {total // 2} ")
        replay, jsonl, text = _replay_and_export(server.url, total)
    finally:
        server.stop()
        services.close()
    n = f"{total:,}"
    return [
        (
            f"page, {n} lines: first screenful",
            f"{times['first']:.2f} s",
            "<= 1 s",
            times["first"] <= 1,
        ),
        ("  last screenful (end received)", f"{times['last']:.2f} s", "", True),
        (
            "  renderer JS heap / DOM nodes",
            f"{heap:.0f} MB / {metrics['Nodes']:,.0f}",
            "<= 300 MB",
            heap <= 300,
        ),
        (
            "  longest main-thread task, loading",
            f"{times['longest']:.0f} ms",
            "<= 100 ms",
            times["longest"] <= 100,
        ),
        ("  search every line (server)", f"{found:.2f} s", "<= 2 s", found <= 2),
        ("    (floor: one SQL LIKE over every line)", f"{sql:.2f} s", "", True),
        (
            "  export JSONL vs SSE replay",
            f"{total / jsonl:,.0f} vs {total / replay:,.0f} lines/s",
            ">= the replay",
            jsonl <= replay,
        ),
        ("  export text", f"{total / text:,.0f} lines/s", ">= the replay", text <= replay),
    ]


def _live_run(browser: Any, tmp: Path, rate: int = 2000, seconds: float = 10) -> list[Row]:
    data = tmp / "live"
    services = Services.from_settings(Settings(data_dir=data, store=f"sqlite:///{data}/s.db"))
    store = services.store
    run = store.create_run("bench", "pydantic")
    store.start_run(run.run_id)
    server = ServerThread(create_app(services=services)).start()
    total = int(rate * seconds)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.add_init_script(LONGTASKS)
        page.goto(f"{server.url}/?upload=bench&service=pydantic")
        _wait(page, "() => document.getElementById('conn').dataset.state === 'live'")
        page.evaluate("window.__longest = 0")

        def write() -> None:
            with RunLogger(store, run.run_id, write_behind=0.02) as log:
                began = time.perf_counter()
                for n in range(1, total + 1):
                    log.info(f"live line {n}")
                    ahead = n / rate - (time.perf_counter() - began)
                    if ahead > 0.005:
                        time.sleep(ahead)  # pacing the writer at the rate, not synchronising

        writer = threading.Thread(target=write)
        writer.start()
        writer.join()
        store.finish_run(run.run_id, RunStatus.SUCCEEDED)
        _wait(page, "() => document.getElementById('conn').dataset.state === 'ended'")
        longest = float(page.evaluate("window.__longest"))
        shown = page.locator("jobtail-log #count").text_content() or ""
        page.close()
    finally:
        server.stop()
        services.close()
    ok = longest <= 100 and shown == f"{total:,} lines"
    return [
        (
            f"page following {rate:,} lines/s for {seconds:.0f} s",
            f"longest task {longest:.0f} ms",
            "no stall > 100 ms",
            ok,
        ),
    ]


def browser_figures(tmp: Path, sizes: tuple[int, ...] = SIZES) -> list[Row]:
    rows: list[Row] = []
    with _chromium() as browser:
        parts: list[Callable[[], list[Row]]] = [partial(_live_run, browser, tmp)]
        parts += [partial(_finished_run, browser, tmp, total) for total in sizes]
        for part in parts:
            found = part()
            for row in found:
                print("  ", " | ".join(str(cell) for cell in row), file=sys.stderr, flush=True)
            rows += found
    return rows
