"""Processes for the shared-database tests: a schema, its functions, and worker roles.

A worker is a real process: `python -c "import sharedkit; sharedkit.main()" ROLE JSON`
(see `spawn`), with `tests/` on its path so that scheduled functions have the same
stable name (`sharedkit:...`) in every process. Workers report on stdout, one line per
event ("ack TAG" once a mutation returned, "run N" per query execution, ...).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from livedb import (
    ConflictError,
    Crons,
    Database,
    LiveDBError,
    action,
    define_schema,
    define_table,
    mutation,
    query,
    v,
)

ROOT = Path(__file__).resolve().parent.parent

SCHEMA = define_schema({
    "accounts": define_table({"name": v.string(), "balance": v.int64()}),
    "transfers": define_table({"tag": v.string(), "amount": v.int64()}),
    "items": define_table({"round": v.int64(), "n": v.int64(), "pad": v.string()}),
    "notes": define_table({"topic": v.string(), "body": v.string()})
    .index("by_topic", ["topic"]),
    "runs": define_table({"key": v.int64()}),
    "ticks": define_table({"pid": v.int64()}),
})


@mutation(args={"n": v.int64(), "balance": v.int64()})
def open_accounts(ctx: Any, n: int, balance: int) -> list[str]:
    return [ctx.db.insert("accounts", {"name": f"a{i}", "balance": balance})
            for i in range(n)]


@mutation(args={"src": v.id("accounts"), "dst": v.id("accounts"), "amount": v.int64(),
                "tag": v.string()})
def transfer(ctx: Any, src: str, dst: str, amount: int, tag: str) -> None:
    a = ctx.db.get(src)
    b = ctx.db.get(dst)
    ctx.db.patch(src, {"balance": a["balance"] - amount})
    ctx.db.patch(dst, {"balance": b["balance"] + amount})
    ctx.db.insert("transfers", {"tag": tag, "amount": amount})


@query
def total(ctx: Any) -> int:
    return sum(a["balance"] for a in ctx.db.query("accounts").collect())


@mutation(args={"round": v.int64(), "n": v.int64()})
def put_item(ctx: Any, round: int, n: int) -> None:
    for _ in range(3):
        ctx.db.insert("items", {"round": round, "n": n, "pad": "x" * 2000})


@mutation(args={"key": v.int64()})
def run_once(ctx: Any, key: int) -> None:
    ctx.db.insert("runs", {"key": key})


@mutation(args={"n": v.int64()})
def schedule_many(ctx: Any, n: int) -> None:
    for key in range(n):
        ctx.scheduler.run_after(0, run_once, {"key": key})


@mutation
def tick(ctx: Any) -> None:
    ctx.db.insert("ticks", {"pid": os.getpid()})


@action
def hang(ctx: Any) -> None:
    print("hanging", flush=True)
    time.sleep(120)


@mutation
def schedule_hang(ctx: Any) -> str:
    return ctx.scheduler.run_after(0, hang, {})


CRONS = Crons()
CRONS.interval("tick", tick, {}, seconds=0.5)

_runs = [0]


@query(args={"topic": v.string()})
def watched(ctx: Any, topic: str) -> int:
    _runs[0] += 1
    found = ctx.db.query("notes").with_index("by_topic", lambda q: q.eq("topic", topic)).collect()
    say(f"run {_runs[0]} {len(found)}")
    return len(found)


# -- spawning ------------------------------------------------------------------------

_out = threading.Lock()


def say(line: str) -> None:
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def spawn(role: str, **args: Any) -> subprocess.Popen[str]:
    """Start a worker process for `role` with `args` (JSON)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.Popen(
        [sys.executable, "-c", "import sharedkit; sharedkit.main()", role, json.dumps(args)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env)


def main() -> None:
    role, args = sys.argv[1], json.loads(sys.argv[2])
    ROLES[role](**args)


# -- roles ---------------------------------------------------------------------------


def bank(target: dict, accounts: list[str], threads: int, transfers: int, seed: int,
         expected: int, seconds: float = 60.0, readers: int = 1) -> None:
    """Transfers between random accounts from `threads` threads, and readers checking
    that the total never changes; "ack TAG" per acknowledged transfer."""
    db = Database(SCHEMA, **target)
    stop = threading.Event()
    deadline = time.monotonic() + seconds
    problems: list[str] = []

    def work(t: int) -> None:
        rng = random.Random(seed * 100 + t)
        done = 0
        attempt = 0
        while done < transfers and time.monotonic() < deadline:
            src, dst = rng.sample(accounts, 2)
            attempt += 1
            tag = f"{os.getpid()}-{t}-{attempt}"
            try:
                db.mutation(transfer, {"src": src, "dst": dst, "amount": rng.randint(1, 9),
                                       "tag": tag})
            except ConflictError:
                say(f"conflict {tag}")
                continue
            except LiveDBError as e:
                say(f"error {type(e).__name__}: {str(e).splitlines()[0]}")
                time.sleep(0.05)
                continue
            say(f"ack {tag}")
            done += 1

    def read() -> None:
        checked = 0
        while not stop.is_set():
            try:
                found = db.query(total)
            except LiveDBError:
                time.sleep(0.01)
                continue
            checked += 1
            if found != expected:
                problems.append(f"total {found} != {expected}")
        say(f"readers {checked}")

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    checkers = [threading.Thread(target=read) for _ in range(readers)]
    for thread in workers + checkers:
        thread.start()
    for thread in workers:
        thread.join()
    stop.set()
    for thread in checkers:
        thread.join()
    for problem in problems[:5]:
        say(f"bad {problem}")
    db.close()
    say("done")


def writer(target: dict, round: int) -> None:
    """Commit items in a loop until killed: "ack ROUND N" after each commit."""
    db = Database(SCHEMA, **target)
    say("ready")
    n = 0
    while True:
        db.mutation(put_item, {"round": round, "n": n})
        say(f"ack {round} {n}")
        n += 1


def live(target: dict, topic: str) -> None:
    """Subscribe to the notes of `topic`; the query prints "run N COUNT" per execution.
    Ends when stdin closes."""
    db = Database(SCHEMA, **target)
    db.subscribe(watched, {"topic": topic}, lambda n: None)
    say("ready")
    sys.stdin.read()
    db.close()
    say("done")


def scheduler(target: dict, crons: bool = True) -> None:
    """Run the scheduler (and the crons) until stdin closes."""
    db = Database(SCHEMA, **target, crons=CRONS if crons else None)
    say("ready")
    sys.stdin.read()
    db.close()
    say("done")


ROLES = {"bank": bank, "writer": writer, "live": live, "scheduler": scheduler}
