"""The query builder: index ranges, order, filter, terminals and pagination."""

from __future__ import annotations

import itertools
import math
import string

import pytest

from livedb import (
    Database,
    LiveDBError,
    PaginationResult,
    ValidationError,
    define_schema,
    define_table,
    query,
    v,
)

SCHEMA = define_schema({
    "items": define_table({"cat": v.string(), "n": v.int64(), "tag": v.optional(v.string())})
    .index("by_cat", ["cat"])
    .index("by_cat_n", ["cat", "n"])
    .index("by_n", ["n"]),
    "other": define_table({"x": v.int64()}).index("by_x", ["x"]),
    "anything": define_table(v.any()).index("by_value", ["value"]),
})

ROWS = [("b", 3), ("a", 5), ("b", 1), ("a", 2), ("c", 0), ("a", 5), ("b", 7), ("a", 9),
        ("c", 4), ("a", 0), ("b", 3), ("a", 7)]


@pytest.fixture
def db():
    database = Database(SCHEMA)
    database.mutation(lambda ctx: [ctx.db.insert("items", {"cat": c, "n": n}) for c, n in ROWS])
    return database


@pytest.fixture
def empty():
    return Database(SCHEMA)


def all_docs(db):
    return db.query(lambda ctx: ctx.db.query("items").collect())


def pairs(docs):
    return [(d["cat"], d["n"]) for d in docs]


def run(db, build):
    """Run `build(ctx)` as a query; documents come back as (cat, n) pairs."""
    result = db.query(lambda ctx: [[d["cat"], d["n"]] for d in build(ctx)])
    return [tuple(p) for p in result]


def raises_at_call_time(db, build, exc=ValidationError):
    """`build(ctx)` (which stops short of any terminal) raises `exc` itself."""

    def handler(ctx):
        with pytest.raises(exc) as info:
            build(ctx)
        return str(info.value)

    return db.query(handler)


# -- order -----------------------------------------------------------------------------


def test_default_order_is_creation_time(db):
    docs = all_docs(db)
    assert pairs(docs) == ROWS
    times = [d["_creation_time"] for d in docs]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_desc_without_index_is_reverse_creation_time(db):
    assert run(db, lambda ctx: ctx.db.query("items").order("desc").collect()) == ROWS[::-1]


def test_explicit_asc(db):
    assert run(db, lambda ctx: ctx.db.query("items").order("asc").collect()) == ROWS


def test_order_rejects_other_values(db):
    raises_at_call_time(db, lambda ctx: ctx.db.query("items").order("up"))
    raises_at_call_time(db, lambda ctx: ctx.db.query("items").order("DESC"))


def test_index_order_with_ties_by_creation_time(db):
    docs = db.query(lambda ctx: ctx.db.query("items").with_index("by_n").collect())
    assert [d["n"] for d in docs] == sorted(n for _, n in ROWS)
    for n in {n for _, n in ROWS}:
        tied = [d["_creation_time"] for d in docs if d["n"] == n]
        assert tied == sorted(tied)
    desc = db.query(lambda ctx: ctx.db.query("items").with_index("by_n").order("desc").collect())
    assert [d["_id"] for d in desc] == [d["_id"] for d in docs][::-1]


def test_compound_index_order(db):
    expected = sorted(ROWS)  # ties keep insertion order, and equal pairs are equal anyway
    assert run(db, lambda ctx: ctx.db.query("items").with_index("by_cat_n").collect()) == expected
    assert run(db, lambda ctx: ctx.db.query("items").with_index("by_cat_n").order("desc")
               .collect()) == expected[::-1]


def test_whole_index_scan_without_range(db):
    assert sorted(run(db, lambda ctx: ctx.db.query("items").with_index("by_cat").collect())) \
        == sorted(ROWS)


