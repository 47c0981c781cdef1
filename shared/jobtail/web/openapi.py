"""The OpenAPI document says what the API really answers (checked by schemathesis).

FastAPI documents only the success and its own list-shaped 422; jobtail's routes also answer
JSON errors ``{"detail": "..."}`` (401 without a key, 403 for a run's write token, 404 for an
unknown key or run, 409 while a run is active, 413 for a large upload, 503 when the store is
down) and a string ``detail`` on its own 422s. ``document_errors`` adds those to every
operation, narrows ``Last-Event-ID`` and ``generate``'s service to what is accepted, and
``AllowMiddleware`` gives a 405 the ``Allow`` header of every route at that path, not just the
first one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .sse import CURSOR_PATTERN

__all__ = ["AllowMiddleware", "document_errors"]

ERROR = {
    "type": "object",
    "properties": {"detail": {"title": "Detail"}},
    "required": ["detail"],
    "title": "Error",
}
PUBLIC = {"/healthz", "/openapi.json"}
EXPORTS = {  # logs/final?format=jsonl|text (web/export.py)
    "application/x-ndjson": {"schema": {"type": "string"}},
    "text/plain": {"schema": {"type": "string"}},
}


def _error(description: str) -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _responses(path: str, method: str) -> dict[str, dict[str, Any]]:
    found = {"503": _error("the store is unavailable")}
    if path not in PUBLIC:
        found["401"] = _error("no key, a wrong key, or a token for another run")
        found["403"] = _error("a run's write token: it writes that run's stream, nothing else")
    if "{" in path:
        found["404"] = _error("no such upload, key or run")
    if path.endswith(("/generate", "/result", "/write-token")) or (
        path.endswith("/runs") and method == "post"
    ):
        found["409"] = _error("a run of the key is active")
    if path == "/uploads" and method == "post":
        found["413"] = _error("the upload is larger than the limit")
        found["400"] = _error("the multipart body cannot be parsed")
    if method == "get" and path.endswith("/logs"):
        found["204"] = {"description": "the run ended and the cursor is at its end"}
        found["503"] = _error("the store is down, or too many open streams")
    return found


def document_errors(app: FastAPI, services: Callable[[], Iterable[str]]) -> None:
    """Wrap ``app.openapi`` so the document lists the error answers (see the module doc)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = build()
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        schemas["Error"] = ERROR
        if "HTTPValidationError" in schemas:  # our own 422s carry a sentence, not a list
            detail = schemas["HTTPValidationError"]["properties"]["detail"]
            schemas["HTTPValidationError"]["properties"]["detail"] = {
                "anyOf": [{"type": "string"}, detail],
                "title": "Detail",
            }
        for path, operations in spec.get("paths", {}).items():
            for method, operation in operations.items():
                answers = operation.setdefault("responses", {})
                for code, answer in _responses(path, method).items():
                    answers.setdefault(code, answer)
                if method == "get" and path.endswith("/logs/final") and "200" in answers:
                    answers["200"].setdefault("content", {}).update(EXPORTS)
                for parameter in operation.get("parameters", []):
                    _narrow(parameter, path, services)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def _narrow(parameter: dict[str, Any], path: str, services: Callable[[], Iterable[str]]) -> None:
    schema = parameter.get("schema", {})
    if parameter.get("in") == "header" and parameter.get("name") == "last-event-id":
        parameter["schema"] = {"type": "string", "pattern": CURSOR_PATTERN, "title": "Cursor"}
    if path.endswith("/generate") and parameter.get("name") == "service":
        schema["enum"] = sorted(services())


class AllowMiddleware:
    """A 405 names every documented method of the path (routes split by method each know only
    their own, so Starlette's ``Allow`` named one)."""

    def __init__(self, app: ASGIApp, spec: Callable[[], dict[str, Any]]) -> None:
        self.app, self.spec = app, spec
        self._paths: list[tuple[re.Pattern[str], str]] | None = None

    def allowed(self, path: str) -> set[str]:
        if self._paths is None:
            self._paths = [
                (re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(t)) + "$"), t)
                for t in self.spec().get("paths", {})
            ]
        paths = self.spec()["paths"]
        found = {m.upper() for rx, t in self._paths if rx.match(path) for m in paths[t]}
        return found | ({"HEAD"} if "GET" in found else set())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_allow(message: Message) -> None:
            start = message["type"] == "http.response.start"
            if start and message["status"] == 405 and (methods := self.allowed(scope["path"])):
                MutableHeaders(scope=message)["allow"] = ", ".join(sorted(methods))
            await send(message)

        await self.app(scope, receive, send_with_allow)
