"""Security review as tests: what a stranger, a wrong key or a wrong token gets; what leaks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jobtail.jobs.generators import GeneratedCode, Generator
from jobtail.logger import RunLogger
from jobtail.store.base import RunStatus
from jobtail.uploads import ParsedUpload

from .scripted import make_services

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
