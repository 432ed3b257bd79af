"""Writes: insert, patch, replace, delete, system fields and read-your-writes."""

from __future__ import annotations

import itertools
import threading

import pytest

from livedb import (
    DELETE_FIELD,
    Database,
    DocumentNotFoundError,
    Id,
    LiveDBError,
    ValidationError,
    define_schema,
    define_table,
    v,
)

SCHEMA = define_schema({
    "tasks": define_table({"title": v.string(), "rank": v.int64(),
                           "done": v.optional(v.boolean()),
                           "meta": v.optional(v.any())})
    .index("by_rank", ["rank"])
    .index("by_done_rank", ["done", "rank"]),
})


@pytest.fixture
def db():
    return Database(SCHEMA)


def add(db, title="t", rank=0, **extra):
    return db.mutation(lambda ctx: ctx.db.insert("tasks", {"title": title, "rank": rank,
                                                           **extra}))


def get(db, doc_id):
    return db.query(lambda ctx: ctx.db.get(doc_id))


def user_fields(doc):
    return {k: val for k, val in doc.items() if not k.startswith("_")}


def missing_id():
    """A well-formed id of `tasks` that does not exist in any other database."""
    return add(Database(SCHEMA), "elsewhere")


# -- insert ----------------------------------------------------------------------------


def test_insert_adds_system_fields(db):
    doc_id = add(db, "a", 1)
    doc = get(db, doc_id)
    assert isinstance(doc_id, Id) and doc_id.table == "tasks"
    assert doc["_id"] == doc_id and isinstance(doc["_id"], Id)
    assert type(doc["_creation_time"]) is float
    assert user_fields(doc) == {"title": "a", "rank": 1}
    assert set(doc) == {"_id", "_creation_time", "title", "rank"}


def test_insert_rejects_delete_field_values(db):
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.insert("tasks", {"title": "a", "rank": 1,
                                                        "meta": DELETE_FIELD}))


def test_many_writes_in_one_mutation(db):
    ids = db.mutation(lambda ctx: [ctx.db.insert("tasks", {"title": str(i), "rank": i % 97})
                                   for i in range(5000)])
    assert len(set(ids)) == 5000
    assert db.query(lambda ctx: len(ctx.db.query("tasks").collect())) == 5000
    ranks = db.query(lambda ctx: [d["rank"] for d in
                                  ctx.db.query("tasks").with_index("by_rank").collect()])
    assert ranks == sorted(i % 97 for i in range(5000))


# -- patch -----------------------------------------------------------------------------


def test_patch_shallow_merges(db):
    doc_id = add(db, "a", 1, meta={"x": 1, "y": 2})
    before = get(db, doc_id)
    db.mutation(lambda ctx: ctx.db.patch(doc_id, {"rank": 5, "meta": {"z": 3}, "done": True}))
    after = get(db, doc_id)
    assert user_fields(after) == {"title": "a", "rank": 5, "meta": {"z": 3}, "done": True}
    assert after["_id"] == before["_id"]
    assert after["_creation_time"] == before["_creation_time"]


def test_patch_delete_field(db):
    doc_id = add(db, "a", 1, done=False, meta=[1])
    db.mutation(lambda ctx: ctx.db.patch(doc_id, {"done": DELETE_FIELD, "meta": DELETE_FIELD}))
    assert user_fields(get(db, doc_id)) == {"title": "a", "rank": 1}
    db.mutation(lambda ctx: ctx.db.patch(doc_id, {"done": DELETE_FIELD}))  # already absent
    assert user_fields(get(db, doc_id)) == {"title": "a", "rank": 1}


def test_patch_with_empty_fields_changes_nothing(db):
    doc_id = add(db, "a", 1)
    before = get(db, doc_id)
    db.mutation(lambda ctx: ctx.db.patch(doc_id, {}))
    assert get(db, doc_id) == before


def test_patch_updates_indexes(db):
    a = add(db, "a", 1)
    add(db, "b", 2)
    db.mutation(lambda ctx: ctx.db.patch(a, {"rank": 3}))
    titles = db.query(lambda ctx: [d["title"] for d in
                                   ctx.db.query("tasks").with_index("by_rank").collect()])
    assert titles == ["b", "a"]
    old = db.query(lambda ctx: ctx.db.query("tasks").with_index(
        "by_rank", lambda q: q.eq("rank", 1)).collect())
    assert old == []