def test_total_order_across_kinds_in_an_index(empty):
    values = [{"b": 1}, {"a": 2}, {"a": 1, "b": 0}, [1, 2], [1], [], [0, 5], b"b", b"a",
              "b", "a", "", True, False, math.nan, 2, 1.5, 1, -math.inf, math.inf, None]
    empty.mutation(lambda ctx: [ctx.db.insert("anything", {"value": x, "i": i})
                                for i, x in enumerate(values)])
    empty.mutation(lambda ctx: ctx.db.insert("anything", {"i": -1}))  # value missing
    order = empty.query(lambda ctx: [d["i"] for d in ctx.db.query("anything")
                                     .with_index("by_value").collect()])
    got = [None if i == -1 else values[i] for i in order]
    assert got[0] is None and order[0] == -1  # missing first
    assert got[1] is None  # then null
    assert got[2:7] == [-math.inf, 1, 1.5, 2, math.inf]
    assert math.isnan(got[7])  # NaN after every other number
    assert got[8:10] == [False, True]
    assert got[10:13] == ["", "a", "b"]
    assert got[13:15] == [b"a", b"b"]
    assert got[15:19] == [[], [0, 5], [1], [1, 2]]
    assert got[19:] == [{"a": 1, "b": 0}, {"a": 2}, {"b": 1}]


def test_int_and_float_compare_by_value_in_ranges(empty):
    empty.mutation(lambda ctx: [ctx.db.insert("anything", {"value": x})
                                for x in (3, 1.5, 2, 2.0, 1, 2.5, True)])
    got = empty.query(lambda ctx: [d["value"] for d in ctx.db.query("anything").with_index(
        "by_value", lambda q: q.gt("value", 1).lte("value", 2.5)).collect()])
    assert got == [1.5, 2, 2.0, 2.5]
    eq2 = empty.query(lambda ctx: ctx.db.query("anything").with_index(
        "by_value", lambda q: q.eq("value", 2.0)).collect())
    assert sorted(type(d["value"]).__name__ for d in eq2) == ["float", "int"]
    assert empty.query(lambda ctx: ctx.db.query("anything").with_index(
        "by_value", lambda q: q.eq("value", 1)).collect())[0]["value"] is not True


# -- index ranges --------------------------------------------------------------------


def test_eq_on_prefix(db):
    got = run(db, lambda ctx: ctx.db.query("items").with_index(
        "by_cat", lambda q: q.eq("cat", "a")).collect())
    assert got == [r for r in ROWS if r[0] == "a"]  # ties by creation time
    got = run(db, lambda ctx: ctx.db.query("items").with_index(
        "by_cat_n", lambda q: q.eq("cat", "a")).collect())
    assert got == sorted(r for r in ROWS if r[0] == "a")


def test_eq_on_every_field(db):
    got = run(db, lambda ctx: ctx.db.query("items").with_index(
        "by_cat_n", lambda q: q.eq("cat", "a").eq("n", 5)).collect())
    assert got == [("a", 5), ("a", 5)]


def test_eq_matching_nothing(db):
    assert run(db, lambda ctx: ctx.db.query("items").with_index(
        "by_cat", lambda q: q.eq("cat", "zzz")).collect()) == []
    assert run(db, lambda ctx: ctx.db.query("items").with_index(
        "by_n", lambda q: q.eq("n", "5")).collect()) == []


OPS = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
       "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}


def test_every_bound_combination_matches_a_model(db):
    """eq on cat, then every lower/upper bound pair on n, in both orders."""
    cases = []
    for cat in ("a", "b", "zz"):
        for lower, upper in itertools.product((None, "gt", "gte"), (None, "lt", "lte")):
            for lo, hi in itertools.product(range(-1, 11, 2), range(0, 11, 3)):
                cases.append((cat, lower, lo, upper, hi))

    def handler(ctx):
        out = []
        for cat, lower, lo, upper, hi in cases:
            for order in ("asc", "desc"):
                def rng(q, cat=cat, lower=lower, lo=lo, upper=upper, hi=hi):
                    q = q.eq("cat", cat)
                    if lower:
                        q = getattr(q, lower)("n", lo)
                    if upper:
                        q = getattr(q, upper)("n", hi)
                    return q

                docs = ctx.db.query("items").with_index("by_cat_n", rng).order(order).collect()
                out.append([d["n"] for d in docs])
        return out

    results = iter(db.query(handler))
    for cat, lower, lo, upper, hi in cases:
        expected = sorted(n for c, n in ROWS if c == cat
                          and (lower is None or OPS[lower](n, lo))
                          and (upper is None or OPS[upper](n, hi)))
        assert next(results) == expected, (cat, lower, lo, upper, hi)
        assert next(results) == expected[::-1], (cat, lower, lo, upper, hi)


def test_upper_bound_before_lower_bound(db):
    got = run(db, lambda ctx: ctx.db.query("items").with_index(
        "by_n", lambda q: q.lt("n", 5).gte("n", 2)).collect())
    assert sorted(got) == sorted(r for r in ROWS if 2 <= r[1] < 5)


