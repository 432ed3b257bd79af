"""Vector search: cosine ranking against a brute-force reference, with and without numpy."""

from __future__ import annotations

import math
import random

import pytest

from livedb import (
    DELETE_FIELD,
    Database,
    ValidationError,
    action,
    define_schema,
    define_table,
    v,
)
from livedb import _search as search_module
from livedb import _searchindex as searchindex_module
from livedb._database import kernel_of

DIMS = 8
SCHEMA = define_schema({
    "items": define_table({"genre": v.string(), "year": v.optional(v.int64()),
                           "embedding": v.optional(v.array(v.float64()))})
    .vector_index("by_embedding", vector_field="embedding", dimensions=DIMS,
                  filter_fields=["genre", "year"]),
    "plain": define_table({"x": v.int64()}),
})


@pytest.fixture(params=["numpy", "python"])
def db(request, monkeypatch):
    if request.param == "python":
        monkeypatch.setattr(search_module, "np", None)
        monkeypatch.setattr(searchindex_module, "np", None)
    database = Database(SCHEMA)
    index = kernel_of(database).search_indexes.vector[("items", "by_embedding")]
    assert index.use_numpy == (request.param == "numpy")
    return database


def vector(rng):
    return [rng.uniform(-1, 1) for _ in range(DIMS)]


def fill(db, count, seed=1):
    rng = random.Random(seed)
    rows = [{"genre": rng.choice(["comedy", "drama", "noir"]), "year": rng.randrange(3),
             "embedding": vector(rng)} for _ in range(count)]
    ids = db.mutation(lambda ctx: [ctx.db.insert("items", row) for row in rows])
    return dict(zip(ids, rows, strict=True))


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def reference(rows, query, limit, keep=lambda row: True):
    scored = sorted(((cosine(row["embedding"], query), doc_id) for doc_id, row in rows.items()
                     if "embedding" in row and keep(row)), reverse=True)
    return scored[:limit]


def vector_search(db, query, limit=10, filter=None, table="items", index="by_embedding"):
    @action
    def run(ctx):
        return ctx.vector_search(table, index, query, limit=limit, filter=filter)

    return db.action(run)


def assert_matches(found, expected):
    """Same scores in order; ids equal except where the reference holds a near-tie."""
    assert len(found) == len(expected)
    for got, (score, doc_id) in zip(found, expected, strict=True):
        assert set(got) == {"_id", "_score"}
        assert got["_score"] == pytest.approx(score, abs=1e-5)
        if got["_id"] != doc_id:
            ties = [s for s, _ in expected if abs(s - score) < 1e-5]
            assert len(ties) > 1


def test_results_match_a_brute_force_reference(db):
    rows = fill(db, 300)
    rng = random.Random(9)
    for limit in (1, 10, 256):
        query = vector(rng)
        assert_matches(vector_search(db, query, limit), reference(rows, query, limit))
    query = vector(rng)
    default = vector_search(db, query)
    assert len(default) == 10
    assert_matches(default, reference(rows, query, 10))


def test_filters_eq_and_or(db):
    rows = fill(db, 200)
    query = vector(random.Random(3))
    found = vector_search(db, query, 20, lambda q: q.eq("genre", "noir"))
    assert_matches(found, reference(rows, query, 20, lambda r: r["genre"] == "noir"))
    found = vector_search(db, query, 50,
                          lambda q: q.or_(q.eq("genre", "comedy"), q.eq("year", 2)))
    assert_matches(found, reference(rows, query, 50,
                                    lambda r: r["genre"] == "comedy" or r["year"] == 2))
    assert vector_search(db, query, 5, lambda q: q.eq("genre", "western")) == []


def test_writes_deletes_and_replaced_vectors(db):
    rows = fill(db, 50)
    first, second = list(rows)[:2]
    target = [1.0] + [0.0] * (DIMS - 1)
    db.mutation(lambda ctx: ctx.db.patch(first, {"embedding": target}))
    rows[first]["embedding"] = target
    found = vector_search(db, target, 3)
    assert found[0]["_id"] == first and found[0]["_score"] == pytest.approx(1.0)
    db.mutation(lambda ctx: ctx.db.patch(second, {"embedding": [2.0] + [0.0] * (DIMS - 1)}))
    assert {d["_id"] for d in vector_search(db, target, 2)} == {first, second}
    db.mutation(lambda ctx: ctx.db.delete(first))
    del rows[first]
    rows[second]["embedding"] = [2.0] + [0.0] * (DIMS - 1)
    assert_matches(vector_search(db, target, 256), reference(rows, target, 256))
    db.mutation(lambda ctx: ctx.db.patch(second, {"embedding": DELETE_FIELD}))
    del rows[second]["embedding"]
    assert second not in {d["_id"] for d in vector_search(db, target, 256)}
    kernel_of(db).store.tidy(force=True)  # collection runs in batches; finish it now
    index = kernel_of(db).search_indexes.vector[("items", "by_embedding")]
    assert len(index.rows) - len(index.free) == len(rows) - 1
    assert len(index.doc_rows) == len(rows) - 1


