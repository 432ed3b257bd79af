"""Registered functions: decorators, arguments, return values, errors, identity, actions."""

from __future__ import annotations

import asyncio
import functools

import pytest

from livedb import (
    AppError,
    Database,
    LiveDBError,
    UserIdentity,
    ValidationError,
    action,
    define_schema,
    define_table,
    mutation,
    query,
    v,
)

SCHEMA = define_schema({
    "messages": define_table({"channel": v.string(), "body": v.string(),
                              "author": v.optional(v.string())})
    .index("by_channel", ["channel"]),
})


@pytest.fixture
def db():
    return Database(SCHEMA)


def messages(db):
    return db.query(lambda ctx: [m["body"] for m in ctx.db.query("messages").collect()])


# -- module-level functions (their names are "module:qualname") -------------------------


@query(args={"channel": v.string()})
def list_messages(ctx, channel):
    return (ctx.db.query("messages")
            .with_index("by_channel", lambda q: q.eq("channel", channel))
            .order("desc").take(20))


@mutation(args={"channel": v.string(), "body": v.string()}, returns=v.id("messages"))
def send(ctx, channel, body):
    identity = ctx.auth.get_user_identity()
    author = identity.subject if identity is not None else None
    doc = {"channel": channel, "body": body}
    if author is not None:
        doc["author"] = author
    return ctx.db.insert("messages", doc)


@query
def bare_query(ctx, **kwargs):
    return {"kind": "bare", "args": kwargs}


@query()
def empty_parens_query(ctx, **kwargs):
    return {"kind": "parens", "args": kwargs}


@mutation
def bare_mutation(ctx, body="x"):
    return ctx.db.insert("messages", {"channel": "c", "body": body})


@action
def bare_action(ctx, n=1):
    return n * 2


@query
def whoami(ctx):
    identity = ctx.auth.get_user_identity()
    if identity is None:
        return None
    return {"subject": identity.subject, "issuer": identity.issuer,
            "token_identifier": identity.token_identifier, "name": identity.name,
            "email": identity.email}


@mutation
def whoami_mutation(ctx):
    identity = ctx.auth.get_user_identity()
    return None if identity is None else identity.token_identifier


class Api:
    @staticmethod
    @query(args={"x": v.int64()})
    def nested(ctx, x):
        return x


# -- decorator forms and keyword arguments ---------------------------------------------


def test_query_decorator_both_forms(db):
    assert db.query(bare_query) == {"kind": "bare", "args": {}}
    assert db.query(bare_query, {"a": 1, "b": [2]}) == {"kind": "bare",
                                                        "args": {"a": 1, "b": [2]}}
    assert db.query(empty_parens_query, {"z": None}) == {"kind": "parens", "args": {"z": None}}


def test_mutation_and_action_decorator_both_forms(db):
    @mutation()
    def with_parens(ctx, body):
        return ctx.db.insert("messages", {"channel": "c", "body": body})

    @action()
    def action_with_parens(ctx, n):
        return n + 1

    db.mutation(bare_mutation)
    db.mutation(bare_mutation, {"body": "y"})
    db.mutation(with_parens, {"body": "z"})
    assert messages(db) == ["x", "y", "z"]
    assert db.action(bare_action) == 2
    assert db.action(bare_action, {"n": 5}) == 10
    assert db.action(action_with_parens, {"n": 5}) == 6


def test_handlers_receive_keyword_arguments(db):
    received = {}

    @query(args={"a": v.string(), "b": v.int64()})
    def f(ctx, *, a, b):
        received.update(a=a, b=b)
        return f"{a}{b}"

    assert db.query(f, {"b": 2, "a": "x"}) == "x2"
    assert received == {"a": "x", "b": 2}


def test_args_none_means_no_arguments(db):
    @query
    def f(ctx):
        return "ok"

    assert db.query(f) == "ok"
    assert db.query(f, None) == "ok"
    assert db.query(f, {}) == "ok"


def test_example_from_the_api(db):
    me = UserIdentity("u1")
    first = db.mutation(send, {"channel": "general", "body": "hi"}, identity=me)
    db.mutation(send, {"channel": "general", "body": "there"})
    db.mutation(send, {"channel": "other", "body": "elsewhere"})
    assert first.table == "messages"
    listed = db.query(list_messages, {"channel": "general"})
    assert [m["body"] for m in listed] == ["there", "hi"]
    assert listed[1]["author"] == "u1" and "author" not in listed[0]


# -- argument validation ---------------------------------------------------------------


