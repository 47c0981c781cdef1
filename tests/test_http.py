"""The HTTP/SSE contract through a real uvicorn server and an independent SSE client (httpx-sse)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from jobtail.services import Services
from jobtail.web.app import create_app

from .conftest import ServerThread
from .embed.hostapp import PREFIX, USER_HEADER, host_app
from .scripted import ScriptedGenerator, make_services
from .waiting import wait_for as until

KEY = "/runs/petstore/scripted"


class Env:
    def __init__(
        self,
        services: Services,
        generator: ScriptedGenerator,
        server: ServerThread,
        prefix: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.services = services
        self.generator = generator
        self.server = server
        self.prefix = prefix  # "" for jobtail's own app, else where a host app mounted it
        self.client = httpx.Client(
            base_url=server.url + prefix, timeout=httpx.Timeout(10, read=30), headers=headers
        )

    def generate(self, key: str = KEY) -> dict[str, Any]:
        response = self.client.post(f"{key}/generate")
        assert response.status_code == 202, response.text
        return response.json()

    def wait_finished(self, key: str = KEY) -> dict[str, Any]:
        until(lambda: not self.client.get(f"{key}/status").json()["active"])
        return self.client.get(f"{key}/status").json()

    def final(self, key: str = KEY, **params: Any) -> list[dict[str, Any]]:
        return self.client.get(f"{key}/logs/final", params=params).json()["logs"]


@pytest.fixture(
    params=[
        "sqlite",
        "sqlite-host-app",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def env(
    request: pytest.FixtureRequest, tmp_path: Path, serve: Callable[[object], ServerThread]
) -> Iterator[Env]:
    """The app over each store the embedded slice and production use, behind real uvicorn;
    and jobtail's router mounted under a prefix in a host app with its own auth."""
    store = None
    if request.param == "postgres":
        from jobtail.store.postgres import PostgresStore

        store = PostgresStore(request.getfixturevalue("pg_url"))
    services, generator = make_services(tmp_path, store, ping_seconds=0.2)
    if request.param.endswith("host-app"):
        server = serve(host_app(services))
        environment = Env(services, generator, server, PREFIX, USER_HEADER)
    else:
        server = serve(create_app(services=services))
        environment = Env(services, generator, server)
    yield environment
    environment.client.close()
    services.close()


def stream(
    client: httpx.Client,
    path: str = f"{KEY}/logs",
    last_id: str | None = None,
    stop: Callable[[list[ServerSentEvent]], bool] | None = None,
    **params: Any,
) -> tuple[int, list[ServerSentEvent]]:
    """Read SSE events until the server closes (or ``stop`` says so); return status and events."""
    headers = {"Last-Event-ID": last_id} if last_id else {}
    events: list[ServerSentEvent] = []
    with connect_sse(client, "GET", path, headers=headers, params=params) as source:
        if source.response.status_code != 200:
            source.response.read()
            return source.response.status_code, events
        for event in source.iter_sse():
            if not event.data:  # httpx-sse surfaces keep-alives after an id; browsers do not
                continue
            events.append(event)
            if stop and stop(events):
                break
    return 200, events


def lines(events: list[ServerSentEvent]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in events if e.event == "message"]


def test_live_viewer_gets_every_line_in_order_then_end_then_204(env: Env) -> None:
    env.generator.stepped = True
    started = env.generate()
    got: list[ServerSentEvent] = []
    viewer = threading.Thread(target=lambda: got.extend(stream(env.client)[1]))
    viewer.start()
    until(lambda: env.services.store.get_run(started["run_id"]).status == "running")  # type: ignore[union-attr]
    env.generator.step(20)
    viewer.join(20)
    assert got[0].event == "status"
    final = env.final()
    assert lines(got) == final
    assert [x["seq"] for x in final] == list(range(1, len(final) + 1))
    assert [e.id for e in got if e.event == "message"] == [
        f"{started['run_id']}:{x['seq']}" for x in final
    ]
    messages = [x["message"] for x in final]
    assert messages[messages.index("line 1") :][:20] == env.generator.messages
    end = got[-1]
    assert end.event == "end"
    assert json.loads(end.data) == {
        "run_id": started["run_id"],
        "status": "succeeded",
        "last_seq": len(final),
    }
    assert stream(env.client, last_id=end.id)[0] == 204


def test_late_viewer_gets_all_lines_and_end(env: Env) -> None:
    env.generate()
    status = env.wait_finished()
    code, events = stream(env.client)
    assert code == 200 and lines(events) == env.final()
    assert len(lines(events)) == status["lines"] > 20
    assert events[-1].event == "end" and events[-1].id == status["last_event_id"]
    assert stream(env.client, last_id=events[-1].id)[0] == 204
    assert stream(env.client, after=status["last_seq"])[0] == 204


