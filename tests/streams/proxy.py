"""A small caching proxy, the part of a CDN the protocol relies on (§10): it stores ``200``
responses for their ``Cache-Control: max-age`` (never ``no-store``/``private`` ones), keyed by
path, the sorted query (offset, cursor, live...) and the Authorization header, and collapses
identical concurrent misses into one origin request. Plus long-poll readers that follow a run
through it, echoing the cursor, as the protocol's clients do. Counts origin requests."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import httpx
from starlette.types import Receive, Scope, Send

Key = tuple[str, str, str]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}
MAX_AGE = re.compile(r"max-age=(\d+)")


@dataclass
class Stored:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    expires: float = 0.0


def lifetime(headers: httpx.Headers) -> float:
    """Seconds a shared cache may keep a response; 0 = not at all."""
    control = headers.get("cache-control", "").lower()
    if "no-store" in control or "private" in control or "no-cache" in control:
        return 0.0
    found = MAX_AGE.search(control)
    return float(found.group(1)) if found else 0.0


@dataclass
class CachingProxy:
    """An ASGI app in front of ``origin`` (GET only is cached; other methods pass through)."""

    origin: str
    origin_requests: int = 0
    hits: int = 0
    collapsed: int = 0
    _cache: dict[Key, Stored] = field(default_factory=dict)
    _inflight: dict[Key, asyncio.Future[Stored]] = field(default_factory=dict)
    _client: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        response = await self.fetch(scope, receive)
        length = (b"content-length", str(len(response.body)).encode())
        await send({"type": "http.response.start", "status": response.status,
                    "headers": [*response.headers, length]})  # fmt: skip
        await send({"type": "http.response.body", "body": response.body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._client = httpx.AsyncClient(
                    base_url=self.origin,
                    timeout=120,
                    limits=httpx.Limits(max_connections=2000, max_keepalive_connections=200),
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def fetch(self, scope: Scope, receive: Receive) -> Stored:
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        query = "&".join(sorted(scope["query_string"].decode().split("&")))
        key = (scope["path"], query, headers.get("authorization", ""))
        if scope["method"] != "GET":
            return await self._origin(scope, receive, headers)
        stored = self._cache.get(key)
        if stored is not None and stored.expires > time.monotonic():
            self.hits += 1
            return stored
        waiting = self._inflight.get(key)
        if waiting is not None:
            self.collapsed += 1
            return await asyncio.shield(waiting)
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            response = await self._origin(scope, receive, headers)
            if response.expires:
                self._cache[key] = response
            future.set_result(response)
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            del self._inflight[key]
        return response

    async def _origin(self, scope: Scope, receive: Receive, headers: dict[str, str]) -> Stored:
        assert self._client is not None
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.origin_requests += 1
        forwarded = {k: v for k, v in headers.items() if k not in ("host", "content-length")}
        url = scope["path"] + (
            f"?{scope['query_string'].decode()}" if scope["query_string"] else ""
        )
        answer = await self._client.request(scope["method"], url, headers=forwarded, content=body)
        kept = [(k.encode(), v.encode()) for k, v in answer.headers.items() if k not in HOP_BY_HOP]
        ttl = lifetime(answer.headers) if answer.status_code == 200 else 0.0
        expires = time.monotonic() + ttl if ttl else 0.0
        return Stored(answer.status_code, kept, answer.content, expires)


class Connection:
    """One keep-alive HTTP/1.1 connection for GETs: hundreds of readers in one event loop
    without a pooled client's bookkeeping (httpx's pool slows down with many connections)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(*await asyncio.open_connection(host, port))

    async def get(self, target: str) -> tuple[int, dict[str, str], bytes]:
        self.writer.write(f"GET {target} HTTP/1.1\r\nHost: proxy\r\n\r\n".encode())
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {}
        for line in head[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await self.reader.readexactly(length) if length else b""
        return status, headers, body

    def close(self) -> None:
        self.writer.close()


async def follow_live(
    base: str, path: str, received: list[int], on_line: Callable[[], None]
) -> None:
    """Follow a run stream with long-poll from the start to EOF, echoing the cursor."""
    url = httpx.URL(base)
    connection = await Connection.open(url.host, url.port or 80)
    offset, cursor = "-1", ""
    try:
        while True:
            query = (
                f"cursor={cursor}&live=long-poll&offset={offset}"
                if cursor
                else (f"live=long-poll&offset={offset}")
            )
            status, headers, body = await connection.get(f"{path}?{query}")
            assert status in (200, 204), body
            if status == 200:
                received += [item["seq"] for item in json.loads(body)]
                on_line()
            if headers.get("stream-closed") == "true":
                return
            offset = headers["stream-next-offset"]
            cursor = headers.get("stream-cursor", cursor)
    finally:
        connection.close()


class Writer(Protocol):
    """What ``fan_out`` needs of a run: its id, a way to add one line, and to end it."""

    run_id: str

    def write(self, count: int) -> None: ...
    def finish(self) -> None: ...


async def fan_out(proxy_url: str, run: Writer, readers: int, lines: int) -> list[list[int]]:
    """``readers`` long-poll followers of a live run through the proxy, while it gets ``lines``
    lines one at a time (each once every follower has the previous one), then ends."""
    import anyio.to_thread

    path = f"/v1/stream/runs/{run.run_id}"
    received: list[list[int]] = [[] for _ in range(readers)]
    changed = asyncio.Event()
    tasks = [
        asyncio.create_task(follow_live(proxy_url, path, received[i], changed.set))
        for i in range(readers)
    ]
    try:
        for written in range(1, lines + 1):
            await anyio.to_thread.run_sync(run.write, 1)
            while True:
                changed.clear()
                if all(len(seqs) >= written for seqs in received):
                    break
                for task in tasks:
                    if task.done():
                        task.result()  # a reader that failed: raise its error here
                await asyncio.wait_for(changed.wait(), 60)
        await anyio.to_thread.run_sync(run.finish)
        await asyncio.wait_for(asyncio.gather(*tasks), 120)
    finally:
        for task in tasks:
            task.cancel()
    return received
