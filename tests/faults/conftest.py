"""Prints the reliability figures the session gathered (README, "Reliability")."""

from __future__ import annotations

from typing import Any

from ..figures import FIGURES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        figures = ", ".join(f"{name} {count:,}" for name, count in sorted(FIGURES.items()))
        terminalreporter.write_line(f"reliability figures: {figures}")
