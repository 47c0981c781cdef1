"""``tools/mutants_config.py``: what ``make mutants MODULE= TESTS= MARKS=`` runs is the staged
pyproject it writes, so its output is pinned (read back as TOML, as mutmut reads it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tools" / "mutants_config.py"


def staged(tmp_path: Path, *args: str) -> dict[str, Any]:
    """The repository's pyproject staged as ``make mutants`` stages it, narrowed by ``args``."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "src" / "jobtail" / "store").mkdir(parents=True)
    (tmp_path / "src" / "jobtail" / "store" / "pg_poll.py").touch()
    command = [sys.executable, str(CONFIG), str(tmp_path / "pyproject.toml"), *args]
    subprocess.run(command, check=True, capture_output=True)
    config: dict[str, Any] = tomllib.loads((tmp_path / "pyproject.toml").read_text())
    return dict(config["tool"]["mutmut"])


def test_marks_replace_the_tests_marker_expression(tmp_path: Path) -> None:
    """``MARKS='not browser'`` lets a PostgreSQL module's tests run; the rest stays."""
    config = staged(tmp_path, "store/pg_poll.py", "tests/store/test_pg_poll.py", "not browser")
    assert config["pytest_add_cli_args"] == ["-m", "not browser", "-p", "no:cacheprovider"]
    assert config["only_mutate"] == ["src/jobtail/store/pg_poll.py"]
    assert config["pytest_add_cli_args_test_selection"] == ["tests/store/test_pg_poll.py"]


def test_without_marks_the_configured_expression_stays(tmp_path: Path) -> None:
    config = staged(tmp_path, "store/pg_poll.py", "", "")
    assert config["pytest_add_cli_args"][:2] == ["-m", "not postgres and not browser"]
    assert config["only_mutate"] == ["src/jobtail/store/pg_poll.py"]
    assert "tests/test_logger.py" in config["pytest_add_cli_args_test_selection"]


def test_marks_alone_apply_to_the_whole_core(tmp_path: Path) -> None:
    config = staged(tmp_path, "", "", "postgres")
    assert config["pytest_add_cli_args"] == ["-m", "postgres", "-p", "no:cacheprovider"]
    assert len(config["only_mutate"]) > 1
