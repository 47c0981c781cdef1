"""300 SSE viewers of a live run under a real ``jobtail serve``, 100 of which never read their
socket (they connect, send the request and stop, with a small receive buffer): the 200 readers
get every line once and ``end``; the server's memory does not grow with what the stalled viewers
were owed (the fan-out log is shared and bounded, a lagging viewer is resynced from the store,
uvicorn's flow control stops writing to a full socket); ``/healthz`` answers within 2 s
throughout; the file descriptors come back when the stalled sockets close."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..figures import FIGURES
from ..waiting import wait_for
from .harness import Server

pytestmark = pytest.mark.faults

LINES, PAD = 1000, 900  # about 1 KB per event: 1 MB owed to each viewer
READERS, STALLED = 200, 100
_EVENT = re.compile(rb"(?:^|\n\n)id: [^:\n]+:(\d+)\ndata: ([^\n]*)")


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def sockets(pid: int) -> int:
    """Open sockets of ``pid``; an fd the server closes between the listing and its readlink
    (the server is live, its store and clients open and close files) is simply not counted."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except FileNotFoundError:
            continue
        count += target.startswith("socket:")
    return count


def stalled_viewer(port: int, path: str) -> socket.socket:
    """Connects, asks for the stream, never reads (a 4 KB receive buffer: TCP backs up soon)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
    return sock


class Readers:
    """``count`` viewers reading the whole response body concurrently (the server closes it
    after ``end``), in an event loop of their own thread."""

    def __init__(self, url: str, path: str, count: int) -> None:
        self.url, self.path, self.count = url, path, count
        self.started = 0  # viewers that got their first bytes (subscribed)
        self.bodies: list[bytes] = []
        self.thread = threading.Thread(target=lambda: asyncio.run(self._all()), daemon=True)
        self.thread.start()

    async def _all(self) -> None:
        limits = httpx.Limits(max_connections=self.count)
        timeout = httpx.Timeout(10, read=30)
        async with httpx.AsyncClient(base_url=self.url, limits=limits, timeout=timeout) as client:

            async def one() -> bytes:
                chunks = []
                async with client.stream("GET", self.path) as response:
                    assert response.status_code == 200
                    async for chunk in response.aiter_bytes():
                        if not chunks:
                            self.started += 1
                        chunks.append(chunk)
                return b"".join(chunks)

            self.bodies = await asyncio.gather(*(one() for _ in range(self.count)))


def parse(body: bytes) -> tuple[list[int], dict[str, Any] | None]:
    """The seqs of the line events in order, and the ``end`` event's data."""
    seqs = [int(match[1]) for match in _EVENT.finditer(body)]
    end = re.search(rb"\nevent: end\ndata: ([^\n]*)", body)
    return seqs, json.loads(end[1]) if end else None


def test_300_viewers_of_which_100_never_read(tmp_path: Path) -> None:
    go = tmp_path / "go"
    server = Server(
        tmp_path,
        FAULT_LINES=str(LINES),
        FAULT_PACE="0.004",
        FAULT_PAD=str(PAD),
        FAULT_GO=str(go),
    )
    stalled: list[socket.socket] = []
    health: list[float] = []
    probing = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            while not probing.wait(0.2):
                started = time.monotonic()
                try:
                    ok = client.get("/healthz").status_code == 200
                except httpx.TransportError:
                    ok = False
                health.append(time.monotonic() - started if ok else float("inf"))

    try:
        server.start()
        assert server.proc is not None
        pid = server.proc.pid
        fds_before, sockets_before = open_fds(pid), sockets(pid)
        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        run_id = server.generate()  # its job waits for the go file
        path = f"/runs/petstore/slow/logs?run_id={run_id}"
        stalled = [stalled_viewer(server.port, path) for _ in range(STALLED)]
        readers = Readers(server.url, path, READERS)
        wait_for(lambda: readers.started == READERS, 20, "the readers to subscribe")
        wait_for(lambda: open_fds(pid) >= fds_before + READERS + STALLED, 10, "every viewer")
        rss_before = rss_kb(pid)
        started = time.monotonic()
        go.touch()
        readers.thread.join(30)
        took = time.monotonic() - started
        rss_after = rss_kb(pid)
        bodies = readers.bodies
        assert len(bodies) == READERS
        final = server.final(run_id)
        assert len(final) > LINES and server.status(run_id)["status"] == "succeeded"
        expected = list(range(1, len(final) + 1))
        for body in bodies:
            seqs, end = parse(body)
            assert seqs == expected, "a reader missed or repeated a line"
            assert end is not None and end["last_seq"] == len(final)
        first = [json.loads(m[2]) for m in _EVENT.finditer(bodies[0])]
        assert first == final  # the bytes carry the stored lines themselves
        FIGURES["lines checked against an SSE viewer"] += READERS * len(final)
        FIGURES["stalled SSE viewers"] += STALLED
        owed = STALLED * len(bodies[0]) // 1024
        grew = rss_after - rss_before
        print(
            f"\n{READERS} readers + {STALLED} stalled: {took:.1f} s, RSS {rss_before // 1024}"
            f" -> {rss_after // 1024} MB (+{grew // 1024} MB; the stalled were owed"
            f" {owed // 1024} MB), /healthz max {max(health):.3f} s"
        )
        assert grew < owed // 4, "the server buffers what stalled viewers did not read"
        assert health and max(health) < 2.0, health
        for sock in stalled:
            sock.close()
        stalled = []
        wait_for(lambda: sockets(pid) <= sockets_before + 2, 10, "the stalled sockets' fds")
    finally:
        probing.set()
        for sock in stalled:
            sock.close()
        server.stop()
