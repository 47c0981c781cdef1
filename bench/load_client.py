"""The fan-out benchmark's load client: one process holding many SSE streams on raw sockets.

No HTTP library, so that thousands of viewers cost a client process little beside the server it
measures: each socket sends a bare GET and is read with epoll (``selectors``) into one shared
buffer, and a line is found by its ``"message":"t=<ns>"`` mark alone. The latency of a line is
this process's clock at receipt minus the writer's clock in the line (both CLOCK_REALTIME, one
machine). Apart from ``fanout``, which starts these processes (``python -m bench.fanout
client``) beside the server they read and gathers their reports.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import time
from dataclasses import dataclass

MARK = b'"message":"t='


@dataclass
class _Viewer:
    sock: socket.socket
    buffer: bytes = b""
    lines: int = 0
    ready: bool = False
    ended: bool = False


def client(port: int, count: int, timeout: float, path: str, ready: bytes) -> None:
    """Open ``count`` SSE streams; report "ready" once every one has its first event (``ready``),
    then, when every stream has ended (or ``timeout``), the latencies (µs) and lines per viewer."""
    request = f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    selector = selectors.DefaultSelector()
    viewers: list[_Viewer] = []
    for n in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(request.encode())
        sock.setblocking(False)
        viewer = _Viewer(sock)
        viewers.append(viewer)
        selector.register(sock, selectors.EVENT_READ, viewer)
        if n % 100 == 99:
            _pump(selector, 0, ready)  # drain what arrived while connecting
    latencies: list[int] = []
    deadline = time.monotonic() + timeout
    said_ready = False
    open_ = count
    while open_ and time.monotonic() < deadline:
        for viewer, delays in _pump(selector, 1.0, ready):
            latencies += delays
            if viewer.ended:
                open_ -= 1
        if not said_ready and all(v.ready for v in viewers):
            print(json.dumps({"ready": True}), flush=True)
            said_ready = True
    lines = [v.lines for v in viewers]
    cpu = os.times()
    report = {"latencies_us": latencies, "lines": lines, "cpu_s": cpu.user + cpu.system}
    print(json.dumps(report), flush=True)
    for viewer in viewers:
        viewer.sock.close()


_BUFFER = bytearray(1 << 16)
_VIEW = memoryview(_BUFFER)


def _pump(
    selector: selectors.BaseSelector, wait: float, ready: bytes
) -> list[tuple[_Viewer, list[int]]]:
    got: list[tuple[_Viewer, list[int]]] = []
    for key, _ in selector.select(wait):
        viewer: _Viewer = key.data
        try:
            size = viewer.sock.recv_into(_BUFFER)  # no allocation per read
        except BlockingIOError:
            continue
        now = time.time_ns()
        data = bytes(_VIEW[:size])
        if not data:
            selector.unregister(viewer.sock)
            viewer.ended = True
            got.append((viewer, []))
            continue
        text = viewer.buffer + data
        cut = text.rfind(b"\n\n") + 2
        whole, viewer.buffer = text[:cut], text[cut:]
        if not viewer.ready and ready in whole:
            viewer.ready = True
        delays = []
        at = whole.find(MARK)
        while at >= 0:
            start = at + len(MARK)
            stamp = int(whole[start : whole.index(b'"', start)])
            delays.append((now - stamp) // 1000)
            at = whole.find(MARK, start)
        viewer.lines += len(delays)
        got.append((viewer, delays))
    return got
