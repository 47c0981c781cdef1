"""The ``jobtail`` command against a real server: tail's exit codes, clear errors, serve's guard."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from jobtail.cli import main
from jobtail.services import Services
from jobtail.web.app import create_app

from .conftest import ServerThread
from .pg import PgCluster
from .scripted import ScriptedGenerator, make_services
from .waiting import wait_for


@pytest.fixture
def served(
    tmp_path: Path, serve: Callable[[object], ServerThread]
) -> Iterator[tuple[Services, ScriptedGenerator, str]]:
    services, generator = make_services(tmp_path)
    server = serve(create_app(services=services))
    yield services, generator, server.url
    services.close()


class Interposer:
    """An ASGI wrapper around the real app that records each stream request and can play the
    network's and the store's failures: drop a stream's ``end`` event, hold reconnects until
    the test says so, answer the status route with an error."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.streams: list[dict[str, str]] = []
        self.drop_end = False
        self.status_error: int | None = None
        self.release = threading.Event()
        self.release.set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"].endswith("/status") and self.status_error:
            body = json.dumps({"detail": "the store is down"}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_error,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            return await send({"type": "http.response.body", "body": body})
        if scope["path"].endswith("/logs"):
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            self.streams.append({**headers, "query": scope["query_string"].decode()})
            if len(self.streams) > 1:
                import anyio.to_thread

                await anyio.to_thread.run_sync(self.release.wait, 20)
            if self.drop_end and len(self.streams) == 1:
                return await self.app(scope, receive, _cut_before_end(send))
        return await self.app(scope, receive, send)


def _cut_before_end(send: Any) -> Any:
    """A send that closes the response where the ``end`` event would start (a dropped network)."""
    closed = False

    async def cut(message: Any) -> None:
        nonlocal closed
        if closed:
            return
        if message["type"] == "http.response.body" and b"event: end" in message.get("body", b""):
            closed = True
            return await send({"type": "http.response.body", "body": b"", "more_body": False})
        await send(message)

    return cut


def runner() -> CliRunner:
    """Separate stderr (click 8.1 needs asking; 8.2+ always does)."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


def run_cli(*args: str) -> tuple[int, str, str]:
    result = runner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_tail_follows_a_live_run_and_exits_0_on_success(
    served: tuple[Services, ScriptedGenerator, str],
) -> None:
    services, generator, url = served
    generator.stepped = True
    code, out, _ = run_cli("generate", "petstore", "scripted", "--url", url)
    assert code == 0
    run_id = out.strip()
    wait_for(lambda: services.store.get_run(run_id).status == "running")  # type: ignore[union-attr]
    generator.step(20)  # the job finishes while (or before) tail reads it: both must end the same
    code, out, err = run_cli("tail", "petstore", "scripted", "--url", url)
    assert code == 0, err
    printed = [line for line in out.splitlines() if "line " in line]
    assert [line.split()[-1] for line in printed if line.split()[-2] == "line"] == [
        str(n) for n in range(1, 21)
    ]
    assert "run succeeded" in err


def test_tail_exits_1_when_the_run_failed_and_filters_by_level(
    served: tuple[Services, ScriptedGenerator, str],
) -> None:
    services, generator, url = served
    generator.fail_with = "the model refused"
    code, out, _ = run_cli("generate", "petstore", "scripted", "--url", url)
    wait_for(lambda: not services.store.get_run(out.strip()).active)  # type: ignore[union-attr]
    code, out, err = run_cli("tail", "petstore", "scripted", "--url", url, "--level", "error")
    assert code == 1 and "run failed" in err
    assert out.strip() and all(" ERROR " in line for line in out.splitlines())
    assert "the model refused" in out


def test_cli_errors_are_messages_not_tracebacks(
    served: tuple[Services, ScriptedGenerator, str], tmp_path: Path
) -> None:
    _, _, url = served
    code, _, err = run_cli("tail", "nothing", "scripted", "--url", url)
    assert code == 2 and "404" in err and "no run" in err and "Traceback" not in err
    code, _, err = run_cli("generate", "petstore", "nope", "--url", url)
    assert code == 2 and "known services" in err
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2, 3]")
    code, _, err = run_cli("upload", str(bad), "--url", url)
    assert code == 2 and "422" in err
    good = tmp_path / "point.json"
    good.write_text(
        json.dumps({"title": "Point", "type": "object", "properties": {"x": {"type": "integer"}}})
    )
    code, out, _ = run_cli("upload", str(good), "--url", url)
    assert code == 0 and out.strip().startswith("point")


def test_tail_of_a_run_whose_outcome_cannot_be_read_exits_non_zero(
    tmp_path: Path, serve: Callable[[object], ServerThread]
) -> None:
    """The stream drops just before ``end``; the reconnect gets a 204 (the run is over and every
    line was read) and the status read fails: an unknown outcome is not a success."""
    services, _ = make_services(tmp_path)
    app = Interposer(create_app(services=services))
    server = serve(app)
    code, out, _ = run_cli("generate", "petstore", "scripted", "--url", server.url)
    wait_for(lambda: not services.store.get_run(out.strip()).active)  # type: ignore[union-attr]
    app.drop_end, app.status_error = True, 503
    code, out, err = run_cli("tail", "petstore", "scripted", "--url", server.url)
    assert len(app.streams) == 2 and "last-event-id" in app.streams[1], app.streams
    assert "line 20" in out and "the store is down" in err and "Traceback" not in err
    assert code == 2, err
    services.close()


def test_tail_with_level_resumes_the_run_it_followed_from_the_window_cursor(
    tmp_path: Path, serve: Callable[[object], ServerThread]
) -> None:
    """Nothing printed yet (``--level ERROR``) when the server closes a stream window: the id-only
    event carries the cursor, and the reconnect asks for that run from there, even though the
    key has a newer run by then."""
    services, generator = make_services(tmp_path, stream_window=0.5)
    app = Interposer(create_app(services=services))
    server = serve(app)
    generator.stepped, generator.fail_with = True, "the model refused"
    _, out, _ = run_cli("generate", "petstore", "scripted", "--url", server.url)
    first = out.strip()
    generator.step(5)
    app.release.clear()  # hold the reconnect until the key has a newer run
    outcome: dict[str, Any] = {}
    tail = threading.Thread(
        target=lambda: outcome.update(
            zip(
                ("code", "out", "err"),
                run_cli("tail", "petstore", "scripted", "--url", server.url, "--level", "ERROR"),
                strict=True,
            )
        )
    )
    tail.start()
    wait_for(lambda: len(app.streams) == 2, 10, "the reconnect after the window")
    generator.step(15)
    wait_for(lambda: not services.store.get_run(first).active)  # type: ignore[union-attr]
    generator.stepped, generator.fail_with = False, None
    _, out, _ = run_cli("generate", "petstore", "scripted", "--url", server.url)
    second = out.strip()
    wait_for(lambda: not services.store.get_run(second).active)  # type: ignore[union-attr]
    app.release.set()
    tail.join(20)
    resumed = app.streams[1]
    assert resumed.get("last-event-id", "").startswith(f"{first}:"), resumed
    assert int(resumed["last-event-id"].split(":")[1]) >= 5  # lines it skipped are not re-read
    assert f"run_id={first}" in resumed["query"]
    assert outcome["code"] == 1 and "the model refused" in outcome["out"], outcome
    assert "run failed" in outcome["err"]
    services.close()


def test_upload_to_no_server_is_a_message_and_exit_2(tmp_path: Path) -> None:
    from .conftest import free_port

    document = tmp_path / "point.json"
    document.write_text(json.dumps({"type": "object"}))
    code, _, err = run_cli("upload", str(document), "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 2 and "cannot reach" in err and "Traceback" not in err


def test_tail_against_no_server_says_so() -> None:
    from .conftest import free_port

    result = runner().invoke(
        main, ["tail", "a", "b", "--url", f"http://127.0.0.1:{free_port()}", "--retries", "1"]
    )
    assert result.exit_code == 2 and "cannot reach" in result.stderr


def test_serve_refuses_a_public_bind_without_auth() -> None:
    code, _, err = run_cli("serve", "--host", "0.0.0.0", "--port", "8123")
    assert code == 2 and "without auth" in err


@pytest.mark.parametrize(
    ("store", "says"),
    [
        ("mysql://x", "unknown store URL"),
        ("postgresql://nobody@127.0.0.1:1/db?connect_timeout=2", "cannot connect"),
        ("supabase", "SUPABASE_URL"),
    ],
)
def test_serve_names_a_bad_store(
    store: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    code, _, err = run_cli("serve", "--store", store, "--data-dir", str(tmp_path))
    assert code == 2 and says in err and "Traceback" not in err


def test_every_command_has_help() -> None:
    for name, command in main.commands.items():  # type: ignore[attr-defined]
        assert command.help and "Example:" in command.help, name


@pytest.mark.postgres
def test_migrate_is_safe_twice_and_names_bad_urls(pg_cluster: PgCluster) -> None:
    url = pg_cluster.url(pg_cluster.create_database())
    code, out, err = run_cli("migrate", url)
    assert code == 0 and "applied 3 migration(s)" in out, err
    code, out, _ = run_cli("migrate", url)
    assert code == 0 and "applied 0 migration(s)" in out
    code, _, err = run_cli("migrate", "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=2")
    assert code == 2 and "cannot connect" in err.lower() and "Traceback" not in err
