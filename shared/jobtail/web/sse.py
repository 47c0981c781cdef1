"""Tail events to Server-Sent Events: a pure mapping, table-tested against the wire bytes.

Ids are ``<run_id>:<seq>`` so a reconnecting EventSource names both the run and the cursor.
Lines are default (``message``) events; status changes are ``event: status``; the end carries
``{"status", "last_seq"}`` and the id of the last line so a reconnect after it gets a 204.
Lines are framed by ``framing(run_id)``: the store (replays, in bulk) and the tail (live
batches, once for every viewer) build the same bytes ``line_event`` would, without it.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec
from sse_starlette import ServerSentEvent
from starlette.datastructures import MutableHeaders
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..store.base import Framing, LogLine, frame_lines
from ..tail import (
    EncodedLinesEvent,
    EndEvent,
    LinesEvent,
    StatusEvent,
    StoreDownEvent,
    TailEvent,
    WindowEndEvent,
)
from .handoff import KEY as HANDOFF
from .handoff import Handoff
from .writer import Writer

SEP = "\n"
CURSOR_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}:\d{1,18}$"
_CURSOR = re.compile(r"^(?P<run>[A-Za-z0-9][A-Za-z0-9._-]{0,127}):(?P<seq>\d{1,18})$")


_encoder = msgspec.json.Encoder(enc_hook=str)


def _json(data: dict[str, Any]) -> str:
    """Compact JSON; control characters are escaped, so a data field is always one line."""
    return _encoder.encode(data).decode()


def event_id(run_id: str, seq: int) -> str:
    return f"{run_id}:{seq}"


def parse_event_id(value: str) -> tuple[str, int]:
    """Split a ``Last-Event-ID``; ValueError says what a valid one looks like."""
    match = _CURSOR.match(value.strip())
    if match is None:
        raise ValueError(f"Last-Event-ID {value!r} is not of the form <run_id>:<seq>")
    return match["run"], int(match["seq"])


@functools.lru_cache(maxsize=1024)
def framing(run_id: str) -> Framing:
    """A line as an SSE event: ``id: <run_id>:<seq>``, then its JSON as the ``data`` field.
    One object per run, shared by its viewers (``fanout.Published.wire`` finds it by identity)."""
    return Framing(f"id: {run_id}:", f"{SEP}data: ", SEP * 2)


def line_event(run_id: str, line: LogLine) -> ServerSentEvent:
    return ServerSentEvent(_json(line.to_json()), id=event_id(run_id, line.seq), sep=SEP)


def encode(event: TailEvent, run_id: str, retry_ms: int = 1000) -> bytes:
    """Wire bytes of a tail event; a batch of lines becomes one chunk of consecutive events."""
    if isinstance(event, EncodedLinesEvent):
        return event.data
    if isinstance(event, LinesEvent):
        return frame_lines(event.lines, framing(run_id))
    return to_sse(event, run_id, retry_ms).encode()


def encode_within(
    event: LinesEvent, run_id: str, budget: int, first: bool = False
) -> tuple[bytes, int | None]:
    """The leading lines of a batch whose events fit in ``budget`` bytes, and the last seq
    among them (None if none fit). ``first`` lets one line through whatever its size, so a
    window always makes progress."""
    chunks: list[bytes] = []
    size, last = 0, None
    frame = framing(run_id)
    for line in event.lines:
        data = frame_lines((line,), frame)
        if size + len(data) > budget and not (first and not chunks):
            break
        chunks.append(data)
        size += len(data)
        last = line.seq
    return b"".join(chunks), last


def to_sse(event: TailEvent, run_id: str, retry_ms: int = 1000) -> ServerSentEvent:
    """One SSE event; lines go through ``encode`` (one event per line of the batch)."""
    if isinstance(event, StatusEvent):
        run = event.run
        data = {"run_id": run_id, "status": run.status.value, "last_seq": run.last_seq}
        return ServerSentEvent(_json(data), event="status", sep=SEP)
    if isinstance(event, EndEvent):
        run = event.run
        data = {"run_id": run_id, "status": run.status.value, "last_seq": run.last_seq}
        if run.error:
            data["error"] = run.error
        return ServerSentEvent(_json(data), event="end", id=event_id(run_id, run.last_seq), sep=SEP)
    if isinstance(event, StoreDownEvent):
        return store_down(event, run_id)
    if isinstance(event, WindowEndEvent):
        # An id with no data moves the browser's Last-Event-ID without dispatching an event.
        return ServerSentEvent(
            id=event_id(run_id, event.cursor),
            comment="window closed: resume with Last-Event-ID",
            retry=retry_ms,
            sep=SEP,
        )
    raise TypeError(f"not a tail event: {event!r}")


STORE_DOWN = "the log store is unreachable; retrying"


def store_down(event: StoreDownEvent, run_id: str) -> ServerSentEvent:
    """A ``status`` event (the last known status, unchanged) that says the store is failing,
    so viewers are told instead of left in silence; a comment before the run was first read.
    It names no error text: that could hold the database's address."""
    text = f"{STORE_DOWN} (attempt {event.attempt}, next in {event.retry_in:g} s)"
    if event.run is None:
        return ServerSentEvent(comment=text, sep=SEP)
    data = {
        "run_id": run_id,
        "status": event.run.status.value,
        "last_seq": event.run.last_seq,
        "store": "unreachable",
        "detail": text,
        "retry_in": event.retry_in,
    }
    return ServerSentEvent(_json(data), event="status", sep=SEP)


