"""Uploads (the metadata documents jobs read) and the services that can generate from them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import File, HTTPException, UploadFile

from ...documents import UploadError
from ..deps import Routes, ServicesDep


def create_upload(
    services: ServicesDep, file: Annotated[UploadFile, File(description="JSON Schema or OpenAPI")]
) -> Any:
    """Store a document after checking it parses; 413 when too large, 422 when not usable."""
    limit = services.settings.max_upload_bytes
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"upload is larger than the limit of {limit} bytes")
    try:
        upload_id = services.uploads.save(data, file.filename)
    except UploadError as exc:
        raise HTTPException(422, str(exc)) from exc
    return {"upload_id": upload_id, "filename": file.filename}


def list_uploads(services: ServicesDep) -> Any:
    """The bundled samples, for the page's picker."""
    return {"samples": services.uploads.samples()}


def list_services(services: ServicesDep) -> Any:
    return {"services": services.registry.describe()}


def add_routes(routes: Routes) -> None:
    routes.add("/uploads", create_upload, "POST", status_code=201, name="jobtail.upload")
    routes.add("/uploads", list_uploads, name="jobtail.uploads")
    routes.add("/services", list_services, name="jobtail.services")
