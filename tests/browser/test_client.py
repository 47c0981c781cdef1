"""The browser client on its own: ``follow()`` and ``<jobtail-log>`` in plain pages that are not
jobtail's, as anyone's site (or React app) would use them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from jobtail.logger import RunLogger
from jobtail.store import RunStatus

from .conftest import LogSite, errors_of, write_run

pytestmark = pytest.mark.browser

FOLLOW_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>follow</title></head>
<body><p>Someone else's page</p>
<script type="module">
import {{ follow }} from "/static/jobtail/follow.js";
window.got = []; window.states = []; window.errors = []; window.end = null;
const params = new URLSearchParams(location.search);
window.handle = follow("{src}", {{
  token: params.get("token"),
  onLines: (lines) => window.got.push(...lines.map((line) => line.seq)),
  onState: (state) => window.states.push(state),
  onEnd: (data) => {{ window.end = data; }},
  onError: (error) => window.errors.push(error),
}});
</script></body></html>
"""

ELEMENT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>embedded log</title>
<script type="module" src="/static/jobtail/element.js"></script>
<style>jobtail-log {{ height: 420px; }}</style></head>
<body><main><h1>My app's build</h1>
<jobtail-log src="/runs/demo/job/logs" tail="50"></jobtail-log>
<p id="outcome"></p></main>
<script>
document.querySelector("jobtail-log").addEventListener("jobtail-end", (event) => {{
  document.getElementById("outcome").textContent = `run ${{event.detail.status}}`;
}});
</script></body></html>
"""


def test_an_embedded_element_shows_the_run_from_its_end(
    log_site: Callable[..., LogSite], context: Any
) -> None:
    site = log_site()
    write_run(site.store, [f"step {n}" for n in range(1, 301)] + [("WARNING", "almost done")])
    page = context.new_page()
    errors = errors_of(page)
    page.goto(site.page("element.html", ELEMENT_PAGE.format()))
    expect = _expect()
    expect(page.locator("#outcome")).to_have_text("run succeeded")
    expect(page.locator("jobtail-log #count")).to_have_text("301 lines")
    # It opens at the end: the last line is on screen, the first is not in the DOM at all.
    last = page.locator("jobtail-log .line[data-seq='301']")
    expect(last).to_be_in_viewport()
    expect(last).to_contain_text("almost done")
    expect(last).to_have_attribute("data-level", "WARNING")
    assert page.locator("jobtail-log .line[data-seq='1']").count() == 0
    assert page.locator("jobtail-log .line").count() < 120  # rows in view plus a margin
    # Scrolling to the top pages the earlier lines in from the server.
    page.locator("jobtail-log #lines").hover()
    page.mouse.wheel(0, -100_000)
    first = page.locator("jobtail-log .line[data-seq='1']")
    expect(first).to_contain_text("step 1")
    expect(page.locator("jobtail-log #jump")).to_be_visible()
    assert errors == []


def test_follow_resumes_through_dropped_connections_with_every_line_once(
    log_site: Callable[..., LogSite], context: Any
) -> None:
    """Windows end the stream every 0.3 s and the network drops for a while mid-run."""
    site = log_site(stream_window=0.3, retry_ms=50)
    run = site.store.create_run("demo", "job")
    site.store.start_run(run.run_id)
    page = context.new_page()
    errors = errors_of(page)
    page.goto(site.page("follow.html", FOLLOW_PAGE.format(src="/runs/demo/job/logs")))
    log = RunLogger(site.store, run.run_id)
    expect = _expect()

    def write(first: int, last: int) -> None:
        for n in range(first, last + 1):
            log.info(f"line {n}")

    write(1, 200)
    page.wait_for_function("() => window.got.length >= 200")
    page.wait_for_function("() => window.states.filter((s) => s === 'live').length >= 2")
    context.set_offline(True)
    writer = threading.Thread(target=write, args=(201, 400))
    writer.start()
    page.wait_for_function("() => window.states.includes('reconnecting')")
    writer.join()
    context.set_offline(False)
    write(401, 500)
    log.close()
    site.store.finish_run(run.run_id, RunStatus.SUCCEEDED)
    page.wait_for_function("() => window.end !== null")
    assert page.evaluate("window.got") == list(range(1, 501))
    assert page.evaluate("window.handle.duplicates") == 0
    end = page.evaluate("window.end")
    assert end["status"] == "succeeded" and end["last_seq"] == 500
    assert page.evaluate("window.errors") == []
    expect(page.locator("body")).to_contain_text("Someone else's page")
    assert errors == []


def test_follow_reports_a_refused_stream_once_instead_of_retrying(
    log_site: Callable[..., LogSite], context: Any
) -> None:
    site = log_site(auth="apikey", api_keys="k" * 16, secret="s" * 32)
    write_run(site.store, ["one", "two"])
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/logs" in r.url else None)
    page.goto(
        site.page("follow.html", FOLLOW_PAGE.format(src="/runs/demo/job/logs")) + "?token=bad"
    )
    page.wait_for_function("() => window.errors.length > 0")
    error = page.evaluate("window.errors[0]")
    assert error["status"] == 401 and "token" in error["detail"]
    assert page.evaluate("window.states.at(-1)") == "error"
    assert page.evaluate("window.got") == []
    settled = len(requests)
    page.wait_for_timeout(1500)  # a retry loop would keep asking; none may follow
    assert len(requests) == settled <= 3


def test_follow_stops_at_the_end_and_on_204(log_site: Callable[..., LogSite], context: Any) -> None:
    site = log_site()
    write_run(site.store, [f"l{n}" for n in range(1, 11)])
    page = context.new_page()
    page.goto(site.page("follow.html", FOLLOW_PAGE.format(src="/runs/demo/job/logs?after=10")))
    page.wait_for_function("() => window.end !== null")
    assert page.evaluate("window.got") == []  # a 204: nothing left to send, and no retry
    page.goto(site.page("follow.html", FOLLOW_PAGE.format(src="/runs/demo/job/logs")))
    page.wait_for_function("() => window.end !== null")
    assert page.evaluate("window.got") == list(range(1, 11))
    assert page.evaluate("window.end.status") == "succeeded"
    assert page.evaluate("window.states.at(-1)") == "ended"


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect
