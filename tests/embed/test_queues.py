"""Task queues with real brokers and workers: the run is created at enqueue, the worker logs
into it, a viewer follows it over SSE to its end; a worker killed (SIGKILL) mid-job still ends
its run for the viewer (the janitor of the viewer's app fails it once the heartbeat stops)."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from arq import create_pool
from arq.connections import RedisSettings
from fastapi import FastAPI
from httpx_sse import connect_sse
from pydantic import SecretStr

import jobtail
import jobtail.fastapi
import jobtail.queues.arq
import jobtail.queues.celery
from jobtail.config import Settings
from jobtail.services import Services
from jobtail.store import RunStatus
from jobtail.store.sqlite import SQLiteStore
from jobtail.web.app import create_app

from ..conftest import ServerThread, free_port
from ..waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KINDS = ["background", "celery", "arq"]
SECRET = "s" * 32


class Queues:
    """The store, the broker, the viewer's app, and the test's own copy of the queue apps."""

    def __init__(self, store_url: str, redis_url: str, viewer: ServerThread, apps: ModuleType):
        self.store_url, self.redis_url, self.viewer, self.apps = store_url, redis_url, viewer, apps
        self.env = {
            **os.environ,
            "JOBTAIL_TEST_STORE": store_url,
            "JOBTAIL_TEST_REDIS": redis_url,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)]),
            "PYTHONUNBUFFERED": "1",
        }
        self.store = jobtail.from_url(store_url)


@pytest.fixture(scope="module")
def queues(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Queues]:
    store_url = f"sqlite:///{tmp_path_factory.mktemp('queues') / 'jobs.db'}"
    jobtail.from_url(store_url).close()  # the schema, before several processes open it
    saved = {k: os.environ.get(k) for k in ("JOBTAIL_TEST_STORE", "JOBTAIL_TEST_REDIS")}
    os.environ.update(JOBTAIL_TEST_STORE=store_url, JOBTAIL_TEST_REDIS=redis_url)
    sys.modules.pop("tests.embed.queue_apps", None)
    apps = importlib.import_module("tests.embed.queue_apps")
    # the janitor fails a silent run after 3 s: long enough for a queue's own hook to be first
    settings = Settings(stale_after=3.0, heartbeat_interval=0.2, ping_seconds=1.0)
    app = FastAPI()
    app.include_router(
        jobtail.fastapi.router(store_url, settings=settings, janitor=True), prefix="/jobs"
    )
    viewer = ServerThread(app).start()
    env = Queues(store_url, redis_url, viewer, apps)
    yield env
    viewer.stop()
    env.store.close()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class Worker:
    """A worker in its own process (its own session, so nothing it starts outlives the test)."""

    def __init__(
        self, kind: str, queues: Queues, log: Path, pool: str = "solo", store: str | None = None
    ) -> None:
        self.kind, self.port = kind, free_port()
        python = sys.executable
        commands = {
            "background": [
                python,
                "-m",
                "uvicorn",
                "tests.embed.queue_apps:background_app",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            "celery": [
                python,
                "-m",
                "celery",
                "-A",
                "tests.embed.queue_apps:celery_app",
                "worker",
                f"--pool={pool}",
                "--concurrency=1",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            "arq": [python, "-m", "arq", "tests.embed.queue_apps.WorkerSettings"],
        }
        self.output = log.open("wb")
        self.process = subprocess.Popen(
            commands[kind],
            cwd=ROOT,
            env={**queues.env, "JOBTAIL_TEST_STORE": store or queues.store_url},
            stdout=self.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if kind == "background":
            wait_for(self._answers, 20, "the BackgroundTasks server to start")

    def _answers(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/docs").status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.output.close()


def enqueue(
    kind: str, worker: Worker, queues: Queues, upload_id: str, rows: int, block: bool = False
) -> str:
    """Start the job the way an app would: the run exists when this returns."""
    if kind == "background":
        started = httpx.post(
            f"http://127.0.0.1:{worker.port}/imports/{upload_id}",
            params={"rows": rows, "block": block},
            timeout=10,
        )
        assert started.status_code == 200, started.text
        return str(started.json()["run_id"])
    if kind == "celery":
        task = queues.apps.celery_import
        return jobtail.queues.celery.enqueue(
            task, queues.store_url, upload_id, "import", rows, block
        ).run_id

    async def via_arq() -> str:
        redis = await create_pool(RedisSettings.from_dsn(queues.redis_url))
        try:
            run = await jobtail.queues.arq.enqueue(
                redis, "arq_import", queues.store_url, upload_id, "import", rows, block
            )
        finally:
            await redis.aclose()
        return run.run_id

    return asyncio.run(via_arq())


def follow(queues: Queues, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """A viewer: every event of the run's stream until its end."""
    events = []
    url = f"{queues.viewer.url}/jobs/run/{run_id}/logs"
    with (
        httpx.Client(timeout=httpx.Timeout(10, read=30)) as client,
        connect_sse(client, "GET", url) as source,
    ):
        for event in source.iter_sse():
            if event.data:
                events.append((event.event, json.loads(event.data)))
    return events


