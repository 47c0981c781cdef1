"""parse_document refuses what cannot be used with a clear reason; Uploads stores and finds."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from jobtail.blobs import LocalBlobs, S3Blobs
from jobtail.uploads import (
    SAMPLES_DIR,
    UPLOAD_ID,
    UploadError,
    UploadNotFoundError,
    Uploads,
    clean_filename,
    new_upload_id,
    parse_document,
)

PETSTORE = (SAMPLES_DIR / "petstore.yaml").read_bytes()


def test_samples_parse_as_documented() -> None:
    pet = parse_document(PETSTORE, "petstore.yaml")
    assert (pet.kind, pet.version, pet.syntax, pet.title) == (
        "openapi",
        "3.0.3",
        "yaml",
        "Petstore",
    )
    assert pet.summary() == "OpenAPI 3.0.3 'Petstore' with 8 schemas and 4 paths"
    assert "Pet" in pet.schema_names
    invoice = parse_document((SAMPLES_DIR / "invoice.json").read_bytes(), "invoice.json")
    assert invoice.kind == "jsonschema" and invoice.title == "Invoice"
    assert invoice.summary().startswith("JSON Schema (2020-12) 'Invoice' with 10 definitions")
    bookshop = parse_document((SAMPLES_DIR / "bookshop.json").read_bytes())
    assert bookshop.kind == "openapi" and len(bookshop.schemas) >= 10


def test_yaml_keeps_timestamps_as_strings_and_keys_as_text() -> None:
    doc = parse_document(PETSTORE).document
    get = doc["paths"]["/pets"]["get"]
    assert "200" in get["responses"]
    birthday = doc["components"]["schemas"]["NewPet"]["properties"]["birthday"]
    assert birthday["example"] == "2021-04-01"
    json.dumps(doc)


def test_swagger_2_is_accepted() -> None:
    body = {"swagger": "2.0", "info": {"title": "Old"}, "definitions": {"A": {"type": "object"}}}
    parsed = parse_document(json.dumps(body).encode())
    assert parsed.summary() == "Swagger 2.0 'Old' with 1 schema and 0 paths"


def test_title_falls_back_to_the_file_name() -> None:
    parsed = parse_document(b"type: object\nproperties: {a: {type: string}}\n", "my-thing.yml")
    assert parsed.title == "my-thing"


BAD = [
    pytest.param(b"x" * 2_000_000, "limit is 1,048,576 bytes", id="oversize"),
    pytest.param(b"", "empty", id="empty"),
    pytest.param(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary", id="binary"),
    pytest.param(b"\xff\xfe{}", "not UTF-8", id="not-utf8"),
    pytest.param(b"openapi: 3.1.0\ninfo: [unclosed\n", "not valid JSON or YAML", id="bad-yaml"),
    pytest.param(b"[1, 2, 3]", "is a list, not an object", id="list"),
    pytest.param(b"just some words", "is a string, not an object", id="scalar"),
    pytest.param(b"name: Rex\nage: 3\n", "neither an OpenAPI document", id="neither"),
    pytest.param(b"openapi: 2.5\n", "OpenAPI version '2.5' is not supported", id="openapi-version"),
    pytest.param(b"swagger: '1.2'\n", "Swagger version '1.2'", id="swagger-version"),
    pytest.param(
        b'{"type": "object", "properties": []}', "'properties' must be an object", id="shape"
    ),
    pytest.param(
        b'{"type": "object", "properties": {"a": {"$ref": "https://evil.example/x.json"}}}',
        "external $ref 'https://evil.example/x.json' at /properties/a",
        id="remote-ref",
    ),
    pytest.param(b'{"$ref": "../../etc/passwd"}', "only local '#/...' references", id="file-ref"),
    pytest.param(b"!!python/object:os.system {}", "not valid JSON or YAML", id="python-tag"),
    pytest.param(b"type: object\n" + b"a: " + b"[" * 150 + b"]" * 150, "nests deeper", id="deep"),
    pytest.param(
        b"x: !!binary aGVsbG8=\ntype: object\n", "unsupported YAML value", id="binary-tag"
    ),
]


@pytest.mark.parametrize(("data", "reason"), BAD)
def test_bad_documents_get_a_clear_upload_error(data: bytes, reason: str) -> None:
    with pytest.raises(UploadError) as caught:
        parse_document(data)
    assert reason in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "ref", ["/etc/passwd", "other.json#/x", "schemas/pet.yaml", "./pet.yaml#/Pet"]
)
def test_only_local_refs_are_allowed(ref: str) -> None:
    """An allow-list (``#...`` only), not a deny-list of the forms someone thought of."""
    doc = {"type": "object", "properties": {"a": {"$ref": ref}}}
    with pytest.raises(UploadError, match=r"only local '#/\.\.\.' references"):
        parse_document(json.dumps(doc).encode(), "x.json")
    local = {"type": "object", "properties": {"a": {"$ref": "#/$defs/b"}}, "$defs": {"b": {}}}
    assert parse_document(json.dumps(local).encode(), "x.json").document["properties"]


def test_invalid_json_with_json_name_reports_the_position() -> None:
    with pytest.raises(UploadError, match=r"not valid JSON: .* at line 2 column"):
        parse_document(b'{"type": "object",\n  oops}', "schema.json")


def test_yaml_alias_bomb_is_refused_not_expanded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    bomb = ("type: object\n" + "\n".join(lines)).encode()
    with pytest.raises(UploadError, match="more than 250,000 values"):
        parse_document(bomb)


def test_python_hints_are_dropped_with_a_note() -> None:
    body = {
        "type": "object",
        "customBasePath": "os.PathLike",
        "properties": {
            "a": {"type": "string", "customTypePath": "subprocess.Popen"},
            "b": {"x-python-import": {"module": "antigravity", "name": "fly"}},
            "customTypePath": {"type": "string"},
        },
    }
    parsed = parse_document(json.dumps(body).encode())
    assert "customBasePath" not in parsed.document
    props = parsed.document["properties"]
    assert props["a"] == {"type": "string"} and props["b"] == {}
    assert props["customTypePath"] == {"type": "string"}  # a property of that name stays
    assert len(parsed.notes) == 3
    assert parsed.notes[1].startswith("ignored customTypePath at /properties/a:")


def test_save_load_and_filename(tmp_path: Path) -> None:
    uploads = Uploads(LocalBlobs(tmp_path))
    upload_id = uploads.save(PETSTORE, "C:\\fakepath\\My Pets.yaml")
    assert UPLOAD_ID.match(upload_id) and upload_id.startswith("My-Pets-")
    assert uploads.load(upload_id) == PETSTORE
    assert uploads.filename(upload_id) == "My Pets.yaml"
    assert uploads.exists(upload_id)
    assert upload_id != uploads.save(PETSTORE, "My Pets.yaml")


def test_save_refuses_bad_documents_and_stores_nothing(tmp_path: Path) -> None:
    uploads = Uploads(LocalBlobs(tmp_path))
    with pytest.raises(UploadError):
        uploads.save(b"name: Rex\n", "pet.yaml")
    assert not any(tmp_path.iterdir())


def test_samples_are_listed_and_loadable_by_stem(tmp_path: Path) -> None:
    uploads = Uploads(LocalBlobs(tmp_path))
    samples = {s["upload_id"]: s for s in uploads.samples()}
    assert set(samples) == {"petstore", "invoice", "bookshop"}
    assert samples["petstore"] | {"summary": ""} == {
        "upload_id": "petstore",
        "title": "Petstore",
        "kind": "openapi",
        "filename": "petstore.yaml",
        "summary": "",
    }
    assert uploads.load("petstore") == PETSTORE
    assert uploads.filename("invoice") == "invoice.json"


@pytest.mark.parametrize("upload_id", ["missing", "../etc/passwd", "", "-x"])
def test_unknown_upload_is_upload_not_found(tmp_path: Path, upload_id: str) -> None:
    uploads = Uploads(LocalBlobs(tmp_path), samples_dir=None)
    with pytest.raises(UploadNotFoundError) as caught:
        uploads.load(upload_id)
    assert str(caught.value) == f"no upload {upload_id!r}"
    assert caught.value.args == (upload_id,) and caught.value.upload_id == upload_id
    assert not uploads.exists(upload_id)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (None, None),
        ("", None),
        ("a/b\\c/pets.yaml", "pets.yaml"),
        ("  spaced name.json  ", "spaced name.json"),
        ("bell\x07and\nnewline.json", "bellandnewline.json"),
        ("folder/", None),
        (" \x00 ", None),
        ("x" * 300 + ".json", "x" * 255),
    ],
)
def test_a_client_file_name_is_reduced_to_a_clean_base_name(
    given: str | None, kept: str | None
) -> None:
    assert clean_filename(given) == kept


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("My Pets.yaml", "My-Pets"),
        ("..hidden--.json", "hidden"),
        ("ünï côdé.json", "n-c-d"),
        ("!!!.json", "upload"),
        (None, "upload"),
        ("a.b_c-d.yaml", "a.b_c-d"),
        ("XXL X.json", "XXL-X"),
        ("y" * 60 + ".yaml", "y" * 40),
    ],
)
def test_an_upload_id_is_a_slug_of_the_name_and_ten_random_hex(name: str | None, slug: str) -> None:
    upload_id = new_upload_id(name)
    assert re.fullmatch(re.escape(slug) + r"-[0-9a-f]{10}", upload_id), upload_id
    assert UPLOAD_ID.match(upload_id)


