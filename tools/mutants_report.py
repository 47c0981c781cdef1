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

# mutmut's exit codes (mutmut/stats.py): 1 and 3 killed (a test failed), 36 and -24 timeout
# (the mutant made a test hang: caught, listed apart), 0 survived, 5 and 33 no test reaches the
# mutated function, None not run yet.
KIND = {1: "killed", 3: "killed", 36: "timeout", -24: "timeout", 0: "survived", 5: "no tests"}
KIND[33] = "no tests"
KIND[-11] = "killed"  # the mutant crashed the test process (SIGSEGV): caught all the same


def main(root: Path) -> int:
    metas = sorted((root / "mutants").rglob("*.py.meta"))
    rows, survivors, totals = [], [], Counter[str]()
    for meta in metas:
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        count = Counter(
            KIND.get(code, "not run" if code is None else "other") for code in codes.values()
        )
        if not count.keys() - {"not run"}:
            continue
        module = str(meta.relative_to(root / "mutants")).removesuffix(".meta").removeprefix("src/")
        rows.append((module, count))
        totals.update(count)
        survivors += sorted(k for k, v in codes.items() if KIND.get(v) in ("survived", "no tests"))
    print("| module | mutants run | killed | timeout | survived | no test reaches it | killed % |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for module, count in [*rows, ("**all**", totals)]:
        run = sum(v for k, v in count.items() if k != "not run")
        caught = count["killed"] + count["timeout"]
        if not run:
            continue
        left = f" (of {run + count['not run']})" if count["not run"] else ""
        print(
            f"| {module} | {run}{left} | {count['killed']} | {count['timeout']} | "
            f"{count['survived']} | {count['no tests']} | {100 * caught / run:.1f} % |"
        )
    print("\nnot killed (mutmut show NAME prints the change):")
    for name in survivors:
        print(f"  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ".mutation")))
