"""Node side of the Durable Streams tests: the pinned npm packages (``npm ci`` once, with the
system's node), a real ``jobtail serve`` subprocess, and the conformance suite's JSON report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).parent
LOCK = HERE / "package-lock.json"
INSTALLED = HERE / "node_modules" / ".package-lock.json"


def node_available() -> bool:
    return shutil.which("node") is not None and shutil.which("npm") is not None


def npm_ci() -> None:
    """Install the pinned packages unless node_modules already matches the lock file."""
    stamp = HERE / "node_modules" / ".jobtail-lock"
    wanted = LOCK.read_text()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=HERE,
        check=True,
        timeout=600,
    )
    stamp.write_text(wanted)


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def jobtail_server(store: str, data_dir: Path, port: int, **env: str) -> Iterator[Server]:
    """jobtail's app under uvicorn in a subprocess, stopped and reaped afterwards.

    Keep-alive outlasts the client's (undici keeps idle sockets 4 s; uvicorn's default 5 s
    races it, and a request on a socket the server just closed fails), as behind a CDN."""
    environ = {
        **os.environ,
        "JOBTAIL_STORE": store,
        "JOBTAIL_DATA_DIR": str(data_dir),
        "JOBTAIL_LONG_POLL_SECONDS": "3",
        "JOBTAIL_SSE_SECONDS": "20",
        "JOBTAIL_LOG_LEVEL": "WARNING",
        **env,
    }
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "jobtail.web.app:create_app",
        "--port", str(port), "--timeout-keep-alive", "75", "--log-level", "warning",
    ]  # fmt: skip
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen(command, env=environ, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"the jobtail server exited: {(data_dir / 'server.log').read_text()}"
                )
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the jobtail server did not answer /healthz within 30 s")
            time.sleep(0.1)
        yield Server(url, process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@dataclass
class Report:
    passed: set[str]
    failed: dict[str, str]  # name -> first line of the failure
    skipped: set[str]

    @property
    def total(self) -> int:
        return len(self.passed) + len(self.failed) + len(self.skipped)


def run_suite(url: str, out: Path, timeout: float = 900) -> Report:
    """Run the pinned conformance suite against ``url``; parse vitest's JSON report."""
    report_file = out / "conformance.json"
    subprocess.run(
        [
            str(HERE / "node_modules" / ".bin" / "vitest"), "run", "--config",
            str(HERE / "vitest.config.mjs"), "--reporter=json", f"--outputFile={report_file}",
            "--retry=1",  # a timing test on a loaded 2-core machine gets one more try
        ],
        cwd=HERE,
        env={**os.environ, "CONFORMANCE_TEST_URL": url, "CI": "true"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )  # fmt: skip
    data = json.loads(report_file.read_text())
    passed, skipped, failed = set(), set(), {}
    for result in data["testResults"]:
        for test in result["assertionResults"]:
            name = test["fullName"]
            if test["status"] == "passed":
                passed.add(name)
            elif test["status"] == "failed":
                message = (test.get("failureMessages") or [""])[0]
                failed[name] = message.strip().splitlines()[0] if message.strip() else ""
            else:
                skipped.add(name)
    return Report(passed, failed, skipped)


def reference_passes() -> set[str]:
    """Tests the reference server (@durable-streams/server 0.3.7) passes on this suite."""
    return set(json.loads((HERE / "reference_passes.json").read_text()))
