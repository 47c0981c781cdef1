"""Between two reads of a burst the follower pauses as long as its viewers took to send the
last batch, not a fixed time: ``BREATHE_MAX`` only caps the pause."""

from __future__ import annotations

import anyio
import pytest

from jobtail import tail

pytestmark = pytest.mark.anyio


async def test_a_pause_between_reads_is_as_long_as_the_fan_out_not_its_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tail, "BREATHE_MAX", 3600.0)  # a cap no test waits out
    with anyio.fail_after(30):  # nothing to send: the pause is one loop turn long
        await tail._breathe()
