"""A live dashboard (Textual): counts and latest events per category, as a cron makes them.

    pip install ".[textual]" && python examples/dashboard.py [--db PATH] [--every SECONDS]

A cron runs `generate` every second (a background scheduler thread commits it); each
event bumps its category's counter in the same transaction, and a "deploy started"
schedules its own "deploy finished" a few seconds later. Every card is a live query of
one category: it re-runs only when that category changes, and reaches the screen through
the Textual dispatcher. Press `e` to add an event by hand. Events live in a file
(default: the user's data directory), so the counts carry on after a restart.
"""

from __future__ import annotations

import argparse
import os
import random
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.containers import Grid
from textual.widgets import Footer, Header, Static

from livedb import Crons, Database, define_schema, define_table, mutation, query, v
from livedb.ui import textual_dispatch

CATEGORIES = ("orders", "signups", "errors", "deploys")
DEPLOY_SECONDS = 3.0

schema = define_schema({
    "events": define_table({"category": v.string(), "message": v.string()})
        .index("by_category", ["category"]),
    "counters": define_table({"category": v.string(), "count": v.int64()})
        .index("by_category", ["category"]),
})

_MESSAGES = {
    "orders": ["order #{n} paid", "order #{n} shipped", "order #{n} refunded"],
    "signups": ["user{n}@example.com joined", "user{n}@example.com verified"],
    "errors": ["timeout talking to payments ({n})", "disk {n}% full", "retry storm ({n})"],
    "deploys": ["deploy v1.{n} started"],
}


def _record(ctx: Any, category: str, message: str) -> None:
    """Insert an event and bump its category's counter, in the caller's transaction."""
    ctx.db.insert("events", {"category": category, "message": message})
    counter = (ctx.db.query("counters")
               .with_index("by_category", lambda q: q.eq("category", category)).first())
    if counter is None:
        ctx.db.insert("counters", {"category": category, "count": 1})
    else:
        ctx.db.patch(counter["_id"], {"count": counter["count"] + 1})


@mutation(args={"category": v.string(), "message": v.string()})
def record(ctx: Any, category: str, message: str) -> None:
    _record(ctx, category, message)


@mutation(args={"seed": v.optional(v.int64())})
def generate(ctx: Any, seed: int | None = None) -> str:
    """One random event (the cron's job); a deploy schedules its own finish."""
    rng = random.Random(seed)
    category = rng.choice(CATEGORIES)
    message = rng.choice(_MESSAGES[category]).format(n=rng.randrange(10, 99))
    _record(ctx, category, message)
    if category == "deploys":
        ctx.scheduler.run_after(DEPLOY_SECONDS, record, {
            "category": "deploys", "message": message.replace("started", "finished")})
    return category


@query(args={"category": v.string()})
def summary(ctx: Any, category: str) -> dict:
    counter = (ctx.db.query("counters")
               .with_index("by_category", lambda q: q.eq("category", category)).first())
    latest = (ctx.db.query("events")
              .with_index("by_category", lambda q: q.eq("category", category))
              .order("desc").take(5))
    return {"count": 0 if counter is None else counter["count"],
            "latest": [[e["_creation_time"], e["message"]] for e in latest]}


def make_crons(every: float) -> Crons:
    crons = Crons()
    crons.interval("generate events", generate, {}, seconds=every)
    return crons


def default_path() -> Path:
    """Where events live by default: $XDG_DATA_HOME (or ~/.local/share)/livedb-examples."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                           "share")
    return Path(base) / "livedb-examples" / "dashboard.livedb"


class Card(Static):
    """One category: its count and latest events, redrawn from its live query."""

    def __init__(self, category: str) -> None:
        super().__init__("", id=category)
        self.category = category
        self.border_title = category
        self.count = 0

    def show(self, result: dict) -> None:
        self.count = result["count"]
        text = Text()
        text.append(f"{result['count']}\n", style="bold")
        for when, message in result["latest"]:
            text.append(datetime.fromtimestamp(when).strftime("%H:%M:%S "), style="dim")
            text.append(f"{message}\n")
        self.update(text)


class DashboardApp(App):
    """Four live cards over one database; a cron keeps adding events."""

    CSS = """
    Grid { grid-size: 2; grid-gutter: 1; padding: 1; }
    Card { border: round $accent; padding: 0 1; height: 1fr; }
    #errors { border: round $error; }
    """
    TITLE = "livedb dashboard"
    BINDINGS = [("e", "add_event", "Add an event"), ("q", "quit", "Quit")]

    def __init__(self, path: str | os.PathLike[str], every: float = 1.0,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.db = Database(schema, path=os.fspath(path), clock=clock, crons=make_crons(every),
                           dispatch=textual_dispatch(self))
        self.subscriptions: list[Any] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Grid():
            for category in CATEGORIES:
                yield Card(category)
        yield Footer()

    def on_mount(self) -> None:
        for card in self.query(Card):
            self.subscriptions.append(
                self.db.subscribe(summary, {"category": card.category}, card.show))

    def action_add_event(self) -> None:
        self.db.mutation(record, {"category": "errors", "message": "pressed 'e'"})

    def on_unmount(self) -> None:
        for subscription in self.subscriptions:
            subscription.unsubscribe()
        self.db.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=str(default_path()), help="database file")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between events")
    args = parser.parse_args(argv)
    Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    DashboardApp(args.db, args.every).run()


if __name__ == "__main__":
    main()
