"""The ``jobtail`` command against a real server: tail's exit codes, clear errors, serve's guard."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobtail.cli import main
from jobtail.services import Services
from jobtail.web.app import create_app

from .conftest import ServerThread
from .pg import PgCluster
from .scripted import ScriptedGenerator, make_services, until


@pytest.fixture
def served(
    tmp_path: Path, serve: Callable[[object], ServerThread]
) -> Iterator[tuple[Services, ScriptedGenerator, str]]:
    services, generator = make_services(tmp_path)
    server = serve(create_app(services=services))
    yield services, generator, server.url
    services.close()


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
    until(lambda: services.store.get_run(run_id).status == "running")  # type: ignore[union-attr]
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
    until(lambda: not services.store.get_run(out.strip()).active)  # type: ignore[union-attr]
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
