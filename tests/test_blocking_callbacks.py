"""Callbacks run outside every lock and role of livedb: a callback may block on anything.

Each scenario subscribes with a callback that, on an update, starts some call in another
thread and waits for it (with a timeout, so a regression fails instead of hanging).
The waited-for call must complete while the callback is still blocked, and every update
must still arrive, in commit order. Every scenario runs in memory and on disk.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from livedb import Database, define_schema, define_table, mutation, query, v

SCHEMA = define_schema({
    "items": define_table({"list": v.string(), "n": v.int64()}).index("by_list", ["list"]),
    "other": define_table({"n": v.int64()}),
})
WAIT = 10.0


@query(args={"list": v.string()})
def items(ctx: Any, list: str) -> list[int]:
    return [d["n"] for d in ctx.db.query("items").with_index("by_list",
                                                             lambda q: q.eq("list", list))]


@mutation(args={"list": v.string(), "n": v.int64()})
def add(ctx: Any, list: str, n: int) -> None:
    ctx.db.insert("items", {"list": list, "n": n})


@mutation
def add_other(ctx: Any) -> None:
    ctx.db.insert("other", {"n": 1})


@pytest.fixture(params=["memory", "disk"])
def db(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    path = None if request.param == "memory" else str(tmp_path / "app.livedb")
    database = Database(SCHEMA, path=path)
    yield database
    database.close()


def _blocking_callback(work: Callable[[], Any], when: Callable[[Any], bool]
                       ) -> tuple[Callable[[Any], None], list[Any], list[bool]]:
    """A callback that, when `when(result)`, runs `work` in another thread and waits for
    it. Returns the callback, the results it saw, and whether each wait completed."""
    seen: list[Any] = []
    completed: list[bool] = []

    def on_update(result: Any) -> None:
        seen.append(result)
        if when(result):
            worker = threading.Thread(target=work, daemon=True)
            worker.start()
            worker.join(WAIT)
            completed.append(not worker.is_alive())

    return on_update, seen, completed


def test_a_callback_waits_for_a_mutation_of_an_unwatched_table(db: Database) -> None:
    on_update, seen, completed = _blocking_callback(lambda: db.mutation(add_other),
                                                    lambda r: r == [])
    db.subscribe(items, {"list": "a"}, on_update)
    assert completed == [True]
    assert seen == [[]]


def test_a_callback_waits_for_a_mutation_that_changes_its_own_query(db: Database) -> None:
    on_update, seen, completed = _blocking_callback(
        lambda: db.mutation(add, {"list": "a", "n": 1}), lambda r: r == [])
    db.subscribe(items, {"list": "a"}, on_update)
    assert completed == [True]
    assert seen == [[], [1]], "the update the other thread made arrives after the callback"


def test_a_callback_waits_for_a_mutation_that_changes_another_subscription(
        db: Database) -> None:
    other: list[Any] = []
    db.subscribe(items, {"list": "b"}, other.append)
    on_update, seen, completed = _blocking_callback(
        lambda: db.mutation(add, {"list": "b", "n": 7}), lambda r: r == [1])
    db.subscribe(items, {"list": "a"}, on_update)
    db.mutation(add, {"list": "a", "n": 1})
    assert completed == [True]
    assert seen == [[], [1]]
    assert other == [[], [7]]


def test_a_callback_waits_for_a_subscribe_in_another_thread(db: Database) -> None:
    subscribed: list[Any] = []

    def subscribe_elsewhere() -> None:
        subscribed.append(db.subscribe(items, {"list": "c"}, lambda r: None))

    on_update, _seen, completed = _blocking_callback(subscribe_elsewhere, lambda r: True)
    db.subscribe(items, {"list": "a"}, on_update)
    assert completed == [True]
    assert subscribed and subscribed[0].active


def test_a_callback_waits_for_an_unsubscribe_in_another_thread(db: Database) -> None:
    victim = db.subscribe(items, {"list": "a"}, lambda r: None)
    on_update, _seen, completed = _blocking_callback(victim.unsubscribe, lambda r: True)
    db.subscribe(items, {"list": "z"}, on_update)
    assert completed == [True]
    assert not victim.active


def test_a_callback_waits_for_a_query_in_another_thread(db: Database) -> None:
    got: list[Any] = []
    on_update, _seen, completed = _blocking_callback(
        lambda: got.append(db.query(items, {"list": "a"})), lambda r: r == [1])
    db.subscribe(items, {"list": "a"}, on_update)
    db.mutation(add, {"list": "a", "n": 1})
    assert completed == [True]
    assert got == [[1]]


def test_a_callback_waits_for_a_client_mutations_future(db: Database) -> None:
    client = db.client()
    futures: list[Any] = []

    def via_client() -> None:
        future = client.mutation(add, {"list": "a", "n": 2})
        futures.append(future)
        future.result(WAIT)

    on_update, seen, completed = _blocking_callback(via_client, lambda r: r == [])
    db.subscribe(items, {"list": "a"}, on_update)
    assert completed == [True]
    assert futures[0].result() is None
    assert seen == [[], [2]]
    client.close()


def test_a_client_callback_waits_for_the_same_clients_future(db: Database) -> None:
    client = db.client()
    waited: list[bool] = []
    seen: list[Any] = []

    def on_update(result: Any) -> None:
        seen.append(result)
        if result == []:
            future = client.mutation(add, {"list": "a", "n": 3})
            try:
                future.result(WAIT)
                waited.append(True)
            except Exception:  # noqa: BLE001 - a timeout is the failure under test
                waited.append(False)

    client.subscribe(items, {"list": "a"}, on_update)
    assert waited == [True]
    assert client.query(items, {"list": "a"}) == [3]
    assert seen[-1] == [3]
    client.close()


def test_a_callback_waits_for_another_threads_callback_chain(db: Database) -> None:
    """Two subscriptions whose callbacks each wait for a mutation the other one's thread
    makes: neither commit may wait for the other's callback."""
    seen_a: list[Any] = []
    done = threading.Event()

    def on_b(result: Any) -> None:
        if result == [5]:
            worker = threading.Thread(target=lambda: db.mutation(add, {"list": "a", "n": 6}))
            worker.start()
            worker.join(WAIT)
            if not worker.is_alive():
                done.set()

    db.subscribe(items, {"list": "a"}, seen_a.append)
    db.subscribe(items, {"list": "b"}, on_b)
    writer = threading.Thread(target=lambda: db.mutation(add, {"list": "b", "n": 5}))
    writer.start()
    writer.join(WAIT)
    assert not writer.is_alive()
    assert done.wait(WAIT)
    assert seen_a == [[], [6]]


def test_mutations_of_other_threads_go_on_while_a_callback_is_stuck(db: Database) -> None:
    release = threading.Event()
    stuck = threading.Event()
    seen: list[Any] = []

    def on_update(result: Any) -> None:
        seen.append(result)
        if result == [1]:
            stuck.set()
            release.wait(WAIT)

    db.subscribe(items, {"list": "a"}, on_update)
    blocked = threading.Thread(target=lambda: db.mutation(add, {"list": "a", "n": 1}))
    blocked.start()
    assert stuck.wait(WAIT)
    others = threading.Thread(target=lambda: [db.mutation(add, {"list": "a", "n": n})
                                              for n in range(2, 12)])
    others.start()
    others.join(WAIT)
    assert not others.is_alive(), "mutations must not wait for a stuck callback"
    assert db.query(items, {"list": "a"}) == list(range(1, 12))
    assert seen == [[], [1]], "later updates wait behind the stuck callback, in order"
    release.set()
    blocked.join(WAIT)
    assert seen == [[], *[list(range(1, n + 1)) for n in range(1, 12)]]
