"""A database shared between processes: commits per second and cross-process latency.

Workers are real processes (`python -c "from benchmarks.shared import worker; ..."`)
that open the same database and start together on a "go" line. Engines: one SQLite file
opened with `shared=True`, and PostgreSQL (`url=`): the server in
`LIVEDB_TEST_POSTGRES_URL` or `LIVEDB_BENCH_POSTGRES_URL`, else a throwaway server
started for the run with tests/pgkit.py (rows are left out where PostgreSQL is not
installed). Side by side, the same workload on one process of the embedded engine (an
exclusive SQLite file, durability "full").

- commits: each process commits small insert mutations, one after another, for a fixed
  time; the figure is seconds per commit of all processes together (1 / commits per
  second). Target: 4 processes on PostgreSQL commit at least 2x what one does (the
  4-process row's baseline is the 1-process figure, target ratio 0.5).
- latency: process A commits a document stamped with the system-wide monotonic clock
  just before its commit; process B, subscribed to the newest document, takes the
  difference when its callback runs. Targets: p99 <= 20 ms on SQLite, <= 10 ms on
  PostgreSQL (the ratio is p99 / target). The embedded figure is the same subscription
  in the committing process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from livedb import Database, define_schema, define_table, mutation, query, v

from .harness import Config, Row, workload

ROOT = Path(__file__).resolve().parent.parent
SQLITE_P99 = 0.020
POSTGRES_P99 = 0.010
SCALE_TARGET = 0.5
"""4 processes on PostgreSQL: at most half the time per commit of one (2x the rate)."""

SCHEMA = define_schema({
    "events": define_table({"n": v.int64(), "t": v.int64(), "who": v.int64()}),
})


@mutation(args={"n": v.int64(), "who": v.int64()})
def add(ctx: Any, n: int, who: int) -> None:
    ctx.db.insert("events", {"n": n, "t": time.monotonic_ns(), "who": who})


@query
def newest(ctx: Any) -> dict | None:
    return ctx.db.query("events").order("desc").first()


# -- worker processes ------------------------------------------------------------------


def worker() -> None:
    """A benchmark process: `argv[1]` is JSON `{role, target, seconds, who}`."""
    args = json.loads(sys.argv[1])
    db = Database(SCHEMA, **args["target"])
    if args["role"] == "commit":
        print("ready", flush=True)
        sys.stdin.readline()
        deadline = time.perf_counter() + args["seconds"]
        n = 0
        while time.perf_counter() < deadline:
            db.mutation(add, {"n": n, "who": args["who"]})
            n += 1
        print(n, flush=True)
    else:
        delays: list[int] = []

        def seen(doc: dict | None) -> None:
            if doc is not None and doc["who"] == 1:
                delays.append(time.monotonic_ns() - doc["t"])

        db.subscribe(newest, {}, seen)
        print("ready", flush=True)
        sys.stdin.readline()
        print(json.dumps(delays), flush=True)
    db.close()


def _spawn(role: str, target: dict, seconds: float = 0.0, who: int = 0
           ) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from benchmarks.shared import worker; worker()",
         json.dumps({"role": role, "target": target, "seconds": seconds, "who": who})],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"a benchmark worker did not start: {line}")
    return proc


def _commits(target: dict, processes: int, seconds: float) -> float:
    """Seconds per commit with `processes` processes committing for `seconds`."""
    procs = [_spawn("commit", target, seconds, who) for who in range(processes)]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    total = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 60)
        total += int(out.split()[-1])
    return seconds / max(total, 1)


def _latency(target: dict, commits: int) -> list[float]:
    """Commit-in-A to callback-in-B delays (seconds), A being this process."""
    watcher = _spawn("watch", target)
    with Database(SCHEMA, **target) as db:
        for n in range(commits):
            db.mutation(add, {"n": n, "who": 1})
            time.sleep(0.004)
        time.sleep(0.3)
    assert watcher.stdin is not None
    watcher.stdin.write("done\n")
    watcher.stdin.flush()
    out, _ = watcher.communicate(timeout=60)
    return [d / 1e9 for d in json.loads(out.splitlines()[-1])]


def _embedded_commits(folder: str, seconds: float) -> float:
    with Database(SCHEMA, path=os.path.join(folder, "embedded.livedb")) as db:
        n = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            db.mutation(add, {"n": n, "who": 0})
            n += 1
    return seconds / max(n, 1)


def _embedded_latency(folder: str, commits: int) -> list[float]:
    delays: list[float] = []
    with Database(SCHEMA, path=os.path.join(folder, "embedded-live.livedb")) as db:
        db.subscribe(newest, {}, lambda doc: doc is not None and delays.append(
            (time.monotonic_ns() - doc["t"]) / 1e9))
        for n in range(commits):
            db.mutation(add, {"n": n, "who": 1})
    return delays


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- PostgreSQL ----------------------------------------------------------------------


class _Postgres:
    """A PostgreSQL server for the run (given, or started here) and fresh databases."""

    def __init__(self) -> None:
        self.folder: str | None = None
        self.url = (os.environ.get("LIVEDB_BENCH_POSTGRES_URL")
                    or os.environ.get("LIVEDB_TEST_POSTGRES_URL"))
        self.reason = ""
        self._made = 0
        try:
            import psycopg  # noqa: F401
        except ImportError:
            self.reason = "psycopg is not installed (pip install '.[postgres]')"
            self.url = None
            return
        if self.url:
            return
        sys.path.insert(0, str(ROOT / "tests"))
        try:
            import pgkit
        finally:
            sys.path.pop(0)
        if pgkit.binaries() is None:
            self.reason = "PostgreSQL is not installed"
            return
        self.folder = pgkit.make_folder()
        self.url = pgkit.start(self.folder)
        self._pgkit = pgkit

    def fresh(self) -> str:
        """The URL of a new, empty database on the server."""
        import psycopg
        from psycopg import conninfo

        assert self.url is not None
        self._made += 1
        name = f"livedb_bench_{os.getpid()}_{self._made}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
        parts = conninfo.conninfo_to_dict(self.url)
        password = f":{parts['password']}" if parts.get("password") else ""
        return (f"postgresql://{parts.get('user', 'postgres')}{password}@"
                f"{parts.get('host', '127.0.0.1')}:{parts.get('port', 5432)}/{name}")

    def close(self) -> None:
        if self.url and self._made:
            import psycopg

            with psycopg.connect(self.url, autocommit=True) as conn:
                for i in range(1, self._made + 1):
                    conn.execute(f"DROP DATABASE IF EXISTS livedb_bench_{os.getpid()}_{i} "
                                 "WITH (FORCE)")
        if self.folder is not None:
            self._pgkit.stop(self.folder)
            shutil.rmtree(self.folder, ignore_errors=True)


@workload("shared", "shared database: commits/s and cross-process latency")
def shared(config: Config) -> list[Row]:
    """Commits per second with 1, 2 and 4 processes and live-query latency across
    processes, on a shared SQLite file and on PostgreSQL, beside the embedded engine."""
    seconds = 0.3 if config.smoke else 3.0
    commits = 30 if config.smoke else 300
    judge = not config.smoke
    rows: list[Row] = []
    folder = tempfile.mkdtemp(prefix="livedb-bench-shared-")
    postgres = _Postgres()
    try:
        embedded = _embedded_commits(folder, seconds)
        embedded_delays = _embedded_latency(folder, commits)
        engines: list[tuple[str, Any]] = [("sqlite", None)]
        if postgres.url:
            engines.append(("postgres", postgres))
        for name, server in engines:
            per_process: dict[int, float] = {}
            for processes in (1, 2, 4):
                target = ({"url": server.fresh()} if server is not None else
                          {"path": os.path.join(folder, f"c{processes}.livedb"),
                           "shared": True})
                per_process[processes] = spent = _commits(target, processes, seconds)
                scaling = processes == 4 and name == "postgres"
                figures: dict[str, float] = {"livedb": spent, "embedded 1 process": embedded}
                if processes > 1:
                    figures[f"{name} 1 process"] = per_process[1]
                rows.append(Row(
                    f"shared-{name}-commits-{processes}",
                    f"shared {name}: commits, {processes} process{'es' * (processes > 1)}",
                    figures,
                    baseline=f"{name} 1 process" if processes > 1 else "embedded 1 process",
                    target=SCALE_TARGET if scaling and judge else None,
                    detail=f"{1 / spent:,.0f} commits/s ({1 / embedded:,.0f} embedded)",
                    extra={"commits_per_second": 1 / spent}))
            target = ({"url": server.fresh()} if server is not None else
                      {"path": os.path.join(folder, "live.livedb"), "shared": True})
            delays = _latency(target, commits)
            p50, p99 = _percentile(delays, 0.5), _percentile(delays, 0.99)
            limit = POSTGRES_P99 if server is not None else SQLITE_P99
            rows.append(Row(
                f"shared-{name}-latency", f"shared {name}: commit in A to callback in B",
                {"livedb": p99, "p99 target": limit,
                 "embedded 1 process": _percentile(embedded_delays, 0.99)},
                baseline="p99 target", target=1.0 if judge else None,
                detail=f"p99 (the livedb column) {p99 * 1e3:.2f} ms, p50 {p50 * 1e3:.2f} ms "
                       f"over {len(delays):,} commits; embedded p99 "
                       f"{_percentile(embedded_delays, 0.99) * 1e3:.3f} ms",
                extra={"p50": p50, "p99": p99}))
    finally:
        postgres.close()
        shutil.rmtree(folder, ignore_errors=True)
    return rows
