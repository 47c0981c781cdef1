"""Checking an uploaded metadata document before anything is stored or run.

An upload is untrusted. ``parse_document`` accepts one self-contained JSON or YAML object that is
an OpenAPI 3.x (or Swagger 2.0) document or a JSON Schema, within size, depth and value limits
(a YAML alias bomb or a 10,000-deep nesting is refused, never expanded). Every reference keyword
(``$ref``, ``$dynamicRef``, ``$recursiveRef``) must be local (``#...``), and ``$id`` (a base URI
that relative references would resolve against) is dropped, so the worker never reads local
files or fetches URLs for a user. Numbers must be finite and at most 100 digits. It drops
datamodel-code-generator's Python hints (``customTypePath``, ``x-python-import`` ...), which
would make the generated module import whatever the document names. YAML timestamps stay
strings so the document stays JSON-compatible.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal

import yaml

__all__ = ["MAX_BYTES", "ParsedUpload", "UploadError", "parse_document"]

MAX_BYTES = 1_048_576
MAX_DEPTH = 100
MAX_VALUES = 250_000
SCHEMA_KEYWORDS = frozenset(
    {"$schema", "$id", "type", "properties", "$defs", "definitions", "oneOf", "anyOf", "allOf"}
    | {"items", "prefixItems", "enum", "const", "$ref", "patternProperties", "additionalProperties"}
)
PYTHON_HINTS = frozenset({"customTypePath", "customBasePath", "x-python-import", "x-python-type"})
REF_KEYWORDS = frozenset({"$ref", "$dynamicRef", "$recursiveRef"})
"""Keywords whose value names another document: only local ``#...`` pointers may pass."""
BASE_KEYWORDS = frozenset({"$id"})
"""Keywords that rebase relative references (a ``file:`` or URL ``$id``): dropped silently."""
MAX_DIGITS = 100
MAX_NOTES = 20

log = logging.getLogger(__name__)


class UploadError(ValueError):
    """An upload that cannot be used; the message is written for the person who uploaded it."""


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader (libyaml's when built) keeping timestamps as strings, as JSON would."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True, slots=True)
class ParsedUpload:
    """A checked document and what it is."""

    document: dict[str, Any]
    kind: Literal["openapi", "jsonschema"]
    title: str
    version: str = ""
    syntax: Literal["json", "yaml"] = "json"
    filename: str | None = None
    size: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def schemas(self) -> dict[str, Any]:
        """Named schemas: components.schemas (OpenAPI 3), definitions (Swagger 2), $defs."""
        doc = self.document
        if self.kind == "openapi" and self.version != "2.0":
            return dict(doc.get("components", {}).get("schemas", {}))
        return {**doc.get("definitions", {}), **doc.get("$defs", {})}

    @property
    def schema_names(self) -> list[str]:
        return list(self.schemas)

    @property
    def paths(self) -> dict[str, Any]:
        return dict(self.document.get("paths", {})) if self.kind == "openapi" else {}

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self.document.get("properties", {})) if self.kind == "jsonschema" else {}

    def summary(self) -> str:
        """One line for the log and the page, e.g. OpenAPI 3.1.0 'Petstore' with 3 schemas."""
        if self.kind == "openapi":
            name = "Swagger" if self.version == "2.0" else "OpenAPI"
            counts = f"{_count(len(self.schemas), 'schema')} and {_count(len(self.paths), 'path')}"
            return f"{name} {self.version} {self.title!r} with {counts}"
        draft = f" ({self.version})" if self.version else ""
        counts = f"{_count(len(self.schemas), 'definition')} and "
        counts += _count(len(self.properties), "top-level property", "top-level properties")
        return f"JSON Schema{draft} {self.title!r} with {counts}"


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def parse_document(
    data: bytes, filename: str | None = None, max_bytes: int = MAX_BYTES
) -> ParsedUpload:
    """Check an uploaded document and say what it is; raise UploadError with a clear reason."""
    if len(data) > max_bytes:
        raise UploadError(f"the upload is {len(data):,} bytes; the limit is {max_bytes:,} bytes")
    text = _decode(data)
    document, syntax = _load(text, filename)
    if not isinstance(document, dict):
        raise UploadError(
            f"the document is {_describe(document)}, not an object: upload an OpenAPI "
            "document or a JSON Schema"
        )
    walker = _Walker()
    document = walker.walk(document, [], 0)
    kind, version = _detect(document)
    _check_shapes(document, kind)
    return ParsedUpload(
        document=document,
        kind=kind,
        title=_title(document, kind, filename),
        version=version,
        syntax=syntax,
        filename=filename,
        size=len(data),
        notes=tuple(walker.notes),
    )


def _decode(data: bytes) -> str:
    if not data.strip():
        raise UploadError("the upload is empty")
    if b"\x00" in data:
        raise UploadError("the upload is a binary file: upload a JSON or YAML document")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UploadError(
            f"the upload is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}):"
            " upload a JSON or YAML document"
        ) from None


