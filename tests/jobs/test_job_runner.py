"""run_job end to end on a real SQLite store and real blobs: lines, results, failures, claims."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable

import pytest

from jobtail.blobs import LocalBlobs
from jobtail.documents import MAX_BYTES
from jobtail.jobs.generators import GeneratedCode, Generator, GeneratorRegistry
from jobtail.jobs.results import latest_result, read_manifest, result_key
from jobtail.jobs.runner import run_job
from jobtail.logger import RunLogger
from jobtail.store.base import LogLine, RunStatus
from jobtail.store.sqlite import SQLiteStore
from jobtail.uploads import ParsedUpload, Uploads, upload_key

Run = Callable[..., RunStatus]
LogOf = Callable[[str], list[LogLine]]

SAMPLES = ["petstore", "invoice", "bookshop"]
SERVICES = ["pydantic", "dataclasses", "typeddict", "msgspec"]
STEPS = [
    "Run ",
    "Generator '",
    "Loaded upload",
    "Parsed ",
    "Upload checked",
    "Generating with",
    "datamodel-code-generator ",
    "Generated ",
    "Code generated",
    "Compile check passed",
    "Import check passed",
    "Checks done",
    "Saved ",
    "Run succeeded",
]


def assert_in_order(messages: list[str], prefixes: list[str]) -> None:
    position = 0
    for prefix in prefixes:
        found = [i for i, m in enumerate(messages) if i >= position and m.startswith(prefix)]
        assert found, f"no line starting {prefix!r} after line {position}: {messages}"
        position = found[0] + 1


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("sample", SAMPLES)
def test_every_builtin_on_every_sample(
    store: SQLiteStore, blobs: LocalBlobs, run: Run, log_of: LogOf, sample: str, service: str
) -> None:
    created = store.create_run(sample, service)
    assert run(created.run_id) is RunStatus.SUCCEEDED
    finished = store.get_run(created.run_id)
    assert finished is not None and finished.status is RunStatus.SUCCEEDED
    assert finished.error is None and finished.finished_at is not None
    lines = log_of(created.run_id)
    assert [line.seq for line in lines] == list(range(1, finished.last_seq + 1))
    messages = [line.message for line in lines]
    assert_in_order(messages, STEPS)
    assert lines[-1].log_level == "INFO" and lines[-1].message.startswith("Run succeeded")
    assert not [line for line in lines if line.log_level in ("WARNING", "ERROR")]
    progress = [line.fields["progress"] for line in lines if "progress" in (line.fields or {})]
    assert progress == sorted(progress) and progress[0] == 0 and progress[-1] == 100
    assert sum(m.startswith("Schema ") for m in messages) >= 8
    timed = [lines[-1], next(line for line in lines if line.message.startswith("Generated "))]
    for line in timed:  # milliseconds: 3 decimals (one run in ten has a 0 in the 4th)
        seconds = (line.fields or {})["seconds"]
        assert seconds == round(seconds, 3)
    code = blobs.get(result_key(finished)).decode()
    compile(code, "result.py", "exec")
    info = read_manifest(blobs, finished)
    assert info is not None and info.filename == f"{sample}_{service}.py"
    assert info.classes is not None and info.classes >= 6
    assert latest_result(blobs, sample, service) == info


def test_the_latest_pointer_follows_the_newest_success(
    store: SQLiteStore, blobs: LocalBlobs, run: Run
) -> None:
    first = store.create_run("petstore", "pydantic")
    run(first.run_id)
    second = store.create_run("petstore", "pydantic")
    run(second.run_id)
    info = latest_result(blobs, "petstore", "pydantic")
    assert info is not None and info.run_id == second.run_id


def failed_lines(store: SQLiteStore, log_of: LogOf, run_id: str) -> list[LogLine]:
    finished = store.get_run(run_id)
    assert finished is not None and finished.status is RunStatus.FAILED
    lines = log_of(run_id)
    assert lines[-1].seq == finished.last_seq
    assert lines[-1].log_level == "ERROR"
    assert lines[-1].message == f"Run failed: {finished.error}"
    assert lines[-2].log_level == "DEBUG" and lines[-2].message.startswith("Traceback:")
    return lines


def test_invalid_yaml_upload_fails_with_the_error_last(
    store: SQLiteStore, blobs: LocalBlobs, run: Run, log_of: LogOf
) -> None:
    blobs.put(upload_key("broken"), b"openapi: 3.1.0\npaths: {unclosed\n")
    created = store.create_run("broken", "pydantic")
    assert run(created.run_id) is RunStatus.FAILED
    lines = failed_lines(store, log_of, created.run_id)
    assert "the upload is not usable: not valid JSON or YAML" in lines[-1].message
    assert "line 3" in lines[-1].message
    assert blobs.get(upload_key("broken"))  # untouched
    assert not blobs.exists(result_key(store.get_run(created.run_id)))  # type: ignore[arg-type]


def test_a_dangling_ref_fails_the_run(
    store: SQLiteStore, uploads: Uploads, run: Run, log_of: LogOf
) -> None:
    upload_id = uploads.save(
        b'{"title": "T", "type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}}',
        "t.json",
    )
    created = store.create_run(upload_id, "dataclasses")
    assert run(created.run_id) is RunStatus.FAILED
    lines = failed_lines(store, log_of, created.run_id)
    assert "#/$defs/Missing" in lines[-1].message


def test_unknown_service_fails_listing_the_known(
    store: SQLiteStore, run: Run, log_of: LogOf
) -> None:
    created = store.create_run("petstore", "graphql")
    assert run(created.run_id) is RunStatus.FAILED
    lines = failed_lines(store, log_of, created.run_id)
    assert lines[-1].message == (
        "Run failed: unknown service 'graphql'; "
        "known services: pydantic, dataclasses, typeddict, msgspec"
    )


def test_missing_upload_fails(store: SQLiteStore, run: Run, log_of: LogOf) -> None:
    created = store.create_run("nowhere", "pydantic")
    assert run(created.run_id) is RunStatus.FAILED
    assert failed_lines(store, log_of, created.run_id)[-1].message == (
        "Run failed: no upload 'nowhere'"
    )


class StubbornGenerator(Generator):
    """Returns whatever it is given, to exercise the runner's checks."""

    name = "stub"
    description = "returns canned output"

    def __init__(self, output: object, import_check: bool = True) -> None:
        self.output, self.import_check = output, import_check

    def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
        if isinstance(self.output, Exception):
            raise self.output
        return self.output  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("output", "error"),
    [
        (GeneratedCode("def broken(:\n", "x.py"), "does not compile: invalid syntax at line 1"),
        (GeneratedCode("raise RuntimeError('boom')\n", "x.py"), "fails on import: RuntimeError"),
        ("not code", "returned str, not GeneratedCode"),
        (ZeroDivisionError("division by zero"), "ZeroDivisionError: division by zero"),
    ],
)
def test_generator_failures_end_the_run(
    store: SQLiteStore,
    run: Run,
    log_of: LogOf,
    registry: GeneratorRegistry,
    output: object,
    error: str,
) -> None:
    registry.register(StubbornGenerator(output))
    created = store.create_run("petstore", "stub")
    assert run(created.run_id) is RunStatus.FAILED
    finished = store.get_run(created.run_id)
    assert finished is not None and error in (finished.error or "")
    failed_lines(store, log_of, created.run_id)


