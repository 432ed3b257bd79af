"""Live-query workloads: commit cost next to unrelated subscriptions, and fan-out.

(a) `unaffected`: single-insert commits into a channel nobody watches, with 0, 100 and
10,000 live "latest 20" queries on other channels; the commit cost must not grow with
them (target: 10,000 within 2x of 0).
(b) `fanout`: 2,000 live "latest 20 in channel c" queries over 2,000 channels; each commit
inserts into one random channel. livedb re-runs only the affected query; the sqlite3
baseline is what an app without read sets must do: re-run every live query after each
commit.
"""

from __future__ import annotations

import json
import random
from typing import Any

from livedb import Database

from .fixtures import (
    SCHEMA,
    SQL_INSERT,
    channel_name,
    insert_many,
    insert_message,
    latest_in_channel,
    sqlite_connect,
    sqlite_insert_many,
    sqlite_latest,
)
from .harness import Config, Row, Run, best_rates, workload

SEED = 7


def _live_database(docs: int, channels: int, watched: int) -> tuple[Database, list[list]]:
    """A database of `docs` messages with `watched` live latest-20 queries, one a channel."""
    db = Database(SCHEMA)
    db.mutation(insert_many, {"count": docs, "channels": channels})
    seen: list[list] = []
    for number in range(watched):
        box: list = []
        db.subscribe(latest_in_channel, {"channel": channel_name(number)}, box.append)
        seen.append(box)
    return db, seen


@workload("unaffected", "commit, unrelated subs")
def unaffected(config: Config) -> list[Row]:
    """Single-insert commits with 0, 100 and 10,000 subscriptions that they do not affect."""
    counts = (0, 10, 100) if config.smoke else (0, 100, 10_000)
    commits = 100 if config.smoke else 5_000
    docs = 500 if config.smoke else 20_000
    sides = []
    for watched in counts:
        def prepare(watched: int = watched) -> Run:
            db, _seen = _live_database(docs, max(counts) + 1, watched)
            doc = {"channel": "nobody-watches", "body": "x", "n": 0}

            def run() -> int:
                for _ in range(commits):
                    db.mutation(insert_message, doc)
                if db.stats()["reruns"]:
                    raise AssertionError("an unrelated commit re-ran a live query")
                return commits

            return run

        sides.append(prepare)
    rates = best_rates(config, *sides)
    base = rates[0]
    rows = []
    for watched, rate in zip(counts, rates, strict=True):
        slowdown = base / rate
        rows.append(Row(f"commit, unrelated subs ({watched:,})", rate, None,
                        detail=f"{1e6 / rate:.1f} us per commit, {slowdown:.2f}x the cost "
                               f"with none (target: {counts[-1]:,} within 2x)"))
    return rows


@workload("fanout", "fan-out: live latest-20 per channel")
def fanout(config: Config) -> list[Row]:
    """Commits into random channels under 2,000 live queries (one per channel)."""
    channels = 50 if config.smoke else 2_000
    docs = 2_000 if config.smoke else 100_000
    commits = 50 if config.smoke else 2_000
    sqlite_commits = 3 if config.smoke else 20
    rng = random.Random(SEED)
    targets = [channel_name(rng.randrange(channels)) for _ in range(commits)]
    reruns_per_commit: list[float] = []

    def livedb_side() -> Run:
        db, seen = _live_database(docs, channels, channels)
        calls_before = sum(len(box) for box in seen)

        def run() -> int:
            before = db.stats()["reruns"]
            for n, channel in enumerate(targets):
                db.mutation(insert_message, {"channel": channel, "body": "live", "n": n})
            reruns = db.stats()["reruns"] - before
            callbacks = sum(len(box) for box in seen) - calls_before
            if callbacks != commits:
                raise AssertionError(f"{callbacks} callbacks for {commits} commits")
            reruns_per_commit.append(reruns / commits)
            return commits

        return run

    def sqlite_side() -> Run:
        conn = sqlite_connect()
        sqlite_insert_many(conn, docs, channels)
        names = [channel_name(number) for number in range(channels)]
        results: dict[str, Any] = {name: sqlite_latest(conn, name) for name in names}

        def run() -> int:
            for n, channel in enumerate(targets[:sqlite_commits]):
                with conn:
                    conn.execute(SQL_INSERT, (channel, json.dumps(
                        {"channel": channel, "body": "live", "n": n})))
                for name in names:
                    latest = sqlite_latest(conn, name)
                    if latest != results[name]:
                        results[name] = latest
            return sqlite_commits

        return run

    livedb_rate, sqlite_rate = best_rates(config, livedb_side, sqlite_side)
    reruns = max(reruns_per_commit)
    return [Row("fan-out: live latest-20 per channel", livedb_rate, sqlite_rate,
                target=1000.0 if not config.smoke else None,
                detail=f"{channels:,} channels and live queries, {docs:,} messages; "
                       f"{1e6 / livedb_rate:.0f} us per commit incl. re-run and callback; "
                       f"{reruns:g} re-runs per commit (must be 1); sqlite3 re-runs all "
                       f"{channels:,} queries: {1e3 / sqlite_rate:.1f} ms per commit")]
