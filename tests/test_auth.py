"""Bearer keys for writes and JSON reads; run-scoped, expiring stream tokens for EventSource."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from itsdangerous import URLSafeSerializer
from pydantic import SecretStr

from jobtail.config import Settings
from jobtail.web.app import create_app
from jobtail.web.auth import (
    AuthError,
    ScopeError,
    bearer_grant,
    challenge,
    check_bearer,
    check_stream_token,
    check_write_token,
    make_stream_token,
    make_write_token,
    producer_token,
)

from .conftest import ServerThread
from .scripted import make_services
from .waiting import wait_for

KEY = "/runs/petstore/scripted"
LONG = "k" * 16
SECRET = "s" * 32


def test_keys_tokens_and_their_refusals(
    tmp_path: Path, serve: Callable[[object], ServerThread]
) -> None:
    services, _ = make_services(tmp_path, auth="apikey", api_keys=[SecretStr("s3cret")])
    server = serve(create_app(services=services))
    anonymous = httpx.Client(base_url=server.url)
    client = httpx.Client(base_url=server.url, headers={"Authorization": "Bearer s3cret"})

    refused = anonymous.post(f"{KEY}/generate")
    assert refused.status_code == 401 and "bearer" in refused.json()["detail"]
    assert (
        anonymous.post(f"{KEY}/generate", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    started = client.post(f"{KEY}/generate").json()
    token = started["token"]
    wait_for(lambda: not client.get(f"{KEY}/status").json()["active"])
    assert anonymous.get(f"{KEY}/status").status_code == 401
    assert client.get(f"{KEY}/status").json()["token"]

    with anonymous.stream("GET", f"{KEY}/logs", params={"token": token}) as stream:
        assert stream.status_code == 200 and b"event: end" in stream.read()
    assert client.get(f"{KEY}/logs").status_code == 200
    assert anonymous.get(f"{KEY}/logs").status_code == 401
    wrong = anonymous.get(
        f"{KEY}/logs",
        params={"token": token[:-5] + ("A" if token[-5] != "A" else "B") + token[-4:]},
    )
    assert wrong.status_code == 401 and "not valid" in wrong.json()["detail"]
    other = make_stream_token(services.settings, "another-run")
    assert anonymous.get(f"{KEY}/logs", params={"token": other}).status_code == 401
    final = anonymous.get(f"{KEY}/logs/final", params={"token": token})
    assert final.status_code == 200 and final.json()["logs"]
    assert anonymous.get(f"{KEY}/result", params={"token": token}).text == "VALUE = 1\n"
    assert anonymous.get(f"{KEY}/result").status_code == 401
    # without credentials, a key that has no run looks the same as one that has
    for path in ("/runs/nothing/here/logs", "/runs/nothing/here/logs/final", "/runs/x/y/result"):
        assert anonymous.get(path).status_code == 401, path
    anonymous.close()
    client.close()
    services.close()


def test_stream_tokens_expire_and_are_scoped() -> None:
    settings = Settings(auth="apikey", api_keys=[SecretStr("k")], stream_token_ttl=60)
    token = make_stream_token(settings, "run1", now=1000.0)
    check_stream_token(settings, "run1", token, now=1059.999)
    with pytest.raises(AuthError, match="expired"):  # at its exact second, not one past
        check_stream_token(settings, "run1", token, now=1060.0)
    with pytest.raises(AuthError, match="not valid"):
        check_stream_token(settings, "run2", token, now=1000.0)
    with pytest.raises(AuthError, match="malformed"):
        check_stream_token(settings, "run1", "garbage", now=1000.0)


@pytest.mark.parametrize(
    "authorization", ["Basic s3cret", "Token s3cret", "s3cret", "Bearer", "Bearers3cret"]
)
def test_a_valid_key_under_another_scheme_is_refused(authorization: str) -> None:
    settings = Settings(auth="apikey", api_keys=[SecretStr("s3cret")])
    check_bearer(settings, "Bearer s3cret")
    check_bearer(settings, "bearer s3cret")  # auth schemes are case-insensitive (RFC 9110)
    with pytest.raises(AuthError, match="missing bearer token"):
        check_bearer(settings, authorization)


@pytest.mark.parametrize(
    ("host", "auth", "keys", "error"),
    [
        ("127.0.0.1", "none", [], None),
        ("localhost", "none", [], None),
        ("::1", "none", [], None),
        ("0.0.0.0", "none", [], "without auth"),
        ("10.1.2.3", "none", [], "without auth"),
        ("0.0.0.0", "apikey", [LONG], None),
        ("0.0.0.0", "apikey", [], "needs JOBTAIL_API_KEYS"),
        ("0.0.0.0", "apikey", [LONG, "k"], "1 API key"),
        ("10.1.2.3", "apikey", ["x" * 15], "shorter than 16"),
        ("127.0.0.1", "apikey", ["k"], None),  # this machine only: a short key is the user's call
        ("0.0.0.0", "apikey", [LONG, "nosecret"], "needs JOBTAIL_SECRET"),
        ("0.0.0.0", "apikey", [LONG, "shortsecret"], "at least 32"),
    ],
)
def test_bind_guard(host: str, auth: str, keys: list[str], error: str | None) -> None:
    secret = {"nosecret": None, "shortsecret": "s" * 31}.get(keys[-1] if keys else "", "s" * 32)
    keys = [k for k in keys if not k.endswith("secret")]
    settings = Settings(
        host=host,
        auth=auth,  # type: ignore[arg-type]
        api_keys=[SecretStr(k) for k in keys],
        secret=SecretStr(secret) if secret else None,
    )
    if error is None:
        settings.check_bind()
    else:
        with pytest.raises(ValueError, match=error):
            settings.check_bind()


def test_api_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBTAIL_API_KEYS", "a, b,,c")
    monkeypatch.setenv("JOBTAIL_OLD_SECRETS", "old1,old2")
    assert [k.get_secret_value() for k in Settings().api_keys] == ["a", "b", "c"]
    assert [k.get_secret_value() for k in Settings().old_secrets] == ["old1", "old2"]


def _settings(keys: list[str], secret: str | None, old: tuple[str, ...] = ()) -> Settings:
    return Settings(
        auth="apikey",
        api_keys=[SecretStr(k) for k in keys],
        secret=SecretStr(secret) if secret else None,
        old_secrets=[SecretStr(s) for s in old],
    )


def test_rotating_an_api_key_leaves_stream_tokens_valid() -> None:
    """Tokens are signed with the secret, never with (something derived from) an API key."""
    token = make_stream_token(_settings(["key-one"], SECRET), "run1")
    check_stream_token(_settings(["key-two"], SECRET), "run1", token)
    check_stream_token(_settings([], SECRET), "run1", token)


def test_rotating_the_secret_keeps_old_tokens_until_the_old_secret_is_dropped() -> None:
    old = make_stream_token(_settings(["k"], "a" * 32), "run1")
    rotated = _settings(["k"], "b" * 32, old=("a" * 32,))
    check_stream_token(rotated, "run1", old)  # signed with the retired secret: still accepted
    fresh = make_stream_token(rotated, "run1")
    check_stream_token(_settings(["k"], "b" * 32), "run1", fresh)  # new tokens: the new secret
    with pytest.raises(AuthError, match="not valid"):
        check_stream_token(_settings(["k"], "a" * 32), "run1", fresh)
    with pytest.raises(AuthError, match="not valid"):  # rotation over: the old secret is gone
        check_stream_token(_settings(["k"], "b" * 32), "run1", old)


def test_without_a_secret_tokens_are_per_process_on_loopback_only() -> None:
    local = _settings(["k"], None)
    check_stream_token(local, "run1", make_stream_token(local, "run1"))
    public = Settings(host="0.0.0.0", auth="apikey", api_keys=[SecretStr(LONG)])
    with pytest.raises(AuthError, match="JOBTAIL_SECRET"):
        make_stream_token(public, "run1")
    with pytest.raises(AuthError, match="JOBTAIL_SECRET"):
        check_stream_token(public, "run1", make_stream_token(local, "run1"))


def test_every_listed_key_is_accepted_and_only_those() -> None:
    settings = _settings(["first-key", "second-key"], SECRET)
    check_bearer(settings, "Bearer first-key")
    check_bearer(settings, "Bearer second-key")
    for wrong in ("first-keyx", "first-ke", "second-key first-key", "FIRST-KEY"):
        with pytest.raises(AuthError, match="unknown API key"):
            check_bearer(settings, f"Bearer {wrong}")
    check_bearer(Settings(auth="none"), None)  # auth off: nothing is asked


def test_too_many_streams_is_a_503(tmp_path: Path, serve: Callable[[object], ServerThread]) -> None:
    services, generator = make_services(tmp_path, max_streams=1)
    generator.stepped = True
    app = create_app(services=services)
    server = serve(app)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.post(f"{KEY}/generate")
        for _ in range(3):  # a closed stream gives its slot back, every time
            with client.stream("GET", f"{KEY}/logs") as first:
                assert first.status_code == 200
                chunks = first.iter_raw()  # kept: dropping it would close the connection
                next(chunks)
                second = client.get(f"{KEY}/logs")
                assert second.status_code == 503 and second.headers["retry-after"] == "5"
            wait_for(lambda: app.state.streams.open == 0, 10, "the slot to come back")
        generator.step(20)
    services.close()


def test_refusals_say_exactly_what_is_wrong() -> None:
    """The messages are the 401's ``detail``: pinned word for word."""
    settings = _settings(["first-key"], SECRET)
    public = Settings(host="0.0.0.0", auth="apikey", api_keys=[SecretStr(LONG)])
    signed_text = URLSafeSerializer(SECRET, salt="jobtail-stream:run1").dumps("tomorrow")
    expired = make_stream_token(settings, "run1", now=0.0)
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: check_bearer(settings, None), MISSING),
        (lambda: check_bearer(settings, "Basic first-key"), MISSING),
        (lambda: check_bearer(settings, "Bearer other-key"), "unknown API key"),
        (lambda: check_stream_token(settings, "run1", "garbage"), "malformed stream token"),
        (lambda: check_stream_token(settings, "run1", signed_text), "malformed stream token"),
        (lambda: check_stream_token(settings, "run2", expired), NOT_VALID),
        (lambda: check_stream_token(settings, "run1", expired), EXPIRED),
        (lambda: make_stream_token(public, "run1"), NO_SECRET),
    ]
    for call, message in cases:
        with pytest.raises(AuthError) as caught:
            call()
        assert str(caught.value) == message


