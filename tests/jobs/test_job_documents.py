"""What a checked document says about itself, word for word (the log and the page show it)."""

from __future__ import annotations

import json

import pytest

from jobtail import documents
from jobtail.documents import MAX_DEPTH, MAX_NOTES, UploadError, parse_document


def test_a_json_schema_summary_names_its_draft_and_counts() -> None:
    doc = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Point",
        "type": "object",
        "properties": {"x": {"type": "integer"}},
        "$defs": {"A": {}, "B": {}},
    }
    parsed = parse_document(json.dumps(doc).encode(), "point.json")
    assert parsed.summary() == (
        f"JSON Schema ({parsed.version}) 'Point' with 2 definitions and 1 top-level property"
    )
    assert parsed.version  # the draft is named
    bare = parse_document(b'{"type": "object", "properties": {"a": {}, "b": {}}}', "t.json")
    assert bare.summary() == "JSON Schema 't' with 0 definitions and 2 top-level properties"


@pytest.mark.parametrize(
    ("text", "described"),
    [("true", "a boolean"), ("3", "a number"), ("1.5", "a number"), ("null", "empty")],
)
def test_a_document_that_is_not_an_object_says_what_it_is(text: str, described: str) -> None:
    with pytest.raises(UploadError) as caught:
        parse_document(text.encode(), "x.json")
    assert str(caught.value).startswith(f"the document is {described}, not an object")


def test_pointers_escape_tilde_and_slash() -> None:
    doc = {"type": "object", "properties": {"a/b~c": {"$ref": "other.json"}}}
    with pytest.raises(UploadError) as caught:
        parse_document(json.dumps(doc).encode(), "x.json")
    assert " at /properties/a~1b~0c:" in str(caught.value)


def _hinted(count: int) -> tuple[str, ...]:
    properties = {f"p{n}": {"type": "string", "x-python-type": "int"} for n in range(count)}
    doc = {"type": "object", "properties": properties}
    return parse_document(json.dumps(doc).encode(), "x.json").notes


@pytest.mark.parametrize("count", [MAX_NOTES + 1, MAX_NOTES + 5])
def test_ignored_python_hints_are_noted_up_to_a_limit_then_once_more(count: int) -> None:
    notes = _hinted(count)
    assert len(notes) == MAX_NOTES + 1
    assert notes[0] == "ignored x-python-type at /properties/p0: Python hints are not honoured"
    assert notes[MAX_NOTES - 1].startswith(
        f"ignored x-python-type at /properties/p{MAX_NOTES - 1}:"
    )
    assert notes[-1] == "more Python hints were ignored"
    assert len(_hinted(1)) == 1 and len(_hinted(MAX_NOTES)) == MAX_NOTES


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ({"openapi": "3.1.0", "info": []}, "'info' must be an object, not a list"),
        ({"openapi": "3.1.0", "paths": "/pets"}, "'paths' must be an object, not a string"),
        ({"openapi": "3.1.0", "components": 3}, "'components' must be an object, not a number"),
        (
            {"openapi": "3.1.0", "components": {"schemas": True}},
            "'components.schemas' must be an object, not a boolean",
        ),
        ({"swagger": "2.0", "definitions": []}, "'definitions' must be an object, not a list"),
        ({"type": "object", "definitions": "A"}, "'definitions' must be an object, not a string"),
        ({"type": "object", "$defs": []}, "'$defs' must be an object, not a list"),
        ({"type": "object", "properties": None}, "'properties' must be an object, not empty"),
    ],
)
def test_each_container_the_job_reads_must_be_an_object(doc: object, reason: str) -> None:
    with pytest.raises(UploadError) as caught:
        parse_document(json.dumps(doc).encode(), "x.json")
    assert str(caught.value) == reason


def test_containers_are_checked_only_where_the_kind_reads_them() -> None:
    """An OpenAPI document's 'properties' and a JSON Schema's 'info' are nobody's business."""
    api = parse_document(b'{"openapi": "3.1.0", "properties": [], "$defs": 1}')
    assert (api.kind, api.title, api.paths, api.schemas) == ("openapi", "Untitled API", {}, {})
    schema = parse_document(b'{"type": "object", "info": [], "paths": 1, "components": 2}')
    assert (schema.kind, schema.title, schema.properties) == ("jsonschema", "Untitled schema", {})


