"""The ``jobtail`` command: each command is a thin wrapper over the library or the HTTP API.

Client commands find the server at ``--url`` / ``JOBTAIL_URL``, else at the ``JOBTAIL_HOST`` and
``JOBTAIL_PORT`` a local ``jobtail serve`` would use. Exit codes: 0 done (a followed run
succeeded), 1 a followed run failed, 2 anything else (bad input, no server, unknown outcome).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import httpx
from httpx_sse import connect_sse
from pydantic import ValidationError

from .config import Settings
from .levels import LEVEL_NAMES
from .store import StoreError

LEVEL_CHOICE = click.Choice(LEVEL_NAMES, case_sensitive=False)
CONNECT_SECONDS = 4.0  # no answer at start is an error well within 5 s, not a minute of retries
LEVEL_STYLES: dict[str, dict[str, Any]] = {
    "DEBUG": {"dim": True},
    "INFO": {"fg": "green"},
    "WARNING": {"fg": "yellow"},
    "ERROR": {"fg": "red"},
    "CRITICAL": {"fg": "red", "bold": True, "reverse": True},
}

F = TypeVar("F", bound=Callable[..., Any])


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


def server_url(url: str | None) -> str:
    """``--url``/``JOBTAIL_URL`` if given, else where ``jobtail serve`` listens by its settings."""
    if url:
        return url.rstrip("/")
    try:
        settings = Settings()
    except ValidationError as exc:
        _fail(f"bad JOBTAIL_* setting: {exc.errors()[0]['msg']} ({exc.errors()[0]['loc']})")
    host = settings.host
    if host in ("0.0.0.0", "::", ""):  # a wildcard bind answers on loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def client_options(command: F) -> F:
    """``--url`` and ``--api-key``, the same on every command that talks to a server."""
    command = click.option(
        "--api-key", envvar="JOBTAIL_API_KEY", help="bearer key when the server has auth"
    )(command)
    return click.option(
        "--url",
        envvar="JOBTAIL_URL",
        help="server URL  [default: JOBTAIL_URL, else http://JOBTAIL_HOST:JOBTAIL_PORT]",
    )(command)


def _client(url: str, api_key: str | None, read: float = 30) -> httpx.Client:
    timeout = httpx.Timeout(read, connect=CONNECT_SECONDS)
    return httpx.Client(base_url=url, headers=_headers(api_key), timeout=timeout)


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        return client.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        _fail(f"cannot reach {client.base_url}: {exc or type(exc).__name__}")


@click.group()
@click.version_option(package_name="jobtail")
def main() -> None:
    """Live, durable logs for background jobs.

    \b
    Example (two terminals):
      jobtail serve
      jobtail generate petstore pydantic --follow
    """


@main.command()
@click.option("--host", envvar="JOBTAIL_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="JOBTAIL_PORT", type=int, default=8000, show_default=True)
@click.option("--store", envvar="JOBTAIL_STORE", default="sqlite:///", show_default=True)
@click.option("--data-dir", envvar="JOBTAIL_DATA_DIR", default=".jobtail", show_default=True)
def serve(host: str, port: int, store: str, data_dir: str) -> None:
    """Serve the API and the page. SIGTERM drains: no new runs, running jobs get
    JOBTAIL_SHUTDOWN_GRACE seconds, then fail with a line saying why; queued runs wait for the
    next start.

    Example: jobtail serve --port 8000   (then open http://127.0.0.1:8000)
    """
    from .web.app import create_app
    from .web.serving import serve as run_server

    try:
        settings = Settings(host=host, port=port, store=store, data_dir=Path(data_dir))
        settings.check_bind()
        app = create_app(settings)
    except (ValueError, ValidationError, StoreError) as exc:
        _fail(str(exc))
    click.echo(f"jobtail: serving http://{host}:{port} (store {settings.store})", err=True)
    run_server(app, settings)


def _since(value: str) -> datetime:
    """``30s``, ``10m``, ``2h``, ``1d`` ago, or an ISO 8601 time (UTC unless it says)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", value.strip())
    if match:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match[2]]
        return datetime.now(UTC) - timedelta(**{unit: float(match[1])})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is neither a duration (30s, 10m, 2h, 1d) nor an ISO time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _use_color() -> bool:
    """Colours on a terminal only, and never when NO_COLOR is set (https://no-color.org)."""
    return not os.environ.get("NO_COLOR") and sys.stdout.isatty()