def test_uploads_are_stored_where_earlier_versions_stored_them() -> None:
    """The blob layout is data at rest: ``uploads/<id>`` with its content type, and its
    metadata as JSON in ``upload-meta/<id>.json``."""
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="jobtail-uploads")
        uploads = Uploads(S3Blobs("jobtail-uploads", client=client), samples_dir=None)
        yaml_id = uploads.save(PETSTORE, "pets.yaml")
        body = json.dumps({"type": "object", "title": "Thing"}).encode()
        json_id = uploads.save(body)
        stored = client.get_object(Bucket="jobtail-uploads", Key=f"uploads/{yaml_id}")
        assert stored["ContentType"] == "application/yaml" and stored["Body"].read() == PETSTORE
        assert json_id.startswith("Thing-")
        stored = client.get_object(Bucket="jobtail-uploads", Key=f"uploads/{json_id}")
        assert stored["ContentType"] == "application/json" and stored["Body"].read() == body
        meta = client.get_object(Bucket="jobtail-uploads", Key=f"upload-meta/{yaml_id}.json")
        assert meta["ContentType"] == "application/json"
        assert json.loads(meta["Body"].read()) == {
            "upload_id": yaml_id,
            "filename": "pets.yaml",
            "kind": "openapi",
            "title": "Petstore",
            "size": len(PETSTORE),
            "summary": "OpenAPI 3.0.3 'Petstore' with 8 schemas and 4 paths",
        }
        assert uploads.filename(json_id) is None  # saved without a name
        assert uploads.filename("no-such-upload") is None
        assert uploads.filename("../x") is None