def test_range_on_first_field_of_compound_index(db):
    got = run(db, lambda ctx: ctx.db.query("items").with_index(
        "by_cat_n", lambda q: q.gt("cat", "a").lte("cat", "b")).collect())
    assert got == sorted(r for r in ROWS if r[0] == "b")


def test_empty_range(db):
    assert run(db, lambda ctx: ctx.db.query("items").with_index(
        "by_n", lambda q: q.gt("n", 5).lt("n", 3)).collect()) == []
    assert run(db, lambda ctx: ctx.db.query("items").with_index(
        "by_n", lambda q: q.gt("n", 5).lt("n", 5)).collect()) == []


def test_range_function_returning_none_is_accepted(db):
    def rng(q):
        q.eq("cat", "c")

    assert run(db, lambda ctx: ctx.db.query("items").with_index("by_cat", rng).collect()) \
        == [("c", 0), ("c", 4)]


def test_builtin_by_id(db):
    docs = all_docs(db)
    target = docs[3]
    got = db.query(lambda ctx: ctx.db.query("items").with_index(
        "by_id", lambda q: q.eq("_id", target["_id"])).unique())
    assert got == target
    ordered = db.query(lambda ctx: [d["_id"] for d in
                                    ctx.db.query("items").with_index("by_id").collect()])
    assert ordered == sorted(d["_id"] for d in docs)


def test_builtin_by_creation_time(db):
    docs = all_docs(db)
    t = docs[4]["_creation_time"]
    after = db.query(lambda ctx: ctx.db.query("items").with_index(
        "by_creation_time", lambda q: q.gt("_creation_time", t)).collect())
    assert after == docs[5:]
    upto = db.query(lambda ctx: ctx.db.query("items").with_index(
        "by_creation_time", lambda q: q.lte("_creation_time", t)).order("desc").collect())
    assert upto == docs[:5][::-1]
    between = db.query(lambda ctx: ctx.db.query("items").with_index(
        "by_creation_time", lambda q: q.gte("_creation_time", docs[2]["_creation_time"])
        .lt("_creation_time", docs[6]["_creation_time"])).collect())
    assert between == docs[2:6]
    exact = db.query(lambda ctx: ctx.db.query("items").with_index(
        "by_creation_time", lambda q: q.eq("_creation_time", t)).unique())
    assert exact == docs[4]
    assert db.query(lambda ctx: ctx.db.query("items").with_index("by_creation_time")
                    .collect()) == docs


# -- wrong range shapes raise at call time -------------------------------------------


BAD_RANGES = {
    "bound before eq": ("by_cat_n", lambda q: q.gt("n", 1)),
    "eq after bound": ("by_cat_n", lambda q: q.gt("cat", "a").eq("n", 1)),
    "eq out of order": ("by_cat_n", lambda q: q.eq("n", 1).eq("cat", "a")),
    "eq on unknown field": ("by_cat", lambda q: q.eq("zzz", 1)),
    "eq past the index fields": ("by_cat", lambda q: q.eq("cat", "a").eq("n", 1)),
    "bound past the index fields": ("by_cat", lambda q: q.eq("cat", "a").gt("n", 1)),
    "two lower bounds": ("by_cat_n", lambda q: q.eq("cat", "a").gt("n", 1).gte("n", 2)),
    "two gt": ("by_n", lambda q: q.gt("n", 1).gt("n", 2)),
    "two upper bounds": ("by_cat_n", lambda q: q.eq("cat", "a").lt("n", 1).lte("n", 2)),
    "two lte": ("by_n", lambda q: q.lte("n", 1).lte("n", 2)),
    "bounds on different fields": ("by_cat_n", lambda q: q.gt("cat", "a").lt("n", 5)),
    "bound skipping a field": ("by_cat_n", lambda q: q.eq("cat", "a").gt("tag", "x")),
    "eq after lower and upper": ("by_cat_n", lambda q: q.gte("cat", "a").lte("cat", "b")
                                 .eq("n", 1)),
    "eq twice on one field": ("by_cat_n", lambda q: q.eq("cat", "a").eq("cat", "b")),
    "wrong field on by_creation_time": ("by_creation_time", lambda q: q.gt("_id", "x")),
    "wrong field on by_id": ("by_id", lambda q: q.eq("_creation_time", 1.0)),
    "unstorable value": ("by_cat", lambda q: q.eq("cat", {1, 2})),
    "non-str field": ("by_cat", lambda q: q.eq(1, "a")),
}


