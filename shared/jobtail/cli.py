"""The ``jobtail`` command: each command is a thin wrapper over the library or the HTTP API."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click
import httpx
from httpx_sse import connect_sse
from pydantic import ValidationError

from .config import Settings
from .levels import LEVEL_NAMES
from .store import StoreError

DEFAULT_URL = "http://127.0.0.1:8000"
LEVEL_CHOICE = click.Choice(LEVEL_NAMES, case_sensitive=False)


def _fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"jobtail: {message}", err=True)
    sys.exit(code)


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text or response.reason_phrase


@click.group()
@click.version_option(package_name="jobtail")
def main() -> None:
    """Live, durable logs for background jobs."""


@main.command()
@click.option("--host", envvar="JOBTAIL_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="JOBTAIL_PORT", type=int, default=8000, show_default=True)
@click.option("--store", envvar="JOBTAIL_STORE", default="sqlite:///", show_default=True)
@click.option("--data-dir", envvar="JOBTAIL_DATA_DIR", default=".jobtail", show_default=True)
def serve(host: str, port: int, store: str, data_dir: str) -> None:
    """Serve the API and the page.

    Example: jobtail serve --port 8000   (then open http://127.0.0.1:8000)
    """
    import uvicorn

    from .web.app import create_app

    try:
        settings = Settings(host=host, port=port, store=store, data_dir=Path(data_dir))
        settings.check_bind()
        app = create_app(settings)
    except (ValueError, ValidationError, StoreError) as exc:
        _fail(str(exc))
    click.echo(f"jobtail: serving http://{host}:{port} (store {settings.store})", err=True)
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower())


def _print_line(data: dict[str, Any]) -> None:
    stamp = str(data.get("timestamp", ""))[11:23]
    click.echo(f"{stamp} {data.get('log_level', ''):<8} {data.get('message', '')}")


def _follow(
    client: httpx.Client, path: str, params: dict[str, str], last_id: str | None
) -> tuple[str | None, dict[str, Any] | None]:
    """Read one SSE response; return the last id seen and the end event's data, if it came."""
    headers = {"Last-Event-ID": last_id} if last_id else {}
    with connect_sse(client, "GET", path, params=params, headers=headers) as source:
        if source.response.status_code == 204:
            return last_id, {}
        if source.response.status_code != 200:
            source.response.read()
            _fail(f"{source.response.status_code}: {_detail(source.response)}")
        for event in source.iter_sse():
            if event.id:  # also an id-only event: the cursor a window closes with
                last_id = event.id
            if not event.data:  # browsers do not dispatch an event with no data
                continue
            if event.event == "message":
                _print_line(json.loads(event.data))
            elif event.event == "status":
                data = json.loads(event.data)
                params["run_id"] = data["run_id"]  # reconnects follow this run, not the latest
                click.echo(f"-- status: {data['status']}", err=True)
            elif event.event == "end":
                return last_id, json.loads(event.data)
    return last_id, None


@main.command()
@click.argument("upload_id")
@click.argument("service")
@click.option("--url", envvar="JOBTAIL_URL", default=DEFAULT_URL, show_default=True)
@click.option("--level", type=LEVEL_CHOICE, help="minimum severity to show")
@click.option("--run-id", help="an older run of the key (default: the latest)")
@click.option("--api-key", envvar="JOBTAIL_API_KEY", help="bearer key when the server has auth")
@click.option("--retries", type=int, default=10, show_default=True, help="reconnects in a row")
def tail(
    upload_id: str,
    service: str,
    url: str,
    level: str | None,
    run_id: str | None,
    api_key: str | None,
    retries: int,
) -> None:
    """Follow a run in the terminal; exit 0 if it succeeded, 1 if it failed.

    Resumes with Last-Event-ID after a network loss, so no line is printed twice.

    Example: jobtail tail petstore pydantic --level INFO
    """
    path = f"/runs/{upload_id}/{service}/logs"
    params = {k: v for k, v in {"level": level and level.upper(), "run_id": run_id}.items() if v}
    last_id: str | None = None
    end: dict[str, Any] | None = None
    failures, delay = 0, 0.5
    timeout = httpx.Timeout(10, read=60)
    with httpx.Client(base_url=url, headers=_headers(api_key), timeout=timeout) as client:
        while end is None:
            try:
                last_id, end = _follow(client, path, params, last_id)
                failures, delay = 0, 0.5
            except httpx.TransportError as exc:
                failures += 1
                if failures >= retries:
                    _fail(f"cannot reach {url}: {exc}")
                click.echo(f"-- connection lost ({exc}); resuming after {last_id}", err=True)
                time.sleep(delay)  # back-off before reconnecting, not synchronisation
                delay = min(delay * 2, 10)
        if not end:  # 204: the run had already ended; ask how
            try:
                status = client.get(f"/runs/{upload_id}/{service}/status", params=params)
            except httpx.TransportError as exc:
                _fail(f"the run ended but its outcome cannot be read: {exc}")
            if status.status_code != 200:
                _fail(
                    "the run ended but its outcome cannot be read: "
                    f"{status.status_code}: {_detail(status)}"
                )
            end = status.json()
    outcome = end.get("status")
    click.echo(f"-- run {outcome}", err=True)
    sys.exit(0 if outcome == "succeeded" else 1)


def _post(url: str, api_key: str | None, **kwargs: Any) -> httpx.Response:
    try:
        return httpx.post(url, headers=_headers(api_key), timeout=30, **kwargs)
    except httpx.TransportError as exc:
        _fail(f"cannot reach {url}: {exc}")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--url", envvar="JOBTAIL_URL", default=DEFAULT_URL, show_default=True)
@click.option("--api-key", envvar="JOBTAIL_API_KEY")
def upload(file: Path, url: str, api_key: str | None) -> None:
    """Upload a JSON Schema / OpenAPI document; print its upload id.

    Example: jobtail upload openapi.yaml
    """
    with file.open("rb") as handle:
        response = _post(f"{url}/uploads", api_key, files={"file": (file.name, handle)})
    if response.status_code != 201:
        _fail(f"{response.status_code}: {_detail(response)}")
    click.echo(response.json()["upload_id"])


@main.command()
@click.argument("upload_id")
@click.argument("service")
@click.option("--url", envvar="JOBTAIL_URL", default=DEFAULT_URL, show_default=True)
@click.option("--api-key", envvar="JOBTAIL_API_KEY")
def generate(upload_id: str, service: str, url: str, api_key: str | None) -> None:
    """Start a run; print its run id (then `jobtail tail` it).

    Example: jobtail generate petstore pydantic
    """
    response = _post(f"{url}/runs/{upload_id}/{service}/generate", api_key)
    if response.status_code != 202:
        _fail(f"{response.status_code}: {_detail(response)}")
    click.echo(response.json()["run_id"])


@main.command()
@click.argument("url", envvar="JOBTAIL_STORE")
def migrate(url: str) -> None:
    """Apply the SQL migrations to a PostgreSQL database (safe to run twice).

    Example: jobtail migrate postgresql://postgres@localhost/jobtail
    """
    from .store.migrate import apply_migrations

    try:
        applied = apply_migrations(url)
    except StoreError as exc:
        _fail(str(exc))
    click.echo(
        f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else "")
    )
