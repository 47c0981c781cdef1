"""jobtail's page on runs written straight into the store: what a person sees of a big run,
search, terminal-grade lines, links, copy, downloads, failures, truncation and accessibility."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from jobtail.logger import RunLogger
from jobtail.store import LogLine, RunStatus

from .conftest import LINES, LogSite, errors_of, write_run

pytestmark = pytest.mark.browser

KEY = ("demo", "pydantic")  # a service the page lists; the run itself is written by the test
PAGE = "/?upload=demo&service=pydantic"
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
AXE_SERIOUS = """async () => {
  const { violations } = await axe.run(document, { resultTypes: ["violations"] });
  return violations
    .filter((v) => ["serious", "critical"].includes(v.impact))
    .map((v) => `${v.id}: ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`);
}"""


def numbered(count: int, every: int = 1000) -> list[Any]:
    """``line N``; every ``every``-th line a WARNING."""
    return [("WARNING" if n % every == 0 else "INFO", f"line {n}") for n in range(1, count + 1)]


def open_run(context: Any, site: LogSite, suffix: str = "") -> tuple[Any, list[str]]:
    page = context.new_page()
    errors = errors_of(page)
    page.goto(site.url + PAGE + suffix)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return page, errors


def row(page: Any, seq: int) -> Any:
    return page.locator(f"#lines .line[data-seq='{seq}']")


def test_a_big_run_opens_at_its_end_and_holds_only_a_screenful(
    log_site: Callable[..., LogSite], context: Any
) -> None:
    site = log_site()
    write_run(site.store, numbered(20_000), key=KEY)
    page, errors = open_run(context, site)
    expect(page.locator("#count")).to_have_text("20,000 lines")
    expect(row(page, 20_000)).to_be_in_viewport()
    expect(row(page, 20_000)).to_have_text(re.compile("line 20000"))
    assert page.locator("#lines .line").count() < 150
    # Scrolling up pages earlier lines in by seq.
    page.locator("#lines").hover()
    page.mouse.wheel(0, -200_000)  # about half way up (20 px a row)
    expect(page.locator("#jump")).to_be_visible()
    expect(row(page, 9_990)).to_have_text(re.compile("line 9990"))
    assert page.locator("#lines .line").count() < 150
    page.click("#jump")
    expect(row(page, 20_000)).to_be_in_viewport()
    assert errors == []


def test_search_sees_every_line_and_jumps_to_lines_not_loaded(
    log_site: Callable[..., LogSite], context: Any
) -> None:
    site = log_site()
    write_run(site.store, numbered(20_000), key=KEY)
    page, errors = open_run(context, site)
    expect(page.locator("#count")).to_have_text("20,000 lines")
    page.fill("#search", "line 1234")  # 1234 and 12340-12349
    expect(page.locator("#search-count")).to_have_text("1 of 11 matches")
    current = row(page, 1234)
    expect(current).to_be_in_viewport()
    expect(current).to_have_class(re.compile("current"))
    expect(current.locator("mark")).to_have_text("line 1234")
    page.click("#search-next")
    expect(page.locator("#search-count")).to_have_text("2 of 11 matches")
    expect(row(page, 12_340)).to_be_in_viewport()
    page.click("#search-prev")
    page.click("#search-prev")
    expect(page.locator("#search-count")).to_have_text("11 of 11 matches")
    expect(row(page, 12_349)).to_be_in_viewport()
    # Regular expressions and case; the level filter narrows both the rows and the search.
    page.check("#search-regex")
    page.fill("#search", r"^LINE 1\d{3}$")
    expect(page.locator("#search-count")).to_have_text("1 of 1,000 matches")
    page.check("#search-case")
    expect(page.locator("#search-count")).to_have_text("no matches")
    page.uncheck("#search-case")
    page.uncheck("#search-regex")
    page.select_option("#level", "WARNING")
    expect(page.locator("#count")).to_have_text("20 of 20,000 lines shown")
    page.fill("#search", "line 5")
    expect(page.locator("#search-count")).to_have_text("1 of 1 matches")
    expect(row(page, 5_000)).to_be_in_viewport()
    assert page.locator("#lines .line:not([data-level='WARNING'])").count() == 0
    assert errors == []


def test_a_regex_that_backtracks_is_stopped_and_the_page_says_why(
    log_site: Callable[..., LogSite], context: Any
) -> None:
    """(a|aa)+$ on 40 a's would run for minutes: the server stops it at its time budget and
    the page says so where the match count goes; the next search works at once."""
    site = log_site()
    write_run(site.store, ["a" * 40 + "!", "plain"], key=KEY)
    page, errors = open_run(context, site)
    page.check("#search-regex")
    page.fill("#search", "(a|aa)+$")
    expect(page.locator("#search-count")).to_contain_text("ran out of time", timeout=30_000)
    expect(page.locator("#search-count")).to_contain_text("simplify it")
    page.fill("#search", "a+!")
    expect(page.locator("#search-count")).to_have_text("1 of 1 matches")
    assert errors == []


TERMINAL = [
    "\x1b[31mred\x1b[0m plain \x1b[1;32mbold green\x1b[0m \x1b[38;5;208morange\x1b[0m",
    "Downloading 10%\rDownloading 55%\rDownloading 100%",
    '\x1b[33m<img src=x onerror="window.__xss = 1">\x1b[0m',
    "::group::Install dependencies",
    "Collecting httpx",
    "Installing collected packages",
    "::endgroup::",
    "\x1b[0Ksection_start:1700000000:build[collapsed=true]\r\x1b[0KBuild the wheel",
    "running bdist_wheel",
    "\x1b[0Ksection_end:1700000042:build\r\x1b[0K",
    ("INFO", "fetching a", {"group": "Fetch"}),
    ("INFO", "fetching b", {"group": "Fetch"}),
    "after the groups",
]


def test_terminal_lines_colours_progress_and_groups(
    log_site: Callable[..., LogSite], context: Any
) -> None:
    site = log_site()
    write_run(site.store, TERMINAL, key=KEY)
    page, errors = open_run(context, site)
    expect(page.locator("#count")).to_have_text("13 lines")
    red = row(page, 1).locator(".a-fg-red")
    expect(red).to_have_text("red")
    assert red.evaluate("el => getComputedStyle(el).color") == "rgb(255, 123, 114)"
    expect(row(page, 1).locator(".a-bold.a-fg-green")).to_have_text("bold green")
    expect(row(page, 1).locator("[style*='color']")).to_have_text("orange")
    expect(row(page, 1).locator(".msg")).to_have_text("red plain bold green orange")
    expect(row(page, 2).locator(".msg")).to_have_text("Downloading 100%")
    expect(row(page, 3).locator(".msg")).to_have_text('<img src=x onerror="window.__xss = 1">')
    assert page.locator("#lines img").count() == 0 and page.evaluate("window.__xss") is None

    group = row(page, 4).locator("button.group")
    expect(group).to_have_text(re.compile(r"▾ Install dependencies \(0:00\)"))
    expect(row(page, 8).locator("button.group")).to_have_text(
        re.compile(r"Build the wheel \(0:42\)")
    )
    expect(row(page, 11).locator("button.group")).to_have_text(re.compile("Fetch"))
    build = row(page, 8).locator("button.group")  # GitLab's [collapsed=true]: starts folded
    expect(build).to_have_attribute("aria-expanded", "false")
    expect(row(page, 9)).to_have_count(0)
    build.click()
    expect(row(page, 9)).to_have_text(re.compile("running bdist_wheel"))
    expect(build).to_have_attribute("aria-expanded", "true")
    group.click()
    expect(group).to_have_attribute("aria-expanded", "false")
    for hidden in (5, 6, 7):
        expect(row(page, hidden)).to_have_count(0)
    expect(row(page, 8)).to_be_visible()
    row(page, 11).locator("button.group").click()
    expect(row(page, 12)).to_have_count(0)
    expect(row(page, 13)).to_be_visible()
    group.click()
    expect(row(page, 5)).to_have_text(re.compile("Collecting httpx"))

    # Timestamps: local, UTC or since the start; the choice is remembered.
    expect(row(page, 1).locator(".ts")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$"))
    page.select_option("#time", "utc")
    expect(row(page, 1).locator(".ts")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d\.\d{3}Z$"))
    page.reload()
    expect(row(page, 1).locator(".ts")).to_have_text(re.compile(r"Z$"))
    page.select_option("#time", "relative")
    expect(row(page, 2).locator(".ts")).to_have_text(re.compile(r"^\+0:00\.\d{3}$"))
    assert errors == []


BIDI = [
    "access = 'user\u202e \u2066// admin\u2069 \u2066'",  # Trojan Source: reads as something else
    "isolates \u2066a\u2069 \u2067b\u2069 \u2068c\u2069 embeds \u202aL\u202c \u202bR\u202c \u202dO",
]


def test_bidi_controls_are_shown_not_applied(
    log_site: Callable[..., LogSite], context: Any
) -> None:
    """U+202A-U+202E and U+2066-U+2069 could make a line read as other text: each shows as a
    visible escape, the line's text holds none of them, and search marks still land."""
    site = log_site()
    write_run(site.store, BIDI, key=KEY)
    page, errors = open_run(context, site)
    first = row(page, 1).locator(".msg")
    expect(first).to_have_text("access = 'user<U+202E> <U+2066>// admin<U+2069> <U+2066>'")
    expect(first.locator(".bidi")).to_have_count(4)
    shown = "".join(row(page, n).locator(".msg").inner_text() for n in (1, 2))
    assert not re.search("[\u202a-\u202e\u2066-\u2069]", shown)
    escapes = row(page, 2).locator(".bidi").all_inner_texts()
    assert escapes == [
        "<U+2066>", "<U+2069>", "<U+2067>", "<U+2069>", "<U+2068>", "<U+2069>",
        "<U+202A>", "<U+202C>", "<U+202B>", "<U+202C>", "<U+202D>",
    ]  # fmt: skip
    page.fill("#search", "admin")
    expect(page.locator("#search-count")).to_have_text("1 of 1 matches")
    expect(first.locator("mark")).to_have_text("admin")
    assert errors == []