@pytest.mark.parametrize("case", list(BAD_RANGES), ids=list(BAD_RANGES))
def test_wrong_range_shapes_raise_validation_error_at_call_time(db, case):
    index, rng = BAD_RANGES[case]
    raises_at_call_time(db, lambda ctx: ctx.db.query("items").with_index(index, rng))


def test_unknown_index_raises_at_call_time(db):
    raises_at_call_time(db, lambda ctx: ctx.db.query("items").with_index("nope"))
    raises_at_call_time(db, lambda ctx: ctx.db.query("items").with_index("by_x"))
    raises_at_call_time(db, lambda ctx: ctx.db.query("items").with_index(
        "nope", lambda q: q.eq("cat", "a")))


def test_unknown_table_raises_at_call_time(db):
    raises_at_call_time(db, lambda ctx: ctx.db.query("nope"))


def test_builder_stage_order_is_enforced(db):
    raises_at_call_time(db, lambda ctx: ctx.db.query("items").order("desc").with_index("by_n"),
                        LiveDBError)
    raises_at_call_time(db, lambda ctx: ctx.db.query("items").with_index("by_n")
                        .with_index("by_cat"), LiveDBError)
    raises_at_call_time(db, lambda ctx: ctx.db.query("items").filter(lambda d: True)
                        .order("desc"), LiveDBError)
    raises_at_call_time(db, lambda ctx: ctx.db.query("items").order("desc").order("asc"),
                        LiveDBError)


# -- filter ----------------------------------------------------------------------------


def test_filter(db):
    got = run(db, lambda ctx: ctx.db.query("items").filter(lambda d: d["n"] > 4).collect())
    assert got == [r for r in ROWS if r[1] > 4]


def test_several_filters_all_apply(db):
    got = run(db, lambda ctx: ctx.db.query("items").filter(lambda d: d["n"] > 1)
              .filter(lambda d: d["cat"] != "a").collect())
    assert got == [r for r in ROWS if r[1] > 1 and r[0] != "a"]


def test_filter_with_index_and_order(db):
    got = run(db, lambda ctx: ctx.db.query("items").with_index("by_cat_n",
                                                               lambda q: q.eq("cat", "a"))
              .order("desc").filter(lambda d: d["n"] % 2 == 1).collect())
    assert got == sorted((r for r in ROWS if r[0] == "a" and r[1] % 2), reverse=True)


def test_filter_sees_whole_documents_with_system_fields(db):
    seen = db.query(lambda ctx: ctx.db.query("items").filter(
        lambda d: "_id" in d and "_creation_time" in d).collect())
    assert len(seen) == len(ROWS)


def test_filter_exception_reaches_the_caller(db):
    class Boom(Exception):
        pass

    def predicate(doc):
        raise Boom()

    with pytest.raises(Boom):
        db.query(lambda ctx: ctx.db.query("items").filter(predicate).collect())


# -- terminals -------------------------------------------------------------------------


def test_take(db):
    assert run(db, lambda ctx: ctx.db.query("items").take(3)) == ROWS[:3]
    assert run(db, lambda ctx: ctx.db.query("items").take(0)) == []
    assert run(db, lambda ctx: ctx.db.query("items").take(100)) == ROWS
    assert run(db, lambda ctx: ctx.db.query("items").filter(lambda d: d["cat"] == "b")
               .take(2)) == [("b", 3), ("b", 1)]
    assert run(db, lambda ctx: ctx.db.query("items").with_index("by_n").order("desc")
               .take(2)) == [("a", 9), ("a", 7)]  # desc: later of the tied 7s first


def test_take_rejects_bad_counts(db):
    for bad in (-1, 1.5, "2", None):
        with pytest.raises(ValidationError):
            db.query(lambda ctx, bad=bad: ctx.db.query("items").take(bad))


def test_first(db, empty):
    assert db.query(lambda ctx: ctx.db.query("items").first())["n"] == ROWS[0][1]
    assert db.query(lambda ctx: ctx.db.query("items").order("desc").first())["n"] == ROWS[-1][1]
    assert db.query(lambda ctx: ctx.db.query("items").with_index(
        "by_cat", lambda q: q.eq("cat", "zzz")).first()) is None
    assert empty.query(lambda ctx: ctx.db.query("items").first()) is None


