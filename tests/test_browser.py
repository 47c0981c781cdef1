"""The viewer page in a real Chromium driven by Playwright, against the real app under uvicorn.

Every wait is Playwright's auto-waiting ``expect`` or a condition; none is a fixed sleep.
Set ``JOBTAIL_SCREENSHOT=/tmp/jobtail-page.png`` to save a screenshot of a finished run.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobtail.config import Settings
from jobtail.jobs.generators import GeneratedCode, Generator, GeneratorError, default_registry
from jobtail.logger import RunLogger
from jobtail.services import Services
from jobtail.uploads import ParsedUpload
from jobtail.web.app import create_app

from .conftest import ServerThread
from .waiting import wait_for

try:
    from playwright import sync_api
except ImportError:  # a dev dependency: missing under CI is a failure, not a skip
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("the playwright package is not installed", allow_module_level=True)

expect = sync_api.expect

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000
XSS = '<img src=x onerror="window.__xss = 1"><script>window.__xss = 2</script>'
MULTILINE = "first line of a block\n    second, indented\nthird"
LONG = "x" * 6000
UPLOAD_LIMIT = 65_536  # above the bundled samples, which the job checks against it too
VALID_SCHEMA = b'{"title": "Tiny", "type": "object", "properties": {"name": {"type": "string"}}}'

expect.set_options(timeout=TIMEOUT_MS)
LINES = 'document.querySelector("jobtail-log").shadowRoot.getElementById("lines")'


def chromium_path() -> str:
    """Debian's chromium; skip locally without it, but fail under CI (a skip there hides it)."""
    found = shutil.which("chromium")
    if found is None and os.access("/usr/bin/chromium", os.X_OK):
        found = "/usr/bin/chromium"
    if found:
        return found
    reason = "Debian chromium is not installed (apt-get install chromium): browser tests need it"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


class GatedGenerator(Generator):
    """Logs a first batch (XSS bait, multi-line, a very long line), waits for the test, ends."""

    name = "gated"
    description = "test generator that pauses mid-run until the test opens the gate"

    def __init__(self, first: int = 120, second: int = 60) -> None:
        self.first, self.second = first, second
        self.gate = threading.Event()

    def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
        log.progress(35, "gated: first batch")
        for n in range(1, self.first + 1):
            log.log("DEBUG" if n % 3 else "INFO", f"first batch {n}")
        log.info(XSS)
        log.info(MULTILINE)
        log.info(LONG)
        log.warning("gated: waiting for the test")
        if not self.gate.wait(timeout=60):
            raise GeneratorError("the test never opened the gate")
        for n in range(1, self.second + 1):
            log.info(f"second batch {n}")
        log.error("a logged error that does not fail the run")
        log.progress(60, "gated: done")
        return GeneratedCode(code="VALUE = 1\n", filename="gated.py")


class BrokenGenerator(Generator):
    """Fails at once with a message meant for the user."""

    name = "broken"
    description = "test generator that always fails"

    def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
        log.info("about to fail")
        raise GeneratorError("the broken generator broke, as it should")


@dataclass
class Site:
    server: ServerThread
    client: httpx.Client
    gated: GatedGenerator | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def status(self, upload: str, service: str) -> dict[str, Any]:
        response = self.client.get(f"/runs/{upload}/{service}/status")
        assert response.status_code == 200, response.text
        return dict(response.json())


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    options: dict[str, Any] = {"max_upload_bytes": UPLOAD_LIMIT, **overrides}
    return Settings(data_dir=tmp_path, store=f"sqlite:///{tmp_path}/s.db", **options)


@pytest.fixture
def site(tmp_path: Path, serve: Callable[[object], ServerThread]) -> Iterator[Site]:
    """The app exactly as configured from settings, with the built-in generators."""
    server = serve(create_app(_settings(tmp_path)))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield Site(server, client)


