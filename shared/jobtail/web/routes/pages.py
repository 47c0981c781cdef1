"""The viewer page and the health check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from ...store import StoreError
from ..deps import ServicesDep

router = APIRouter()
STATIC = Path(__file__).resolve().parent.parent / "static"


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


@router.get("/healthz")
def healthz(services: ServicesDep) -> Any:
    try:
        services.store.check()
    except StoreError as exc:
        raise HTTPException(503, f"store unavailable: {exc}") from exc
    return {"status": "ok"}
