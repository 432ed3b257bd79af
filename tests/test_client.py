"""The client layer for UIs: identity, ordered mutations, optimistic updates, live pages."""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager

import pytest

from livedb import (
    AppError,
    Database,
    LiveDBError,
    UserIdentity,
    ValidationError,
    define_schema,
    define_table,
    mutation,
    query,
    v,
)

SCHEMA = define_schema({
    "todos": define_table({"board": v.string(), "text": v.string()})
    .index("by_board", ["board"]),
    "lists": define_table({"items": v.array(v.int64())}),
    "messages": define_table({"n": v.int64()}).index("by_n", ["n"]),
    "gates": define_table({"name": v.string()}),
})

TIMEOUT = 5


# -- functions -----------------------------------------------------------------------------

@query(args={})
def whoami(ctx):
    identity = ctx.auth.get_user_identity()
    return None if identity is None else identity.subject


@query(args={})
def mine(ctx):
    """The caller's own todos (its board is its subject)."""
    identity = ctx.auth.get_user_identity()
    board = "" if identity is None else identity.subject
    return [d["text"] for d in ctx.db.query("todos")
            .with_index("by_board", lambda q: q.eq("board", board)).collect()]


@mutation(args={"text": v.string()})
def add_mine(ctx, text):
    identity = ctx.auth.get_user_identity()
    return ctx.db.insert("todos", {"board": identity.subject, "text": text})


@query(args={"board": v.string()})
def list_todos(ctx, board):
    return [d["text"] for d in ctx.db.query("todos")
            .with_index("by_board", lambda q: q.eq("board", board)).collect()]


@mutation(args={"board": v.string(), "text": v.string()})
def add_todo(ctx, board, text):
    return ctx.db.insert("todos", {"board": board, "text": text})


@mutation(args={"board": v.string(), "text": v.string()})
def add_todo_then_fail(ctx, board, text):
    ctx.db.insert("todos", {"board": board, "text": text})
    raise AppError({"code": "rejected", "text": text})


@mutation(args={"items": v.array(v.int64())})
def new_list(ctx, items):
    return ctx.db.insert("lists", {"items": items})


@mutation(args={"list_id": v.id("lists"), "x": v.int64()})
def append(ctx, list_id, x):
    doc = ctx.db.get(list_id)
    ctx.db.patch(list_id, {"items": doc["items"] + [x]})
    return x


@query(args={"list_id": v.id("lists")})
def get_items(ctx, list_id):
    return ctx.db.get(list_id)["items"]


@query(args={})
def gates(ctx):
    return [d["name"] for d in ctx.db.query("gates").collect()]


@mutation(args={"name": v.string()})
def open_gate(ctx, name):
    return ctx.db.insert("gates", {"name": name})


@query(args={})
def broken(ctx):
    raise AppError("broken")


@query(args={"pagination_opts": v.any()})
def newest_messages(ctx, pagination_opts):
    return ctx.db.query("messages").order("desc").paginate(pagination_opts)


@query(args={"pagination_opts": v.any()})
def messages_by_n(ctx, pagination_opts):
    return ctx.db.query("messages").with_index("by_n").paginate(pagination_opts)


@mutation(args={"n": v.int64()})
def add_message(ctx, n):
    return ctx.db.insert("messages", {"n": n})


@mutation(args={"ids": v.array(v.id("messages"))})
def delete_messages(ctx, ids):
    for doc_id in ids:
        ctx.db.delete(doc_id)


# -- helpers -------------------------------------------------------------------------------

def optimistic_add(store, args):
    """The optimistic twin of add_todo: the text, marked pending with a '*'."""
    current = store.get_query(list_todos, {"board": args["board"]})
    if current is not None:
        store.set_query(list_todos, {"board": args["board"]}, current + [args["text"] + "*"])


class Recorder:
    """An on_update callback that records every value it is given."""

    def __init__(self):
        self.values = []
        self._lock = threading.Lock()

    def __call__(self, value):
        with self._lock:
            self.values.append(value)

    @property
    def last(self):
        with self._lock:
            return self.values[-1]