@pytest.fixture
def plugin_site(
    tmp_path: Path, serve: Callable[[object], ServerThread]
) -> Iterator[Callable[..., Site]]:
    """Start the app with the test generators plugged in, and any settings overridden."""
    started: list[tuple[Site, Services]] = []

    def start(headers: dict[str, str] | None = None, **overrides: Any) -> Site:
        gated = GatedGenerator()
        registry = default_registry(plugins=[])
        registry.register(gated)
        registry.register(BrokenGenerator())
        services = Services.from_settings(_settings(tmp_path, **overrides), registry=registry)
        server = serve(create_app(services=services))
        client = httpx.Client(base_url=server.url, timeout=30, headers=headers)
        started.append((Site(server, client, gated), services))
        return started[-1][0]

    yield start
    for site, services in started:
        assert site.gated is not None
        site.gated.gate.set()
        site.client.close()
        site.server.stop()
        services.close()


@pytest.fixture
def gated_site(plugin_site: Callable[..., Site]) -> Site:
    return plugin_site()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context
    context.close()


def open_page(
    context: Any, url: str, errors: list[str], routes: dict[str, Callable[..., Any]] | None = None
) -> Any:
    """A new tab at ``url``, ready (pickers filled, the key's run shown if any)."""
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    for pattern, handler in (routes or {}).items():
        page.route(pattern, handler)
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    return page


def pick(page: Any, upload: str, service: str) -> None:
    page.select_option("#sample", upload)
    page.select_option("#service", service)


def choose_file(page: Any, name: str, data: bytes) -> None:
    """Pick a file in the upload input, as the user would."""
    page.set_input_files(
        "#upload-file", files=[{"name": name, "mimeType": "application/json", "buffer": data}]
    )


# Only the rows in view are in the DOM: read the log as a person would, by scrolling through it
# from the top (waiting for rows still loading), then put the scroll and follow state back.
COLLECT = """async () => {
  const log = document.querySelector("jobtail-log");
  const box = log.shadowRoot.getElementById("lines");
  const view = log.view;
  const state = { following: view.following, unseen: view.unseen, top: box.scrollTop };
  const frame = () => new Promise((done) => requestAnimationFrame(() => done()));
  const rows = new Map();
  let markup = 0;
  view.following = false;
  box.scrollTop = 0;
  for (let step = 0; step < 100000; step += 1) {
    await frame();
    view.render();
    const until = performance.now() + 10000;
    while (box.querySelector(".line.pending") && performance.now() < until) await frame();
    for (const row of box.querySelectorAll(".line:not(.pending)")) {
      const msg = row.querySelector(".msg");
      rows.set(Number(row.dataset.seq), msg ? msg.textContent : "");
    }
    markup += box.querySelectorAll("img, script").length;
    if (box.scrollTop + box.clientHeight >= box.scrollHeight - 1) break;
    view.following = false;
    box.scrollTop += box.clientHeight;
  }
  view.following = state.following;
  view.unseen = state.unseen;
  view.onFollow(state.following, state.unseen);
  box.scrollTop = state.following ? box.scrollHeight : state.top;
  view.render();
  return { rows: [...rows.entries()].sort((a, b) => a[0] - b[0]), markup };
}"""


def read_log(page: Any) -> list[tuple[int, str]]:
    """Every line of the log, in order, as the rows show them (none holds live markup)."""
    found = page.evaluate(COLLECT)
    assert found["markup"] == 0, "a line's text became markup"
    return [(int(seq), str(text)) for seq, text in found["rows"]]


def seqs(page: Any) -> list[int]:
    return [seq for seq, _ in read_log(page)]


def texts(page: Any) -> list[str]:
    return [text for _, text in read_log(page)]


def wait_ended(page: Any, status: str = "succeeded") -> None:
    """The stream said ``end``; every line is shown and none arrived twice."""
    expect(page.locator("#conn")).to_have_attribute("data-state", "ended")
    expect(page.locator("#status")).to_have_text(status)
    expect(page.locator("#lines")).to_have_attribute("data-duplicates", "0")