def test_unique(db):
    one = db.query(lambda ctx: ctx.db.query("items").with_index(
        "by_cat_n", lambda q: q.eq("cat", "c").eq("n", 4)).unique())
    assert (one["cat"], one["n"]) == ("c", 4)
    assert db.query(lambda ctx: ctx.db.query("items").with_index(
        "by_cat_n", lambda q: q.eq("cat", "c").eq("n", 99)).unique()) is None
    with pytest.raises(LiveDBError):
        db.query(lambda ctx: ctx.db.query("items").with_index(
            "by_cat_n", lambda q: q.eq("cat", "a").eq("n", 5)).unique())
    with pytest.raises(LiveDBError):
        db.query(lambda ctx: ctx.db.query("items").unique())
    assert db.query(lambda ctx: ctx.db.query("items").filter(
        lambda d: d["n"] == 9).unique())["cat"] == "a"


def test_collect_and_iteration_agree(db):
    def handler(ctx):
        collected = ctx.db.query("items").with_index("by_n").collect()
        iterated = [doc for doc in ctx.db.query("items").with_index("by_n")]
        listed = list(ctx.db.query("items").with_index("by_n"))
        return [collected == iterated == listed, len(collected)]

    assert db.query(handler) == [True, len(ROWS)]


def test_iteration_can_stop_early(db):
    def handler(ctx):
        out = []
        for doc in ctx.db.query("items"):
            out.append(doc["n"])
            if len(out) == 3:
                break
        return out

    assert db.query(handler) == [n for _, n in ROWS[:3]]


TERMINALS = {
    "collect": lambda q: q.collect(),
    "take": lambda q: q.take(2),
    "first": lambda q: q.first(),
    "iterate": lambda q: list(q),
    "paginate": lambda q: q.paginate(2),
    "unique": lambda q: q.filter(lambda d: d["n"] == 9).unique(),
}


@pytest.mark.parametrize("first", list(TERMINALS))
@pytest.mark.parametrize("second", list(TERMINALS))
def test_query_builder_is_single_use(db, first, second):
    def handler(ctx):
        q = ctx.db.query("items")
        TERMINALS[first](q)
        with pytest.raises(LiveDBError):
            TERMINALS[second](q)
        return True

    assert db.query(handler)


def test_builder_cannot_be_extended_after_running(db):
    def handler(ctx):
        q = ctx.db.query("items")
        q.collect()
        for extend in (lambda: q.filter(lambda d: True), lambda: q.order("desc"),
                       lambda: q.with_index("by_n")):
            with pytest.raises(LiveDBError):
                extend()
        return True

    assert db.query(handler)


def test_queries_see_a_consistent_snapshot(db):
    """Everything one query function reads comes from one snapshot."""
    def handler(ctx):
        return [len(ctx.db.query("items").collect()), len(ctx.db.query("items").collect())]

    assert db.query(handler) == [len(ROWS), len(ROWS)]


# -- pagination ------------------------------------------------------------------------


def page_through(db, num_items, build, between=None):
    """Fetch pages until done; `between(page_number)` runs between pages."""
    cursor = None
    pages = []
    for number in range(10_000):
        result = db.query(lambda ctx, cursor=cursor: build(ctx).paginate(num_items, cursor))
        assert isinstance(result, PaginationResult)
        assert isinstance(result.continue_cursor, str)
        pages.append(result.page)
        if result.is_done:
            break
        assert len(result.page) == num_items  # a page is full while more remain
        cursor = result.continue_cursor
        if between is not None:
            between(number)
    return pages


@pytest.mark.parametrize("num_items", [1, 2, 3, 5, 7, 12, 13, 100])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_pages_visit_every_document_once(db, num_items, order):
    expected = db.query(lambda ctx: ctx.db.query("items").with_index("by_n").order(order)
                        .collect())
    pages = page_through(db, num_items,
                         lambda ctx: ctx.db.query("items").with_index("by_n").order(order))
    flat = [d for page in pages for d in page]
    assert flat == expected
    assert all(len(p) <= num_items for p in pages)


@pytest.mark.parametrize("num_items", [1, 2, 4])
def test_pages_with_range_and_filter(db, num_items):
    def build(ctx):
        return (ctx.db.query("items").with_index("by_cat_n",
                                                 lambda q: q.eq("cat", "a").gte("n", 1))
                .filter(lambda d: d["n"] != 7))

    flat = [(d["cat"], d["n"]) for page in page_through(db, num_items, build) for d in page]
    assert flat == sorted(r for r in ROWS if r[0] == "a" and r[1] >= 1 and r[1] != 7)


