"""Search every line of a run: substring or regular expression, case option, minimum level.

The scan walks the run by seq through the store's paged ``read``, so it works on every backend;
each call stops after a time budget or a number of matches and says where to go on
(``next_after``), so a request never runs long however big the run is, and the caller pages
through by seq. ``upto`` pins the end of the scan, so the pages of one search agree even while
the run grows. (A store-level query, SQL ``LIKE``/``instr`` or PostgreSQL ``~``, would scan
without building a Python object per line: see the README's notes on search speed.)
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from .store.base import LogStore

MAX_PATTERN = 500
_ANSI = re.compile(r"\x1b\[[0-9;:?]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


class SearchQueryError(ValueError):
    """The query cannot be run (a bad regular expression, say); the message says why."""


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What to look for; an empty ``text`` matches every line at or above ``min_level``."""

    text: str = ""
    regex: bool = False
    case_sensitive: bool = False
    min_level: str | None = None

    def matcher(self) -> Callable[[str], bool]:
        """A predicate over a message's visible text (ANSI escapes removed)."""
        if not self.text:
            return lambda _message: True
        if len(self.text) > MAX_PATTERN:
            raise SearchQueryError(f"the search text is longer than {MAX_PATTERN} characters")
        if self.regex:
            flags = 0 if self.case_sensitive else re.IGNORECASE
            try:
                pattern = re.compile(self.text, flags)
            except re.error as exc:
                raise SearchQueryError(f"not a valid regular expression: {exc}") from exc
            return lambda message: pattern.search(message) is not None
        if self.case_sensitive:
            needle = self.text
            return lambda message: needle in message
        folded = self.text.casefold()
        return lambda message: folded in message.casefold()


@dataclass(frozen=True, slots=True)
class SearchPage:
    """Matching seqs in order; ``next_after`` is None once ``upto`` was reached."""

    matches: list[int]
    next_after: int | None
    scanned_to: int
    upto: int
    truncated: bool


def visible(message: str) -> str:
    return _ANSI.sub("", message) if "\x1b" in message else message


def search_run(
    store: LogStore,
    run_id: str,
    query: SearchQuery,
    *,
    upto: int,
    after: int = 0,
    limit: int = 10_000,
    budget: float = 1.0,
    page: int = 5000,
    clock: Callable[[], float] = time.monotonic,
) -> SearchPage:
    """Scan ``after < seq <= upto`` until done, ``limit`` matches, or ``budget`` seconds."""
    matches_line = query.matcher()
    deadline = clock() + budget
    matches: list[int] = []
    cursor = after
    while cursor < upto:
        lines = store.read(
            run_id, after=cursor, limit=page, min_level=query.min_level, before=upto + 1
        )
        if not lines:
            cursor = upto
            break
        for line in lines:
            if matches_line(visible(line.message)):
                matches.append(line.seq)
                if len(matches) >= limit:
                    return SearchPage(matches, line.seq, line.seq, upto, truncated=True)
        cursor = lines[-1].seq if len(lines) == page else upto
        if clock() >= deadline:
            break
    done = cursor >= upto
    return SearchPage(matches, None if done else cursor, cursor, upto, truncated=False)
