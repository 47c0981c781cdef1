"""The measured server processes of the fan-out bench (``python -m bench.fanout serve`` and
its kin): jobtail's app under uvicorn with the run's writer inside it, the bare asyncio floor,
and jobtail over an existing store for replays. Each takes commands on stdin and answers one
JSON line each; each collects garbage as ``jobtail serve`` does (``collect_as_served``).
``fanout`` starts them and measures; they live apart so that module is the measuring side only.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .stats import process_stats, watch_gc


def serve(data_dir: Path, viewers: int, loop: str, http: str) -> None:
    import uvicorn

    from jobtail.config import Settings
    from jobtail.logger import RunLogger
    from jobtail.services import Services
    from jobtail.store.base import RunStatus
    from jobtail.store.sqlite import SQLiteStore
    from jobtail.web.app import create_app

    store = SQLiteStore(data_dir / "s.db")
    run = store.create_run("bench", "fanout")
    store.start_run(run.run_id)
    # the run has no worker heartbeating it: the janitor must not fail it while viewers connect
    # a Durable Streams SSE session ends after sse_seconds (a client then resumes by offset);
    # here every viewer holds one session from its connection to the run's end
    settings = Settings(
        data_dir=data_dir, max_streams=viewers + 100, stale_after=24 * 3600, sse_seconds=3600
    )
    app = create_app(services=Services.from_settings(settings, store=store))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, log_level="warning", loop=loop, http=http, backlog=4096, timeout_keep_alive=60
    )
    server = uvicorn.Server(config)
    collect_as_served()

    def answer(data: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()

    def control() -> None:
        while not server.started:
            time.sleep(0.01)
        answer({"port": sock.getsockname()[1], "pid": os.getpid(), "run_id": run.run_id})
        logger = RunLogger(store, run.run_id)
        for command in sys.stdin:
            words = command.split()
            if words[0] == "subs":
                tailer = app.state.tailer
                follower = tailer._followers.get(run.run_id)
                answer({"subs": len(follower.subscribers) if follower else 0})
            elif words[0] == "stats":
                answer(process_stats())
            elif words[0] == "write":
                count, rate = int(words[1]), float(words[2])
                profiler = _profile_loop(app.state.tailer._loop)
                started = time.monotonic()
                for n in range(count):
                    pause = started + n / rate - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)  # the writer's pace (10 lines/s), not synchronisation
                    logger.info(f"t={time.time_ns()}")
                store.finish_run(run.run_id, RunStatus.SUCCEEDED)
                if profiler is not None:
                    profiler()
                answer({"written": count})
            elif words[0] == "exit":
                break
        server.should_exit = True

    threading.Thread(target=control, daemon=True).start()
    server.run(sockets=[sock])


def collect_as_served() -> None:
    """Collect garbage as ``jobtail serve`` does (``tune_gc``, unless JOBTAIL_GC_TUNING=false),
    and record the pauses for ``stats``."""
    from jobtail.config import Settings
    from jobtail.web.serving import tune_gc

    if Settings().gc_tuning:
        tune_gc()
    watch_gc()


def _profile_loop(loop: Any) -> Any:
    """With BENCH_PROFILE=<file>, profile the event loop's thread (CPU time) while the lines
    are written; returns the call that stops and saves it."""
    path = os.environ.get("BENCH_PROFILE")
    if not path:
        return None
    import cProfile

    profiler = cProfile.Profile(time.thread_time)
    loop.call_soon_threadsafe(profiler.enable)

    def stop() -> None:
        done = threading.Event()

        def disable() -> None:
            profiler.disable()
            done.set()

        loop.call_soon_threadsafe(disable)
        done.wait(10)
        profiler.dump_stats(path)

    return stop


def serve_floor(loop_name: str) -> None:
    """The floor: the least a Python process can do to fan a line out, in the same harness. A
    bare asyncio protocol answers every request with SSE headers and keeps the transport; each
    line is written, as the same bytes, to every transport. No store, no framework, no HTTP
    parsing beyond waiting for the blank line."""
    import asyncio

    if loop_name == "uvloop":
        import uvloop

        uvloop.install()
    collect_as_served()
    transports: set[asyncio.Transport] = set()
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
        b'event: status\ndata: {"status":"running"}\n\n'
    )

    class Viewer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.request = b""

        def data_received(self, data: bytes) -> None:
            self.request += data
            if b"\r\n\r\n" in self.request and self.transport not in transports:
                self.transport.write(head)  # type: ignore[attr-defined]
                transports.add(self.transport)  # type: ignore[arg-type]

        def connection_lost(self, exc: Exception | None) -> None:
            transports.discard(self.transport)  # type: ignore[arg-type]

    def broadcast(chunk: bytes, last: bool) -> None:
        for transport in list(transports):
            transport.write(chunk)
            if last:
                transport.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Viewer, "127.0.0.1", 0, backlog=4096)
        done = asyncio.Event()

        def answer(data: dict[str, Any]) -> None:
            sys.stdout.write(json.dumps(data) + "\n")
            sys.stdout.flush()

        def control() -> None:
            answer({"port": server.sockets[0].getsockname()[1], "pid": os.getpid()})
            for command in sys.stdin:
                words = command.split()
                if words[0] == "subs":
                    answer({"subs": len(transports)})
                elif words[0] == "stats":
                    answer(process_stats())
                elif words[0] == "write":
                    count, rate = int(words[1]), float(words[2])
                    started = time.monotonic()
                    for n in range(count):
                        pause = started + n / rate - time.monotonic()
                        if pause > 0:
                            time.sleep(pause)  # the writer's pace
                        stamp = time.time_ns()
                        line = f'{{"seq":{n + 1},"message":"t={stamp}"}}'
                        chunk = f"id: r:{n + 1}\ndata: {line}\n\n".encode()
                        loop.call_soon_threadsafe(broadcast, chunk, False)
                    end = b'event: end\ndata: {"status":"succeeded"}\n\n'
                    loop.call_soon_threadsafe(broadcast, end, True)
                    answer({"written": count})
                elif words[0] == "exit":
                    break
            loop.call_soon_threadsafe(done.set)

        threading.Thread(target=control, daemon=True).start()
        await done.wait()
        server.close()

    asyncio.run(main())


def serve_store(data_dir: Path, loop: str, http: str) -> None:
    """jobtail's app over an existing SQLite store in ``data_dir`` (for replays and exports);
    prints its port, answers each stdin line with its stats, stops when stdin closes."""
    import uvicorn

    from jobtail.config import Settings
    from jobtail.services import Services
    from jobtail.store.sqlite import SQLiteStore
    from jobtail.web.app import create_app

    store = SQLiteStore(data_dir / "s.db")
    app = create_app(services=Services.from_settings(Settings(data_dir=data_dir), store=store))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", loop=loop, http=http))
    collect_as_served()

    def control() -> None:
        while not server.started:
            time.sleep(0.01)
        sys.stdout.write(json.dumps({"port": sock.getsockname()[1]}) + "\n")
        sys.stdout.flush()
        for _ in sys.stdin:  # any line: this process's stats; end of input: stop
            sys.stdout.write(json.dumps(process_stats()) + "\n")
            sys.stdout.flush()
        server.should_exit = True

    threading.Thread(target=control, daemon=True).start()
    server.run(sockets=[sock])