def test_untrusted_output_is_compiled_but_not_executed(
    store: SQLiteStore, run: Run, log_of: LogOf, registry: GeneratorRegistry
) -> None:
    code = "raise SystemExit('this must never run')\n"
    registry.register(StubbornGenerator(GeneratedCode(code, "x.py"), import_check=False))
    created = store.create_run("petstore", "stub")
    assert run(created.run_id) is RunStatus.SUCCEEDED
    messages = [line.message for line in log_of(created.run_id)]
    assert "Compile check passed" in messages
    assert "Import check skipped: 'stub' output is not executed here" in messages


def test_a_missing_optional_package_skips_the_import_check(
    store: SQLiteStore, run: Run, log_of: LogOf, registry: GeneratorRegistry
) -> None:
    code = "import jobtail_no_such_package\n"
    registry.register(StubbornGenerator(GeneratedCode(code, "x.py")))
    created = store.create_run("petstore", "stub")
    assert run(created.run_id) is RunStatus.SUCCEEDED
    warnings = [line for line in log_of(created.run_id) if line.log_level == "WARNING"]
    assert warnings and warnings[0].message.startswith("Import check skipped: No module named")


def test_non_python_output_skips_the_checks(
    store: SQLiteStore, blobs: LocalBlobs, run: Run, registry: GeneratorRegistry
) -> None:
    registry.register(StubbornGenerator(GeneratedCode("type Pet {}\n", "pet.graphql", "graphql")))
    created = store.create_run("petstore", "stub")
    assert run(created.run_id) is RunStatus.SUCCEEDED
    info = read_manifest(blobs, created)
    assert info is not None and info.content_type == "text/plain; charset=utf-8"
    assert blobs.get(result_key(created)) == b"type Pet {}\n"


