"""Fan-out: N viewers of one run at 10 lines/s, every line to every viewer, measured end to end.

Three kinds of process, so the server's CPU and memory are its own:
- the server (``python -m bench.fanout serve``, the code in ``servers``): jobtail's app under
  uvicorn on an SQLite store, with the run's writer inside it (the embedded case: a commit wakes
  the follower at once); it takes commands on stdin (``subs``, ``stats``, ``write N RATE``) and
  answers one JSON line each;
- load clients (``python -m bench.fanout client``, the code in ``load_client``): raw sockets,
  no HTTP library, each holding a share of the viewers, reading with epoll; the latency of a
  line is the client's clock at receipt minus the writer's clock when it logged it (both
  CLOCK_REALTIME, one machine);
- this module's ``measure``, which starts them, waits until every viewer is subscribed, has
  the server write, then collects p50/p99/max latency, lines per viewer, the server's CPU while
  writing and its RSS growth per viewer.

The clients share the machine's cores with the server, so absolute figures are pessimistic.
Every server here collects garbage as ``jobtail serve`` does (``web.serving.tune_gc``; with
JOBTAIL_GC_TUNING=false as Python does by default), the floor too, so that the ratio compares the
fan-out alone; each says its longest pause while viewers connected and while lines were written.
"""

from __future__ import annotations

import json
import os
import select
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import load_client
from .servers import serve, serve_floor, serve_store

PATH = "/runs/bench/fanout/logs"
STREAM_PATH = "/v1/stream/runs/{run_id}?offset=-1&live=sse"  # the run as a Durable Stream
STREAM_READY = "event: control"  # a stream reader's first event, before any data


def fetch(port: int, path: str, marker: bytes) -> tuple[float, int, int]:
    """GET ``path`` over a raw socket to the end of the body: (seconds, bytes, how many times
    ``marker`` occurs). What a browser's native SSE parser costs is left out, as it is not
    Python's to pay."""
    request = f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode()
    buffer = bytearray(1 << 20)
    view = memoryview(buffer)
    carry, count, size = b"", 0, 0
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(request)
        while got := sock.recv_into(buffer):
            chunk = carry + bytes(view[:got])
            count += chunk.count(marker)
            carry = chunk[-(len(marker) - 1) :]
            size += got
    return time.perf_counter() - started, size, count


# -- the orchestration -----------------------------------------------------------------------
@dataclass
class Result:
    viewers: int
    lines: int
    everyone: bool
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_percent: float
    rss_kb_per_viewer: float
    gc_connecting_ms: float = float("nan")  # the server's longest collector pause, and while
    gc_writing_ms: float = float("nan")  # writing (NaN: a server that does not say, Node's)


