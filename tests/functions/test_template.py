"""template.yaml: the settings the functions depend on, cfn-lint, and `sam build`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from jobtail.aws import retry_delay

from .lambdas import FUNCTIONS, ROOT, function_env, resource, template

BIN = Path(sys.executable).parent


def test_the_stream_function_runs_the_app_under_the_web_adapter() -> None:
    stream = resource("StreamFunction")
    env = function_env("StreamFunction")
    assert stream["Handler"] == "run.sh" and os.access(FUNCTIONS / "stream" / "run.sh", os.X_OK)
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["AWS_LWA_READINESS_CHECK_PATH"] == "/livez"  # never waits on the store
    assert env["AWS_LWA_PORT"] == env["PORT"]
    assert "FunctionUrlConfig" not in stream  # no public door to the whole app
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
    jobs = resource("WorkerJobs")
    assert jobs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert jobs["BatchSize"] == 1
    assert jobs["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "WorkerConcurrency"}
    assert "Events" not in resource("WorkerFunction")  # no SAM event: no managed SQS policy on *
    queue = resource("JobQueue")
    assert queue["VisibilityTimeout"] >= 6 * resource("WorkerFunction")["Timeout"]
    # failed claims come back sooner: the retries before the dead-letter queue span minutes
    tries = queue["RedrivePolicy"]["maxReceiveCount"]
    assert sum(retry_delay(n) for n in range(1, tries)) >= 300


def test_the_layer_is_the_package_built_for_the_runtime() -> None:
    layer = template()["Resources"]["JobtailLayer"]
    assert layer["Metadata"] == {"BuildMethod": "python3.13", "BuildArchitecture": "arm64"}
    assert layer["Properties"]["ContentUri"] == "shared/"
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert template()["Globals"]["Function"]["Runtime"] == "python3.13"
    assert template()["Globals"]["Function"]["Architectures"] == ["arm64"]
    layers = resource("StreamFunction")["Layers"][0]["Fn::If"][2]["Fn::Sub"]
    assert ":layer:LambdaAdapterLayerArm64:${WebAdapterLayerVersion}" in layers


def statements(function: str) -> list[dict[str, Any]]:
    found = []
    for policy in resource(function).get("Policies", []):
        if isinstance(policy, dict) and "Statement" in policy:
            found.extend(policy["Statement"])
    return found


def actions(function: str) -> set[str]:
    names: set[str] = set()
    for statement in statements(function):
        wanted = statement["Action"]
        names.update([wanted] if isinstance(wanted, str) else wanted)
    return names


def test_each_function_gets_only_the_s3_and_queue_actions_it_uses() -> None:
    assert actions("ApiFunction") == {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}
    assert actions("StreamFunction") == {"s3:GetObject", "s3:ListBucket"}  # it only reads
    assert actions("WorkerFunction") == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueUrl",
    }
    assert actions("JanitorFunction") == set()
    for function in ("ApiFunction", "StreamFunction", "WorkerFunction", "JanitorFunction"):
        text = json.dumps(resource(function).get("Policies", []))
        assert "S3ReadPolicy" not in text and "S3WritePolicy" not in text  # ACL, lifecycle
        for statement in statements(function):
            wanted = statement["Action"]
            if any(a.startswith("sqs:") for a in ([wanted] if isinstance(wanted, str) else wanted)):
                assert statement["Resource"] == {"Fn::GetAtt": ["JobQueue", "Arn"]}


def test_viewers_cannot_take_the_concurrency_the_rest_needs() -> None:
    assert resource("StreamFunction")["ReservedConcurrentExecutions"] == {
        "Ref": "StreamConcurrency"
    }
    assert resource("WorkerFunction")["ReservedConcurrentExecutions"] == {
        "Ref": "WorkerConcurrency"
    }
    assert "ReservedConcurrentExecutions" not in resource("ApiFunction")  # the stage throttles it


def test_every_alarm_notifies_the_topic_given() -> None:
    alarms = {
        name: body["Properties"]
        for name, body in template()["Resources"].items()
        if body["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert set(alarms) >= {
        "DeadLetterAlarm",
        "JanitorErrorsAlarm",
        "WorkerThrottlesAlarm",
        "StreamThrottlesAlarm",
        "RunsFailedStaleAlarm",
    }
    notify = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == notify, name
    stale = alarms["RunsFailedStaleAlarm"]
    assert (stale["Namespace"], stale["MetricName"]) == ("jobtail", "RunsFailedStale")
    janitor_service = function_env("JanitorFunction")["POWERTOOLS_SERVICE_NAME"]
    assert stale["Dimensions"] == [{"Name": "service", "Value": janitor_service}]


def test_access_logs_never_carry_query_strings() -> None:
    log_format = resource("Api")["AccessLogSetting"]["Format"]
    json.loads(log_format.replace("$context.", ""))  # one JSON object per request
    variables = set(re.findall(r"\$context\.[A-Za-z.]+", log_format))
    assert "$context.path" in variables
    assert not any("query" in v.lower() or "querystring" in v.lower() for v in variables)
    run_sh = (FUNCTIONS / "stream" / "run.sh").read_text()
    assert "--no-access-log" in run_sh  # uvicorn would log each URL, token included


def test_the_queued_timeout_is_a_parameter() -> None:
    env = template()["Globals"]["Function"]["Environment"]["Variables"]
    assert env["JOBTAIL_QUEUED_TIMEOUT"] == {"Ref": "QueuedTimeoutSeconds"}
    assert template()["Parameters"]["QueuedTimeoutSeconds"]["Type"] == "Number"


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


def runs(python: str) -> bool:
    """Whether ``python`` is on PATH and starts (a pyenv shim may exist for a missing one)."""
    if shutil.which(python) is None:
        return False
    return subprocess.run([python, "-c", "pass"], capture_output=True).returncode == 0


@pytest.mark.integration
def test_sam_build_succeeds(tmp_path: Path) -> None:
    runtime = template()["Globals"]["Function"]["Runtime"]  # python3.13
    if not runs(runtime):
        pytest.skip(f"sam build needs {runtime} on PATH, the runtime's version (none here)")
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
