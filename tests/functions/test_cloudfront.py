"""The CloudFront side of stream reads: the edge function (run by Node against tokens the app
makes) and the template's cache policy, which must key on the protocol's query parameters and
never on the token."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobtail.config import Settings
from jobtail.web.auth import AuthError, check_stream_token, make_stream_token
from tests.conftest import ServerThread

from .lambdas import ROOT, resource, template

SECRET = "edge-test-secret-of-at-least-32-characters"
OLD_SECRET = "retired-secret-of-at-least-32-characters!"
RUN_ID = "0194f3a1b2c3d4e5f6a7b8c9"
OTHER_RUN_ID = "0194f3a1b2c3ffffffffffff"
FUNCTION_SOURCE = ROOT / "cloudfront" / "stream-auth.js"
NODE_TESTS = ROOT / "tests" / "cloudfront"


def node() -> str:
    found = shutil.which("node")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the CloudFront Function's tests need node (apt-get install nodejs)")
        pytest.skip("node not on PATH: the CloudFront Function's tests need it (CI installs it)")
    return found


def _tamper(token: str) -> tuple[str, str]:
    payload, _, signature = token.rpartition(".")
    later = base64.urlsafe_b64encode(b"9999999999").rstrip(b"=").decode()
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{later}.{signature}", f"{payload}.{flipped}"


def vectors(now: float) -> dict[str, Any]:
    """Tokens as the app makes them, each with the verdict the app itself gives it."""
    settings = Settings(secret=SECRET, old_secrets=OLD_SECRET)
    retiring = Settings(secret=OLD_SECRET)
    valid = make_stream_token(settings, RUN_ID, now=now)
    tampered_payload, tampered_signature = _tamper(valid)
    tokens = {
        "valid": valid,
        "retired": make_stream_token(retiring, RUN_ID, now=now),
        "expired": make_stream_token(settings, RUN_ID, now=now - settings.stream_token_ttl - 5),
        "tampered_payload": tampered_payload,
        "tampered_signature": tampered_signature,
        "other_run": make_stream_token(settings, OTHER_RUN_ID, now=now),
    }
    for name, token in tokens.items():  # the edge must agree with the app on every one
        try:
            check_stream_token(settings, RUN_ID, token, now=now)
        except AuthError:
            assert name not in ("valid", "retired"), name
        else:
            assert name in ("valid", "retired"), name
    return {
        "secret": SECRET,
        "old_secrets": [OLD_SECRET],
        "run_id": RUN_ID,
        "other_run_id": OTHER_RUN_ID,
        "valid_expires": int(now + settings.stream_token_ttl),
        "tokens": tokens,
    }


def test_the_edge_function_agrees_with_the_app_on_every_token(tmp_path: Path) -> None:
    binary = node()
    data = tmp_path / "vectors.json"
    data.write_text(json.dumps(vectors(time.time())))
    run = subprocess.run(
        [binary, "--test", str(NODE_TESTS / "stream_auth.test.mjs")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "JOBTAIL_CF_VECTORS": str(data)},
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert "# skipped 0" in report and "# fail 0" in report, report


# -- the template ---------------------------------------------------------------------------------
def stream_behavior() -> dict[str, Any]:
    config = resource("Distribution")["DistributionConfig"]
    (behavior,) = [b for b in config["CacheBehaviors"] if b["PathPattern"] == "/v1/stream/runs/*"]
    return dict(behavior)


def test_the_cache_key_has_the_protocol_parameters_and_never_the_token() -> None:
    config = resource("StreamCachePolicy")["CachePolicyConfig"]
    key = config["ParametersInCacheKeyAndForwardedToOrigin"]
    queries = key["QueryStringsConfig"]
    assert queries["QueryStringBehavior"] == "whitelist"
    assert sorted(queries["QueryStrings"]) == ["cursor", "live", "offset"]
    assert key["HeadersConfig"]["HeaderBehavior"] == "none"  # no Authorization in the key
    assert key["CookiesConfig"]["CookieBehavior"] == "none"
    assert config["MinTTL"] == 0  # the origin's no-store (an open tail) is obeyed
    assert key["EnableAcceptEncodingGzip"] and key["EnableAcceptEncodingBrotli"]


def test_the_origin_still_sees_the_token_and_checks_it_again() -> None:
    policy = resource("StreamOriginRequestPolicy")["OriginRequestPolicyConfig"]
    assert policy["QueryStringsConfig"] == {
        "QueryStringBehavior": "whitelist",
        "QueryStrings": ["token"],
    }
    assert policy["HeadersConfig"]["HeaderBehavior"] == "none"
    assert policy["CookiesConfig"]["CookieBehavior"] == "none"


def test_stream_reads_pass_the_edge_function_and_the_rest_is_not_cached() -> None:
    behavior = stream_behavior()
    assert behavior["CachePolicyId"] == {"Ref": "StreamCachePolicy"}
    assert behavior["OriginRequestPolicyId"] == {"Ref": "StreamOriginRequestPolicy"}
    assert behavior["AllowedMethods"] == ["GET", "HEAD", "OPTIONS"]
    (association,) = behavior["FunctionAssociations"]
    assert association["EventType"] == "viewer-request"
    assert association["FunctionARN"] == {"Fn::GetAtt": ["StreamAuthFunction", "FunctionARN"]}
    default = resource("Distribution")["DistributionConfig"]["DefaultCacheBehavior"]
    caching_disabled = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"  # the managed CachingDisabled
    assert default["CachePolicyId"] == caching_disabled
    assert "FunctionAssociations" not in default
    assert len(default["AllowedMethods"]) == 7


def test_the_template_deploys_the_tested_function_code() -> None:
    function = resource("StreamAuthFunction")
    assert function["FunctionConfig"]["Runtime"] == "cloudfront-js-2.0"
    code, variables = function["FunctionCode"]["Fn::Sub"]
    assert code == FUNCTION_SOURCE.read_text()
    assert set(variables) == {"KeyValueStoreId"}
    (association,) = function["FunctionConfig"]["KeyValueStoreAssociations"]
    assert association["KeyValueStoreARN"] == {"Fn::GetAtt": ["StreamKeys", "Arn"]}
    assert len(code.encode()) < 10_240  # CloudFront Functions' code size limit


def test_long_polls_and_sse_end_before_cloudfronts_origin_read_timeout() -> None:
    origin = next(
        o for o in resource("Distribution")["DistributionConfig"]["Origins"] if o["Id"] == "api"
    )
    read_timeout = origin["CustomOriginConfig"]["OriginReadTimeout"]
    env = {**template()["Globals"]["Function"]["Environment"]["Variables"]}
    env.update(resource("StreamFunction")["Environment"]["Variables"])
    assert float(env["JOBTAIL_LONG_POLL_SECONDS"]) + 5 <= read_timeout <= 60
    assert float(env["JOBTAIL_SSE_SECONDS"]) + 5 <= read_timeout
    assert origin["CustomOriginConfig"]["OriginProtocolPolicy"] == "https-only"


# -- the origin: what CloudFront may keep ----------------------------------------------------------
def test_a_token_read_is_public_so_the_edge_can_cache_it_and_a_bearer_read_is_not(
    tmp_path: Path, serve: Callable[[object], ServerThread]
) -> None:
    """CloudFront never caches ``private``: a read opened by a run token (checked at the edge,
    and again here) must be shareable, one opened by an API key stays private."""
    from jobtail.store.base import LogLine, RunStatus
    from jobtail.web.app import create_app
    from tests.scripted import make_services

    key = "k" * 20
    services, _ = make_services(tmp_path, auth="apikey", api_keys=key, secret=SECRET)
    store = services.store
    run = store.create_run("petstore", "pydantic")
    claimed = store.claim_run(run.run_id)
    assert claimed is not None
    now = datetime.now(UTC)
    lines = [LogLine(seq, now, "INFO", f"line {seq}") for seq in (1, 2, 3)]
    store.append(run.run_id, lines, epoch=claimed.epoch)
    store.finish_run(run.run_id, RunStatus.SUCCEEDED, epoch=claimed.epoch)
    token = make_stream_token(services.settings, run.run_id)
    url = f"/v1/stream/runs/{run.run_id}"
    server = serve(create_app(services=services))
    with httpx.Client(base_url=server.url, timeout=10) as client:
        by_token = client.get(url, params={"offset": "-1", "token": token})
        bearer = {"authorization": f"Bearer {key}"}
        by_key = client.get(url, params={"offset": "-1"}, headers=bearer)
        refused = client.get(url, params={"offset": "-1", "token": token[:-2] + "xx"})
    server.stop()
    services.close()
    assert by_token.status_code == 200 and by_token.json()[0]["seq"] == 1
    assert by_token.headers["cache-control"].startswith("public")
    assert by_key.status_code == 200 and by_key.headers["cache-control"].startswith("private")
    assert refused.status_code == 401
