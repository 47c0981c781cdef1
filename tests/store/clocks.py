"""This process's clock set off from the database's, for the janitor's skew tests."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

import pytest

from jobtail.store.base import utcnow


def skew_clock(monkeypatch: pytest.MonkeyPatch, by: timedelta) -> None:
    """Move every jobtail module's ``utcnow`` by ``by``: the janitor's machine, and with it
    SQLite's clock (the janitor's clock is that store's), but not PostgreSQL's."""

    def skewed() -> datetime:
        return utcnow() + by

    for name, module in tuple(sys.modules.items()):
        if name.startswith("jobtail") and getattr(module, "utcnow", None) is utcnow:
            monkeypatch.setattr(module, "utcnow", skewed)
