"""The ``jobtail`` command against a real server: tail's exit codes, clear errors, serve's guard."""

from __future__ import annotations

import json
import os
import pty
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from jobtail.cli import main
from jobtail.services import Services
from jobtail.store.migrate import MIGRATIONS_DIR
from jobtail.web.app import create_app

from .conftest import ServerThread, free_port
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
        if scope["path"].endswith("/status") and self.status_error and self.streams:
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
    document = tmp_path / "point.json"
    document.write_text(json.dumps({"type": "object"}))
    code, _, err = run_cli("upload", str(document), "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 2 and "cannot reach" in err and "Traceback" not in err


def test_tail_against_no_server_says_so() -> None:
    result = runner().invoke(
        main, ["tail", "a", "b", "--url", f"http://127.0.0.1:{free_port()}", "--retries", "1"]
    )
    assert result.exit_code == 2 and "no jobtail server answers" in result.stderr


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


@pytest.mark.parametrize("name", sorted(main.commands))  # type: ignore[attr-defined]
def test_every_command_has_help_with_an_example_that_parses(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sqlite-utils style: each command's --help shows an example, and the example is a
    command line this CLI accepts (so it cannot rot when options change)."""
    code, out, _ = run_cli(name, "--help")
    assert code == 0 and "Example" in out, out
    command = main.commands[name]  # type: ignore[attr-defined]
    examples = [
        shlex.split(line.split("(")[0])
        for line in out.splitlines()
        if line.strip().startswith(f"jobtail {name}")
        or line.strip().startswith(f"Example: jobtail {name}")
    ]
    assert examples, out
    monkeypatch.chdir(tmp_path)
    for example in examples:
        args = example[example.index(name) + 1 :]
        for arg in args:
            if arg.endswith((".json", ".yaml")):
                Path(arg).touch()  # the example's document, so the FILE argument exists
        with command.make_context(name, args):  # raises a UsageError if it does not parse
            pass


def test_client_commands_find_the_server_from_the_settings(
    served: tuple[Services, ScriptedGenerator, str],
) -> None:
    """JOBTAIL_URL, else the host and port ``jobtail serve`` would use (a wildcard bind is
    reached on loopback); --url wins over both."""
    services, _, url = served
    port = url.rsplit(":", 1)[1]
    cases = [
        {"JOBTAIL_URL": url},
        {"JOBTAIL_URL": None, "JOBTAIL_HOST": "127.0.0.1", "JOBTAIL_PORT": port},
        {"JOBTAIL_URL": None, "JOBTAIL_HOST": "0.0.0.0", "JOBTAIL_PORT": port},
    ]
    for env in cases:
        result = runner().invoke(main, ["generate", "petstore", "scripted"], env=env)
        assert result.exit_code == 0, (env, result.stderr)
        run_id = result.stdout.strip()
        wait_for(lambda run_id=run_id: not services.store.get_run(run_id).active)  # type: ignore[union-attr]
        result = runner().invoke(main, ["tail", "petstore", "scripted"], env=env)
        assert result.exit_code == 0 and "line 20" in result.stdout, (env, result.stderr)
    elsewhere = {"JOBTAIL_URL": f"http://127.0.0.1:{free_port()}"}
    result = runner().invoke(main, ["runs", "--url", url], env=elsewhere)
    assert result.exit_code == 0 and "petstore/scripted" in result.stdout


def test_no_server_at_start_fails_within_5_s_with_a_message(tmp_path: Path) -> None:
    """Nothing listening, and a server that accepts connections but never answers: both are a
    clear message and exit 2 within 5 s (back-off is for a stream that was open)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
        for port in (free_port(), silent.getsockname()[1]):
            started = time.monotonic()
            result = runner().invoke(
                main, ["tail", "petstore", "x", "--url", f"http://127.0.0.1:{port}"]
            )
            elapsed = time.monotonic() - started
            assert result.exit_code == 2 and "no jobtail server answers" in result.stderr
            assert "Traceback" not in result.stderr and elapsed < 5, (elapsed, result.stderr)


def finished_run(served: tuple[Services, ScriptedGenerator, str], fail: str | None = None) -> str:
    services, generator, url = served
    generator.fail_with = fail
    code, out, err = run_cli("generate", "petstore", "scripted", "--url", url)
    assert code == 0, err
    wait_for(lambda: not services.store.get_run(out.strip()).active)  # type: ignore[union-attr]
    return out.strip()


def test_json_lines_last_n_and_since(served: tuple[Services, ScriptedGenerator, str]) -> None:
    services, _, url = served
    run_id = finished_run(served)
    stored = [line.to_json() for line in services.store.read(run_id, limit=1000)]
    code, out, _ = run_cli("tail", "petstore", "scripted", "--url", url, "--json")
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == stored
    code, out, _ = run_cli("tail", "petstore", "scripted", "--url", url, "--json", "-n", "3")
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == stored[-3:]
    code, out, _ = run_cli("tail", "petstore", "scripted", "--url", url, "-n", "0")
    assert code == 0 and out == ""  # a finished run has no next line
    code, out, _ = run_cli("tail", "petstore", "scripted", "--url", url, "--since", "1h")
    assert code == 0 and len(out.splitlines()) == len(stored)
    future = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    code, out, _ = run_cli("tail", "petstore", "scripted", "--url", url, "--since", future)
    assert code == 0 and out == ""
    middle = stored[len(stored) // 2]["timestamp"]
    code, out, _ = run_cli("tail", "petstore", "scripted", "--url", url, "--since", middle)
    shown = [line for line in stored if line["timestamp"] >= middle]
    assert code == 0 and len(out.splitlines()) == len(shown) < len(stored)
    code, _, err = run_cli("tail", "petstore", "scripted", "--url", url, "--since", "soon")
    assert code == 2 and "neither a duration" in err


def test_n_0_shows_only_the_lines_logged_after_it_started(
    tmp_path: Path, serve: Callable[[object], ServerThread]
) -> None:
    services, generator = make_services(tmp_path)
    app = Interposer(create_app(services=services))
    url = serve(app).url
    generator.stepped = True
    _, out, _ = run_cli("generate", "petstore", "scripted", "--url", url)
    generator.step(5)
    wait_for(lambda: any(x.message == "line 5" for x in services.store.read(out.strip())))
    got: dict[str, Any] = {}
    args = ("tail", "petstore", "scripted", "--url", url, "-n", "0", "--json")
    follower = threading.Thread(
        target=lambda: got.update(zip(("code", "out", "err"), run_cli(*args), strict=True))
    )
    follower.start()
    wait_for(lambda: app.streams, 10, "the stream request (after tail read where the run is)")
    generator.step(15)
    follower.join(20)
    messages = [json.loads(line)["message"] for line in got["out"].splitlines()]
    assert got["code"] == 0 and "line 5" not in messages and "line 6" in messages
    assert messages[messages.index("line 6") :][:15] == [f"line {n}" for n in range(6, 21)]
    services.close()


def test_generate_follow_prints_the_run_and_exits_with_its_outcome(
    served: tuple[Services, ScriptedGenerator, str],
) -> None:
    _, generator, url = served
    code, out, err = run_cli("generate", "petstore", "scripted", "--url", url, "--follow")
    assert code == 0 and "line 20" in out and "run succeeded" in err, err
    generator.fail_with = "the model refused"
    code, out, err = run_cli(
        "generate", "petstore", "scripted", "-f", "--url", url, "--level", "ERROR", "--json"
    )
    assert code == 1 and "run failed" in err
    assert [json.loads(line)["log_level"] for line in out.splitlines()] == ["ERROR"] * len(
        out.splitlines()
    )
    assert "the model refused" in out


def test_runs_lists_the_newest_first_and_filters(
    served: tuple[Services, ScriptedGenerator, str],
) -> None:
    _, _, url = served
    failed = finished_run(served, fail="kaput")
    succeeded = finished_run(served)
    code, out, _ = run_cli("runs", "--url", url)
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == [succeeded, failed]
    assert " succeeded " in out.splitlines()[0] and " failed " in out.splitlines()[1]
    code, out, _ = run_cli(
        "runs", "petstore", "--service", "scripted", "--json", "--limit", "1", "--url", url
    )
    assert code == 0 and [json.loads(line)["run_id"] for line in out.splitlines()] == [succeeded]
    code, out, err = run_cli("runs", "nothing", "--url", url)
    assert code == 0 and out == "" and "no runs" in err


def _tail_on(env: dict[str, str], url: str) -> bytes:
    """Run the real ``jobtail`` script with stdout on a pseudo-terminal."""
    command = [str(Path(sys.executable).parent / "jobtail"), "tail", "petstore", "scripted"]
    environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | env | {"JOBTAIL_URL": url}
    leader, follower = pty.openpty()
    with subprocess.Popen(
        command, env=environ, stdout=follower, stderr=subprocess.DEVNULL
    ) as child:
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        child.wait(30)
    os.close(leader)
    return b"".join(chunks)


def test_levels_are_coloured_on_a_terminal_only(
    served: tuple[Services, ScriptedGenerator, str],
) -> None:
    _, _, url = served
    finished_run(served, fail="kaput")
    coloured = _tail_on({}, url)
    assert b"line 20" in coloured and b"\x1b[31mERROR" in coloured  # red
    assert b"\x1b[32mINFO" in coloured  # green
    plain = _tail_on({"NO_COLOR": "1"}, url)
    assert b"line 20" in plain and b"\x1b[" not in plain
    _, piped, _ = run_cli("tail", "petstore", "scripted", "--url", url)  # not a terminal
    assert "line 20" in piped and "\x1b[" not in piped


@pytest.mark.postgres
def test_migrate_is_safe_twice_and_names_bad_urls(pg_cluster: PgCluster) -> None:
    url = pg_cluster.url(pg_cluster.create_database())
    code, out, err = run_cli("migrate", url)
    files = len(list(MIGRATIONS_DIR.glob("*.sql")))
    assert code == 0 and f"applied {files} migration(s)" in out, err
    code, out, _ = run_cli("migrate", url)
    assert code == 0 and "applied 0 migration(s)" in out
    code, _, err = run_cli("migrate", "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=2")
    assert code == 2 and "cannot connect" in err.lower() and "Traceback" not in err


@pytest.mark.parametrize("command", [["serve"], ["runs"], ["sweep"]])
def test_a_bad_setting_is_named_on_one_line(command: list[str], tmp_path: Path) -> None:
    """pydantic's message spans four lines and links its docs; the CLI says which setting."""
    result = runner().invoke(
        main, [*command], env={"JOBTAIL_STALE_AFTER": "-1", "JOBTAIL_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == "jobtail: bad JOBTAIL_STALE_AFTER: Input should be greater than 0\n"