def test_the_error_stays_last_when_the_line_cap_is_reached(
    store: SQLiteStore, run: Run, log_of: LogOf
) -> None:
    created = store.create_run("bookshop", "nope")
    assert run(created.run_id, max_lines=2) is RunStatus.FAILED
    lines = log_of(created.run_id)
    assert [line.log_level for line in lines] == ["INFO", "WARNING", "WARNING", "ERROR"]
    assert lines[2].message.startswith("… 1 lines omitted")  # said, and counted on the run
    assert lines[-1].message.startswith("Run failed: unknown service 'nope'")
    assert store.get_run(created.run_id).omitted == 1  # type: ignore[union-attr]


def test_a_plug_in_generator_is_used(
    store: SQLiteStore, blobs: LocalBlobs, run: Run, log_of: LogOf, registry: GeneratorRegistry
) -> None:
    class Shout(Generator):
        name = "shout"
        description = "the title, shouted"
        import_check = True

        def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
            log.info(f"shouting {upload.title}")
            return GeneratedCode(f"class {upload.title.upper()}:\n    pass\n", "shout.py")

    registry.register(Shout())
    created = store.create_run("invoice", "shout")
    assert run(created.run_id) is RunStatus.SUCCEEDED
    messages = [line.message for line in log_of(created.run_id)]
    assert "shouting Invoice" in messages
    assert "Import check passed: 1 classes defined" in " ".join(messages)
    assert blobs.get(result_key(created)) == b"class INVOICE:\n    pass\n"
    info = read_manifest(blobs, created)
    assert info is not None and info.classes == 1  # the import check's count


class GatedGenerator(Generator):
    """Blocks inside generate() until the test opens the gate."""

    name = "gated"
    description = "waits for the test"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.calls = 0

    def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
        self.calls += 1
        self.entered.set()
        if not self.gate.wait(timeout=30):
            raise TimeoutError("the test never opened the gate")
        return GeneratedCode("X = 1\n", "x.py")


def test_heartbeat_advances_while_a_slow_generator_runs_and_redelivery_is_ignored(
    store: SQLiteStore,
    run: Run,
    registry: GeneratorRegistry,
    wait_until: Callable[..., bool],
) -> None:
    gated = registry.register(GatedGenerator())
    assert isinstance(gated, GatedGenerator)
    created = store.create_run("petstore", "gated")
    results: list[RunStatus] = []
    worker = threading.Thread(
        target=lambda: results.append(run(created.run_id, heartbeat_interval=0.02))
    )
    worker.start()
    try:
        assert gated.entered.wait(timeout=10)
        started = store.get_run(created.run_id)
        assert started is not None and started.heartbeat_at is not None

        def beaten() -> bool:
            now = store.get_run(created.run_id)
            return now is not None and now.heartbeat_at > started.heartbeat_at  # type: ignore[operator]

        assert wait_until(beaten, timeout=10)
        assert run(created.run_id) is RunStatus.RUNNING  # a redelivery while it runs
    finally:
        gated.gate.set()
        worker.join(timeout=10)
    assert results == [RunStatus.SUCCEEDED]
    assert gated.calls == 1
    assert not [t for t in threading.enumerate() if t.name.startswith("heartbeat-")]


