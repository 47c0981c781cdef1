"""The protocol's own clients read a live jobtail run from its first line to its close, every
line once: the TypeScript client (@durable-streams/client, on node) and the Python client
(``durable-streams``, in SSE mode: its long-poll and auto modes never return on a closed
stream, a client limitation the issue reproduced against the reference server too)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable

import pytest
from durable_streams import stream

from jobtail.streams.client import follow
from tests.conformance.harness import HERE as NODE_DIR
from tests.conformance.harness import node_available, npm_ci
from tests.waiting import wait_for

from .conftest import LiveRun

READER = NODE_DIR / "read_stream.mjs"  # beside node_modules: ESM ignores NODE_PATH


def seqs(messages: list[dict[str, object]]) -> list[object]:
    return [m["seq"] for m in messages]


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_python_client_reads_a_live_run_to_its_close(
    new_run: Callable[..., LiveRun], kind: str
) -> None:
    run = new_run(kind)
    run.write(3)
    received: list[dict[str, object]] = []
    done = threading.Event()

    def read() -> None:
        with stream(run.url, offset="-1", live="sse", timeout=30) as response:
            received.extend(response.iter_json())
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for(lambda: len(received) >= 3, 20, "the first lines")
    run.write(4)
    wait_for(lambda: len(received) >= 7, 20, "the lines written while it reads")
    run.write(2)
    run.finish()
    assert done.wait(20), "the client did not stop at the stream's close"
    assert seqs(received) == list(range(1, 10))
    assert received[0]["message"] == "line 1" and received[0]["fields"] == {"n": 1}


@pytest.fixture(scope="module")
def node_modules() -> None:
    if not node_available():
        if os.environ.get("CI"):
            pytest.fail("node and npm are needed: apt-get install nodejs npm")
        pytest.skip("node/npm not installed")
    npm_ci()


@pytest.mark.parametrize("live", ["long-poll", "sse", "auto"])
def test_typescript_client_reads_a_live_run_to_its_close(
    node_modules: None, new_run: Callable[..., LiveRun], live: str
) -> None:
    run = new_run()
    run.write(2)
    reader = subprocess.Popen(
        ["node", str(READER), run.url, live],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=NODE_DIR,
    )
    assert reader.stdout is not None
    received = [json.loads(reader.stdout.readline()) for _ in range(2)]  # it is reading, live
    run.write(5)
    received += [json.loads(reader.stdout.readline()) for _ in range(5)]
    run.write(1)
    run.finish()
    out, err = reader.communicate(timeout=30)
    assert reader.returncode == 0, err
    received += [json.loads(line) for line in out.splitlines()]
    assert seqs(received) == list(range(1, 9))


def test_jobtail_reader_catches_up_then_long_polls_to_the_close(
    new_run: Callable[..., LiveRun],
) -> None:
    run = new_run()
    run.write(1500)  # one whole block and a partial one to catch up on
    received: list[dict[str, object]] = []
    done = threading.Event()

    def read() -> None:
        received.extend(follow(run.url))
        done.set()

    threading.Thread(target=read, daemon=True).start()
    wait_for(lambda: len(received) >= 1500, 20, "the catch-up")
    run.write(3)
    wait_for(lambda: len(received) >= 1503, 20, "the live lines")
    run.finish()
    assert done.wait(20), "the reader did not stop at the close"
    assert seqs(received) == list(range(1, 1504))