def test_pages_with_filter_hold_num_items_passing_documents(empty):
    empty.mutation(lambda ctx: [ctx.db.insert("other", {"x": i}) for i in range(50)])
    pages = page_through(empty, 4, lambda ctx: ctx.db.query("other").filter(
        lambda d: d["x"] % 5 == 0))
    assert [d["x"] for p in pages for d in p] == list(range(0, 50, 5))
    assert [len(p) for p in pages[:-1]] == [4, 4]


def test_paginate_empty_table(empty):
    result = empty.query(lambda ctx: ctx.db.query("items").paginate(5))
    assert result.page == [] and result.is_done is True
    assert isinstance(result.continue_cursor, str)


def test_is_done_semantics(db):
    everything = db.query(lambda ctx: ctx.db.query("items").paginate(len(ROWS) + 1))
    assert everything.is_done and len(everything.page) == len(ROWS)
    partial = db.query(lambda ctx: ctx.db.query("items").paginate(len(ROWS) - 1))
    assert not partial.is_done and len(partial.page) == len(ROWS) - 1
    rest = db.query(lambda ctx: ctx.db.query("items").paginate(5, partial.continue_cursor))
    assert rest.is_done and len(rest.page) == 1
    after = db.query(lambda ctx: ctx.db.query("items").paginate(5, rest.continue_cursor))
    assert after.is_done and after.page == []
    exact = db.query(lambda ctx: ctx.db.query("items").paginate(len(ROWS)))
    assert len(exact.page) == len(ROWS)
    tail = db.query(lambda ctx: ctx.db.query("items").paginate(5, exact.continue_cursor))
    assert tail.page == [] and tail.is_done


def test_cursor_of_a_finished_query_stays_valid_after_inserts(db):
    done = db.query(lambda ctx: ctx.db.query("items").paginate(100))
    assert done.is_done
    db.mutation(lambda ctx: ctx.db.insert("items", {"cat": "z", "n": 1}))
    again = db.query(lambda ctx: ctx.db.query("items").paginate(100, done.continue_cursor))
    assert again.is_done
    assert [(d["cat"], d["n"]) for d in again.page] in ([], [("z", 1)])


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", None, True])
def test_paginate_num_items_must_be_at_least_one(db, bad):
    with pytest.raises(ValidationError):
        db.query(lambda ctx: ctx.db.query("items").paginate(bad))


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_pagination_is_stable_under_inserts_and_deletes(db, order):
    ns = iter(range(100, 1000))

    def build(ctx):
        return ctx.db.query("items").with_index("by_n").order(order)

    before = db.query(lambda ctx: build(ctx).collect())
    seen_ids: list = []
    deleted: set = set()
    cursor = None
    page_number = 0
    while True:
        result = db.query(lambda ctx, cursor=cursor: build(ctx).paginate(3, cursor))
        seen_ids.extend(d["_id"] for d in result.page)
        assert not deleted & {d["_id"] for d in result.page}
        if result.is_done:
            break
        cursor = result.continue_cursor
        page_number += 1

        def churn(ctx, page_number=page_number):
            # new documents below, inside and above everything already visited
            for n in (-5, 4, 6, next(ns)):
                ctx.db.insert("items", {"cat": "new", "n": n})
            # delete one visited and one not yet visited document
            docs = build(ctx).collect()
            gone = []
            visited = [d for d in docs if d["_id"] in seen_ids]
            unvisited = [d for d in docs if d["_id"] not in seen_ids and d["cat"] != "new"]
            if visited:
                gone.append(visited[0]["_id"])
            if unvisited and page_number % 2:
                gone.append(unvisited[-1]["_id"])
            for doc_id in gone:
                ctx.db.delete(doc_id)
            return gone

        deleted.update(db.mutation(churn))

    assert len(seen_ids) == len(set(seen_ids))  # no document twice
    survivors = [d["_id"] for d in before if d["_id"] not in deleted]
    assert set(survivors) <= set(seen_ids)  # every document that stayed, once
    positions = [seen_ids.index(i) for i in survivors]
    assert positions == sorted(positions)  # in index order


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_deleting_the_cursor_document_between_pages(db, order):
    def build(ctx):
        return ctx.db.query("items").with_index("by_n").order(order)

    expected = [d["_id"] for d in db.query(lambda ctx: build(ctx).collect())]
    first = db.query(lambda ctx: build(ctx).paginate(4))
    last_id = first.page[-1]["_id"]
    db.mutation(lambda ctx: ctx.db.delete(last_id))
    rest = []
    cursor = first.continue_cursor
    while True:
        page = db.query(lambda ctx, cursor=cursor: build(ctx).paginate(3, cursor))
        rest.extend(d["_id"] for d in page.page)
        if page.is_done:
            break
        cursor = page.continue_cursor
    assert [d["_id"] for d in first.page] + rest == expected


