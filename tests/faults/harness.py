"""A real ``jobtail serve`` process, a viewer that behaves like EventSource, and the check every
fault scenario ends with: the store, the job's journal and the viewer agree exactly."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from ..conftest import free_port
from ..figures import FIGURES
from ..waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
JOBTAIL = Path(sys.executable).parent / "jobtail"

FAST = {  # seconds: short enough that every scenario takes a few seconds
    "JOBTAIL_HEARTBEAT_INTERVAL": "0.2",
    "JOBTAIL_STALE_AFTER": "1.5",
    "JOBTAIL_SHUTDOWN_GRACE": "1",
    "JOBTAIL_HEADER_TIMEOUT": "1",
    "JOBTAIL_PING_SECONDS": "0.5",
    "JOBTAIL_WORKERS": "1",
}


def plugin_path(folder: Path) -> Path:
    """A dist-info declaring tests.faults.slowgen as a ``jobtail.generators`` entry point."""
    info = folder / "jobtail_faults-0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: jobtail-faults\nVersion: 0\n")
    (info / "entry_points.txt").write_text(
        "[jobtail.generators]\nslow = tests.faults.slowgen:SlowGenerator\n"
    )
    return folder


class Server:
    """``jobtail serve`` in a subprocess on a free port; ``start`` again after a kill."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.tmp, self.port = tmp, free_port()
        self.journal = tmp / "journal.txt"
        self.log = tmp / "server.log"
        self.env = {
            **os.environ,
            **FAST,
            "JOBTAIL_DATA_DIR": str(tmp / "data"),
            "FAULT_JOURNAL": str(self.journal),
            "PYTHONPATH": f"{plugin_path(tmp / 'plugins')}{os.pathsep}{REPO}",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Server:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(JOBTAIL), "serve", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
            )
        wait_for(self._healthy, timeout, "jobtail serve to answer /healthz")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop_between_writes(self, database: Path, tries: int = 100) -> None:
        """SIGSTOP the server at a moment it holds no SQLite write lock: a process stopped inside
        a write transaction blocks every writer of the file (the janitor too) until it resumes,
        which no janitor can help. Stopped inside one, it is resumed and stopped again."""
        assert self.proc is not None
        stat = Path(f"/proc/{self.proc.pid}/stat")
        for _ in range(tries):
            self.signal(signal.SIGSTOP)
            wait_for(lambda: stat.read_text().rsplit(")", 1)[1].split()[0] == "T", 10, "SIGSTOP")
            probe = sqlite3.connect(database, timeout=0)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.rollback()
                return
            except sqlite3.OperationalError:  # locked: stopped mid-write
                self.signal(signal.SIGCONT)
            finally:
                probe.close()
        raise AssertionError(f"the server held a write lock at each of {tries} stops")

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait()

    def wait(self, timeout: float = 20) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def generate(self, upload: str = "petstore", service: str = "slow") -> str:
        response = httpx.post(f"{self.url}/runs/{upload}/{service}/generate", timeout=10)
        assert response.status_code == 202, response.text
        return str(response.json()["run_id"])

    def status(self, run_id: str, key: str = "petstore/slow") -> dict[str, Any]:
        response = httpx.get(f"{self.url}/runs/{key}/status", params={"run_id": run_id})
        return dict(response.json())

    def final(self, run_id: str, key: str = "petstore/slow") -> list[dict[str, Any]]:
        logs: list[dict[str, Any]] = []
        after: int | None = 0
        while after is not None:
            page = httpx.get(
                f"{self.url}/runs/{key}/logs/final",
                params={"run_id": run_id, "after": after, "limit": 5000},
                timeout=10,
            ).json()
            logs += page["logs"]
            after = page["next_after"]
        return logs

    def journaled(self, run_id: str) -> list[str]:
        """What the job logged (each message journaled after log() returned)."""
        if not self.journal.exists():
            return []
        entries = [line.split(" ", 1) for line in self.journal.read_text().splitlines()]
        return [message for rid, message in entries if rid == run_id]


@dataclass
class Viewer:
    """Follows a run like EventSource: reconnects with Last-Event-ID after a network loss or a
    ``retry:``, stops on ``end`` or a 204. Runs in a thread; ``join`` waits for the end."""

    url: str
    run_id: str
    key: str = "petstore/slow"
    give_up: float = 60.0
    lines: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    notices: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    got_204: bool = False
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.last_id: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.give_up
        while self.end is None and not self.got_204 and time.monotonic() < deadline:
            try:
                self._connect()
            except (httpx.TransportError, httpx.RemoteProtocolError) as exc:
                self.errors.append(repr(exc))
                threading.Event().wait(0.1)  # EventSource's reconnection delay

    def _connect(self) -> None:
        headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
        params = {} if self.last_id else {"run_id": self.run_id}
        timeout = httpx.Timeout(5, read=10)
        with (
            httpx.Client(base_url=self.url, timeout=timeout) as client,
            connect_sse(
                client, "GET", f"/runs/{self.key}/logs", headers=headers, params=params
            ) as source,
        ):
            self.connections += 1
            if source.response.status_code == 204:
                self.got_204 = True
                return
            if source.response.status_code != 200:
                source.response.read()
                self.errors.append(f"{source.response.status_code} {source.response.text}")
                threading.Event().wait(0.2)
                return
            for event in source.iter_sse():
                if event.id:
                    self.last_id = event.id
                if not event.data:
                    continue
                data = json.loads(event.data)
                if event.event == "message":
                    self.lines.append(data)
                elif event.event == "status":
                    self.notices.append(data)
                elif event.event == "end":
                    self.end = data
                    return

    def join(self, timeout: float = 60) -> Viewer:
        self.thread.join(timeout)
        return self


def check_run(
    server: Server, run_id: str, viewers: list[Viewer], status: str, killed: bool = False
) -> list[Any]:
    """Store == job journal (in order, once each) == every viewer's lines; a terminal status;
    every viewer got its ``end`` naming the last seq. Returns the final lines. ``killed``: the
    job died between committing a line and journaling it, so the store may hold one more."""
    final = server.final(run_id)
    assert [line["seq"] for line in final] == list(range(1, len(final) + 1)), "gap or duplicate"
    journaled = server.journaled(run_id)
    job_lines = [line["message"] for line in final if line["message"].startswith("line ")]
    if killed and len(job_lines) == len(journaled) + 1:
        job_lines.pop()
    assert job_lines == journaled, "the store and the job's journal differ"
    state = server.status(run_id)
    assert state["status"] == status and state["last_seq"] == len(final), state
    for viewer in viewers:
        assert viewer.end is not None, f"no end: {viewer.errors[-3:]}"
        assert viewer.end["status"] == status and viewer.end["last_seq"] == len(final)
        assert viewer.lines == final, "a viewer's lines differ from the store's"
        FIGURES["lines checked against an SSE viewer"] += len(viewer.lines)
    FIGURES["runs checked end to end"] += 1
    FIGURES["stored lines checked against the job's journal"] += len(final)
    return final