MISSING = "missing bearer token: send Authorization: Bearer <api key>"
NOT_VALID = "stream token is not valid for this run"
EXPIRED = "stream token expired: ask for a new one with the status route"
NO_SECRET = "stream tokens need JOBTAIL_SECRET beyond a loopback bind"


def test_a_write_token_names_its_run_until_it_expires() -> None:
    settings = Settings(auth="apikey", api_keys=[SecretStr("k")], secret=SecretStr(SECRET),
                        write_token_ttl=120)  # fmt: skip
    token = make_write_token(settings, "run1", now=1000.0)
    assert token.startswith("jtw_") and "." in token
    assert check_write_token(settings, token, now=1119.999) == "run1"
    with pytest.raises(AuthError) as expired:  # at its exact second, not one past
        check_write_token(settings, token, now=1120.0)
    assert str(expired.value) == "write token for run run1 expired: ask for a new one"
    short = make_write_token(settings, "run2", ttl=5, now=1000.0)
    assert check_write_token(settings, short, now=1004.5) == "run2"
    with pytest.raises(AuthError, match="expired"):
        check_write_token(settings, short, now=1005.0)
    for ttl in (0, -1):
        with pytest.raises(ValueError, match=r"^a write token's ttl must be positive$"):
            make_write_token(settings, "run1", ttl=ttl)
    second = make_write_token(settings, "run4", ttl=1, now=1000.0)  # the shortest is a second
    assert check_write_token(settings, second, now=1000.5) == "run4"
    fresh = make_write_token(settings, "run3")  # now: the clock
    assert check_write_token(settings, fresh) == "run3"
    stale = make_write_token(settings, "run3", now=time.time() - 121)
    with pytest.raises(AuthError, match="expired"):
        check_write_token(settings, stale)