def _printer(as_json: bool, since: datetime | None) -> Callable[[dict[str, Any]], None]:
    color = not as_json and _use_color()

    def show(line: dict[str, Any]) -> None:
        if since is not None and datetime.fromisoformat(line["timestamp"]) < since:
            return
        if as_json:
            click.echo(json.dumps(line, ensure_ascii=False))
            return
        level = str(line.get("log_level", ""))
        shown = f"{level:<8}"
        if color:
            shown = click.style(shown, **LEVEL_STYLES.get(level, {}))
        stamp = str(line.get("timestamp", ""))[11:23]
        click.echo(f"{stamp} {shown} {line.get('message', '')}", color=color)

    return show


@dataclass
class _Stream:
    """One run's SSE stream, read across reconnects: ``params`` name the run (never "the
    key's latest", which may be another run by the time of a reconnect) and ``last_id`` is
    the cursor, the last id seen, including the id-only event a window closes with."""

    client: httpx.Client
    path: str
    params: dict[str, str]
    show: Callable[[dict[str, Any]], None]
    last_id: str | None = None

    def read(self) -> dict[str, Any] | None:
        """One response: the ``end`` event's data ({} for a 204), or None if it closed first."""
        headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
        with connect_sse(
            self.client, "GET", self.path, params=self.params, headers=headers
        ) as source:
            response = source.response
            if response.status_code == 204:
                return {}
            if response.status_code != 200:
                response.read()
                _fail(f"{response.status_code}: {_detail(response)}")
            for event in source.iter_sse():
                if event.id:  # also an id-only event: the cursor a window closes with
                    self.last_id = event.id
                if not event.data:  # browsers do not dispatch an event with no data
                    continue
                data = json.loads(event.data)
                if event.event == "message":
                    self.show(data)
                elif event.event == "status":
                    click.echo(f"-- status: {data['status']}", err=True)
                elif event.event == "end":
                    return dict(data)
        return None


def _follow_run(
    client: httpx.Client,
    key: str,
    params: dict[str, str],
    show: Callable[[dict[str, Any]], None],
    retries: int,
) -> NoReturn:
    """Print the run's lines to its end; exit 0 if it succeeded, 1 if it failed, 2 if unknown."""
    stream = _Stream(client, f"{key}/logs", params, show)
    end: dict[str, Any] | None = None
    failures, delay = 0, 0.5
    while end is None:
        try:
            end = stream.read()
            failures, delay = 0, 0.5
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            failures += 1
            if failures >= retries:
                _fail(f"lost {client.base_url} after {failures} reconnects: {reason}")
            click.echo(f"-- connection lost ({reason}); resuming after {stream.last_id}", err=True)
            time.sleep(delay)  # back-off before reconnecting, not synchronisation
            delay = min(delay * 2, 10)
    if not end:  # 204: the run had already ended; ask how
        status = _call(client, "GET", f"{key}/status", params=_only(params, "run_id"))
        if status.status_code != 200:
            _fail(
                "the run ended but its outcome cannot be read: "
                f"{status.status_code}: {_detail(status)}"
            )
        end = status.json()
    outcome = end.get("status")
    click.echo(f"-- run {outcome}", err=True)
    if outcome == "succeeded":
        sys.exit(0)
    if outcome == "failed":
        sys.exit(1)
    _fail(f"the run ended with an unknown outcome {outcome!r}")


def _only(params: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in params.items() if k in names}


