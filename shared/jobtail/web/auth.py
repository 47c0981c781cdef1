"""Bearer API keys for writes and JSON reads; short-lived HMAC stream tokens for EventSource.

EventSource cannot send headers, so ``generate`` and ``status`` hand out a token scoped to one
run, which ``logs`` accepts as ``?token=``. Off (``JOBTAIL_AUTH=none``) on a loopback bind.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from ..config import Settings


class AuthError(Exception):
    """Missing or wrong credentials; the message says which."""


def _secret(settings: Settings) -> bytes:
    if settings.secret is not None:
        return settings.secret.get_secret_value().encode()
    if settings.api_keys:
        return hashlib.sha256(
            b"jobtail-stream:" + settings.api_keys[0].get_secret_value().encode()
        ).digest()
    raise AuthError("stream tokens need JOBTAIL_SECRET or JOBTAIL_API_KEYS")


def _sign(secret: bytes, payload: str) -> str:
    digest = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode().rstrip("=")


def make_stream_token(settings: Settings, run_id: str, now: float | None = None) -> str:
    expires = int((now or time.time()) + settings.stream_token_ttl)
    payload = f"{run_id}.{expires}"
    return f"{expires}.{_sign(_secret(settings), payload)}"


def check_stream_token(
    settings: Settings, run_id: str, token: str, now: float | None = None
) -> None:
    expires_text, _, signature = token.partition(".")
    if not expires_text.isdigit() or not signature:
        raise AuthError("malformed stream token")
    expected = _sign(_secret(settings), f"{run_id}.{expires_text}")
    if not hmac.compare_digest(expected, signature):
        raise AuthError("stream token is not valid for this run")
    if int(expires_text) <= (now or time.time()):
        raise AuthError("stream token expired: ask for a new one with the status route")


def check_bearer(settings: Settings, authorization: str | None) -> None:
    if settings.auth == "none":
        return
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise AuthError("missing bearer token: send Authorization: Bearer <api key>")
    for allowed in settings.api_keys:
        if hmac.compare_digest(allowed.get_secret_value().encode(), key.strip().encode()):
            return
    raise AuthError("unknown API key")
