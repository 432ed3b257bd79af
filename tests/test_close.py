"""`db.close()`: idempotent; new calls refused; running and queued work finishes; every
subscription ends and every `watch` iterator stops."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from livedb import Database, LiveDBError, define_schema, define_table, mutation, query, v

SCHEMA = define_schema({"items": define_table({"n": v.int64()})})
WAIT = 10.0


@query
def count(ctx: Any) -> int:
    return len(ctx.db.query("items").collect())


@mutation(args={"n": v.int64()})
def add(ctx: Any, n: int) -> int:
    ctx.db.insert("items", {"n": n})
    return n


@pytest.fixture(params=["memory", "disk"])
def path(request: pytest.FixtureRequest, tmp_path: Any) -> str | None:
    return None if request.param == "memory" else str(tmp_path / "app.livedb")


def test_fire_and_forget_client_mutations_all_commit_before_close(path: str | None) -> None:
    db = Database(SCHEMA, path=path)
    client = db.client()
    futures = [client.mutation(add, {"n": i}) for i in range(5)]
    db.close()
    assert [f.result(0) for f in futures] == list(range(5))
    if path is not None:
        with Database(SCHEMA, path=path) as again:
            assert again.query(count) == 5


def test_queued_client_mutations_of_several_clients_run_or_fail_loudly(
        path: str | None) -> None:
    db = Database(SCHEMA, path=path)
    clients = [db.client() for _ in range(3)]
    futures = [c.mutation(add, {"n": i}) for i in range(20) for c in clients]
    db.close()
    assert all(f.done() for f in futures), "no future is left hanging"
    assert [f.result(0) for f in futures] == [i for i in range(20) for _ in clients]


def test_a_running_mutation_finishes_and_is_kept(path: str | None) -> None:
    db = Database(SCHEMA, path=path)
    started, release = threading.Event(), threading.Event()

    @mutation
    def slow(ctx: Any) -> None:
        started.set()
        release.wait(WAIT)
        ctx.db.insert("items", {"n": 1})

    worker = threading.Thread(target=lambda: db.mutation(slow))
    worker.start()
    assert started.wait(WAIT)
    closer = threading.Thread(target=db.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive(), "close waits for the running mutation"
    with pytest.raises(LiveDBError, match="the database is closed"):
        db.query(count)
    release.set()
    worker.join(WAIT)
    closer.join(WAIT)
    assert not closer.is_alive()
    if path is not None:
        with Database(SCHEMA, path=path) as again:
            assert again.query(count) == 1


def test_every_new_call_is_refused_after_close(path: str | None) -> None:
    db = Database(SCHEMA, path=path)
    client = db.client()
    db.close()
    calls = [
        lambda: db.query(count),
        lambda: db.mutation(add, {"n": 1}),
        lambda: db.action(lambda ctx: None),
        lambda: db.subscribe(count, None, lambda r: None),
        lambda: db.watch(count),
        lambda: db.client(),
        lambda: db.store_file(b"x"),
        lambda: db.run_scheduled(),
        lambda: client.query(count),
        lambda: client.mutation(add, {"n": 1}),
        lambda: client.subscribe(count, None, lambda r: None),
    ]
    for call in calls:
        with pytest.raises(LiveDBError, match="closed"):
            call()


def test_close_is_idempotent_and_safe_from_many_threads(path: str | None) -> None:
    db = Database(SCHEMA, path=path)
    client = db.client()
    futures = [client.mutation(add, {"n": i}) for i in range(10)]
    threads = [threading.Thread(target=db.close) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert not any(t.is_alive() for t in threads)
    db.close()
    assert all(f.done() for f in futures)


def test_subscriptions_become_inactive_and_get_no_more_calls(path: str | None) -> None:
    db = Database(SCHEMA, path=path)
    seen: list[int] = []
    sub = db.subscribe(count, None, seen.append)
    client = db.client()
    client_seen: list[int] = []
    client_sub = client.subscribe(count, None, client_seen.append)
    db.mutation(add, {"n": 1})
    db.close()
    assert not sub.active
    assert not client_sub.active
    assert seen == [0, 1]
    assert client_seen == [0, 1]
    sub.unsubscribe()  # harmless after close
    assert db.stats()["subscriptions"] == 0


def test_a_watch_loop_ends_when_the_database_closes(path: str | None) -> None:
    db = Database(SCHEMA, path=path)

    async def main() -> list[int]:
        results = []
        async for n in db.watch(count):
            results.append(n)
            if n == 0:
                threading.Thread(target=db.close).start()
        return results

    assert asyncio.run(asyncio.wait_for(main(), WAIT)) == [0]


def test_a_watch_started_before_close_but_not_yet_iterated_ends(path: str | None) -> None:
    db = Database(SCHEMA, path=path)
    watch = db.watch(count)

    async def main() -> list[int]:
        first = await watch.__anext__()
        db.close()
        rest = [n async for n in watch]
        return [first, *rest]

    assert asyncio.run(asyncio.wait_for(main(), WAIT)) == [0]


def test_a_callback_may_close_the_database(path: str | None) -> None:
    db = Database(SCHEMA, path=path)
    seen: list[int] = []

    def on_update(n: int) -> None:
        seen.append(n)
        if n == 1:
            db.close()

    db.subscribe(count, None, on_update)
    db.mutation(add, {"n": 1})
    assert seen == [0, 1]
    with pytest.raises(LiveDBError, match="closed"):
        db.mutation(add, {"n": 2})