def test_a_finished_run_is_not_run_again(store: SQLiteStore, run: Run, log_of: LogOf) -> None:
    created = store.create_run("petstore", "typeddict")
    assert run(created.run_id) is RunStatus.SUCCEEDED
    before = log_of(created.run_id)
    assert run(created.run_id) is RunStatus.SUCCEEDED
    assert log_of(created.run_id) == before


def test_an_unknown_run_is_reported_failed_without_lines(store: SQLiteStore, run: Run) -> None:
    assert run("no-such-run") is RunStatus.FAILED


def test_a_run_logs_each_step_word_for_word(
    store: SQLiteStore, blobs: LocalBlobs, run: Run, log_of: LogOf, registry: GeneratorRegistry
) -> None:
    """The whole log of a small successful run: what the page shows, its progress marks and the
    fields a tool reads, in order (timings as patterns)."""
    code = "x = 1\n" * 1500
    registry.register(StubbornGenerator(GeneratedCode(code, "x.py"), import_check=False))
    created = store.create_run("petstore", "stub")
    assert run(created.run_id) is RunStatus.SUCCEEDED
    lines = log_of(created.run_id)
    seconds = r"\d+\.\d\d s"
    schemas = [
        "PetStatus: enum of 3 values",
        "Category: object, 2 properties (2 required)",
        "Tag: object, 1 properties (1 required)",
        "NewPet: object, 5 properties (1 required)",
        "Pet: allOf with 2 schemas",
        "Pets: array",
        "Photo: object, 3 properties (1 required)",
        "Error: object, 2 properties (2 required)",
    ]
    expected: list[tuple[str, str, dict[str, object] | None]] = [
        ("INFO", f"Run {created.run_id}: service 'stub' for upload 'petstore'", {"progress": 0}),
        ("INFO", "Generator 'stub': returns canned output", None),
        ("INFO", "Loaded upload 'petstore' (4,962 bytes, petstore.yaml)", {"bytes": 4962}),
        (
            "INFO",
            "Parsed YAML: OpenAPI 3.0.3 'Petstore' with 8 schemas and 4 paths",
            {"kind": "openapi", "schemas": 8, "paths": 4},
        ),
        *[("DEBUG", f"Schema {words}", None) for words in schemas],
        ("INFO", "Upload checked", {"progress": 20}),
        ("INFO", "Generating with 'stub'", {"progress": 30}),
        ("INFO", f"Generated x.py in {seconds}: 1,500 lines, 9,000 bytes", None),
        ("INFO", "Code generated", {"progress": 70}),
        ("INFO", "Compile check passed", None),
        ("INFO", "Import check skipped: 'stub' output is not executed here", None),
        ("INFO", "Checks done", {"progress": 85}),
        ("INFO", f"Saved x.py (9,000 bytes) as {result_key(created)}", {"progress": 100}),
        ("INFO", f"Run succeeded in {seconds}: x.py, 1,500 lines", None),
    ]
    assert len(lines) == len(expected), [line.message for line in lines]
    for line, (level, message, fields) in zip(lines, expected, strict=True):
        assert line.log_level == level
        if seconds in message:
            assert re.fullmatch(
                re.escape(message).replace(re.escape(seconds), seconds), line.message
            )
        else:
            assert line.message == message
        if fields is not None:
            assert line.fields == fields
    generated, succeeded = lines[-7].fields or {}, lines[-1].fields or {}
    assert generated.keys() == {"seconds", "lines", "bytes"}
    assert (generated["lines"], generated["bytes"]) == (1500, 9000)
    assert isinstance(generated["seconds"], float) and 0 <= generated["seconds"] < 60
    assert generated["seconds"] == round(generated["seconds"], 3)
    assert succeeded.keys() == {"seconds"} and 0 < succeeded["seconds"] < 60
    assert succeeded["seconds"] == round(succeeded["seconds"], 3)
    for line, fields in ((lines[-7], generated), (lines[-1], succeeded)):  # the same time
        shown = float(line.message.split(" in ")[1].split(" s")[0])
        assert abs(fields["seconds"] - shown) < 0.006  # type: ignore[operator]  # 2 vs 3 decimals
    info = read_manifest(blobs, created)
    assert info is not None and info.classes is None  # no import check: no count


