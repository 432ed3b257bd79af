"""The Textual dashboard example, headless: a cron (on a manual clock, run from another
thread) generates events, and every card shows its category's count and latest events."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from textual.pilot import Pilot

from examples.dashboard import CATEGORIES, Card, DashboardApp, summary


async def until(pilot: Pilot, check, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(400):
        if check():
            return
        await pilot.pause(0.01)
    raise AssertionError(f"never happened: {what}")


def cards(app: DashboardApp) -> dict[str, Card]:
    return {card.category: card for card in app.query(Card)}


def expected(app: DashboardApp) -> dict[str, dict]:
    return {c: app.db.query(summary, {"category": c}) for c in CATEGORIES}


def test_cards_follow_the_cron_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "dashboard.livedb"
    now = [1_000_000.0]
    totals: dict[str, int] = {}

    def tick(app: DashboardApp, seconds: int) -> threading.Thread:
        def run() -> None:
            for _ in range(seconds):
                now[0] += 1.0
                app.db.run_scheduled()
        thread = threading.Thread(target=run)
        thread.start()
        return thread

    async def first() -> None:
        app = DashboardApp(path, every=1.0, clock=lambda: now[0])
        async with app.run_test(size=(120, 40)) as pilot:
            shown = cards(app)
            await until(pilot, lambda: all("0" in str(c.content) for c in shown.values()),
                        "four empty cards")
            ticker = tick(app, 12)
            ticker.join(10)
            assert not ticker.is_alive()
            want = expected(app)
            assert sum(s["count"] for s in want.values()) >= 12
            await until(pilot, lambda: all(shown[c].count == want[c]["count"]
                                           for c in CATEGORIES), "the counts")
            for category, result in want.items():
                content = str(shown[category].content)
                assert content.splitlines()[0] == str(result["count"])
                for _when, message in result["latest"]:
                    assert message in content
            errors = shown["errors"].count
            await pilot.press("e")
            await until(pilot, lambda: shown["errors"].count == errors + 1, "a pressed event")
            assert "pressed 'e'" in str(shown["errors"].content)
            totals.update({c: card.count for c, card in shown.items()})

    async def second() -> None:
        app = DashboardApp(path, every=1.0, clock=lambda: now[0])
        async with app.run_test(size=(120, 40)) as pilot:
            shown = cards(app)
            await until(pilot, lambda: {c: card.count for c, card in shown.items()} == totals,
                        "the counts after a restart")

    asyncio.run(first())
    asyncio.run(second())


def test_a_card_is_redrawn_only_for_its_own_category(tmp_path: Path) -> None:
    from examples.dashboard import record

    async def main() -> None:
        app = DashboardApp(tmp_path / "dashboard.livedb", clock=lambda: 5_000_000.0)
        async with app.run_test(size=(120, 40)) as pilot:
            shown = cards(app)
            redraws = {c: 0 for c in CATEGORIES}
            for category, card in shown.items():
                original = card.show

                def counting(result: dict, category: str = category, original=original) -> None:
                    redraws[category] += 1
                    original(result)

                card.show = counting  # type: ignore[method-assign]
            for sub in app.subscriptions:
                sub.unsubscribe()
            app.subscriptions = [app.db.subscribe(summary, {"category": c}, shown[c].show)
                                 for c in CATEGORIES]
            await until(pilot, lambda: all(redraws.values()), "first results")
            writer = threading.Thread(target=lambda: [
                app.db.mutation(record, {"category": "orders", "message": f"order {i}"})
                for i in range(5)])
            writer.start()
            writer.join(10)
            await until(pilot, lambda: shown["orders"].count == 5, "five orders")
            assert redraws["errors"] == redraws["signups"] == redraws["deploys"] == 1
            assert 2 <= redraws["orders"] <= 6

    asyncio.run(main())
