"""Hostile input: uploads, cursors and message text, through a real server or the real path
(logger -> SQLite -> SSE encoder -> an SSE parser). Every answer is a JSON 4xx, never a 500."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse._decoders import SSEDecoder
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jobtail.logger import RunLogger, RunLogHandler, storable
from jobtail.store.sqlite import SQLiteStore
from jobtail.tail import LinesEvent
from jobtail.web.app import create_app
from jobtail.web.sse import encode

from .conftest import ServerThread
from .figures import FIGURES
from .scripted import make_services

# -- uploads ----------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path, serve: Callable[[object], ServerThread]) -> Iterator[httpx.Client]:
    services, _ = make_services(tmp_path)
    server = serve(create_app(services=services))
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http
    services.close()


def upload(client: httpx.Client, data: bytes, name: str = "doc.json") -> httpx.Response:
    FIGURES["hostile uploads"] += 1
    return client.post("/uploads", files={"file": (name, data)})


def nested(depth: int) -> bytes:
    return b'{"type": "object", "x": ' + b"[" * depth + b"]" * depth + b"}"


BOMB = b"a: &a [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n".encode()
    for i in range(8)
)
HOSTILE = {
    "5,001-digit integer (JSON)": b'{"type": "object", "default": ' + b"9" * 5001 + b"}",
    "5,001-digit integer (YAML)": b"type: object\ndefault: " + b"9" * 5001 + b"\n",
    "a 101-digit integer": b'{"type": "integer", "maximum": 1' + b"0" * 100 + b"}",
    "infinity": b'{"type": "number", "maximum": 1e999}',
    "YAML alias bomb": b"type: object\n" + BOMB,
    "10,000-deep JSON": nested(10_000),
    "10,000-deep YAML": b"type: object\nx: " + b"[" * 10_000 + b"]" * 10_000 + b"\n",
    "not UTF-8": b'{"type": "object", "title": "caf\xe9"}',
    "empty": b"",
    "blank": b"  \n\t ",
    "a list": b"[1, 2]",
    "binary": b"\x00\x01\x02",
    "$dynamicRef to a file": b'{"type": "object", "$dynamicRef": "secret.json#/x"}',
    "$recursiveRef to a file": b'{"type": "object", "$recursiveRef": "../secret.json"}',
    "$ref to /etc/passwd": b'{"type": "object", "properties": {"a": {"$ref": "/etc/passwd"}}}',
}


@pytest.mark.parametrize("data", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_uploads_get_a_json_4xx_without_server_paths(
    client: httpx.Client, data: bytes
) -> None:
    response = upload(client, data)
    assert response.status_code in (400, 413, 422), response.text[:300]
    detail = response.json()["detail"]
    assert detail and os.getcwd() not in response.text and "/work" not in response.text


def test_a_ref_to_a_url_fetches_nothing(client: httpx.Client) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        for keyword in ("$ref", "$dynamicRef", "$recursiveRef"):
            doc = {"type": "object", "properties": {"a": {keyword: f"http://127.0.0.1:{port}/x"}}}
            response = upload(client, json.dumps(doc).encode())
            assert response.status_code == 422 and keyword in response.json()["detail"]
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody came


def test_a_local_file_is_never_read_into_code_or_log(client: httpx.Client, tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"SECRET_VALUE_123": {"type": "string"}}')
    for keyword in ("$ref", "$dynamicRef"):
        doc = {"type": "object", "properties": {"a": {keyword: str(secret)}}}
        response = upload(client, json.dumps(doc).encode())
        assert response.status_code == 422 and "SECRET_VALUE_123" not in response.text


@pytest.mark.parametrize(
    "name", ["../../etc/passwd.json", "..\\..\\boot.ini.json", "/abs/x.json", "a\x00b.json"]
)
def test_path_traversal_names_stay_in_the_upload_store(
    client: httpx.Client, tmp_path: Path, name: str
) -> None:
    response = upload(client, b'{"type": "object"}', name)
    assert response.status_code == 201, response.text
    upload_id = response.json()["upload_id"]
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", upload_id)
    stored = [p for p in tmp_path.rglob("*") if p.is_file() and upload_id in p.name]
    assert stored and all(tmp_path in p.parents for p in stored)
    assert not (tmp_path.parent / "etc").exists()


# -- cursors ----------------------------------------------------------------------------------

CURSORS: list[dict[str, Any]] = [
    {"after": str(2**63)},
    {"after": str(2**64 + 1)},
    {"after": "-1"},
    {"after": "abc"},
    {"after": "1e3"},
    {"before": str(2**63)},
    {"before": "0"},
    {"limit": "0"},
    {"limit": str(2**70)},
]


@pytest.mark.parametrize("params", CURSORS, ids=[str(c) for c in CURSORS])
@pytest.mark.parametrize("route", ["logs", "logs/final"])
def test_bad_cursors_are_a_json_4xx(
    client: httpx.Client, params: dict[str, Any], route: str
) -> None:
    assert client.post("/runs/petstore/scripted/generate").status_code == 202
    if route == "logs" and set(params) - {"after"}:
        pytest.skip("the stream takes after only")
    response = client.get(f"/runs/petstore/scripted/{route}", params=params)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]


@pytest.mark.parametrize(
    "last_id", ["garbage", "x:-1", f"x:{2**70}", "../../x:1", "a" * 300 + ":1", "r:1 2", "r:+1"]
)
def test_bad_last_event_ids_are_a_json_4xx(client: httpx.Client, last_id: str) -> None:
    assert client.post("/runs/petstore/scripted/generate").status_code == 202
    response = client.get("/runs/petstore/scripted/logs", headers={"Last-Event-ID": last_id})
    assert response.status_code in (404, 422), response.text
    assert response.json()["detail"]


def test_a_cursor_naming_another_keys_run_is_a_404(client: httpx.Client) -> None:
    other = client.post("/runs/invoice/scripted/generate").json()["run_id"]
    response = client.get("/runs/petstore/scripted/logs", headers={"Last-Event-ID": f"{other}:1"})
    assert response.status_code == 404 and other in response.json()["detail"]
    assert (
        client.get("/runs/petstore/scripted/logs/final", params={"run_id": other}).status_code
        == 404
    )


# -- message text: logger -> store -> SSE encoder -> an SSE parser ---------------------------


def parse_sse(wire: bytes) -> list[Any]:
    """The WHATWG line rules (CRLF, CR or LF) and httpx-sse's event decoder."""
    decoder, events = SSEDecoder(), []
    for line in re.split(r"\r\n|\r|\n", wire.decode("utf-8")):
        if (event := decoder.decode(line)) is not None and event.data:  # as browsers do
            events.append(event)
    return events


