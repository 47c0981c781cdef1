"""Helpers for calling the Lambda handlers as Lambda does: fresh modules, events, SSE bodies."""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.events import load_event

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"


def load_handler(name: str) -> ModuleType:
    """``functions/<name>/app.py`` as a new module: a new execution environment (cold start).

    Every function's module is named ``app``, so each is loaded by path under a unique name
    and never registered in ``sys.modules``; nothing is shared between two loads.
    """
    if importlib.util.find_spec("aws_xray_sdk") is None:
        pytest.fail("the handlers' Tracer needs aws-xray-sdk (jobtail[aws]): run `make install`")
    path = FUNCTIONS / name / "app.py"
    spec = importlib.util.spec_from_file_location(f"function_{name}_{uuid.uuid4().hex}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class FakeContext:
    """The attributes of the Lambda context object that powertools reads."""

    function_name: str = "jobtail-test"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:jobtail-test"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/jobtail-test"
    log_stream_name: str = "2026/11/24/[$LATEST]test"
    remaining_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


# -- API Gateway REST proxy events -------------------------------------------------------------
def for_key(event: dict[str, Any], upload_id: str, service: str) -> dict[str, Any]:
    """The same request for another key ``(upload_id, service)``."""
    event = copy.deepcopy(event)
    old = "/runs/petstore/pydantic"
    new = f"/runs/{upload_id}/{service}"
    event["path"] = event["path"].replace(old, new)
    event["requestContext"]["path"] = event["requestContext"]["path"].replace(old, new)
    params = event.get("pathParameters") or {}
    if "upload_id" in params:
        params.update(upload_id=upload_id, service=service)
    if "proxy" in params:
        params["proxy"] = params["proxy"].replace(old[1:], new[1:])
    return event


def with_header(event: dict[str, Any], name: str, value: str | None) -> dict[str, Any]:
    """The event with a header set (or removed), in both header maps as API Gateway sends."""
    event = copy.deepcopy(event)
    for key in [k for k in event["headers"] if k.lower() == name.lower()]:
        del event["headers"][key]
        del event["multiValueHeaders"][key]
    if value is not None:
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]
    return event


def with_query(event: dict[str, Any], **params: str) -> dict[str, Any]:
    """The event with these query parameters added."""
    event = copy.deepcopy(event)
    query = {**(event.get("queryStringParameters") or {}), **params}
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    return event


def sqs_event(*bodies: str) -> dict[str, Any]:
    """An SQS event shaped like ``events/worker-sqs.json``, one record per body."""
    template = load_event("worker-sqs")["Records"][0]
    records = []
    for body in bodies:
        record = copy.deepcopy(template)
        record.update(messageId=str(uuid.uuid4()), body=body, receiptHandle=uuid.uuid4().hex)
        records.append(record)
    return {"Records": records}


# -- SSE bodies, read as a browser's EventSource reads them --------------------------------------
@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SseBody:
    """The events a browser would dispatch, plus its Last-Event-ID and retry after the body."""

    events: list[SseEvent] = field(default_factory=list)
    last_id: str | None = None
    retry: int | None = None
    comments: list[str] = field(default_factory=list)

    def lines(self) -> list[dict[str, Any]]:
        return [e.json() for e in self.events if e.event == "message"]

    def named(self, name: str) -> list[SseEvent]:
        return [e for e in self.events if e.event == name]


def parse_sse(text: str) -> SseBody:
    """Parse an event stream per the HTML spec: an ``id`` moves Last-Event-ID even with no data."""
    body = SseBody()
    data: list[str] = []
    kind = ""
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not line:
            if data:
                body.events.append(SseEvent(kind or "message", "\n".join(data), body.last_id))
            data, kind = [], ""
        elif line.startswith(":"):
            body.comments.append(line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                kind = value
            elif name == "id" and "\0" not in value:
                body.last_id = value
            elif name == "retry" and value.isdigit():
                body.retry = int(value)
    return body


# -- template.yaml ----------------------------------------------------------------------------
@functools.cache
def template() -> dict[str, Any]:
    """template.yaml as data (CloudFormation's short tags become ``{"Fn::...": ...}``)."""
    from cfnlint.decode import decode

    loaded, matches = decode(str(ROOT / "template.yaml"))
    assert loaded is not None, matches
    data: dict[str, Any] = json.loads(json.dumps(loaded, default=str))
    return data


def resource(name: str) -> dict[str, Any]:
    properties: dict[str, Any] = template()["Resources"][name]["Properties"]
    return properties


def function_env(name: str) -> dict[str, str]:
    """A function's literal environment (Globals merged): values set by intrinsics are left out."""
    merged = {
        **template()["Globals"]["Function"]["Environment"]["Variables"],
        **resource(name)["Environment"]["Variables"],
    }
    return {key: value for key, value in merged.items() if isinstance(value, str)}