def _load(text: str, filename: str | None) -> tuple[Any, Literal["json", "yaml"]]:
    suffix = PurePosixPath(filename or "").suffix.lower()
    try:
        if suffix == ".json" or text.lstrip()[:1] in ("{", "["):
            try:
                return json.loads(text), "json"
            except json.JSONDecodeError as exc:
                if suffix == ".json":
                    raise UploadError(
                        f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                    ) from None
        return yaml.load(text, Loader=_Loader), "yaml"  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise UploadError(f"not valid JSON or YAML: {problem}{where}") from None
    except RecursionError:
        raise UploadError(f"the document nests deeper than {MAX_DEPTH} levels") from None
    except UploadError:
        raise  # already in the user's words (a ValueError too: not to be wrapped below)
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise UploadError(f"a value cannot be read: {exc}") from None


def _describe(value: Any) -> str:
    if value is None:
        return "empty"
    names = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), f"a {type(value).__name__}")


def _pointer(path: list[str]) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in path)


class _Walker:
    """Copies a loaded document into plain JSON values, enforcing the limits on the way."""

    def __init__(self) -> None:
        self.values = 0
        self.notes: list[str] = []
        self.ignored = 0

    def walk(self, value: Any, path: list[str], depth: int) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise UploadError(
                f"the document has more than {MAX_VALUES:,} values (YAML aliases count once "
                "per use): split or simplify it"
            )
        if depth > MAX_DEPTH:
            raise UploadError(f"the document nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            return self._mapping(value, path, depth)
        if isinstance(value, list):
            return [self.walk(item, [*path, str(i)], depth + 1) for i, item in enumerate(value)]
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float):
            return _number(value, path)
        raise UploadError(f"unsupported YAML value ({type(value).__name__}) at {_pointer(path)}")

    def _mapping(self, value: dict[Any, Any], path: list[str], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for raw_key, item in value.items():
            key = str(raw_key)
            if key in REF_KEYWORDS and isinstance(item, str) and not item.startswith("#"):
                raise UploadError(
                    f"external {key} {item[:200]!r} at {_pointer(path)}: upload one "
                    "self-contained document (only local '#/...' references are supported)"
                )
            if key in BASE_KEYWORDS and isinstance(item, str):
                continue  # an identifier only: references resolve within this upload
            if key in PYTHON_HINTS and (not isinstance(item, dict) or "module" in item):
                self._note(f"ignored {key} at {_pointer(path)}: Python hints are not honoured")
                continue
            out[key] = self.walk(item, [*path, key], depth + 1)
        return out

    def _note(self, note: str) -> None:
        self.ignored += 1
        if self.ignored <= MAX_NOTES:
            self.notes.append(note)
        elif self.ignored == MAX_NOTES + 1:
            self.notes.append("more Python hints were ignored")


def _number(value: int | float, path: list[str]) -> int | float:
    """Finite numbers of sane size: a 5,000-digit integer or 1e999 (inf) is refused."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UploadError(f"the number at {_pointer(path)} is not finite")
    if isinstance(value, int) and abs(value) >= 10**MAX_DIGITS:
        raise UploadError(f"the number at {_pointer(path)} has more than {MAX_DIGITS} digits")
    return value


def _detect(doc: dict[str, Any]) -> tuple[Literal["openapi", "jsonschema"], str]:
    if "openapi" in doc:
        version = str(doc["openapi"])
        if not version.startswith("3."):
            raise UploadError(f"OpenAPI version {version!r} is not supported: use 3.x or 2.0")
        return "openapi", version
    if "swagger" in doc:
        if str(doc["swagger"]) != "2.0":
            raise UploadError(f"Swagger version {doc['swagger']!r} is not supported: use 2.0")
        return "openapi", "2.0"
    if SCHEMA_KEYWORDS & doc.keys():
        found = re.search(r"draft-0\d|20\d\d-\d\d", str(doc.get("$schema", "")))
        return "jsonschema", found.group(0) if found else ""
    raise UploadError(
        "the document is neither an OpenAPI document (no 'openapi' or 'swagger' field) nor a "
        "JSON Schema (none of 'type', 'properties', '$defs', 'definitions', '$schema', "
        "'oneOf', 'anyOf' ...): check that you picked the right file"
    )


def _check_shapes(doc: dict[str, Any], kind: str) -> None:
    """The containers the job counts and reads must be objects."""
    places: list[tuple[str, Any]] = [("definitions", doc.get("definitions", {}))]
    if kind == "openapi":
        components = doc.get("components", {})
        places += [("info", doc.get("info", {})), ("paths", doc.get("paths", {}))]
        places += [("components", components)]
        if isinstance(components, dict):
            places.append(("components.schemas", components.get("schemas", {})))
    else:
        places += [("$defs", doc.get("$defs", {})), ("properties", doc.get("properties", {}))]
    for name, value in places:
        if not isinstance(value, dict):
            raise UploadError(f"'{name}' must be an object, not {_describe(value)}")


def _title(doc: dict[str, Any], kind: str, filename: str | None) -> str:
    title = doc.get("info", {}).get("title") if kind == "openapi" else doc.get("title")
    if not isinstance(title, str) or not title.strip():
        title = PurePosixPath(filename).stem if filename else ""
    return title.strip()[:200] or ("Untitled API" if kind == "openapi" else "Untitled schema")
