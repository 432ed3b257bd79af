"""Reactivity: subscriptions, precise re-runs, shared executions, consistency under
threads, asyncio `watch`, and a stateful test that every live result stays current.

Precision is measured by counting executions of the query handlers (a counter inside
each query function) and by `db.stats()["reruns"]`: a commit that cannot change what a
live query read must not run it at all, and a re-run with an equal result must call
nobody.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import queue
import random
import threading
import time
import weakref
from collections import Counter
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from threadkit import run_threads

from livedb import (
    AppError,
    Database,
    DocumentNotFoundError,
    LiveDBError,
    PaginationResult,
    UserIdentity,
    ValidationError,
    define_schema,
    define_table,
    mutation,
    query,
    v,
)
from livedb._database import reactive_of

SCHEMA = define_schema({
    "messages": define_table({"channel": v.string(), "ts": v.int64(), "body": v.string()})
    .index("by_channel", ["channel", "ts"]),
    "counters": define_table({"name": v.string(), "value": v.int64()})
    .index("by_name", ["name"]),
})

EXECUTIONS: Counter[str] = Counter()
"""How many times each query handler ran (first runs and re-runs)."""


@pytest.fixture(autouse=True)
def _reset_executions():
    EXECUTIONS.clear()
    yield
    EXECUTIONS.clear()


@pytest.fixture
def db():
    return Database(SCHEMA)


# -- queries -----------------------------------------------------------------------------

def _channel(ctx, channel):
    return ctx.db.query("messages").with_index("by_channel", lambda q: q.eq("channel", channel))


@query(args={"channel": v.string(), "n": v.int64()})
def latest(ctx, channel, n):
    """The newest `n` messages of a channel (by `ts`)."""
    EXECUTIONS["latest"] += 1
    return _channel(ctx, channel).order("desc").take(n)


@query(args={"channel": v.string()})
def channel_messages(ctx, channel):
    EXECUTIONS["channel_messages"] += 1
    return _channel(ctx, channel).collect()


@query(args={"channel": v.string()})
def count_in(ctx, channel):
    EXECUTIONS["count_in"] += 1
    return len(_channel(ctx, channel).collect())


@query(args={"channel": v.string()})
def timestamps(ctx, channel):
    """A projection: the `ts` of every message of a channel, not their bodies."""
    EXECUTIONS["timestamps"] += 1
    return [doc["ts"] for doc in _channel(ctx, channel).collect()]


@query(args={"channel": v.string(), "body": v.string()})
def with_body(ctx, channel, body):
    EXECUTIONS["with_body"] += 1
    return [d["ts"] for d in _channel(ctx, channel).filter(lambda d: d["body"] == body).collect()]


@query(args={"channel": v.string(), "body": v.string()})
def newest_with_body(ctx, channel, body):
    EXECUTIONS["newest_with_body"] += 1
    doc = _channel(ctx, channel).order("desc").filter(lambda d: d["body"] == body).first()
    return None if doc is None else doc["ts"]


@query(args={"id": v.id("messages")})
def get_message(ctx, id):
    EXECUTIONS["get_message"] += 1
    return ctx.db.get(id)


@query(args={"name": v.string()})
def counter_value(ctx, name):
    EXECUTIONS["counter_value"] += 1
    doc = ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", name)).unique()
    return None if doc is None else doc["value"]


@query(args={"name": v.string(), "copy": v.int64()})
def counter_copy(ctx, name, copy):
    """The same result as `counter_value`, as a separate live query per `copy`."""
    EXECUTIONS["counter_copy"] += 1
    doc = ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", name)).unique()
    return None if doc is None else doc["value"]


@query(args={"name": v.string()})
def checked_counter(ctx, name):
    """Raises `AppError` while the counter is negative."""
    EXECUTIONS["checked_counter"] += 1
    value = counter_value.handler(ctx, name=name)
    if value is not None and value < 0:
        raise AppError({"negative": value})
    return value


@query
def pair(ctx):
    """Counters `a` and `b` read in one snapshot."""
    EXECUTIONS["pair"] += 1
    return [counter_value.handler(ctx, name="a"), counter_value.handler(ctx, name="b")]


@query(args={"channel": v.string()})
def whoami(ctx, channel):
    EXECUTIONS["whoami"] += 1
    user = ctx.auth.get_user_identity()
    return [None if user is None else user.subject, len(_channel(ctx, channel).collect())]


# -- mutations ---------------------------------------------------------------------------

@mutation(args={"channel": v.string(), "ts": v.int64(), "body": v.optional(v.string())})
def send(ctx, channel, ts, body="hi"):
    return ctx.db.insert("messages", {"channel": channel, "ts": ts, "body": body})


@mutation(args={"id": v.id("messages"), "fields": v.any()})
def edit(ctx, id, fields):
    ctx.db.patch(id, fields)


@mutation(args={"id": v.id("messages"), "doc": v.any()})
def swap(ctx, id, doc):
    ctx.db.replace(id, doc)


@mutation(args={"id": v.id("messages")})
def remove(ctx, id):
    ctx.db.delete(id)


@mutation(args={"name": v.string(), "value": v.int64()})
def set_counter(ctx, name, value):
    doc = ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", name)).unique()
    if doc is None:
        ctx.db.insert("counters", {"name": name, "value": value})
    else:
        ctx.db.patch(doc["_id"], {"value": value})


@mutation(args={"name": v.string()})
def increment(ctx, name):
    doc = ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", name)).unique()
    if doc is None:
        ctx.db.insert("counters", {"name": name, "value": 1})
        return 1
    ctx.db.patch(doc["_id"], {"value": doc["value"] + 1})
    return doc["value"] + 1


@mutation
def increment_both(ctx):
    """Counters `a` and `b` move together: every committed state has a == b."""
    return [increment.handler(ctx, name="a"), increment.handler(ctx, name="b")]


def seed(db, channel, timestamps, body="hi"):
    """Insert one message per ts; returns {ts: id}."""
    return {ts: db.mutation(send, {"channel": channel, "ts": ts, "body": body})
            for ts in timestamps}


def reruns(db):
    return db.stats()["reruns"]


# =======================================================================================
# Subscriptions
# =======================================================================================

def test_first_result_is_delivered_at_once(db):
    seed(db, "c", [1, 2, 3])
    calls = []
    sub = db.subscribe(timestamps, {"channel": "c"}, calls.append)
    assert calls == [[1, 2, 3]]
    assert sub.result == [1, 2, 3]
    assert EXECUTIONS["timestamps"] == 1


def test_first_result_of_an_empty_query(db):
    calls = []
    db.subscribe(counter_value, {"name": "x"}, calls.append)
    assert calls == [None]


def test_one_call_per_changed_result_and_only_then(db):
    calls = []
    sub = db.subscribe(timestamps, {"channel": "c"}, calls.append)
    db.mutation(send, {"channel": "c", "ts": 5})
    assert calls == [[], [5]]
    db.mutation(send, {"channel": "c", "ts": 1})
    assert calls == [[], [5], [1, 5]]
    db.mutation(send, {"channel": "other", "ts": 3})
    db.mutation(set_counter, {"name": "x", "value": 1})
    assert calls == [[], [5], [1, 5]]
    assert sub.result == [1, 5]
    assert sub.result == db.query(timestamps, {"channel": "c"})


def test_result_is_the_newest_result(db):
    ids = seed(db, "c", [1])
    sub = db.subscribe(get_message, {"id": ids[1]}, lambda r: None)
    assert sub.result["ts"] == 1
    db.mutation(edit, {"id": ids[1], "fields": {"ts": 2}})
    assert sub.result["ts"] == 2
    assert sub.result == db.query(get_message, {"id": ids[1]})
    db.mutation(remove, {"id": ids[1]})
    assert sub.result is None


def test_results_are_plain_documents(db):
    ids = seed(db, "c", [1], body="hello")
    calls = []
    db.subscribe(latest, {"channel": "c", "n": 5}, calls.append)
    [doc] = calls[0]
    assert type(doc) is dict
    assert doc["_id"] == ids[1] and doc["_id"].table == "messages"
    assert doc["body"] == "hello" and isinstance(doc["_creation_time"], float)


def test_unsubscribe_stops_calls(db):
    calls = []
    sub = db.subscribe(count_in, {"channel": "c"}, calls.append)
    db.mutation(send, {"channel": "c", "ts": 1})
    assert calls == [0, 1]
    sub.unsubscribe()
    executions = EXECUTIONS["count_in"]
    db.mutation(send, {"channel": "c", "ts": 2})
    assert calls == [0, 1]
    assert EXECUTIONS["count_in"] == executions
    assert db.stats()["subscriptions"] == 0
    assert db.stats()["live_queries"] == 0
    sub.unsubscribe()  # a second unsubscribe is harmless
    db.mutation(send, {"channel": "c", "ts": 3})
    assert calls == [0, 1]


def test_the_registry_check_finds_what_is_filed_wrongly(db):
    """`_check()` holds while queries come and go, and notices a watch left behind."""


    first = db.subscribe(count_in, {"channel": "c"}, lambda _: None)
    second = db.subscribe(latest, {"channel": "c", "n": 2}, lambda _: None)
    doc = db.mutation(send, {"channel": "c", "ts": 1})
    by_id = db.subscribe(get_message, {"id": doc}, lambda _: None)
    db._check()
    first.unsubscribe()
    by_id.unsubscribe()
    db._check()
    registry = reactive_of(db)
    ((index, watch),) = registry._by_index.items()
    prefix = next(iter(watch.buckets))
    watch.buckets[prefix].clear()
    with pytest.raises(AssertionError, match="ranges filed wrongly"):
        db._check()
    second.unsubscribe()
    registry._by_id["messages:stray"] = set()
    with pytest.raises(AssertionError, match="ids filed"):
        db._check()


def test_unsubscribe_from_inside_the_callback(db):
    calls = []

    def once(result):
        calls.append(result)
        if result:
            sub.unsubscribe()

    sub = db.subscribe(count_in, {"channel": "c"}, once)
    db.mutation(send, {"channel": "c", "ts": 1})
    db.mutation(send, {"channel": "c", "ts": 2})
    assert calls == [0, 1]
    assert db.stats()["subscriptions"] == 0


def test_unsubscribed_while_re_running_stops_re_running(db):
    """E.g. a finalizer run by the garbage collector inside a re-run unsubscribes."""
    subs: list = []

    @query
    def drops_itself(ctx):
        EXECUTIONS["drops_itself"] += 1
        if EXECUTIONS["drops_itself"] == 2:
            subs[0].unsubscribe()
        return len(_channel(ctx, "c").collect())

    subs.append(db.subscribe(drops_itself, None, lambda r: None))
    db.subscribe(count_in, {"channel": "c"}, lambda r: None)  # keeps reactivity busy
    for ts in range(3):
        db.mutation(send, {"channel": "c", "ts": ts})
    assert EXECUTIONS["drops_itself"] == 2
    assert db.stats()["live_queries"] == 1


def test_subscription_as_context_manager(db):
    calls = []
    with db.subscribe(count_in, {"channel": "c"}, calls.append) as sub:
        assert sub.result == 0
        db.mutation(send, {"channel": "c", "ts": 1})
        assert calls == [0, 1]
    db.mutation(send, {"channel": "c", "ts": 2})
    assert calls == [0, 1]
    assert db.stats()["subscriptions"] == 0


def test_on_error_when_a_rerun_raises_then_recovery(db):
    db.mutation(set_counter, {"name": "x", "value": 1})
    calls, errors = [], []
    db.subscribe(checked_counter, {"name": "x"}, calls.append, on_error=errors.append)
    assert calls == [1] and errors == []
    db.mutation(set_counter, {"name": "x", "value": -5})
    assert calls == [1]
    assert len(errors) == 1
    assert isinstance(errors[0], AppError)
    assert errors[0].data == {"negative": -5}
    # the subscription keeps working once the query stops raising
    db.mutation(set_counter, {"name": "x", "value": 7})
    assert calls == [1, 7]
    db.mutation(set_counter, {"name": "x", "value": 8})
    assert calls == [1, 7, 8]
    assert len(errors) == 1


def test_recovery_to_the_result_from_before_the_error_is_delivered(db):
    db.mutation(set_counter, {"name": "x", "value": 1})
    calls, errors = [], []
    db.subscribe(checked_counter, {"name": "x"}, calls.append, on_error=errors.append)
    db.mutation(set_counter, {"name": "x", "value": -1})
    db.mutation(set_counter, {"name": "x", "value": 1})
    assert calls == [1, 1]
    assert [e.data for e in errors] == [{"negative": -1}]


def test_a_first_run_that_raises(db):
    db.mutation(set_counter, {"name": "x", "value": -1})
    with pytest.raises(AppError) as raised:
        db.subscribe(checked_counter, {"name": "x"}, lambda r: None)
    assert raised.value.data == {"negative": -1}
    assert db.stats()["live_queries"] == 0
    calls, errors = [], []
    db.subscribe(checked_counter, {"name": "x"}, calls.append, on_error=errors.append)
    assert calls == [] and [e.data for e in errors] == [{"negative": -1}]
    db.mutation(set_counter, {"name": "x", "value": 2})
    assert calls == [2]


def test_a_raising_query_harms_neither_the_commit_nor_other_subscribers(db):
    db.mutation(set_counter, {"name": "x", "value": 1})
    errors, others = [], []
    db.subscribe(checked_counter, {"name": "x"}, lambda r: None, on_error=errors.append)
    db.subscribe(counter_value, {"name": "x"}, others.append)
    db.mutation(set_counter, {"name": "x", "value": -2})
    assert db.query(counter_value, {"name": "x"}) == -2
    assert others == [1, -2]
    assert len(errors) == 1


def test_a_raising_on_update_is_logged_and_harms_nothing(db, caplog):
    def broken(result):
        broken_calls.append(result)
        raise RuntimeError("callback bug")

    broken_calls, before, after = [], [], []
    db.subscribe(count_in, {"channel": "c"}, before.append)
    db.subscribe(count_in, {"channel": "c"}, broken)  # shares the live query
    db.subscribe(timestamps, {"channel": "c"}, after.append)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="livedb"):
        db.mutation(send, {"channel": "c", "ts": 4})
    assert db.query(count_in, {"channel": "c"}) == 1
    assert before == [0, 1]
    assert after == [[], [4]]
    assert broken_calls == [0, 1]
    records = [r for r in caplog.records if r.name.startswith("livedb")]
    assert records, "a raising callback is logged"
    assert any(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in records)
    # the raising subscriber is still subscribed and the database still works
    db.mutation(send, {"channel": "c", "ts": 5})
    assert broken_calls == [0, 1, 2]
    assert before == [0, 1, 2]


def test_a_raising_first_callback_does_not_break_subscribe(db, caplog):
    def broken(result):
        raise ValueError("first call")

    with caplog.at_level(logging.ERROR, logger="livedb"):
        sub = db.subscribe(count_in, {"channel": "c"}, broken)
    assert sub.result == 0
    assert any(r.exc_info and isinstance(r.exc_info[1], ValueError) for r in caplog.records)
    assert db.mutation(send, {"channel": "c", "ts": 1})


class Widget:
    def __init__(self) -> None:
        self.seen: list = []

    def on_update(self, result: Any) -> None:
        self.seen.append(result)


def test_bound_method_callbacks_are_held_strongly_until_unsubscribed(db):
    widget = Widget()
    sub = db.subscribe(count_in, {"channel": "c"}, widget.on_update)
    ref = weakref.ref(widget)
    del widget
    gc.collect()
    assert ref() is not None, "a subscription holds its callback (and its object) strongly"
    db.mutation(send, {"channel": "c", "ts": 1})
    db.mutation(send, {"channel": "c", "ts": 2})
    assert ref().seen == [0, 1, 2], "delivery goes on after the caller dropped the object"
    sub.unsubscribe()
    gc.collect()
    assert ref() is None, "once unsubscribed, the subscription lets its callback go"
    assert db.stats()["subscriptions"] == 0


def test_close_releases_callbacks(db):
    widget = Widget()
    db.subscribe(count_in, {"channel": "c"}, widget.on_update)
    ref = weakref.ref(widget)
    del widget
    db.close()
    gc.collect()
    assert ref() is None


class SlottedWidget:
    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: list = []

    def on_update(self, result: Any) -> None:
        self.seen.append(result)


def test_bound_method_of_an_object_without_weakref_support(db):
    widget = SlottedWidget()
    sub = db.subscribe(count_in, {"channel": "c"}, widget.on_update)
    db.mutation(send, {"channel": "c", "ts": 1})
    assert widget.seen == [0, 1]
    sub.unsubscribe()
    assert db.stats()["live_queries"] == 0


def test_plain_function_callbacks_are_held_strongly(db):
    calls = []

    def make_callback():
        def on_update(result):
            calls.append(result)
        return on_update

    db.subscribe(count_in, {"channel": "c"}, make_callback())
    db.subscribe(count_in, {"channel": "d"}, lambda r: calls.append(("d", r)))
    gc.collect()
    db.mutation(send, {"channel": "c", "ts": 1})
    db.mutation(send, {"channel": "d", "ts": 1})
    assert calls == [0, ("d", 0), 1, ("d", 1)]


def test_adhoc_query_function(db):
    calls = []

    def newest_ts(ctx):
        doc = ctx.db.query("messages").with_index("by_channel").order("desc").first()
        return None if doc is None else doc["ts"]

    db.subscribe(newest_ts, None, calls.append)
    seed(db, "c", [3, 1, 9])
    assert calls == [None, 3, 9]


def test_a_callback_may_write_and_its_commit_is_delivered_too(db):
    calls = []

    def bump(result):
        calls.append(result)
        if result == 1:
            db.mutation(increment, {"name": "x"})

    db.subscribe(counter_value, {"name": "x"}, bump)
    db.mutation(increment, {"name": "x"})
    assert calls == [None, 1, 2]
    assert db.query(counter_value, {"name": "x"}) == 2


# =======================================================================================
# Precision: a commit re-runs only what it may change
# =======================================================================================

def test_writes_to_another_channel_do_not_rerun(db):
    seed(db, "c", [1, 2])
    calls = []
    db.subscribe(channel_messages, {"channel": "c"}, calls.append)
    assert EXECUTIONS["channel_messages"] == 1
    before = reruns(db)
    ids = seed(db, "b", [1, 2, 3]) | seed(db, "d", [1, 2, 3]) | seed(db, "cc", [1])
    db.mutation(edit, {"id": ids[2], "fields": {"body": "edited"}})
    db.mutation(remove, {"id": ids[3]})
    db.mutation(set_counter, {"name": "x", "value": 1})
    assert EXECUTIONS["channel_messages"] == 1
    assert reruns(db) == before
    assert len(calls) == 1


def test_latest_n_is_not_woken_by_rows_older_than_its_last_row(db):
    ids = seed(db, "c", random.Random(7).sample(range(0, 60, 2), 30))  # ts 0, 2, ..., 58
    seed(db, "b", [1000])
    calls = []
    db.subscribe(latest, {"channel": "c", "n": 20}, calls.append)
    assert [d["ts"] for d in calls[-1]] == list(range(58, 18, -2))  # the 20th row is ts 20
    assert EXECUTIONS["latest"] == 1

    def assert_not_rerun(mutate):
        executions, before, delivered = EXECUTIONS["latest"], reruns(db), len(calls)
        mutate()
        assert EXECUTIONS["latest"] == executions
        assert reruns(db) == before
        assert len(calls) == delivered

    def assert_delivered(mutate):
        executions, delivered = EXECUTIONS["latest"], len(calls)
        mutate()
        assert EXECUTIONS["latest"] == executions + 1
        assert len(calls) == delivered + 1
        assert calls[-1] == db.query(latest, {"channel": "c", "n": 20})

    assert_not_rerun(lambda: db.mutation(send, {"channel": "c", "ts": 5}))
    assert_not_rerun(lambda: db.mutation(send, {"channel": "c", "ts": 19}))
    assert_not_rerun(lambda: db.mutation(edit, {"id": ids[18], "fields": {"body": "x"}}))
    assert_not_rerun(lambda: db.mutation(edit, {"id": ids[4], "fields": {"ts": 7}}))
    assert_not_rerun(lambda: db.mutation(swap, {"id": ids[12], "doc": {
        "channel": "c", "ts": 12, "body": "replaced"}}))
    assert_not_rerun(lambda: db.mutation(remove, {"id": ids[0]}))
    assert_not_rerun(lambda: db.mutation(send, {"channel": "d", "ts": 100}))
    assert_not_rerun(lambda: db.mutation(send, {"channel": "b", "ts": 100}))
    # a newer row enters the window (and the 20th row becomes ts 22)
    assert_delivered(lambda: db.mutation(send, {"channel": "c", "ts": 59}))
    assert [d["ts"] for d in calls[-1]][-1] == 22
    # ts 20 just left the window: the read set shrank with the re-run
    assert_not_rerun(lambda: db.mutation(edit, {"id": ids[20], "fields": {"ts": 17}}))
    assert_not_rerun(lambda: db.mutation(send, {"channel": "c", "ts": 21}))
    # writes inside the window, the 20th row included
    assert_delivered(lambda: db.mutation(edit, {"id": ids[30], "fields": {"ts": 31}}))
    assert_delivered(lambda: db.mutation(edit, {"id": ids[22], "fields": {"ts": 23}}))
    assert_delivered(lambda: db.mutation(swap, {"id": ids[40], "doc": {
        "channel": "c", "ts": 41, "body": "replaced"}}))
    assert_delivered(lambda: db.mutation(remove, {"id": ids[44]}))
    assert [d["ts"] for d in calls[-1]][-1] == 21
    # moves across the boundary, both ways
    assert_delivered(lambda: db.mutation(edit, {"id": ids[2], "fields": {"ts": 70}}))
    assert_delivered(lambda: db.mutation(edit, {"id": ids[50], "fields": {"ts": 3}}))
    assert_delivered(lambda: db.mutation(edit, {"id": ids[56], "fields": {"channel": "b"}}))
    assert calls[-1] == db.query(latest, {"channel": "c", "n": 20})


def test_a_patch_of_unindexed_fields_wakes_index_range_subscriptions(db):
    """Writes that keep a document's index keys still change what a range read returned."""
    ids = seed(db, "c", range(0, 60, 2))
    latest20, collected, page, everything = [], [], [], []
    db.subscribe(latest, {"channel": "c", "n": 20}, latest20.append)
    db.subscribe(channel_messages, {"channel": "c"}, collected.append)

    @query
    def first_page(ctx):
        return _channel(ctx, "c").paginate(5)

    @query
    def all_messages(ctx):
        return ctx.db.query("messages").collect()  # the by_creation_time index

    db.subscribe(first_page, None, page.append)
    db.subscribe(all_messages, None, everything.append)
    db.mutation(edit, {"id": ids[40], "fields": {"body": "edited"}})
    db.mutation(edit, {"id": ids[2], "fields": {"body": "edited"}})
    db.mutation(swap, {"id": ids[4], "doc": {"channel": "c", "ts": 4, "body": "replaced"}})
    for calls, fn, args in ((latest20, latest, {"channel": "c", "n": 20}),
                            (collected, channel_messages, {"channel": "c"}),
                            (page, first_page, None), (everything, all_messages, None)):
        assert calls[-1] == db.query(fn, args), fn
    assert len(latest20) == 2  # ts 2 and ts 4 are older than its 20th row
    assert len(collected) == len(everything) == 4
    assert len(page) == 3  # ts 40 is past the first page