def _ask(server: subprocess.Popen[str], command: str, timeout: float = 180) -> dict[str, Any]:
    """One command to the server process and its answer; TimeoutError if none comes."""
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write(command + "\n")
    server.stdin.flush()
    ready, _, _ = select.select([server.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError(f"the server did not answer {command!r} within {timeout} s")
    return dict(json.loads(server.stdout.readline()))


def measure(
    data_dir: Path,
    viewers: int,
    lines: int = 50,
    rate: float = 10.0,
    clients: int = 4,
    loop: str = "auto",
    http: str = "auto",
    floor: bool = False,
    node: bool = False,
    stream: bool = False,
) -> Result:
    """One scenario; ``floor`` measures the bare asyncio fan-out instead of jobtail, ``node``
    the Durable Streams reference server (``bench/nodepeer.py``), ``stream`` jobtail's own
    Durable Streams SSE read of the run (the peer's protocol) instead of its logs route."""
    python = sys.executable
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(["shared", "."])}
    role = ["bench.fanout", "serve", str(data_dir), str(viewers), loop, http]
    read = [PATH, "event: status"]
    if floor:
        role = ["bench.fanout", "serve-floor", loop]
    elif node:
        from . import nodepeer

        role, read = ["bench.nodepeer", "serve"], [nodepeer.PATH, nodepeer.READY.decode()]
    server = subprocess.Popen(
        [python, "-m", *role],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    procs: list[subprocess.Popen[str]] = []
    try:
        assert server.stdout is not None
        hello = json.loads(server.stdout.readline())
        port = hello["port"]
        if stream:  # the same run, read as a Durable Stream over SSE
            read = [STREAM_PATH.format(run_id=hello["run_id"]), STREAM_READY]
        before = _ask(server, "stats")
        shares = [viewers // clients + (1 if i < viewers % clients else 0) for i in range(clients)]
        timeout = lines / rate + 60 + viewers / 200
        for share in shares:
            command = ["bench.fanout", "client", str(port), str(share), str(timeout), *read]
            procs.append(
                subprocess.Popen(
                    [python, "-m", *command],
                    stdout=subprocess.PIPE,
                    text=True,
                    env=env,
                )
            )
        for proc in procs:
            assert proc.stdout is not None
            json.loads(proc.stdout.readline())  # ready: every stream has its status
        deadline = time.monotonic() + 60
        # an SSE viewer of the logs route counts once the follower has it; a stream reader is
        # ready at its first control event, which the clients waited for
        while not stream and _ask(server, "subs")["subs"] < viewers:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)  # the server subscribes them as it reads their first event
        connected = _ask(server, "stats")
        _ask(server, f"write {lines} {rate}")
        written = _ask(server, "stats")
        latencies: list[int] = []
        per_viewer: list[int] = []
        for proc in procs:
            assert proc.stdout is not None
            report = json.loads(proc.stdout.readline())
            latencies += report["latencies_us"]
            per_viewer += report["lines"]
            proc.wait(30)
        _ask_quietly(server, "exit")
        server.wait(30)
    finally:
        for proc in [*procs, server]:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    ms = sorted(value / 1000 for value in latencies) or [float("nan")]
    cut = statistics.quantiles(ms, n=100) if len(ms) > 2 else [float("nan")] * 99
    busy = written["cpu_s"] - connected["cpu_s"]
    return Result(
        viewers=viewers,
        lines=lines,
        everyone=len(per_viewer) == viewers and all(n == lines for n in per_viewer),
        p50_ms=cut[49],
        p99_ms=cut[98],
        max_ms=ms[-1],
        cpu_percent=100 * busy / max(1e-9, written["wall"] - connected["wall"]),
        rss_kb_per_viewer=1024 * (connected["rss_mb"] - before["rss_mb"]) / viewers,
        gc_connecting_ms=connected.get("gc_longest_ms", float("nan")),
        gc_writing_ms=written.get("gc_longest_ms", float("nan")),
    )


def _ask_quietly(server: subprocess.Popen[str], command: str) -> None:
    assert server.stdin is not None
    try:
        server.stdin.write(command + "\n")
        server.stdin.flush()
    except BrokenPipeError:
        pass


def _server_options(args: list[str]) -> tuple[str, str]:
    """``loop=`` and ``http=`` (uvicorn's) from the command line's ``key=value`` words."""
    options = dict(arg.split("=", 1) for arg in args if "=" in arg)
    unknown = sorted(options.keys() - {"loop", "http"})
    if unknown:
        raise SystemExit(f"unknown options {unknown}: only loop= and http= are taken")
    return options.get("loop", "auto"), options.get("http", "auto")


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "serve-store":
        serve_store(Path(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif role == "serve-floor":
        serve_floor(sys.argv[2])
    elif role == "serve":
        serve(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif role == "client":
        path, ready = (
            (sys.argv[5], sys.argv[6].encode()) if len(sys.argv) > 6 else (PATH, b"event: status")
        )
        load_client.client(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), path, ready)
    else:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            words = sys.argv[2:]
            loop, http = _server_options(words)
            floor, node, stream = ("floor" in words, "node" in words, "stream" in words)
            print(
                measure(
                    Path(tmp),
                    int(role),
                    30,
                    loop=loop,
                    http=http,
                    floor=floor,
                    node=node,
                    stream=stream,
                )
            )