def follow_options(command: F) -> F:
    """What to show of a run: the same on ``tail`` and ``generate --follow``."""
    for option in reversed(
        [
            click.option("--level", type=LEVEL_CHOICE, help="minimum severity to show"),
            click.option(
                "-n",
                "--lines",
                type=click.IntRange(min=0),
                help="start N lines back (0: only new lines; default: from the first)",
            ),
            click.option(
                "--since", metavar="WHEN", help="only lines from then on: 30s, 10m, 2h, 1d, ISO"
            ),
            click.option("--json", "as_json", is_flag=True, help="print lines as JSON Lines"),
            click.option(
                "--retries", type=int, default=10, show_default=True, help="reconnects in a row"
            ),
        ]
    ):
        command = option(command)
    return command


def _tail(
    client: httpx.Client,
    key: str,
    run_id: str | None,
    level: str | None,
    lines: int | None,
    since: str | None,
    as_json: bool,
    retries: int,
    cdn: bool = False,
) -> NoReturn:
    moment = _since(since) if since else None
    try:  # one short call first: no answer here is an error now, not a minute of retries
        status = client.get(
            f"{key}/status", params={"run_id": run_id} if run_id else {}, timeout=CONNECT_SECONDS
        )
    except httpx.TransportError as exc:
        _fail(f"no jobtail server answers at {client.base_url}: {exc or type(exc).__name__}")
    if status.status_code != 200:
        _fail(f"{status.status_code}: {_detail(status)}")
    run = status.json()
    if cdn:
        _follow_stream(client, key, run, level, lines, _printer(as_json, moment))
    params = {"run_id": run["run_id"]} | ({"level": level.upper()} if level else {})
    if lines:
        params["tail"] = str(lines)
    elif lines == 0:  # only what comes next
        params["after"] = str(run["last_seq"])
    _follow_run(client, key, params, _printer(as_json, moment), retries)


def _follow_stream(
    client: httpx.Client,
    key: str,
    run: dict[str, Any],
    level: str | None,
    lines: int | None,
    show: Callable[[dict[str, Any]], None],
) -> NoReturn:
    """Read the run's Durable Stream (catch-up, then long-poll, echoing the cursor): requests a
    CDN can cache and collapse. The level filter applies here; ids keep the global seq."""
    from .store.base import level_number
    from .streams.base import format_offset
    from .streams.client import StreamReadError, follow

    skip = max(0, run["last_seq"] - lines) if lines is not None else 0
    floor = level_number(level) if level else 0
    api_key = client.headers.get("authorization", "").removeprefix("Bearer ") or None
    url = f"{str(client.base_url).rstrip('/')}/v1/stream/runs/{run['run_id']}"
    try:
        for line in follow(
            url, offset=format_offset(skip), token=run.get("token"), api_key=api_key
        ):
            if level_number(str(line.get("log_level", "INFO"))) >= floor:
                show(line)
    except StreamReadError as exc:
        _fail(f"the run's stream refused the read: {exc}")
    status = _call(client, "GET", f"{key}/status", params={"run_id": run["run_id"]})
    if status.status_code != 200:
        _fail(f"the run ended but its outcome cannot be read: {status.status_code}")
    outcome = status.json().get("status")
    click.echo(f"-- run {outcome}", err=True)
    sys.exit({"succeeded": 0, "failed": 1}.get(str(outcome), 2))


@main.command()
@click.argument("upload_id")
@click.argument("service")
@click.option("--run-id", help="an older run of the key (default: the latest)")
@click.option(
    "--cdn",
    is_flag=True,
    help="read the run's Durable Stream (catch-up, then long-poll): cacheable by a CDN",
)
@follow_options
@client_options
def tail(
    upload_id: str,
    service: str,
    run_id: str | None,
    cdn: bool,
    level: str | None,
    lines: int | None,
    since: str | None,
    as_json: bool,
    retries: int,
    url: str | None,
    api_key: str | None,
) -> None:
    """Follow a run in the terminal; exit 0 if it succeeded, 1 if it failed.

    Resumes with Last-Event-ID after a network loss, so no line is printed twice. Levels are
    coloured on a terminal (not when piped, nor with NO_COLOR set). With --cdn it reads the
    run's Durable Stream instead of SSE (what a CDN in front of the server caches), merging
    by seq so a repeat from a cache is never printed twice.

    \b
    Example:
      jobtail tail petstore pydantic --level WARNING -n 50
      JOBTAIL_URL=https://d111.cloudfront.net jobtail tail petstore pydantic --cdn
    """
    if since:
        _since(since)  # a bad value is a usage error before anything is fetched
    base = server_url(url)
    with _client(base, api_key, read=60) as client:
        key = f"/runs/{upload_id}/{service}"
        _tail(client, key, run_id, level, lines, since, as_json, retries, cdn)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@client_options