def test_latest_n_with_fewer_rows_than_n_is_woken_by_any_row_of_its_channel(db):
    calls = []
    db.subscribe(latest, {"channel": "c", "n": 20}, calls.append)
    db.mutation(send, {"channel": "c", "ts": -100})
    db.mutation(send, {"channel": "c", "ts": 100})
    assert [[d["ts"] for d in r] for r in calls] == [[], [-100], [100, -100]]


def test_get_subscriptions_wake_only_for_their_id(db):
    ids = seed(db, "c", [1, 2])
    a, b = ids[1], ids[2]
    calls = []
    db.subscribe(get_message, {"id": a}, calls.append)
    assert EXECUTIONS["get_message"] == 1
    before = reruns(db)
    db.mutation(edit, {"id": b, "fields": {"body": "b2"}})
    db.mutation(swap, {"id": b, "doc": {"channel": "c", "ts": 1, "body": "b3"}})
    db.mutation(remove, {"id": b})
    db.mutation(send, {"channel": "c", "ts": 1})
    db.mutation(set_counter, {"name": "x", "value": 1})
    assert EXECUTIONS["get_message"] == 1
    assert reruns(db) == before
    assert len(calls) == 1

    db.mutation(edit, {"id": a, "fields": {"body": "a2"}})
    assert calls[-1]["body"] == "a2"
    db.mutation(swap, {"id": a, "doc": {"channel": "z", "ts": 9, "body": "a3"}})
    assert (calls[-1]["channel"], calls[-1]["ts"], calls[-1]["body"]) == ("z", 9, "a3")
    db.mutation(remove, {"id": a})
    assert calls[-1] is None
    assert len(calls) == 4
    assert EXECUTIONS["get_message"] == 4


