"""The one way a test waits: poll a condition against a monotonic deadline, never a bare sleep.

For state that has no wake-up to wait on (another thread's progress, a server starting). The
deadline is read from the clock, not added up from nominal steps, so a slow condition cannot
stretch the wait past its stated timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import anyio
import pytest

FIRST_PAUSE = 0.002
LONGEST_PAUSE = 0.05


def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "") -> bool:
    """Return True once ``condition()`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause, pauses = FIRST_PAUSE, threading.Event()
    while not condition():
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what or condition}")
        pauses.wait(min(pause, left))
        pause = min(pause * 2, LONGEST_PAUSE)
    return True


async def wait_for_async(
    condition: Callable[[], object], timeout: float = 20.0, what: str = ""
) -> None:
    """``wait_for`` inside an event loop: yields to it between checks."""
    deadline = time.monotonic() + timeout
    pause = FIRST_PAUSE
    while not condition():
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what or condition}")
        await anyio.sleep(min(pause, left))
        pause = min(pause * 2, LONGEST_PAUSE)