def test_a_title_is_trimmed_and_cut_and_a_blank_one_falls_back() -> None:
    long = {"openapi": "3.1.0", "info": {"title": "  " + "T" * 300 + " "}}
    assert parse_document(json.dumps(long).encode()).title == "T" * 200
    blank = {"type": "object", "title": "   "}
    assert parse_document(json.dumps(blank).encode(), "dir/point.schema.json").title == (
        "point.schema"
    )
    assert parse_document(json.dumps(blank).encode()).title == "Untitled schema"


@pytest.mark.parametrize(
    ("text", "described"), [(b"!!set {a: null}", "a set"), (b"!!binary aGk=", "a bytes")]
)
def test_a_yaml_value_of_another_type_is_named_by_its_type(text: bytes, described: str) -> None:
    with pytest.raises(UploadError) as caught:
        parse_document(text, "x.yaml")
    assert str(caught.value).startswith(f"the document is {described}, not an object")


def test_numbers_must_be_finite_and_at_most_100_digits() -> None:
    def parse(value: str) -> object:
        text = f"type: object\nproperties:\n  a:\n    default: {value}\n"
        return parse_document(text.encode(), "x.yaml").document["properties"]["a"]["default"]

    assert parse("9" * 100) == 10**100 - 1
    assert parse("-" + "9" * 100) == -(10**100 - 1)
    for big in ("1" + "0" * 100, "-1" + "0" * 100):
        with pytest.raises(UploadError) as caught:
            parse(big)
        assert str(caught.value) == "the number at /properties/a/default has more than 100 digits"
    for infinite in (".inf", "-.inf", ".nan"):
        with pytest.raises(UploadError) as caught:
            parse(infinite)
        assert str(caught.value) == "the number at /properties/a/default is not finite"


@pytest.mark.parametrize(
    ("schema", "version"),
    [
        ("http://json-schema.org/draft-07/schema#", "draft-07"),
        ("https://json-schema.org/draft/2019-09/schema", "2019-09"),
        ("https://example.com/my-dialect", ""),
        (None, ""),
    ],
)
def test_a_json_schema_names_its_draft_when_its_schema_says(
    schema: str | None, version: str
) -> None:
    doc = {"type": "object"} | ({"$schema": schema} if schema else {})
    assert parse_document(json.dumps(doc).encode()).version == version


def test_a_document_of_neither_kind_is_told_what_was_looked_for() -> None:
    with pytest.raises(UploadError) as caught:
        parse_document(b"name: Rex\n")
    assert str(caught.value) == (
        "the document is neither an OpenAPI document (no 'openapi' or 'swagger' field) nor a "
        "JSON Schema (none of 'type', 'properties', '$defs', 'definitions', '$schema', "
        "'oneOf', 'anyOf' ...): check that you picked the right file"
    )


def test_the_value_and_depth_limits_are_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """MAX_DEPTH levels and the value limit (the object, its 'type', the list and its items
    count; lowered here so the test stays quick) pass; one more of either is refused."""

    def nested(levels: int) -> bytes:
        return b'{"type": "object", "a": ' + b"[" * levels + b"]" * levels + b"}"

    assert parse_document(nested(MAX_DEPTH)).document["a"]
    with pytest.raises(UploadError, match=f"nests deeper than {MAX_DEPTH} levels"):
        parse_document(nested(MAX_DEPTH + 1))

    def values(n: int) -> bytes:
        return json.dumps({"type": "object", "a": [0] * (n - 3)}).encode()

    monkeypatch.setattr(documents, "MAX_VALUES", 50)
    assert len(parse_document(values(50)).document["a"]) == 47
    with pytest.raises(UploadError, match="more than 50 values"):
        parse_document(values(51))


