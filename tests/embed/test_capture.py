"""Capture: prints (also from the job's threads) and chosen loggers go into the right run only;
lines carry the OpenTelemetry severity number and, inside a span, its ids."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider

import jobtail
from jobtail.capture import add_run_id
from jobtail.store.sqlite import SQLiteStore


def messages(store: SQLiteStore, run_id: str) -> list[str]:
    return [line.message for line in store.read(run_id, limit=1000)][:-1]  # not the end line


def test_prints_go_to_their_own_run_from_threads_too(
    sqlite_store: SQLiteStore, capsys: pytest.CaptureFixture[str]
) -> None:
    pool = ThreadPoolExecutor(1)  # outlives runs: a task runs in its submitter's run
    barrier = threading.Barrier(2)
    run_ids: dict[str, str] = {}

    def job(name: str) -> None:
        with jobtail.run(sqlite_store, name, "prints", capture=["print"]) as log:
            run_ids[name] = log.run_id
            barrier.wait(10)  # both runs are capturing at once
            print(f"{name}: hello", "world")
            print(f"{name}: part", end="")
            print(" two")  # pieces of one line, joined per thread
            helper = threading.Thread(target=print, args=(f"{name}: from a thread",))
            helper.start()
            helper.join()
            pool.submit(print, f"{name}: from the pool").result()
            print(f"{name}: stderr", file=sys.stderr)
            print(f"{name}: unfinished", end="")

    jobs = [threading.Thread(target=job, args=(name,)) for name in ("a", "b")]
    for thread in jobs:
        thread.start()
    for thread in jobs:
        thread.join(20)
    pool.submit(print, "nobody's").result()
    print("outside any run")
    for name in ("a", "b"):
        got = messages(sqlite_store, run_ids[name])
        assert sorted(got) == sorted(
            [
                f"{name}: hello world",
                f"{name}: part two",
                f"{name}: from a thread",
                f"{name}: from the pool",
                f"{name}: stderr",
                f"{name}: unfinished",
            ]
        ), got
        lines = sqlite_store.read(run_ids[name])
        stderr = next(x for x in lines if x.message == f"{name}: stderr")
        assert stderr.log_level == "WARNING" and stderr.fields == {
            "severity_number": 13,
            "stream": "stderr",
        }
    out = capsys.readouterr().out
    assert "a: hello world" in out and "outside any run" in out  # prints still show (tee)
    pool.shutdown()


def test_chosen_library_loggers_only(sqlite_store: SQLiteStore) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(204))
    with (
        jobtail.run(sqlite_store, "fetch", "loggers", capture=["httpx"]) as log,
        httpx.Client(transport=transport) as client,
    ):
        client.get("http://example.test/items")
        logging.getLogger("elsewhere").warning("not chosen")
        print("not chosen either")
    with httpx.Client(transport=transport) as client:
        client.get("http://example.test/after")  # the run is over
    lines = sqlite_store.read(log.run_id)
    assert [x.message for x in lines[:-1]] == [
        'HTTP Request: GET http://example.test/items "HTTP/1.1 204 No Content"'
    ]
    assert lines[0].log_level == "INFO" and lines[0].fields is not None
    assert lines[0].fields["logger"] == "httpx" and lines[0].fields["severity_number"] == 9


def test_everything_logged_with_capture_true_and_tracebacks_shortened(
    sqlite_store: SQLiteStore,
) -> None:
    with jobtail.run(sqlite_store, "all", "loggers", capture=True) as log:
        try:
            {}["missing"]
        except KeyError:
            logging.getLogger("app.step").exception("lookup failed", extra={"step": 3})
    (line,) = sqlite_store.read(log.run_id)[:-1]
    assert line.log_level == "ERROR" and line.fields is not None
    assert line.fields["step"] == 3 and line.fields["logger"] == "app.step"
    assert line.message.startswith("lookup failed\nTraceback")
    assert 'File "tests/embed/test_capture.py"' in line.message


@pytest.fixture
def stdlib_structlog() -> Iterator[None]:
    structlog.configure(
        processors=[add_run_id, structlog.stdlib.render_to_log_kwargs],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    yield
    structlog.reset_defaults()


def test_structlog_through_the_standard_library(
    sqlite_store: SQLiteStore, stdlib_structlog: None
) -> None:
    logger = structlog.get_logger("pipeline")
    with jobtail.run(sqlite_store, "llm", "structlog", capture=["pipeline"]) as log:
        logger.info("tokens counted", tokens=812, model="small")
    logger.info("after the run")  # not captured
    (line,) = sqlite_store.read(log.run_id)[:-1]
    assert line.message == "tokens counted"
    assert line.fields == {
        "severity_number": 9,
        "logger": "pipeline",
        "tokens": 812,
        "model": "small",
        "run_id": log.run_id,
    }


def test_trace_and_span_ids_inside_an_active_span(sqlite_store: SQLiteStore) -> None:
    tracer = TracerProvider().get_tracer("tests")
    with jobtail.run(sqlite_store, "traced", "otel", capture=["print"]) as log:
        log.info("no span yet")
        with tracer.start_as_current_span("step") as span:
            log.info("inside")
            print("printed inside")
            context = span.get_span_context()
    first, inside, printed = sqlite_store.read(log.run_id)[:3]
    assert first.fields == {"severity_number": 9}
    ids = {"trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}"}
    for line in (inside, printed):
        assert line.fields is not None and {k: line.fields[k] for k in ids} == ids


def test_without_opentelemetry_installed(tmp_path: Any) -> None:
    script = f"""
import sys
sys.modules["opentelemetry"] = None  # as if not installed
import jobtail
store = jobtail.from_url("sqlite:///{tmp_path / "x.db"}")
with jobtail.run(store, "plain", "no-otel") as log:
    log.warning("careful")
print(store.read(log.run_id)[0].fields)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "{'severity_number': 13}"
