"""Blob storage for uploads and generated results: a local folder, or an S3 bucket on AWS.

The log store keeps only keys; the bytes live here. Keys are ``/``-separated relative paths
(``uploads/<id>``, ``results/<upload>/<service>/<run>/...``). Both backends give readers
all-or-nothing objects: the local one writes a temporary file and renames it into place, S3
objects appear whole.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "BlobError",
    "BlobNotFoundError",
    "BlobStore",
    "LocalBlobs",
    "S3Blobs",
    "blobs_from_url",
]


class BlobError(ValueError):
    """A key or URL that cannot name a blob."""


class BlobNotFoundError(KeyError):
    """No blob under that key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"no blob {self.key!r}"


def check_key(key: str) -> str:
    """Refuse keys that could escape a root or prefix (absolute, ``..``, empty parts)."""
    parts = key.split("/")
    if not key or "\\" in key or "\x00" in key or any(p in ("", ".", "..") for p in parts):
        raise BlobError(f"invalid blob key {key!r}")
    return key


class BlobStore(ABC):
    """Put, get and test whole objects by key."""

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Store ``data`` under ``key``, replacing what was there, all at once."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes under ``key``; raise BlobNotFoundError if there are none."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...


class LocalBlobs(BlobStore):
    """Files under a root folder; the embedded default (``<data dir>/blobs``)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"LocalBlobs({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """The file for a key, guaranteed to be inside the root."""
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise BlobError(f"blob key {key!r} escapes the blob folder")
        return path

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFoundError(key) from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()


class S3Blobs(BlobStore):
    """Objects in an S3 bucket under an optional prefix; the client is created on first use."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        if not bucket:
            raise BlobError("S3Blobs needs a bucket name")
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self._client = client

    def __repr__(self) -> str:
        return f"S3Blobs('s3://{self.bucket}/{self.prefix}')"

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3")
        return self._client

    def object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        self.client.put_object(
            Bucket=self.bucket, Key=self.object_key(key), Body=data, ContentType=content_type
        )

    def get(self, key: str) -> bytes:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except Exception as exc:
            if _is_missing(exc):
                raise BlobNotFoundError(key) from None
            raise
        body: bytes = response["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except Exception as exc:
            if _is_missing(exc):
                return False
            raise
        return True


def _is_missing(exc: Exception) -> bool:
    """True for botocore's 'no such key' errors (without importing botocore here)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    return code in {"NoSuchKey", "404", "NotFound"}


def blobs_from_url(url: str | None, data_dir: Path | str) -> BlobStore:
    """Open the blob store a setting names: unset/file, file:///path or s3://bucket/prefix."""
    if not url or url == "file":
        return LocalBlobs(Path(data_dir) / "blobs")
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc:
            raise BlobError(f"file URL {url!r} has a host; use file:///absolute/path")
        return LocalBlobs(Path(parts.path))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise BlobError(f"S3 URL {url!r} has no bucket; use s3://bucket/prefix")
        return S3Blobs(parts.netloc, parts.path)
    raise BlobError(f"unknown blob URL {url!r}: use file, file:///path or s3://bucket/prefix")
