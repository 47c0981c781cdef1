"""Narrow the staged ``[tool.mutmut]`` config to one module and its tests (``MODULE=``,
``TESTS=``), and choose the tests' markers (``MARKS=``, a pytest ``-m`` expression).

mutmut reads only ``pyproject.toml``, and a run over the whole core with every test takes hours
on two cores; one module with the tests that hold its behaviour takes minutes. The configured
``-m`` leaves out PostgreSQL's tests (the whole core's run needs none); a PostgreSQL module's
run selects them: ``MARKS='not browser'``.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

CLI_ARGS = "pytest_add_cli_args"


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def with_marks(args: list[str], marks: str) -> list[str]:
    """pytest's arguments with ``-m marks`` in place of the configured expression (or added)."""
    if "-m" not in args:
        return ["-m", marks, *args]
    at = args.index("-m") + 1
    return [*args[:at], marks, *args[at + 1 :]]


def narrow(text: str, module: str, tests: list[str], marks: str = "") -> str:
    """``text`` with ``only_mutate`` (given a module), the test selection (given tests) and
    the ``-m`` expression (given marks) replaced."""
    config = tomllib.loads(text)["tool"]["mutmut"]
    for key, items in (
        ("only_mutate", [f"src/jobtail/{module}"] if module else []),
        ("pytest_add_cli_args_test_selection", tests),
        (CLI_ARGS, with_marks(config.get(CLI_ARGS, []), marks) if marks else []),
    ):
        if not items:
            continue
        text, count = re.subn(
            rf"^{key} = \[.*?\]$", f"{key} = {toml_list(items)}", text, flags=re.M | re.S
        )
        if count != 1 or tomllib.loads(text)["tool"]["mutmut"][key] != items:
            raise SystemExit(f"{key} not found in the staged pyproject.toml")
    return text


def main(path: Path, module: str, tests: str, marks: str = "") -> int:
    if module and not (path.parent / "src" / "jobtail" / module).is_file():
        raise SystemExit(f"MODULE={module}: no such file under shared/jobtail/")
    if module or tests or marks:  # else the whole core, as configured
        path.write_text(narrow(path.read_text(), module, tests.split(), marks))
    return 0


if __name__ == "__main__":
    marks = sys.argv[4] if len(sys.argv) > 4 else ""
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], marks))
