"""``jobtail serve``'s protocols (h11, and httptools where installed) close a connection that
has not sent a whole request head within ``header_timeout``, and serve one that has."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
import uvicorn
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