def test_generate_shows_every_line_once(site: Site, context: Any) -> None:
    page = open_page(context, site.url, site.errors)
    pick(page, "bookshop", "pydantic")
    expect(page.locator("#status")).to_have_text("no run")
    expect(page.locator("#generate")).to_be_enabled()

    page.click("#generate")
    expect(page.locator("#lines .line").first).to_be_visible()
    wait_ended(page)

    status = site.status("bookshop", "pydantic")
    assert status["status"] == "succeeded"
    assert seqs(page) == list(range(1, status["lines"] + 1))
    expect(page.locator("#count")).to_have_text(f"{status['lines']} lines")
    expect(page.locator("#progress-text")).to_have_text("100%")
    levels = set(page.eval_on_selector_all("#lines .line", "els => els.map(e => e.dataset.level)"))
    assert {"INFO", "DEBUG"} <= levels
    clock = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}$")  # local time with milliseconds
    expect(page.locator("#lines .line .ts").first).to_have_text(clock)
    assert "upload=bookshop" in page.url and "service=pydantic" in page.url
    if shot := os.environ.get("JOBTAIL_SCREENSHOT"):
        page.click("#show-result")
        expect(page.locator("#result-code")).to_contain_text("BaseModel")
        page.screenshot(path=shot, full_page=True)
    assert site.errors == []


def test_reload_after_the_end_replays_the_same_lines(site: Site, context: Any) -> None:
    page = open_page(context, site.url, site.errors)
    pick(page, "invoice", "dataclasses")
    page.click("#generate")
    wait_ended(page)
    before = list(zip(seqs(page), texts(page), strict=True))

    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    wait_ended(page)
    assert list(zip(seqs(page), texts(page), strict=True)) == before
    assert [seq for seq, _ in before] == list(range(1, len(before) + 1))
    expect(page.locator("#sample")).to_have_value("invoice")
    expect(page.locator("#service")).to_have_value("dataclasses")

    result = page.request.get(page.locator("#result-link").evaluate("a => a.href"))
    assert result.status == 200 and "@dataclass" in result.text()
    log = page.request.get(page.locator("#log-link").evaluate("a => a.href"))
    assert log.status == 200
    assert log.text().count("\n") == len(before) and before[-1][1] in log.text()
    page.click("#show-result")
    expect(page.locator("#result-code")).to_contain_text("@dataclass")

    # Another key with no run shows nothing; coming back shows the run again.
    page.select_option("#service", "typeddict")
    expect(page.locator("#status")).to_have_text("no run")
    expect(page.locator("#lines .line")).to_have_count(0)
    page.select_option("#service", "dataclasses")
    wait_ended(page)
    assert seqs(page) == [seq for seq, _ in before]
    assert site.errors == []