def test_permalinks_copy_and_downloads_while_running(
    log_site: Callable[..., LogSite], context: Any
) -> None:
    site = log_site()
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    run_id = write_run(site.store, numbered(12_000), key=KEY, status=None)
    page, errors = open_run(context, site, "#L5000-L5003")
    for seq in range(5000, 5004):
        expect(row(page, seq)).to_have_class(re.compile("selected"))
    expect(row(page, 5000)).to_be_in_viewport()
    expect(row(page, 4999)).not_to_have_class(re.compile("selected"))
    page.click("#copy")
    expect(page.locator("#copy")).to_have_text("Copied 4 lines")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert [line.split()[-1] for line in copied.splitlines()] == ["5000", "5001", "5002", "5003"]
    row(page, 5010).locator("a.seq").click()  # the page updates its URL: wait for it
    expect(page).to_have_url(re.compile(rf"run={run_id}.*#L5010$"))
    row(page, 5012).locator("a.seq").click(modifiers=["Shift"])
    expect(page).to_have_url(re.compile(r"#L5010-L5012$"))
    page.click("#copy")
    expect(page.locator("#copy")).to_have_text("Copied 3 lines")
    # selecting marks the rows in place: rendered anew, the nodes under the pointer were
    # replaced, and a click whose mousedown and mouseup fell on different nodes was lost
    kept = row(page, 5011).element_handle()
    row(page, 5011).locator("a.seq").click()
    expect(page).to_have_url(re.compile(r"#L5011$"))
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => setTimeout(done, 150)))")
    assert kept.evaluate("node => node.isConnected")
    expect(row(page, 5011)).to_have_class(re.compile("selected"))
    expect(row(page, 5010)).not_to_have_class(re.compile("selected"))
    # so do rows rendered anew when a page of lines loads, if they come out the same
    page.evaluate("() => document.querySelector('jobtail-log').pager.onLoaded()")
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => setTimeout(done, 150)))")
    assert kept.evaluate("node => node.isConnected")

    # The elapsed timer runs while the run does; downloads say how far they are complete.
    expect(page.locator("#status")).to_have_text("running")
    expect(page.locator("#elapsed")).to_have_text(re.compile(r"^elapsed \d+:\d\d$"))
    more = [LogLine(n, datetime.now(UTC), "INFO", f"line {n}") for n in range(12_001, 12_051)]
    site.store.append(run_id, more)
    expect(page.locator("#count")).to_have_text("12,050 lines")
    for link, suffix, count in (
        ("#download-text", ".log", 12_050),
        ("#download-jsonl", ".jsonl", 12_050),
    ):
        with page.expect_download() as info:
            page.click(link)
        download = info.value
        assert download.suggested_filename.endswith(f"-upto-12050{suffix}")
        assert Path(download.path()).read_text().count("\n") == count
    assert errors == []


