"""Text made storable and bounded where a line is made, before it reaches any store.

Lone surrogates (a ``surrogateescape``-decoded file name, say), which UTF-8 cannot encode,
become visible escapes, so one odd line can never block the lines after it; messages and string
fields longer than ``MAX_LINE_CHARS`` are cut and marked, so no line outgrows what a store and
a viewer take. Pure functions, apart from ``logger``, which numbers and commits the lines they
clean (and re-exports these names), so that each can be read and tested on its own.
"""

from __future__ import annotations

import re
from typing import Any

MAX_LINE_CHARS = 65_536
"""Longer messages (and string fields) are cut to this many characters and marked."""

TRUNCATION_MARKER = " … [truncated {dropped} characters]"

_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with lone surrogates, which UTF-8 cannot encode, as visible ``\\udcXX`` escapes."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def truncate(message: str, limit: int = MAX_LINE_CHARS) -> tuple[str, int]:
    """Cut a message to ``limit`` characters plus a marker; return it and what was dropped."""
    if len(message) <= limit:
        return message, 0
    dropped = len(message) - limit
    return message[:limit] + TRUNCATION_MARKER.format(dropped=dropped), dropped


def storable_fields(value: Any, limit: int) -> tuple[Any, int]:
    """Fields with storable, bounded strings (keys too); return them and characters dropped."""
    if isinstance(value, str):
        text, dropped = truncate(storable(value), limit)
        return text, dropped
    if isinstance(value, dict):
        out, total = {}, 0
        for key, item in value.items():
            clean, dropped = storable_fields(item, limit)
            out[storable(str(key))] = clean
            total += dropped
        return out, total
    if isinstance(value, list | tuple):
        items = [storable_fields(item, limit) for item in value]
        return [item for item, _ in items], sum(dropped for _, dropped in items)
    return value, 0
