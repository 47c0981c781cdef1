"""The SQLite store on a full disk across the end of a job, under a real ``jobtail serve``.

The disk is real: a small tmpfs mounted for the test (we run as root in a container; where
mounting is not allowed the test skips and says so), filled by another file until the kernel
answers ENOSPC, so SQLite's own writes fail with SQLITE_FULL exactly as on a full volume. A
read-only store was considered and not used: root ignores file modes, ``chattr +i`` only stops
new opens, and a read-only remount is refused while the server holds its files open, so none of
them would fail the writes of a running server.

The job keeps logging and finishes while the disk is full, and the outage lasts longer than
``STALE_AFTER``; once space is back every line is stored once, in order, and the run ends
``succeeded`` (it saved its result), not failed by the janitor as killed or timed out.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..figures import FIGURES
from ..waiting import wait_for
from .harness import Server, Viewer, check_run

pytestmark = pytest.mark.faults

LINES = 80


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 16 MB file system of the test's own (tmpfs), unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "jobtail-faults", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(path: Path) -> int:
    """Write ``path`` until the file system has no space left; return the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for chunk in (1 << 20, 4096, 512):
            block = b"\0" * chunk
            while True:
                try:
                    count = os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
                written += count
                if count < chunk:
                    break
    finally:
        os.close(fd)
    return written


def test_disk_full_across_the_end_of_a_job(small_disk: Path, tmp_path: Path) -> None:
    db = small_disk / "store.db"
    server = Server(
        tmp_path,
        JOBTAIL_STORE=f"sqlite:///{db}",  # the store on the small disk; results elsewhere
        FAULT_LINES=str(LINES),
        FAULT_PACE="0.01",
    )
    try:
        server.start()
        run_id = server.generate()
        viewer = Viewer(server.url, run_id)
        wait_for(lambda: len(viewer.lines) >= 20, what="the run to be under way")
        # the WAL starts over empty, so the next commits need new space on the disk
        with contextlib.closing(sqlite3.connect(db, timeout=10)) as own:
            own.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        filler = small_disk / "filler"
        fill(filler)
        FIGURES["process faults injected"] += 1
        wait_for(
            lambda: "database or disk is full" in server.log.read_text(),
            what="the store to fail on the full disk",
        )
        wait_for(lambda: len(server.journaled(run_id)) == LINES, 30, "the job to log its lines")
        assert server.status(run_id)["status"] == "running"  # its end is waiting for space
        threading.Event().wait(2.5)  # the fault goes on past STALE_AFTER (1.5 s)
        filler.unlink()
        viewer.join(30)
        check_run(server, run_id, [viewer], "succeeded")
    finally:
        server.stop()