def test_a_failed_run_shows_its_error_first_and_what_was_omitted(
    log_site: Callable[..., LogSite], context: Any
) -> None:
    site = log_site()
    error = (
        "Traceback (most recent call last):\n"
        '  File "/srv/app/.venv/lib/python3.11/site-packages/jobtail/jobs/runner.py", line 9\n'
        '  File "/home/ci/build/project/src/pipeline/steps.py", line 42, in load\n'
        "ValueError: the input has no rows"
    )
    run = site.store.create_run(*KEY)
    site.store.start_run(run.run_id)
    log = RunLogger(site.store, run.run_id, max_lines=20, keep_tail=3)  # the real line cap
    for n in range(1, 101):
        log.info(f"step {n}")
    log.finish(
        RunStatus.FAILED, f"Run failed: ValueError: the input has no rows\n{error}", error=error
    )
    page, errors = open_run(context, site)
    expect(page.locator("#status")).to_have_text("failed")
    headline = page.locator("#run-error .first")
    expect(headline).to_have_text("Failed: ValueError: the input has no rows")
    trace = page.locator("#run-error details")
    expect(trace).not_to_have_attribute("open", "")
    expect(trace.locator("pre")).to_be_hidden()
    trace.locator("summary").click()
    expect(trace.locator("pre")).to_contain_text("steps.py")
    assert "/srv/app" not in page.locator("#run-error").inner_text()
    assert "/home/ci" not in page.locator("#run-error").inner_text()
    omitted = page.locator("#lines .line.omitted")
    expect(omitted).to_contain_text("lines omitted")
    expect(page.locator("#run-meta")).to_contain_text("lines omitted (line cap)")
    assert "step 100" in page.locator("#lines").inner_text()  # the tail is kept, and shown
    last = page.locator("#lines .line").last
    expect(last).to_have_attribute("data-level", "ERROR")
    expect(last.locator(".msg")).to_be_visible()
    last.locator("button.more").click()  # the folded traceback of the last line unfolds
    expect(last).to_have_class(re.compile("expanded"))
    assert last.evaluate("el => el.getBoundingClientRect().height") > 60
    assert errors == []


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_accessible_in_both_themes_on_running_finished_and_failed_runs(
    log_site: Callable[..., LogSite], browser: Any, scheme: str
) -> None:
    if not AXE.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("axe-core is not installed: make test runs npm ci in tests/browser")
        pytest.skip("axe-core is not installed (cd tests/browser && npm ci)")
    site = log_site()
    start = datetime.now(UTC) - timedelta(seconds=30)
    runs = {
        "running": write_run(site.store, numbered(300), key=("demo", "pydantic"), status=None),
        "succeeded": write_run(
            site.store, numbered(300, 7), key=("demo", "dataclasses"), start=start
        ),
        "failed": write_run(
            site.store,
            [*numbered(50, 5), ("ERROR", "Run failed: boom")],
            key=("demo", "typeddict"),
            status=RunStatus.FAILED,
            error="RuntimeError: boom",
        ),
    }
    context = browser.new_context(viewport={"width": 1200, "height": 800}, color_scheme=scheme)
    try:
        page = context.new_page()
        for status, service in (
            ("running", "pydantic"),
            ("succeeded", "dataclasses"),
            ("failed", "typeddict"),
        ):
            page.goto(f"{site.url}/?upload=demo&service={service}")
            expect(page.locator("#status")).to_have_text(status)
            expect(page.locator("#count")).not_to_have_text("0 lines")
            page.fill("#search", "line 1")
            expect(page.locator("#search-count")).to_contain_text("matches")
            page.add_script_tag(path=str(AXE))
            found = page.evaluate(AXE_SERIOUS)
            assert found == [], f"{scheme} theme, {status} run ({runs[status]}): {found}"
    finally:
        context.close()