def test_a_saved_upload_shadows_a_sample_of_the_same_id(tmp_path: Path) -> None:
    blobs = LocalBlobs(tmp_path / "blobs")
    uploads = Uploads(blobs)
    blobs.put("uploads/petstore", b"type: object\n")
    assert uploads.load("petstore") == b"type: object\n"
    assert uploads.exists("petstore") and uploads.exists("invoice")
    assert uploads.filename("petstore") == "petstore.yaml"  # no metadata: the sample's name


def test_samples_come_from_their_folder_sorted_and_bad_ones_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "b.yml").write_bytes(PETSTORE)
    (samples / "a.json").write_text('{"type": "object", "title": "A"}')
    (samples / "c.yaml").write_text("name: Rex\n")  # neither OpenAPI nor JSON Schema
    (samples / "notes.txt").write_text("type: object\n")
    (samples / "d.yaml").mkdir()  # unreadable as a file
    (samples / "e-thing.yml").write_text("type: object\nproperties: {a: {type: string}}\n")
    uploads = Uploads(LocalBlobs(tmp_path / "blobs"), samples_dir=samples)
    with caplog.at_level(logging.WARNING, logger="jobtail.uploads"):
        listed = uploads.samples()
    assert [(s["upload_id"], s["filename"], s["title"]) for s in listed] == [
        ("a", "a.json", "A"),
        ("b", "b.yml", "Petstore"),
        ("e-thing", "e-thing.yml", "e-thing"),  # untitled: named after its file
    ]
    assert listed[0]["kind"] == "jsonschema" and listed[1]["summary"].startswith("OpenAPI 3.0.3")
    skipped = [r.getMessage() for r in caplog.records]
    assert len(skipped) == 2 and all(m.startswith("skipping bundled sample ") for m in skipped)
    assert "c.yaml: " in skipped[0] and "neither an OpenAPI document" in skipped[0]
    assert "d.yaml: " in skipped[1] and "Is a directory" in skipped[1]
    (samples / "a.json").unlink()
    assert [s["upload_id"] for s in uploads.samples()] == ["a", "b", "e-thing"]  # read once
    listed.clear()
    assert len(uploads.samples()) == 3  # a copy: the caller cannot change the list
    assert not uploads.exists("notes") and not uploads.exists("a")
    assert uploads.load("b") == PETSTORE
    assert Uploads(LocalBlobs(tmp_path), samples_dir=tmp_path / "none").samples() == []
    assert Uploads(LocalBlobs(tmp_path), samples_dir=None).samples() == []


def test_save_reads_a_document_as_its_file_name_says_and_within_the_limit(tmp_path: Path) -> None:
    blobs = LocalBlobs(tmp_path)
    uploads = Uploads(blobs, samples_dir=None)
    untitled = b"type: object\nproperties: {a: {type: string}}\n"
    upload_id = uploads.save(untitled, "my-thing.yml")
    assert json.loads(blobs.get(f"upload-meta/{upload_id}.json"))["title"] == "my-thing"
    with pytest.raises(UploadError, match=r"not valid JSON: .* at line 2 column"):
        uploads.save(b'{"type": "object",\n  oops}', "schema.json")  # JSON's own error
    small = Uploads(blobs, samples_dir=None, max_bytes=len(untitled) - 1)
    with pytest.raises(UploadError, match=f"limit is {len(untitled) - 1:,} bytes"):
        small.save(untitled, "my-thing.yml")
    assert Uploads(blobs, max_bytes=len(untitled)).save(untitled, "my-thing.yml")
