"""Search of a run inside PostgreSQL: ``strpos``, ``ILIKE`` or ``~``/``~*`` over the visible text.

The SQL is one function, ``jobtail_search`` (``supabase/migrations/0008_search.sql``), which
PostgreSQL and Supabase call alike, one window of seqs per call. On a direct connection each
call runs under ``SET LOCAL statement_timeout`` (the time left before the deadline), so a
pattern that backtracks is cancelled by the server and a search that runs out of time still
says how far it got; over PostgREST the windows shrink to what fits a tenth of a second
(``Windows``). ANSI escapes are removed in SQL (``regexp_replace``, only on lines that hold
one). Case folding is the database's ``lower``/``ILIKE``, which follows its locale (under the C
locale only ASCII letters fold).

A Python pattern runs as a PostgreSQL regular expression (ARE) only once translated to the same
meaning (``pg_pattern``: ``\\b`` is ``\\y`` there, ``.`` must not match a newline, ``$`` may sit
before a final newline); anything the translation does not know returns None and the search
falls back to matching in Python, as does a pattern PostgreSQL refuses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from .base import LEVELS, level_number
from .matching import (
    SearchHits,
    SearchQuery,
    SearchTimeoutError,
    Windows,
    like_pattern,
)

WINDOW = 100_000
SEARCH_SQL = "select s from jobtail_search(%s, %s, %s, %s, %s, %s, %s) as s"
_SIMPLE_ESCAPES = set("dDsSwWAZafnrtv") | {"\\"}
_LETTERS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def pg_pattern(text: str) -> str | None:
    """``text`` (Python's ``re`` dialect) as a PostgreSQL ARE with the same matches, or None."""
    if "(?" in text.replace("(?:", "").replace("(?=", "").replace("(?!", ""):
        return None  # inline flags, named groups, lookbehind: left to Python
    out: list[str] = []
    in_class, i = False, 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text):
                return None
            nxt = text[i + 1]
            if nxt in "bB" and not in_class:
                out.append("\\y" if nxt == "b" else "\\Y")
            elif nxt == "x" and len(text) >= i + 4:
                out.append(f"\\u00{text[i + 2 : i + 4]}")  # ARE's \x reads any number of digits
                i += 2
            elif nxt in _SIMPLE_ESCAPES or nxt not in _LETTERS:
                out.append(c + nxt)
            else:
                return None  # \b in a class, \u, \N{...}, back references, octal
            i += 2
            continue
        if in_class:
            if c == "[" and i + 1 < len(text) and text[i + 1] in ":=.":
                return None  # [[:alpha:]] is a class in ARE, a set of characters in Python
            in_class = c != "]"
            out.append(c)
        elif c == "[":
            start = i + 1 + (text[i + 1 : i + 2] == "^")
            start += text[start : start + 1] == "]"  # a first ] is a literal in both
            out.append(text[i:start])
            in_class, i = True, start
            continue
        elif c == ".":
            out.append("[^\\n]")
        elif c == "$":
            out.append("(?=\\n?$)")
        elif c == "{" and not _quantifier(text, i):
            if text[i + 1 : i + 2] == ",":
                return None  # {,n}: Python's {0,n}
            out.append("\\{")
        else:
            out.append(c)
        i += 1
    return None if in_class else "".join(out)


def _quantifier(text: str, i: int) -> bool:
    """Whether ``{`` at ``i`` opens ``{m}``, ``{m,}`` or ``{m,n}`` (else Python reads a ``{``)."""
    end = text.find("}", i)
    body = text[i + 1 : end] if end > 0 else ""
    low, comma, high = body.partition(",")
    return bool(low.isdigit() and (high.isdigit() or high == "" or not comma))


@dataclass(frozen=True, slots=True)
class Plan:
    """How ``jobtail_search`` matches a query: its ``p_mode`` and ``p_needle``."""

    mode: str
    needle: str = ""


def plan(query: SearchQuery, folds_unicode: bool) -> Plan | None:
    """The SQL matching of ``query``; None if it must be matched in Python (also a needle with
    non-ASCII letters to fold where the database's locale folds only ASCII)."""
    if not query.text:
        return Plan("all")
    if not (query.case_sensitive or folds_unicode or query.text.isascii()):
        return None
    if not query.regex:
        if query.case_sensitive:
            return Plan("strpos", query.text)
        return Plan("ilike", like_pattern(query.text))
    pattern = pg_pattern(query.text)
    if pattern is None:
        return None
    return Plan("regex" if query.case_sensitive else "iregex", pattern)


def min_level_number(query: SearchQuery) -> int:
    """The level bound in SQL: none at DEBUG (the lowest), so lines of any level count."""
    level = level_number(query.min_level) if query.min_level else 0
    return level if level > LEVELS["DEBUG"] else 0


class PatternRefusedError(Exception):
    """The database refused the regular expression: the caller matches in Python."""


class CancelledError(Exception):
    """A call hit its time limit: the search stops where it got."""


Fetch = Callable[[int, int, int, float], list[int]]
"""One call of ``jobtail_search``: ``(after, upto, want, deadline)`` to the matching seqs."""


def scan(
    fetch: Fetch,
    *,
    after: int,
    upto: int,
    limit: int,
    deadline: float,
    window: int = WINDOW,
    page: int | None = None,
) -> SearchHits | None:
    """``LogStore.search`` one window of seqs per ``fetch``, within the deadline. ``page``: the
    most seqs one call may return (PostgREST's max rows); a full page is asked again from its
    last seq. None if the database refused the pattern."""
    hits: list[int] = []
    cursor, windows = after, Windows(window)
    while cursor < upto and time.monotonic() < deadline:
        began = time.monotonic()
        end = windows.span(cursor, upto)
        want = limit - len(hits) if page is None else min(limit - len(hits), page)
        try:
            rows = fetch(cursor, end, want, deadline)
        except PatternRefusedError:
            return None
        except CancelledError:
            break
        hits += rows
        if len(hits) >= limit:
            return SearchHits(hits, hits[-1])
        cursor = rows[-1] if page is not None and len(rows) == want else end
        windows.took(time.monotonic() - began)
    if cursor == after < upto:
        raise SearchTimeoutError(after)
    return SearchHits(hits, cursor)


def search(
    conn: psycopg.Connection[Any],
    run_id: str,
    query: SearchQuery,
    how: Plan,
    *,
    after: int,
    upto: int,
    limit: int,
    deadline: float,
    window: int = WINDOW,
) -> SearchHits | None:
    """``scan`` on a connection, each window one statement under the time left before the
    deadline (QueryCanceled ends it). None if PostgreSQL refuses the pattern."""
    level = min_level_number(query)

    def fetch(lo: int, hi: int, want: int, deadline: float) -> list[int]:
        left_ms = max(1, int((deadline - time.monotonic()) * 1000))  # 0 would mean no limit
        args = (run_id, lo, hi, level, how.mode, how.needle, want)
        try:
            with conn.transaction():
                conn.execute("select set_config('statement_timeout', %s, true)", (str(left_ms),))
                return [row[0] for row in conn.execute(SEARCH_SQL, args).fetchall()]
        except psycopg.errors.QueryCanceled:
            raise CancelledError from None
        except psycopg.errors.InvalidRegularExpression:
            raise PatternRefusedError from None

    return scan(fetch, after=after, upto=upto, limit=limit, deadline=deadline, window=window)
