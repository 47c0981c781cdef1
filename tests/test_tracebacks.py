"""Tracebacks shown to viewers never carry the server's absolute paths."""

from __future__ import annotations

import json
import os
import sys
import sysconfig
from pathlib import Path

import pytest

from jobtail.tracebacks import format_exception, short_path


def fails_in_the_stdlib() -> None:
    json.loads("{not json")


def test_frames_are_relative_to_the_project_or_the_package() -> None:
    try:
        fails_in_the_stdlib()
    except ValueError as exc:
        text = format_exception(exc)
    assert text.startswith("Traceback (most recent call last):")
    assert 'File "tests/test_tracebacks.py"' in text
    assert 'File "json/decoder.py"' in text or 'File "json/__init__.py"' in text
    assert text.rstrip().endswith(
        "json.decoder.JSONDecodeError: Expecting property name"
        " enclosed in double quotes: line 1 column 2 (char 1)"
    )
    for secret in (os.getcwd(), sys.prefix, sysconfig.get_paths()["stdlib"]):
        assert secret not in text


def test_paths_in_messages_and_chained_causes_are_shortened(tmp_path: Path) -> None:
    secret = Path.cwd() / "data" / "uploads" / "x.json"
    try:
        try:
            raise FileNotFoundError(f"no such file: {secret}")
        except FileNotFoundError as inner:
            raise RuntimeError(f"could not load {secret}") from inner
    except RuntimeError as exc:
        text = format_exception(exc)
    assert str(Path.cwd()) not in text
    assert "no such file: data/uploads/x.json" in text
    assert "could not load data/uploads/x.json" in text
    assert "The above exception was the direct cause" in text


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (os.path.join(os.getcwd(), "app", "jobs.py"), os.path.join("app", "jobs.py")),
        (os.path.join(sysconfig.get_paths()["purelib"], "pydantic", "main.py"), "pydantic/main.py"),
        ("/srv/secret/place/deep/module.py", "…/deep/module.py"),
        ("<string>", "<string>"),
    ],
)
def test_short_path(path: str, expected: str) -> None:
    assert short_path(path) == expected
