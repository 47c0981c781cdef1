"""Blob stores: the local folder and S3 (moto) behave the same through the BlobStore API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from jobtail.blobs import (
    BlobError,
    BlobNotFoundError,
    BlobStore,
    LocalBlobs,
    S3Blobs,
    blobs_from_url,
)


@pytest.fixture
def s3() -> Iterator[S3Blobs]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="jobtail-test")
        yield S3Blobs("jobtail-test", prefix="/env/", client=client)


@pytest.fixture(params=["local", "s3"])
def any_blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobs(tmp_path / "blobs")
    return request.getfixturevalue("s3")


def test_put_get_exists_overwrite(any_blobs: BlobStore) -> None:
    assert not any_blobs.exists("results/u/s/r/result")
    any_blobs.put("results/u/s/r/result", b"first", "text/x-python")
    any_blobs.put("results/u/s/r/result", b"second")
    assert any_blobs.exists("results/u/s/r/result")
    assert any_blobs.get("results/u/s/r/result") == b"second"


def test_missing_key_is_blob_not_found(any_blobs: BlobStore) -> None:
    with pytest.raises(BlobNotFoundError) as caught:
        any_blobs.get("uploads/nothing")
    assert isinstance(caught.value, KeyError)
    assert str(caught.value) == "no blob 'uploads/nothing'"


@pytest.mark.parametrize(
    "key", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a\\b", "a/"]
)
def test_keys_that_could_escape_are_refused(any_blobs: BlobStore, key: str) -> None:
    with pytest.raises(BlobError):
        any_blobs.put(key, b"x")


def test_local_write_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    blobs = LocalBlobs(tmp_path)
    blobs.put("uploads/a", b"1" * 100_000)
    blobs.put("uploads/a", b"2")
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == ["a"]
    assert blobs.get("uploads/a") == b"2"


def test_local_symlink_out_of_root_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(outside)
    with pytest.raises(BlobError, match="escapes"):
        LocalBlobs(tmp_path / "root").put("link/x", b"x")


def test_s3_keys_live_under_the_prefix_with_content_type(s3: S3Blobs) -> None:
    s3.put("uploads/a", b"{}", "application/json")
    head = s3.client.head_object(Bucket="jobtail-test", Key="env/uploads/a")
    assert head["ContentType"] == "application/json"


def test_blobs_from_url(tmp_path: Path) -> None:
    default = blobs_from_url(None, tmp_path)
    assert isinstance(default, LocalBlobs) and default.root == (tmp_path / "blobs").resolve()
    assert isinstance(blobs_from_url("file", tmp_path), LocalBlobs)
    explicit = blobs_from_url(f"file://{tmp_path}/elsewhere", tmp_path)
    assert isinstance(explicit, LocalBlobs) and explicit.root == (tmp_path / "elsewhere")
    s3 = blobs_from_url("s3://bucket/some/prefix", tmp_path)
    assert isinstance(s3, S3Blobs) and (s3.bucket, s3.prefix) == ("bucket", "some/prefix/")
    for bad in ("s3:///nobucket", "ftp://x/y", "file://host/path"):
        with pytest.raises(BlobError):
            blobs_from_url(bad, tmp_path)
