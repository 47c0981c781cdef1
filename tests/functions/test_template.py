"""template.yaml: the settings the functions depend on, cfn-lint, and `sam build`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from .lambdas import FUNCTIONS, ROOT, function_env, resource, template

BIN = Path(sys.executable).parent


def test_the_stream_function_runs_the_app_under_the_web_adapter() -> None:
    stream = resource("StreamFunction")
    env = function_env("StreamFunction")
    assert stream["Handler"] == "run.sh" and os.access(FUNCTIONS / "stream" / "run.sh", os.X_OK)
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["AWS_LWA_READINESS_CHECK_PATH"] == "/healthz"
    assert env["AWS_LWA_PORT"] == env["PORT"]
    assert stream["FunctionUrlConfig"]["InvokeMode"] == "RESPONSE_STREAM"
    logs = stream["Events"]["Logs"]["Properties"]
    assert logs["ResponseTransferMode"] == "RESPONSE_STREAM"
    window = float(env["JOBTAIL_STREAM_WINDOW"])
    # the stream ends by itself before the gateway or Lambda would cut it
    assert window + 30 <= logs["TimeoutInMillis"] / 1000 <= stream["Timeout"] <= 900


def test_the_buffered_api_answers_well_within_the_gateway_timeout() -> None:
    api = resource("ApiFunction")
    env = function_env("ApiFunction")
    assert float(env["JOBTAIL_STREAM_WINDOW"]) + 15 <= api["Timeout"] <= 29
    assert env["JOBTAIL_DISPATCHER"] == "sqs"


def test_the_worker_reports_failures_per_record_and_outlives_no_message() -> None:
    jobs = resource("WorkerFunction")["Events"]["Jobs"]["Properties"]
    assert jobs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = resource("JobQueue")
    assert queue["VisibilityTimeout"] > resource("WorkerFunction")["Timeout"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] >= 1


def test_the_layer_is_the_package_built_for_the_runtime() -> None:
    layer = template()["Resources"]["JobtailLayer"]
    assert layer["Metadata"] == {"BuildMethod": "python3.11"}
    assert layer["Properties"]["ContentUri"] == "shared/"
    assert template()["Globals"]["Function"]["Runtime"] == "python3.11"


def requirement_names(lines: list[str]) -> set[str]:
    names = set()
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            names.add(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_the_layer_requirements_follow_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = [*project["dependencies"], *extras["aws"], *extras["supabase"], *extras["postgres"]]
    layer = (ROOT / "shared" / "requirements.txt").read_text().splitlines()
    assert requirement_names(layer) == requirement_names(wanted)


@pytest.mark.integration
def test_cfn_lint_finds_nothing() -> None:
    lint = subprocess.run(
        [str(BIN / "cfn-lint"), "template.yaml"], cwd=ROOT, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.integration
def test_sam_build_succeeds(tmp_path: Path) -> None:
    if shutil.which("python3.11") is None:
        pytest.skip("sam build needs python3.11 on PATH, the runtime's version")
    started = time.monotonic()
    build = subprocess.run(
        [
            str(BIN / "sam"),
            "build",
            "--build-dir",
            str(tmp_path / "build"),
            "--cache-dir",
            str(ROOT / ".aws-sam" / "cache"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "SAM_CLI_TELEMETRY": "0"},
        timeout=900,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    print(f"sam build took {time.monotonic() - started:.0f} s")
    built = tmp_path / "build"
    layer = built / "JobtailLayer" / "python"
    for module in ("jobtail/__init__.py", "jobtail/janitor.py", "jobtail/aws.py"):
        assert (layer / module).is_file(), module
    for package in ("fastapi", "mangum", "aws_lambda_powertools", "uvicorn", "supabase", "boto3"):
        assert (layer / package).is_dir(), package
    assert os.access(built / "StreamFunction" / "run.sh", os.X_OK)
    for name in ("Api", "Worker", "Janitor", "Stream"):
        assert (built / f"{name}Function" / "app.py").is_file()
