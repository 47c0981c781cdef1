"""Every error leaves as JSON that says what is wrong; none leaves as a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ..store import StoreError

log = logging.getLogger("jobtail.web")


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("store error on %s: %s", request.url.path, exc)
    return JSONResponse({"detail": f"store unavailable: {exc}"}, status_code=503)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s", request.url.path)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(Exception, _unexpected)