def test_patch_must_be_a_dict(db):
    doc_id = add(db)
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.patch(doc_id, [("rank", 1)]))


# -- replace ---------------------------------------------------------------------------


def test_replace(db):
    doc_id = add(db, "a", 1, done=True, meta={"k": 1})
    before = get(db, doc_id)
    db.mutation(lambda ctx: ctx.db.replace(doc_id, {"title": "b", "rank": 2}))
    after = get(db, doc_id)
    assert user_fields(after) == {"title": "b", "rank": 2}
    assert after["_id"] == doc_id
    assert after["_creation_time"] == before["_creation_time"]


def test_replace_with_the_read_document(db):
    doc_id = add(db, "a", 1)

    def edit(ctx):
        doc = ctx.db.get(doc_id)
        doc["title"] = "edited"
        doc["done"] = True
        ctx.db.replace(doc_id, doc)

    db.mutation(edit)
    assert user_fields(get(db, doc_id)) == {"title": "edited", "rank": 1, "done": True}


def test_replace_updates_indexes(db):
    a = add(db, "a", 1, done=True)
    db.mutation(lambda ctx: ctx.db.replace(a, {"title": "a", "rank": 1}))
    done = db.query(lambda ctx: ctx.db.query("tasks").with_index(
        "by_done_rank", lambda q: q.eq("done", True)).collect())
    assert done == []
    not_set = db.query(lambda ctx: ctx.db.query("tasks").with_index(
        "by_done_rank", lambda q: q.lt("done", None)).collect())
    assert [d["_id"] for d in not_set] == [a]  # a missing field sorts before null


# -- delete ----------------------------------------------------------------------------


def test_delete(db):
    a, b = add(db, "a", 1), add(db, "b", 2)
    db.mutation(lambda ctx: ctx.db.delete(a))
    assert get(db, a) is None
    assert get(db, b) is not None
    assert db.query(lambda ctx: [d["_id"] for d in ctx.db.query("tasks").collect()]) == [b]
    assert db.query(lambda ctx: [d["_id"] for d in ctx.db.query("tasks").with_index(
        "by_rank").collect()]) == [b]


# -- missing documents -----------------------------------------------------------------

OPERATIONS = {
    "patch": lambda ctx, doc_id: ctx.db.patch(doc_id, {"rank": 1}),
    "replace": lambda ctx, doc_id: ctx.db.replace(doc_id, {"title": "x", "rank": 1}),
    "delete": lambda ctx, doc_id: ctx.db.delete(doc_id),
}


@pytest.mark.parametrize("op", list(OPERATIONS))
def test_missing_document_never_existed(db, op):
    add(db)
    with pytest.raises(DocumentNotFoundError) as e:
        db.mutation(lambda ctx: OPERATIONS[op](ctx, missing_id()))
    assert isinstance(e.value, LiveDBError)


@pytest.mark.parametrize("op", list(OPERATIONS))
def test_missing_document_deleted_earlier(db, op):
    doc_id = add(db)
    db.mutation(lambda ctx: ctx.db.delete(doc_id))
    with pytest.raises(DocumentNotFoundError):
        db.mutation(lambda ctx: OPERATIONS[op](ctx, doc_id))


@pytest.mark.parametrize("op", list(OPERATIONS))
def test_missing_document_deleted_in_the_same_mutation(db, op):
    doc_id = add(db)
    keep = add(db, "keep")

    def run(ctx):
        ctx.db.patch(keep, {"title": "changed"})
        ctx.db.delete(doc_id)
        OPERATIONS[op](ctx, doc_id)

    with pytest.raises(DocumentNotFoundError):
        db.mutation(run)
    assert get(db, doc_id) is not None  # the whole mutation rolled back
    assert get(db, keep)["title"] == "keep"


