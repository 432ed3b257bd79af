"""`python -m benchmarks`: run the registered workloads and print the results table."""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import sys
import time
from collections.abc import Sequence

from . import load_workloads
from .harness import Config, Row
from .report import details, table


def parse_args(argv: Sequence[str] | None, keys: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="livedb vs stdlib sqlite3 (:memory:) on the same workloads, in one process.")
    parser.add_argument("--smoke", action="store_true",
                        help="run every workload tiny (a few seconds; figures meaningless)")
    parser.add_argument("--only", nargs="+", choices=keys, metavar="KEY",
                        help=f"run only these workloads ({', '.join(keys)})")
    parser.add_argument("--list", action="store_true",
                        help="list the workloads (key and title) and exit")
    parser.add_argument("--keep-gc", action="store_true",
                        help="leave the cyclic garbage collector on while timing")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 when a target is missed (not with --smoke)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    registry = load_workloads()
    args = parse_args(argv, list(registry))
    if args.list:
        for key, entry in registry.items():
            print(f"{key}\t{entry.title}")
        return 0
    config = Config.tiny(args.keep_gc) if args.smoke else Config.default(args.keep_gc)
    chosen = [registry[key] for key in registry if not args.only or key in args.only]
    print(f"livedb benchmarks ({'smoke' if config.smoke else 'default'} run): Python "
          f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}")
    print(f"best of {config.repeats} after a warm-up, engines alternating; gc "
          f"{'on' if config.keep_gc else 'off'} while timing\n", flush=True)
    rows: list[Row] = []
    started = time.perf_counter()
    for entry in chosen:
        rows.extend(entry.run(config))
    print(table(rows))
    print(f"\n{details(rows)}")
    print(f"\nfinished in {time.perf_counter() - started:.1f} s")
    missed = [row.title for row in rows if row.met is False]
    if missed and config.smoke:
        print("(smoke run: targets are not judged)")
    elif missed:
        print(f"targets missed: {', '.join(missed)}")
    return 1 if missed and args.strict and not config.smoke else 0


if __name__ == "__main__":
    sys.exit(main())
