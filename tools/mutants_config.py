"""Narrow the staged ``[tool.mutmut]`` config to one module and its tests (``MODULE=``).

mutmut reads only ``pyproject.toml``, and a run over the whole core with every test takes hours
on two cores; one module with the tests that hold its behaviour takes minutes.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def narrow(text: str, module: str, tests: list[str]) -> str:
    """``text`` with ``only_mutate`` (and, given tests, the test selection) replaced."""
    for key, items in (
        ("only_mutate", [f"src/jobtail/{module}"]),
        ("pytest_add_cli_args_test_selection", tests),
    ):
        if not items:
            continue
        text, count = re.subn(
            rf"^{key} = \[.*?^\]$", f"{key} = {toml_list(items)}", text, flags=re.M | re.S
        )
        if count != 1:
            raise SystemExit(f"{key} not found in the staged pyproject.toml")
    return text


def main(path: Path, module: str, tests: str) -> int:
    if not module:
        return 0  # the whole core, as configured
    if not (path.parent / "src" / "jobtail" / module).is_file():
        raise SystemExit(f"MODULE={module}: no such file under shared/jobtail/")
    path.write_text(narrow(path.read_text(), module, tests.split()))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2], sys.argv[3]))
