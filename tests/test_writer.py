"""The follower's way into a response (``web.writer``): a write goes out before ``write``
returns when the socket takes it; one that must wait for the socket to drain goes out before the
response's own next message; a write in flight is dropped when the response ends. Then, through
a real uvicorn: a viewer whose socket fills up still gets every line once, in order, then
``end``, and a viewer that goes away mid-run leaves no subscriber behind."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
from pathlib import Path

import pytest
from starlette.types import Message

from jobtail.config import Settings
from jobtail.logger import RunLogger
from jobtail.services import Services
from jobtail.store.base import LogLine, RunStatus, utcnow
from jobtail.store.sqlite import SQLiteStore
from jobtail.tail import Tailer
from jobtail.web.app import create_app
from jobtail.web.writer import Writer

from .conftest import ServerThread
from .waiting import wait_for

_SEQ = re.compile(rb"(?:^|\n)id: [^:\n]+:(\d+)\ndata: ")


class Socket:
    """An ASGI ``send`` over a socket that can fill up: while it is full, a message waits for it
    to drain, as with uvicorn's flow control; ``fail`` makes the next message raise."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.drained = asyncio.Event()
        self.drained.set()
        self.fail: Exception | None = None

    async def send(self, message: Message) -> None:
        if not self.drained.is_set():
            await self.drained.wait()
        if self.fail is not None:
            raise self.fail
        self.sent.append(message["body"])


@pytest.mark.anyio
async def test_a_write_the_socket_takes_is_sent_before_write_returns() -> None:
    sock, writer = Socket(), Writer()
    assert not writer.ready  # not before the response's body starts
    writer.attach(sock.send)
    writer.write(b"a")
    assert sock.sent == [b"a"] and writer.ready


@pytest.mark.anyio
async def test_a_write_that_waits_for_the_socket_goes_out_before_the_next_message() -> None:
    sock, writer = Socket(), Writer()
    writer.attach(sock.send)
    sock.drained.clear()
    writer.write(b"a")
    assert sock.sent == [] and not writer.ready
    sock.drained.set()
    await writer.settle()  # what the response does before its own next message
    assert sock.sent == [b"a"] and writer.ready


@pytest.mark.anyio
async def test_a_failed_write_is_raised_when_the_response_next_sends() -> None:
    sock, writer = Socket(), Writer()
    writer.attach(sock.send)
    sock.fail = OSError("gone")
    writer.write(b"a")
    assert not writer.ready
    with pytest.raises(OSError, match="gone"):
        await writer.settle()
    sock.fail, sock.drained = None, asyncio.Event()
    writer = Writer()
    writer.attach(sock.send)
    writer.write(b"b")  # waits for the socket, then fails
    sock.fail = OSError("gone later")
    sock.drained.set()
    with pytest.raises(OSError, match="gone later"):
        await writer.settle()
    assert not writer.ready


@pytest.mark.anyio
async def test_a_write_in_flight_is_dropped_when_the_response_ends() -> None:
    sock, writer = Socket(), Writer()
    writer.attach(sock.send)
    sock.drained.clear()
    writer.write(b"a")
    writer.detach()  # the client went away: the body task is over
    sock.drained.set()
    await writer.settle()
    assert sock.sent == [] and not writer.ready


