"""Between two reads of a burst the follower pauses as long as its viewers took to send the
last batch, not a fixed time: ``BREATHE_MAX`` only caps the pause. The fan-out counts from
before the publish, which writes to the caught-up viewers itself."""

from __future__ import annotations

import time

import anyio
import pytest

from jobtail import tail_follower

pytestmark = pytest.mark.anyio


async def test_a_pause_between_reads_is_as_long_as_the_fan_out_not_its_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tail_follower, "BREATHE_MAX", 3600.0)  # a cap no test waits out
    with anyio.fail_after(30):  # nothing to send: the pause is one loop turn long
        await tail_follower._breathe(time.perf_counter())


async def test_a_pause_counts_the_writes_made_in_the_publish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tail_follower, "BREATHE_MAX", 3600.0)
    began = time.perf_counter()
    with anyio.fail_after(30):  # the publish took 0.2 s: the pause is at least as long
        await tail_follower._breathe(began - 0.2)
    assert time.perf_counter() - began >= 0.19