def upload(file: Path, url: str | None, api_key: str | None) -> None:
    """Upload a JSON Schema / OpenAPI document; print its upload id.

    \b
    Example:
      jobtail upload openapi.yaml
    """
    with _client(server_url(url), api_key) as client, file.open("rb") as handle:
        response = _call(client, "POST", "/uploads", files={"file": (file.name, handle)})
    if response.status_code != 201:
        _fail(f"{response.status_code}: {_detail(response)}")
    click.echo(response.json()["upload_id"])


@main.command()
@click.argument("upload_id")
@click.argument("service")
@click.option("--follow", "-f", is_flag=True, help="then follow the run, as `jobtail tail` does")
@follow_options
@client_options
def generate(
    upload_id: str,
    service: str,
    follow: bool,
    level: str | None,
    lines: int | None,
    since: str | None,
    as_json: bool,
    retries: int,
    url: str | None,
    api_key: str | None,
) -> None:
    """Start a run and print its run id; with --follow, print its lines until it ends.

    With --follow the exit code is the run's: 0 succeeded, 1 failed.

    \b
    Example:
      jobtail generate petstore pydantic --follow --level INFO
    """
    if since:
        _since(since)
    key = f"/runs/{upload_id}/{service}"
    with _client(server_url(url), api_key, read=60) as client:
        response = _call(client, "POST", f"{key}/generate")
        if response.status_code != 202:
            _fail(f"{response.status_code}: {_detail(response)}")
        run_id = response.json()["run_id"]
        if not follow:
            click.echo(run_id)
            return
        click.echo(f"-- run {run_id}", err=True)
        _tail(client, key, run_id, level, lines, since, as_json, retries)


@main.command()
@click.argument("upload_id", required=False)
@click.option("--service", help="only this service's runs")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print runs as JSON Lines")
@client_options
def runs(
    upload_id: str | None,
    service: str | None,
    limit: int,
    as_json: bool,
    url: str | None,
    api_key: str | None,
) -> None:
    """List recent runs, newest first: of every upload, or of one.

    \b
    Example:
      jobtail runs petstore --service pydantic --limit 5
    """
    params: dict[str, str | int] = {"limit": limit}
    if upload_id:
        params["upload_id"] = upload_id
    if service:
        params["service"] = service
    with _client(server_url(url), api_key) as client:
        response = _call(client, "GET", "/runs", params=params)
    if response.status_code != 200:
        _fail(f"{response.status_code}: {_detail(response)}")
    found = response.json()["runs"]
    for run in found:
        if as_json:
            click.echo(json.dumps(run, ensure_ascii=False))
            continue
        created = str(run["created_at"])[:19].replace("T", " ")
        click.echo(
            f"{run['run_id']}  {created}  {run['status']:<9}  {run['lines']:>7} lines  "
            f"{run['upload_id']}/{run['service_name']}"
        )
    if not found and not as_json:
        click.echo("no runs", err=True)


@main.command()
@click.argument("url", envvar="JOBTAIL_STORE")
def migrate(url: str) -> None:
    """Apply the SQL migrations to a PostgreSQL database (safe to run twice).

    \b
    Example:
      jobtail migrate postgresql://postgres@localhost/jobtail
    """
    from .store.migrate import apply_migrations

    try:
        applied = apply_migrations(url)
    except StoreError as exc:
        _fail(str(exc))
    click.echo(
        f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else "")
    )
