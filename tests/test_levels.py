"""One level table: the standard library's names, used by the stream route and the CLI alike."""

from __future__ import annotations

import logging

import click

from jobtail.cli import LEVEL_CHOICE
from jobtail.levels import LEVEL_NAMES, Level
from jobtail.web.routes.logs import LevelQuery


def test_the_names_are_the_standard_librarys_canonical_ones_lowest_first() -> None:
    assert LEVEL_NAMES == ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    numbers = [logging.getLevelNamesMapping()[name] for name in LEVEL_NAMES]
    assert numbers == sorted(numbers) and logging.NOTSET not in numbers
    assert "WARN" not in LEVEL_NAMES and "FATAL" not in LEVEL_NAMES  # aliases, not names


def test_the_route_and_the_cli_offer_exactly_those_names() -> None:
    assert [level.value for level in Level] == list(LEVEL_NAMES)
    assert LevelQuery.__metadata__[0].description  # documented for the OpenAPI page
    assert isinstance(LEVEL_CHOICE, click.Choice) and tuple(LEVEL_CHOICE.choices) == LEVEL_NAMES
    assert LEVEL_CHOICE.convert("warning", None, None) == "WARNING"