def test_cut_off_viewer_resumes_with_last_event_id_exactly(env: Env) -> None:
    env.generator.stepped = True
    env.generate()
    env.generator.step(5)
    _, first = stream(env.client, stop=lambda ev: len(lines(ev)) == 5)  # then the network drops
    env.generator.step(15)
    last_id = [e.id for e in first if e.event == "message"][-1]
    code, rest = stream(env.client, last_id=last_id)
    assert code == 200 and rest[-1].event == "end"
    assert lines(first) + lines(rest) == env.final()


def test_last_event_id_wins_over_the_after_query(env: Env) -> None:
    """The page opens EventSource with ``?after=``; the browser's reconnect keeps that URL and
    adds ``Last-Event-ID``: the header is the newer cursor, or a reconnect re-sends lines."""
    env.generate()
    status = env.wait_finished()
    run_id = status["run_id"]
    code, events = stream(env.client, last_id=f"{run_id}:5", after=2, run_id=run_id)
    assert code == 200 and [x["seq"] for x in lines(events)][:2] == [6, 7]
    assert lines(events) == env.final(after=5)
    # at the end, the header (not ?after=) decides that nothing is left: a 204
    assert stream(env.client, last_id=status["last_event_id"], after=2)[0] == 204


def test_ten_viewers_get_everything_with_the_reads_of_one(
    tmp_path: Path, serve: Callable[[object], ServerThread]
) -> None:
    def run_with(viewers: int) -> tuple[list[list[int]], int]:
        services, generator = make_services(tmp_path / str(viewers))
        store = services.store
        store.poll_interval = 60  # wake-ups only, so the count is comparable  # type: ignore[misc]
        generator.stepped = True
        server = serve(create_app(services=services))
        client = httpx.Client(base_url=server.url, timeout=30)
        run_id = client.post(f"{KEY}/generate").json()["run_id"]
        until(lambda: store.get_run(run_id).status == "running")  # type: ignore[union-attr]
        got: list[list[int]] = [[] for _ in range(viewers)]

        def view(i: int) -> None:
            def record(events: list[ServerSentEvent]) -> bool:
                event = events[-1]
                if event.event == "message":
                    got[i].append(json.loads(event.data)["seq"])
                elif event.event == "status" and not got[i]:
                    got[i].append(0)
                return False

            with httpx.Client(base_url=server.url, timeout=30) as own:
                stream(own, stop=record)

        threads = [threading.Thread(target=view, args=(i,)) for i in range(viewers)]
        for thread in threads:
            thread.start()
        assert generator.started.wait(10)
        base = store.get_run(run_id).last_seq  # type: ignore[union-attr]
        until(lambda: all(g and g[-1] == base for g in got))
        before = store.range_reads  # type: ignore[attr-defined]
        for n in range(base + 1, base + 20):  # lockstep: one line, every viewer has it
            generator.step()
            until(lambda n=n: all(g[-1] == n for g in got))
        during = store.range_reads - before  # type: ignore[attr-defined]
        generator.step()  # the last line; the job then ends at its own pace
        for thread in threads:
            thread.join(20)
        client.close()
        services.close()
        return [g[1:] for g in got], during

    one, reads_one = run_with(1)
    ten, reads_ten = run_with(10)
    assert len(one) == 1 and one[0] == list(range(1, len(one[0]) + 1)) and len(one[0]) > 20
    assert ten == one * 10
    # one range read per line for the whole process, whatever the number of viewers (a wake-up
    # that lands during a read may cost one extra empty read, on either side)
    assert reads_one <= 2 * 19 and reads_ten <= reads_one + 1, (reads_one, reads_ten)


def test_filters_tail_after_and_level(env: Env) -> None:
    env.generator.messages = ["a", "b", "c", "d"]
    env.generator.fail_with = "kaput"
    env.generate()
    status = env.wait_finished()
    assert status["status"] == "failed" and "kaput" in status["error"]
    everything = env.final()
    assert everything[-1]["log_level"] == "ERROR" and "kaput" in everything[-1]["message"]
    _, tailed = stream(env.client, tail=2)
    assert [x["seq"] for x in lines(tailed)] == [x["seq"] for x in everything[-2:]]
    _, after = stream(env.client, after=everything[-3]["seq"])
    assert lines(after) == everything[-2:]
    _, errors = stream(env.client, level="ERROR")
    assert [x["seq"] for x in lines(errors)] == [
        x["seq"] for x in everything if x["log_level"] == "ERROR"
    ]
    assert errors[-1].event == "end" and json.loads(errors[-1].data)["status"] == "failed"