def test_only_a_signed_write_claim_is_a_write_token() -> None:
    settings = _settings(["k"], SECRET)
    signer = URLSafeSerializer(SECRET, salt="jobtail-write")
    claims = {"scope": "write", "run": "r", "exp": 2**40}
    assert check_write_token(settings, "jtw_" + signer.dumps(claims)) == "r"
    stream = make_stream_token(settings, "r")
    forged = URLSafeSerializer("x" * 32, salt="jobtail-write").dumps(claims)
    cases = {
        "no prefix": (signer.dumps(claims), MALFORMED),
        "no signature": ("jtw_abc", MALFORMED),
        "a stream token": ("jtw_" + stream, FORGED),
        "another secret": ("jtw_" + forged, FORGED),
        "not an object": ("jtw_" + signer.dumps(["write", "r"]), MALFORMED),
        "read scope": ("jtw_" + signer.dumps(claims | {"scope": "read"}), MALFORMED),
        "no run": ("jtw_" + signer.dumps({"scope": "write", "exp": 2**40}), MALFORMED),
        "a numbered run": ("jtw_" + signer.dumps(claims | {"run": 7}), MALFORMED),
        "no expiry": ("jtw_" + signer.dumps({"scope": "write", "run": "r"}), MALFORMED),
        "text expiry": ("jtw_" + signer.dumps(claims | {"exp": "never"}), MALFORMED),
    }
    for case, (token, message) in cases.items():
        with pytest.raises(AuthError) as caught:
            check_write_token(settings, token)
        assert str(caught.value) == message, case