@pytest.mark.parametrize("op", list(OPERATIONS))
def test_garbage_ids_are_rejected(db, op):
    for garbage in ("nope", "", "tasks:", 5):
        with pytest.raises(LiveDBError):
            db.mutation(lambda ctx, g=garbage: OPERATIONS[op](ctx, g))


# -- system fields ---------------------------------------------------------------------


def test_patch_may_carry_system_fields_unchanged(db):
    doc_id = add(db, "a", 1)
    doc = get(db, doc_id)
    db.mutation(lambda ctx: ctx.db.patch(doc_id, {"_id": doc["_id"],
                                                  "_creation_time": doc["_creation_time"],
                                                  "title": "b"}))
    after = get(db, doc_id)
    assert after["title"] == "b"
    assert after["_creation_time"] == doc["_creation_time"]


def test_patch_cannot_change_system_fields(db):
    doc_id = add(db, "a", 1)
    other = add(db, "b", 2)
    doc = get(db, doc_id)
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.patch(doc_id, {"_id": other}))
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.patch(doc_id, {"_creation_time":
                                                      doc["_creation_time"] + 1}))
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.patch(doc_id, {"_id": DELETE_FIELD}))
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.patch(doc_id, {"_creation_time": DELETE_FIELD}))
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.patch(doc_id, {"_other": 1}))
    assert get(db, doc_id) == doc


def test_replace_may_carry_system_fields_only_unchanged(db):
    doc_id = add(db, "a", 1)
    other = add(db, "b", 2)
    doc = get(db, doc_id)
    db.mutation(lambda ctx: ctx.db.replace(doc_id, {**doc, "title": "c"}))
    assert get(db, doc_id)["title"] == "c"
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.replace(doc_id, {"_id": other, "title": "d", "rank": 1}))
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.replace(doc_id, {"_creation_time": 1.0, "title": "d",
                                                        "rank": 1}))
    assert get(db, doc_id)["title"] == "c"
    assert get(db, doc_id)["_creation_time"] == doc["_creation_time"]


# -- _creation_time --------------------------------------------------------------------


def test_creation_time_strictly_increasing_across_mutations(db):
    times = [get(db, add(db, str(i)))["_creation_time"] for i in range(50)]
    assert all(a < b for a, b in itertools.pairwise(times))


def test_creation_time_increasing_in_insertion_order_inside_a_mutation(db):
    ids = db.mutation(lambda ctx: [ctx.db.insert("tasks", {"title": str(i), "rank": -i})
                                   for i in range(200)])
    docs = [get(db, i) for i in ids]
    times = [d["_creation_time"] for d in docs]
    assert all(a < b for a, b in itertools.pairwise(times))
    listed = db.query(lambda ctx: [d["_id"] for d in ctx.db.query("tasks").collect()])
    assert listed == ids


def test_creation_time_with_a_clock_that_stands_still():
    db = Database(SCHEMA, clock=lambda: 1000.0)
    first = get(db, add(db, "first"))
    assert first["_creation_time"] == 1000.0
    ids = db.mutation(lambda ctx: [ctx.db.insert("tasks", {"title": str(i), "rank": 0})
                                   for i in range(100)])
    ids += [add(db, str(i)) for i in range(100)]
    times = [first["_creation_time"]] + [get(db, i)["_creation_time"] for i in ids]
    assert all(a < b for a, b in itertools.pairwise(times))
    assert all(type(t) is float for t in times)
    assert times[-1] - times[0] < 1e-6  # only nudged, not jumped ahead
    listed = db.query(lambda ctx: [d["_id"] for d in ctx.db.query("tasks").collect()])
    assert listed == [first["_id"]] + ids


def test_creation_time_follows_a_manual_clock():
    now = [500.0]
    db = Database(SCHEMA, clock=lambda: now[0])
    a = get(db, add(db, "a"))
    now[0] = 750.25
    b = get(db, add(db, "b"))
    assert a["_creation_time"] == 500.0
    assert b["_creation_time"] == 750.25


def test_creation_time_stays_increasing_when_the_clock_goes_back():
    now = [2000.0]
    db = Database(SCHEMA, clock=lambda: now[0])
    a = get(db, add(db, "a"))
    now[0] = 1000.0
    b = get(db, add(db, "b"))
    assert b["_creation_time"] > a["_creation_time"]


