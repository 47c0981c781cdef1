"""A committed log line and its wire forms: the JSON every reader gets, the text download,
and a transport's framing (``Framing``) built for many lines in one buffer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

_json = msgspec.json.Encoder(enc_hook=str)


@dataclass(frozen=True, slots=True)
class LogLine:
    """One committed log line. JSON keeps the first prototype's names for page compatibility."""

    seq: int
    timestamp: datetime
    log_level: str
    message: str
    fields: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "seq": self.seq,
            "timestamp": self.timestamp.isoformat(),
            "log_level": self.log_level,
            "message": self.message,
        }
        if self.fields:
            data["fields"] = self.fields
        return data


@dataclass(frozen=True, slots=True)
class Framing:
    """How ``read_framed`` wraps each line's JSON (``LogLine.to_json``, compact): ``head``,
    the seq, ``mid``, the JSON, ``tail``; without a head, just the JSON and ``tail`` (JSON
    Lines). A transport's framing (SSE's ``id: <run>:<seq>\\ndata: ...``) is built by the store
    in bulk this way, with no Python object per line where the backend can avoid one."""

    head: str | None = None
    mid: str = ""
    tail: str = "\n"
    text: bool = False
    """Each line as ``line_text`` makes it (the text download) instead of its JSON."""


JSON_LINES = Framing()
TEXT_LINES = Framing(text=True)


@dataclass(frozen=True, slots=True)
class FramedLines:
    """``count`` consecutive lines already in their wire form; ``last_seq`` is the seq of the
    last one (0 when there is none)."""

    data: bytes
    count: int
    last_seq: int


def line_json(line: LogLine) -> bytes:
    """A line's JSON as every reader gets it: compact, control characters escaped, UTF-8."""
    return _json.encode(line.to_json())


def line_text(line: LogLine) -> str:
    """A line in the text download: ``<timestamp to the ms> <level padded to 8> <message>``."""
    stamp = line.timestamp.isoformat(timespec="milliseconds")
    return f"{stamp} {line.log_level:<8} {line.message}"


def frame_lines(lines: Sequence[LogLine], framing: Framing) -> bytes:
    """``lines`` in ``framing``, in one buffer: the Python path that ``read_framed`` and the
    tail's shared live batches take."""
    tail = framing.tail.encode()
    if framing.text:
        return "".join([line_text(line) + framing.tail for line in lines]).encode()
    if framing.head is None:
        return b"".join([line_json(line) + tail for line in lines])
    head, mid = framing.head.encode(), framing.mid.encode()
    return b"".join(
        [b"%s%d%s%s%s" % (head, line.seq, mid, line_json(line), tail) for line in lines]
    )