def test_get_of_a_missing_document_is_not_woken_by_inserts(db):
    ids = seed(db, "c", [1])
    db.mutation(remove, {"id": ids[1]})
    calls = []
    db.subscribe(get_message, {"id": ids[1]}, calls.append)
    seed(db, "c", [1, 2, 3])
    assert calls == [None]
    assert EXECUTIONS["get_message"] == 1


def test_an_aborted_mutation_wakes_nobody(db):
    ids = seed(db, "c", [1, 2, 3])
    db.mutation(set_counter, {"name": "x", "value": 0})
    calls = []
    db.subscribe(latest, {"channel": "c", "n": 20}, calls.append)
    db.subscribe(get_message, {"id": ids[1]}, calls.append)
    db.subscribe(counter_value, {"name": "x"}, calls.append)
    db.subscribe(count_in, {"channel": "c"}, calls.append)
    executions, before = sum(EXECUTIONS.values()), reruns(db)

    @mutation
    def fails_at_the_end(ctx):
        ctx.db.insert("messages", {"channel": "c", "ts": 9, "body": "x"})
        ctx.db.patch(ids[1], {"body": "changed"})
        ctx.db.delete(ids[2])
        increment.handler(ctx, name="x")
        raise AppError("no")

    @mutation
    def fails_on_a_missing_document(ctx):
        ctx.db.insert("messages", {"channel": "c", "ts": 9, "body": "x"})
        ctx.db.delete(ids[3])
        ctx.db.delete(ids[3])

    @mutation(returns=v.string())
    def fails_its_return_check(ctx):
        ctx.db.patch(ids[1], {"body": "changed"})
        return 5

    with pytest.raises(AppError):
        db.mutation(fails_at_the_end)
    with pytest.raises(DocumentNotFoundError):
        db.mutation(fails_on_a_missing_document)
    with pytest.raises(ValidationError):
        db.mutation(fails_its_return_check)
    assert sum(EXECUTIONS.values()) == executions
    assert reruns(db) == before
    assert len(calls) == 4
    assert db.query(count_in, {"channel": "c"}) == 3