def test_second_tab_mid_run_and_after_shows_the_same_lines(gated_site: Site, context: Any) -> None:
    site, gated = gated_site, gated_site.gated
    assert gated is not None
    first = open_page(context, site.url, site.errors)
    pick(first, "petstore", "gated")
    expect(first.locator("#status")).to_have_text("no run")
    stale = open_page(context, first.url, site.errors)
    expect(stale.locator("#status")).to_have_text("no run")
    first.click("#generate")
    waiting = first.locator("#lines .line", has_text="gated: waiting for the test")
    expect(waiting).to_have_count(1)
    expect(first.locator("#status")).to_have_text("running")
    expect(first.locator("#conn")).to_have_attribute("data-state", "live")
    expect(first.locator("#generate")).to_be_disabled()
    expect(first.locator("#progress-text")).to_have_text("35%")
    mid = seqs(first)
    assert mid == list(range(1, len(mid) + 1))

    # A second tab opened mid-run replays from the first line, then follows live.
    second = open_page(context, first.url, site.errors)
    expect(second.locator("#status")).to_have_text("running")
    expect(second.locator("#lines .line", has_text="gated: waiting for the test")).to_have_count(1)
    assert seqs(second) == mid

    # A tab still showing "no run" presses Generate: the server's 409 detail reaches the user,
    # and the tab follows the active run instead.
    conflict = site.client.post("/runs/petstore/gated/generate")
    assert conflict.status_code == 409
    stale.click("#generate")
    expect(stale.locator("#error")).to_contain_text(conflict.json()["detail"])
    expect(stale.locator("#status")).to_have_text("running")
    expect(stale.locator("#lines .line", has_text="gated: waiting for the test")).to_have_count(1)

    # Messages are text: no markup runs, multi-line text is kept, a long line wraps.
    assert first.locator("#lines img, #lines script").count() == 0
    assert first.evaluate("window.__xss") is None
    assert XSS in texts(first) and MULTILINE in texts(first)
    wrapped = first.locator("#lines").evaluate("box => box.scrollWidth <= box.clientWidth")
    assert wrapped, "a very long line made the log scroll sideways"

    if shot := os.environ.get("JOBTAIL_SCREENSHOT"):
        first.screenshot(path=shot.removesuffix(".png") + "-live.png")

    # Auto-scroll follows, pauses when the user scrolls up, and resumes with "jump to latest".
    at_bottom = "el => el.scrollHeight - el.scrollTop - el.clientHeight < 24"
    assert first.locator("#lines").evaluate(at_bottom)
    first.locator("#lines").hover()
    first.mouse.wheel(0, -100_000)
    expect(first.locator("#jump")).to_be_visible()
    first.wait_for_function(f"() => {LINES}.scrollTop === 0")

    gated.gate.set()
    wait_ended(first)
    wait_ended(second)
    wait_ended(stale)
    status = site.status("petstore", "gated")
    everything = list(range(1, status["lines"] + 1))
    assert seqs(first) == everything and seqs(second) == everything and seqs(stale) == everything
    assert texts(first) == texts(second) == texts(stale)
    assert first.locator("#lines").evaluate("el => el.scrollTop") == 0
    expect(first.locator("#jump")).to_contain_text("new")
    first.click("#jump")
    expect(first.locator("#jump")).to_be_hidden()
    assert first.locator("#lines").evaluate(at_bottom)

    if shot := os.environ.get("JOBTAIL_SCREENSHOT"):
        first.locator("#lines").hover()
        first.mouse.wheel(0, -1900)  # up to the multi-line and XSS lines
        first.screenshot(path=shot.removesuffix(".png") + "-text.png")
        first.click("#jump")

    # The level filter hides lower levels on the client and says how many are shown.
    first.select_option("#level", "WARNING")
    shown = first.locator("#lines .line:visible")
    expect(shown).to_have_count(2)
    expect(first.locator("#count")).to_have_text(f"2 of {status['lines']} lines shown")
    if shot := os.environ.get("JOBTAIL_SCREENSHOT"):
        first.screenshot(path=shot.removesuffix(".png") + "-filtered.png")
    first.select_option("#level", "DEBUG")
    expect(first.locator("#count")).to_have_text(f"{status['lines']} lines")
    assert seqs(first) == everything

    # A tab opened after the end shows the same lines too.
    third = open_page(context, first.url, site.errors)
    wait_ended(third)
    assert texts(third) == texts(first)
    assert site.errors == []


def test_upload_errors_show_the_servers_detail(site: Site, context: Any) -> None:
    page = open_page(context, site.url, site.errors)
    broken = b'{"openapi": "3.0.3", "info": '
    expected = site.client.post("/uploads", files={"file": ("broken.json", broken)})
    assert expected.status_code == 422
    choose_file(page, "broken.json", broken)
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error")).to_contain_text(expected.json()["detail"])

    too_big = b'{"type": "object", "description": "' + b"a" * UPLOAD_LIMIT + b'"}'
    choose_file(page, "big.json", too_big)
    expect(page.locator("#error")).to_contain_text(f"larger than the limit of {UPLOAD_LIMIT} bytes")

    # A valid upload is selected, has no run yet, and generates like a sample.
    choose_file(page, "tiny.json", VALID_SCHEMA)
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#sample")).to_have_value(re.compile(r"^tiny-[0-9a-f]+$"))
    expect(page.locator("#status")).to_have_text("no run")
    page.select_option("#service", "msgspec")
    page.click("#generate")
    wait_ended(page)
    assert site.errors == []


def test_streams_that_end_by_window_resume_without_gap_or_duplicate(
    plugin_site: Callable[..., Site], context: Any
) -> None:
    site = plugin_site(stream_window=0.25, retry_ms=50)
    assert site.gated is not None
    page = open_page(context, site.url, site.errors)
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/logs?" in r.url else None)
    pick(page, "petstore", "gated")
    page.click("#generate")
    expect(page.locator("#lines .line", has_text="gated: waiting for the test")).to_have_count(1)
    # Two windows closed mid-run (resource timing lists a stream once its response is over).
    page.wait_for_function(
        "() => performance.getEntriesByType('resource')"
        ".filter(e => e.name.includes('/logs?')).length >= 2"
    )
    site.gated.gate.set()
    wait_ended(page)
    status = site.status("petstore", "gated")
    assert seqs(page) == list(range(1, status["lines"] + 1))
    assert len(streams) >= 3, streams
    assert site.errors == []