class StreamResponse(Response):
    """A ``text/event-stream`` response that costs two tasks per viewer, one of them idle.

    sse-starlette's response runs four tasks per response in an anyio task group (the
    stream, a ping loop, a disconnect listener, a shutdown listener); with thousands of viewers
    their wake-ups, cancel scopes and the depth of the request's await chain (every middleware,
    the router, the endpoint) were most of the server's CPU per line (``python -m bench --only
    fanout``). Here a task of its own sends the body, so waking it for a batch resumes a few
    generators, not the whole request; the request's task only waits for the client to leave,
    sending the keep-alive comment when ``ping`` seconds pass without a message (0: never). A
    disconnect cancels the body task, whose generators clean up in their ``finally``. A
    shutdown ends the streams through the tail (``Tailer.stop_following``), not through a
    listener per response. ``on_close`` runs once the response is over, however it ended.
    With a ``writer`` the tail's follower writes caught-up lines itself (``web.writer``), and
    the body task does not even wake for them. Under ``web.handoff``'s layer the body goes on
    after the request's chain has returned, with the server's own receive and send."""

    media_type = "text/event-stream"

    def __init__(
        self,
        body: AsyncIterator[bytes],
        *,
        ping: float,
        headers: Mapping[str, str] | None = None,
        on_close: Callable[[], None] | None = None,
        writer: Writer | None = None,
    ) -> None:
        self.body_iterator = body
        self.writer = writer
        self.status_code = 200
        self.background = None
        self.ping = ping
        self.on_close = on_close
        merged = MutableHeaders(headers=dict(headers or {}))
        merged.setdefault("Cache-Control", "no-store")
        merged["Connection"] = "keep-alive"
        merged["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
        self.init_headers(merged)
        self._done = False  # the last message is sent (or being sent): no more pings
        self._lock = asyncio.Lock()  # the last message and a ping never cross

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handoff: Handoff | None = scope.get(HANDOFF)
        taken = False
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            if scope.get("method") == "HEAD":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            elif handoff is not None:  # the body goes on past the request's chain
                handoff.take(self._rest, self._close)
                taken = True
            else:
                await self._stream(receive, send)
        finally:
            if not taken:
                self._close()

    async def _rest(self, receive: Receive, send: Send) -> None:
        """The body, handed off (``web.handoff``): with the server's receive and send."""
        try:
            await self._stream(receive, send)
        finally:
            self._close()

    def _close(self) -> None:
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()

    async def _stream(self, receive: Receive, send: Send) -> None:
        waiter = asyncio.current_task()
        assert waiter is not None
        body = asyncio.get_running_loop().create_task(self._body(send))

        watching = True

        def finished(_: asyncio.Task[None]) -> None:
            if watching:
                waiter.cancel()  # wake the wait below: the body is over

        body.add_done_callback(finished)
        try:
            await self._watch(receive, send, body)
        except asyncio.CancelledError:
            if not body.done() or waiter.uncancel() > 0:
                raise  # cancelled from outside (a shutdown): the body goes too, in finally
        finally:
            watching = False
            if not body.done():
                body.cancel()
            await asyncio.wait([body])
        if not body.cancelled():
            body.result()  # its error, if it failed

    async def _watch(self, receive: Receive, send: Send, body: asyncio.Task[None]) -> None:
        """Until the client leaves: keep-alive comments while idle; then end the body."""
        while not body.done():
            try:
                async with asyncio.timeout(self.ping or None):
                    message = await receive()
            except TimeoutError:
                async with self._lock:
                    if not self._done:
                        await send(
                            {"type": "http.response.body", "body": _ping(), "more_body": True}
                        )
                continue
            if message["type"] == "http.disconnect":
                body.cancel()
                return

    async def _body(self, send: Send) -> None:
        body, writer = self.body_iterator, self.writer
        if writer is not None:
            writer.attach(send)
        try:
            async for chunk in body:
                if writer is not None:
                    await writer.settle()  # the follower's writes first: they came first
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if writer is not None:
                await writer.settle()
        finally:
            if writer is not None:
                writer.detach()
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
        async with self._lock:
            self._done = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _ping() -> bytes:
    """sse-starlette's keep-alive comment, ``: ping - <UTC time>``."""
    return ServerSentEvent(comment=f"ping - {datetime.now(UTC)}", sep=SEP).encode()