def test_cursor_from_another_query_is_rejected(db):
    first = db.query(lambda ctx: ctx.db.query("items").with_index("by_n").paginate(2))
    cursor = first.continue_cursor
    others = [
        lambda ctx: ctx.db.query("items").with_index("by_cat"),
        lambda ctx: ctx.db.query("items").with_index("by_n").order("desc"),
        lambda ctx: ctx.db.query("items").with_index("by_n", lambda q: q.gt("n", 2)),
        lambda ctx: ctx.db.query("items"),
        lambda ctx: ctx.db.query("other").with_index("by_x"),
        lambda ctx: ctx.db.query("items").with_index("by_id"),
    ]
    for build in others:
        with pytest.raises(ValidationError):
            db.query(lambda ctx, build=build: build(ctx).paginate(2, cursor))
        with pytest.raises(ValidationError):
            db.query(lambda ctx, build=build: build(ctx).paginate(2, None, end_cursor=cursor))
    # the same query accepts it
    again = db.query(lambda ctx: ctx.db.query("items").with_index("by_n").paginate(2, cursor))
    assert len(again.page) == 2


def test_cursor_of_same_range_values_is_accepted():
    db = Database(SCHEMA)
    db.mutation(lambda ctx: [ctx.db.insert("items", {"cat": "a", "n": i}) for i in range(6)])

    def build(ctx):
        return ctx.db.query("items").with_index("by_cat_n", lambda q: q.eq("cat", "a"))

    first = db.query(lambda ctx: build(ctx).paginate(2))
    second = db.query(lambda ctx: build(ctx).paginate(2, first.continue_cursor))
    assert [d["n"] for d in second.page] == [2, 3]
    with pytest.raises(ValidationError):
        db.query(lambda ctx: ctx.db.query("items").with_index(
            "by_cat_n", lambda q: q.eq("cat", "b")).paginate(2, first.continue_cursor))


@pytest.mark.parametrize("garbage", ["", "garbage", "!!!!", "AAAA", "a" * 200, "null",
                                     "eyJ0YWJsZSI6Iml0ZW1zIn0", 5, b"abc", ["x"]])
def test_garbage_cursor_is_rejected(db, garbage):
    with pytest.raises(ValidationError):
        db.query(lambda ctx: ctx.db.query("items").paginate(2, garbage))


