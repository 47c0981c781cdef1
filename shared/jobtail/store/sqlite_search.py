"""Search of a run inside SQLite: one statement per window of seqs, no Python object per line.

A substring is ``instr(message, ?)`` (case sensitive) or ``message LIKE '%…%' ESCAPE '\\'``
(SQLite's LIKE folds ASCII letters only: an ASCII needle matches as in most log viewers, while a
needle with other letters is folded by Python's ``casefold`` in a registered function). Lines
holding an ANSI escape and regular expressions go through that registered function, which
matches the visible text; a regex's function runs only on the lines that hold a piece of text
every match needs (``required_text``), as ``instr``/``LIKE`` finds them. The deadline is kept by
a progress handler, which interrupts a statement, and by the regex timeout inside the function;
windows of seqs let a search that runs out of time still say how far it got.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from .base import LEVELS, StoreError, level_number
from .matching import (
    SearchHits,
    SearchQuery,
    SearchTimeoutError,
    Windows,
    like_pattern,
    required_text,
)

WINDOW = 100_000
"""Seqs per statement at most: a window cut short by the deadline is the work that is lost."""
ESC = "instr(message, char(27)) > 0"


def condition(query: SearchQuery) -> tuple[str, list[object], bool]:
    """The SQL test of a line, its parameters, and whether it calls ``jobtail_match``."""
    if not query.text:
        return "1", [], False
    if query.regex:
        text, folds = required_text(query)
        if not text:
            return "jobtail_match(message)", [], True
        test, arg = _contains(text, folds)
        return f"CASE WHEN {ESC} OR {test} THEN jobtail_match(message) END", [arg], True
    if not (query.case_sensitive or query.text.isascii()):
        return "jobtail_match(message)", [], True
    test, arg = _contains(query.text, not query.case_sensitive)
    return f"CASE WHEN {ESC} THEN jobtail_match(message) ELSE {test} END", [arg], True


def _contains(text: str, folds: bool) -> tuple[str, str]:
    """Whether a message holds ``text`` (ignoring ASCII case if ``folds``), in SQL."""
    if folds:
        return "message LIKE ? ESCAPE '\\'", like_pattern(text)
    return "instr(message, ?) > 0", text


def search(
    db: sqlite3.Connection,
    run_id: str,
    query: SearchQuery,
    *,
    after: int,
    upto: int,
    limit: int,
    deadline: float,
    window: int = WINDOW,
) -> SearchHits:
    """``LogStore.search`` on a connection, ``window`` seqs per statement."""
    test, args, calls = condition(query)
    timed_out = _register(db, query, deadline) if calls else [False]
    sql = f"SELECT seq FROM runs_logs WHERE run_id = ? AND seq > ? AND seq <= ? AND {test}"
    if query.min_level is not None and level_number(query.min_level) > LEVELS["DEBUG"]:
        sql += f" AND level_no >= {level_number(query.min_level)}"
    sql += " ORDER BY seq LIMIT ?"
    db.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    hits: list[int] = []
    cursor, windows = after, Windows(window)
    try:
        while cursor < upto:
            end, began = windows.span(cursor, upto), time.monotonic()
            params = [run_id, cursor, end, *args, limit - len(hits)]
            try:
                hits += [row[0] for row in db.execute(sql, params)]
            except sqlite3.OperationalError as exc:
                if not (timed_out[0] or time.monotonic() > deadline):
                    raise StoreError(f"SQLite search failed: {exc}") from exc
                break
            if len(hits) >= limit:
                return SearchHits(hits, hits[-1])
            cursor = end
            windows.took(time.monotonic() - began)
            if time.monotonic() > deadline:
                break
    finally:
        db.set_progress_handler(None, 0)
    if cursor == after < upto:
        raise SearchTimeoutError(after)
    return SearchHits(hits, cursor)


def _register(db: sqlite3.Connection, query: SearchQuery, deadline: float) -> list[bool]:
    """Register ``jobtail_match`` for this query; the list says whether a match timed out."""
    matches: Callable[[str], bool] = query.matcher(deadline)
    timed_out = [False]

    def match(message: str) -> bool:
        try:
            return matches(message)
        except TimeoutError:
            timed_out[0] = True
            raise

    db.create_function("jobtail_match", 1, match, deterministic=True)
    return timed_out