def test_args_validation_errors(db):
    with pytest.raises(ValidationError, match="channel: expected string, got int"):
        db.query(list_messages, {"channel": 5})
    with pytest.raises(ValidationError, match="channel"):
        db.query(list_messages, {})
    with pytest.raises(ValidationError, match="extra"):
        db.query(list_messages, {"channel": "c", "extra": 1})
    with pytest.raises(ValidationError):
        db.mutation(send, {"channel": "c", "body": None})
    with pytest.raises(ValidationError):
        db.query(list_messages, ["general"])
    assert messages(db) == []


def test_args_validation_happens_before_the_handler_runs(db):
    calls = []

    @mutation(args={"n": v.int64()})
    def f(ctx, n):
        calls.append(n)

    with pytest.raises(ValidationError):
        db.mutation(f, {"n": "1"})
    assert calls == []


def test_function_name_is_module_and_qualname(db):
    name = f"{list_messages.__module__}:list_messages"
    assert list_messages.__module__ == __name__
    with pytest.raises(ValidationError) as e:
        db.query(list_messages, {"channel": 1})
    assert name in str(e.value)
    with pytest.raises(ValidationError) as e:
        db.query(Api.nested, {"x": "no"})
    assert f"{__name__}:Api.nested" in str(e.value)

    @query(args={"y": v.string()})
    def local(ctx, y):
        return y

    with pytest.raises(ValidationError) as e:
        db.query(local, {"y": 1})
    assert (f"{__name__}:test_function_name_is_module_and_qualname.<locals>.local"
            in str(e.value))


# -- return values ---------------------------------------------------------------------


def test_returns_validation_for_queries(db):
    @query(args={"value": v.any()}, returns=v.string())
    def f(ctx, value):
        return value

    assert db.query(f, {"value": "s"}) == "s"
    with pytest.raises(ValidationError):
        db.query(f, {"value": 5})


def test_returns_float_coerces_ints(db):
    @query(returns=v.array(v.float64()))
    def f(ctx):
        return [1, 2.5]

    result = db.query(f)
    assert result == [1.0, 2.5] and type(result[0]) is float


def test_returns_failure_rolls_a_mutation_back(db):
    @mutation(returns=v.string())
    def bad(ctx):
        ctx.db.insert("messages", {"channel": "c", "body": "never"})
        return 42

    with pytest.raises(ValidationError):
        db.mutation(bad)
    assert messages(db) == []


def test_returns_failure_rolls_back_patches_and_deletes(db):
    keep = db.mutation(bare_mutation, {"body": "keep"})
    patched = db.mutation(bare_mutation, {"body": "patched"})

    @mutation(returns=v.null())
    def bad(ctx):
        ctx.db.delete(keep)
        ctx.db.patch(patched, {"body": "changed"})
        return "not null"

    with pytest.raises(ValidationError):
        db.mutation(bad)
    assert messages(db) == ["keep", "patched"]


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("data", [None, "message", 42, 1.5, True, [1, "two", None],
                                  {"code": "E_FULL", "details": {"limit": 10}}, b"raw"])
def test_app_error_round_trips_its_data(db, data):
    @query
    def fail_query(ctx):
        raise AppError(data)

    @mutation
    def fail_mutation(ctx):
        ctx.db.insert("messages", {"channel": "c", "body": "no"})
        raise AppError(data)

    @action
    def fail_action(ctx):
        raise AppError(data)

    for run, fn in ((db.query, fail_query), (db.mutation, fail_mutation),
                    (db.action, fail_action)):
        with pytest.raises(AppError) as e:
            run(fn)
        assert e.value.data == data
        assert type(e.value.data) is type(data)
        assert isinstance(e.value, LiveDBError)
    assert messages(db) == []


def test_app_error_from_a_mutation_reaches_an_action_caller(db):
    @mutation
    def fail(ctx):
        raise AppError({"why": "because"})

    @action
    def caller(ctx):
        try:
            ctx.run_mutation(fail)
        except AppError as e:
            return {"caught": e.data}
        return "not raised"

    assert db.action(caller) == {"caught": {"why": "because"}}

    @action
    def passthrough(ctx):
        ctx.run_mutation(fail)

    with pytest.raises(AppError) as e:
        db.action(passthrough)
    assert e.value.data == {"why": "because"}


class CustomError(Exception):
    pass


@pytest.mark.parametrize("exc", [CustomError("custom"), KeyError("k"), ValueError("v"),
                                 ZeroDivisionError("z")], ids=lambda e: type(e).__name__)
def test_other_exceptions_reach_the_caller_as_themselves(db, exc):
    @query
    def q(ctx):
        raise exc

    @mutation
    def m(ctx):
        ctx.db.insert("messages", {"channel": "c", "body": "no"})
        raise exc

    @action
    def a(ctx):
        raise exc

    @action
    async def async_a(ctx):
        await asyncio.sleep(0)
        raise exc

    for run, fn in ((db.query, q), (db.mutation, m), (db.action, a), (db.action, async_a)):
        with pytest.raises(type(exc)) as info:
            run(fn)
        assert info.value is exc
    assert messages(db) == []


