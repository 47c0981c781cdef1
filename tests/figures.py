"""Counters the fault, fuzz and contract tests add to; printed at the end of the session
(tests/faults/conftest.py), so the README's reliability figures come from a rerunnable command."""

from __future__ import annotations

from collections import Counter

FIGURES: Counter[str] = Counter()