class FutureSocket:
    """An ASGI ``send`` that is no coroutine: it returns a future (a server may), done at once
    while ``gate`` is None, else once the gate opens."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.gate: asyncio.Future[None] | None = None

    def send(self, message: Message) -> asyncio.Future[None]:
        done = asyncio.get_running_loop().create_future()

        def deliver(_: object = None) -> None:
            self.sent.append(message["body"])
            done.set_result(None)

        if self.gate is None:
            deliver()
        else:
            self.gate.add_done_callback(deliver)
        return done


@pytest.mark.anyio
async def test_a_send_that_returns_a_future_is_driven_the_same() -> None:
    sock, writer = FutureSocket(), Writer()
    writer.attach(sock.send)
    writer.write(b"a")
    assert sock.sent == [b"a"] and writer.ready
    sock.gate = asyncio.get_running_loop().create_future()
    writer.write(b"b")
    assert sock.sent == [b"a"] and not writer.ready
    sock.gate.set_result(None)
    await writer.settle()
    assert sock.sent == [b"a", b"b"] and writer.ready


# -- through a real server -------------------------------------------------------------------
LINES, PAD = 400, 20_000  # 8 MB owed to each viewer: more than the kernel buffers


class Viewer:
    """A raw-socket SSE viewer with a small receive buffer that reads only while ``reading``."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        request = f"GET {path} HTTP/1.0\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
        self.sock.sendall(request.encode())
        self.received = bytearray()
        self.reading = threading.Event()
        self.reading.set()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with self.sock, contextlib.suppress(ConnectionResetError):
            while self.reading.wait() and (chunk := self.sock.recv(65536)):
                self.received += chunk

    @property
    def body(self) -> bytes:
        return bytes(self.received)

    def seqs(self) -> list[int]:
        return [int(match[1]) for match in _SEQ.finditer(self.body.replace(b"\r\n", b"\n"))]


def subscribers(tailer: Tailer, run_id: str) -> int:
    follower = tailer._followers.get(run_id)
    return len(follower.subscribers) if follower else 0


def _serve(tmp_path: Path) -> tuple[SQLiteStore, str, ServerThread, Tailer]:
    store = SQLiteStore(tmp_path / "s.db")
    run = store.create_run("up", "svc")
    store.start_run(run.run_id)
    settings = Settings(data_dir=tmp_path, stale_after=3600)
    app = create_app(services=Services.from_settings(settings, store=store))
    server = ServerThread(app).start()
    return store, run.run_id, server, app.state.tailer


def test_a_viewer_whose_socket_fills_up_still_gets_every_line_once(tmp_path: Path) -> None:
    store, run_id, server, tailer = _serve(tmp_path)
    try:
        path = f"/runs/up/svc/logs?run_id={run_id}"
        fast, slow = Viewer(server.port, path), Viewer(server.port, path)
        wait_for(lambda: b"event: status" in fast.body and b"event: status" in slow.body)
        wait_for(lambda: subscribers(tailer, run_id) == 2)
        slow.reading.clear()  # its socket fills up: the follower's write to it must wait
        logger = RunLogger(store, run_id)
        follower = tailer._followers[run_id]
        for n in range(1, LINES + 1):  # a batch each, so writes to the full socket must wait
            logger.info(f"line {n} " + "x" * PAD)
            wait_for(lambda n=n: follower.cursor == n)
        store.finish_run(run_id, RunStatus.SUCCEEDED)
        fast.thread.join(20)
        slow.reading.set()
        slow.thread.join(20)
        for viewer in (fast, slow):
            assert viewer.seqs() == list(range(1, LINES + 1))
            assert viewer.body.replace(b"\r\n", b"\n").rfind(b"event: end") > viewer.body.rfind(
                b"line %d " % LINES
            )
    finally:
        server.stop()


def test_a_viewer_that_leaves_mid_run_leaves_no_subscriber(tmp_path: Path) -> None:
    store, run_id, server, tailer = _serve(tmp_path)
    try:
        path = f"/runs/up/svc/logs?run_id={run_id}"
        staying, leaving = Viewer(server.port, path), Viewer(server.port, path)
        wait_for(lambda: subscribers(tailer, run_id) == 2)
        follower = tailer._followers[run_id]
        lines = [LogLine(n, utcnow(), "INFO", f"line {n}") for n in range(1, 201)]
        store.append(run_id, lines[:100])
        wait_for(lambda: leaving.seqs()[-1:] == [100])
        leaving.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        leaving.sock.shutdown(socket.SHUT_RDWR)  # gone, while lines keep coming
        for n in range(100, 200, 10):
            store.append(run_id, lines[n : n + 10])
        wait_for(lambda: len(follower.subscribers) == 1, what="the leaving viewer unsubscribed")
        assert len(follower.fanout._readers) <= 1
        store.finish_run(run_id, RunStatus.SUCCEEDED)
        staying.thread.join(20)
        assert staying.seqs() == list(range(1, 201))
        wait_for(lambda: tailer.follower_count == 0)
    finally:
        server.stop()
