"""Recent runs across keys, newest first: what ``jobtail runs`` lists."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from ..deps import ID_PATTERN, ContextDep, Routes

IdFilter = Annotated[str | None, Query(pattern=ID_PATTERN)]


def recent_runs(
    context: ContextDep,
    upload_id: IdFilter = None,
    service: IdFilter = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    """Runs of every key (or of one upload, one service), newest first."""
    found = context.store.list_runs(upload_id, service, limit=limit)
    return {"runs": [run.to_json() for run in found]}


def add_routes(routes: Routes) -> None:
    routes.add("/runs", recent_runs, name="jobtail.recent")
