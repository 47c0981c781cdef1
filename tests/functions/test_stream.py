"""The stream function under the Lambda Web Adapter's contract, through a real server.

The adapter runs the handler script (``run.sh``) with the function's environment, waits until
``AWS_LWA_READINESS_CHECK_PATH`` answers on ``AWS_LWA_PORT``, then sends each request with the
client's headers plus ``x-amzn-request-context`` and ``x-amzn-lambda-context``, and streams the
response back as it comes. Here the test plays the adapter: same script, same environment
(read from template.yaml), same headers; lines written by another process arrive live.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from jobtail.logger import RunLogger
from jobtail.store.base import RunStatus
from jobtail.store.sqlite import SQLiteStore
from tests.conftest import free_port
from tests.events import load_event
from tests.waiting import wait_for

from .conftest import API_KEY
from .lambdas import FUNCTIONS, ROOT, function_env

pytestmark = pytest.mark.integration


def adapter_headers(event: dict[str, Any], last_id: str | None = None) -> dict[str, str]:
    """The headers the adapter sends the app for an API Gateway REST event."""
    headers = {**event["headers"], "x-amzn-request-context": json.dumps(event["requestContext"])}
    headers["x-amzn-lambda-context"] = json.dumps(
        {"request_id": "6f7e0c5e-test", "deadline": int(time.time() * 1000) + 180_000}
    )
    if last_id:
        headers["Last-Event-ID"] = last_id
    return headers


@pytest.fixture
def stream_function(tmp_path: Path, store_path: Path) -> Iterator[str]:
    """``run.sh`` started as the adapter starts it; yields the app's URL once it is ready."""
    port = str(free_port())
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        **function_env("StreamFunction"),
        "AWS_LWA_PORT": port,
        "PORT": port,
        "LAMBDA_TASK_ROOT": str(FUNCTIONS / "stream"),
        "PYTHONPATH": str(ROOT / "shared"),  # the layer's /opt/python
        "AWS_DEFAULT_REGION": "us-east-1",
        # what the template's secret references resolve to, and the store on this machine
        "JOBTAIL_API_KEYS": API_KEY,
        "JOBTAIL_SECRET": "stream-secret",
        "JOBTAIL_STORE": f"sqlite:///{store_path}",
        "JOBTAIL_BLOBS": f"file://{tmp_path / 'blobs'}",
        "JOBTAIL_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/never-used",
    }
    output = tmp_path / "stream-function.log"
    with output.open("wb") as log:
        server = subprocess.Popen(
            ["sh", str(FUNCTIONS / "stream" / "run.sh")],
            cwd=FUNCTIONS / "stream",
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(server, url + env["AWS_LWA_READINESS_CHECK_PATH"], output)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


def wait_ready(
    server: subprocess.Popen[bytes], url: str, output: Path, timeout: float = 30.0
) -> None:
    """Poll the readiness path as the adapter does, until it answers 200."""

    def ready() -> bool:
        if server.poll() is not None:
            pytest.fail(f"run.sh exited with {server.returncode}:\n{output.read_text()}")
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(ready, timeout, f"{url} to answer 200")


def test_the_logs_route_streams_live_under_the_web_adapter(
    stream_function: str, store: SQLiteStore
) -> None:
    run = store.create_run("petstore", "pydantic")
    store.start_run(run.run_id)
    worker = RunLogger(store, run.run_id)
    for n in range(1, 4):
        worker.info(f"line {n}")
    event = load_event("stream-logs")
    got: list[dict[str, Any]] = []
    kinds: list[str] = []
    end, last_id = None, None
    timeout = httpx.Timeout(10, read=30)
    with (
        httpx.Client(base_url=stream_function, timeout=timeout) as client,
        connect_sse(client, "GET", event["path"], headers=adapter_headers(event)) as source,
    ):
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for sse in source.iter_sse():
            if not sse.data:
                continue
            kinds.append(sse.event)
            if sse.event == "message":
                got.append(json.loads(sse.data))
            if sse.event == "message" and len(got) == 3:  # the stream is open: write more
                for n in range(4, 7):
                    worker.info(f"line {n}")
                worker.close()
                store.finish_run(run.run_id, RunStatus.SUCCEEDED)
            if sse.event == "end":
                end = json.loads(sse.data)
                last_id = sse.id
    assert [x["message"] for x in got] == [f"line {n}" for n in range(1, 7)]
    assert got == [line.to_json() for line in store.read(run.run_id)]
    assert kinds[0] == "status" and kinds[-1] == "end"
    assert end == {"run_id": run.run_id, "status": "succeeded", "last_seq": 6}
    again = httpx.get(
        stream_function + event["path"], headers=adapter_headers(event, last_id), timeout=10
    )
    assert again.status_code == 204
