"""Durable Streams request headers to values: each parser names the header and what a valid
one looks like (``StreamInvalid``, a 400), so a bad request never reaches the store."""

from __future__ import annotations

import re
from datetime import datetime

from fastapi import Request

from ..store import RunStatus
from ..streams import Expiry, Producer, StreamInvalid
from ..streams.base import MAX_SAFE_INT

_TTL = re.compile(r"^(0|[1-9][0-9]*)$")
_INT = re.compile(r"^(0|[1-9][0-9]*)$")


def flag(request: Request, name: str) -> bool:
    return request.headers.get(name, "").strip().lower() == "true"


def expiry(request: Request) -> Expiry:
    ttl_text, expires_text = (
        request.headers.get("stream-ttl"),
        request.headers.get("stream-expires-at"),
    )
    ttl = expires = None
    if ttl_text is not None:
        if not _TTL.match(ttl_text.strip()):
            raise StreamInvalid("Stream-TTL must be a whole number of seconds, like 3600")
        ttl = int(ttl_text)
    if expires_text is not None:
        try:
            expires = datetime.fromisoformat(expires_text.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise StreamInvalid("Stream-Expires-At must be an RFC 3339 timestamp") from exc
        if expires.tzinfo is None:
            raise StreamInvalid("Stream-Expires-At needs a time zone offset")
    return Expiry(ttl, expires)


def producer(request: Request) -> Producer | None:
    names = ("producer-id", "producer-epoch", "producer-seq")
    values = [request.headers.get(name) for name in names]
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        raise StreamInvalid("send Producer-Id, Producer-Epoch and Producer-Seq together")
    pid, epoch, seq = (str(v).strip() for v in values)
    if not pid:
        raise StreamInvalid("Producer-Id must not be empty")
    numbers = []
    for name, text in (("Producer-Epoch", epoch), ("Producer-Seq", seq)):
        if not _INT.match(text) or int(text) > MAX_SAFE_INT:
            raise StreamInvalid(f"{name} must be an integer from 0 to 2^53-1")
        numbers.append(int(text))
    return Producer(pid, numbers[0], numbers[1])


def count(request: Request, name: str) -> int:
    text = request.headers.get(name, "0").strip()
    if not _INT.match(text):
        raise StreamInvalid(f"{name} must be a non-negative integer")
    return int(text)


def run_status(request: Request) -> RunStatus:
    """Extension for run streams: how a close ends the run (``Jobtail-Run-Status``)."""
    value = request.headers.get("jobtail-run-status", "succeeded").strip().lower()
    if value not in ("succeeded", "failed"):
        raise StreamInvalid("Jobtail-Run-Status must be succeeded or failed")
    return RunStatus(value)


def fork_source(request: Request) -> str | None:
    value = request.headers.get("stream-forked-from")
    if value is None:
        return None
    value = value.strip()
    marker = "/v1/stream/"
    return value.split(marker, 1)[1] if marker in value else value.lstrip("/")


def sub_offset(request: Request) -> int:
    text = request.headers.get("stream-fork-sub-offset")
    if text is None:
        return 0
    if not _INT.match(text.strip()):
        raise StreamInvalid("Stream-Fork-Sub-Offset must be a non-negative integer")
    return int(text)
