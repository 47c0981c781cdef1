"""Chromium fixtures for the browser client and viewer tests: jobtail's app under uvicorn, with
test pages served beside it (plain HTML files, as someone else's site would have them), and
runs written straight into the store."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from jobtail.config import Settings
from jobtail.services import Services
from jobtail.store import LogLine, LogStore, RunStatus
from jobtail.web.app import create_app

from ..conftest import ServerThread
from ..test_browser import CHROMIUM_ARGS, chromium_path

try:
    from playwright import sync_api
except ImportError:  # pragma: no cover - test_browser.py decides whether that is a failure
    pytest.skip("the playwright package is not installed", allow_module_level=True)

sync_api.expect.set_options(timeout=20_000)
LINES = 'document.querySelector("jobtail-log").shadowRoot.getElementById("lines")'


@dataclass
class LogSite:
    """The app plus a folder of test pages at ``/embed/``."""

    server: ServerThread
    services: Services
    pages: Path

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def store(self) -> LogStore:
        return self.services.store

    def page(self, name: str, html: str) -> str:
        (self.pages / name).write_text(html)
        return f"{self.url}/embed/{name}"


def write_run(
    store: LogStore,
    messages: Sequence[str | tuple[str, str] | tuple[str, str, dict[str, Any]]],
    *,
    key: tuple[str, str] = ("demo", "job"),
    status: RunStatus | None = RunStatus.SUCCEEDED,
    error: str | None = None,
    start: datetime | None = None,
    step: timedelta = timedelta(milliseconds=10),
) -> str:
    """A run with these lines (text, or (level, text[, fields])), finished with ``status``."""
    run = store.create_run(*key)
    store.start_run(run.run_id)
    at = start or datetime.now(UTC)
    lines = []
    for seq, item in enumerate(messages, 1):
        level, text, fields = ("INFO", item, None) if isinstance(item, str) else (*item, None)[:3]
        lines.append(LogLine(seq, at + step * seq, level, text, fields))
    for first in range(0, len(lines), 5000):
        store.append(run.run_id, lines[first : first + 5000])
    if status is not None:
        store.finish_run(run.run_id, status, error)
    return run.run_id


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Per module: Playwright's sync API runs an event loop on this thread while it is open,
    which must not outlive the browser tests (other tests call asyncio.run)."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    yield context
    context.close()


@pytest.fixture
def log_site(
    tmp_path: Path, serve: Callable[[object], ServerThread]
) -> Iterator[Callable[..., LogSite]]:
    """Start jobtail (settings overridable) with a folder of test pages mounted at /embed."""
    made: list[Services] = []
    servers: list[ServerThread] = []

    def start(**overrides: Any) -> LogSite:
        data = tmp_path / f"site{len(made)}"
        pages = data / "pages"
        pages.mkdir(parents=True)
        settings = Settings(data_dir=data, store=f"sqlite:///{data}/s.db", **overrides)
        services = Services.from_settings(settings)
        made.append(services)
        app = Starlette(
            routes=[
                Mount("/embed", app=StaticFiles(directory=pages, html=True)),
                Mount("/", app=create_app(services=services)),
            ]
        )
        servers.append(serve(app))
        return LogSite(servers[-1], services, pages)

    yield start
    for server in servers:
        server.stop()  # before the store closes under a live stream
    for services in made:
        services.close()


def errors_of(page: Any) -> list[str]:
    """Uncaught page errors, collected as they happen."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors
