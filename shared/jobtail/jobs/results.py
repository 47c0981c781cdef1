"""Where a run's generated code lives in blob storage, and how the API finds it again.

Per run, under ``results/<upload_id>/<service_name>/<run_id>/``: ``result`` (the code, so its
key follows from the run alone: ``result_key(run)``) and ``manifest.json`` (file name,
language, sizes). ``results/<upload_id>/<service_name>/latest.json`` is a copy of the manifest
of the key's latest run whose result was saved, rewritten just before that run is marked
succeeded; one key has one active run at a time, so these writes never race.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from ..blobs import BlobNotFoundError, BlobStore
from ..store.base import Run, utcnow
from .generators import GeneratedCode

__all__ = [
    "ResultInfo",
    "latest_key",
    "latest_result",
    "manifest_key",
    "read_manifest",
    "result_key",
    "save_result",
]

CONTENT_TYPES = {"python": "text/x-python; charset=utf-8"}


def _prefix(upload_id: str, service_name: str) -> str:
    return f"results/{upload_id}/{service_name}"


def result_key(run: Run) -> str:
    """The blob key of a run's generated code (present once the run succeeded)."""
    return f"{_prefix(run.upload_id, run.service_name)}/{run.run_id}/result"


def manifest_key(run: Run) -> str:
    return f"{_prefix(run.upload_id, run.service_name)}/{run.run_id}/manifest.json"


def latest_key(upload_id: str, service_name: str) -> str:
    return f"{_prefix(upload_id, service_name)}/latest.json"


@dataclass(frozen=True, slots=True)
class ResultInfo:
    """What was saved for a run: where, under which download name, and how big."""

    run_id: str
    upload_id: str
    service_name: str
    key: str
    filename: str
    language: str
    content_type: str
    bytes: int
    lines: int
    classes: int | None
    saved_at: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResultInfo:
        values: dict[str, Any] = {name: data.get(name) for name in cls.__dataclass_fields__}
        return cls(**values)


def save_result(
    blobs: BlobStore, run: Run, generated: GeneratedCode, classes: int | None = None
) -> ResultInfo:
    """Store the code, its manifest and the key's latest pointer; return the manifest."""
    data = generated.code.encode("utf-8")
    info = ResultInfo(
        run_id=run.run_id,
        upload_id=run.upload_id,
        service_name=run.service_name,
        key=result_key(run),
        filename=generated.filename,
        language=generated.language,
        content_type=CONTENT_TYPES.get(generated.language, "text/plain; charset=utf-8"),
        bytes=len(data),
        lines=len(generated.code.splitlines()),
        classes=classes,
        saved_at=utcnow().isoformat(),
    )
    blobs.put(info.key, data, info.content_type)
    manifest = json.dumps(info.to_json(), indent=2).encode()
    blobs.put(manifest_key(run), manifest, "application/json")
    blobs.put(latest_key(run.upload_id, run.service_name), manifest, "application/json")
    return info


def _read(blobs: BlobStore, key: str) -> ResultInfo | None:
    try:
        return ResultInfo.from_json(json.loads(blobs.get(key)))
    except BlobNotFoundError:
        return None


def read_manifest(blobs: BlobStore, run: Run) -> ResultInfo | None:
    """The saved result's manifest for a run, or None if it saved nothing."""
    return _read(blobs, manifest_key(run))


def latest_result(blobs: BlobStore, upload_id: str, service_name: str) -> ResultInfo | None:
    """The manifest of the key's latest saved result (fetch the code at ``info.key``)."""
    return _read(blobs, latest_key(upload_id, service_name))