@query(args={"channel": v.string()})
def bodies(ctx, channel):
    """A projection: the sorted bodies of a channel, not their `ts`."""
    EXECUTIONS["bodies"] += 1
    return sorted(doc["body"] for doc in _channel(ctx, channel).collect())


def test_an_equal_result_calls_nobody(db):
    ids = seed(db, "c", [1, 2, 3])
    counts, texts = [], []
    db.subscribe(count_in, {"channel": "c"}, counts.append)
    db.subscribe(bodies, {"channel": "c"}, texts.append)
    db.mutation(edit, {"id": ids[2], "fields": {"ts": 5}})
    # both read the patched document's index keys: both re-ran, neither result changed
    assert EXECUTIONS["count_in"] == 2
    assert EXECUTIONS["bodies"] == 2
    assert counts == [3]
    assert texts == [["hi", "hi", "hi"]]
    db.mutation(send, {"channel": "c", "ts": 0, "body": "a"})
    assert counts == [3, 4]
    assert texts == [["hi", "hi", "hi"], ["a", "hi", "hi", "hi"]]
    db.mutation(remove, {"id": ids[3]})
    assert counts == [3, 4, 3]
    assert texts == [["hi", "hi", "hi"], ["a", "hi", "hi", "hi"], ["a", "hi", "hi"]]


def test_a_patch_writing_the_same_values_calls_nobody(db):
    ids = seed(db, "c", [1], body="same")
    calls = []
    db.subscribe(get_message, {"id": ids[1]}, calls.append)
    db.mutation(edit, {"id": ids[1], "fields": {"body": "same"}})
    assert len(calls) == 1


def test_a_result_changing_kind_is_a_change(db):
    """`1`, `1.0` and `True` compare equal in Python, but they are different values."""
    calls = []

    @query
    def kinded(ctx):
        value = counter_value.handler(ctx, name="x")
        return {None: 1, 1: 1, 2: 1.0, 3: True}.get(value, value)

    db.subscribe(kinded, None, calls.append)
    for value in (1, 2, 3):
        db.mutation(set_counter, {"name": "x", "value": value})
    assert [(type(c).__name__, c) for c in calls] == [
        ("int", 1), ("float", 1.0), ("bool", True)]


def test_a_result_holding_nan_that_did_not_change_calls_nobody(db):
    ids = seed(db, "c", [1, 2])
    calls = []

    @query
    def with_nan(ctx):
        return [float("nan"), len(_channel(ctx, "c").collect())]

    db.subscribe(with_nan, None, calls.append)
    db.mutation(edit, {"id": ids[1], "fields": {"ts": 3}})  # re-runs it, same result
    assert reruns(db) == 1
    assert len(calls) == 1
    db.mutation(send, {"channel": "c", "ts": 4})
    assert len(calls) == 2 and calls[-1][1] == 3


def test_a_filter_does_not_narrow_the_read_set(db):
    seed(db, "c", [1, 2], body="hello")
    calls = []
    db.subscribe(with_body, {"channel": "c", "body": "hello"}, calls.append)
    assert calls == [[1, 2]]
    # a document failing the filter inside the scanned range re-runs it, and calls nobody
    db.mutation(send, {"channel": "c", "ts": 3, "body": "nope"})
    assert EXECUTIONS["with_body"] == 2
    assert calls == [[1, 2]]
    db.mutation(send, {"channel": "c", "ts": 4, "body": "hello"})
    assert calls == [[1, 2], [1, 2, 4]]
    # outside the index range: not even a re-run
    executions = EXECUTIONS["with_body"]
    db.mutation(send, {"channel": "d", "ts": 4, "body": "hello"})
    assert EXECUTIONS["with_body"] == executions


def test_a_filtered_first_reads_down_to_its_match(db):
    ids = seed(db, "c", [1, 2], body="hello") | seed(db, "c", [3, 4, 5], body="nope")
    calls = []
    db.subscribe(newest_with_body, {"channel": "c", "body": "hello"}, calls.append)
    assert calls == [2]
    # rows below the match were never read
    db.mutation(send, {"channel": "c", "ts": 0, "body": "hello"})
    db.mutation(edit, {"id": ids[1], "fields": {"ts": -1}})
    assert EXECUTIONS["newest_with_body"] == 1
    # rows scanned and skipped by the filter were read
    db.mutation(edit, {"id": ids[4], "fields": {"ts": 6}})
    assert EXECUTIONS["newest_with_body"] == 2
    assert calls == [2]
    db.mutation(edit, {"id": ids[3], "fields": {"ts": 7, "body": "hello"}})
    assert calls == [2, 7]


# =======================================================================================
# Identical live queries share one execution
# =======================================================================================

