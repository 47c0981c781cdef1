"""The runner's checks of generated code: what they say, word for word."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from jobtail.jobs.generators import GeneratedCode, Generator, GeneratorError, GeneratorRegistry
from jobtail.jobs.runner import describe_schema
from jobtail.jobs.sandbox import import_check
from jobtail.logger import RunLogger
from jobtail.store.base import LogLine, RunStatus
from jobtail.store.sqlite import SQLiteStore
from jobtail.uploads import ParsedUpload


class Fixed(Generator):
    """Returns the code it was given, whatever the upload."""

    description = "returns fixed code"

    def __init__(self, name: str, output: GeneratedCode, import_check: bool = False) -> None:
        self.name, self.output, self.import_check = name, output, import_check

    def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
        return self.output


def test_the_import_check_counts_classes_in_its_own_process(
    store: SQLiteStore, log_of: Callable[[str], list[LogLine]]
) -> None:
    run = store.create_run("up", "svc")
    source = "class A: pass\nclass B(A): pass\nimport os\nX = os.sep\n"
    with RunLogger(store, run.run_id) as log:
        assert import_check(source, "m.py", log) == 2
    passed, classes = [line.message for line in log_of(run.run_id)]
    assert re.fullmatch(
        r"Import check passed: 2 classes defined in \d+ ms \(separate process\)", passed
    )
    assert classes == "Classes: A, B"


def test_an_import_check_that_fails_or_lacks_a_package_says_so(
    store: SQLiteStore, log_of: Callable[[str], list[LogLine]]
) -> None:
    run = store.create_run("up", "svc")
    with RunLogger(store, run.run_id) as log:
        with pytest.raises(GeneratorError) as caught:
            import_check("raise RuntimeError('boom')", "m.py", log)
        assert str(caught.value) == "the generated code fails on import: RuntimeError: boom"
        assert import_check("import no_such_package_here", "m.py", log) is None
    assert [(line.log_level, line.message) for line in log_of(run.run_id)] == [
        (
            "WARNING",
            "Import check skipped: No module named 'no_such_package_here'"
            " (a package this worker does not have)",
        )
    ]


@pytest.mark.parametrize(
    ("output", "says"),
    [
        (
            GeneratedCode("x: number = 1", "x.ts", "typescript"),
            "Checks skipped: the output is typescript, not Python",
        ),
        (
            GeneratedCode("def f(:\n", "bad.py"),
            "Run failed: the generated code does not compile: invalid syntax at line 1",
        ),
        (
            GeneratedCode("x = 1\x00", "nul.py"),
            "Run failed: the generated code does not compile: source code string cannot contain "
            "null bytes",
        ),
        (  # compile() raises ValueError, not SyntaxError, for a NUL in the file name
            GeneratedCode("x = 1\n", "bad\x00.py"),
            "Run failed: the generated code does not compile: embedded null character",
        ),
    ],
)
def test_checks_say_why_in_the_runs_own_words(
    output: GeneratedCode,
    says: str,
    store: SQLiteStore,
    registry: GeneratorRegistry,
    run: Callable[..., RunStatus],
    log_of: Callable[[str], list[LogLine]],
) -> None:
    registry.register(Fixed("fixed", output))
    created = store.create_run("petstore", "fixed")
    run(created.run_id)
    messages = [line.message for line in log_of(created.run_id)]
    assert says in messages, messages[-3:]


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ([1], "not an object"),
        ({"oneOf": [{}, {}]}, "oneOf with 2 schemas"),
        ({"anyOf": [{}]}, "anyOf with 1 schemas"),
        ({"allOf": [{}, {}, {}]}, "allOf with 3 schemas"),
        ({"oneOf": "not a list", "type": "string"}, "string"),
        ({"enum": ["a", "b"]}, "enum of 2 values"),
        (
            {"properties": {"a": {}, "b": {}}, "required": ["a"]},
            "object, 2 properties (1 required)",
        ),
        ({"properties": {"a": {}}, "required": None}, "object, 1 properties (0 required)"),
        ({"$ref": "#/$defs/A"}, "reference to #/$defs/A"),
        ({"type": "integer"}, "integer"),
        ({}, "any"),
    ],
)
def test_a_schema_is_described_in_a_few_words(schema: object, words: str) -> None:
    assert describe_schema(schema) == words