def in_background(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(target()), daemon=True)
    thread.start()
    return thread, result


@pytest.mark.parametrize("kind", KINDS)
def test_a_queued_job_logs_into_its_run_and_a_killed_worker_still_ends_it(
    kind: str, queues: Queues, tmp_path: Path
) -> None:
    worker = Worker(kind, queues, tmp_path / f"{kind}.log")
    try:
        run_id = enqueue(kind, worker, queues, f"{kind}-ok", rows=5)
        events = follow(queues, run_id)
        messages = [data["message"] for name, data in events if name == "message"]
        assert messages[:5] == [f"row {n}" for n in range(1, 6)], worker.output.name
        assert messages[5].startswith("Run succeeded") and len(messages) == 6
        assert events[-1] == ("end", {"run_id": run_id, "status": "succeeded", "last_seq": 6})

        run_id = enqueue(kind, worker, queues, f"{kind}-killed", rows=2, block=True)
        viewer, got = in_background(lambda: follow(queues, run_id))
        wait_for(lambda: (queues.store.get_run(run_id) or run_id).last_seq >= 3, 30, "the job")
        worker.kill()
        viewer.join(30)
        assert got, "the viewer got no end"
        name, end = got[0][-1]
        assert name == "end" and end["status"] == "failed"
        last = [data for name, data in got[0] if name == "message"][-1]
        assert last["log_level"] == "ERROR" and "heartbeat" in last["message"]
    finally:
        worker.stop()


def test_a_celery_pool_process_killed_mid_job_ends_its_run_at_once(
    queues: Queues, tmp_path: Path
) -> None:
    """Prefork: the pool process dies, the worker's main process reports it (task_failure),
    and the run ends with a line saying so. Its own store, which no janitor sweeps: the end can
    only come from the hook."""
    url = f"sqlite:///{tmp_path / 'lost.db'}"
    store = jobtail.from_url(url)
    worker = Worker("celery", queues, tmp_path / "prefork.log", pool="prefork", store=url)
    try:
        task = queues.apps.celery_import
        run_id = jobtail.queues.celery.enqueue(task, url, "lost", "import", 1, True).run_id
        wait_for(lambda: (store.get_run(run_id) or run_id).last_seq >= 2, 30, "the job")
        pid = store.read(run_id)[1].fields["pid"]  # type: ignore[index]
        assert pid != worker.process.pid  # the pool's process, not the worker's
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not store.get_run(run_id).active, 30, "the hook")  # type: ignore[union-attr]
        last = store.read(run_id)[-1]
        assert last.message.startswith("Run failed: the worker process was lost (WorkerLostError")
        assert last.log_level == "ERROR" and last.fields is not None
        assert last.fields["reason"] == "worker_lost" and last.seq == 3
        assert worker.process.poll() is None  # the worker itself lives on
    finally:
        worker.stop()
        store.close()


def test_a_celery_pool_process_killed_mid_job_ends_its_http_run_at_once(
    queues: Queues,
    tmp_path: Path,
    serve: Callable[[object], ServerThread],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same, for a worker that logs over HTTP with only its run's write token (a jobtail
    server with API keys, served by uvicorn): the hook ends the run with the token the message
    carried. Without it the server refused the hook's end, and only the janitor ended the run."""
    settings = Settings(
        data_dir=tmp_path, store="sqlite:///unused", stale_after=3600, auth="apikey",
        api_keys=[SecretStr("k" * 16)], secret=SecretStr(SECRET),
    )  # fmt: skip
    store = SQLiteStore(tmp_path / "served.db")
    services = Services.from_settings(settings, store=store)
    server = serve(create_app(services=services))
    worker = Worker("celery", queues, tmp_path / "http.log", pool="prefork", store=server.url)
    try:
        monkeypatch.setenv("JOBTAIL_SECRET", SECRET)  # the enqueuer's, not the worker's
        task = queues.apps.celery_import
        run_id = jobtail.queues.celery.enqueue(
            task, store, "lost", "import", 1, True, write_token=True
        ).run_id
        wait_for(lambda: (store.get_run(run_id) or run_id).last_seq >= 2, 30, "the job")
        pid = store.read(run_id)[1].fields["pid"]  # type: ignore[index]
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not store.get_run(run_id).active, 30, "the hook")  # type: ignore[union-attr]
        last = store.read(run_id)[-1]
        assert last.message.startswith("Run failed: the worker process was lost (WorkerLostError")
        assert last.fields is not None and last.fields["reason"] == "worker_lost"
        assert last.seq == 3 and last.log_level == "ERROR"
        run = store.get_run(run_id)
        assert run is not None and run.status is RunStatus.FAILED
        assert run.error is not None and run.error.startswith("the worker process was lost")
    finally:
        worker.stop()
        services.close()