def test_documents_without_a_vector_are_not_indexed(db):
    ids = db.mutation(lambda ctx: [ctx.db.insert("items", {"genre": "noir"}),
                                   ctx.db.insert("items", {"genre": "noir",
                                                           "embedding": [0.5] * DIMS})])
    found = vector_search(db, [1.0] * DIMS, 10)
    assert [d["_id"] for d in found] == [ids[1]]
    assert found[0]["_score"] == pytest.approx(1.0)


def test_a_zero_vector_scores_zero(db):
    (doc,) = db.mutation(lambda ctx: [ctx.db.insert("items", {"genre": "a",
                                                              "embedding": [0.0] * DIMS})])
    assert vector_search(db, [1.0] * DIMS) == [{"_id": doc, "_score": 0.0}]
    assert vector_search(db, [0.0] * DIMS) == [{"_id": doc, "_score": 0.0}]


@pytest.mark.parametrize("args, message", [
    ({"query": [1.0] * 3}, "the vector has 3 dimensions; the index has 8"),
    ({"query": [1.0] * 9}, "the vector has 9 dimensions; the index has 8"),
    ({"query": "nope"}, "must be a list of 8 numbers"),
    ({"query": [1.0] * 7 + [float("nan")]}, "finite numbers"),
    ({"query": [1.0] * 7 + [True]}, "finite numbers"),
    ({"limit": 0}, "limit must be an int from 1 to 256"),
    ({"limit": 257}, "limit must be an int from 1 to 256"),
    ({"limit": 2.0}, "limit must be an int from 1 to 256"),
    ({"filter": lambda q: q.eq("embedding", 1)}, "not a filter field"),
    ({"filter": lambda q: True}, "must return q.eq"),
    ({"filter": lambda q: q.or_(q.eq("genre", "a"), "b")}, "or_ takes"),
    ({"index": "missing"}, "no vector index 'missing'"),
    ({"table": "plain", "index": "x"}, "no vector index 'x'"),
    ({"table": "nowhere"}, "not in the schema"),
])
def test_bad_searches_are_validation_errors(db, args, message):
    kwargs = {"query": [1.0] * DIMS, **args}
    with pytest.raises(ValidationError, match=message):
        vector_search(db, **kwargs)


def test_writing_a_vector_of_the_wrong_size_is_a_validation_error(db):
    with pytest.raises(ValidationError, match=r"items.embedding: expected an array of 8 "
                                              r"finite numbers for vector index "
                                              r"'by_embedding', got an array of 3 values"):
        db.mutation(lambda ctx: ctx.db.insert("items", {"genre": "a",
                                                        "embedding": [1.0, 2.0, 3.0]}))
    (doc,) = db.mutation(lambda ctx: [ctx.db.insert("items", {"genre": "a",
                                                              "embedding": [1.0] * DIMS})])
    with pytest.raises(ValidationError, match="finite numbers"):
        db.mutation(lambda ctx: ctx.db.patch(doc, {"embedding": [math.inf] * DIMS}))
    assert vector_search(db, [1.0] * DIMS)[0]["_id"] == doc


def test_numpy_arrays_are_accepted_as_queries():
    import numpy as np

    db = Database(SCHEMA)
    rows = fill(db, 40)
    query = np.linspace(-1, 1, DIMS)
    assert_matches(vector_search(db, query, 5), reference(rows, query.tolist(), 5))
    scalars = [np.float32(x) for x in query]
    assert_matches(vector_search(db, scalars, 5), reference(rows, query.tolist(), 5))
    with pytest.raises(ValidationError, match="the vector has 2 dimensions"):
        vector_search(db, np.ones((2, DIMS)), 5)


def test_a_durable_database_rebuilds_its_vector_index(tmp_path, db):
    path = tmp_path / "vectors.livedb"
    with Database(SCHEMA, path=path) as durable:
        rows = fill(durable, 30)
    with Database(SCHEMA, path=path) as durable:
        query = [0.3] * DIMS
        assert_matches(vector_search(durable, query, 7), reference(rows, query, 7))


def test_only_the_newest_version_is_found_while_an_old_snapshot_is_open(db):
    (doc,) = db.mutation(lambda ctx: [ctx.db.insert("items", {"genre": "a",
                                                              "embedding": [1.0] * DIMS})])
    txn = kernel_of(db).reader()
    try:
        for k in range(5):
            db.mutation(lambda ctx, k=k: ctx.db.patch(doc, {"embedding": [float(k)] * DIMS}))
        found = vector_search(db, [1.0] * DIMS, 10)
        assert [d["_id"] for d in found] == [doc]
        index = kernel_of(db).search_indexes.vector[("items", "by_embedding")]
        assert len(index.doc_rows[doc]) > 1
    finally:
        txn.close()
    db.mutation(lambda ctx: ctx.db.insert("plain", {"x": 1}))
    db.mutation(lambda ctx: ctx.db.patch(doc, {"genre": "b"}))
    kernel_of(db).store.tidy(force=True)
    assert len(kernel_of(db).search_indexes.vector[("items", "by_embedding")].doc_rows[doc]) == 1
