"""The README's "five lines" are real: run its code blocks and check what they promise."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException

import jobtail
from jobtail.store import RunStatus

from ..conftest import ServerThread

README = Path(__file__).resolve().parents[2] / "README.md"


def blocks(language: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Add live logs to your own job in five lines", 1)[1].split("\n## ")[0]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def test_the_five_lines_end_succeeded_and_are_served_under_the_hosts_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_block, router_block = blocks("python")
    monkeypatch.chdir(tmp_path)
    exec(compile(run_block, "README.md", "exec"), {})
    store = jobtail.from_url("sqlite:///.jobtail/store.db")
    (run,) = store.list_runs("import-42", "nightly")
    assert run.status is RunStatus.SUCCEEDED
    assert [x.message for x in store.read(run.run_id)][:2] == ["loading", "half way"]

    def my_auth(authorization: str | None = Header(None)) -> None:
        if authorization != "Bearer mine":
            raise HTTPException(401, "not you")

    app = FastAPI()
    exec(
        router_block,
        {"app": app, "jobtail": jobtail, "store": store, "Depends": Depends, "my_auth": my_auth},
    )
    server = ServerThread(app).start()
    try:
        url = f"{server.url}/api/jobs/run/{run.run_id}"
        assert httpx.get(f"{url}/status").status_code == 401
        mine = {"Authorization": "Bearer mine"}
        assert httpx.get(f"{url}/status", headers=mine).json()["status"] == "succeeded"
        stream = httpx.get(f"{url}/logs", headers=mine)
        assert "event: end" in stream.text and "half way" in stream.text
    finally:
        server.stop()
        store.close()
    (html,) = blocks("html")
    assert 'src="/api/jobs/run/RUN_ID/logs"' in html