def test_identical_live_queries_share_one_execution(db):
    first, second = [], []
    s1 = db.subscribe(latest, {"channel": "c", "n": 5}, first.append)
    s2 = db.subscribe(latest, {"n": 5, "channel": "c"}, second.append)
    assert EXECUTIONS["latest"] == 1
    assert first == second == [[]]
    assert db.stats()["live_queries"] == 1
    assert db.stats()["subscriptions"] == 2
    db.mutation(send, {"channel": "c", "ts": 1})
    assert EXECUTIONS["latest"] == 2
    assert len(first) == len(second) == 2
    assert first[-1] == second[-1] == s1.result == s2.result
    s1.unsubscribe()
    db.mutation(send, {"channel": "c", "ts": 2})
    assert EXECUTIONS["latest"] == 3
    assert len(first) == 2 and len(second) == 3
    s2.unsubscribe()
    db.mutation(send, {"channel": "c", "ts": 3})
    assert EXECUTIONS["latest"] == 3
    assert db.stats()["live_queries"] == 0


def test_no_update_is_lost_between_the_first_run_and_listening(db):
    """A commit landing while subscribe computes the first result is still delivered."""
    db.mutation(set_counter, {"name": "x", "value": 0})
    writers: list[threading.Thread] = []

    @query
    def racing(ctx):
        value = counter_value.handler(ctx, name="x")
        if not writers:  # the first run only: a commit lands after our read
            writer = threading.Thread(target=db.mutation, args=(increment, {"name": "x"}))
            writers.append(writer)
            writer.start()
            deadline = time.monotonic() + 5
            while db.query(counter_value, {"name": "x"}) != 1:
                assert time.monotonic() < deadline, "the concurrent commit never landed"
                time.sleep(0.001)
        return value

    calls = []
    db.subscribe(racing, None, calls.append)
    writers[0].join(5)
    assert not writers[0].is_alive()
    assert calls == [0, 1]


def test_subscribing_from_inside_a_callback(db):
    inner: list = []
    subs: list = []

    def outer(result):
        if result == 1 and not subs:
            subs.append(db.subscribe(timestamps, {"channel": "c"}, inner.append))

    db.subscribe(counter_value, {"name": "x"}, outer)
    db.mutation(increment, {"name": "x"})
    assert inner == [[]]
    db.mutation(send, {"channel": "c", "ts": 1})
    assert inner == [[], [1]]


def test_a_late_subscriber_joins_with_the_current_result(db):
    early, late = [], []
    db.subscribe(count_in, {"channel": "c"}, early.append)
    seed(db, "c", [1, 2])
    executions = EXECUTIONS["count_in"]
    db.subscribe(count_in, {"channel": "c"}, late.append)
    assert EXECUTIONS["count_in"] == executions
    assert late == [2]
    db.mutation(send, {"channel": "c", "ts": 3})
    assert early == [0, 1, 2, 3]
    assert late == [2, 3]


def test_different_args_or_identity_are_separate_executions(db):
    alice, alice_again, bob = (UserIdentity("alice"), UserIdentity("alice"),
                               UserIdentity("bob"))
    results: dict[str, list] = {}

    def sub(name, args, identity=None):
        results[name] = []
        db.subscribe(whoami, args, results[name].append, identity=identity)

    sub("anon", {"channel": "c"})
    sub("anon_d", {"channel": "d"})
    sub("alice", {"channel": "c"}, alice)
    sub("alice_again", {"channel": "c"}, alice_again)
    sub("bob", {"channel": "c"}, bob)
    assert EXECUTIONS["whoami"] == 4
    assert db.stats()["live_queries"] == 4
    assert results == {"anon": [[None, 0]], "anon_d": [[None, 0]], "alice": [["alice", 0]],
                       "alice_again": [["alice", 0]], "bob": [["bob", 0]]}
    db.mutation(send, {"channel": "c", "ts": 1})
    assert EXECUTIONS["whoami"] == 7  # anon, alice and bob; not anon_d
    assert results["alice_again"] == [["alice", 0], ["alice", 1]]
    assert results["bob"] == [["bob", 0], ["bob", 1]]
    assert results["anon_d"] == [[None, 0]]


def test_identities_with_list_valued_claims_can_subscribe(db):
    claims = (("roles", ["admin", "editor"]),)
    first, second = [], []
    db.subscribe(whoami, {"channel": "c"}, first.append,
                 identity=UserIdentity("carol", custom_claims=claims))
    db.subscribe(whoami, {"channel": "c"}, second.append,
                 identity=UserIdentity("carol", custom_claims=claims))
    db.mutation(send, {"channel": "c", "ts": 1})
    assert first == second == [["carol", 0], ["carol", 1]]
    assert EXECUTIONS["whoami"] == 2  # one shared execution per result


def test_different_functions_with_the_same_args_are_separate(db):
    a, b = [], []
    db.subscribe(counter_copy, {"name": "x", "copy": 1}, a.append)
    db.subscribe(counter_copy, {"name": "x", "copy": 2}, b.append)
    db.subscribe(counter_value, {"name": "x"}, b.append)
    assert EXECUTIONS["counter_copy"] == 2 and EXECUTIONS["counter_value"] == 1
    db.mutation(increment, {"name": "x"})
    assert EXECUTIONS["counter_copy"] == 4 and EXECUTIONS["counter_value"] == 2
    assert a == [None, 1] and b == [None, None, 1, 1]


# =======================================================================================
# Dispatch
# =======================================================================================

def drain(q: queue.Queue) -> int:
    n = 0
    while True:
        try:
            thunk = q.get_nowait()
        except queue.Empty:
            return n
        thunk()
        n += 1


def test_dispatch_delivers_every_callback_including_the_first():
    q: queue.Queue = queue.Queue()
    db = Database(SCHEMA, dispatch=q.put)
    calls = []
    db.subscribe(counter_value, {"name": "x"}, calls.append)
    assert calls == []
    assert drain(q) >= 1
    assert calls == [None]
    db.mutation(increment, {"name": "x"})
    assert calls == [None], "with a dispatch, callbacks do not run in the committing thread"
    drain(q)
    assert calls == [None, 1]


def test_dispatch_coalesces_to_the_newest_result():
    q: queue.Queue = queue.Queue()
    db = Database(SCHEMA, dispatch=q.put)
    calls, others = [], []
    db.subscribe(counter_value, {"name": "x"}, calls.append)
    db.subscribe(counter_copy, {"name": "x", "copy": 1}, others.append)
    drain(q)
    for _ in range(5):
        db.mutation(increment, {"name": "x"})
    drain(q)
    assert calls == [None, 5]
    assert others == [None, 5]
    drain(q)
    assert calls == [None, 5]


def test_dispatch_with_on_error():
    q: queue.Queue = queue.Queue()
    db = Database(SCHEMA, dispatch=q.put)
    calls, errors = [], []
    db.subscribe(checked_counter, {"name": "x"}, calls.append, on_error=errors.append)
    drain(q)
    db.mutation(set_counter, {"name": "x", "value": -1})
    drain(q)
    assert [e.data for e in errors] == [{"negative": -1}]
    db.mutation(set_counter, {"name": "x", "value": 3})
    drain(q)
    assert calls == [None, 3]


def test_unsubscribe_drops_pending_deliveries():
    q: queue.Queue = queue.Queue()
    db = Database(SCHEMA, dispatch=q.put)
    calls = []
    sub = db.subscribe(counter_value, {"name": "x"}, calls.append)
    drain(q)
    db.mutation(increment, {"name": "x"})
    sub.unsubscribe()
    drain(q)
    assert calls == [None]


# =======================================================================================
# Consistency under threads
# =======================================================================================

def _strictly_increasing(values: list) -> bool:
    return all(a < b for a, b in zip(values, values[1:], strict=False))


