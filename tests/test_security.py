"""Security review as tests: what a stranger, a wrong key or a wrong token gets; what leaks."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from jobtail.config import Settings
from jobtail.jobs.generators import GeneratedCode, Generator
from jobtail.logger import RunLogger
from jobtail.store.base import RunStatus
from jobtail.uploads import ParsedUpload
from jobtail.web.app import create_app
from jobtail.web.auth import make_stream_token

from .conftest import ServerThread
from .faults.harness import Server
from .scripted import make_services
from .waiting import wait_for

# -- the generated module never runs in the worker -------------------------------------------


class Malicious(Generator):
    """Output whose import tries to read the worker's secrets and leave a file behind."""

    name = "malicious"
    description = "writes what it can see at import time"
    import_check = True

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def generate(self, upload: ParsedUpload, log: RunLogger) -> GeneratedCode:
        code = (
            "import json, os\n"
            f"with open({str(self.marker)!r}, 'w') as out:\n"
            "    seen = {'pid': os.getpid(), 'env': dict(os.environ), 'cwd': os.getcwd()}\n"
            "    json.dump(seen, out)\n"
            "class Model:\n"
            "    pass\n"
        )
        return GeneratedCode(code=code, filename="malicious.py")


def test_the_import_check_runs_in_a_process_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBTAIL_SECRET", "s" * 40)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret")
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", "supabase-secret")
    marker = tmp_path / "seen.json"
    services, _ = make_services(tmp_path)
    services.registry.register(Malicious(marker))
    run = services.store.create_run("petstore", "malicious")
    try:
        assert services.run(run.run_id) is RunStatus.SUCCEEDED
        messages = [line.message for line in services.store.read(run.run_id)]
    finally:
        services.close()
    seen = json.loads(marker.read_text())
    assert seen["pid"] != os.getpid()  # not the worker
    assert not {k for k in seen["env"] if k.startswith(("JOBTAIL", "AWS", "SUPABASE", "PG"))}
    assert "secret" not in json.dumps(seen["env"])
    assert seen["cwd"] != os.getcwd() and not Path(seen["cwd"]).exists()  # a throwaway folder
    assert any(m.startswith("Import check passed: 1 classes") for m in messages)


def test_a_module_that_fails_or_hangs_on_import_fails_the_run(tmp_path: Path) -> None:
    from jobtail.jobs.sandbox import run_checker

    assert run_checker("raise SystemExit(3)", "x.py")["error"] == "SystemExit: 3"
    assert "not finish" in str(run_checker("while True: pass", "x.py", timeout=1)["error"])
    assert run_checker("import no_such_package_here", "x.py").get("skipped")
    assert run_checker("import os\nos._exit(9)", "x.py")["error"] == (
        "the import check process died (exit 9)"
    )


# -- JOBTAIL_AUTH=apikey over real HTTP -------------------------------------------------------

KEY = "k3y-" + "x" * 28
SECRET = "s" * 40
PUBLIC = {"/", "/healthz", "/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"}


