"""Talking to a jobtail server from the command line: where it is, one client, clear failures.

Every failure is a message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click
import httpx
from pydantic import ValidationError

from ..config import Settings

CONNECT_SECONDS = 4.0  # no answer at start is an error well within 5 s, not a minute of retries

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"jobtail: {message}", err=True)
    sys.exit(code)


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text or response.reason_phrase


def problem(exc: Exception) -> str:
    """One line for a bad setting (pydantic's message spans several) or any other error."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"bad JOBTAIL_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
    return str(exc)


def server_url(url: str | None) -> str:
    """``--url``/``JOBTAIL_URL`` if given, else where ``jobtail serve`` listens by its settings."""
    if url:
        return url.rstrip("/")
    try:
        settings = Settings()
    except ValidationError as exc:
        fail(problem(exc))
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


def open_client(url: str, api_key: str | None, read: float = 30) -> httpx.Client:
    timeout = httpx.Timeout(read, connect=CONNECT_SECONDS)
    return httpx.Client(base_url=url, headers=_headers(api_key), timeout=timeout)


def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        return client.request(method, path, **kwargs)
    except httpx.TransportError as exc:
        fail(f"cannot reach {client.base_url}: {exc or type(exc).__name__}")
