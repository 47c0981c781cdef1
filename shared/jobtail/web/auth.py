"""Bearer API keys for writes and JSON reads; short-lived signed stream tokens for EventSource.

EventSource cannot send headers, so ``generate`` and ``status`` hand out a token scoped to one
run, which ``logs`` accepts as ``?token=``. Tokens are signed with their own secret
(``JOBTAIL_SECRET``), never with an API key, so rotating a key leaves outstanding tokens valid;
rotating the secret itself keeps the retired ones in ``JOBTAIL_OLD_SECRETS`` for verification
until the last token they signed has expired. Off (``JOBTAIL_AUTH=none``) on a loopback bind.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from itsdangerous import BadSignature, URLSafeSerializer

from ..config import Settings

# Loopback without JOBTAIL_SECRET: tokens live as long as this process (one local server).
_PROCESS_SECRET = secrets.token_bytes(32)


class AuthError(Exception):
    """Missing or wrong credentials; the message says which."""


def _serializer(settings: Settings, run_id: str) -> URLSafeSerializer:
    """Signs with the current secret, verifies with it and the retired ones. The run id is the
    salt, so a token is worthless for any other run."""
    if settings.secret is None:
        if not settings.loopback:
            raise AuthError("stream tokens need JOBTAIL_SECRET beyond a loopback bind")
        keys: list[bytes] = [_PROCESS_SECRET]
    else:
        retired = [old.get_secret_value().encode() for old in settings.old_secrets]
        keys = [*retired, settings.secret.get_secret_value().encode()]  # the last one signs
    return URLSafeSerializer(keys, salt=f"jobtail-stream:{run_id}")


def make_stream_token(settings: Settings, run_id: str, now: float | None = None) -> str:
    """A token for one run, valid until ``now + stream_token_ttl`` (that second excluded)."""
    expires = int((time.time() if now is None else now) + settings.stream_token_ttl)
    token = _serializer(settings, run_id).dumps(expires)
    assert isinstance(token, str)
    return token


def check_stream_token(
    settings: Settings, run_id: str, token: str, now: float | None = None
) -> None:
    if "." not in token:
        raise AuthError("malformed stream token")
    try:
        expires = _serializer(settings, run_id).loads(token)
    except BadSignature as exc:
        raise AuthError("stream token is not valid for this run") from exc
    if not isinstance(expires, int):
        raise AuthError("malformed stream token")
    if expires <= (time.time() if now is None else now):
        raise AuthError("stream token expired: ask for a new one with the status route")


def _digest(key: str) -> bytes:
    """Equal-length values, so comparing them says nothing about a key's length."""
    return hashlib.sha256(key.encode()).digest()


def check_bearer(settings: Settings, authorization: str | None) -> None:
    if settings.auth == "none":
        return
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise AuthError("missing bearer token: send Authorization: Bearer <api key>")
    given = _digest(key.strip())
    matched = False
    for allowed in settings.api_keys:  # every key compared: the time says nothing of which
        matched |= hmac.compare_digest(_digest(allowed.get_secret_value()), given)
    if not matched:
        raise AuthError("unknown API key")
