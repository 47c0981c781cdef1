"""Bearer API keys for writes and JSON reads; short-lived signed run tokens for the rest.

Two kinds of run token, each scoped to one run, signed with their own secret (``JOBTAIL_SECRET``)
and a salt of their own, so neither ever verifies as the other:

- a *stream token* (read): EventSource cannot send headers, so ``generate`` and ``status`` hand
  out a token that ``logs`` accepts as ``?token=``;
- a *write token* (``jtw_...``, sent as ``Authorization: Bearer``): what a worker in another
  process or language holds instead of an API key; it lets a producer append to and close
  ``/v1/stream/runs/{its run}`` (and HEAD it) and nothing else, so a leaked worker credential
  cannot read or write any other run.

Tokens are never signed with an API key, so rotating a key leaves outstanding tokens valid;
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


WRITE_PREFIX = "jtw_"  # tells a write token from an API key at a glance (and to secret scanners)
WRITE_SALT = "jobtail-write"


class AuthError(Exception):
    """Missing or wrong credentials; the message says which."""


class ScopeError(AuthError):
    """A valid run write token used for anything but its run's producer writes (a 403)."""

    def __init__(self, run_id: str, message: str | None = None) -> None:
        super().__init__(
            message
            or f"a write token only writes run {run_id} (POST and HEAD on "
            f"/v1/stream/runs/{run_id}); this needs an API key"
        )
        self.run_id = run_id


def _serializer(settings: Settings, salt: str) -> URLSafeSerializer:
    """Signs with the current secret, verifies with it and the retired ones."""
    if settings.secret is None:
        if not settings.loopback:
            raise AuthError("stream tokens need JOBTAIL_SECRET beyond a loopback bind")
        keys: list[bytes] = [_PROCESS_SECRET]
    else:
        retired = [old.get_secret_value().encode() for old in settings.old_secrets]
        keys = [*retired, settings.secret.get_secret_value().encode()]  # the last one signs
    return URLSafeSerializer(keys, salt=salt)


def _read_salt(run_id: str) -> str:
    """The run id is the salt of a read token, so it is worthless for any other run."""
    return f"jobtail-stream:{run_id}"


def make_stream_token(settings: Settings, run_id: str, now: float | None = None) -> str:
    """A token for one run, valid until ``now + stream_token_ttl`` (that second excluded)."""
    expires = int((time.time() if now is None else now) + settings.stream_token_ttl)
    token = _serializer(settings, _read_salt(run_id)).dumps(expires)
    assert isinstance(token, str)
    return token


def check_stream_token(
    settings: Settings, run_id: str, token: str, now: float | None = None
) -> None:
    if "." not in token:
        raise AuthError("malformed stream token")
    try:
        expires = _serializer(settings, _read_salt(run_id)).loads(token)
    except BadSignature as exc:
        raise AuthError("stream token is not valid for this run") from exc
    if not isinstance(expires, int):
        raise AuthError("malformed stream token")
    if expires <= (time.time() if now is None else now):
        raise AuthError("stream token expired: ask for a new one with the status route")


def make_write_token(
    settings: Settings, run_id: str, ttl: float | None = None, now: float | None = None
) -> str:
    """A worker's credential for one run: producer writes to its stream until ``now + ttl``
    (default ``write_token_ttl``; that second excluded)."""
    lifetime = settings.write_token_ttl if ttl is None else ttl
    if lifetime <= 0:
        raise ValueError("a write token's ttl must be positive")
    expires = int((time.time() if now is None else now) + lifetime)
    claims = {"scope": "write", "run": run_id, "exp": expires}
    return WRITE_PREFIX + str(_serializer(settings, WRITE_SALT).dumps(claims))


def check_write_token(settings: Settings, token: str, now: float | None = None) -> str:
    """The run a write token may write; AuthError if it is malformed, forged or expired."""
    body = token.removeprefix(WRITE_PREFIX)
    if body == token or "." not in body:
        raise AuthError("malformed write token")
    try:
        claims = _serializer(settings, WRITE_SALT).loads(body)
    except BadSignature as exc:
        raise AuthError("write token is not valid (altered, or its secret was retired)") from exc
    if (
        not isinstance(claims, dict)
        or claims.get("scope") != "write"
        or not isinstance(claims.get("run"), str)
        or not isinstance(claims.get("exp"), int)
    ):
        raise AuthError("malformed write token")
    if claims["exp"] <= (time.time() if now is None else now):
        raise AuthError(f"write token for run {claims['run']} expired: ask for a new one")
    run_id: str = claims["run"]
    return run_id


def challenge(status: int, detail: str) -> str:
    """``WWW-Authenticate`` for a refusal (RFC 6750), with the reason: a HEAD has no body."""
    error = "invalid_token" if status == 401 else "insufficient_scope"
    description = detail.replace('"', "'").replace("\\", "/")
    return f'Bearer error="{error}", error_description="{description}"'


def _digest(key: str) -> bytes:
    """Equal-length values, so comparing them says nothing about a key's length."""
    return hashlib.sha256(key.encode()).digest()


def bearer_grant(settings: Settings, authorization: str | None) -> str | None:
    """Who the bearer is: None for an API key (anything goes), else the run id of a valid
    write token; AuthError for anything else. Only with ``JOBTAIL_AUTH=apikey``."""
    scheme, _, key = (authorization or "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise AuthError("missing bearer token: send Authorization: Bearer <api key>")
    given = _digest(key)
    matched = False
    for allowed in settings.api_keys:  # every key compared: the time says nothing of which
        matched |= hmac.compare_digest(_digest(allowed.get_secret_value()), given)
    if matched:
        return None
    if key.startswith(WRITE_PREFIX):
        return check_write_token(settings, key)
    raise AuthError("unknown API key")


def check_bearer(settings: Settings, authorization: str | None) -> None:
    """An API key, or AuthError (ScopeError for a run's write token: it is not an API key)."""
    if settings.auth == "none":
        return
    run_id = bearer_grant(settings, authorization)
    if run_id is not None:
        raise ScopeError(run_id)


def producer_token(
    run_id: str, *, ttl: float | None = None, settings: Settings | None = None
) -> str:
    """A write token for ``run_id``, for a host that creates runs itself and hands their workers
    only this (``jobtail.run(server_url, run_id=..., token=...)``). Signed with the server's
    ``JOBTAIL_SECRET`` (read from the environment unless ``settings`` are given)."""
    settings = settings or Settings()
    if settings.secret is None:
        raise AuthError(
            "producer_token needs JOBTAIL_SECRET, the jobtail server's signing secret: the "
            "server checks the token with it"
        )
    return make_write_token(settings, run_id, ttl)
