"""A small reader of a run's Durable Stream: catch-up reads, then long-poll, echoing the cursor,
so a CDN in front of the server can cache and collapse what many readers ask for.

``follow`` yields each line once (merged by ``seq``, whatever a cache or a retry repeats) and
returns at the stream's close; network errors and 5xx are retried from the last offset.
``jobtail tail --cdn`` can print what it yields::

    for line in follow("https://cdn.example.com/v1/stream/runs/019a..."):
        print(line["seq"], line["message"])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx


class StreamReadError(Exception):
    """The server refused the read (4xx): the message says why."""


def follow(
    url: str,
    *,
    offset: str = "-1",
    client: httpx.Client | None = None,
    token: str | None = None,
    api_key: str | None = None,
    retry_delays: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 5.0),
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict[str, Any]]:
    """Lines of the run stream at ``url`` from ``offset`` to its close, each once, in order."""
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(10, read=90))
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    last_seq, cursor, live, failures = 0, None, False, 0
    try:
        while True:
            params = {"offset": offset}
            if live:
                params["live"] = "long-poll"
            if cursor:
                params["cursor"] = cursor
            if token:
                params["token"] = token
            try:
                response = http.get(url, params=dict(sorted(params.items())), headers=headers)
            except httpx.TransportError:
                response = None
            if response is None or response.status_code >= 500:
                sleep(retry_delays[min(failures, len(retry_delays) - 1)])
                failures += 1
                continue
            failures = 0
            if response.status_code >= 400:
                raise StreamReadError(f"{response.status_code}: {response.text}")
            if response.status_code == 200:
                for line in response.json():
                    if line["seq"] > last_seq:  # a repeat from a cache or a retry: skip
                        last_seq = line["seq"]
                        yield line
            if response.headers.get("stream-closed") == "true":
                return
            offset = response.headers.get("stream-next-offset", offset)
            cursor = response.headers.get("stream-cursor", cursor)
            live = live or response.headers.get("stream-up-to-date") == "true"
    finally:
        if own:
            http.close()
