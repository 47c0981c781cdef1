"""A measured process's RSS and CPU time, as the benchmark servers answer ``stats`` (Linux /proc).

One helper for every server process (jobtail's, the bare fan-out floor, the writer, the Node peer
it drives), so their figures are taken the same way.
"""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path
from typing import Any


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


class GcPauses:
    """The garbage collector's pauses in this process, since the last ``take``: every stream
    stops while one runs, and a full one at 10,000 viewers took over half a second."""

    def __init__(self) -> None:
        self._began = 0.0
        self._longest = 0.0
        self._full = 0
        gc.callbacks.append(self._timed)

    def _timed(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        self._longest = max(self._longest, time.perf_counter() - self._began)
        self._full += info["generation"] == 2

    def take(self) -> dict[str, float]:
        """``gc_longest_ms`` and ``gc_full`` (full collections) since the last call."""
        taken = {"gc_longest_ms": 1000 * self._longest, "gc_full": self._full}
        self._longest, self._full = 0.0, 0
        return taken


_pauses: GcPauses | None = None


def watch_gc() -> None:
    """Record this process's collector pauses from now on, for ``process_stats``."""
    global _pauses
    _pauses = _pauses or GcPauses()


def process_stats(pid: int | None = None) -> dict[str, float]:
    """``rss_mb``, ``cpu_s`` and this machine's ``wall`` (monotonic) clock, for one ``stats``;
    for this process, once ``watch_gc`` was called, its collector's pauses since the last."""
    stats = {"rss_mb": rss_mb(pid), "cpu_s": cpu_seconds(pid), "wall": time.monotonic()}
    if pid is None and _pauses is not None:
        stats.update(_pauses.take())
    return stats
