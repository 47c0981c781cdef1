"""The generator registry, plug-ins through entry points, and the built-ins' output."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint

import pytest

from jobtail.jobs.datamodel import BUILTINS, module_name
from jobtail.jobs.generators import (
    ENTRY_POINT_GROUP,
    GeneratedCode,
    Generator,
    GeneratorError,
    GeneratorRegistry,
    UnknownServiceError,
    default_registry,
)
from jobtail.logger import RunLogger
from jobtail.store.sqlite import SQLiteStore
from jobtail.uploads import ParsedUpload, parse_document

BUILTIN_NAMES = ["pydantic", "dataclasses", "typeddict", "msgspec"]


class ShoutGenerator(Generator):
    """A plug-in: the upload's title, shouted, as a Python constant."""

    name = "shout"
    description = "Shouts the title"

    def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
        log.info("shouting")
        return GeneratedCode(code=f"TITLE = {upload.title.upper()!r}\n", filename="shout.py")


def make_shout() -> Generator:
    return ShoutGenerator()


def entry_point(name: str, target: str) -> EntryPoint:
    return EntryPoint(name=name, value=f"{__name__}:{target}", group=ENTRY_POINT_GROUP)


def test_default_registry_has_the_builtins_in_order() -> None:
    registry = default_registry(plugins=[])
    assert registry.names() == BUILTIN_NAMES == [name for name, *_ in BUILTINS]
    described = registry.describe()
    assert [d["name"] for d in described] == BUILTIN_NAMES
    assert all(d["description"] and d["import_check"] for d in described)


def test_unknown_service_lists_the_known_ones() -> None:
    registry = default_registry(plugins=[])
    with pytest.raises(UnknownServiceError) as caught:
        registry.get("graphql")
    assert isinstance(caught.value, LookupError)
    assert str(caught.value) == (
        "unknown service 'graphql'; known services: pydantic, dataclasses, typeddict, msgspec"
    )
    assert caught.value.known == BUILTIN_NAMES


def test_register_refuses_duplicates_bad_names_and_non_generators() -> None:
    registry = GeneratorRegistry([ShoutGenerator()])
    with pytest.raises(ValueError, match="already registered"):
        registry.register(ShoutGenerator())
    replacement = ShoutGenerator()
    assert registry.register(replacement, replace=True) is registry.get("shout")
    bad = ShoutGenerator()
    bad.name = "no spaces/allowed"
    with pytest.raises(ValueError, match="must match"):
        registry.register(bad)
    with pytest.raises(TypeError):
        registry.register(object())  # type: ignore[arg-type]
    assert "shout" in registry and len(registry) == 1


def test_entry_points_add_instances_classes_and_factories() -> None:
    registry = default_registry(plugins=[entry_point("shout", "ShoutGenerator")])
    assert registry.names() == [*BUILTIN_NAMES, "shout"]
    assert isinstance(registry.get("shout"), ShoutGenerator)
    from_factory = default_registry(plugins=[entry_point("shout", "make_shout")])
    assert "shout" in from_factory


def test_a_broken_plug_in_is_skipped_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    plugins = [entry_point("bad", "BUILTIN_NAMES"), entry_point("gone", "no_such_thing")]
    registry = default_registry(plugins=plugins)
    assert registry.names() == BUILTIN_NAMES
    assert caplog.text.count("not loaded") == 2


def test_installed_entry_points_are_read_without_error() -> None:
    assert set(BUILTIN_NAMES) <= set(default_registry().names())


def test_library_warnings_are_routed_into_the_run(store: SQLiteStore) -> None:
    run = store.create_run("u", "pydantic")
    doc = {"title": "T", "type": "object", "properties": {"a": {"type": "string", "format": "x"}}}
    upload = parse_document(json.dumps(doc).encode())
    with RunLogger(store, run.run_id) as log:
        code = default_registry(plugins=[]).get("pydantic").generate(upload, log)
    assert "class T(BaseModel)" in code.code
    warnings = [line for line in store.read(run.run_id) if line.log_level == "WARNING"]
    assert len(warnings) == 1
    assert "format of 'x' not understood" in warnings[0].message
    assert warnings[0].fields == {"source": "datamodel-code-generator", "category": "UserWarning"}


def test_a_document_without_schemas_is_a_generator_error(store: SQLiteStore) -> None:
    run = store.create_run("u", "msgspec")
    upload = parse_document(b"openapi: 3.1.0\ninfo: {title: Empty}\npaths: {}\n")
    with RunLogger(store, run.run_id) as log, pytest.raises(GeneratorError, match="no schemas"):
        default_registry(plugins=[]).get("msgspec").generate(upload, log)


@pytest.mark.parametrize(
    ("title", "expected"),
    [("Pet Store API", "pet_store_api"), ("3D shapes", "m_3d_shapes"), ("!!!", "models")],
)
def test_module_name(title: str, expected: str) -> None:
    assert module_name(title) == expected
