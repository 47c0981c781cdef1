"""What a search of a run looks for, and the Python side of matching it.

Stores push as much of a search as they can into their database (SQLite ``instr``/``LIKE``,
PostgreSQL ``strpos``/``ILIKE``/``~*``); what is left runs here: the visible text of a line
(ANSI escapes removed, so colours neither hide a word nor match one), and regular expressions,
compiled with the ``regex`` module (the ``re`` dialect, ``V0``) because its matches take a
timeout: a pattern that backtracks without end is stopped at the search's deadline instead of
pinning a worker.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import regex
from regex import Pattern

from .base import StoreError

MAX_PATTERN = 500
ANSI_PATTERN = r"\x1b\[[0-9;:?]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
_ANSI = re.compile(ANSI_PATTERN)


class SearchQueryError(ValueError):
    """The query cannot be run (a bad regular expression, say); the message says why."""


class SearchTimeoutError(StoreError):
    """A search made no progress before its deadline (a pattern that backtracks, say)."""

    def __init__(self, after: int) -> None:
        super().__init__(
            f"the search ran out of time before it got past line {after}: a pattern that"
            " backtracks (nested repeats such as (a+)+) cannot finish; simplify it"
        )
        self.after = after


def visible(message: str) -> str:
    """A message as the page shows it: ANSI escape sequences removed."""
    return _ANSI.sub("", message) if "\x1b" in message else message


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What to look for; an empty ``text`` matches every line at or above ``min_level``."""

    text: str = ""
    regex: bool = False
    case_sensitive: bool = False
    min_level: str | None = None

    def check(self) -> None:
        """Raise SearchQueryError for a query no store can run."""
        if len(self.text) > MAX_PATTERN:
            raise SearchQueryError(f"the search text is longer than {MAX_PATTERN} characters")
        if self.regex and self.text:
            self.pattern()

    def pattern(self) -> Pattern[str]:
        """The compiled regular expression (``re``'s dialect)."""
        flags = regex.V0 | (0 if self.case_sensitive else regex.IGNORECASE)
        try:
            return regex.compile(self.text, flags)
        except (regex.error, ValueError, OverflowError) as exc:
            raise SearchQueryError(f"not a valid regular expression: {exc}") from exc

    def matcher(self, deadline: float | None = None) -> Callable[[str], bool]:
        """A predicate over a message's visible text; a regex raises SearchTimeoutError's
        cause (TimeoutError) once ``deadline`` (``time.monotonic()``) has passed."""
        self.check()
        if not self.text:
            return lambda _message: True
        if self.regex:
            search = self.pattern().search

            def matches(message: str) -> bool:
                left = None if deadline is None else max(0.001, deadline - time.monotonic())
                return search(visible(message), timeout=left) is not None

            return matches
        if self.case_sensitive:
            needle = self.text
            return lambda message: needle in visible(message)
        folded = self.text.casefold()
        return lambda message: folded in visible(message).casefold()


@dataclass(frozen=True, slots=True)
class SearchHits:
    """Matching seqs in order; every line ``after < seq <= scanned_to`` was checked."""

    matches: list[int]
    scanned_to: int


@dataclass(slots=True)
class Windows:
    """Spans of seqs for one statement each: small at first, doubling while a statement takes
    under a tenth of a second, so a slow scan still gets somewhere before its deadline and a
    fast one takes few statements."""

    largest: int
    size: int = 2000

    def __post_init__(self) -> None:
        self.size = min(self.size, self.largest)

    def span(self, cursor: int, upto: int) -> int:
        """The end of the next window after ``cursor``."""
        return min(upto, cursor + self.size)

    def took(self, seconds: float) -> None:
        if seconds < 0.1:
            self.size = min(self.size * 2, self.largest)


def required_text(query: SearchQuery) -> tuple[str, bool]:
    """A piece of text every match of a regex query contains, so a database can skip the lines
    without it before Python matches the rest ('' when none is known), and whether it is to be
    found ignoring (ASCII) case. The longest run of
    literal characters in the pattern's top-level sequence; case-insensitive, only ASCII
    letters (for ``LIKE``) other than k and s (which Python also folds from \u212a and \u017f).
    """
    try:
        parsed = re._parser.parse(query.text, 0 if query.case_sensitive else re.IGNORECASE)  # type: ignore[attr-defined]
    except (re.error, AttributeError, RecursionError, OverflowError, ValueError):
        return "", False
    folds = bool(parsed.state.flags & re.IGNORECASE)
    best, run = "", ""
    for op, arg in [*parsed, (None, None)]:
        char = chr(arg) if op is re._parser.LITERAL else ""  # type: ignore[attr-defined]
        if char and not (folds and (not char.isascii() or char in "kKsS")):
            run += char
            continue
        best, run = max(best, run, key=len), ""
    return best, folds


def like_pattern(text: str) -> str:
    """``%text%`` for ``LIKE … ESCAPE '\\'``: the text's own ``%``, ``_`` and ``\\`` literal."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
