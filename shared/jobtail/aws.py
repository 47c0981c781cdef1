"""AWS glue for the Lambda functions: secrets resolved at cold start, the API Gateway stage prefix.

Secrets never sit in a function's configuration. The template sets ``<NAME>_REF`` to where a
secret lives, and ``resolve_secrets`` reads each one once per execution environment into
``<NAME>``, so ``Settings`` and the stores read ordinary environment variables:

- ``secretsmanager:<name or ARN>`` - a Secrets Manager secret string;
- ``ssm:<parameter name>`` - an SSM parameter, decrypted (SecureString); a hierarchical name
  gets its leading ``/`` if it lacks one (``ssm:jobtail/dev/x`` reads ``/jobtail/dev/x``).

Either may end in ``#key`` to pick one field of a JSON secret. A variable already set to a
non-empty value is left alone (``sam local invoke --env-vars`` can pass values directly).
Clients are passed in (tests hand in moto's); by default boto3 creates them on first use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, MutableMapping
from typing import Any

from .config import Settings

__all__ = [
    "REF_SUFFIX",
    "StagePrefix",
    "lambda_settings",
    "read_secret",
    "resolve_secrets",
    "retry_delay",
]

REF_SUFFIX = "_REF"
EDGE_HEADER = "x-jobtail-edge"
"""Set by the CloudFront origin (template.yaml): the viewer's URLs have no API Gateway stage."""
RETRY_FIRST_SECONDS = 5
RETRY_MAX_SECONDS = 120

ASGIApp = Callable[[dict[str, Any], Any, Any], Any]


def _client(service: str, given: Any) -> Any:
    if given is not None:
        return given
    import boto3

    return boto3.client(service)  # type: ignore[call-overload]


def read_secret(ref: str, *, secrets_client: Any = None, ssm_client: Any = None) -> str:
    """The value a reference names; ValueError for a reference of no known kind."""
    scheme, _, rest = ref.partition(":")
    name, _, field = rest.partition("#")
    if not name:
        raise ValueError(f"secret reference {ref!r} names nothing")
    if scheme == "secretsmanager":
        client = _client("secretsmanager", secrets_client)
        value = str(client.get_secret_value(SecretId=name)["SecretString"])
    elif scheme == "ssm":
        if "/" in name and not name.startswith(("/", "arn:")):
            name = f"/{name}"
        client = _client("ssm", ssm_client)
        value = str(client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
    else:
        raise ValueError(f"secret reference {ref!r}: use secretsmanager:<name> or ssm:<name>")
    return str(json.loads(value)[field]) if field else value


def resolve_secrets(
    environ: MutableMapping[str, str] | None = None,
    *,
    secrets_client: Any = None,
    ssm_client: Any = None,
) -> list[str]:
    """Set every ``<NAME>`` that has a ``<NAME>_REF`` and no value yet; return the names set."""
    env = os.environ if environ is None else environ
    resolved = []
    for key, ref in sorted(env.items()):
        name = key.removesuffix(REF_SUFFIX)
        if key == name or not ref or env.get(name):
            continue
        env[name] = read_secret(ref, secrets_client=secrets_client, ssm_client=ssm_client)
        resolved.append(name)
    return resolved


def lambda_settings() -> Settings:
    """Settings from the environment once its secret references are resolved."""
    resolve_secrets()
    return Settings()


def retry_delay(receive_count: int) -> int:
    """Seconds until an SQS record whose run could not be claimed is delivered again.

    Doubles from 5 s with each receive, up to 2 minutes: a store that blinked is retried at once,
    one that is down for a while is not hammered, and the record reaches the dead-letter queue
    after ``maxReceiveCount`` tries spread over minutes rather than half-hours.
    """
    tries = min(max(receive_count, 1), 16)
    return int(min(RETRY_FIRST_SECONDS * 2 ** (tries - 1), RETRY_MAX_SECONDS))


class StagePrefix:
    """ASGI wrapper giving the app the URL prefix API Gateway strips (``/Prod``, a base path).

    Mangum passes the path without the stage; the app's generated links (``stream_url``) then
    miss it. ``requestContext.path`` is the path the client asked for, so the prefix is what it
    has before the routed path; behind a custom domain with no base path it is empty. Behind
    CloudFront (the template's origin sets ``X-Jobtail-Edge``) viewers see no stage at all.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        event = scope.get("aws.event") or {}
        prefix = _prefix(event.get("requestContext", {}).get("path", ""), event.get("path", ""))
        headers = {str(k).lower() for k in (event.get("headers") or {})}
        if EDGE_HEADER in headers:
            prefix = ""
        if scope["type"] == "http" and prefix:
            scope = {**scope, "root_path": prefix, "path": prefix + scope["path"]}
        await self.app(scope, receive, send)


def _prefix(client_path: str, routed_path: str) -> str:
    if not routed_path or not client_path.endswith(routed_path):
        return ""
    return client_path[: len(client_path) - len(routed_path)].rstrip("/")