@pytest.mark.usefixtures("frequent_thread_switches")
def test_queue_dispatch_under_concurrent_commits():
    q: queue.Queue = queue.Queue()
    db = Database(SCHEMA, dispatch=q.put)
    consumer_errors: list[BaseException] = []
    consumer_ident: list[int] = []

    def consume():
        consumer_ident.append(threading.get_ident())
        while True:
            thunk = q.get()
            try:
                if thunk is None:
                    return
                thunk()
            except BaseException as e:  # noqa: BLE001 - reported by the test
                consumer_errors.append(e)
            finally:
                q.task_done()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    for name in ("x", "a", "b"):
        db.mutation(set_counter, {"name": name, "value": 0})
    subscribers: list[tuple[Any, dict, list]] = []
    lock = threading.Lock()

    def subscribe(fn, args):
        seen: list = []

        def on_update(result):
            seen.append((result, threading.get_ident()))

        sub = db.subscribe(fn, args, on_update)
        with lock:
            subscribers.append((fn, args, seen, sub))

    for copy in range(3):
        subscribe(counter_copy, {"name": "x", "copy": copy})
    subscribe(counter_value, {"name": "x"})
    subscribe(counter_value, {"name": "x"})
    subscribe(pair, None)
    writers, per_writer = 4, 60

    def writer():
        for _ in range(per_writer):
            db.mutation(increment, {"name": "x"})
            db.mutation(increment_both)

    def late_subscriber():
        # subscribing while commits are flying: no update may fall between the first
        # result and the registration of its read set
        for copy in range(100, 110):
            subscribe(counter_copy, {"name": "x", "copy": copy})
            time.sleep(0.001)

    run_threads([writer] * writers + [late_subscriber])
    db._check()
    q.join()
    q.put(None)
    consumer.join(10)
    assert not consumer.is_alive()
    assert consumer_errors == []
    total = writers * per_writer
    assert db.query(counter_value, {"name": "x"}) == total
    assert db.query(pair) == [total, total]
    for fn, args, seen, sub in subscribers:
        results = [r for r, _ in seen]
        assert {ident for _, ident in seen} == set(consumer_ident), "delivered via dispatch"
        assert results, (fn, args)
        assert results[-1] == db.query(fn, args), (fn, args, results[-5:])
        assert sub.result == db.query(fn, args)
        if fn is pair:
            assert all(a == b for a, b in results), "each result is one commit's snapshot"
            results = [a for a, _ in results]
        assert _strictly_increasing(results), (fn, args, results)


def _default_dispatch_run(callback_work: bool, writers: int = 4, per_writer: int = 150):
    """Writers increment counter x; two subscribers record every delivery.

    Returns (writer lags, callback lags): a writer lag is a mutation that returned before
    the subscribers had seen its result, a callback lag a delivered result newer than
    what `db.query` returned inside the callback.
    """
    db = Database(SCHEMA)
    db.mutation(set_counter, {"name": "x", "value": 0})
    deliveries: list[tuple[str, Any]] = []
    seen_max = {"value": 0, "copy": 0}
    writer_lags: list = []
    callback_lags: list = []

    def recorder(name):
        def on_update(result):
            # callbacks run outside the database's locks: reading is fine here, and the
            # commit being delivered is visible to it
            fresh = db.query(counter_value, {"name": "x"})
            if fresh < result:
                callback_lags.append((result, fresh))
            if callback_work:
                time.sleep(0.0001)  # a callback does some work (and lets others run)
            deliveries.append((name, result))
            seen_max[name] = max(seen_max[name], result)
        return on_update

    db.subscribe(counter_value, {"name": "x"}, recorder("value"))
    db.subscribe(counter_copy, {"name": "x", "copy": 1}, recorder("copy"))

    def writer():
        for _ in range(per_writer):
            n = db.mutation(increment, {"name": "x"})
            if seen_max["value"] < n or seen_max["copy"] < n:
                writer_lags.append((n, dict(seen_max)))

    run_threads([writer] * writers)
    db._check()
    total = writers * per_writer
    values = [r for name, r in deliveries if name == "value"]
    copies = [r for name, r in deliveries if name == "copy"]
    # without a dispatch every commit is delivered, in commit order
    assert values == list(range(total + 1))
    assert copies == list(range(total + 1))
    assert [r for _, r in deliveries] == sorted(r for _, r in deliveries)
    return writer_lags, callback_lags


@pytest.mark.usefixtures("frequent_thread_switches")
@pytest.mark.parametrize("callback_work", [False, True])
def test_default_dispatch_mutation_returns_after_its_subscribers_saw_it(callback_work):
    # With one writer nobody else delivers callbacks: each mutation delivers its own
    # before it returns. (With several, a writer finding another thread delivering leaves
    # its callbacks to that thread rather than wait for it; `_default_dispatch_run` checks
    # they all arrive, in commit order.)
    for _ in range(3):
        writer_lags, _ = _default_dispatch_run(callback_work, writers=1, per_writer=300)
        assert writer_lags == [], "db.mutation returned before its subscribers saw its result"
        _default_dispatch_run(callback_work)


@pytest.mark.usefixtures("frequent_thread_switches")
def test_default_dispatch_delivers_only_commits_visible_to_queries():
    for _ in range(4):
        _, callback_lags = _default_dispatch_run(False)
        assert callback_lags == [], "a callback got a result db.query could not see yet"


@pytest.mark.usefixtures("frequent_thread_switches")
def test_subscriptions_updated_for_one_commit_see_that_commit():
    db = Database(SCHEMA)
    db.mutation(increment_both)
    a_seen, b_seen, pairs = [], [], []
    db.subscribe(counter_value, {"name": "a"}, a_seen.append)
    db.subscribe(counter_value, {"name": "b"}, b_seen.append)
    db.subscribe(pair, None, pairs.append)

    def writer():
        for _ in range(100):
            db.mutation(increment_both)

    run_threads([writer] * 3)
    db._check()
    assert a_seen == b_seen == list(range(1, 302))
    assert pairs == [[n, n] for n in range(1, 302)]


# =======================================================================================
# asyncio
# =======================================================================================

def test_watch_yields_the_first_result_then_changes_from_another_thread():
    db = Database(SCHEMA)
    db.mutation(set_counter, {"name": "x", "value": 0})

    async def main():
        results = []
        watch = db.watch(counter_value, {"name": "x"})
        results.append(await asyncio.wait_for(watch.__anext__(), 5))
        writer = threading.Thread(
            target=lambda: [db.mutation(increment, {"name": "x"}) for _ in range(20)])
        writer.start()
        while results[-1] != 20:
            results.append(await asyncio.wait_for(watch.__anext__(), 5))
        writer.join(5)
        return results

    results = asyncio.run(main())
    assert results[0] == 0
    assert results[-1] == 20
    assert _strictly_increasing(results)


def test_watch_with_async_for_and_writes_from_the_loop():
    db = Database(SCHEMA)

    async def main():
        results = []

        async def consume():
            async for result in db.watch(timestamps, {"channel": "c"}):
                results.append(result)
                if len(result) == 3:
                    return

        task = asyncio.create_task(consume())
        for ts in (1, 2, 3):
            await asyncio.sleep(0.01)
            db.mutation(send, {"channel": "c", "ts": ts})
            db.mutation(send, {"channel": "other", "ts": ts})
        await asyncio.wait_for(task, 5)
        return results

    results = asyncio.run(main())
    assert results[0] == [] and results[-1] == [1, 2, 3]
    assert all(len(a) < len(b) for a, b in zip(results, results[1:], strict=False))


def test_watch_reports_nothing_for_unrelated_writes():
    db = Database(SCHEMA)

    async def main():
        watch = db.watch(count_in, {"channel": "c"})
        assert await asyncio.wait_for(watch.__anext__(), 5) == 0
        db.mutation(send, {"channel": "d", "ts": 1})
        pending = asyncio.ensure_future(watch.__anext__())
        done, _ = await asyncio.wait({pending}, timeout=0.2)
        assert not done, "an unrelated write produced a result"
        db.mutation(send, {"channel": "c", "ts": 1})
        assert await asyncio.wait_for(pending, 5) == 1

    asyncio.run(main())


def test_two_watches_of_one_query_share_its_execution():
    db = Database(SCHEMA)

    async def main():
        first = db.watch(count_in, {"channel": "c"})
        second = db.watch(count_in, {"channel": "c"})
        assert await asyncio.wait_for(first.__anext__(), 5) == 0
        assert await asyncio.wait_for(second.__anext__(), 5) == 0
        db.mutation(send, {"channel": "c", "ts": 1})
        assert await asyncio.wait_for(first.__anext__(), 5) == 1
        assert await asyncio.wait_for(second.__anext__(), 5) == 1

    asyncio.run(main())
    assert EXECUTIONS["count_in"] == 2


