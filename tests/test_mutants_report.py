"""``tools/mutants_report.py``: the README's kill ratios come from it, so its counting is pinned."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPORT = Path(__file__).resolve().parents[1] / "tools" / "mutants_report.py"


def test_a_crash_and_a_timeout_count_as_caught_and_survivors_are_named(tmp_path: Path) -> None:
    meta = tmp_path / "mutants" / "src" / "jobtail" / "tail.py.meta"
    meta.parent.mkdir(parents=True)
    codes = {"t.x_a__mutmut_1": 1, "t.x_a__mutmut_2": -11, "t.x_a__mutmut_3": 36,
             "t.x_a__mutmut_4": 0, "t.x_a__mutmut_5": 33, "t.x_a__mutmut_6": None}  # fmt: skip
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    out = subprocess.run(
        [sys.executable, str(REPORT), str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    assert "| jobtail/tail.py | 5 (of 6) | 2 | 1 | 1 | 1 | 60.0 % |" in out
    assert out.split("not killed (mutmut show NAME prints the change):\n")[1].split() == [
        "t.x_a__mutmut_4",
        "t.x_a__mutmut_5",
    ]
