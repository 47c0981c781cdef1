"""The page "behind a CDN": ``<jobtail-log transport="streams">`` reads a run through its Durable
Stream (catch-up, then long-poll echoing the cursor), every request going through the caching
proxy of tests/streams (it honours Cache-Control and collapses identical concurrent misses, as a
CDN does). Each viewer is its own browser context (its own HTTP cache), as distinct people are."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from jobtail.config import Settings
from jobtail.logger import RunLogger
from jobtail.services import Services
from jobtail.store import RunStatus
from jobtail.web.app import create_app
from jobtail.web.auth import make_stream_token

from ..conftest import ServerThread
from ..streams.proxy import CachingProxy, Stored
from .conftest import LogSite, errors_of, write_run

pytestmark = pytest.mark.browser

LINES = 20
KEY = "k" * 16
AUTH = {"auth": "apikey", "api_keys": KEY, "secret": "s" * 32}

ELEMENT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>behind a CDN</title>
<script type="module" src="/static/jobtail/element.js"></script>
<style>jobtail-log {{ height: 700px; }}</style></head>
<body><jobtail-log transport="streams" src="{src}" token="{token}"></jobtail-log>
<p id="outcome"></p>
<script>
window.seen = 0; window.states = []; window.errors = [];
const log = document.querySelector("jobtail-log");
log.addEventListener("jobtail-lines", (e) => {{ window.seen = e.detail.last_seq; }});
log.addEventListener("jobtail-state", (e) => window.states.push(e.detail.state));
log.addEventListener("jobtail-error", (e) => window.errors.push(e.detail));
log.addEventListener("jobtail-end", (e) => {{
  document.getElementById("outcome").textContent = `run ${{e.detail.status}}`;
}});
</script></body></html>
"""