def test_tampered_cursors_are_rejected_or_harmless(db):
    """Any one-character change to a cursor is a ValidationError or a valid page."""
    cursor = db.query(lambda ctx: ctx.db.query("items").with_index("by_n").paginate(3)) \
        .continue_cursor
    alphabet = string.ascii_letters + string.digits + "-_"
    failures = []

    def handler(ctx):
        for i in range(len(cursor)):
            for ch in alphabet:
                tampered = cursor[:i] + ch + cursor[i + 1:]
                try:
                    ctx.db.query("items").with_index("by_n").paginate(3, tampered)
                except ValidationError:
                    pass
                except Exception as e:  # noqa: BLE001 - collected and reported below
                    failures.append((i, ch, type(e).__name__, str(e)[:80]))
        return True

    db.query(handler)
    assert failures == []


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_end_cursor_returns_exactly_the_documents_between(db, order):
    def build(ctx):
        return ctx.db.query("items").with_index("by_n").order(order)

    p1 = db.query(lambda ctx: build(ctx).paginate(3))
    p2 = db.query(lambda ctx: build(ctx).paginate(3, p1.continue_cursor))
    p3 = db.query(lambda ctx: build(ctx).paginate(3, p2.continue_cursor))
    assert not p3.is_done

    # unchanged data: the same pages again
    again1 = db.query(lambda ctx: build(ctx).paginate(1, None, end_cursor=p1.continue_cursor))
    assert again1.page == p1.page
    assert again1.continue_cursor == p1.continue_cursor
    again2 = db.query(lambda ctx: build(ctx).paginate(
        1, p1.continue_cursor, end_cursor=p2.continue_cursor))
    assert again2.page == p2.page
    assert not again2.is_done

    # growth inside page 2 keeps its boundaries: the page grows instead of shifting.
    # A new document sorts after older ones with the same n (ties by creation time).
    assert p2.page[0]["n"] != p2.page[-1]["n"]
    inside_n = p2.page[0]["n"] if order == "asc" else p2.page[-1]["n"]
    new_id = db.mutation(lambda ctx: ctx.db.insert("items", {"cat": "new", "n": inside_n}))
    gone_id = p2.page[0]["_id"]
    db.mutation(lambda ctx: ctx.db.delete(gone_id))
    grown = db.query(lambda ctx: build(ctx).paginate(
        1, p1.continue_cursor, end_cursor=p2.continue_cursor))
    grown_ids = [d["_id"] for d in grown.page]
    assert new_id in grown_ids and gone_id not in grown_ids
    expected = [d["_id"] for d in p2.page if d["_id"] != gone_id] + [new_id]
    assert sorted(grown_ids) == sorted(expected)
    assert len(grown.page) == 3  # more than num_items: end_cursor decides, not num_items
    # the neighbouring pages are unaffected
    assert db.query(lambda ctx: build(ctx).paginate(
        3, None, end_cursor=p1.continue_cursor)).page == p1.page
    assert db.query(lambda ctx: build(ctx).paginate(
        3, p2.continue_cursor, end_cursor=p3.continue_cursor)).page == p3.page


def test_end_cursor_of_the_last_page(db):
    def build(ctx):
        return ctx.db.query("items").with_index("by_n")

    p1 = db.query(lambda ctx: build(ctx).paginate(8))
    last = db.query(lambda ctx: build(ctx).paginate(8, p1.continue_cursor))
    assert last.is_done
    db.mutation(lambda ctx: ctx.db.insert("items", {"cat": "new", "n": 100}))
    fixed = db.query(lambda ctx: build(ctx).paginate(
        1, p1.continue_cursor, end_cursor=last.continue_cursor))
    assert [d["_id"] for d in fixed.page][: len(last.page)] == [d["_id"] for d in last.page]


def test_paginate_inside_a_mutation_sees_own_writes(db):
    def handler(ctx):
        ctx.db.insert("items", {"cat": "a", "n": -1})
        first = ctx.db.query("items").with_index("by_n").paginate(1)
        return first.page[0]["n"]

    assert db.mutation(handler) == -1


def test_query_function_may_return_a_pagination_result(db):
    @query(args={"cursor": v.union(v.string(), v.null())})
    def page(ctx, cursor):
        return ctx.db.query("items").paginate(5, cursor)

    first = db.query(page, {"cursor": None})
    assert isinstance(first, PaginationResult) and len(first.page) == 5
    second = db.query(page, {"cursor": first.continue_cursor})
    assert not {d["_id"] for d in first.page} & {d["_id"] for d in second.page}


def test_a_forged_deeply_nested_cursor_is_a_validation_error(db):
    import base64

    import msgspec

    page = db.query(lambda ctx: ctx.db.query("items").paginate(1))
    version, mark, _position = msgspec.msgpack.decode(
        base64.urlsafe_b64decode(page.continue_cursor + "=" * (-len(page.continue_cursor) % 4)))
    deep = (b"\x93" + msgspec.msgpack.encode(version) + msgspec.msgpack.encode(mark)
            + b"\x91" * 200_000 + b"\xc0")
    forged = base64.urlsafe_b64encode(deep).decode().rstrip("=")
    with pytest.raises(ValidationError, match="cursor"):
        db.query(lambda ctx: ctx.db.query("items").paginate(1, forged))
    shallow_but_deep_key = (b"\x93" + msgspec.msgpack.encode(version)
                            + msgspec.msgpack.encode(mark) + b"\x91" * 500 + b"\xc0")
    forged = base64.urlsafe_b64encode(shallow_but_deep_key).decode().rstrip("=")
    with pytest.raises(ValidationError, match="cursor"):
        db.query(lambda ctx: ctx.db.query("items").paginate(1, forged))
    with pytest.raises(ValidationError, match="cursor"):
        db.query(lambda ctx: ctx.db.query("items").paginate(1, "\ud800"))
