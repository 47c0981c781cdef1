"""Recent runs across keys, newest first: what ``jobtail runs`` lists."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ..deps import ID_PATTERN, Authorized, ServicesDep

router = APIRouter(dependencies=[Authorized])

IdFilter = Annotated[str | None, Query(pattern=ID_PATTERN)]


@router.get("/runs")
def recent_runs(
    services: ServicesDep,
    upload_id: IdFilter = None,
    service: IdFilter = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    """Runs of every key (or of one upload, one service), newest first."""
    found = services.store.list_runs(upload_id, service, limit=limit)
    return {"runs": [run.to_json() for run in found]}
