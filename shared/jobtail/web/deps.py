"""Request dependencies as ``Annotated`` aliases, so routes stay one-liners over the core."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request

from ..config import Settings
from ..services import Services
from ..tail import Tailer
from .auth import AuthError, check_bearer, check_stream_token

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ID_HELP = "letters, digits, '.', '_' or '-', starting with a letter or digit, at most 128"


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_tailer(request: Request) -> Tailer:
    tailer: Tailer = request.app.state.tailer
    return tailer


class StreamGate:
    """Caps concurrent SSE streams per process; over the cap a client gets a 503 to retry."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def acquire(self) -> bool:
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1


def get_gate(request: Request) -> StreamGate:
    gate: StreamGate = request.app.state.streams
    return gate


def require_key(
    services: Annotated[Services, Depends(get_services)],
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    try:
        check_bearer(services.settings, authorization)
    except AuthError as exc:
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from exc


def authorize_run_read(
    settings: Settings, run_id: str | None, authorization: str | None, token: str | None
) -> None:
    """Reads of one run's logs or result: a bearer key, or that run's stream token (links and
    EventSource cannot send headers). Called before the run is looked up (``run_id=None``:
    checks a key, so strangers learn nothing of which runs exist) and after (checks a token)."""
    if settings.auth == "none":
        return
    try:
        if token is None:
            check_bearer(settings, authorization)
        elif run_id is not None:
            check_stream_token(settings, run_id, token)
    except AuthError as exc:
        raise HTTPException(401, str(exc)) from exc


ServicesDep = Annotated[Services, Depends(get_services)]
TailerDep = Annotated[Tailer, Depends(get_tailer)]
GateDep = Annotated[StreamGate, Depends(get_gate)]
Authorized = Depends(require_key)
UploadId = Annotated[str, Path(pattern=ID_PATTERN, description=ID_HELP)]
ServiceName = Annotated[str, Path(pattern=ID_PATTERN, description="a generator name")]