@dataclass
class Secured:
    client: httpx.Client
    app: FastAPI
    first: dict[str, Any]  # generate's answer for petstore/scripted (run id, token)
    second: dict[str, Any]  # the same for invoice/scripted

    def auth(self, key: str = KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def secured(tmp_path: Path, serve: Callable[[object], ServerThread]) -> Iterator[Secured]:
    services, _ = make_services(tmp_path, auth="apikey", api_keys=KEY, secret=SECRET)
    app = create_app(services=services)
    server = serve(app)
    with httpx.Client(base_url=server.url, timeout=20) as client:
        headers = {"Authorization": f"Bearer {KEY}"}
        first = client.post("/runs/petstore/scripted/generate", headers=headers).json()
        second = client.post("/runs/invoice/scripted/generate", headers=headers).json()
        assert services.dispatcher.wait(20)  # type: ignore[union-attr]
        yield Secured(client, app, first, second)
    services.close()


def operations(app: FastAPI, run_id: str) -> list[tuple[str, str]]:
    """Every documented operation, its path filled in."""
    found = []
    for path, ops in app.openapi()["paths"].items():
        filled = path.format(upload_id="petstore", service="scripted", run_id=run_id)
        found += [(method.upper(), filled) for method in ops if path not in PUBLIC]
    return found


def test_every_route_refuses_no_key_and_a_wrong_key(secured: Secured) -> None:
    ops = operations(secured.app, secured.first["run_id"])
    ops.append(("GET", f"/v1/stream/runs/{secured.first['run_id']}"))
    assert len(ops) >= 12
    for method, path in ops:
        for headers in ({}, secured.auth("wrong-" + KEY), {"Authorization": KEY}):
            answer = secured.client.request(method, path, headers=headers)
            assert answer.status_code == 401, (method, path, headers, answer.text)
            assert answer.json()["detail"] and KEY not in answer.text
        if (method, path) == ("POST", "/runs/petstore/scripted/runs"):
            path = "/runs/petstore/elsewhere/runs"  # a queued run would keep the key's logs open
        answer = secured.client.request(method, path, headers=secured.auth())
        assert answer.status_code != 401, (method, path)


def test_a_stream_token_opens_its_own_run_only(secured: Secured) -> None:
    first, second = secured.first, secured.second
    token = first["token"]
    get = secured.client.get
    own = get("/runs/petstore/scripted/logs/final", params={"token": token})
    assert own.status_code == 200 and own.json()["run_id"] == first["run_id"]
    assert get("/runs/petstore/scripted/result", params={"token": token}).status_code == 200
    for path, params in [
        ("/runs/invoice/scripted/logs/final", {}),  # another key
        ("/runs/invoice/scripted/logs", {}),
        ("/runs/invoice/scripted/result", {}),  # another run's result
        (f"/run/{second['run_id']}/logs/final", {}),
        ("/runs/petstore/scripted/logs/final", {"run_id": second["run_id"]}),  # another run
    ]:
        answer = get(path, params={**params, "token": token})
        assert answer.status_code == 401, (path, answer.text)
        assert token not in answer.text
    for path in ("/runs/petstore/scripted/status", "/runs", "/uploads", "/services"):
        assert get(path, params={"token": token}).status_code == 401  # bearer-only routes


def test_expired_and_tampered_tokens_are_refused(secured: Secured) -> None:
    run_id = secured.first["run_id"]
    settings = Settings(auth="apikey", api_keys=KEY, secret=SECRET)  # type: ignore[arg-type]
    expired = make_stream_token(settings, run_id, now=time.time() - 7200)
    token = secured.first["token"]
    # not the last character: its low bits are base64 padding, so some flips decode the same
    flipped = token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]
    stamp, _, signature = token.partition(".")
    for bad in (expired, flipped, f"{stamp}x.{signature}", "", ".", "a.b.c", token.upper()):
        answer = secured.client.get("/runs/petstore/scripted/logs/final", params={"token": bad})
        assert answer.status_code == 401, (bad, answer.text)
        assert not bad or bad not in answer.text


def test_a_token_does_not_tell_which_keys_exist(secured: Secured) -> None:
    token = secured.first["token"]
    for route in ("logs", "logs/final", "result"):
        for probe in ("x", token, "eyJ.abc"):
            there = secured.client.get(f"/runs/petstore/scripted/{route}", params={"token": probe})
            if there.status_code == 200:
                continue  # the right token opens its own run
            missing = secured.client.get(f"/runs/nope/scripted/{route}", params={"token": probe})
            assert (missing.status_code, missing.json()) == (there.status_code, there.json())


def test_what_public_routes_reveal(secured: Secured) -> None:
    get = secured.client.get
    assert get("/healthz").json() == {"status": "ok"}
    page = get("/").text
    spec = get("/openapi.json").text
    for text in (page, spec):
        assert secured.first["run_id"] not in text and KEY not in text and SECRET not in text
    assert get("/uploads").status_code == 401 and get("/services").status_code == 401


def test_no_cors_unless_configured(secured: Secured) -> None:
    origin = {"Origin": "https://evil.example"}
    answer = secured.client.get("/healthz", headers=origin)
    preflight = secured.client.options(
        "/runs/petstore/scripted/status",
        headers={**origin, "Access-Control-Request-Method": "GET"},
    )
    for response in (answer, preflight):
        assert not any(h.lower().startswith("access-control-") for h in response.headers)


def test_tokens_never_reach_the_access_log(tmp_path: Path) -> None:
    server = Server(tmp_path, JOBTAIL_AUTH="apikey", JOBTAIL_API_KEYS=KEY, JOBTAIL_SECRET=SECRET)
    try:
        server.start()
        headers = {"Authorization": f"Bearer {KEY}"}
        started = httpx.post(f"{server.url}/runs/petstore/slow/generate", headers=headers).json()
        token = started["token"]
        httpx.get(f"{server.url}/runs/petstore/slow/logs/final", params={"token": token})
        httpx.get(f"{server.url}/runs/petstore/slow/result?a=1&token={token}&b=2")
        wait_for(lambda: "result?a=1&token=[redacted]&b=2" in server.log.read_text())
    finally:
        server.stop()
    log = server.log.read_text()
    assert token not in log and KEY not in log and SECRET not in log
    assert "token=[redacted]" in log
