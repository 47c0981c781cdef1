"""The fan-out peer: the Durable Streams reference server (``@durable-streams/server``, Node),
one JSON stream that every viewer reads live over SSE (``?offset=-1&live=sse``).

``python -m bench.nodepeer serve`` speaks the fan-out server's stdin protocol (``subs``,
``stats``, ``write N RATE``, ``exit``) for ``fanout.measure``: it starts the Node server, creates
the stream, appends each line as ``{"message": "t=<ns>"}`` (one POST per line, at the same pace
as jobtail's writer) and closes the stream at the end, which ends every viewer's response. Its
CPU and RSS are the Node process's. The same raw-socket load clients read it.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .stats import process_stats

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ROOT / "tests" / "conformance"  # `npm ci` there installs the pinned server
SCRIPT = Path(__file__).resolve().parent / "durable_streams_server.mjs"
STREAM = "/bench/fanout"
PATH = f"{STREAM}?offset=-1&live=sse"
READY = b"event: control"  # the first event a reader gets, before any data
JSON = {"Content-Type": "application/json"}


def available() -> bool:
    """Node and the installed reference server are both there."""
    installed = PACKAGES / "node_modules" / "@durable-streams" / "server"
    return shutil.which("node") is not None and installed.is_dir()


def serve() -> None:
    node = subprocess.Popen(["node", str(SCRIPT), str(PACKAGES)], stdout=subprocess.PIPE, text=True)
    try:
        assert node.stdout is not None
        url = node.stdout.readline().strip()
        port = int(url.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def call(method: str, body: bytes, headers: dict[str, str]) -> None:
            try:
                conn.request(method, STREAM, body=body, headers=headers)
                response = conn.getresponse()
            except (ConnectionError, http.client.RemoteDisconnected):
                conn.close()  # Node closed the idle keep-alive connection (5 s): once more
                conn.request(method, STREAM, body=body, headers=headers)
                response = conn.getresponse()
            response.read()
            if response.status >= 300:
                raise RuntimeError(f"{method} {STREAM}: {response.status}")

        def answer(data: dict[str, Any]) -> None:
            sys.stdout.write(json.dumps(data) + "\n")
            sys.stdout.flush()

        call("PUT", b"", JSON)
        answer({"port": port, "pid": node.pid})
        for command in sys.stdin:
            words = command.split()
            if words[0] == "subs":  # the clients are ready: each stream had its first event
                answer({"subs": 1 << 30})
            elif words[0] == "stats":
                answer(process_stats(node.pid))
            elif words[0] == "write":
                count, rate = int(words[1]), float(words[2])
                started = time.monotonic()
                for n in range(count):
                    pause = started + n / rate - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)  # the writer's pace (10 lines/s), not synchronisation
                    line = json.dumps({"message": f"t={time.time_ns()}"}, separators=(",", ":"))
                    call("POST", line.encode(), JSON)
                call("POST", b"", {**JSON, "Stream-Closed": "true"})
                answer({"written": count})
            elif words[0] == "exit":
                break
    finally:
        node.terminate()
        try:
            node.wait(10)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
