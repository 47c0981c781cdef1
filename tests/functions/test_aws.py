"""jobtail.aws: secrets resolved from Secrets Manager and SSM; the API Gateway stage prefix."""

from __future__ import annotations

import json
from typing import Any

import anyio
import boto3
import pytest

from jobtail.aws import StagePrefix, read_secret, resolve_secrets
from tests.events import load_event

from .conftest import Aws


@pytest.fixture
def clients(aws: Aws) -> dict[str, Any]:
    secrets, ssm = boto3.client("secretsmanager"), boto3.client("ssm")
    secrets.create_secret(Name="app/store/supabase-service-key", SecretString="service-key")
    secrets.create_secret(Name="app/bundle", SecretString=json.dumps({"JOBTAIL_SECRET": "hmac"}))
    ssm.put_parameter(
        Name="/app/store/url", Value="postgresql://u:p@h:6543/db", Type="SecureString"
    )
    return {"secrets_client": secrets, "ssm_client": ssm}


def test_references_become_values(clients: dict[str, Any]) -> None:
    environ = {
        "SUPABASE_SERVICE_KEY_REF": "secretsmanager:app/store/supabase-service-key",
        "JOBTAIL_STORE_REF": "ssm:app/store/url",  # a hierarchical name gets its leading /
        "JOBTAIL_SECRET_REF": "secretsmanager:app/bundle#JOBTAIL_SECRET",
        "OTHER": "untouched",
    }
    resolved = resolve_secrets(environ, **clients)
    assert resolved == ["JOBTAIL_SECRET", "JOBTAIL_STORE", "SUPABASE_SERVICE_KEY"]
    assert environ["SUPABASE_SERVICE_KEY"] == "service-key"
    assert environ["JOBTAIL_STORE"] == "postgresql://u:p@h:6543/db"
    assert environ["JOBTAIL_SECRET"] == "hmac"


def test_a_value_already_set_wins_and_empty_references_are_skipped(
    clients: dict[str, Any],
) -> None:
    environ = {
        "SUPABASE_SERVICE_KEY_REF": "secretsmanager:app/store/supabase-service-key",
        "SUPABASE_SERVICE_KEY": "given",
        "JOBTAIL_SECRET_REF": "",
    }
    assert resolve_secrets(environ, **clients) == []
    assert environ["SUPABASE_SERVICE_KEY"] == "given" and "JOBTAIL_SECRET" not in environ


@pytest.mark.parametrize("ref", ["vault:app/x", "secretsmanager:", "app/store/url"])
def test_a_reference_of_no_known_kind_is_refused(ref: str, clients: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="secret reference"):
        read_secret(ref, **clients)


def test_a_missing_secret_fails_the_cold_start_loudly(clients: dict[str, Any]) -> None:
    with pytest.raises(clients["secrets_client"].exceptions.ResourceNotFoundException):
        resolve_secrets({"JOBTAIL_SECRET_REF": "secretsmanager:app/nothing"}, **clients)


def scope_seen(event: dict[str, Any]) -> dict[str, Any]:
    """The scope an app behind StagePrefix receives for a Mangum scope of this event."""
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(scope)

    scope = {"type": "http", "path": event["path"], "root_path": "", "aws.event": event}
    anyio.run(StagePrefix(app), scope, None, None)
    return seen


def test_the_stage_becomes_the_root_path() -> None:
    scope = scope_seen(load_event("api-status"))
    assert scope["root_path"] == "/Prod"
    assert scope["path"] == "/Prod/runs/petstore/pydantic/status"


@pytest.mark.parametrize(("client_path", "root"), [("", ""), ("/jobtail", "/jobtail")])
def test_a_custom_domain_keeps_its_base_path(client_path: str, root: str) -> None:
    event = load_event("api-status")
    event["requestContext"]["path"] = client_path + event["path"]
    scope = scope_seen(event)
    assert scope["root_path"] == root and scope["path"] == root + event["path"]


def test_behind_cloudfront_the_viewer_sees_no_stage() -> None:
    event = load_event("api-status")
    event["headers"]["X-Jobtail-Edge"] = "cloudfront"
    scope = scope_seen(event)
    assert scope["root_path"] == "" and scope["path"] == event["path"]
