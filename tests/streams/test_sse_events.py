"""The SSE read's events as the route yields them: each batch of data goes out in the same send
as its control event, so a reader that stops at the first complete event after a marker (the
conformance suite's ``fetchSSE`` does, and a payload may hold the marker's text) still sees the
control that says where the stream is."""

from __future__ import annotations

import asyncio
from pathlib import Path

from jobtail.store.sqlite import SQLiteStore
from jobtail.streams.base import AppendRequest, CreateRequest
from jobtail.streams.service import Streams
from jobtail.streams.sqlite import SQLiteStreams
from jobtail.web.stream_responses import sse_events


async def sends(streams: Streams, path: str) -> list[str]:
    first = await streams.read(path, "-1")
    return [event.decode() async for event in sse_events(path, streams, first, "c1")]


def test_data_and_its_control_share_one_send(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    generic = SQLiteStreams(tmp_path / "store.db")
    streams = Streams.over(store, generic, sse_seconds=5)
    try:
        body = b'{"attack":"try\\r\\n\\r\\nevent: control\\r\\ndata: {\\"bad\\":true}"}'
        generic.create("s", CreateRequest(content_type="application/json", body=body))
        generic.append("s", AppendRequest(body=b'{"n":2}', close=True))
        events = asyncio.run(sends(streams, "s"))
    finally:
        streams.close()
        store.close()
    assert events, "no send at all"
    for event in events:
        assert event.startswith("event: data\n") and event.endswith("\n\n")
        assert event.count("event: control\n") == 1
        assert event.rindex("event: control\n") > event.rindex("event: data\n")
    assert '"streamClosed":true' in events[-1]