def test_keyboard_and_a_narrow_screen(log_site: Callable[..., LogSite], browser: Any) -> None:
    site = log_site()
    write_run(site.store, numbered(3_000), key=KEY)
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(site.url + PAGE)
        expect(page.locator("#count")).to_have_text("3,000 lines")
        # The log is on the first screen, below the controls, with room to read.
        box = page.locator("#lines").bounding_box()
        assert box is not None and box["y"] < 844 - 200, box
        assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
        expect(row(page, 3000)).to_be_in_viewport()
        # Everything from the keyboard: search, next match, a line link, copy.
        page.locator("#search").focus()
        page.keyboard.type("line 2500")
        expect(page.locator("#search-count")).to_have_text("1 of 1 matches")
        expect(row(page, 2500)).to_be_in_viewport()
        page.keyboard.press("Enter")
        expect(row(page, 2500)).to_have_class(re.compile("current"))
        row(page, 2500).locator("a.seq").focus()
        page.keyboard.press("Enter")
        expect(row(page, 2500)).to_have_class(re.compile("selected"))
        page.locator("#lines").focus()
        page.keyboard.press("Home")
        page.wait_for_function(f"() => {LINES}.scrollTop === 0")
        expect(row(page, 1)).to_be_in_viewport()
        page.keyboard.press("End")
        expect(row(page, 3000)).to_be_in_viewport()
    finally:
        context.close()
