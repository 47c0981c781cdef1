"""Request dependencies as ``Annotated`` aliases, so routes stay one-liners over the core.

Routes find what they share (store, settings, tail hub, stream gate) through the router that
built them, not through ``app.state``: a host app may mount a jobtail router beside its own
routes, under any prefix, with its own auth. ``Context`` is that shared part; the router's
route class carries it (``route.jobtail``), and ``Routes`` adds each route with the host's
auth, or with a stream-token alternative for the routes EventSource and links reach.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request
from fastapi.params import Depends as DependsParam
from fastapi.routing import APIRoute

from ..config import Settings
from ..services import Services
from ..store import LogStore
from ..streams import Streams
from ..tail import Tailer
from .auth import AuthError, ScopeError, challenge, check_bearer, check_stream_token

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ID_HELP = "letters, digits, '.', '_' or '-', starting with a letter or digit, at most 128"


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


@dataclass(eq=False)
class Context:
    """What the routes of one jobtail router share. ``services`` only for jobtail's own job
    routes (uploads, generate, result); the read routes need the store alone. ``streams``
    answers the Durable Streams reads (run logs; jobtail's own app adds generic streams).
    ``private``: reads let in by the host's auth (or jobtail's keys) are per-user, so their
    ``Cache-Control`` says ``private``; a stream token's reads stay ``public``."""

    store: LogStore
    settings: Settings
    tailer: Tailer
    gate: StreamGate
    streams: Streams
    services: Services | None = None
    private: bool = False

    @property
    def tokens(self) -> bool:
        """Whether stream tokens are handed out and accepted: with jobtail's own keys, or
        when a host app gave a secret to sign them."""
        return self.settings.auth != "none" or self.settings.secret is not None


def get_context(request: Request) -> Context:
    """The context of the jobtail router whose route answers (else the app's own)."""
    context = getattr(request.scope.get("route"), "jobtail", None)
    if context is None:
        context = request.app.state.jobtail
    assert isinstance(context, Context)
    return context


ContextDep = Annotated[Context, Depends(get_context)]


def get_services(context: ContextDep) -> Services:
    assert context.services is not None, "job routes are only added with Services"
    return context.services


def get_tailer(context: ContextDep) -> Tailer:
    return context.tailer


RUN_STREAM = "/v1/stream/runs/{run_id}"


def require_key(
    context: ContextDep, request: Request, authorization: Annotated[str | None, Header()] = None
) -> None:
    """jobtail's own bearer keys (a host app passes its own auth dependencies instead). A run's
    write token is a known credential without the right (403), except for a HEAD of its own
    run's stream: its producer looks up the run's epoch there."""
    try:
        check_bearer(context.settings, authorization)
    except ScopeError as exc:
        route = getattr(request.scope.get("route"), "path", "")
        own = request.path_params.get("run_id") == exc.run_id and route.endswith(RUN_STREAM)
        if request.method == "HEAD" and own:
            return
        raise HTTPException(
            403, str(exc), headers={"WWW-Authenticate": challenge(403, str(exc))}
        ) from exc
    except AuthError as exc:  # with the reason when a credential came (a HEAD has no body)
        scheme = challenge(401, str(exc)) if authorization else "Bearer"
        raise HTTPException(401, str(exc), headers={"WWW-Authenticate": scheme}) from exc


def check_token(context: Context, run_id: str, token: str | None) -> None:
    """A request that came with ``?token=`` skipped the host's auth: the token must then be
    valid for this very run (checked after the lookup, as the token names a run)."""
    if token is None or not context.tokens:
        return
    try:
        check_stream_token(context.settings, run_id, token)
    except AuthError as exc:
        raise HTTPException(401, str(exc)) from exc


ServicesDep = Annotated[Services, Depends(get_services)]
TailerDep = Annotated[Tailer, Depends(get_tailer)]
Authorized = Depends(require_key)
UploadId = Annotated[str, Path(pattern=ID_PATTERN, description=ID_HELP)]
ServiceName = Annotated[str, Path(pattern=ID_PATTERN, description="a generator name")]
RunIdPath = Annotated[str, Path(pattern=ID_PATTERN, description="a run id")]
RunIdQuery = Annotated[str | None, Query(pattern=ID_PATTERN, description="an older run of the key")]
TokenQuery = Annotated[str | None, Query(description="the run's stream token (from status)")]


@dataclass(frozen=True)
class Routes:
    """Adds routes to one router: every route behind ``auth`` (the host's dependencies);
    ``readable`` ones also answer a request carrying a stream token without it, since
    EventSource and download links cannot send the host's headers."""

    router: APIRouter
    auth: Sequence[DependsParam]
    token_route: type[APIRoute] | None

    def add(self, path: str, endpoint: Callable[..., Any], method: str = "GET", **kw: Any) -> None:
        self.router.add_api_route(
            path, endpoint, methods=[method], dependencies=list(self.auth), **kw
        )

    def readable(self, path: str, endpoint: Callable[..., Any], **kw: Any) -> None:
        """``method="HEAD"`` for a HEAD route (GET otherwise)."""
        method: str = kw.pop("method", "GET")
        if self.token_route is not None:
            self.router.add_api_route(
                path,
                endpoint,
                methods=[method],
                route_class_override=self.token_route,
                **{**kw, "include_in_schema": False},
            )
        self.add(path, endpoint, method, **kw)
