"""`python -m benchmarks`: run the registered workloads and print the results table.

`python -m benchmarks compare A.json B.json` instead compares two runs saved with
`--json` (see `benchmarks.compare`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import msgspec

from . import compare, groups, load_workloads
from .fixtures import apsw
from .harness import ENGINE_NOTES, Config, Row, Workload
from .report import as_json, details, table

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: Sequence[str] | None, registry: dict[str, Workload]) -> argparse.Namespace:
    by_group = groups(registry)
    choices = [*registry, *(group for group in by_group if group not in registry)]
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="livedb next to stdlib sqlite3 (:memory:), apsw, sqlite3 with msgpack "
                    "and a plain-dict floor, on the same workloads in one process. Figures "
                    "are costs (time per operation, bytes per document); the headline ratio "
                    "is livedb's figure over the baseline's (sqlite3 unless the row says "
                    "otherwise), lower is better. `python -m benchmarks compare A.json "
                    "B.json` compares two --json runs.")
    parser.add_argument("--smoke", action="store_true",
                        help="run every workload tiny (a few seconds; figures meaningless, "
                             "targets not judged)")
    parser.add_argument("--only", nargs="+", choices=choices, metavar="KEY",
                        help="run only these workloads or groups (workloads: "
                             f"{', '.join(registry)}; groups: {', '.join(by_group)})")
    parser.add_argument("--list", action="store_true",
                        help="list the workloads (key, group and title) and exit")
    parser.add_argument("--gc-off", action="store_true",
                        help="turn the cyclic garbage collector off while timing (diagnosis; "
                             "by default it stays on, as in real applications)")
    parser.add_argument("--skip-1m", action="store_true",
                        help="skip opening a file of 1,000,000 documents (the slowest figure)")
    parser.add_argument("--json", nargs="?", const="-", metavar="PATH",
                        help="also write every figure as JSON to PATH (to stdout without "
                             "PATH; the table then goes to stderr)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a target is missed (not with --smoke)")
    return parser.parse_args(argv)


def chosen(registry: dict[str, Workload], only: Sequence[str] | None) -> list[Workload]:
    """The workloads to run, in registry order: all, or those named or in a named group."""
    if not only:
        return list(registry.values())
    return [entry for key, entry in registry.items() if key in only or entry.group in only]


def git_commit() -> str | None:
    """The checked-out commit of the benchmarked tree (with "+dirty" for local changes)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def run_facts(config: Config) -> dict[str, Any]:
    """What a reader needs to judge the figures: versions, machine, load, settings."""
    return {
        "mode": "smoke" if config.smoke else "default",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "python": platform.python_version(),
        "sqlite3": sqlite3.sqlite_version,
        "apsw": None if apsw is None else apsw.apsw_version(),
        "apsw_sqlite": None if apsw is None else apsw.sqlite_lib_version(),
        "msgspec": msgspec.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "load_average_start": list(os.getloadavg()),
        "gc_while_timing": "off" if config.gc_off else "on",
        "repeats": config.repeats,
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        return compare.main(argv[1:])
    registry = load_workloads()
    args = parse_args(argv, registry)
    if args.list:
        for key, entry in registry.items():
            print(f"{key}\t{entry.group}\t{entry.title}")
        return 0
    config = (Config.tiny(args.gc_off) if args.smoke
              else Config.default(args.gc_off, skip_1m=args.skip_1m))
    out: TextIO = sys.stderr if args.json == "-" else sys.stdout
    facts = run_facts(config)
    load = ", ".join(f"{x:.2f}" for x in facts["load_average_start"])
    apsw_text = "apsw not installed" if apsw is None else \
        f"apsw {facts['apsw']} (SQLite {facts['apsw_sqlite']})"
    print(f"livedb benchmarks ({facts['mode']} run): Python {facts['python']}, sqlite3 "
          f"(SQLite {facts['sqlite3']}), {apsw_text}, msgspec {facts['msgspec']}; "
          f"{facts['cpus']} CPUs, {facts['machine']}, load average {load}", file=out)
    print(f"figures are costs, lower is better: time per operation (memory rows: bytes per "
          f"document; open rows: seconds per open); ratio = livedb / baseline (a time "
          f"ratio: 0.5x means livedb takes half the baseline's time); best of "
          f"{config.repeats} after a warm-up, engines alternating; gc "
          f"{'off' if config.gc_off else 'on'} while timing", file=out)
    for engine, note in ENGINE_NOTES.items():
        print(f"  {engine}: {note}", file=out)
    print(file=out, flush=True)
    rows: list[tuple[str, Row]] = []
    started = time.perf_counter()
    for entry in chosen(registry, args.only):
        began = time.perf_counter()
        print(f"  running {entry.key} ({entry.title})...", end="", file=sys.stderr, flush=True)
        rows.extend((entry.group, row) for row in entry.run(config))
        print(f" {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - started
    judged = not config.smoke
    plain = [row for _group, row in rows]
    print(table(plain, judged), file=out)
    print(f"\n{details(plain)}", file=out)
    facts["seconds"] = round(elapsed, 1)
    facts["load_average_end"] = list(os.getloadavg())
    print(f"\nfinished in {elapsed:.1f} s; load average at the end "
          f"{', '.join(f'{x:.2f}' for x in facts['load_average_end'])}", file=out)
    missed = [row.title for row in plain if row.met is False]
    if not judged:
        print("(smoke run: targets are not judged)", file=out)
    elif missed:
        print(f"targets MISSED: {', '.join(missed)}", file=out)
    elif any(row.target is not None for row in plain):
        print("every target met", file=out)
    if args.json is not None:
        document = json.dumps(as_json(facts, rows, judged, ENGINE_NOTES), indent=1)
        if args.json == "-":
            print(document)
        else:
            Path(args.json).write_text(document + "\n", encoding="utf-8")
            print(f"figures written to {args.json}", file=out)
    return 1 if missed and args.strict and judged else 0


if __name__ == "__main__":
    sys.exit(main())
