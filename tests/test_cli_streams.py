"""``jobtail tail --cdn``: a run read through its Durable Stream, as behind a CDN."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobtail.cli import main
from jobtail.services import Services
from jobtail.web.app import create_app

from .conftest import ServerThread
from .scripted import ScriptedGenerator, make_services
from .waiting import wait_for


@pytest.fixture
def served(
    tmp_path: Path, serve: Callable[[object], ServerThread]
) -> Iterator[tuple[Services, ScriptedGenerator, str]]:
    services, generator = make_services(tmp_path, long_poll_seconds=2)
    server = serve(create_app(services=services))
    yield services, generator, server.url
    services.close()


def test_tail_cdn_follows_a_live_run_to_its_end_every_line_once(
    served: tuple[Services, ScriptedGenerator, str],
) -> None:
    services, generator, url = served
    generator.stepped = True
    runner = CliRunner()
    started = runner.invoke(main, ["generate", "petstore", "scripted", "--url", url])
    assert started.exit_code == 0, started.output
    run_id = started.output.strip().splitlines()[-1]
    wait_for(lambda: services.store.get_run(run_id).status == "running")  # type: ignore[union-attr]
    result: list[object] = []
    tail = threading.Thread(
        target=lambda: result.append(
            runner.invoke(main, ["tail", "petstore", "scripted", "--cdn", "--json", "--url", url])
        )
    )
    tail.start()
    generator.step(20)
    tail.join(timeout=60)
    [outcome] = result
    assert outcome.exit_code == 0, outcome.output  # type: ignore[attr-defined]
    printed = [json.loads(x) for x in outcome.stdout.splitlines() if x.startswith("{")]  # type: ignore[attr-defined]
    final = services.store.read(run_id, limit=1000)
    assert [x["seq"] for x in printed] == [x.seq for x in final]
    assert [x["message"] for x in printed] == [x.message for x in final]


def test_tail_cdn_filters_levels_and_starts_n_lines_back(
    served: tuple[Services, ScriptedGenerator, str],
) -> None:
    services, generator, url = served
    generator.fail_with = "kaput"
    runner = CliRunner()
    assert runner.invoke(main, ["generate", "petstore", "scripted", "--url", url]).exit_code == 0
    wait_for(lambda: not services.store.latest_run("petstore", "scripted").active)  # type: ignore[union-attr]
    final = services.store.read(services.store.latest_run("petstore", "scripted").run_id)  # type: ignore[union-attr]
    errors = runner.invoke(
        main, ["tail", "petstore", "scripted", "--cdn", "--json", "--level", "ERROR", "--url", url]
    )
    assert errors.exit_code == 1  # the run failed
    got = [json.loads(x) for x in errors.stdout.splitlines() if x.startswith("{")]
    assert [x["seq"] for x in got] == [x.seq for x in final if x.log_level == "ERROR"]
    last_two = runner.invoke(
        main, ["tail", "petstore", "scripted", "--cdn", "--json", "-n", "2", "--url", url]
    )
    assert [json.loads(x)["seq"] for x in last_two.stdout.splitlines() if x.startswith("{")] == [
        x.seq for x in final[-2:]
    ]