HOSTILE_TEXT = st.lists(
    st.one_of(
        st.characters(codec=None, exclude_categories=()),  # lone surrogates included
        st.sampled_from(["\x00", "\r\n", "\r", "\n", "data: x", "id: 1", ": ", "\u202e", "\ufeff"]),
    ),
    max_size=60,
).map("".join)


@pytest.fixture(scope="module")
def text_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path_factory.mktemp("fuzz") / "store.db")
    yield store
    store.close()


def through_the_wire(store: SQLiteStore, write: Callable[[RunLogger], None]) -> list[Any]:
    run = store.create_run(f"fuzz{os.urandom(4).hex()}", "svc")
    logger = RunLogger(store, run.run_id)
    write(logger)
    logger.close()
    lines = store.read(run.run_id)
    FIGURES["fuzzed messages through logger, store, SSE and a parser"] += len(lines)
    return [json.loads(e.data) for e in parse_sse(encode(LinesEvent(tuple(lines)), run.run_id))]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(HOSTILE_TEXT, min_size=1, max_size=5))
@example(messages=["\ud800", "a line after a lone surrogate", "\udcff\x00\r\ndata: x"])
def test_any_message_arrives_as_logged(text_store: SQLiteStore, messages: list[str]) -> None:
    got = through_the_wire(text_store, lambda log: [log.info(m) for m in messages])
    assert [line["message"] for line in got] == [storable(m) for m in messages]
    assert [line["seq"] for line in got] == list(range(1, len(messages) + 1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.lists(st.binary(max_size=60), min_size=1, max_size=4))
def test_invalid_utf8_through_the_logging_handler(
    text_store: SQLiteStore, raw: list[bytes]
) -> None:
    names = [chunk.decode("utf-8", "surrogateescape") for chunk in raw]  # like os.listdir()
    library = logging.getLogger(f"fuzz.{os.urandom(4).hex()}")
    library.propagate = False

    def write(log: RunLogger) -> None:
        handler = RunLogHandler(log)
        library.addHandler(handler)
        try:
            for name in names:
                library.warning("opening %s", name)
        finally:
            library.removeHandler(handler)

    got = through_the_wire(text_store, write)
    assert [line["message"] for line in got] == [storable(f"opening {n}") for n in names]


def test_a_megabyte_message_is_cut_and_marked(text_store: SQLiteStore) -> None:
    got = through_the_wire(text_store, lambda log: log.info("\u2603" * 1_048_576))
    assert len(got) == 1 and got[0]["message"].startswith("\u2603" * 65_536)
    assert got[0]["fields"]["truncated"] == 1_048_576 - 65_536