def test_final_logs_pages_filters_and_exports(env: Env) -> None:
    env.generate()
    status = env.wait_finished()
    page = env.client.get(f"{KEY}/logs/final", params={"limit": 7}).json()
    assert [x["seq"] for x in page["logs"]] == list(range(1, 8)) and page["next_after"] == 7
    collected, after = [], 0
    while after is not None:
        body = env.client.get(f"{KEY}/logs/final", params={"limit": 7, "after": after}).json()
        collected += body["logs"]
        after = body["next_after"]
    assert [x["seq"] for x in collected] == list(range(1, status["lines"] + 1))
    before = env.client.get(f"{KEY}/logs/final", params={"before": 4}).json()["logs"]
    assert [x["seq"] for x in before] == [1, 2, 3]
    text = env.client.get(f"{KEY}/logs/final", params={"format": "text"})
    assert "attachment" in text.headers["content-disposition"]
    assert text.text.count("\n") == status["lines"] and "line 20" in text.text
    jsonl = env.client.get(f"{KEY}/logs/final", params={"format": "jsonl"}).text.splitlines()
    assert [json.loads(x) for x in jsonl] == collected


def test_hostile_messages_travel_intact_and_long_ones_are_marked(env: Env) -> None:
    limit = env.services.settings.max_line_chars
    env.generator.messages = [
        "multi\nline\n\nmessage",
        "carriage\rreturn\r\nand crlf",
        "unicode: caf\u00e9 \u2603 \U0001f680 \u2028 end",
        "data: fake field\n\nid: 999\nevent: end",
        "x" * (limit + 5000),
    ]
    env.generate()
    env.wait_finished()
    _, events = stream(env.client)
    got = [x["message"] for x in lines(events)]
    first = got.index(env.generator.messages[0])
    assert got[first : first + 4] == env.generator.messages[:4]
    long_line = lines(events)[first + 4]
    assert long_line["message"].startswith("x" * limit)
    assert long_line["message"].endswith("[truncated 5000 characters]")
    assert long_line["fields"] == {"truncated": 5000}
    assert events[-1].event == "end"


def test_keep_alive_comments_while_idle(env: Env) -> None:
    env.generator.stepped = True
    env.generate()
    with env.client.stream("GET", f"{KEY}/logs") as response:
        seen = b""
        for chunk in response.iter_raw():
            seen += chunk
            if b": ping" in seen:
                break
    env.generator.step(20)
    assert b": ping" in seen


def test_status_result_and_runs(env: Env) -> None:
    assert env.client.get(f"{KEY}/status").status_code == 404
    started = env.generate()
    assert started["status"] == "Generation started"
    assert started["stream_url"] == f"{env.prefix}{KEY}/logs?run_id={started['run_id']}"
    status = env.wait_finished()
    assert status["status"] == "succeeded" and status["active"] is False
    assert status["run_id"] == started["run_id"] and status["finished_at"]
    assert env.client.get(f"{KEY}/result").text == "VALUE = 1\n"
    second = env.generate()
    env.wait_finished()
    runs = env.client.get(f"{KEY}/runs").json()["runs"]
    assert [r["run_id"] for r in runs] == [second["run_id"], started["run_id"]]
    older = env.client.get(f"{KEY}/logs/final", params={"run_id": started["run_id"]}).json()
    assert older["run_id"] == started["run_id"]
    if not env.prefix:  # the page and health check are jobtail's app, not its router
        assert env.client.get("/healthz").json() == {"status": "ok"}
        assert "text/html" in env.client.get("/").headers["content-type"]