# =======================================================================================
# Durable databases take the same path
# =======================================================================================

@pytest.mark.usefixtures("frequent_thread_switches")
def test_live_queries_on_a_durable_database(tmp_path):
    with Database(SCHEMA, path=str(tmp_path / "live.livedb"), durability="normal") as db:
        db.mutation(set_counter, {"name": "x", "value": 0})
        seen: list = []
        lags: list = []
        db.subscribe(counter_value, {"name": "x"}, seen.append)

        def writer():
            for _ in range(30):
                n = db.mutation(increment, {"name": "x"})
                if seen[-1] < n:
                    lags.append((n, seen[-1]))

        run_threads([writer] * 3)
        db._check()
        assert seen == list(range(91)), "every commit delivered, in commit order"
        lags.clear()
        writer()  # alone, a writer delivers its own callbacks before it returns
        assert lags == []
        assert seen == list(range(121))
        executions = EXECUTIONS["counter_value"]

        @mutation
        def write_then_fail(ctx):
            increment.handler(ctx, name="x")
            raise AppError("no")

        with pytest.raises(AppError):
            db.mutation(write_then_fail)
        assert EXECUTIONS["counter_value"] == executions
        assert seen[-1] == db.query(counter_value, {"name": "x"}) == 120


# =======================================================================================
# Stateful: every live subscription's last result equals a fresh run of its query
# =======================================================================================

ITEMS = define_schema({
    "items": define_table({"tag": v.string(), "k": v.int64(), "w": v.int64()})
    .index("by_tag_k", ["tag", "k"])
    .index("by_k", ["k"]),
})
TAGS = ("a", "b", "c")


def _by_tag(ctx, tag):
    return ctx.db.query("items").with_index("by_tag_k", lambda q: q.eq("tag", tag))


@query(args={"tag": v.string(), "n": v.int64()})
def m_latest(ctx, tag, n):
    return _by_tag(ctx, tag).order("desc").take(n)


@query(args={"lo": v.int64(), "hi": v.int64()})
def m_range(ctx, lo, hi):
    return ctx.db.query("items").with_index("by_k", lambda q: q.gt("k", lo).lt("k", hi)).collect()


@query(args={"lo": v.int64(), "n": v.int64()})
def m_from(ctx, lo, n):
    return [d["_id"] for d in
            ctx.db.query("items").with_index("by_k", lambda q: q.gte("k", lo)).take(n)]


@query(args={"tag": v.string(), "n": v.int64()})
def m_iterate(ctx, tag, n):
    """Iteration stopped early: the range read ends at the last document looked at."""
    out = []
    for doc in _by_tag(ctx, tag).order("desc"):
        if len(out) == n:
            break
        out.append([doc["k"], doc["w"]])
    return out


@query(args={"lo": v.int64()})
def m_first(ctx, lo):
    return ctx.db.query("items").with_index("by_k", lambda q: q.gt("k", lo)).first()


@query(args={"id": v.id("items")})
def m_get(ctx, id):
    return ctx.db.get(id)


@query
def m_all(ctx):
    return ctx.db.query("items").collect()


@query(args={"tag": v.string(), "n": v.int64()})
def m_page(ctx, tag, n):
    return _by_tag(ctx, tag).paginate(n)


@query(args={"n": v.int64()})
def m_even_weights(ctx, n):
    docs = ctx.db.query("items").with_index("by_k").order("desc").filter(
        lambda d: d["w"] % 2 == 0).take(n)
    return [[d["k"], d["w"]] for d in docs]


@query(args={"tag": v.string()})
def m_sum(ctx, tag):
    user = ctx.auth.get_user_identity()
    total = sum(d["w"] for d in _by_tag(ctx, tag).collect())
    if total == 13:
        raise AppError({"unlucky": tag})
    return [None if user is None else user.subject, total]


@mutation(args={"tag": v.string(), "k": v.int64(), "w": v.int64()})
def m_insert(ctx, tag, k, w):
    return ctx.db.insert("items", {"tag": tag, "k": k, "w": w})


@mutation(args={"id": v.id("items"), "fields": v.any()})
def m_patch(ctx, id, fields):
    ctx.db.patch(id, fields)


@mutation(args={"id": v.id("items")})
def m_delete(ctx, id):
    ctx.db.delete(id)


@mutation
def m_batch(ctx, ops, fail):
    """Several writes in one transaction; all or none commit."""
    out = []
    for op in ops:
        if op[0] == "insert":
            out.append(ctx.db.insert("items", op[1]))
        elif op[0] == "patch":
            ctx.db.patch(op[1], op[2])
        else:
            ctx.db.delete(op[1])
    if fail:
        raise AppError("abort")
    return out


SHAPES = st.one_of(
    st.tuples(st.just("latest"), st.sampled_from(TAGS), st.integers(1, 4)),
    st.tuples(st.just("range"), st.integers(-2, 8), st.integers(0, 12)),
    st.tuples(st.just("from"), st.integers(-2, 10), st.integers(1, 3)),
    st.tuples(st.just("get"), st.integers(0, 10**6)),
    st.tuples(st.just("all")),
    st.tuples(st.just("page"), st.sampled_from(TAGS), st.integers(1, 3)),
    st.tuples(st.just("even"), st.integers(1, 3)),
    st.tuples(st.just("sum"), st.sampled_from(TAGS)),
    st.tuples(st.just("iterate"), st.sampled_from(TAGS), st.integers(0, 3)),
    st.tuples(st.just("first"), st.integers(-1, 10)),
)
KEYS = st.integers(0, 10)
WEIGHTS = st.integers(0, 13)
IDENTITIES = st.sampled_from([None, UserIdentity("alice"), UserIdentity("bob")])


class _Live:
    """One subscription and everything delivered to it."""

    def __init__(self, fn, args, identity) -> None:
        self.fn, self.args, self.identity = fn, args, identity
        self.delivered: list[tuple[str, Any]] = []
        self.sub: Any = None
        self.closed_at: int | None = None

    def on_update(self, result):
        self.delivered.append(("ok", result))

    def on_error(self, error):
        assert isinstance(error, AppError), error
        self.delivered.append(("error", error.data))

    def expected(self, db):
        try:
            return ("ok", db.query(self.fn, self.args, identity=self.identity))
        except AppError as e:
            return ("error", e.data)