def test_creation_time_survives_patch_and_replace(db):
    doc_id = add(db)
    t = get(db, doc_id)["_creation_time"]
    db.mutation(lambda ctx: ctx.db.patch(doc_id, {"rank": 9}))
    db.mutation(lambda ctx: ctx.db.replace(doc_id, {"title": "r", "rank": 1}))
    assert get(db, doc_id)["_creation_time"] == t


# -- read your own writes --------------------------------------------------------------


def test_get_sees_inserts_patches_and_deletes_of_the_same_mutation(db):
    existing = add(db, "existing", 1)

    def run(ctx):
        seen = []
        new = ctx.db.insert("tasks", {"title": "new", "rank": 2})
        seen.append(ctx.db.get(new)["title"])
        ctx.db.patch(new, {"title": "new-patched"})
        seen.append(ctx.db.get(new)["title"])
        ctx.db.replace(existing, {"title": "existing-replaced", "rank": 1})
        seen.append(ctx.db.get(existing)["title"])
        ctx.db.patch(existing, {"done": True})
        seen.append(ctx.db.get(existing)["done"])
        ctx.db.delete(new)
        seen.append(ctx.db.get(new))
        ctx.db.delete(existing)
        seen.append(ctx.db.get(existing))
        return seen

    assert db.mutation(run) == ["new", "new-patched", "existing-replaced", True, None, None]
    assert db.query(lambda ctx: ctx.db.query("tasks").collect()) == []


def test_index_queries_see_own_writes_in_order(db):
    for title, rank in (("c1", 10), ("c2", 20), ("c3", 30), ("c4", 40)):
        add(db, title, rank)

    def run(ctx):
        def ranks(order="asc", rng=None):
            q = ctx.db.query("tasks").with_index("by_rank", rng).order(order)
            return [[d["title"], d["rank"]] for d in q.collect()]

        steps = {}
        n5 = ctx.db.insert("tasks", {"title": "n5", "rank": 5})
        ctx.db.insert("tasks", {"title": "n25", "rank": 25})
        ctx.db.insert("tasks", {"title": "n50", "rank": 50})
        ctx.db.insert("tasks", {"title": "n20", "rank": 20})  # ties: after committed c2
        steps["inserted"] = ranks()
        steps["inserted_desc"] = ranks("desc")
        c3 = ctx.db.query("tasks").with_index("by_rank", lambda q: q.eq("rank", 30)).unique()
        ctx.db.patch(c3["_id"], {"rank": 1})
        ctx.db.patch(n5, {"rank": 35})
        steps["patched"] = ranks()
        c1 = ctx.db.query("tasks").with_index("by_rank", lambda q: q.eq("rank", 10)).unique()
        ctx.db.delete(c1["_id"])
        steps["deleted"] = ranks()
        ctx.db.patch(c3["_id"], {"title": "c3-renamed"})  # not an indexed field
        steps["renamed"] = [d["title"] for d in ctx.db.query("tasks").with_index(
            "by_rank", lambda q: q.lte("rank", 10)).collect()]
        steps["range"] = ranks("asc", lambda q: q.gt("rank", 1).lte("rank", 35))
        steps["range_desc"] = ranks("desc", lambda q: q.gte("rank", 20).lt("rank", 50))
        steps["first"] = ctx.db.query("tasks").with_index("by_rank").first()["title"]
        steps["take"] = [d["title"] for d in
                         ctx.db.query("tasks").with_index("by_rank").order("desc").take(2)]
        steps["creation_order"] = [d["title"] for d in ctx.db.query("tasks").collect()]
        return steps

    steps = db.mutation(run)
    inserted = [("n5", 5), ("c1", 10), ("c2", 20), ("n20", 20), ("n25", 25), ("c3", 30),
                ("c4", 40), ("n50", 50)]
    assert [tuple(x) for x in steps["inserted"]] == inserted
    assert [tuple(x) for x in steps["inserted_desc"]] == inserted[::-1]
    patched = [("c3", 1), ("c1", 10), ("c2", 20), ("n20", 20), ("n25", 25), ("n5", 35),
               ("c4", 40), ("n50", 50)]
    assert [tuple(x) for x in steps["patched"]] == patched
    deleted = [p for p in patched if p[0] != "c1"]
    assert [tuple(x) for x in steps["deleted"]] == deleted
    assert [tuple(x) for x in steps["range"]] == [p for p in deleted if 1 < p[1] <= 35]
    assert [tuple(x) for x in steps["range_desc"]] == [p for p in deleted
                                                       if 20 <= p[1] < 50][::-1]
    assert steps["renamed"] == ["c3-renamed"]
    assert steps["first"] == "c3-renamed"
    assert steps["take"] == ["n50", "c4"]
    assert steps["creation_order"] == ["c2", "c3-renamed", "c4", "n5", "n25", "n50", "n20"]
    # and exactly that was committed
    committed = db.query(lambda ctx: [[d["title"], d["rank"]] for d in
                                      ctx.db.query("tasks").with_index("by_rank").collect()])
    assert [tuple(x) for x in committed] == [("c3-renamed", 1)] + deleted[1:]


