"""Log level names, taken from the standard library rather than kept as another table.

The canonical names are those ``logging`` maps back to themselves (so ``WARN`` and ``FATAL``,
its aliases, and ``NOTSET`` are left out): DEBUG, INFO, WARNING, ERROR, CRITICAL, lowest first.
"""

from __future__ import annotations

import logging
from enum import StrEnum

_NUMBERS = logging.getLevelNamesMapping()

LEVEL_NAMES: tuple[str, ...] = tuple(
    sorted(
        (
            name
            for name, number in _NUMBERS.items()
            if number > logging.NOTSET and logging.getLevelName(number) == name
        ),
        key=_NUMBERS.__getitem__,
    )
)

Level = StrEnum("Level", [(name, name) for name in LEVEL_NAMES])  # type: ignore[misc]
"""A level name as a request parameter (an OpenAPI enum)."""