def test_a_bearer_is_an_api_key_or_a_runs_write_token() -> None:
    settings = _settings(["first-key"], SECRET)
    token = make_write_token(settings, "run1")
    assert bearer_grant(settings, "Bearer first-key") is None
    assert bearer_grant(settings, f"Bearer  {token} ") == "run1"
    with pytest.raises(ScopeError) as scoped:  # a write token is not an API key
        check_bearer(settings, f"Bearer {token}")
    assert scoped.value.run_id == "run1"
    assert str(scoped.value) == (
        "a write token only writes run run1 (POST and HEAD on /v1/stream/runs/run1);"
        " this needs an API key"
    )
    assert str(ScopeError("r", "read only")) == "read only"
    with pytest.raises(AuthError, match="unknown API key"):
        bearer_grant(settings, "Bearer jtw-not-a-token")
    with pytest.raises(AuthError, match="write token is not valid"):
        bearer_grant(_settings(["first-key"], "b" * 32), f"Bearer {token}")
    check_bearer(Settings(auth="none"), f"Bearer {token}")  # auth off: nothing is asked


def test_refusal_challenges_name_the_error_and_the_reason() -> None:
    assert challenge(401, 'bad "token" \\ here') == (
        'Bearer error="invalid_token", error_description="bad \'token\' / here"'
    )
    assert challenge(403, "not yours") == (
        'Bearer error="insufficient_scope", error_description="not yours"'
    )


def test_a_producer_token_needs_the_servers_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(["k"], SECRET)
    token = producer_token("run1", ttl=60, settings=settings)
    assert check_write_token(settings, token) == "run1"
    with pytest.raises(AuthError, match="expired"):
        check_write_token(settings, token, now=time.time() + 61)
    with pytest.raises(AuthError) as refused:
        producer_token("run1", settings=_settings(["k"], None))
    assert str(refused.value) == (
        "producer_token needs JOBTAIL_SECRET, the jobtail server's signing secret: the "
        "server checks the token with it"
    )
    monkeypatch.setenv("JOBTAIL_SECRET", SECRET)
    from_env = producer_token("run2")
    assert check_write_token(settings, from_env) == "run2"
    default_ttl = Settings().write_token_ttl
    with pytest.raises(AuthError, match="expired"):
        check_write_token(settings, from_env, now=time.time() + default_ttl + 1)


MALFORMED = "malformed write token"
FORGED = "write token is not valid (altered, or its secret was retired)"