def test_insert_then_delete_in_one_mutation_leaves_nothing(db):
    def run(ctx):
        doc_id = ctx.db.insert("tasks", {"title": "temp", "rank": 1})
        ctx.db.patch(doc_id, {"rank": 2})
        ctx.db.delete(doc_id)
        return [doc_id, ctx.db.query("tasks").with_index("by_rank").collect(),
                ctx.db.query("tasks").collect()]

    doc_id, by_rank, by_time = db.mutation(run)
    assert by_rank == [] and by_time == []
    assert get(db, doc_id) is None
    assert db.query(lambda ctx: ctx.db.query("tasks").with_index("by_rank").collect()) == []


def test_patch_back_and_forth_in_one_mutation(db):
    doc_id = add(db, "a", 1)
    add(db, "b", 2)

    def run(ctx):
        ctx.db.patch(doc_id, {"rank": 3})
        ctx.db.patch(doc_id, {"rank": 1})
        ctx.db.patch(doc_id, {"rank": 5})
        ctx.db.patch(doc_id, {"rank": 1})
        return [d["title"] for d in ctx.db.query("tasks").with_index("by_rank").collect()]

    assert db.mutation(run) == ["a", "b"]
    assert db.query(lambda ctx: [d["title"] for d in
                                 ctx.db.query("tasks").with_index("by_rank").collect()]) \
        == ["a", "b"]
    assert db.query(lambda ctx: ctx.db.query("tasks").with_index(
        "by_rank", lambda q: q.eq("rank", 1)).unique())["_id"] == doc_id


def test_delete_and_filter_during_iteration_in_a_mutation(db):
    for i in range(10):
        add(db, str(i), i)

    def run(ctx):
        for doc in ctx.db.query("tasks").with_index("by_rank").collect():
            if doc["rank"] % 2:
                ctx.db.delete(doc["_id"])
        return [d["rank"] for d in ctx.db.query("tasks").with_index("by_rank").collect()]

    assert db.mutation(run) == [0, 2, 4, 6, 8]
    assert db.query(lambda ctx: [d["rank"] for d in ctx.db.query("tasks").collect()]) \
        == [0, 2, 4, 6, 8]


def test_uncommitted_writes_are_invisible_to_other_readers(db):
    add(db, "committed", 1)
    seen_outside = []

    def reader():
        seen_outside.append(len(db.query(lambda c: c.db.query("tasks").collect())))

    def run(ctx):
        ctx.db.insert("tasks", {"title": "pending", "rank": 2})
        thread = threading.Thread(target=reader)
        thread.start()
        thread.join(10)  # readers never wait for a writer
        assert not thread.is_alive()

    db.mutation(run)
    assert seen_outside == [1]
    assert db.query(lambda ctx: len(ctx.db.query("tasks").collect())) == 2


# -- system tables are read-only -------------------------------------------------------