def test_real_generator_end_to_end(env: Env) -> None:
    env.generate("/runs/invoice/pydantic")
    status = env.wait_finished("/runs/invoice/pydantic")
    assert status["status"] == "succeeded", env.final("/runs/invoice/pydantic")[-3:]
    code = env.client.get("/runs/invoice/pydantic/result").text
    assert "BaseModel" in code
    compile(code, "result.py", "exec")


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "code", "says"),
    [
        ("post", "/runs/bad id/scripted/generate", {}, 422, "pattern"),
        ("post", "/runs/-x/scripted/generate", {}, 422, "pattern"),
        ("post", f"/runs/{'a' * 129}/scripted/generate", {}, 422, "pattern"),
        ("post", "/runs/petstore/nope/generate", {}, 422, "known services: "),
        ("post", "/runs/missing/scripted/generate", {}, 404, "no upload"),
        ("get", f"{KEY}/status", {}, 404, "no run"),
        ("get", f"{KEY}/status", {"params": {"run_id": "nope"}}, 404, "no run"),
        ("get", f"{KEY}/status", {"params": {"run_id": "../x"}}, 422, "pattern"),
        ("get", f"{KEY}/logs", {}, 404, "no run"),
        ("get", f"{KEY}/logs", {"headers": {"Last-Event-ID": "garbage"}}, 422, "<run_id>:<seq>"),
        ("get", f"{KEY}/logs", {"params": {"after": "-1"}}, 422, "greater than or equal"),
        ("get", f"{KEY}/logs", {"params": {"level": "LOUD"}}, 422, "DEBUG"),
        ("get", f"{KEY}/logs/final", {"params": {"limit": "0"}}, 422, "greater than or equal"),
        ("get", f"{KEY}/logs/final", {"params": {"format": "xml"}}, 422, "pattern"),
        ("get", f"{KEY}/result", {}, 404, "no run"),
        ("post", "/uploads", {"files": {"file": ("a.txt", b"\x00\xff binary")}}, 422, "binary"),
        ("post", "/uploads", {"files": {"file": ("a.json", b"[1, 2]")}}, 422, ""),
        ("post", "/uploads", {"files": {"file": ("a.yaml", b"a: [unclosed")}}, 422, ""),
        (
            "post",
            "/uploads",
            {"files": {"file": ("a.json", b"{" + b" " * 2_000_000 + b"}")}},
            413,
            "limit",
        ),
        ("post", "/uploads", {}, 422, "file"),
    ],
)
def test_bad_input_gets_a_json_4xx_that_says_what_is_wrong(
    env: Env, method: str, path: str, kwargs: dict[str, Any], code: int, says: str
) -> None:
    response = getattr(env.client, method)(path, **kwargs)
    assert response.status_code == code, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert says in json.dumps(response.json()["detail"])


def test_second_generate_while_active_is_409(env: Env) -> None:
    env.generator.stepped = True
    first = env.generate()
    second = env.client.post(f"{KEY}/generate")
    assert second.status_code == 409 and second.json()["run_id"] == first["run_id"]
    assert "already" in second.json()["detail"]
    env.generator.step(20)
    env.wait_finished()


def test_uploaded_document_can_be_generated(env: Env) -> None:
    schema = {"title": "Point", "type": "object", "properties": {"x": {"type": "number"}}}
    response = env.client.post(
        "/uploads", files={"file": ("point.json", json.dumps(schema).encode())}
    )
    assert response.status_code == 201
    upload_id = response.json()["upload_id"]
    env.generate(f"/runs/{upload_id}/dataclasses")
    status = env.wait_finished(f"/runs/{upload_id}/dataclasses")
    assert status["status"] == "succeeded"
    assert "class Point" in env.client.get(f"/runs/{upload_id}/dataclasses/result").text


def test_a_byte_budget_splits_the_stream_into_resumable_windows(
    tmp_path: Path, serve: Callable[[object], ServerThread]
) -> None:
    """Under a buffering gateway each response must stay small: chained by Last-Event-ID."""
    budget = 65_536
    services, generator = make_services(tmp_path, stream_window_bytes=budget)
    generator.messages = [f"line {n} " + "x" * 100 for n in range(1, 3001)]
    server = serve(create_app(services=services))
    client = httpx.Client(base_url=server.url, timeout=30)
    client.post(f"{KEY}/generate")
    until(lambda: not client.get(f"{KEY}/status").json()["active"])
    got: list[ServerSentEvent] = []
    last_id, windows = None, 0
    while True:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        response = client.get(f"{KEY}/logs", headers=headers)
        if response.status_code == 204:
            break
        windows += 1
        assert len(response.content) <= budget + 1024
        _, events = stream(client, last_id=last_id)
        got += [e for e in events if e.event == "message"]
        last_id = (
            events[-1].id
            if events[-1].event == "end"
            else response.text.split("id: ")[-1].split("\n")[0]
        )
    final = [x for page in _pages(client) for x in page]
    assert [json.loads(e.data) for e in got] == final
    assert windows >= len(final) * 130 // budget
    client.close()
    services.close()


def _pages(client: httpx.Client) -> Iterator[list[dict[str, Any]]]:
    after: int | None = 0
    while after is not None:
        body = client.get(f"{KEY}/logs/final", params={"after": after, "limit": 5000}).json()
        yield body["logs"]
        after = body["next_after"]


def test_a_run_whose_worker_died_still_ends_for_its_viewers(
    tmp_path: Path, serve: Callable[[object], ServerThread]
) -> None:
    services, _ = make_services(tmp_path, stale_after=0.4, heartbeat_interval=0.1)
    server = serve(create_app(services=services))
    run = services.store.create_run("petstore", "scripted")
    services.store.start_run(run.run_id)  # claimed by a worker that then vanished
    with httpx.Client(base_url=server.url, timeout=30) as client:
        code, events = stream(client)
    assert code == 200 and events[-1].event == "end"
    assert json.loads(events[-1].data)["status"] == "failed"
    last = lines(events)[-1]
    assert last["log_level"] == "ERROR" and "heartbeat" in last["message"]
    services.close()
