"""Helpers for store tests: waiting on a condition instead of sleeping a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest


def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    """Re-check a condition every few ms until it holds; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.005)
