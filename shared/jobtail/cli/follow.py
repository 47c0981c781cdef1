"""Following a run in the terminal: over SSE with Last-Event-ID across reconnects, or over its
Durable Stream (``--cdn``); the exit code is the run's outcome."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import click
import httpx
from httpx_sse import connect_sse

from ..levels import LEVEL_NAMES
from .client import CONNECT_SECONDS, F, call, detail, fail

LEVEL_CHOICE = click.Choice(LEVEL_NAMES, case_sensitive=False)
LEVEL_STYLES: dict[str, dict[str, Any]] = {
    "DEBUG": {"dim": True},
    "INFO": {"fg": "green"},
    "WARNING": {"fg": "yellow"},
    "ERROR": {"fg": "red"},
    "CRITICAL": {"fg": "red", "bold": True, "reverse": True},
}


def parse_since(value: str) -> datetime:
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
                fail(f"{response.status_code}: {detail(response)}")
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
                fail(f"lost {client.base_url} after {failures} reconnects: {reason}")
            click.echo(f"-- connection lost ({reason}); resuming after {stream.last_id}", err=True)
            time.sleep(delay)  # back-off before reconnecting, not synchronisation
            delay = min(delay * 2, 10)
    if not end:  # 204: the run had already ended; ask how
        status = call(client, "GET", f"{key}/status", params=_only(params, "run_id"))
        if status.status_code != 200:
            fail(
                "the run ended but its outcome cannot be read: "
                f"{status.status_code}: {detail(status)}"
            )
        end = status.json()
    outcome = end.get("status")
    click.echo(f"-- run {outcome}", err=True)
    if outcome == "succeeded":
        sys.exit(0)
    if outcome == "failed":
        sys.exit(1)
    fail(f"the run ended with an unknown outcome {outcome!r}")


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


def tail_run(
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
    moment = parse_since(since) if since else None
    try:  # one short call first: no answer here is an error now, not a minute of retries
        status = client.get(
            f"{key}/status", params={"run_id": run_id} if run_id else {}, timeout=CONNECT_SECONDS
        )
    except httpx.TransportError as exc:
        fail(f"no jobtail server answers at {client.base_url}: {exc or type(exc).__name__}")
    if status.status_code != 200:
        fail(f"{status.status_code}: {detail(status)}")
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
    from ..store.base import level_number
    from ..streams.base import format_offset
    from ..streams.client import StreamReadError, follow

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
        fail(f"the run's stream refused the read: {exc}")
    status = call(client, "GET", f"{key}/status", params={"run_id": run["run_id"]})
    if status.status_code != 200:
        fail(f"the run ended but its outcome cannot be read: {status.status_code}")
    outcome = status.json().get("status")
    click.echo(f"-- run {outcome}", err=True)
    sys.exit({"succeeded": 0, "failed": 1}.get(str(outcome), 2))
