"""``make bench``: measures the DESIGN.md targets on this machine and prints one table.

Each figure runs real parts: SQLite files, the embedded PostgreSQL server, uvicorn on loopback,
httpx-sse clients. Run ``python -m bench --only append,latency`` for a subset.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import browser, figures, scale, streams, writers

Figure = Callable[[Path], list[tuple[str, str, str, bool]]]

ALL: dict[str, Figure] = {
    "append": figures.append_rates,
    "latency": figures.sse_latency,
    "inserver": writers.inserver_rows,
    "viewers": figures.many_viewers,
    "replay": figures.late_replay,
    "churn": figures.connect_churn,
    "cdn": streams.cdn_readers,
    "fanout": scale.fanout_rows,
    "floors": scale.replay_rows,
    "pgwriters": scale.pg_writer_rows,
    "browser": browser.browser_figures,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default=",".join(ALL), help="comma-separated: " + ", ".join(ALL))
    parser.add_argument(
        "--viewers",
        default=",".join(map(str, scale.VIEWERS)),
        help="fan-out sizes, e.g. 1000,5000,10000 (10,000 takes a few minutes more)",
    )
    parser.add_argument(
        "--browser-lines",
        default=",".join(map(str, browser.SIZES)),
        help="finished runs the browser figures open, e.g. 100000 (1,000,000 takes minutes)",
    )
    args = parser.parse_args(argv)
    viewers = tuple(int(n) for n in args.viewers.split(","))
    sizes = tuple(int(n) for n in args.browser_lines.split(","))
    ALL["fanout"] = lambda tmp: scale.fanout_rows(tmp, viewers)
    ALL["browser"] = lambda tmp: browser.browser_figures(tmp, sizes)
    rows: list[tuple[str, str, str, bool]] = []
    for name in args.only.split(","):
        with tempfile.TemporaryDirectory(prefix=f"jobtail-bench-{name}-") as tmp:
            print(f"running {name}...", file=sys.stderr, flush=True)
            got = ALL[name](Path(tmp))
            for row in got:  # as they come, so a run cut short still shows what it measured
                print(
                    f"  {row[0]} | {row[1]} | {row[2]} | {'ok' if row[3] else 'NOT ok'}",
                    file=sys.stderr,
                    flush=True,
                )
            rows += got
    print(f"\n{os.cpu_count()} cores, shared with the load clients and anything else running")
    width = max(len(r[0]) for r in rows)
    print(f"\n| {'figure':<{width}} | {'measured':<24} | {'target':<22} | ok |")
    print(f"|{'-' * (width + 2)}|{'-' * 26}|{'-' * 24}|----|")
    for figure, measured, target, ok in rows:
        print(f"| {figure:<{width}} | {measured:<24} | {target:<22} | {'✓' if ok else '✗'}  |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
