"""Live-query workloads: what a commit costs with subscriptions around.

(a) `affected`: single-insert commits into one channel watched by 1, 10 and 100 distinct
live "latest 20 in the channel" queries (distinct args, so none share an execution):
every commit changes every result, so each affected query re-runs and calls back once.
The other engines do what an application holding the same live results must do after
its insert: re-run exactly those queries, compare with the last result, and call back
on a change (sqlite3, apsw and msgspec re-select and decode, the dict floor copies).
(b) `unaffected`: single-insert commits into a channel nobody watches, with 100 and
10,000 live queries on other channels, against the same commits with none (target:
10,000 within 1.2x of none). The ratio is livedb against livedb; a commit must not pay
for subscriptions it does not touch.
(c) `fanout`: 2,000 live "latest 20 in channel c" queries over 2,000 channels; each
commit inserts into one random channel. livedb re-runs only the affected query; the
sqlite3 baseline is what an app without read sets must do: re-run every live query.

Re-runs are counted by the callbacks received (and by `db.stats()["reruns"]` where the
database reports it); a wrong count fails the run.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from livedb import Database, query, v

from .core import engine_figures
from .fixtures import (
    SCHEMA,
    SQL_INSERT,
    SQL_LATEST,
    DictFloor,
    Sql,
    channel_name,
    insert_message,
    latest_in_channel,
    livedb_load,
    sql_factories,
    sqlite_engine,
)
from .harness import Config, Prepare, Row, Run, best_times, check, workload

SEED = 7
WATCHED = "c0"


@query(args={"channel": v.string(), "viewer": v.int64()})
def latest_for_viewer(ctx: Any, channel: str, viewer: int) -> list[dict[str, Any]]:
    """The 20 newest messages of a channel, as one viewer's own live query."""
    return (ctx.db.query("messages")
            .with_index("by_channel", lambda q: q.eq("channel", channel))
            .order("desc").take(20))


def _reruns(db: Database) -> int | None:
    """The database's own re-run counter, when its stats report one."""
    value = db.stats().get("reruns")
    return value if isinstance(value, int) else None


def _live_database(docs: int, channels: int, watched: int) -> tuple[Database, list[list[Any]]]:
    """A database of `docs` messages with `watched` live latest-20 queries, one a channel."""
    db = Database(SCHEMA)
    livedb_load(db, docs, channels)
    seen: list[list[Any]] = []
    for number in range(watched):
        box: list[Any] = []
        db.subscribe(latest_in_channel, {"channel": channel_name(number)}, box.append)
        seen.append(box)
    return db, seen


@workload("affected", "commit, affected subs")
def affected(config: Config) -> list[Row]:
    """Commits each of which changes the result of 1, 10 or 100 live queries."""
    plans = ((1, 20), (10, 10), (100, 3)) if config.smoke else \
        ((1, 1_000), (10, 300), (100, 50))
    return [_affected_row(config, watchers, commits) for watchers, commits in plans]


def _affected_row(config: Config, watchers: int, commits: int) -> Row:
    """One row of `affected`: `commits` inserts, each re-running `watchers` queries."""
    docs = 500 if config.smoke else 20_000
    channels = 100

    opened: list[Database] = []

    def livedb_side() -> Prepare:
        db = Database(SCHEMA)
        opened.append(db)
        livedb_load(db, docs, channels)
        boxes: list[list[Any]] = []
        for viewer in range(watchers):
            box: list[Any] = []
            db.subscribe(latest_for_viewer, {"channel": WATCHED, "viewer": viewer},
                         box.append)
            boxes.append(box)
        counter = iter(range(10**9))

        def run() -> int:
            before_calls = sum(len(box) for box in boxes)
            before_reruns = _reruns(db)
            mutate = db.mutation
            for _ in range(commits):
                mutate(insert_message, {"channel": WATCHED, "body": "live",
                                        "n": next(counter)})
            calls = sum(len(box) for box in boxes) - before_calls
            check(calls == watchers * commits,
                  f"affected: {calls} callbacks for {commits} commits under "
                  f"{watchers} subscriptions")
            reruns = _reruns(db)
            if reruns is not None and before_reruns is not None:
                check(reruns - before_reruns == watchers * commits,
                      f"affected: {reruns - before_reruns} re-runs for {commits} commits "
                      f"under {watchers} subscriptions")
            for box in boxes:
                del box[:-1]
            return commits

        return lambda: run

    def sql_side(make: Callable[[], Sql]) -> Prepare:
        engine = make()
        engine.insert_many(docs, channels)
        results: list[Any] = [engine.latest(WATCHED) for _ in range(watchers)]
        box: list[Any] = []

        def run() -> int:
            conn, execute, loads, dumps = engine.conn, engine.conn.execute, \
                engine.loads, engine.dumps
            for n in range(commits):
                with conn:
                    execute(SQL_INSERT, (WATCHED, dumps(
                        {"channel": WATCHED, "body": "live", "n": n})))
                for k in range(watchers):
                    latest = [loads(d) for (d,) in execute(SQL_LATEST, (WATCHED,))]
                    if latest != results[k]:
                        results[k] = latest
                        box.append(latest)
            check(len(box) == watchers * commits,
                  f"affected ({engine.name}): {len(box)} callbacks")
            box.clear()
            return commits

        return lambda: run

    def dict_side() -> Prepare:
        floor = DictFloor()
        floor.insert_many(docs, channels)
        results: list[Any] = [floor.latest(WATCHED) for _ in range(watchers)]
        box: list[Any] = []

        def run() -> int:
            insert, stored, by_channel = floor.insert, floor.docs, floor.by_channel
            for n in range(commits):
                insert({"channel": WATCHED, "body": "live", "n": n})
                for k in range(watchers):
                    latest = [stored[i].copy() for i in reversed(by_channel[WATCHED][-20:])]
                    if latest != results[k]:
                        results[k] = latest
                        box.append(latest)
            check(len(box) == watchers * commits, f"affected (dict): {len(box)} callbacks")
            box.clear()
            return commits

        return lambda: run

    sql = sql_factories()
    names = ["livedb", *(name for name, _ in sql), "dict"]
    seconds = best_times(config, livedb_side(), *(sql_side(make) for _, make in sql),
                         dict_side())
    for db in opened:
        db.close()
    return Row(
        f"affected-{watchers}", f"commit, {watchers} affected sub{'s' * (watchers > 1)}",
        engine_figures(names, seconds),
        detail=f"one insert whose commit changes {watchers} distinct live take(20) queries "
               f"({docs:,} documents): {watchers} re-run(s) and callback(s) per commit; SQL "
               f"and dict: insert, then re-run those {watchers} queries and compare",
        extra={"reruns_per_commit": float(watchers)})