def test_a_raising_mutation_commits_nothing(db):
    existing = db.mutation(bare_mutation, {"body": "existing"})
    doomed = db.mutation(bare_mutation, {"body": "doomed"})

    @mutation
    def half_done(ctx):
        ctx.db.insert("messages", {"channel": "c", "body": "new"})
        ctx.db.patch(existing, {"body": "changed"})
        ctx.db.delete(doomed)
        ctx.db.insert("messages", {"channel": "c", "body": "new2"})
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        db.mutation(half_done)
    assert messages(db) == ["existing", "doomed"]
    # and the database keeps working afterwards
    db.mutation(bare_mutation, {"body": "after"})
    assert messages(db) == ["existing", "doomed", "after"]


def test_a_mutation_failing_validation_midway_commits_nothing(db):
    @mutation
    def m(ctx):
        ctx.db.insert("messages", {"channel": "c", "body": "first"})
        ctx.db.insert("messages", {"channel": "c", "body": 2})

    with pytest.raises(ValidationError):
        db.mutation(m)
    assert messages(db) == []


# -- ad-hoc callables ------------------------------------------------------------------


def test_ad_hoc_callables(db):
    doc_id = db.mutation(lambda ctx: ctx.db.insert("messages", {"channel": "c", "body": "a"}))
    assert db.query(lambda ctx: ctx.db.get(doc_id)["body"]) == "a"

    def plain(ctx):
        return len(ctx.db.query("messages").collect())

    assert db.query(plain) == 1

    class Counter:
        def __call__(self, ctx):
            return ctx.db.insert("messages", {"channel": "c", "body": "from object"})

    db.mutation(Counter())
    insert_body = functools.partial(
        lambda ctx, body: ctx.db.insert("messages", {"channel": "c", "body": body}), body="p")
    db.mutation(insert_body)
    assert messages(db) == ["a", "from object", "p"]


def test_ad_hoc_mutation_that_raises_commits_nothing(db):
    def m(ctx):
        ctx.db.insert("messages", {"channel": "c", "body": "x"})
        raise CustomError()

    with pytest.raises(CustomError):
        db.mutation(m)
    assert messages(db) == []


# -- kinds must match ------------------------------------------------------------------


def test_running_a_mutation_as_a_query_is_an_error(db):
    with pytest.raises((TypeError, LiveDBError)):
        db.query(bare_mutation)
    assert messages(db) == []


def test_running_an_action_as_a_query_or_mutation_is_an_error(db):
    with pytest.raises((TypeError, LiveDBError)):
        db.query(bare_action)
    with pytest.raises((TypeError, LiveDBError)):
        db.mutation(bare_action)


def test_a_query_cannot_write(db):
    def sneaky(ctx):
        ctx.db.insert("messages", {"channel": "c", "body": "x"})

    with pytest.raises((AttributeError, TypeError, LiveDBError)):
        db.query(sneaky)
    assert messages(db) == []


# -- identity --------------------------------------------------------------------------


def test_user_identity_defaults():
    me = UserIdentity("u1")
    assert me.subject == "u1"
    assert me.issuer == "livedb"
    assert me.token_identifier == "livedb|u1"
    assert UserIdentity("u2", issuer="https://auth.example").token_identifier == \
        "https://auth.example|u2"


def test_identity_reaches_queries_and_mutations(db):
    me = UserIdentity("u1", name="Ann", email="ann@example.com")
    assert db.query(whoami) is None
    assert db.query(whoami, identity=me) == {"subject": "u1", "issuer": "livedb",
                                            "token_identifier": "livedb|u1", "name": "Ann",
                                            "email": "ann@example.com"}
    assert db.mutation(whoami_mutation, identity=me) == "livedb|u1"
    assert db.mutation(whoami_mutation) is None
    assert db.query(lambda ctx: ctx.auth.get_user_identity(), identity=None) is None


def test_identity_is_per_call(db):
    a, b = UserIdentity("a"), UserIdentity("b")
    assert db.query(whoami, identity=a)["subject"] == "a"
    assert db.query(whoami, identity=b)["subject"] == "b"
    assert db.query(whoami) is None


# -- actions ---------------------------------------------------------------------------


@action(args={"body": v.string()})
def post_and_read(ctx, body):
    new_id = ctx.run_mutation(send, {"channel": "general", "body": body})
    listed = ctx.run_query(list_messages, {"channel": "general"})
    return {"id": new_id, "bodies": [m["body"] for m in listed], "me": ctx.run_query(whoami)}


