"""Document ids: `Id` is a `str` that knows its table; `normalize_id`; no reuse."""

from __future__ import annotations

import json

import pytest

from livedb import Database, Id, define_schema, define_table, v


@pytest.fixture
def db():
    return Database(define_schema({
        "users": define_table({"name": v.string()}),
        "posts": define_table({"author": v.id("users")}),
    }))


def add_user(db, name="ann"):
    return db.mutation(lambda ctx: ctx.db.insert("users", {"name": name}))


def test_insert_returns_an_id_that_is_a_str(db):
    user = add_user(db)
    assert isinstance(user, Id)
    assert isinstance(user, str)
    assert user.table == "users"
    plain = str(user)
    assert plain == user and hash(plain) == hash(user)
    assert {plain: 1}[user] == 1
    assert json.loads(json.dumps({"id": user})) == {"id": plain}


def test_document_id_field_is_an_id(db):
    user = add_user(db)
    post = db.mutation(lambda ctx: ctx.db.insert("posts", {"author": user}))
    doc = db.query(lambda ctx: ctx.db.get(post))
    assert isinstance(doc["_id"], Id) and doc["_id"] == post
    assert doc["_id"].table == "posts"
    assert doc["author"] == user
    listed = db.query(lambda ctx: ctx.db.query("users").first())
    assert isinstance(listed["_id"], Id) and listed["_id"].table == "users"


def test_ids_of_different_tables_differ(db):
    user = add_user(db)
    post = db.mutation(lambda ctx: ctx.db.insert("posts", {"author": user}))
    assert user != post
    assert user.table != post.table


def test_id_table_of_a_plain_string_wrapped_in_id(db):
    user = add_user(db)
    assert Id(str(user)).table == "users"


def test_normalize_id_valid(db):
    user = add_user(db)

    def run(ctx):
        a = ctx.db.normalize_id("users", user)
        b = ctx.db.normalize_id("users", str(user))
        return [a, b, isinstance(a, Id), isinstance(b, Id), b.table]

    a, b, a_is_id, b_is_id, table = db.query(run)
    assert a == user and b == user
    assert a_is_id and b_is_id
    assert table == "users"


def test_normalize_id_other_table_is_none(db):
    user = add_user(db)
    assert db.query(lambda ctx: ctx.db.normalize_id("posts", user)) is None


@pytest.mark.parametrize("garbage", ["", "garbage", "users", "users:", ":", "users:!!",
                                     "users:x", " users:abcdefgh12", "users: ",
                                     "posts:users:abc"])
def test_normalize_id_garbage_is_none(db, garbage):
    assert db.query(lambda ctx: ctx.db.normalize_id("users", garbage)) is None


def test_normalize_id_of_tampered_id_is_none(db):
    user = add_user(db)
    tampered = [str(user) + "!", str(user).upper(), str(user).replace(":", "-"),
                str(user)[: str(user).index(":") + 1]]
    for candidate in tampered:
        assert db.query(lambda ctx, c=candidate: ctx.db.normalize_id("users", c)) is None


def test_normalize_id_works_in_mutations(db):
    user = add_user(db)
    assert db.mutation(lambda ctx: ctx.db.normalize_id("users", user)) == user


def test_ids_are_never_reused_after_delete(db):
    seen = set()
    for i in range(300):
        user = add_user(db, f"u{i}")
        assert user not in seen
        seen.add(user)
        db.mutation(lambda ctx, user=user: ctx.db.delete(user))
    assert db.query(lambda ctx: ctx.db.query("users").collect()) == []
    assert len(seen) == 300


def test_ids_are_never_reused_within_one_mutation(db):
    def churn(ctx):
        ids = []
        for i in range(100):
            doc_id = ctx.db.insert("users", {"name": str(i)})
            ids.append(doc_id)
            ctx.db.delete(doc_id)
        ids.append(ctx.db.insert("users", {"name": "last"}))
        return ids

    ids = db.mutation(churn)
    assert len(set(ids)) == len(ids) == 101
    more = db.mutation(churn)
    assert not set(ids) & set(more)


def test_deleted_id_stays_gone(db):
    user = add_user(db)
    db.mutation(lambda ctx: ctx.db.delete(user))
    later = [add_user(db, str(i)) for i in range(20)]
    assert user not in later
    assert db.query(lambda ctx: ctx.db.get(user)) is None


def test_ids_unique_across_many_inserts(db):
    ids = db.mutation(lambda ctx: [ctx.db.insert("users", {"name": str(i)})
                                   for i in range(2000)])
    assert len(set(ids)) == 2000
    assert all(i.table == "users" for i in ids)