@workload("unaffected", "commit, unrelated subs")
def unaffected(config: Config) -> list[Row]:
    """Single-insert commits with 0, 100 and 10,000 subscriptions that they do not affect."""
    counts = (0, 10, 100) if config.smoke else (0, 100, 10_000)
    commits = 100 if config.smoke else 5_000
    docs = 500 if config.smoke else 20_000
    current: list[Database] = []

    def side(watched: int) -> Prepare:
        def prepare() -> Run:
            for db in current:
                db.close()
            current.clear()
            db, _seen = _live_database(docs, max(counts) + 1, watched)
            current.append(db)
            doc = {"channel": "nobody-watches", "body": "x", "n": 0}

            def run() -> int:
                before = _reruns(db)
                mutate = db.mutation
                for _ in range(commits):
                    mutate(insert_message, doc)
                after = _reruns(db)
                check(after == before, "an unrelated commit re-ran a live query")
                check(all(len(box) == 1 for box in _seen),
                      "an unrelated commit called a subscription back")
                return commits

            return run

        return prepare

    seconds = best_times(config, *(side(watched) for watched in counts))
    for db in current:
        db.close()
    base = seconds[0]
    rows = []
    for watched, cost in zip(counts[1:], seconds[1:], strict=True):
        last = watched == counts[-1]
        rows.append(Row(
            f"unaffected-{watched}", f"commit, {watched:,} unrelated subs",
            {"livedb": cost, "no subscriptions": base}, baseline="no subscriptions",
            target=1.2 if last else None,
            detail=f"single-insert commits into a channel no live query reads, with "
                   f"{watched:,} live take(20) queries on other channels ({docs:,} "
                   f"documents), vs the same commits with none ({base * 1e6:.1f} us)"))
    return rows


@workload("fanout", "fan-out: live latest-20 per channel")
def fanout(config: Config) -> list[Row]:
    """Commits into random channels under 2,000 live queries (one per channel)."""
    channels = 50 if config.smoke else 2_000
    docs = 2_000 if config.smoke else 100_000
    commits = 50 if config.smoke else 2_000
    sqlite_commits = 3 if config.smoke else 10
    rng = random.Random(SEED)
    targets = [channel_name(rng.randrange(channels)) for _ in range(commits)]
    reruns_per_commit: list[float] = []

    def livedb_side() -> Run:
        db, seen = _live_database(docs, channels, channels)
        calls_before = sum(len(box) for box in seen)

        def run() -> int:
            before = _reruns(db)
            for n, channel in enumerate(targets):
                db.mutation(insert_message, {"channel": channel, "body": "live", "n": n})
            callbacks = sum(len(box) for box in seen) - calls_before
            check(callbacks == commits, f"fan-out: {callbacks} callbacks for {commits} commits")
            after = _reruns(db)
            reruns = callbacks if after is None or before is None else after - before
            reruns_per_commit.append(reruns / commits)
            return commits

        return run

    def sqlite_side() -> Run:
        engine = sqlite_engine()
        engine.insert_many(docs, channels)
        names = [channel_name(number) for number in range(channels)]
        results: dict[str, Any] = {name: engine.latest(name) for name in names}
        conn = engine.conn

        def run() -> int:
            for n, channel in enumerate(targets[:sqlite_commits]):
                with conn:
                    conn.execute(SQL_INSERT, (channel, json.dumps(
                        {"channel": channel, "body": "live", "n": n})))
                for name in names:
                    latest = engine.latest(name)
                    if latest != results[name]:
                        results[name] = latest
            return sqlite_commits

        return run

    livedb_cost, sqlite_cost = best_times(config, livedb_side, sqlite_side)
    reruns = max(reruns_per_commit)
    check(reruns == 1, f"fan-out: {reruns:g} re-runs per commit, expected 1")
    return [Row("fanout", "fan-out: live latest-20 per channel",
                {"livedb": livedb_cost, "sqlite3": sqlite_cost},
                target=None if config.smoke else 0.001,
                detail=f"{channels:,} channels and live queries, {docs:,} messages; per commit "
                       f"incl. re-run and callback; {reruns:g} re-run per commit; sqlite3 "
                       f"re-runs all {channels:,} queries after each insert",
                extra={"reruns_per_commit": reruns})]
