"""SSE readers of a run's Durable Stream through a real server (uvicorn), written to by their
stream's fan (``streams.fan``): one whose socket fills up is handed back to its own task and
still gets every line once, in order, then the closed end; one that leaves mid-run leaves the
fan; and when the run ends no fan is left."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from jobtail.config import Settings
from jobtail.services import Services
from jobtail.store.base import LogLine, RunStatus, utcnow
from jobtail.store.sqlite import SQLiteStore
from jobtail.streams.service import Streams
from jobtail.web.app import create_app
from tests.conftest import ServerThread
from tests.test_writer import Viewer
from tests.waiting import wait_for

LINES, PAD = 400, 20_000  # 8 MB owed to each reader: more than the kernel buffers
_SEQ = re.compile(rb'"seq":(\d+)')
_CLOSED = b'"streamClosed":true'


def seqs(viewer: Viewer) -> list[int]:
    return [int(match[1]) for match in _SEQ.finditer(viewer.body)]


def readers(streams: Streams) -> int:
    return sum(len(fan.readers) for fan in streams.fans._fans.values())


def serve(tmp_path: Path) -> tuple[SQLiteStore, str, ServerThread, Streams]:
    store = SQLiteStore(tmp_path / "s.db")
    run = store.create_run("up", "svc")
    store.start_run(run.run_id)
    settings = Settings(data_dir=tmp_path, stale_after=3600, sse_seconds=3600)
    app = create_app(services=Services.from_settings(settings, store=store))
    server = ServerThread(app).start()
    return store, run.run_id, server, app.state.jobtail.streams


def two_readers(server: ServerThread, run_id: str, streams: Streams) -> tuple[Viewer, Viewer]:
    """Two SSE readers of the run's stream, once both are with its fan."""
    path = f"/v1/stream/runs/{run_id}?offset=-1&live=sse"
    readers_ = Viewer(server.port, path), Viewer(server.port, path)
    wait_for(lambda: readers(streams) == 2, what="both readers with the fan")
    return readers_


def line(n: int, pad: int = 0) -> LogLine:
    return LogLine(n, utcnow(), "INFO", f"line {n} " + "x" * pad)


def test_a_reader_whose_socket_fills_up_still_gets_every_line_once(tmp_path: Path) -> None:
    store, run_id, server, streams = serve(tmp_path)
    try:
        fast, slow = two_readers(server, run_id, streams)
        slow.reading.clear()  # its socket fills up: the fan must not write to it
        for n in range(1, LINES + 1):  # a chunk each, so writes to the full socket must wait
            store.append(run_id, [line(n, PAD)])
            wait_for(lambda n=n: seqs(fast)[-1:] == [n])
        wait_for(lambda: readers(streams) == 1, what="the stalled reader handed back")
        store.finish_run(run_id, RunStatus.SUCCEEDED)
        fast.thread.join(20)
        slow.reading.set()
        slow.thread.join(20)
        for viewer in (fast, slow):
            assert seqs(viewer) == list(range(1, LINES + 1))
            assert viewer.body.count(_CLOSED) == 1
            assert viewer.body.rfind(_CLOSED) > viewer.body.rfind(b"line %d " % LINES)
        wait_for(lambda: len(streams.fans) == 0, what="no fan left")
    finally:
        server.stop()


def test_a_reader_that_leaves_mid_run_leaves_the_fan(tmp_path: Path) -> None:
    store, run_id, server, streams = serve(tmp_path)
    try:
        staying, leaving = two_readers(server, run_id, streams)
        store.append(run_id, [line(n) for n in range(1, 101)])
        wait_for(lambda: seqs(leaving)[-1:] == [100])
        leaving.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        leaving.sock.shutdown(socket.SHUT_RDWR)  # gone, while lines keep coming
        for n in range(101, 201, 10):
            store.append(run_id, [line(m) for m in range(n, n + 10)])
        wait_for(lambda: readers(streams) == 1, what="the leaving reader gone from the fan")
        store.finish_run(run_id, RunStatus.SUCCEEDED)
        staying.thread.join(20)
        assert seqs(staying) == list(range(1, 201))
        assert staying.body.count(_CLOSED) == 1
        wait_for(lambda: len(streams.fans) == 0, what="no fan left")
    finally:
        server.stop()
