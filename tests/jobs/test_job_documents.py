"""What a checked document says about itself, word for word (the log and the page show it)."""

from __future__ import annotations

import json

import pytest

from jobtail.documents import MAX_NOTES, UploadError, parse_document


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