@contextmanager
def worker_held(client):
    """Keep the client's mutation worker busy (inside a mutation) until the block ends."""
    started, release = threading.Event(), threading.Event()

    def hold(ctx):
        started.set()
        release.wait(TIMEOUT)

    future = client.mutation(hold)
    assert started.wait(TIMEOUT)
    try:
        yield
    finally:
        release.set()
        future.result(TIMEOUT)


def wait_until(predicate, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


@pytest.fixture
def db():
    return Database(SCHEMA)


@pytest.fixture
def threaded_db():
    """A database whose callbacks go through a queue drained by a consumer thread."""
    jobs = queue.Queue()
    database = Database(SCHEMA, dispatch=jobs.put)
    stop = object()

    def consume():
        while True:
            job = jobs.get()
            if job is stop:
                return
            job()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    yield database
    jobs.put(stop)
    consumer.join(TIMEOUT)


class ManualDispatch:
    """A dispatch whose queued callbacks run only when the test says so."""

    def __init__(self):
        self.jobs = queue.SimpleQueue()

    def __call__(self, job):
        self.jobs.put(job)

    def drain(self):
        ran = 0
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return ran
            job()
            ran += 1


ALICE = UserIdentity("alice")
BOB = UserIdentity("bob")


# -- identity ------------------------------------------------------------------------------

def test_client_query_and_subscribe_run_with_the_clients_identity(db):
    client = db.client(identity=ALICE)
    assert client.query(whoami) == "alice"
    seen = Recorder()
    subscription = client.subscribe(whoami, {}, seen)
    assert seen.values == ["alice"]
    assert subscription.result == "alice"
    assert db.client().query(whoami) is None
    anonymous = Recorder()
    db.client().subscribe(whoami, {}, anonymous)
    assert anonymous.values == [None]


def test_clients_with_different_identities_see_their_own_results(db):
    alice, bob = db.client(identity=ALICE), db.client(identity=BOB)
    alice_seen, bob_seen = Recorder(), Recorder()
    alice.subscribe(mine, {}, alice_seen)
    bob.subscribe(mine, {}, bob_seen)
    assert alice_seen.values == [[]] and bob_seen.values == [[]]

    alice.mutation(add_mine, {"text": "a1"}).result(TIMEOUT)
    assert alice_seen.values == [[], ["a1"]]
    assert bob_seen.values == [[]]

    bob.mutation(add_mine, {"text": "b1"}).result(TIMEOUT)
    assert bob_seen.values == [[], ["b1"]]
    assert alice_seen.values == [[], ["a1"]]

    assert alice.query(mine) == ["a1"]
    assert bob.query(mine) == ["b1"]
    # The mutations ran with the identity of the client that sent them.
    assert db.query(list_todos, {"board": "alice"}) == ["a1"]
    assert db.query(list_todos, {"board": "bob"}) == ["b1"]


def test_client_token_without_password_auth_is_an_error(db):
    with pytest.raises(LiveDBError):
        db.client(token="not-a-session")


def test_client_subscribe_to_a_raising_query_raises_like_db_subscribe(db):
    with pytest.raises(AppError):
        db.subscribe(broken, {}, lambda result: None)
    client = db.client()
    with pytest.raises(AppError):
        client.subscribe(broken, {}, lambda result: None)


def test_client_on_error_is_not_repeated_for_unrelated_optimistic_updates(db):
    client = db.client()
    errors = []
    client.subscribe(broken, {}, lambda result: None, on_error=errors.append)
    assert len(errors) == 1 and errors[0].data == "broken"
    client.subscribe(list_todos, {"board": "a"}, lambda result: None)
    client.mutation(add_todo, {"board": "a", "text": "x"},
                    optimistic_update=optimistic_add).result(TIMEOUT)
    # Nothing about the broken query changed: its on_error is not called again.
    assert len(errors) == 1


# -- mutations: order and when futures resolve -----------------------------------------------

def test_client_mutation_returns_a_future_with_the_result(db):
    client = db.client()
    future = client.mutation(add_todo, {"board": "b", "text": "t"})
    assert isinstance(future, Future)
    doc_id = future.result(TIMEOUT)
    assert doc_id.table == "todos"
    assert db.query(list_todos, {"board": "b"}) == ["t"]


def test_client_mutations_run_in_submission_order(db):
    list_id = db.mutation(new_list, {"items": []})
    client = db.client()
    seen = Recorder()
    client.subscribe(get_items, {"list_id": list_id}, seen)
    futures = [client.mutation(append, {"list_id": list_id, "x": i}) for i in range(50)]
    assert [f.result(TIMEOUT) for f in futures] == list(range(50))
    assert db.query(get_items, {"list_id": list_id}) == list(range(50))
    # Every value a subscriber saw is a prefix of the submission order, growing each time.
    assert seen.values[0] == []
    assert seen.values[-1] == list(range(50))
    lengths = [len(value) for value in seen.values]
    assert lengths == sorted(set(lengths))
    assert all(value == list(range(len(value))) for value in seen.values)


def _check_future_resolves_after_subscribers_saw_it(database):
    list_id = database.mutation(new_list, {"items": []})
    client = database.client()
    seen = Recorder()
    client.subscribe(get_items, {"list_id": list_id}, seen)
    wait_until(lambda: seen.values)  # the first result (through the dispatch, if any)
    at_resolution = {}

    def on_done(future, i):
        at_resolution[i] = seen.last

    futures = []
    for i in range(30):
        future = client.mutation(append, {"list_id": list_id, "x": i})
        future.add_done_callback(lambda f, i=i: on_done(f, i))
        futures.append(future)
    for i, future in enumerate(futures):
        assert future.result(TIMEOUT) == i
        # When result() returns, the subscriber has already been shown the write.
        assert i in seen.last
    for i in range(30):
        assert at_resolution[i][:i + 1] == list(range(i + 1))
    client.close()


def test_future_resolves_after_subscribers_show_the_write_default_dispatch(db):
    _check_future_resolves_after_subscribers_saw_it(db)


def test_future_resolves_after_subscribers_show_the_write_queue_dispatch(threaded_db):
    _check_future_resolves_after_subscribers_saw_it(threaded_db)


def test_future_waits_for_the_dispatch_to_deliver_the_write():
    dispatch = ManualDispatch()
    database = Database(SCHEMA, dispatch=dispatch)
    client = database.client()
    seen = Recorder()
    client.subscribe(list_todos, {"board": "q"}, seen)
    assert seen.values == []  # nothing is delivered until the dispatch runs it
    dispatch.drain()
    assert seen.values == [[]]

    future = client.mutation(add_todo, {"board": "q", "text": "x"})
    wait_until(lambda: database.query(list_todos, {"board": "q"}) == ["x"])
    time.sleep(0.05)
    # Committed, but the subscriber has not been shown it yet: the future must wait.
    assert seen.values == [[]]
    assert not future.done()
    deadline = time.monotonic() + TIMEOUT
    while not future.done():
        assert time.monotonic() < deadline
        dispatch.drain()
        time.sleep(0.002)
    assert seen.values == [[], ["x"]]
    assert future.result() is not None
    client.close()


# -- optimistic updates --------------------------------------------------------------------

def test_optimistic_update_then_commit(db):
    client = db.client()
    seen = Recorder()
    client.subscribe(list_todos, {"board": "a"}, seen)
    future = client.mutation(add_todo, {"board": "a", "text": "milk"},
                             optimistic_update=optimistic_add)
    future.result(TIMEOUT)
    # Server result, optimistic view, committed result: never both "milk*" and "milk".
    assert seen.values == [[], ["milk*"], ["milk"]]
    assert db.query(list_todos, {"board": "a"}) == ["milk"]


def test_optimistic_update_is_shown_at_once(db):
    client = db.client()
    seen = Recorder()
    subscription = client.subscribe(list_todos, {"board": "a"}, seen)
    with worker_held(client):
        future = client.mutation(add_todo, {"board": "a", "text": "milk"},
                                 optimistic_update=optimistic_add)
        assert seen.values == [[], ["milk*"]]
        assert subscription.result == ["milk*"]
        assert not future.done()
    future.result(TIMEOUT)
    assert seen.values == [[], ["milk*"], ["milk"]]
    assert subscription.result == ["milk"]


def test_optimistic_update_is_rolled_back_when_the_mutation_fails(db):
    db.mutation(add_todo, {"board": "b", "text": "old"})
    client = db.client()
    seen = Recorder()
    client.subscribe(list_todos, {"board": "b"}, seen)
    future = client.mutation(add_todo_then_fail, {"board": "b", "text": "new"},
                             optimistic_update=optimistic_add)
    with pytest.raises(AppError) as raised:
        future.result(TIMEOUT)
    assert raised.value.data == {"code": "rejected", "text": "new"}
    assert seen.values == [["old"], ["old", "new*"], ["old"]]
    assert db.query(list_todos, {"board": "b"}) == ["old"]


def test_pending_optimistic_update_is_reapplied_on_newer_server_results(db):
    client = db.client()
    seen = Recorder()
    client.subscribe(list_todos, {"board": "c"}, seen)
    with worker_held(client):
        first = client.mutation(add_todo, {"board": "c", "text": "one"},
                                optimistic_update=optimistic_add)
        second = client.mutation(add_todo, {"board": "c", "text": "two"},
                                 optimistic_update=optimistic_add)
        assert seen.values == [[], ["one*"], ["one*", "two*"]]
    first.result(TIMEOUT)
    second.result(TIMEOUT)
    assert seen.values == [
        [],
        ["one*"],
        ["one*", "two*"],
        ["one", "two*"],   # the first committed; the second's update on top of it
        ["one", "two"],
    ]


def test_optimistic_update_of_a_query_the_mutation_does_not_change_is_rolled_back(db):
    db.mutation(add_todo, {"board": "other", "text": "x"})
    client = db.client()
    target, other = Recorder(), Recorder()
    client.subscribe(list_todos, {"board": "d"}, target)
    client.subscribe(list_todos, {"board": "other"}, other)

    def update(store, args):
        optimistic_add(store, args)
        # A wrong guess: the mutation never writes into board "other".
        current = store.get_query(list_todos, {"board": "other"})
        store.set_query(list_todos, {"board": "other"}, current + ["ghost"])

    future = client.mutation(add_todo, {"board": "d", "text": "real"}, optimistic_update=update)
    future.result(TIMEOUT)
    assert target.values == [[], ["real*"], ["real"]]
    assert other.values == [["x"], ["x", "ghost"], ["x"]]


def test_raising_optimistic_update_is_logged_and_ignored(db, caplog):
    client = db.client()
    seen = Recorder()
    client.subscribe(list_todos, {"board": "e"}, seen)
    boom = RuntimeError("optimistic boom")

    def update(store, args):
        raise boom

    with caplog.at_level(logging.ERROR, logger="livedb"):
        future = client.mutation(add_todo, {"board": "e", "text": "still"},
                                 optimistic_update=update)
        future.result(TIMEOUT)
    assert seen.values == [[], ["still"]]
    assert db.query(list_todos, {"board": "e"}) == ["still"]
    assert any(record.exc_info and record.exc_info[1] is boom for record in caplog.records)


def test_server_change_by_another_writer_keeps_the_optimistic_layer_on_top(db):
    client = db.client()
    seen = Recorder()
    client.subscribe(list_todos, {"board": "f"}, seen)

    # Hold the client's worker after its commit (the write lock is free again), inside a
    # callback it delivers, so another writer can commit while our mutation is queued.
    held, release = threading.Event(), threading.Event()

    def gate_callback(names):
        if names:
            held.set()
            release.wait(TIMEOUT)

    gate_subscription = db.subscribe(gates, {}, gate_callback)
    gate = client.mutation(open_gate, {"name": "g"})
    assert held.wait(TIMEOUT)

    future = client.mutation(add_todo, {"board": "f", "text": "mine"},
                             optimistic_update=optimistic_add)
    assert seen.values == [[], ["mine*"]]
    writer = threading.Thread(
        target=lambda: db.mutation(add_todo, {"board": "f", "text": "theirs"}))
    writer.start()
    wait_until(lambda: db.query(list_todos, {"board": "f"}) == ["theirs"])
    release.set()
    gate.result(TIMEOUT)
    future.result(TIMEOUT)
    writer.join(TIMEOUT)
    gate_subscription.unsubscribe()
    assert seen.values == [
        [],
        ["mine*"],
        ["theirs", "mine*"],  # the other writer's commit, our pending update on top
        ["theirs", "mine"],
    ]


# -- live pagination -----------------------------------------------------------------------

def numbers(view):
    return [d["n"] for d in view.results]


def seed_messages(database, count):
    return [database.mutation(add_message, {"n": n}) for n in range(count)]


def test_paginated_results_status_and_load_more(db):
    seed_messages(db, 7)
    client = db.client()
    view = client.paginated(messages_by_n, {}, 3)
    assert numbers(view) == [0, 1, 2]
    assert view.status == "can_load_more"
    assert view.load_more(3) is True
    assert numbers(view) == [0, 1, 2, 3, 4, 5]
    assert view.status == "can_load_more"
    assert view.load_more(3) is True
    assert numbers(view) == [0, 1, 2, 3, 4, 5, 6]
    assert view.status == "exhausted"
    assert view.load_more(3) is False
    assert numbers(view) == [0, 1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("count", [0, -1, 2.0, "3", True])
def test_paginated_counts_are_checked_like_paginate(db, count):
    """A bad page size is a `ValidationError`, as `paginate` reports it, when the view is
    made and when it loads more."""
    seed_messages(db, 2)
    client = db.client()
    with pytest.raises(ValidationError, match="initial_num_items"):
        client.paginated(messages_by_n, {}, count)
    view = client.paginated(messages_by_n, {}, 1)
    with pytest.raises(ValidationError, match="num_items"):
        view.load_more(count)
    assert numbers(view) == [0]


def test_paginated_newer_documents_grow_the_first_page(db):
    seed_messages(db, 10)
    client = db.client()
    view = client.paginated(newest_messages, {}, 3)
    assert numbers(view) == [9, 8, 7]
    view.load_more(3)
    assert numbers(view) == [9, 8, 7, 6, 5, 4]
    db.mutation(add_message, {"n": 10})
    db.mutation(add_message, {"n": 11})
    # The newer ones join the first page; the second page does not shift.
    assert numbers(view) == [11, 10, 9, 8, 7, 6, 5, 4]
    view.load_more(2)
    assert numbers(view) == [11, 10, 9, 8, 7, 6, 5, 4, 3, 2]


def test_paginated_single_page_grows_with_newer_documents(db):
    seed_messages(db, 10)
    client = db.client()
    view = client.paginated(newest_messages, {}, 3)
    assert numbers(view) == [9, 8, 7]
    db.mutation(add_message, {"n": 10})
    # The page keeps its end boundary (after 7): the newer document makes it grow.
    assert numbers(view) == [10, 9, 8, 7]
    view.load_more(2)
    assert numbers(view) == [10, 9, 8, 7, 6, 5]


def test_paginated_deletes_shrink_their_page_and_later_pages_do_not_shift(db):
    ids = seed_messages(db, 10)
    client = db.client()
    view = client.paginated(newest_messages, {}, 3)
    view.load_more(3)
    view.load_more(3)
    assert numbers(view) == [9, 8, 7, 6, 5, 4, 3, 2, 1]
    db.mutation(delete_messages, {"ids": [ids[8]]})
    assert numbers(view) == [9, 7, 6, 5, 4, 3, 2, 1]
    db.mutation(delete_messages, {"ids": [ids[5], ids[4]]})
    assert numbers(view) == [9, 7, 6, 3, 2, 1]
    db.mutation(delete_messages, {"ids": [ids[9], ids[7]]})
    assert numbers(view) == [6, 3, 2, 1]
    assert view.status == "can_load_more"
    view.load_more(5)
    assert numbers(view) == [6, 3, 2, 1, 0]
    assert view.status == "exhausted"


def test_paginated_delete_in_the_last_page_shrinks_it(db):
    ids = seed_messages(db, 10)
    client = db.client()
    view = client.paginated(newest_messages, {}, 3)
    view.load_more(3)
    assert numbers(view) == [9, 8, 7, 6, 5, 4]
    db.mutation(delete_messages, {"ids": [ids[5]]})
    # The last page ends after 4 as before: it shrinks instead of pulling 3 in.
    assert numbers(view) == [9, 8, 7, 6, 4]
    view.load_more(2)
    assert numbers(view) == [9, 8, 7, 6, 4, 3, 2]


def test_paginated_load_more_continues_exactly_after_the_previous_page(db):
    ids = seed_messages(db, 20)
    client = db.client()
    view = client.paginated(messages_by_n, {}, 4)
    db.mutation(delete_messages, {"ids": [ids[1]]})
    db.mutation(add_message, {"n": -1})
    view.load_more(4)
    db.mutation(delete_messages, {"ids": [ids[6]]})
    view.load_more(4)
    results = numbers(view)
    assert results == sorted(results)
    assert len(results) == len(set(results))
    # Every surviving document up to the last one shown is there: nothing skipped.
    assert results == [n for n in [-1, *range(20)] if n not in (1, 6)][:len(results)]
    assert results[-1] >= 9
    while view.load_more(5):
        pass
    assert view.status == "exhausted"
    assert numbers(view) == [n for n in [-1, *range(20)] if n not in (1, 6)]


def test_paginated_exhausted_view_follows_the_end_of_the_range(db):
    seed_messages(db, 4)
    client = db.client()
    view = client.paginated(messages_by_n, {}, 3)
    view.load_more(3)
    assert numbers(view) == [0, 1, 2, 3]
    assert view.status == "exhausted"
    db.mutation(add_message, {"n": 100})
    assert numbers(view) == [0, 1, 2, 3, 100]
    assert view.status == "exhausted"


def test_paginated_on_update_is_called_on_changes(db):
    ids = seed_messages(db, 5)
    client = db.client()
    snapshots = []
    view = client.paginated(newest_messages, {}, 10,
                            on_update=lambda v_: snapshots.append(numbers(v_)))
    assert snapshots == [[4, 3, 2, 1, 0]]
    assert view.status == "exhausted"
    db.mutation(add_message, {"n": 5})
    assert snapshots[-1] == [5, 4, 3, 2, 1, 0]
    db.mutation(delete_messages, {"ids": [ids[2]]})
    assert snapshots[-1] == [5, 4, 3, 1, 0]
    calls = len(snapshots)
    db.mutation(lambda ctx: ctx.db.insert("todos", {"board": "x", "text": "y"}))
    assert len(snapshots) == calls  # an unrelated write calls nobody
    view.close()
    db.mutation(add_message, {"n": 6})
    assert len(snapshots) == calls


def test_paginated_with_a_dispatch_is_loading_until_delivered():
    dispatch = ManualDispatch()
    database = Database(SCHEMA, dispatch=dispatch)
    seed_messages(database, 5)
    client = database.client()
    updates = []
    view = client.paginated(messages_by_n, {}, 2, on_update=lambda v_: updates.append(1))
    assert view.status == "loading_more"
    assert view.results == []
    assert updates == []
    dispatch.drain()
    assert view.status == "can_load_more"
    assert numbers(view) == [0, 1]
    assert updates
    assert view.load_more(2) is True
    assert view.status == "loading_more"
    assert numbers(view) == [0, 1]
    dispatch.drain()
    assert view.status == "can_load_more"
    assert numbers(view) == [0, 1, 2, 3]
    client.close()


# -- close ---------------------------------------------------------------------------------

def test_close_waits_for_queued_mutations_and_ends_subscriptions(db):
    list_id = db.mutation(new_list, {"items": []})
    client = db.client()
    seen = Recorder()
    client.subscribe(get_items, {"list_id": list_id}, seen)
    pages = []
    seed_messages(db, 3)
    client.paginated(messages_by_n, {}, 2, on_update=lambda v_: pages.append(numbers(v_)))
    started, release = threading.Event(), threading.Event()

    def hold(ctx):
        started.set()
        release.wait(TIMEOUT)

    client.mutation(hold)
    futures = [client.mutation(append, {"list_id": list_id, "x": i}) for i in range(5)]
    assert started.wait(TIMEOUT)
    closer = threading.Thread(target=client.close)
    closer.start()
    closer.join(0.1)
    assert closer.is_alive()  # close waits for the queued mutations
    release.set()
    closer.join(TIMEOUT)
    assert not closer.is_alive()
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == list(range(5))
    assert seen.last == list(range(5))

    # No callback after close.
    count, page_count = len(seen.values), len(pages)
    db.mutation(append, {"list_id": list_id, "x": 99})
    db.mutation(add_message, {"n": -5})
    assert len(seen.values) == count
    assert len(pages) == page_count
    with pytest.raises(LiveDBError):
        client.mutation(append, {"list_id": list_id, "x": 1})
    client.close()  # a second close is harmless
