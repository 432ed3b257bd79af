"""Validators (`v.*`), schemas, tables and index definitions."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livedb import (
    Database,
    SchemaError,
    ValidationError,
    define_schema,
    define_table,
    mutation,
    query,
    v,
)
from livedb._validators import Mismatch

INT64_MAX = (1 << 63) - 1


def field_db(validator, **schema_options):
    """A database whose table `t` has one field `f` checked by `validator`."""
    return Database(define_schema({"t": define_table({"f": validator}),
                                   "users": define_table({"name": v.string()}),
                                   "other": define_table({"name": v.string()})},
                                  **schema_options))


def store(db, doc, table="t"):
    """Insert `doc` and return it as stored (without system fields)."""
    doc_id = db.mutation(lambda ctx: ctx.db.insert(table, doc))
    stored = db.query(lambda ctx: ctx.db.get(doc_id))
    return {k: val for k, val in stored.items() if not k.startswith("_")}


def accepts(validator, value):
    """The value as stored in a field validated by `validator`."""
    return store(field_db(validator), {"f": value})["f"]


def rejects(validator, value):
    """The ValidationError message for storing `value` in a field validated by `validator`."""
    db = field_db(validator)
    with pytest.raises(ValidationError) as e:
        db.mutation(lambda ctx: ctx.db.insert("t", {"f": value}))
    assert db.query(lambda ctx: ctx.db.query("t").collect()) == []
    return str(e.value)


def an_id(table):
    db = field_db(v.any())
    return db.mutation(lambda ctx: ctx.db.insert(table, {"name": "x"}))


# -- scalars -------------------------------------------------------------------------


def test_string():
    assert accepts(v.string(), "") == ""
    assert accepts(v.string(), "abc") == "abc"
    for bad in (1, 1.5, None, True, b"x", ["a"], {"a": "b"}):
        assert rejects(v.string(), bad).startswith("t.f: expected string, got ")


def test_string_error_message_names_table_path_and_kinds():
    db = Database(define_schema({"messages": define_table({"body": v.string()})}))
    with pytest.raises(ValidationError) as e:
        db.mutation(lambda ctx: ctx.db.insert("messages", {"body": 5}))
    assert "messages.body: expected string, got int" in str(e.value)


def test_int64():
    for good in (0, -5, INT64_MAX, -(1 << 63)):
        stored = accepts(v.int64(), good)
        assert stored == good and type(stored) is int
    for bad in (1.0, 1.5, "1", None, True, False, b"1", [1]):
        assert rejects(v.int64(), bad).startswith("t.f: expected int64, got ")
    assert "got boolean" in rejects(v.int64(), True)
    assert "int64" in rejects(v.int64(), INT64_MAX + 1)
    assert "int64" in rejects(v.int64(), -(1 << 63) - 1)


@pytest.mark.parametrize("make", [v.float64, v.number], ids=["float64", "number"])
def test_float64_and_number(make):
    for good in (0.0, -2.5, 1e308, math.inf, -math.inf):
        stored = accepts(make(), good)
        assert stored == good and type(stored) is float
    assert math.isnan(accepts(make(), math.nan))
    for value in (0, 3, -7, INT64_MAX):
        stored = accepts(make(), value)
        assert type(stored) is float
        assert stored == float(value)
    for bad in (True, False, "1.5", None, b"1", [1.0]):
        assert rejects(make(), bad).startswith("t.f: expected ")
    assert "got boolean" in rejects(make(), True)


def test_float_fields_store_ints_as_floats_everywhere():
    validator = v.object({"xs": v.array(v.float64()), "r": v.record(v.string(), v.number()),
                          "o": v.optional(v.float64())})
    stored = accepts(validator, {"xs": [1, 2.5, 3], "r": {"a": 1}, "o": 7})
    assert stored == {"xs": [1.0, 2.5, 3.0], "r": {"a": 1.0}, "o": 7.0}
    assert [type(x) for x in stored["xs"]] == [float, float, float]
    assert type(stored["r"]["a"]) is float
    assert type(stored["o"]) is float


def test_float_field_coercion_does_not_change_the_callers_dict():
    doc = {"f": [1, 2]}
    store(field_db(v.array(v.float64())), doc)
    assert doc == {"f": [1, 2]} and type(doc["f"][0]) is int


def test_float_args_are_passed_as_floats():
    @query(args={"x": v.float64(), "xs": v.array(v.number())})
    def types(ctx, x, xs):
        return [type(x).__name__] + [type(i).__name__ for i in xs]

    assert Database().query(types, {"x": 1, "xs": [1, 2.0]}) == ["float", "float", "float"]


def test_boolean():
    assert accepts(v.boolean(), True) is True
    assert accepts(v.boolean(), False) is False
    for bad in (0, 1, 1.0, "true", None):
        assert rejects(v.boolean(), bad).startswith("t.f: expected boolean, got ")


def test_null():
    assert accepts(v.null(), None) is None
    for bad in (0, False, "", b"", [], {}):
        assert rejects(v.null(), bad).startswith("t.f: expected null, got ")


def test_bytes():
    assert accepts(v.bytes(), b"\x00\x01") == b"\x00\x01"
    for bad in ("x", bytearray(b"x"), [1], None, 0):
        assert rejects(v.bytes(), bad).startswith("t.f: ")


def test_any():
    for good in (None, True, 1, 1.5, "s", b"b", [1, [2]], {"a": {"b": [None]}}):
        assert accepts(v.any(), good) == good
    for bad in ({1}, (1,), object()):
        assert rejects(v.any(), bad).startswith("t.f")
    assert rejects(v.any(), {"$x": 1}).startswith("t.f")


# -- literal and id ------------------------------------------------------------------


def test_literal_string():
    assert accepts(v.literal("a"), "a") == "a"
    for bad in ("b", "", 1, None):
        assert rejects(v.literal("a"), bad).startswith("t.f: ")


def test_literal_int_and_bool_are_distinct():
    assert accepts(v.literal(1), 1) == 1
    assert rejects(v.literal(1), True).startswith("t.f: ")
    assert rejects(v.literal(1), 2).startswith("t.f: ")
    assert accepts(v.literal(True), True) is True
    assert rejects(v.literal(True), 1).startswith("t.f: ")
    assert rejects(v.literal(False), 0).startswith("t.f: ")
    assert rejects(v.literal(False), True).startswith("t.f: ")


def test_literal_none_and_float():
    assert accepts(v.literal(None), None) is None
    assert rejects(v.literal(None), 0).startswith("t.f: ")
    assert accepts(v.literal(2.5), 2.5) == 2.5
    assert rejects(v.literal(2.5), 2.4).startswith("t.f: ")


def test_id():
    db = field_db(v.id("users"))
    user = db.mutation(lambda ctx: ctx.db.insert("users", {"name": "ann"}))
    other = db.mutation(lambda ctx: ctx.db.insert("other", {"name": "bob"}))
    assert store(db, {"f": user})["f"] == user
    assert store(db, {"f": str(user)})["f"] == user
    for bad in (other, "users", "garbage", "", 5, None, b"users:x"):
        with pytest.raises(ValidationError) as e:
            db.mutation(lambda ctx, bad=bad: ctx.db.insert("t", {"f": bad}))
        assert str(e.value).startswith("t.f: ")


# -- containers ----------------------------------------------------------------------


def test_array():
    assert accepts(v.array(v.int64()), []) == []
    assert accepts(v.array(v.int64()), [1, 2, 3]) == [1, 2, 3]
    assert rejects(v.array(v.int64()), (1, 2)).startswith("t.f")
    assert rejects(v.array(v.int64()), "abc").startswith("t.f: expected array")
    assert rejects(v.array(v.int64()), {"0": 1}).startswith("t.f: expected array")
    assert rejects(v.array(v.int64()), [1, 2, "x"]).startswith("t.f[2]: expected int64, got ")
    assert "8192" in rejects(v.array(v.int64()), [0] * 8193)


def test_array_of_arrays_path():
    message = rejects(v.array(v.array(v.string())), [["a"], ["b", "c", 3]])
    assert message.startswith("t.f[1][2]: expected string, got int")


def test_object():
    validator = v.object({"a": v.string(), "b": v.optional(v.int64())})
    assert accepts(validator, {"a": "x"}) == {"a": "x"}
    assert accepts(validator, {"a": "x", "b": 2}) == {"a": "x", "b": 2}
    assert rejects(validator, "x").startswith("t.f: expected object")
    assert rejects(validator, [1]).startswith("t.f: expected object")
    assert rejects(validator, None).startswith("t.f: expected object")
    missing = rejects(validator, {"b": 1})
    assert missing.startswith("t.f.a: ") and "missing" in missing
    unexpected = rejects(validator, {"a": "x", "c": 1})
    assert unexpected.startswith("t.f.c: ") and "unexpected" in unexpected
    assert rejects(validator, {"a": 1}).startswith("t.f.a: expected string, got int")


def test_empty_object():
    assert accepts(v.object({}), {}) == {}
    assert rejects(v.object({}), {"a": 1}).startswith("t.f.a: ")


def test_nested_paths():
    db = Database(define_schema({"t": define_table({
        "items": v.array(v.object({"x": v.string()})),
        "profile": v.optional(v.object({"address": v.object({"city": v.string()})})),
    })}))
    with pytest.raises(ValidationError) as e:
        db.mutation(lambda ctx: ctx.db.insert("t", {"items": [{"x": "a"}, {"x": "b"}, {"x": 3}]}))
    assert str(e.value).startswith("t.items[2].x: expected string, got int")
    with pytest.raises(ValidationError) as e:
        db.mutation(lambda ctx: ctx.db.insert(
            "t", {"items": [], "profile": {"address": {"city": None}}}))
    assert str(e.value).startswith("t.profile.address.city: expected string, got null")
    with pytest.raises(ValidationError) as e:
        db.mutation(lambda ctx: ctx.db.insert("t", {"items": [], "profile": {"address": {}}}))
    assert str(e.value).startswith("t.profile.address.city: ")


def test_record():
    validator = v.record(v.string(), v.int64())
    assert accepts(validator, {}) == {}
    assert accepts(validator, {"a": 1, "b": 2}) == {"a": 1, "b": 2}
    assert rejects(validator, {"a": "x"}).startswith("t.f.a: expected int64, got string")
    assert rejects(validator, [1]).startswith("t.f: expected object")
    assert rejects(validator, {1: 1}).startswith("t.f")
    assert rejects(validator, {"$a": 1}).startswith("t.f")


def test_record_key_validator():
    db = field_db(v.record(v.id("users"), v.boolean()))
    user = db.mutation(lambda ctx: ctx.db.insert("users", {"name": "ann"}))
    assert store(db, {"f": {user: True}})["f"] == {user: True}
    with pytest.raises(ValidationError) as e:
        db.mutation(lambda ctx: ctx.db.insert("t", {"f": {"nope": True}}))
    assert str(e.value).startswith("t.f")
    literal_keys = v.record(v.union(v.literal("a"), v.literal("b")), v.any())
    assert accepts(literal_keys, {"a": 1, "b": 2}) == {"a": 1, "b": 2}
    assert rejects(literal_keys, {"c": 1}).startswith("t.f")


def test_union():
    validator = v.union(v.string(), v.int64())
    assert accepts(validator, "a") == "a"
    assert accepts(validator, 3) == 3
    for bad in (1.5, None, True, [1]):
        assert rejects(validator, bad).startswith("t.f: expected ")


def test_union_of_objects_reports_the_closest_member():
    validator = v.union(v.object({"kind": v.literal("a"), "n": v.int64()}),
                        v.object({"kind": v.literal("b"), "s": v.string()}))
    assert accepts(validator, {"kind": "a", "n": 1}) == {"kind": "a", "n": 1}
    assert accepts(validator, {"kind": "b", "s": "x"}) == {"kind": "b", "s": "x"}
    assert rejects(validator, {"kind": "a", "s": "x"}).startswith("t.f")
    assert rejects(validator, {"kind": "a", "n": "x"}).startswith("t.f.n: expected int64")
    assert rejects(validator, 5).startswith("t.f: expected ")


def test_union_with_float_member_coerces_ints():
    stored = accepts(v.union(v.float64(), v.string()), 2)
    assert stored == 2.0


def test_optional_field_may_be_absent():
    db = Database(define_schema({"t": define_table({"a": v.string(),
                                                    "b": v.optional(v.string())})}))
    assert store(db, {"a": "x"}) == {"a": "x"}
    assert store(db, {"a": "x", "b": "y"}) == {"a": "x", "b": "y"}


def test_optional_does_not_accept_none_unless_inner_accepts_null():
    db = Database(define_schema({"t": define_table({
        "b": v.optional(v.string()),
        "c": v.optional(v.union(v.string(), v.null())),
        "d": v.optional(v.any()),
    })}))
    with pytest.raises(ValidationError) as e:
        db.mutation(lambda ctx: ctx.db.insert("t", {"b": None}))
    assert str(e.value).startswith("t.b: expected string, got null")
    assert store(db, {"c": None}) == {"c": None}
    assert store(db, {"d": None}) == {"d": None}


def test_optional_in_nested_objects():
    validator = v.object({"x": v.optional(v.int64())})
    assert accepts(validator, {}) == {}
    assert accepts(validator, {"x": 1}) == {"x": 1}
    assert rejects(validator, {"x": None}).startswith("t.f.x: expected int64, got null")


def test_missing_and_unexpected_top_level_fields():
    db = Database(define_schema({"t": define_table({"a": v.string(), "b": v.int64()})}))
    with pytest.raises(ValidationError) as e:
        db.mutation(lambda ctx: ctx.db.insert("t", {"a": "x"}))
    assert str(e.value).startswith("t.b: ") and "missing" in str(e.value)
    with pytest.raises(ValidationError) as e:
        db.mutation(lambda ctx: ctx.db.insert("t", {"a": "x", "b": 1, "zzz": 2}))
    assert str(e.value).startswith("t.zzz: ") and "unexpected" in str(e.value)


def test_schema_validates_patch_and_replace():
    db = Database(define_schema({"t": define_table({"a": v.string(),
                                                    "b": v.optional(v.int64())})}))
    doc_id = db.mutation(lambda ctx: ctx.db.insert("t", {"a": "x"}))
    with pytest.raises(ValidationError, match=r"^t\.b: expected int64"):
        db.mutation(lambda ctx: ctx.db.patch(doc_id, {"b": "no"}))
    with pytest.raises(ValidationError, match=r"^t\.c: "):
        db.mutation(lambda ctx: ctx.db.patch(doc_id, {"c": 1}))
    with pytest.raises(ValidationError, match=r"^t\.a: "):
        db.mutation(lambda ctx: ctx.db.replace(doc_id, {"b": 1}))
    from livedb import DELETE_FIELD

    with pytest.raises(ValidationError, match=r"^t\.a: "):
        db.mutation(lambda ctx: ctx.db.patch(doc_id, {"a": DELETE_FIELD}))
    db.mutation(lambda ctx: ctx.db.patch(doc_id, {"b": 5}))
    assert db.query(lambda ctx: ctx.db.get(doc_id))["b"] == 5


def test_table_defined_by_validator_object_and_union():
    db = Database(define_schema({
        "o": define_table(v.object({"a": v.string()})),
        "u": define_table(v.union(v.object({"kind": v.literal("x"), "x": v.int64()}),
                                  v.object({"kind": v.literal("y"), "y": v.string()}))),
        "a": define_table(v.any()),
    }))
    assert store(db, {"a": "s"}, "o") == {"a": "s"}
    assert store(db, {"kind": "x", "x": 1}, "u") == {"kind": "x", "x": 1}
    assert store(db, {"kind": "y", "y": "s"}, "u") == {"kind": "y", "y": "s"}
    assert store(db, {"anything": [1]}, "a") == {"anything": [1]}
    with pytest.raises(ValidationError, match=r"^u"):
        db.mutation(lambda ctx: ctx.db.insert("u", {"kind": "x", "y": "s"}))
    with pytest.raises(ValidationError, match=r"^o"):
        db.mutation(lambda ctx: ctx.db.insert("o", {"a": 1}))


# -- argument validation -------------------------------------------------------------


def test_args_validation_nested_path():
    @mutation(args={"t": v.object({"items": v.array(v.object({"x": v.string()}))})})
    def put(ctx, t):
        return len(t["items"])

    db = Database()
    assert db.mutation(put, {"t": {"items": [{"x": "a"}]}}) == 1
    with pytest.raises(ValidationError) as e:
        db.mutation(put, {"t": {"items": [{"x": "a"}, {"x": "b"}, {"x": 3}]}})
    assert "t.items[2].x: expected string, got int" in str(e.value)


def test_args_missing_unexpected_and_optional():
    @query(args={"a": v.string(), "b": v.optional(v.int64())})
    def f(ctx, a, b=None):
        return [a, b]

    db = Database()
    assert db.query(f, {"a": "x"}) == ["x", None]
    assert db.query(f, {"a": "x", "b": 2}) == ["x", 2]
    with pytest.raises(ValidationError) as e:
        db.query(f, {})
    assert "a: missing" in str(e.value)
    with pytest.raises(ValidationError) as e:
        db.query(f, {"a": "x", "zzz": 1})
    assert "zzz: unexpected" in str(e.value)
    with pytest.raises(ValidationError, match="expected int64, got null"):
        db.query(f, {"a": "x", "b": None})


def test_args_bool_is_not_a_number():
    @query(args={"n": v.number()})
    def f(ctx, n):
        return n

    db = Database()
    assert db.query(f, {"n": 2}) == 2.0
    with pytest.raises(ValidationError, match="got boolean"):
        db.query(f, {"n": True})


# -- schema and index definitions ----------------------------------------------------


def table():
    return define_table({"a": v.string(), "b": v.int64(),
                         "profile": v.optional(v.object({"city": v.string()}))})


def test_duplicate_index_names():
    with pytest.raises(SchemaError):
        table().index("x", ["a"]).index("x", ["b"])
    with pytest.raises(SchemaError):
        table().search_index("x", search_field="a").index("x", ["a"])
    with pytest.raises(SchemaError):
        table().index("x", ["a"]).search_index("x", search_field="a")


@pytest.mark.parametrize("name", ["by_id", "by_creation_time"])
def test_reserved_index_names(name):
    with pytest.raises(SchemaError):
        table().index(name, ["a"])


def test_unknown_index_field():
    with pytest.raises(SchemaError):
        table().index("x", ["nope"])
    with pytest.raises(SchemaError):
        table().index("x", ["a", "nope"])
    with pytest.raises(SchemaError):
        table().index("x", ["nope.city"])


@pytest.mark.parametrize("fields", [[], "a", ["a", "a"], [""], ["a..b"], [".a"], ["a."],
                                    ["a b"], [1], ["profile..city"], None])
def test_bad_index_paths(fields):
    with pytest.raises(SchemaError):
        table().index("x", fields)


@pytest.mark.parametrize("field", ["_id", "_creation_time"])
def test_index_on_system_fields_is_rejected(field):
    with pytest.raises(SchemaError):
        table().index("x", [field])


@pytest.mark.parametrize("name", ["", "1abc", "has space", "a-b", 5])
def test_bad_index_names(name):
    with pytest.raises(SchemaError):
        table().index(name, ["a"])


def test_define_table_rejects_non_validators():
    with pytest.raises(SchemaError):
        define_table({"a": "string"})
    with pytest.raises(SchemaError):
        define_table(v.string())


def test_define_table_rejects_reserved_top_level_field_names():
    with pytest.raises(SchemaError):
        define_table({"$a": v.string()})
    with pytest.raises(SchemaError):
        define_table({"_a": v.string()})


def test_define_schema_rejects_bad_tables():
    with pytest.raises(SchemaError):
        define_schema({"1bad": define_table({"a": v.string()})})
    with pytest.raises(SchemaError):
        define_schema({"t": {"a": v.string()}})


def test_index_returns_the_table_for_chaining():
    t = table()
    assert t.index("by_a", ["a"]) is t


def test_dotted_index_path():
    db = Database(define_schema({"t": table().index("by_city", ["profile.city"])}))
    for name, city in [("x", "Paris"), ("y", "Berlin"), ("z", None), ("w", "Oslo")]:
        doc = {"a": name, "b": 0}
        if city is not None:
            doc["profile"] = {"city": city}
        db.mutation(lambda ctx, doc=doc: ctx.db.insert("t", doc))
    names = db.query(lambda ctx: [d["a"] for d in ctx.db.query("t").with_index("by_city")])
    assert names == ["z", "y", "w", "x"]  # a missing field sorts first
    berlin = db.query(lambda ctx: ctx.db.query("t").with_index(
        "by_city", lambda q: q.eq("profile.city", "Berlin")).collect())
    assert [d["a"] for d in berlin] == ["y"]


def test_compound_index():
    db = Database(define_schema({"t": table().index("by_a_b", ["a", "b"])}))
    rows = [("x", 3), ("y", 1), ("x", 1), ("x", 2), ("y", 0)]
    for a, b in rows:
        db.mutation(lambda ctx, a=a, b=b: ctx.db.insert("t", {"a": a, "b": b}))
    everything = db.query(lambda ctx: [[d["a"], d["b"]] for d in
                                       ctx.db.query("t").with_index("by_a_b").collect()])
    assert everything == [list(row) for row in sorted(rows)]
    xs = db.query(lambda ctx: [d["b"] for d in ctx.db.query("t").with_index(
        "by_a_b", lambda q: q.eq("a", "x").gte("b", 2)).collect()])
    assert xs == [2, 3]
    exact = db.query(lambda ctx: ctx.db.query("t").with_index(
        "by_a_b", lambda q: q.eq("a", "y").eq("b", 0)).unique())
    assert (exact["a"], exact["b"]) == ("y", 0)


# -- schemaless and relaxed schemas ----------------------------------------------------


def test_schemaless_database_accepts_any_table_and_value():
    db = Database()
    for table_name in ("anything", "Other_2", "x"):
        stored = store(db, {"a": [1, {"b": b"x"}], "n": None}, table_name)
        assert stored == {"a": [1, {"b": b"x"}], "n": None}
    docs = db.query(lambda ctx: ctx.db.query("never_written").collect())
    assert docs == []


def test_unknown_table_with_strict_names_is_a_validation_error():
    db = field_db(v.string())
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.insert("nope", {"a": 1}))
    with pytest.raises(ValidationError):
        db.query(lambda ctx: ctx.db.query("nope").collect())


def test_strict_table_names_false():
    db = field_db(v.string(), strict_table_names=False)
    assert store(db, {"anything": [1]}, "extra") == {"anything": [1]}
    assert len(db.query(lambda ctx: ctx.db.query("extra").collect())) == 1
    with pytest.raises(ValidationError, match=r"^t\.f: expected string"):
        db.mutation(lambda ctx: ctx.db.insert("t", {"f": 1}))
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.insert("extra", {"bad": {1, 2}}))


def test_schema_validation_false():
    db = Database(define_schema({"t": define_table({"f": v.string()}).index("by_f", ["f"])},
                                schema_validation=False))
    assert store(db, {"f": 5, "other": "x"}) == {"f": 5, "other": "x"}
    assert store(db, {"f": "a"}) == {"f": "a"}
    assert store(db, {}) == {}
    docs = db.query(lambda ctx: ctx.db.query("t").with_index("by_f").collect())
    assert [d.get("f") for d in docs] == [None, 5, "a"]  # missing < numbers < strings
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.insert("nope", {"f": "a"}))


# -- the generated object checks agree with the general one --------------------------------

class MyInt(int):
    pass


class MyStr(str):
    pass


_FIELD_VALIDATORS = [v.string(), v.int64(), v.float64(), v.boolean(), v.null(), v.bytes(),
                     v.any(), v.id("notes"), v.literal("a"), v.array(v.int64()),
                     v.union(v.string(), v.int64()), v.object({"x": v.optional(v.string())})]
_FIELD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False), st.text(max_size=5), st.binary(max_size=3),
    st.sampled_from(["notes:0123456789abcdef", "other:0123456789abcdef", "a", "é",
                     "\ud800", (1,), [1, "x"], {"x": "y"}, {"x": 1}, object()]),
    st.builds(MyInt, st.integers(-3, 3)), st.builds(MyStr, st.text(max_size=3)))


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(["a", "b", "c", "_d", "$e"]),
                              st.tuples(st.sampled_from(range(len(_FIELD_VALIDATORS))),
                                        st.booleans()), max_size=3),
       value=st.one_of(st.dictionaries(st.sampled_from(["a", "b", "c", "_d", "z", 5]),
                                       _FIELD_VALUES, max_size=4),
                       _FIELD_VALUES),
       stored=st.booleans(), depth=st.sampled_from([1, 2, 64, 65]))
def test_generated_object_checks_match_the_general_check(fields, value, stored, depth):
    """For any object validator and any value, the straight-line check returns what the
    general check returns (the very same object when unchanged) or raises its error."""
    try:
        validator = v.object({name: (v.optional(_FIELD_VALIDATORS[i]) if optional
                                     else _FIELD_VALIDATORS[i])
                              for name, (i, optional) in fields.items()})
    except TypeError:
        return  # a field name v.object refuses
    fast = validator.compile(stored)
    slow = fast.__wrapped__

    def outcome(check):
        try:
            result = check(value, depth)
        except Mismatch as e:
            return ("error", e.render("t"))
        return ("ok", result, result is value)

    assert outcome(fast) == outcome(slow)