FOLLOW_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>follow</title></head><body>
<script type="module">
import {{ follow }} from "/static/jobtail/follow.js";
window.got = []; window.errors = []; window.states = []; window.end = null;
window.handle = follow("{src}", {{
  transport: "streams", token: "{token}", after: {after}, retryMs: 50,
  onLines: (lines) => window.got.push(...lines.map((line) => line.seq)),
  onState: (state) => window.states.push(state),
  onEnd: (data) => {{ window.end = data; }},
  onError: (error) => window.errors.push(error),
}});
</script></body></html>
"""


class CountingProxy(CachingProxy):
    """The caching proxy, counting what reaches the origin per kind of request."""

    stream_reads: int = 0
    other: int = 0

    async def _origin(self, scope: dict[str, Any], receive: Any, headers: dict[str, str]) -> Stored:
        if scope["path"].startswith("/v1/stream/"):
            self.stream_reads += 1
        else:
            self.other += 1
        return await super()._origin(scope, receive, headers)


@pytest.fixture
def log_site(
    tmp_path: Path, serve: Callable[[object], ServerThread]
) -> Iterator[Callable[..., LogSite]]:
    """conftest's site, with the app's lifespan run (a Mount alone skips it, and the Durable
    Streams routes open their storage there)."""
    made: list[Services] = []
    servers: list[ServerThread] = []

    def start(**overrides: Any) -> LogSite:
        data = tmp_path / f"site{len(made)}"
        pages = data / "pages"
        pages.mkdir(parents=True)
        settings = Settings(data_dir=data, store=f"sqlite:///{data}/s.db", **overrides)
        services = Services.from_settings(settings)
        made.append(services)
        app = create_app(services=services)

        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            async with app.router.lifespan_context(app):
                yield

        site = Starlette(
            routes=[
                Mount("/embed", app=StaticFiles(directory=pages, html=True)),
                Mount("/", app=app),
            ],
            lifespan=lifespan,
        )
        servers.append(serve(site))
        return LogSite(servers[-1], services, pages)

    yield start
    for server in servers:
        server.stop()  # before the store closes under a live stream
    for services in made:
        services.close()


@pytest.fixture
def behind_proxy() -> Iterator[Callable[[LogSite], tuple[CountingProxy, str]]]:
    fronts: list[ServerThread] = []

    def start(site: LogSite) -> tuple[CountingProxy, str]:
        proxy = CountingProxy(site.url)
        front = ServerThread(proxy)
        front.server.config.timeout_keep_alive = 75
        fronts.append(front.start())
        return proxy, front.url

    yield start
    for front in fronts:
        front.stop()


@pytest.mark.parametrize("viewers", [1, 3])
def test_viewers_behind_a_cache_see_every_line_once_and_cost_the_origin_the_same(
    log_site: Callable[..., LogSite],
    behind_proxy: Callable[[LogSite], tuple[CountingProxy, str]],
    browser: Any,
    viewers: int,
    record_property: Callable[[str, object], None],
) -> None:
    site = log_site(long_poll_seconds=10, **AUTH)
    proxy, front = behind_proxy(site)
    run = site.store.create_run("demo", "job")
    site.store.start_run(run.run_id)
    log = RunLogger(site.store, run.run_id)
    log.info("line 1")
    token = make_stream_token(site.services.settings, run.run_id)
    html = ELEMENT_PAGE.format(src=f"/runs/demo/job/logs?run_id={run.run_id}", token=token)
    url = f"{front}/embed/cdn.html"
    site.page("cdn.html", html)
    contexts = [
        browser.new_context(viewport={"width": 1000, "height": 900}) for _ in range(viewers)
    ]
    try:
        pages = [context.new_page() for context in contexts]
        errors = [errors_of(page) for page in pages]
        for page in pages:
            page.goto(url)
        for page in pages:  # every viewer at the live edge before the run goes on
            page.wait_for_function("() => window.seen >= 1 && window.states.includes('live')")
        for n in range(2, LINES + 1):
            log.info(f"line {n}")
            for page in pages:
                page.wait_for_function(f"() => window.seen >= {n}")
        log.close()
        site.store.finish_run(run.run_id, RunStatus.SUCCEEDED)
        for page in pages:
            page.wait_for_function(
                "() => document.getElementById('outcome').textContent === 'run succeeded'"
            )
        for page, seen_errors in zip(pages, errors, strict=True):
            rows = page.locator("jobtail-log .line")
            seqs = [int(s) for s in rows.evaluate_all("(rows) => rows.map((r) => r.dataset.seq)")]
            assert seqs == list(range(1, LINES + 1))  # each once, in order, none missing
            for n in (1, LINES // 2, LINES):
                assert f"line {n}" in rows.nth(n - 1).inner_text()
            assert page.locator("jobtail-log #count").inner_text() == f"{LINES} lines"
            assert page.locator("jobtail-log #lines").get_attribute("data-duplicates") == "0"
            assert page.evaluate("window.errors") == []
            assert seen_errors == []
    finally:
        for context in contexts:
            context.close()
    record_property("origin_stream_reads", proxy.stream_reads)
    record_property("origin_other_requests", proxy.other)
    print(f"\n{viewers} viewer(s), {LINES} lines: {proxy.stream_reads} stream reads at the origin")
    # one read per line (the first a catch-up), the one that learns of the close, and at most
    # two spare (a long-poll that timed out, a catch-up that found the open tail): the same
    # for one viewer as for three
    assert proxy.stream_reads <= LINES + 3, proxy.stream_reads


def test_a_resumed_reader_gets_only_later_lines_and_the_outcome(
    log_site: Callable[..., LogSite],
    behind_proxy: Callable[[LogSite], tuple[CountingProxy, str]],
    context: Any,
) -> None:
    """Reads from the start repeat lines it already has (``after``): merged by seq, dropped."""
    site = log_site(**AUTH)
    _, front = behind_proxy(site)
    run_id = write_run(site.store, [f"line {n}" for n in range(1, 41)], status=RunStatus.FAILED)
    token = make_stream_token(site.services.settings, run_id)
    page = context.new_page()
    errors = errors_of(page)
    html = FOLLOW_PAGE.format(src=f"/v1/stream/runs/{run_id}", token=token, after=25)
    page.goto(site.page("follow.html", html).replace(site.url, front))
    page.wait_for_function("() => window.end !== null")
    assert page.evaluate("window.got") == list(range(26, 41))
    assert page.evaluate("window.handle.duplicates") == 25
    end = page.evaluate("window.end")
    assert end["status"] == "failed" and end["last_seq"] == 40
    assert page.evaluate("window.errors") == [] and errors == []


def test_a_refused_read_is_reported_once_and_not_retried(
    log_site: Callable[..., LogSite],
    behind_proxy: Callable[[LogSite], tuple[CountingProxy, str]],
    context: Any,
) -> None:
    site = log_site(**AUTH)
    proxy, front = behind_proxy(site)
    run_id = write_run(site.store, ["only line"])
    page = context.new_page()
    html = FOLLOW_PAGE.format(src=f"/v1/stream/runs/{run_id}", token="bad.token", after=0)
    page.goto(site.page("refused.html", html).replace(site.url, front))
    page.wait_for_function("() => window.errors.length > 0")
    error = page.evaluate("window.errors[0]")
    assert error["status"] == 401 and "token" in error["detail"]
    assert page.evaluate("window.states").count("error") == 1
    assert page.evaluate("window.got") == [] and page.evaluate("window.end") is None
    assert proxy.stream_reads == 1  # the refusal, then nothing more


def test_the_page_reads_through_the_stream_when_told_or_behind_cloudfront(
    log_site: Callable[..., LogSite],
    behind_proxy: Callable[[LogSite], tuple[CountingProxy, str]],
    context: Any,
) -> None:
    """JOBTAIL_PAGE_TRANSPORT=streams (or auto with CloudFront's X-Jobtail-Edge) puts the
    page's own log element on the stream reads; the finished run shows whole, with its end."""
    site = log_site(page_transport="streams")
    proxy, front = behind_proxy(site)
    write_run(site.store, [f"step {n}" for n in range(1, 31)], key=("demo", "pydantic"))
    page = context.new_page()
    errors = errors_of(page)
    page.goto(f"{front}/?upload=demo&service=pydantic")
    page.wait_for_function("() => document.body.dataset.ready === 'true'")
    assert page.locator("#log").get_attribute("transport") == "streams"
    expect(page.locator("#status")).to_have_text("succeeded")
    expect(page.locator("#conn")).to_have_text("ended")  # the stream's close reached
    expect(page.locator("jobtail-log #count")).to_have_text("30 lines")
    expect(page.locator("jobtail-log .line[data-seq='30']")).to_contain_text("step 30")
    assert proxy.stream_reads >= 1 and errors == []

    auto = log_site()  # the default, auto: SSE unless the page came through CloudFront
    plain = httpx.get(f"{auto.url}/").text
    edge = httpx.get(f"{auto.url}/", headers={"X-Jobtail-Edge": "1"}).text
    assert 'transport="streams"' not in plain and 'transport="streams"' in edge
    sse = log_site(page_transport="sse")
    assert (
        'transport="streams"' not in httpx.get(f"{sse.url}/", headers={"X-Jobtail-Edge": "1"}).text
    )
