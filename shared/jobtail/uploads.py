"""Uploads: saved user documents (in blobs) and the bundled samples, one namespace of ids.

Every document is checked by ``documents.parse_document`` before it is stored. Bundled samples
are addressed by file stem.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from pathlib import Path, PurePosixPath
from typing import Any

from .blobs import BlobNotFoundError, BlobStore
from .documents import MAX_BYTES, ParsedUpload, UploadError, parse_document

__all__ = [
    "MAX_BYTES",
    "SAMPLES_DIR",
    "UPLOAD_ID",
    "ParsedUpload",
    "UploadError",
    "UploadNotFoundError",
    "Uploads",
    "parse_document",
]

log = logging.getLogger(__name__)
UPLOAD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SAMPLES_DIR = Path(__file__).parent / "samples"
SAMPLE_SUFFIXES = (".json", ".yaml", ".yml")


class UploadNotFoundError(KeyError):
    """No user upload and no bundled sample has this id."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(upload_id)
        self.upload_id = upload_id

    def __str__(self) -> str:
        return f"no upload {self.upload_id!r}"


def clean_filename(filename: str | None) -> str | None:
    """The base name of a client-supplied file name, without folders or control characters."""
    if not filename:
        return None
    name = re.split(r"[\\/]", filename)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()[:255]
    return name or None


def new_upload_id(name: str | None) -> str:
    """A readable, unguessable id: a slug of the file name plus random hex."""
    stem = PurePosixPath(name or "").stem
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:40] or "upload"
    return f"{slug}-{secrets.token_hex(5)}"


def upload_key(upload_id: str) -> str:
    return f"uploads/{upload_id}"


def meta_key(upload_id: str) -> str:
    return f"upload-meta/{upload_id}.json"


class Uploads:
    """Saved user uploads (in blobs) and the bundled samples, one namespace of ids."""

    def __init__(
        self, blobs: BlobStore, samples_dir: Path | None = SAMPLES_DIR, max_bytes: int = MAX_BYTES
    ) -> None:
        self.blobs = blobs
        self.samples_dir = samples_dir
        self.max_bytes = max_bytes
        self._samples: list[dict[str, str]] | None = None

    def save(self, data: bytes, filename: str | None = None) -> str:
        """Check and store an upload; return its new id."""
        filename = clean_filename(filename)
        parsed = parse_document(data, filename, self.max_bytes)
        upload_id = new_upload_id(filename or parsed.title)
        content_type = "application/json" if parsed.syntax == "json" else "application/yaml"
        self.blobs.put(upload_key(upload_id), data, content_type)
        meta: dict[str, Any] = {"upload_id": upload_id, "filename": filename, "kind": parsed.kind}
        meta |= {"title": parsed.title, "size": len(data), "summary": parsed.summary()}
        self.blobs.put(meta_key(upload_id), json.dumps(meta).encode(), "application/json")
        return upload_id

    def load(self, upload_id: str) -> bytes:
        """The upload's bytes: a user upload first, else a bundled sample of that stem."""
        if not UPLOAD_ID.match(upload_id):
            raise UploadNotFoundError(upload_id)
        try:
            return self.blobs.get(upload_key(upload_id))
        except BlobNotFoundError:
            pass
        sample = self._sample_path(upload_id)
        if sample is None:
            raise UploadNotFoundError(upload_id)
        return sample.read_bytes()

    def exists(self, upload_id: str) -> bool:
        if not UPLOAD_ID.match(upload_id):
            return False
        return self.blobs.exists(upload_key(upload_id)) or self._sample_path(upload_id) is not None

    def filename(self, upload_id: str) -> str | None:
        """The name the file was uploaded with (or the sample's), which hints JSON vs YAML."""
        if not UPLOAD_ID.match(upload_id):
            return None
        try:
            meta = json.loads(self.blobs.get(meta_key(upload_id)))
            return str(meta["filename"]) if meta.get("filename") else None
        except BlobNotFoundError:
            sample = self._sample_path(upload_id)
            return sample.name if sample else None

    def samples(self) -> list[dict[str, str]]:
        """The bundled samples for the page's picker: upload_id, title, kind, filename."""
        if self._samples is None:
            self._samples = [info for path in self._sample_files() if (info := _sample(path))]
        return list(self._samples)

    def _sample_files(self) -> list[Path]:
        if self.samples_dir is None or not self.samples_dir.is_dir():
            return []
        return sorted(p for p in self.samples_dir.iterdir() if p.suffix in SAMPLE_SUFFIXES)

    def _sample_path(self, upload_id: str) -> Path | None:
        return next((p for p in self._sample_files() if p.stem == upload_id), None)


def _sample(path: Path) -> dict[str, str] | None:
    try:
        parsed = parse_document(path.read_bytes(), path.name)
    except (OSError, UploadError) as exc:
        log.warning("skipping bundled sample %s: %s", path, exc)
        return None
    return {
        "upload_id": path.stem,
        "title": parsed.title,
        "kind": parsed.kind,
        "filename": path.name,
        "summary": parsed.summary(),
    }
