"""The API against its own OpenAPI document: schemathesis (its CLI, every check) generates
requests for every operation with a bounded example count and runs them against real uvicorn.

Exceptions, said out loud: ``POST /uploads`` skips ``positive_data_acceptance``, since no
schema can say "a valid JSON Schema or OpenAPI document"; so do the two streams, as schemathesis
sends ``Last-Event-ID`` values outside the documented pattern (``0``) as if they were valid. Their
refusals are JSON 4xx all the same (the other checks here, and tests/test_fuzz.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from jobtail.web.app import create_app

from .conftest import ServerThread
from .scripted import make_services

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
SKIPS = r"^(POST /uploads|GET /.*/logs)$"
EXAMPLES = "15"  # per operation and phase: ~600 requests in all


@pytest.mark.parametrize(
    "selection",
    [
        ["--exclude-name-regex", SKIPS],
        ["--include-name-regex", SKIPS, "--exclude-checks", "positive_data_acceptance"],
    ],
    ids=["operations", "uploads-and-streams"],
)
def test_the_api_keeps_its_contract(
    tmp_path: Path, serve: Callable[[object], ServerThread], selection: list[str]
) -> None:
    services, _ = make_services(tmp_path, stream_window=0.5, ping_seconds=0.2)
    server = serve(create_app(services=services))
    command = [
        str(SCHEMATHESIS), "run", f"{server.url}/openapi.json",
        "--checks", "all", "--max-examples", EXAMPLES, "--seed", "10",
        "--workers", "1", "--request-timeout", "20", *selection,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    services.close()
    assert done.returncode == 0, done.stdout[-6000:]
    assert " passed" in done.stdout and "generated" in done.stdout
