"""Runs of a key ``(upload_id, service)``: start one, read its status, fetch its result."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from ...blobs import BlobNotFoundError
from ...jobs.runner import result_key
from ...store import Run, RunActiveError, RunStatus
from ...uploads import UploadNotFoundError
from ..auth import make_stream_token
from ..deps import ID_PATTERN, Authorized, ServiceName, ServicesDep, UploadId, authorize_run_read

router = APIRouter(prefix="/runs/{upload_id}/{service}")

RunIdQuery = Annotated[str | None, Query(pattern=ID_PATTERN, description="an older run of the key")]


def find_run(services: ServicesDep, upload_id: str, service: str, run_id: str | None) -> Run:
    """The key's latest run, or the named one if it belongs to the key; else a JSON 404."""
    if run_id is None:
        run = services.store.latest_run(upload_id, service)
        if run is None:
            raise HTTPException(404, f"no run for upload {upload_id!r} and service {service!r}")
        return run
    run = services.store.get_run(run_id)
    if run is None or (run.upload_id, run.service_name) != (upload_id, service):
        raise HTTPException(
            404, f"no run {run_id!r} for upload {upload_id!r} and service {service!r}"
        )
    return run


def _token(services: ServicesDep, run: Run) -> dict[str, str]:
    if services.settings.auth == "none":
        return {}
    return {"token": make_stream_token(services.settings, run.run_id)}


def _stream_url(request: Request, run: Run) -> str:
    path = request.url_for("logs", upload_id=run.upload_id, service=run.service_name)
    return f"{path.path}?run_id={run.run_id}"


@router.post("/generate", status_code=202, dependencies=[Authorized])
def generate(
    upload_id: UploadId, service: ServiceName, services: ServicesDep, request: Request
) -> Any:
    """Start a run: 202 with its id and stream URL; 409 while the key has an active run."""
    if service not in services.registry.names():
        known = ", ".join(services.registry.names())
        raise HTTPException(422, f"unknown service {service!r}; known services: {known}")
    try:
        services.uploads.load(upload_id)
    except UploadNotFoundError as exc:
        raise HTTPException(404, f"no upload {upload_id!r}: POST /uploads first") from exc
    try:
        run = services.store.create_run(upload_id, service)
    except RunActiveError as exc:
        return JSONResponse(
            {"detail": f"a run for this key is already {exc.run.status}", "run_id": exc.run.run_id},
            status_code=409,
        )
    assert services.dispatcher is not None
    try:
        services.dispatcher.submit(run)
    except Exception as exc:
        services.store.finish_run(run.run_id, RunStatus.FAILED, error=f"dispatch failed: {exc}")
        raise HTTPException(503, f"could not start the job: {exc}") from exc
    return {
        "status": "Generation started",
        "run_id": run.run_id,
        "stream_url": _stream_url(request, run),
        **_token(services, run),
    }


@router.get("/status", dependencies=[Authorized])
def status(
    upload_id: UploadId, service: ServiceName, services: ServicesDep, run_id: RunIdQuery = None
) -> Any:
    """The run's state, with ``last_event_id`` to resume a stream from."""
    run = find_run(services, upload_id, service, run_id)
    body = run.to_json()
    body["last_event_id"] = f"{run.run_id}:{run.last_seq}"
    return {**body, **_token(services, run)}


@router.get("/runs", dependencies=[Authorized])
def runs(
    upload_id: UploadId,
    service: ServiceName,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    """Every attempt for the key, newest first."""
    found = services.store.list_runs(upload_id, service, limit=limit)
    return {"runs": [run.to_json() for run in found]}


@router.get("/result", response_class=PlainTextResponse)
def result(
    upload_id: UploadId,
    service: ServiceName,
    services: ServicesDep,
    run_id: RunIdQuery = None,
    token: Annotated[str | None, Query(description="the run's stream token")] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> PlainTextResponse:
    """The generated code of the run (the latest by default)."""
    authorize_run_read(services.settings, None, authorization, token)
    run = find_run(services, upload_id, service, run_id)
    authorize_run_read(services.settings, run.run_id, authorization, token)
    if run.status is not RunStatus.SUCCEEDED:
        raise HTTPException(
            409 if run.active else 404, f"run {run.run_id} is {run.status}: no result"
        )
    try:
        code = services.blobs.get(result_key(run))
    except BlobNotFoundError as exc:
        raise HTTPException(404, f"the result of run {run.run_id} is gone") from exc
    return PlainTextResponse(code.decode(), media_type="text/x-python; charset=utf-8")
