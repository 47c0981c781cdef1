"""Runs: their status and attempts (read routes, for any host app), and jobtail's own job
routes: start a run of a generator, fetch its result, or queue a run for a worker elsewhere
that logs into it over HTTP with only the run's write token.

A run is addressed by its key ``(upload_id, service)`` (the latest run, or ``?run_id=`` an
older one of the key) or by its plain id under ``/run/{run_id}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from ...blobs import BlobNotFoundError
from ...jobs.runner import result_key
from ...store import LogStore, Run, RunActiveError, RunStatus
from ...uploads import UploadNotFoundError
from ..auth import make_stream_token, make_write_token
from ..deps import (
    Context,
    ContextDep,
    Routes,
    RunIdPath,
    RunIdQuery,
    ServiceName,
    ServicesDep,
    TokenQuery,
    UploadId,
    check_token,
)

KEY = "/runs/{upload_id}/{service}"
RUN = "/run/{run_id}"


@dataclass(frozen=True, slots=True)
class RunRef:
    """Which run a request names: a run id, a key, or both (the run must belong to the key)."""

    run_id: str | None
    key: tuple[str, str] | None = None

    def named(self, run_id: str) -> RunRef:
        """The same address for another run (a Last-Event-ID names one)."""
        if self.key is None and run_id != self.run_id:
            raise HTTPException(422, f"Last-Event-ID names run {run_id!r}, not {self.run_id!r}")
        return RunRef(run_id, self.key)


def by_key(upload_id: UploadId, service: ServiceName, run_id: RunIdQuery = None) -> RunRef:
    return RunRef(run_id, (upload_id, service))


def by_id(run_id: RunIdPath) -> RunRef:
    return RunRef(run_id)


KeyRef = Annotated[RunRef, Depends(by_key)]
IdRef = Annotated[RunRef, Depends(by_id)]


def find_run(store: LogStore, ref: RunRef) -> Run:
    """The run a request names; else a JSON 404 that says what was looked for."""
    if ref.run_id is None:
        assert ref.key is not None
        run = store.latest_run(*ref.key)
        if run is None:
            raise HTTPException(404, f"no run for upload {ref.key[0]!r} and service {ref.key[1]!r}")
        return run
    run = store.get_run(ref.run_id)
    if ref.key is None:
        if run is None:
            raise HTTPException(404, f"no run {ref.run_id!r}")
        return run
    if run is None or (run.upload_id, run.service_name) != ref.key:
        upload_id, service = ref.key
        raise HTTPException(
            404, f"no run {ref.run_id!r} for upload {upload_id!r} and service {service!r}"
        )
    return run


def _token(context: Context, run: Run) -> dict[str, str]:
    if not context.tokens:
        return {}
    return {"token": make_stream_token(context.settings, run.run_id)}


def _write_token(context: Context, run: Run) -> dict[str, Any]:
    if not context.tokens:
        return {}
    ttl = context.settings.write_token_ttl
    return {"write_token": make_write_token(context.settings, run.run_id), "expires_in": ttl}


def _status(context: Context, ref: RunRef) -> Any:
    run = find_run(context.store, ref)
    body = run.to_json()
    body["last_event_id"] = f"{run.run_id}:{run.last_seq}"
    return {**body, **_token(context, run)}


def status(ref: KeyRef, context: ContextDep) -> Any:
    """The run's state, with ``last_event_id`` to resume a stream from."""
    return _status(context, ref)


def run_status(ref: IdRef, context: ContextDep) -> Any:
    """The run's state, with ``last_event_id`` to resume a stream from."""
    return _status(context, ref)


def runs(
    upload_id: UploadId,
    service: ServiceName,
    context: ContextDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    """Every attempt for the key, newest first."""
    found = context.store.list_runs(upload_id, service, limit=limit)
    return {"runs": [run.to_json() for run in found]}


def add_read_routes(routes: Routes) -> None:
    routes.add(f"{KEY}/status", status, name="jobtail.status")
    routes.add(f"{KEY}/runs", runs, name="jobtail.runs")
    routes.add(f"{RUN}/status", run_status, name="jobtail.run_status")


def already_active(exc: RunActiveError) -> JSONResponse:
    """409 naming the run that holds the key, so a client can follow it instead."""
    return JSONResponse(
        {"detail": f"a run for this key is already {exc.run.status}", "run_id": exc.run.run_id},
        status_code=409,
    )


# -- jobtail's own job: generate code from an upload --------------------------------------


def _stream_url(request: Request, run: Run) -> str:
    path = request.url_for("logs", upload_id=run.upload_id, service=run.service_name)
    return f"{path.path}?run_id={run.run_id}"


def generate(
    upload_id: UploadId,
    service: ServiceName,
    context: ContextDep,
    services: ServicesDep,
    request: Request,
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
        return already_active(exc)
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
        **_token(context, run),
    }


def result(
    ref: KeyRef, context: ContextDep, services: ServicesDep, token: TokenQuery = None
) -> PlainTextResponse:
    """The generated code of the run (the latest by default)."""
    run = find_run(services.store, ref)
    check_token(context, run.run_id, token)
    if run.status is not RunStatus.SUCCEEDED:
        raise HTTPException(
            409 if run.active else 404, f"run {run.run_id} is {run.status}: no result"
        )
    try:
        code = services.blobs.get(result_key(run))
    except BlobNotFoundError as exc:
        raise HTTPException(404, f"the result of run {run.run_id} is gone") from exc
    return PlainTextResponse(code.decode(), media_type="text/x-python; charset=utf-8")


def create(
    upload_id: UploadId, service: ServiceName, context: ContextDep, request: Request
) -> JSONResponse:
    """Queue a run for a worker elsewhere: 201 with its id, its Durable Stream and its write
    token, the worker's only credential (``jobtail.run(server, run_id=..., token=...)``); 409
    while the key has an active run. The janitor fails it if no worker claims it in time."""
    try:
        run = context.store.create_run(upload_id, service)
    except RunActiveError as exc:
        return already_active(exc)
    stream = f"{request.scope.get('root_path', '')}/v1/stream/runs/{run.run_id}"
    body = {**run.to_json(), "stream": stream, **_token(context, run)}
    return JSONResponse({**body, **_write_token(context, run)}, status_code=201)


def write_token(ref: IdRef, context: ContextDep) -> Any:
    """A fresh write token for an active run (a long job's expired, or a worker's lost); 409
    once the run has ended: its stream is closed to every writer."""
    run = find_run(context.store, ref)
    if not run.active:
        raise HTTPException(409, f"run {run.run_id} is {run.status}: nothing more to write")
    if not context.tokens:
        raise HTTPException(409, "write tokens need JOBTAIL_AUTH=apikey or a secret")
    return {"run_id": run.run_id, **_write_token(context, run)}


def add_job_routes(routes: Routes) -> None:
    routes.add(f"{KEY}/generate", generate, "POST", status_code=202, name="jobtail.generate")
    routes.add(
        f"{KEY}/runs",
        create,
        "POST",
        status_code=201,
        response_class=JSONResponse,
        name="jobtail.create_run",
    )
    routes.add(f"{RUN}/write-token", write_token, "POST", name="jobtail.write_token")
    routes.readable(
        f"{KEY}/result", result, response_class=PlainTextResponse, name="jobtail.result"
    )
