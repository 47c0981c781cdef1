"""Kill ratio per module from a mutmut run (``make mutants``), and the surviving mutants.

Reads ``mutants/**/*.py.meta`` (mutmut's own record: one exit code per mutant) in the staged
tree; prints a Markdown table for the README and the names of the survivors
(``mutmut show <name>`` prints the diff).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

# mutmut's exit codes (mutmut/stats.py): 1 and 3 killed, 0 survived, 36/-24 timeout (a kill:
# the mutant made the code hang), 5/33 no test reaches the mutated function.
KILLED = {1, 3, 36, -24, 37}
SURVIVED = {0}
NO_TESTS = {5, 33}


def main(root: Path) -> int:
    metas = sorted((root / "mutants").rglob("*.py.meta"))
    rows, survivors, totals = [], [], Counter[str]()
    for meta in metas:
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        checked = {k: v for k, v in codes.items() if v is not None}
        if not checked:
            continue
        count = Counter(
            "killed"
            if v in KILLED
            else "survived"
            if v in SURVIVED
            else "no tests"
            if v in NO_TESTS
            else "other"
            for v in checked.values()
        )
        module = str(meta.relative_to(root / "mutants")).removesuffix(".meta")
        module = module.removeprefix("src/")
        total = sum(count.values())
        rows.append((module, count, total, len(codes) - len(checked)))
        totals.update(count)
        survivors += sorted(k for k, v in checked.items() if v not in KILLED)
    print("| module | mutants | killed | survived | no test reaches it | kill ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for module, count, total, unchecked in rows:
        note = f" (+{unchecked} not run)" if unchecked else ""
        print(
            f"| `{module}` | {total}{note} | {count['killed']} | {count['survived']} | "
            f"{count['no tests']} | {100 * count['killed'] / total:.1f} % |"
        )
    total = sum(totals.values())
    if total:
        print(
            f"| **all** | {total} | {totals['killed']} | {totals['survived']} | "
            f"{totals['no tests']} | **{100 * totals['killed'] / total:.1f} %** |"
        )
    print("\nnot killed:")
    for name in survivors:
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ".mutation")))