def test_a_stored_upload_is_read_whole_with_its_notes_and_without_a_name(
    store: SQLiteStore, blobs: LocalBlobs, log_of: LogOf, registry: GeneratorRegistry
) -> None:
    """An upload accepted before the size limit was lowered still runs; its parser notes are
    warnings in the run's log; an upload saved without a file name is loaded as such."""
    registry.register(StubbornGenerator(GeneratedCode("X = 1\n", "x.py"), import_check=False))
    body = {"type": "object", "properties": {"a": {"type": "string", "x-python-type": "int"}}}
    data = json.dumps(body).encode()
    upload_id = Uploads(blobs).save(data)
    created = store.create_run(upload_id, "stub")
    lowered = Uploads(blobs, max_bytes=10)
    status = run_job(created.run_id, store=store, uploads=lowered, blobs=blobs, registry=registry)
    assert status is RunStatus.SUCCEEDED
    lines = log_of(created.run_id)
    loaded = next(line.message for line in lines if line.message.startswith("Loaded upload"))
    assert loaded == f"Loaded upload {upload_id!r} ({len(data):,} bytes)"
    warnings = [line.message for line in lines if line.log_level == "WARNING"]
    assert warnings == ["ignored x-python-type at /properties/a: Python hints are not honoured"]


def test_an_upload_is_parsed_with_its_file_name_and_whole_past_the_default_limit(
    store: SQLiteStore, blobs: LocalBlobs, log_of: LogOf, registry: GeneratorRegistry
) -> None:
    """The worker parses an upload with the name it was saved under (an untitled schema is
    named after its file), and reads a stored one whole even past the default size limit (it
    was accepted under a higher one)."""
    registry.register(StubbornGenerator(GeneratedCode("X = 1\n", "x.py"), import_check=False))
    body = {"type": "object", "description": "x" * MAX_BYTES, "properties": {"a": {}}}
    data = json.dumps(body).encode()
    assert len(data) > MAX_BYTES
    upload_id = Uploads(blobs, max_bytes=2 * MAX_BYTES).save(data, "orders.json")
    created = store.create_run(upload_id, "stub")
    status = run_job(
        created.run_id, store=store, uploads=Uploads(blobs), blobs=blobs, registry=registry
    )
    assert status is RunStatus.SUCCEEDED
    parsed = [line.message for line in log_of(created.run_id) if line.message.startswith("Parsed")]
    assert parsed == [
        "Parsed JSON: JSON Schema 'orders' with 0 definitions and 1 top-level property"
    ]


class Chatty(Generator):
    """Logs ``count`` lines (the first ``first``), then returns code."""

    name = "chatty"
    description = "logs a lot"
    import_check = False

    def __init__(self, count: int, first: str = "line 0") -> None:
        self.count, self.first = count, first

    def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
        log.info(self.first)
        for n in range(1, self.count):
            log.info(f"line {n}")
        return GeneratedCode("X = 1\n", "x.py")


def cap_warning(lines: list[LogLine]) -> str:
    return next(line.message for line in lines if line.message.startswith("line limit of"))


def test_a_run_keeps_the_line_limits_it_is_given(
    store: SQLiteStore, run: Run, log_of: LogOf, registry: GeneratorRegistry
) -> None:
    registry.register(Chatty(30, first="x" * 300))
    created = store.create_run("petstore", "chatty")
    assert run(created.run_id, max_line_chars=100, max_lines=20, keep_tail=3) is RunStatus.SUCCEEDED
    lines = log_of(created.run_id)
    long = next(line for line in lines if line.message.startswith("xxx"))
    assert long.message == "x" * 100 + " … [truncated 200 characters]"
    assert cap_warning(lines) == (
        "line limit of 20 reached: later lines are dropped, except the last 3, shown at the end"
    )


def test_a_run_keeps_the_last_thousand_lines_past_its_cap_by_default(
    store: SQLiteStore, run: Run, log_of: LogOf, registry: GeneratorRegistry
) -> None:
    registry.register(Chatty(1100))
    created = store.create_run("petstore", "chatty")
    assert run(created.run_id, max_lines=2005) is RunStatus.SUCCEEDED
    assert cap_warning(log_of(created.run_id)).endswith(", except the last 1000, shown at the end")
