"""`python -m benchmarks compare A.json B.json`: the change from run A to run B, per row.

Rows are matched by key. For each row it prints livedb's figure in A and B and the
change in percent (negative is faster or smaller: every figure is a cost), the same for
the headline ratio, and the change of every other engine's figure. Those other columns
are the yardstick for noise: if sqlite3 also moved by 8%, livedb moving by 8% says more
about the machine than about livedb. Ratios taken within one run are the figures to
trust.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .report import FORMAT_VERSION, figure, ratio_text

HEADERS = ("workload", "livedb A", "livedb B", "change", "ratio A", "ratio B", "change",
           "other engines (change)")


def load(path: str) -> dict[str, Any]:
    """A `--json` document, checked for the format this version writes."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"compare: cannot read {path}: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT_VERSION:
        raise SystemExit(f"compare: {path} is not a benchmarks --json file of format "
                         f"{FORMAT_VERSION}")
    return document


def change(before: float | None, after: float | None) -> str:
    """The change from `before` to `after` in percent, "-" when either is missing."""
    if before is None or after is None or before == 0:
        return "-"
    return f"{(after - before) / before * 100:+.1f}%"


def _row_cells(a: dict[str, Any], b: dict[str, Any]) -> tuple[str, ...]:
    unit = b["unit"]
    mine_a, mine_b = a["figures"].get("livedb"), b["figures"].get("livedb")
    others = [f"{engine} {change(a['figures'].get(engine), value)}"
              for engine, value in b["figures"].items()
              if engine != "livedb" and engine in a["figures"]]
    ratio_a, ratio_b = a.get("ratio"), b.get("ratio")
    return (b["title"], figure(mine_a, unit), figure(mine_b, unit), change(mine_a, mine_b),
            "-" if ratio_a is None else ratio_text(ratio_a),
            "-" if ratio_b is None else ratio_text(ratio_b),
            change(ratio_a, ratio_b), ", ".join(others))


def render(first: dict[str, Any], second: dict[str, Any]) -> str:
    """The comparison of two runs as text: a header per run, then one line per row."""
    rows_a = {row["key"]: row for row in first["rows"]}
    rows_b = {row["key"]: row for row in second["rows"]}
    lines: list[tuple[str, ...]] = [HEADERS]
    lines.extend(_row_cells(rows_a[key], row) for key, row in rows_b.items() if key in rows_a)
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADERS))]

    def line(cells: Sequence[str]) -> str:
        head = [cells[0].ljust(widths[0]),
                *(cell.rjust(width) for cell, width in zip(cells[1:-1], widths[1:-1],
                                                           strict=True))]
        return "  ".join([*head, cells[-1]]).rstrip()

    out = []
    for name, document in (("A", first), ("B", second)):
        run = document["run"]
        load = ", ".join(f"{x:.2f}" for x in run.get("load_average_start") or [])
        out.append(f"{name}: {run.get('mode')} run of commit {run.get('commit')}, started "
                   f"{run.get('started')}, load average {load}, gc "
                   f"{run.get('gc_while_timing')}")
    if first["run"].get("mode") != second["run"].get("mode"):
        out.append("warning: the runs differ in mode (smoke vs default): sizes differ")
    out.append("change = (B - A) / A; figures are costs, so a negative change is an "
               "improvement\n")
    out.append(line(lines[0]))
    out.append("  ".join("-" * width for width in widths))
    out.extend(line(cells) for cells in lines[1:])
    only_a = [row["title"] for key, row in rows_a.items() if key not in rows_b]
    only_b = [row["title"] for key, row in rows_b.items() if key not in rows_a]
    if only_a:
        out.append(f"\nonly in A: {', '.join(only_a)}")
    if only_b:
        out.append(f"{'' if only_a else chr(10)}only in B: {', '.join(only_b)}")
    return "\n".join(out)


def main(argv: Sequence[str]) -> int:
    """Entry point of `python -m benchmarks compare A.json B.json`."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks compare",
        description="Per-row change in percent from run A to run B (both written by "
                    "`python -m benchmarks --json PATH`).")
    parser.add_argument("first", metavar="A.json")
    parser.add_argument("second", metavar="B.json")
    args = parser.parse_args(argv)
    print(render(load(args.first), load(args.second)))
    return 0