def test_yaml_aliases_count_once_per_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small alias bomb against a lowered value limit (the full-size one is in
    test_job_uploads.py): an 11-value anchor used twice passes, five times it is refused."""
    monkeypatch.setattr(documents, "MAX_VALUES", 50)
    anchor = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
    within = f"type: object\n{anchor}b: [*a, *a]\n".encode()  # 3 + 11 + 1 + 2 x 11 = 37
    assert len(parse_document(within).document["b"]) == 2
    bomb = f"type: object\n{anchor}b: [*a, *a, *a, *a, *a]\n".encode()
    with pytest.raises(UploadError, match="more than 50 values"):
        parse_document(bomb)


def test_invalid_json_named_json_says_so_once() -> None:
    """Regression: the JSON error was wrapped again as 'a value cannot be read: not valid
    JSON: ...' (UploadError is a ValueError); a .JSON name counts as .json."""
    with pytest.raises(UploadError) as caught:
        parse_document(b'{"type": "object",}', "X.JSON")
    assert str(caught.value) == (
        "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 19"
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"  \n", "the upload is empty"),
        (b"\x89PNG\x00", "the upload is a binary file: upload a JSON or YAML document"),
        (
            b"\xff\xfe{}",
            "the upload is not UTF-8 text (byte 0xff at offset 0): upload a JSON or YAML document",
        ),
        (
            b"openapi: 3.1.0\ninfo: {title: x\n",
            "not valid JSON or YAML: did not find expected ',' or '}' at line 3 column 1",
        ),
        (b"a: \x07\n", "not valid JSON or YAML: cannot be parsed"),  # no problem, no position
        (b"type: object\na: [1, !!binary aGk=]\n", "unsupported YAML value (bytes) at /a/1"),
        (
            b"[1]",
            "the document is a list, not an object: upload an OpenAPI document or a JSON Schema",
        ),
        (
            b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "the document nests deeper than 100 levels",
        ),
        (  # read as JSON (from its '['), not given to YAML: libyaml words it otherwise
            b"[" * 100_000 + b"]" * 100_000,
            "the document nests deeper than 100 levels",
        ),
    ],
)
def test_refusals_word_for_word(data: bytes, reason: str) -> None:
    with pytest.raises(UploadError) as caught:
        parse_document(data)
    assert str(caught.value) == reason


def test_refusal_of_an_external_ref_quotes_200_characters_of_it() -> None:
    target = "http://x/" + "y" * 300
    doc = {"type": "object", "properties": {"a": {"$ref": target}}}
    with pytest.raises(UploadError) as caught:
        parse_document(json.dumps(doc).encode())
    assert str(caught.value) == (
        f"external $ref {target[:200]!r} at /properties/a: upload one self-contained document"
        " (only local '#/...' references are supported)"
    )


def test_json_with_leading_blank_lines_is_read_as_json() -> None:
    assert parse_document(b' \n{"type": "object"}').syntax == "json"


def test_the_value_limit_refusal_word_for_word(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(documents, "MAX_VALUES", 2)
    with pytest.raises(UploadError) as caught:
        parse_document(b'{"type": "object", "a": 1}')
    assert str(caught.value) == (
        "the document has more than 2 values (YAML aliases count once per use): split or"
        " simplify it"
    )


def test_a_parsed_upload_keeps_its_file_name_and_size() -> None:
    data = b'{"type": "object"}'
    parsed = parse_document(data, "point.json")
    assert (parsed.filename, parsed.size) == ("point.json", len(data))
    assert parse_document(data).filename is None


def test_a_json_named_upload_is_read_as_json_only() -> None:
    """YAML in a .json file is refused as JSON, not quietly read as YAML."""
    with pytest.raises(UploadError) as caught:
        parse_document(b"type: object\n", "schema.json")
    assert str(caught.value) == "not valid JSON: Expecting value at line 1 column 1"
    assert parse_document(b"type: object\n", "schema.yaml").syntax == "yaml"


def test_an_integer_python_will_not_convert_is_a_value_that_cannot_be_read() -> None:
    with pytest.raises(UploadError) as caught:
        parse_document(b'{"type": "object", "a": ' + b"1" * 5000 + b"}")
    assert str(caught.value).startswith("a value cannot be read: Exceeds the limit (4300 digits)")
