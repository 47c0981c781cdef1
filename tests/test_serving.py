"""``jobtail serve``'s protocols (h11, and httptools where installed) close a connection that
has not sent a whole request head within ``header_timeout``, and serve one that has."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from jobtail.config import Settings
from jobtail.web import serving

from .conftest import free_port
from .waiting import wait_for


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def _protocols() -> list[type[asyncio.Protocol]]:
    found: list[type[asyncio.Protocol]] = [serving.HeadTimeoutH11Protocol]
    fast = serving._fast_protocol()
    if fast is not None:
        found.append(fast[1])
    return found


def _response(sock: socket.socket) -> bytes:
    got = b""
    while not got.endswith(b"ok"):
        chunk = sock.recv(1024)
        assert chunk, got
        got += chunk
    return got


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except OSError:
        return True


@pytest.mark.parametrize("base", _protocols(), ids=lambda cls: cls.__name__)
def test_head_deadline(base: type[asyncio.Protocol]) -> None:
    port = free_port()
    protocol = type("Short", (base,), {"header_timeout": 0.5})
    config = uvicorn.Config(_ok, host="127.0.0.1", port=port, http=protocol, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, "uvicorn to start")
        idle = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        opened = time.monotonic()
        with socket.create_connection(("127.0.0.1", port)) as good:
            good.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _response(good).startswith(b"HTTP/1.1 200")
            good.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # kept alive: a second request
            assert _response(good).startswith(b"HTTP/1.1 200")
            for sock in (idle, slow):
                sock.settimeout(5)
                slow.send(b"a")  # a header byte does not reset the deadline
                assert _closed(sock)
            assert time.monotonic() - opened < 4
            good.settimeout(5)
            assert _closed(good)  # idle after its responses: closed as well
        idle.close()
        slow.close()
    finally:
        server.should_exit = True
        thread.join(10)


def test_serve_prefers_uvloop_and_httptools_when_installed() -> None:
    loop, protocol = serving.protocol(Settings(header_timeout=3))
    assert protocol.header_timeout == 3  # type: ignore[attr-defined]
    if serving._fast_protocol() is None:
        assert (loop, protocol.__mro__[1]) == ("asyncio", serving.HeadTimeoutH11Protocol)
    else:
        assert loop == "uvloop" and "HttpTools" in protocol.__name__


@pytest.fixture
def collector() -> Iterator[None]:
    """The process's collector as it was, after a test that tunes it."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tune_gc_freezes_what_exists_and_collects_less_often(collector: None) -> None:
    assert gc.get_threshold() != serving.GC_THRESHOLD
    serving.tune_gc()
    assert gc.get_threshold() == serving.GC_THRESHOLD
    assert gc.get_freeze_count() > 1000  # the modules and the app, out of every collection


@pytest.mark.parametrize("tuning", [True, False])
def test_serve_tunes_the_collector_unless_told_not_to(
    tuning: bool, collector: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[tuple[int, int, int]] = []
    monkeypatch.setattr(serving.GracefulServer, "run", lambda self: ran.append(gc.get_threshold()))
    default = gc.get_threshold()
    serving.serve(FastAPI(), Settings(port=free_port(), gc_tuning=tuning))
    assert ran == [serving.GC_THRESHOLD if tuning else default]