class LiveQueriesMachine(RuleBasedStateMachine):
    """Random writes and (un)subscriptions of several query shapes, default dispatch."""

    dispatching = False

    @initialize()
    def start(self):
        self.queue: queue.Queue = queue.Queue()
        self.db = Database(ITEMS, dispatch=self.queue.put if self.dispatching else None)
        self.ids: list = []  # every id ever inserted, deleted ones included
        self.live: list[_Live] = []
        self.closed: list[_Live] = []
        for tag, k, w in (("a", 1, 2), ("b", 5, 3), ("a", 7, 4), ("c", 3, 1)):
            self.ids.append(self.db.mutation(m_insert, {"tag": tag, "k": k, "w": w}))

    def _id(self, i):
        return self.ids[i % len(self.ids)]

    def _write(self, fn, args):
        try:
            result = self.db.mutation(fn, args)
        except (AppError, DocumentNotFoundError):
            return None
        return result

    @rule(tag=st.sampled_from(TAGS), k=KEYS, w=WEIGHTS)
    def insert(self, tag, k, w):
        self.ids.append(self._write(m_insert, {"tag": tag, "k": k, "w": w}))

    @rule(i=st.integers(0, 10**6), k=st.none() | KEYS, w=st.none() | WEIGHTS,
          tag=st.none() | st.sampled_from(TAGS))
    def patch(self, i, k, w, tag):
        fields = {name: value for name, value in (("k", k), ("w", w), ("tag", tag))
                  if value is not None}
        self._write(m_patch, {"id": self._id(i), "fields": fields})

    @rule(i=st.integers(0, 10**6))
    def delete(self, i):
        self._write(m_delete, {"id": self._id(i)})

    @rule(ops=st.lists(st.one_of(
        st.tuples(st.just("insert"), st.fixed_dictionaries(
            {"tag": st.sampled_from(TAGS), "k": KEYS, "w": WEIGHTS})),
        st.tuples(st.just("patch"), st.integers(0, 10**6),
                  st.fixed_dictionaries({"w": WEIGHTS})),
        st.tuples(st.just("delete"), st.integers(0, 10**6)),
    ), min_size=1, max_size=5), fail=st.booleans())
    def batch(self, ops, fail):
        resolved = [list(op) if op[0] == "insert" else [op[0], self._id(op[1]), *op[2:]]
                    for op in ops]
        result = self._write(m_batch, {"ops": resolved, "fail": fail})
        if result is not None:
            assert not fail
            self.ids.extend(result)

    @rule(shape=SHAPES, identity=IDENTITIES)
    def subscribe(self, shape, identity):
        kind = shape[0]
        fn, args = {
            "latest": lambda: (m_latest, {"tag": shape[1], "n": shape[2]}),
            "range": lambda: (m_range, {"lo": shape[1], "hi": shape[2]}),
            "from": lambda: (m_from, {"lo": shape[1], "n": shape[2]}),
            "get": lambda: (m_get, {"id": self._id(shape[1])}),
            "all": lambda: (m_all, None),
            "page": lambda: (m_page, {"tag": shape[1], "n": shape[2]}),
            "even": lambda: (m_even_weights, {"n": shape[1]}),
            "sum": lambda: (m_sum, {"tag": shape[1]}),
            "iterate": lambda: (m_iterate, {"tag": shape[1], "n": shape[2]}),
            "first": lambda: (m_first, {"lo": shape[1]}),
        }[kind]()
        live = _Live(fn, args, identity)
        live.sub = self.db.subscribe(fn, args, live.on_update, on_error=live.on_error,
                                     identity=identity)
        self.live.append(live)

    @precondition(lambda self: self.live)
    @rule(i=st.integers(0, 10**6))
    def unsubscribe(self, i):
        self._deliver()
        live = self.live.pop(i % len(self.live))
        live.sub.unsubscribe()
        live.closed_at = len(live.delivered)
        self.closed.append(live)

    def _deliver(self):
        if self.dispatching:
            drain(self.queue)

    @invariant()
    def every_live_result_is_current(self):
        self._deliver()
        self.db._check()
        for live in self.live:
            assert live.delivered, (live.fn, live.args)
            expected = live.expected(self.db)
            assert live.delivered[-1] == expected, (live.fn.name, live.args, live.identity)
            if expected[0] == "ok":
                assert live.sub.result == expected[1]
                if isinstance(expected[1], PaginationResult):
                    assert live.delivered[-1][1].page == expected[1].page
            oks = [r for kind, r in live.delivered if kind == "ok"]
            kinds = [kind for kind, _ in live.delivered]
            for j in range(1, len(live.delivered)):
                if kinds[j] == kinds[j - 1] == "ok":
                    # a callback only for a changed result
                    assert live.delivered[j] != live.delivered[j - 1], (live.fn.name, oks)
        for live in self.closed:
            assert len(live.delivered) == live.closed_at, "no calls after unsubscribe"
        stats = self.db.stats()
        assert stats["subscriptions"] == len(self.live)
        distinct = {(live.fn, repr(live.args), live.identity) for live in self.live}
        assert stats["live_queries"] == len(distinct)


class DispatchedLiveQueriesMachine(LiveQueriesMachine):
    """The same through a queue dispatcher, drained before every check (coalescing)."""

    dispatching = True


_MACHINE_SETTINGS = settings(max_examples=100, stateful_step_count=30, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])
TestLiveQueries = LiveQueriesMachine.TestCase
TestLiveQueries.settings = _MACHINE_SETTINGS
TestDispatchedLiveQueries = DispatchedLiveQueriesMachine.TestCase
TestDispatchedLiveQueries.settings = _MACHINE_SETTINGS


def test_livedb_error_is_raised_for_a_closed_database():
    db = Database(SCHEMA)
    db.close()
    with pytest.raises(LiveDBError):
        db.subscribe(count_in, {"channel": "c"}, lambda r: None)


# =======================================================================================
# args are copied; every subscriber gets its own result; exact args keys
# =======================================================================================


@query(args={"filter": v.any()})
def echo_args(ctx, filter):
    EXECUTIONS["echo_args"] += 1
    return {"filter": filter, "channel_size": len(_channel(ctx, "c").collect())}


def test_subscribe_copies_the_callers_args(db):
    args = {"filter": {"tags": ["a", "b"], "limit": 3}}
    seen = []
    sub = db.subscribe(echo_args, args, seen.append)
    args["filter"]["tags"].append("changed")
    args["filter"]["limit"] = 99
    args["filter"] = "replaced"
    db.mutation(send, {"channel": "c", "ts": 1})
    expected = {"tags": ["a", "b"], "limit": 3}
    assert [r["filter"] for r in seen] == [expected, expected]
    twin = []
    db.subscribe(echo_args, {"filter": {"tags": ["a", "b"], "limit": 3}}, twin.append)
    assert EXECUTIONS["echo_args"] == 2, "the changed dict did not poison the shared query"
    assert twin[-1]["filter"] == expected
    sub.unsubscribe()


def test_each_subscriber_gets_its_own_copy_of_a_shared_result(db):
    db.mutation(send, {"channel": "c", "ts": 1})
    first, second = [], []

    def vandal(result):
        first.append(result)
        result[0]["body"] = "vandalized"
        result.append({"bogus": True})

    s1 = db.subscribe(latest, {"channel": "c", "n": 5}, vandal)
    s2 = db.subscribe(latest, {"channel": "c", "n": 5}, second.append)
    assert EXECUTIONS["latest"] == 1
    assert [m["body"] for m in second[-1]] == ["hi"]
    assert [m["body"] for m in s1.result] == ["hi"]
    db.mutation(send, {"channel": "c", "ts": 2})
    assert [m["ts"] for m in second[-1]] == [2, 1]
    assert [m["body"] for m in second[-1]] == ["hi", "hi"]
    assert first[-1] is not second[-1]
    s1.result.append("scribble")
    assert len(s2.result) == 2
    assert s2.result[0]["_id"].table == "messages", "ids stay Ids in copies"


def test_watchers_and_client_subscribers_get_their_own_copies(db):
    db.mutation(send, {"channel": "c", "ts": 1})
    client = db.client()
    a, b = [], []

    def vandal(result):
        a.append(result)
        result.clear()

    client.subscribe(latest, {"channel": "c", "n": 5}, vandal)
    client.subscribe(latest, {"channel": "c", "n": 5}, b.append)
    assert [m["ts"] for m in b[-1]] == [1]

    async def main():
        watch = db.watch(latest, {"channel": "c", "n": 5})
        result = await watch.__anext__()
        result.clear()
        await watch.aclose()

    asyncio.run(main())
    assert [m["ts"] for m in db.query(latest, {"channel": "c", "n": 5})] == [1]
    assert [m["ts"] for m in client.subscribe(latest, {"channel": "c", "n": 5},
                                              lambda r: None).result] == [1]
    client.close()


@query(args={"x": v.any()})
def kind_of(ctx, x):
    EXECUTIONS["kind_of"] += 1
    return f"{type(x).__name__}:{x!r}"


@pytest.mark.parametrize("a, b", [(1, 1.0), (0.0, -0.0), (True, 1), ("1", 1),
                                  ([1], [1.0]), ({"k": 0.0}, {"k": -0.0})])
def test_live_queries_with_args_a_handler_can_tell_apart_do_not_share(db, a, b):
    seen_a, seen_b = [], []
    db.subscribe(kind_of, {"x": a}, seen_a.append)
    db.subscribe(kind_of, {"x": b}, seen_b.append)
    assert EXECUTIONS["kind_of"] == 2
    assert seen_a == [f"{type(a).__name__}:{a!r}"]
    assert seen_b == [f"{type(b).__name__}:{b!r}"]