@action(args={"body": v.string()})
async def async_post_and_read(ctx, body):
    await asyncio.sleep(0)
    new_id = ctx.run_mutation(send, {"channel": "general", "body": body})
    await asyncio.sleep(0)
    listed = ctx.run_query(list_messages, {"channel": "general"})
    return {"id": new_id, "bodies": [m["body"] for m in listed], "me": ctx.run_query(whoami)}


@action
def outer_action(ctx):
    return {"outer": ctx.auth.get_user_identity().subject,
            "inner": ctx.run_action(inner_action),
            "async_inner": ctx.run_action(async_inner_action)}


@action
def inner_action(ctx):
    identity = ctx.auth.get_user_identity()
    return {"direct": identity.subject, "via_query": ctx.run_query(whoami)["subject"],
            "via_mutation": ctx.run_mutation(whoami_mutation)}


@action
async def async_inner_action(ctx):
    await asyncio.sleep(0)
    return ctx.run_query(whoami)["token_identifier"]


@pytest.mark.parametrize("fn", [post_and_read, async_post_and_read], ids=["sync", "async"])
def test_actions_run_queries_and_mutations_with_the_callers_identity(db, fn):
    me = UserIdentity("u1")
    result = db.action(fn, {"body": "hello"}, identity=me)
    assert result["bodies"] == ["hello"]
    assert result["me"]["token_identifier"] == "livedb|u1"
    assert result["id"].table == "messages"
    stored = db.query(lambda ctx: ctx.db.get(result["id"]))
    assert stored["author"] == "u1"

    anonymous = db.action(fn, {"body": "again"})
    assert anonymous["me"] is None
    assert "author" not in db.query(lambda ctx: ctx.db.get(anonymous["id"]))


def test_run_action_carries_identity(db):
    me = UserIdentity("u9")
    assert db.action(outer_action, identity=me) == {
        "outer": "u9",
        "inner": {"direct": "u9", "via_query": "u9", "via_mutation": "livedb|u9"},
        "async_inner": "livedb|u9",
    }


def test_action_args_and_returns_are_validated(db):
    @action(args={"n": v.int64()}, returns=v.int64())
    def f(ctx, n):
        return n if n >= 0 else "negative"

    assert db.action(f, {"n": 3}) == 3
    with pytest.raises(ValidationError):
        db.action(f, {"n": "3"})
    with pytest.raises(ValidationError):
        db.action(f, {"n": -1})


def test_actions_are_not_transactional(db):
    @action
    def f(ctx):
        ctx.run_mutation(bare_mutation, {"body": "kept"})
        raise CustomError()

    with pytest.raises(CustomError):
        db.action(f)
    assert messages(db) == ["kept"]


def test_async_action_called_from_a_running_event_loop(db):
    async def main():
        return db.action(async_post_and_read, {"body": "from loop"},
                         identity=UserIdentity("loop"))

    result = asyncio.run(main())
    assert result["bodies"] == ["from loop"]
    assert result["me"]["subject"] == "loop"


# -- friendly errors for common mistakes --------------------------------------------------


def test_writing_in_a_query_says_queries_are_read_only():
    db = Database()
    for write in (lambda ctx: ctx.db.insert("t", {"a": 1}),
                  lambda ctx: ctx.db.patch("t:00000000", {"a": 1}),
                  lambda ctx: ctx.db.replace("t:00000000", {"a": 1}),
                  lambda ctx: ctx.db.delete("t:00000000")):
        with pytest.raises(LiveDBError, match="queries are read-only.*mutation"):
            db.query(write)


def test_ctx_db_in_an_action_says_to_use_run_query_or_run_mutation():
    db = Database()
    with pytest.raises(LiveDBError, match=r"ctx\.run_query.*ctx\.run_mutation"):
        db.action(lambda ctx: ctx.db.query("t").collect())


def test_an_optional_argument_without_a_default_is_refused_at_definition():
    with pytest.raises(TypeError, match="'limit'.*no default"):
        @query(args={"channel": v.string(), "limit": v.optional(v.int64())})
        def bad(ctx, channel, limit):
            return None

    @query(args={"channel": v.string(), "limit": v.optional(v.int64())})
    def good(ctx, channel, limit=None):
        return limit

    @query(args={"limit": v.optional(v.int64())})
    def via_kwargs(ctx, **rest):
        return rest.get("limit")

    db = Database()
    assert db.query(good, {"channel": "c"}) is None
    assert db.query(via_kwargs, {}) is None
    assert db.query(via_kwargs, {"limit": 3}) == 3


def test_a_huge_int_for_a_float_field_is_a_validation_error():
    @query(args={"x": v.float64()})
    def take(ctx, x):
        return x

    with pytest.raises(ValidationError, match="too large for float64"):
        Database().query(take, {"x": 10 ** 400})
