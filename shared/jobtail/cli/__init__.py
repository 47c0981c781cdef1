"""The ``jobtail`` command: each command is a thin wrapper over the library or the HTTP API.

Client commands find the server at ``--url`` / ``JOBTAIL_URL``, else at the ``JOBTAIL_HOST`` and
``JOBTAIL_PORT`` a local ``jobtail serve`` would use. Exit codes: 0 done (a followed run
succeeded), 1 a followed run failed, 2 anything else (bad input, no server, unknown outcome).
How a run is followed is in ``follow.py``; how the server is reached, in ``client.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from pydantic import ValidationError

from ..config import Settings
from ..store import StoreError
from .client import call, client_options, detail, fail, open_client, problem, server_url
from .follow import LEVEL_CHOICE, follow_options, parse_since, tail_run

__all__ = ["LEVEL_CHOICE", "main"]


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
    from ..web.app import create_app
    from ..web.serving import serve as run_server

    try:
        settings = Settings(host=host, port=port, store=store, data_dir=Path(data_dir))
        settings.check_bind()
        app = create_app(settings)
    except (ValueError, ValidationError, StoreError) as exc:
        fail(problem(exc))
    click.echo(f"jobtail: serving http://{host}:{port} (store {settings.store})", err=True)
    run_server(app, settings)


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
        parse_since(since)  # a bad value is a usage error before anything is fetched
    base = server_url(url)
    with open_client(base, api_key, read=60) as client:
        key = f"/runs/{upload_id}/{service}"
        tail_run(client, key, run_id, level, lines, since, as_json, retries, cdn)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@client_options
def upload(file: Path, url: str | None, api_key: str | None) -> None:
    """Upload a JSON Schema / OpenAPI document; print its upload id.

    \b
    Example:
      jobtail upload openapi.yaml
    """
    with open_client(server_url(url), api_key) as client, file.open("rb") as handle:
        response = call(client, "POST", "/uploads", files={"file": (file.name, handle)})
    if response.status_code != 201:
        fail(f"{response.status_code}: {detail(response)}")
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
        parse_since(since)
    key = f"/runs/{upload_id}/{service}"
    with open_client(server_url(url), api_key, read=60) as client:
        response = call(client, "POST", f"{key}/generate")
        if response.status_code != 202:
            fail(f"{response.status_code}: {detail(response)}")
        run_id = response.json()["run_id"]
        if not follow:
            click.echo(run_id)
            return
        click.echo(f"-- run {run_id}", err=True)
        tail_run(client, key, run_id, level, lines, since, as_json, retries)


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
    with open_client(server_url(url), api_key) as client:
        response = call(client, "GET", "/runs", params=params)
    if response.status_code != 200:
        fail(f"{response.status_code}: {detail(response)}")
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
    from ..store.migrate import apply_migrations

    try:
        applied = apply_migrations(url)
    except StoreError as exc:
        fail(str(exc))
    click.echo(
        f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else "")
    )


@main.command()
@click.option("--store", envvar="JOBTAIL_STORE", default="sqlite:///", show_default=True)
@click.option("--data-dir", envvar="JOBTAIL_DATA_DIR", default=".jobtail", show_default=True)
def sweep(store: str, data_dir: str) -> None:
    """Run the janitor once: fail the runs whose worker died (each with a last line saying why),
    purge finished runs past JOBTAIL_RETENTION_DAYS, remove expired Durable Streams; print what
    it did as JSON. For a store no jobtail server or scheduled function sweeps: run it from cron.

    \b
    Example (every minute, from cron):
      jobtail sweep --store postgresql://jobtail@db/jobtail
    """
    from ..janitor import sweep as sweep_store
    from ..store import from_url

    try:
        settings = Settings(store=store, data_dir=Path(data_dir))
        opened = from_url(settings.store, settings.data_dir)
    except (ValueError, ValidationError, StoreError) as exc:
        fail(problem(exc))
    try:
        result = sweep_store(
            opened,
            stale_after=settings.stale_after,
            retention_days=settings.retention_days,
            queued_after=settings.queued_timeout,
        )
    except StoreError as exc:
        fail(str(exc))
    finally:
        opened.close()
    click.echo(
        json.dumps(
            {
                "failed": result.failed,
                "purged": result.purged,
                "streams_expired": result.streams_expired,
            }
        )
    )
