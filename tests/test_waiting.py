"""The wait helper keeps its stated timeout, however slow the condition is to evaluate."""

from __future__ import annotations

import threading
import time

import pytest

from .waiting import wait_for, wait_for_async


def test_returns_as_soon_as_the_condition_holds() -> None:
    calls: list[float] = []
    assert wait_for(lambda: calls.append(time.monotonic()) or len(calls) >= 3, 5)
    assert len(calls) == 3 and calls[-1] - calls[0] < 1


def test_a_slow_condition_cannot_stretch_the_timeout() -> None:
    pause = threading.Event()

    def slow() -> bool:
        pause.wait(0.2)  # each check costs time the helper must count
        return False

    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"timed out after 0.5 s waiting for slow"):
        wait_for(slow, 0.5, "slow")
    assert time.monotonic() - started < 1.0


@pytest.mark.anyio
async def test_the_async_one_fails_on_the_clock_too() -> None:
    ticks: list[int] = []
    await wait_for_async(lambda: ticks.append(1) or len(ticks) > 2, 5)
    started = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match="never"):
        await wait_for_async(lambda: False, 0.2, "never")
    assert 0.2 <= time.monotonic() - started < 0.7