def test_a_stream_that_stops_for_good_is_completed_or_explained(site: Site, context: Any) -> None:
    assert site.client.post("/runs/petstore/pydantic/generate").status_code == 202
    wait_for(lambda: not site.status("petstore", "pydantic")["active"], 60, "the run never ended")
    status = site.status("petstore", "pydantic")
    url = f"{site.url}/?upload=petstore&service=pydantic"

    # A 204 (what the server answers a reconnect after the end) closes EventSource before any
    # line: the page asks the status route, finds the run over, and pages in the whole log.
    def no_content(route: Any) -> None:
        route.fulfill(status=204)

    page = open_page(context, url, site.errors, {"**/logs?*": no_content})
    wait_ended(page)
    whole = list(range(1, status["lines"] + 1))  # paged in after the end: wait for the rows
    wait_for(lambda: seqs(page) == whole, 30, "the whole log paged in after a 204")

    # A refused stream (an expired token, say) and a refused status check: the page says why.
    def refused(route: Any) -> None:
        detail = {"detail": "stream token expired: ask for a new one with the status route"}
        route.fulfill(status=401, json=detail)

    page = open_page(
        context, url, site.errors, {"**/logs?*": refused, "**/status?run_id=*": refused}
    )
    expect(page.locator("#error")).to_contain_text("The live log stopped: stream token expired")
    expect(page.locator("#conn")).to_have_attribute("data-state", "error")
    assert site.errors == []


def test_a_failed_run_shows_its_error(plugin_site: Callable[..., Site], context: Any) -> None:
    site = plugin_site()
    page = open_page(context, site.url, site.errors)
    pick(page, "invoice", "broken")
    page.click("#generate")
    wait_ended(page, "failed")
    expect(page.locator("#run-error")).to_contain_text("the broken generator broke, as it should")
    expect(page.locator("#actions")).to_be_hidden()
    last = page.locator("#lines .line").last
    expect(last).to_have_attribute("data-level", "ERROR")
    expect(last).to_contain_text("Run failed")
    assert seqs(page) == list(range(1, site.status("invoice", "broken")["lines"] + 1))
    assert site.errors == []


def test_with_auth_the_page_asks_for_a_key_then_streams_with_a_token(
    plugin_site: Callable[..., Site], context: Any
) -> None:
    site = plugin_site(
        headers={"Authorization": "Bearer k1"}, auth="apikey", api_keys="k1", secret="s" * 32
    )
    page = open_page(context, site.url, site.errors)
    expect(page.locator("#error")).to_contain_text("missing bearer token")
    expect(page.locator("#access")).to_have_attribute("open", "")
    page.fill("#api-key", "k1")
    page.locator("#api-key").blur()  # a change event, as when the user tabs away
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#error")).to_be_hidden()
    pick(page, "petstore", "typeddict")
    page.click("#generate")
    wait_ended(page)
    assert seqs(page) == list(range(1, site.status("petstore", "typeddict")["lines"] + 1))
    log = page.request.get(page.locator("#log-link").evaluate("a => a.href"))
    assert log.status == 200 and "Run succeeded" in log.text()
    assert site.errors == []


def test_the_page_works_under_a_path_prefix(
    tmp_path: Path, serve: Callable[[object], ServerThread], context: Any
) -> None:
    """As behind API Gateway's stage (/Prod/) or a reverse proxy's sub-path."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    server = serve(Starlette(routes=[Mount("/Prod", app=create_app(_settings(tmp_path)))]))
    errors: list[str] = []
    page = open_page(context, f"{server.url}/Prod/", errors)
    pick(page, "invoice", "dataclasses")
    page.click("#generate")
    wait_ended(page)
    with httpx.Client(base_url=f"{server.url}/Prod") as client:
        status = client.get("/runs/invoice/dataclasses/status").json()
    assert seqs(page) == list(range(1, status["lines"] + 1))
    assert errors == []
