"""A host app's own page (not jobtail's) shows a run with ``<jobtail-log>`` served by the router
under the host's prefix: over SSE, and over the run's Durable Stream (``transport="streams"``,
what a CDN caches), addressed by plain run id, let in by the run's stream token alone (the
browser sends none of the host's credentials)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.staticfiles import StaticFiles
from playwright.sync_api import expect

from jobtail.logger import RunLogger
from jobtail.store import RunStatus
from jobtail.store.sqlite import SQLiteStore

from ..conftest import ServerThread
from ..embed.hostapp import PREFIX, USER_HEADER, host_app
from .conftest import errors_of

pytestmark = pytest.mark.browser

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>someone else's page</title>
<script type="module" src="{prefix}/static/jobtail/element.js"></script>
<style>jobtail-log {{ height: 600px; }}</style></head>
<body><jobtail-log {transport} src="{prefix}/run/{run_id}/logs" token="{token}"></jobtail-log>
<p id="outcome"></p>
<script>
window.seen = 0; window.errors = [];
const log = document.querySelector("jobtail-log");
log.addEventListener("jobtail-lines", (e) => {{ window.seen = e.detail.last_seq; }});
log.addEventListener("jobtail-error", (e) => window.errors.push(e.detail));
log.addEventListener("jobtail-end", (e) => {{
  document.getElementById("outcome").textContent = `run ${{e.detail.status}}`;
}});
</script></body></html>
"""


@pytest.mark.parametrize("transport", ["sse", "streams"])
def test_the_element_on_a_host_page_follows_a_run_to_its_end(
    transport: str,
    sqlite_store: SQLiteStore,
    serve: Callable[[object], ServerThread],
    tmp_path: Path,
    context: Any,
) -> None:
    app = host_app(sqlite_store)
    pages = tmp_path / "pages"
    pages.mkdir()
    app.mount("/pages", StaticFiles(directory=pages), name="pages")
    server = serve(app)
    run = sqlite_store.create_run("import", "nightly")
    claimed = sqlite_store.claim_run(run.run_id)
    assert claimed is not None
    status = httpx.get(f"{server.url}{PREFIX}/run/{run.run_id}/status", headers=USER_HEADER)
    attribute = 'transport="streams"' if transport == "streams" else ""
    html = PAGE.format(
        prefix=PREFIX, transport=attribute, run_id=run.run_id, token=status.json()["token"]
    )
    (pages / "log.html").write_text(html)

    page = context.new_page()
    errors = errors_of(page)
    reads: list[str] = []
    page.on("request", lambda request: reads.append(request.url))
    with RunLogger(sqlite_store, run.run_id, epoch=claimed.epoch) as log:
        for n in range(1, 6):
            log.info(f"before the page {n}")
        page.goto(f"{server.url}/pages/log.html")
        page.wait_for_function("() => window.seen === 5")
        for n in range(6, 11):  # live, while the page follows
            log.info(f"while watching {n}")
        page.wait_for_function("() => window.seen === 10")  # then the last line, the end
        log.finish(RunStatus.SUCCEEDED, "done")
    expect(page.locator("#outcome")).to_have_text("run succeeded")
    assert page.evaluate("window.errors") == [] and errors == []
    streams = [url for url in reads if f"{PREFIX}/v1/stream/runs/{run.run_id}" in url]
    logs = [url for url in reads if f"{PREFIX}/run/{run.run_id}/logs?" in url]
    assert (bool(streams), bool(logs)) == (transport == "streams", transport == "sse")
