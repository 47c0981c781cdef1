"""A measured process's RSS and CPU time, as the benchmark servers answer ``stats`` (Linux /proc).

One helper for every server process (jobtail's, the bare fan-out floor, the writer, the Node peer
it drives), so their figures are taken the same way.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def rss_mb(pid: int | None = None) -> float:
    """Resident memory (MB) of ``pid`` (default: this process); NaN if /proc does not say."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of ``pid`` so far (default: this process)."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def process_stats(pid: int | None = None) -> dict[str, float]:
    """``rss_mb``, ``cpu_s`` and this machine's ``wall`` (monotonic) clock, for one ``stats``."""
    return {"rss_mb": rss_mb(pid), "cpu_s": cpu_seconds(pid), "wall": time.monotonic()}