@pytest.mark.parametrize("table", ["_storage", "_scheduled_functions"])
@pytest.mark.parametrize("schemaless", [True, False])
def test_system_tables_cannot_be_written_through_ctx_db(table, schemaless):
    db = Database() if schemaless else Database(SCHEMA)
    with pytest.raises(LiveDBError):
        db.mutation(lambda ctx: ctx.db.insert(table, {"a": 1}))
    assert db.query(lambda ctx: ctx.db.system.query(table).collect()) == []


def test_creation_time_from_a_clock_returning_ints():
    db = Database(SCHEMA, clock=lambda: 1000)
    doc = get(db, add(db))
    assert doc["_creation_time"] == 1000.0 and type(doc["_creation_time"]) is float


@pytest.mark.parametrize("seed", range(6))
def test_read_your_writes_matches_a_model(seed):
    """Random writes inside one mutation; after each, reads match a model of the table."""
    import random

    rng = random.Random(seed)
    db = Database(SCHEMA, clock=lambda: 5000.0)
    committed = db.mutation(lambda ctx: [ctx.db.insert("tasks", {"title": f"c{i}",
                                                                 "rank": rng.randint(0, 9)})
                                         for i in range(rng.randint(0, 30))])

    def run(ctx):
        model = {}  # id -> (creation order, document without system fields)
        for n, doc_id in enumerate(committed):
            doc = ctx.db.get(doc_id)
            model[doc_id] = (n, user_fields(doc))
        order = len(model)
        for step in range(60):
            op = rng.random()
            if op < 0.35 or not model:
                fields = {"title": f"n{step}", "rank": rng.randint(0, 9)}
                if rng.random() < 0.3:
                    fields["done"] = rng.random() < 0.5
                model[ctx.db.insert("tasks", fields)] = (order, fields)
                order += 1
            elif op < 0.6:
                doc_id = rng.choice(sorted(model))
                change = {"rank": rng.randint(0, 9)}
                if rng.random() < 0.3:
                    change["done"] = DELETE_FIELD
                ctx.db.patch(doc_id, change)
                n, fields = model[doc_id]
                merged = {**fields, **change}
                merged = {k: val for k, val in merged.items() if val is not DELETE_FIELD}
                model[doc_id] = (n, merged)
            elif op < 0.75:
                doc_id = rng.choice(sorted(model))
                fields = {"title": f"r{step}", "rank": rng.randint(0, 9), "done": True}
                ctx.db.replace(doc_id, fields)
                model[doc_id] = (model[doc_id][0], fields)
            else:
                doc_id = rng.choice(sorted(model))
                ctx.db.delete(doc_id)
                del model[doc_id]

            by_creation = [i for i, _ in sorted(model.items(), key=lambda kv: kv[1][0])]
            assert [d["_id"] for d in ctx.db.query("tasks").collect()] == by_creation
            by_rank = sorted(model, key=lambda i: (model[i][1]["rank"], model[i][0]))
            assert [d["_id"] for d in ctx.db.query("tasks").with_index("by_rank")
                    .collect()] == by_rank
            assert [d["_id"] for d in ctx.db.query("tasks").with_index("by_rank")
                    .order("desc").collect()] == by_rank[::-1]
            lo, hi = sorted((rng.randint(0, 9), rng.randint(0, 9)))
            in_range = [i for i in by_rank if lo <= model[i][1]["rank"] < hi]
            assert [d["_id"] for d in ctx.db.query("tasks").with_index(
                "by_rank", lambda q, lo=lo, hi=hi: q.gte("rank", lo).lt("rank", hi))
                .collect()] == in_range
            assert [d["_id"] for d in ctx.db.query("tasks").with_index(
                "by_rank", lambda q, lo=lo, hi=hi: q.gte("rank", lo).lt("rank", hi))
                .order("desc").take(3)] == in_range[::-1][:3]
            probe = rng.choice(sorted(model)) if model else None
            if probe is not None:
                assert user_fields(ctx.db.get(probe)) == model[probe][1]
        return {i: fields for i, (_, fields) in model.items()}

    final = db.mutation(run)
    stored = db.query(lambda ctx: {d["_id"]: user_fields(d) for d in
                                   ctx.db.query("tasks").collect()})
    assert stored == final
