"""Storable values: the kinds a document may hold, the limits, and copy semantics."""

from __future__ import annotations

import datetime
import decimal
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livedb import Database, Id, ValidationError, define_schema, define_table, mutation, query, v

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
MIB = 1 << 20


@pytest.fixture
def db():
    return Database()


def insert(db, doc, table="t"):
    return db.mutation(lambda ctx: ctx.db.insert(table, doc))


def get(db, doc_id):
    return db.query(lambda ctx: ctx.db.get(doc_id))


def user_fields(doc):
    return {k: val for k, val in doc.items() if not k.startswith("_")}


def nested_dicts(levels):
    """A document whose top-level dict plus nested dicts make `levels` containers."""
    value = 1
    for _ in range(levels - 1):
        value = {"a": value}
    return {"a": value}


# -- accepted kinds ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -1,
        INT64_MIN,
        INT64_MAX,
        0.0,
        -0.5,
        1.5e300,
        math.inf,
        -math.inf,
        "",
        "héllo ✓",
        b"",
        b"\x00\xff",
        [],
        [1, "a", None, [2.5, b"x"]],
        {},
        {"nested": {"deep": [1, {"x": None}]}},
    ],
    ids=repr,
)
def test_storable_kinds_round_trip(db, value):
    doc_id = insert(db, {"value": value})
    stored = get(db, doc_id)
    assert stored["value"] == value
    assert type(stored["value"]) is type(value)


def test_nan_round_trips(db):
    doc_id = insert(db, {"value": math.nan, "items": [math.nan]})
    stored = get(db, doc_id)
    assert isinstance(stored["value"], float) and math.isnan(stored["value"])
    assert math.isnan(stored["items"][0])


def test_bool_stays_bool_and_int_stays_int(db):
    doc_id = insert(db, {"b": True, "i": 1, "f": 1.0})
    stored = get(db, doc_id)
    assert stored["b"] is True
    assert type(stored["i"]) is int
    assert type(stored["f"]) is float


def test_nested_underscore_field_names_are_allowed(db):
    doc_id = insert(db, {"outer": {"_inner": 1, "a_b": 2}})
    assert get(db, doc_id)["outer"] == {"_inner": 1, "a_b": 2}


def test_returned_document_is_a_plain_dict_with_system_fields(db):
    doc_id = insert(db, {"a": 1})
    stored = get(db, doc_id)
    assert type(stored) is dict
    assert stored["_id"] == doc_id and isinstance(stored["_id"], Id)
    assert isinstance(stored["_creation_time"], float)
    assert user_fields(stored) == {"a": 1}


# -- rejected kinds ------------------------------------------------------------------


class Custom:
    pass


@pytest.mark.parametrize(
    "bad",
    [
        {1, 2},
        frozenset({1}),
        (1, 2),
        datetime.datetime(2024, 1, 1),
        datetime.date(2024, 1, 1),
        Custom(),
        decimal.Decimal("1.5"),
        bytearray(b"x"),
        1 + 2j,
        INT64_MAX + 1,
        INT64_MIN - 1,
        1 << 100,
    ],
    ids=lambda x: type(x).__name__ + ":" + repr(x)[:30],
)
def test_unstorable_values_are_rejected_naming_the_path(db, bad):
    with pytest.raises(ValidationError) as top:
        insert(db, {"field": bad})
    assert "t.field" in str(top.value)

    with pytest.raises(ValidationError) as nested:
        insert(db, {"outer": {"items": [0, 1, bad]}})
    assert "t.outer.items[2]" in str(nested.value)
    assert db.query(lambda ctx: ctx.db.query("t").collect()) == []


def test_out_of_range_int_message_mentions_int64(db):
    with pytest.raises(ValidationError, match="int64"):
        insert(db, {"big": INT64_MAX + 1})


def test_document_must_be_a_dict(db):
    for bad in ([1, 2], "doc", None, 5):
        with pytest.raises(ValidationError):
            insert(db, bad)


def test_non_str_keys_are_rejected(db):
    with pytest.raises(ValidationError) as top:
        insert(db, {1: "x"})
    assert "t" in str(top.value)
    with pytest.raises(ValidationError) as nested:
        insert(db, {"outer": {2: "x"}})
    assert "t.outer" in str(nested.value)
    with pytest.raises(ValidationError):
        insert(db, {"outer": {b"k": "x"}})
    with pytest.raises(ValidationError):
        insert(db, {"outer": [{None: 1}]})


@pytest.mark.parametrize("name", ["_private", "$dollar", "_", "$"])
def test_top_level_field_names_must_not_start_with_underscore_or_dollar(db, name):
    with pytest.raises(ValidationError) as e:
        insert(db, {name: 1})
    assert name in str(e.value)


@pytest.mark.parametrize("name", ["$x", "$"])
def test_nested_field_names_must_not_start_with_dollar(db, name):
    with pytest.raises(ValidationError) as e:
        insert(db, {"outer": {"inner": [{name: 1}]}})
    message = str(e.value)
    assert name in message
    assert "t.outer.inner[0]" in message


def test_system_fields_cannot_be_given_on_insert(db):
    with pytest.raises(ValidationError):
        insert(db, {"_id": "t:0000000000000001", "a": 1})
    with pytest.raises(ValidationError):
        insert(db, {"_creation_time": 1.0, "a": 1})


# -- limits --------------------------------------------------------------------------


def test_document_size_limit(db):
    big = insert(db, {"blob": b"x" * (MIB - 1000)})
    assert len(get(db, big)["blob"]) == MIB - 1000
    with pytest.raises(ValidationError) as e:
        insert(db, {"blob": b"x" * MIB})
    message = str(e.value)
    assert "t" in message
    assert "1 MiB" in message or str(MIB) in message


def test_document_size_limit_counts_every_field(db):
    half = b"x" * (MIB // 2)
    with pytest.raises(ValidationError):
        insert(db, {"a": half, "b": half, "c": "y"})
    with pytest.raises(ValidationError):
        insert(db, {"items": ["z" * 1000] * 1100})


def test_document_size_limit_applies_to_patch_and_replace(db):
    doc_id = insert(db, {"blob": b"x" * (MIB // 2)})
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.patch(doc_id, {"more": b"y" * (MIB // 2 + 10)}))
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.replace(doc_id, {"blob": b"y" * (MIB + 10)}))
    assert len(get(db, doc_id)["blob"]) == MIB // 2
    assert "more" not in get(db, doc_id)


def test_nesting_depth_limit_dicts(db):
    doc_id = insert(db, nested_dicts(16))
    assert get(db, doc_id) is not None
    with pytest.raises(ValidationError) as e:
        insert(db, nested_dicts(17))
    message = str(e.value)
    assert "16" in message
    assert "nest" in message.lower() or "depth" in message.lower()
    assert message.startswith("t.a.a")


def test_nesting_depth_limit_lists(db):
    value = 1
    for _ in range(15):
        value = [value]
    insert(db, {"x": value})  # the document plus 15 lists: 16 levels
    with pytest.raises(ValidationError) as e:
        insert(db, {"x": [value]})
    assert "16" in str(e.value)
    assert "t.x[0]" in str(e.value)


def test_nesting_depth_limit_mixed(db):
    value = 1
    for i in range(16):
        value = [value] if i % 2 else {"k": value}
    with pytest.raises(ValidationError, match="16"):
        insert(db, {"x": value})


def test_array_length_limit(db):
    doc_id = insert(db, {"items": list(range(8192))})
    assert len(get(db, doc_id)["items"]) == 8192
    with pytest.raises(ValidationError) as e:
        insert(db, {"items": list(range(8193))})
    assert "8192" in str(e.value)
    assert "t.items" in str(e.value)
    with pytest.raises(ValidationError, match="8192"):
        insert(db, {"outer": {"inner": [[0] * 8193]}})


def test_field_name_length_limit(db):
    ok = "a" * 1024
    doc_id = insert(db, {ok: 1, "o": {ok: 2}})
    assert get(db, doc_id)[ok] == 1
    with pytest.raises(ValidationError, match="1024"):
        insert(db, {"a" * 1025: 1})
    with pytest.raises(ValidationError) as e:
        insert(db, {"o": {"b" * 1025: 1}})
    assert "1024" in str(e.value)
    assert "t.o" in str(e.value)


def test_empty_field_name_is_rejected(db):
    with pytest.raises(ValidationError):
        insert(db, {"": 1})


def test_limits_also_apply_to_patch(db):
    doc_id = insert(db, {"a": 1})
    with pytest.raises(ValidationError, match="8192"):
        db.mutation(lambda ctx: ctx.db.patch(doc_id, {"a": [0] * 8193}))
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.patch(doc_id, {"a": {1, 2}}))
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.patch(doc_id, {"$a": 1}))
    assert user_fields(get(db, doc_id)) == {"a": 1}


def test_limits_are_enforced_without_schema_validation():
    from livedb import define_schema, define_table

    schema = define_schema({"t": define_table({"a": v.string()})}, schema_validation=False)
    db = Database(schema)
    db.mutation(lambda ctx: ctx.db.insert("t", {"a": 5, "extra": [1]}))
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.insert("t", {"a": {1, 2}}))
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.insert("t", {"a": [0] * 8193}))
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.insert("t", {"a": INT64_MAX + 1}))
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: ctx.db.insert("t", {"_a": 1}))


# -- function arguments and return values are values too -------------------------------


@query
def echo(ctx, **kwargs):
    return kwargs


@query
def return_value(ctx, kind):
    return {
        "set": {1},
        "tuple": (1, 2),
        "big": INT64_MAX + 1,
        "obj": Custom(),
        "deep": nested_dicts(17),
        "long": [0] * 8193,
        "ok": {"a": [1, 2.5, None, b"x"]},
    }[kind]


def test_function_args_are_values(db):
    assert db.query(echo, {"a": [1, {"b": None}], "c": b"x"}) == {"a": [1, {"b": None}],
                                                                   "c": b"x"}
    for bad in ({1}, (1,), Custom(), INT64_MAX + 1, nested_dicts(17), "\ud800",
                {"\udfff": 1}, ["ok", "bad \ud83d"]):
        with pytest.raises(ValidationError):
            db.query(echo, {"a": bad})


def test_function_args_have_no_size_or_length_limit(db):
    """Limits bind only what is stored: args may be longer and larger than a document."""
    assert db.query(echo, {"a": b"x" * (MIB + 10)})["a"] == b"x" * (MIB + 10)
    assert len(db.query(echo, {"a": [0] * 100_000})["a"]) == 100_000
    assert len(db.query(echo, {"a": [b"x" * 1000] * 2000})["a"]) == 2000


def test_function_return_values_have_no_size_or_length_limit(db):
    @query
    def big(ctx):
        return b"x" * (MIB + 10)

    assert len(db.query(big)) == MIB + 10
    db.mutation(lambda ctx: [ctx.db.insert("t", {"s": "y" * 300}) for _ in range(5000)])
    assert len(db.query(lambda ctx: ctx.db.query("t").collect())) == 5000
    assert len(db.query(lambda ctx: [d["s"] for d in ctx.db.query("t")])) == 5000


@pytest.mark.parametrize("form", ["collect", "copy of collect", "take", "iterate"])
def test_documents_read_may_be_returned_beyond_a_documents_size(db, form):
    db.mutation(lambda ctx: [ctx.db.insert("t", {"s": b"x" * (300 * 1024)}) for _ in range(4)])
    build = {
        "collect": lambda ctx: ctx.db.query("t").collect(),
        "copy of collect": lambda ctx: list(ctx.db.query("t").collect()),
        "take": lambda ctx: ctx.db.query("t").take(4),
        "iterate": lambda ctx: list(ctx.db.query("t")),
    }[form]
    assert len(db.query(build)) == 4


def test_a_grown_read_document_is_still_checked_as_a_value(db):
    doc_id = insert(db, {"a": b"x" * (600 * 1024)})

    def grow(ctx):
        doc = ctx.db.get(doc_id)
        doc["b"] = b"y" * (600 * 1024)
        return doc

    assert len(db.query(grow)["b"]) == 600 * 1024

    def spoil(ctx):
        doc = ctx.db.get(doc_id)
        doc["b"] = "\ud800"
        return doc

    with pytest.raises(ValidationError, match="surrogate"):
        db.query(spoil)


def test_function_args_must_be_a_dict(db):
    with pytest.raises(ValidationError):
        db.query(echo, [1, 2])


def test_function_return_values_are_values(db):
    assert db.query(return_value, {"kind": "ok"}) == {"a": [1, 2.5, None, b"x"]}
    for kind in ("set", "tuple", "big", "obj", "deep"):
        with pytest.raises(ValidationError):
            db.query(return_value, {"kind": kind})
    assert db.query(return_value, {"kind": "long"}) == [0] * 8193


READ_THEN_SPOIL = {
    "get + set": lambda ctx, i: _spoil(ctx.db.get(i), "bad", {1, 2}),
    "copy of get + set": lambda ctx, i: dict(_spoil(ctx.db.get(i), "bad", {1, 2})),
    "get + object": lambda ctx, i: _spoil(ctx.db.get(i), "bad", Custom()),
    "get + $ key": lambda ctx, i: _spoil(ctx.db.get(i), "$bad", 1),
    "get + lone surrogate": lambda ctx, i: _spoil(ctx.db.get(i), "bad", "\ud800"),
    "get + nested tuple": lambda ctx, i: _spoil(ctx.db.get(i), "bad", {"t": (1,)}),
    "collect + set": lambda ctx, i: [_spoil(d, "bad", {1}) for d in
                                     ctx.db.query("t").collect()],
    "first + set": lambda ctx, i: _spoil(ctx.db.query("t").first(), "bad", {1}),
    "paginate + set": lambda ctx, i: _spoil_page(ctx.db.query("t").paginate(1), {1}),
    "nested list of docs": lambda ctx, i: {"docs": [_spoil(ctx.db.get(i), "bad", {1})]},
}


def _spoil_page(result, value):
    result.page[0]["bad"] = value
    return result


def _spoil(doc, key, value):
    doc[key] = value
    return doc


@pytest.mark.parametrize("case", list(READ_THEN_SPOIL))
def test_returned_documents_changed_by_the_handler_are_still_checked(db, case):
    """A document the function read, then changed to hold a non-storable value, is not
    a storable return value."""
    doc_id = insert(db, {"a": 1})
    spoil = READ_THEN_SPOIL[case]
    with pytest.raises(ValidationError):
        db.query(lambda ctx: spoil(ctx, doc_id))
    with pytest.raises(ValidationError):
        db.mutation(lambda ctx: spoil(ctx, doc_id))


def test_mutation_returning_unstorable_value_rolls_back(db):
    @mutation
    def bad(ctx):
        ctx.db.insert("t", {"a": 1})
        return {1, 2}

    with pytest.raises(ValidationError):
        db.mutation(bad)
    assert db.query(lambda ctx: ctx.db.query("t").collect()) == []


# -- copies --------------------------------------------------------------------------


def test_mutating_a_returned_document_does_not_change_stored_data(db):
    doc_id = insert(db, {"a": 1, "items": [1, 2], "o": {"k": [3]}})
    first = get(db, doc_id)
    first["a"] = 99
    first["items"].append(3)
    first["o"]["k"].append(4)
    first["new"] = True
    del first["_creation_time"]
    again = get(db, doc_id)
    assert user_fields(again) == {"a": 1, "items": [1, 2], "o": {"k": [3]}}
    assert "_creation_time" in again


def test_mutating_query_results_does_not_change_stored_data(db):
    insert(db, {"items": [1]})
    docs = db.query(lambda ctx: ctx.db.query("t").collect())
    docs[0]["items"].append(2)
    docs.clear()
    assert db.query(lambda ctx: ctx.db.query("t").first())["items"] == [1]


def test_two_reads_return_independent_copies(db):
    doc_id = insert(db, {"items": [1]})

    def read_twice(ctx):
        a = ctx.db.get(doc_id)
        a["items"].append(2)
        b = ctx.db.get(doc_id)
        return b["items"]

    assert db.query(read_twice) == [1]


def test_mutating_the_inserted_dict_after_insert_does_not_change_stored_data(db):
    doc = {"a": 1, "items": [1, 2], "o": {"k": "v"}}
    doc_id = insert(db, doc)
    doc["a"] = 2
    doc["items"].append(3)
    doc["o"]["k"] = "changed"
    doc["extra"] = 1
    assert user_fields(get(db, doc_id)) == {"a": 1, "items": [1, 2], "o": {"k": "v"}}


def test_mutating_the_inserted_dict_later_in_the_same_mutation(db):
    def run(ctx):
        doc = {"items": [1]}
        doc_id = ctx.db.insert("t", doc)
        doc["items"].append(2)
        doc["x"] = 1
        return doc_id

    doc_id = db.mutation(run)
    assert user_fields(get(db, doc_id)) == {"items": [1]}


def test_mutating_patch_and_replace_arguments_afterwards(db):
    doc_id = insert(db, {"a": 1})
    fields = {"items": [1]}
    db.mutation(lambda ctx: ctx.db.patch(doc_id, fields))
    fields["items"].append(2)
    assert get(db, doc_id)["items"] == [1]
    doc = {"b": [1]}
    db.mutation(lambda ctx: ctx.db.replace(doc_id, doc))
    doc["b"].append(2)
    assert user_fields(get(db, doc_id)) == {"b": [1]}


def test_mutating_a_document_read_inside_a_mutation_is_not_a_write(db):
    doc_id = insert(db, {"items": [1]})

    def run(ctx):
        ctx.db.get(doc_id)["items"].append(2)
        for doc in ctx.db.query("t").collect():
            doc["items"].append(3)

    db.mutation(run)
    assert get(db, doc_id)["items"] == [1]


@pytest.mark.parametrize("doc, path", [
    ({"s": "\ud800"}, "t.s"),
    ({"nested": {"list": ["fine", "bad\udc00"]}}, "t.nested.list[1]"),
    ({"\ud800": 1}, "t"),
    ({"outer": {"\udfffkey": 1}}, "t.outer"),
])
def test_strings_and_field_names_with_lone_surrogates_are_validation_errors(db, doc, path):
    with pytest.raises(ValidationError) as e:
        insert(db, doc)
    assert path in str(e.value)
    assert "surrogate" in str(e.value)


def test_lone_surrogates_against_a_schema_are_validation_errors():
    schema = define_schema({"t": define_table({"s": v.string(), "r": v.record(v.string(),
                                                                              v.int64())})})
    db = Database(schema)
    with pytest.raises(ValidationError, match=r"t\.s: .*surrogate"):
        insert(db, {"s": "\ud800", "r": {}})
    with pytest.raises(ValidationError, match="surrogate"):
        insert(db, {"s": "ok", "r": {"\ud800": 1}})
    assert insert(db, {"s": "caf\u00e9 \U0001f600", "r": {"\u00fc": 1}}) is not None


# -- index keys: the generated per-table function agrees with each index's key -----------

_KEY_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(),
                        st.text(max_size=3), st.binary(max_size=2),
                        st.lists(st.integers(0, 2), max_size=2),
                        st.dictionaries(st.sampled_from(["b", "c"]), st.integers(0, 2),
                                        max_size=2))


@settings(max_examples=200, deadline=None)
@given(doc=st.dictionaries(st.sampled_from(["a", "b", "n"]),
                           st.one_of(_KEY_VALUES,
                                     st.dictionaries(st.sampled_from(["b", "c"]),
                                                     _KEY_VALUES, max_size=2)),
                           max_size=3),
       ct=st.floats(min_value=0, max_value=2e9))
def test_generated_keys_match_each_index_key(doc, ct):
    """`TableInfo.keys` (generated straight-line code) gives, for any document, the keys
    each index's own key function computes (missing fields, nested paths, every kind)."""
    from livedb._catalog import TableInfo

    table = (define_table({"a": v.optional(v.any()), "b": v.optional(v.any()),
                           "n": v.optional(v.any())})
             .index("by_a", ["a"]).index("by_a_b", ["a", "b"])
             .index("by_nested", ["n.b", "a"]).index("by_n_c", ["n.c"]))
    info = TableInfo("t", table, True)
    doc_id = "t:0123456789abcdef"
    full = {"_id": doc_id, "_creation_time": ct, **doc}
    keys = info.keys(doc, doc_id, ct)
    assert keys == tuple(key_fn(full) for key_fn in info.key_fns)
    assert keys == info.keys(full, doc_id, ct)


SAME_BYTES = {
    "datetime for its ISO string": ("s", lambda s: datetime.datetime.fromisoformat(s)),
    "Decimal for a numeric string": ("d", decimal.Decimal),
    "bytearray for bytes": ("b", bytearray),
    "a memoryview for bytes": ("b", memoryview),
    "a tuple for a list": ("l", tuple),
    "a set for a list": ("l", set),
    "a renamed last field": (None, None),
}


@pytest.mark.parametrize("case", list(SAME_BYTES))
def test_read_documents_changed_to_values_that_encode_alike_are_refused(db, case):
    """A read document is judged by re-encoding it; values that msgpack would encode
    exactly as the stored ones but are not storable kinds are still refused."""
    doc_id = insert(db, {"s": "2020-01-01T00:00:00", "d": "1.5", "b": b"x", "l": [1],
                         "a": 1})
    field, change = SAME_BYTES[case]

    def spoil(doc):
        if field is None:
            doc["$a"] = doc.pop("a")
        else:
            doc[field] = change(doc[field])
        return doc

    with pytest.raises(ValidationError):
        db.query(lambda ctx: spoil(ctx.db.get(doc_id)))
    with pytest.raises(ValidationError):
        db.query(lambda ctx: [spoil(d) for d in ctx.db.query("t").collect()])


def test_read_documents_changed_to_equal_storable_values_are_returned(db):
    """Equal values of other storable kinds, and subclasses a plain check accepts, are
    fine: the result is what the function returned."""
    class Level(int):
        pass

    doc_id = insert(db, {"n": 1, "f": 2.0, "s": "x"})

    def change(doc):
        doc["n"], doc["f"], doc["s"] = True, 2, Id("t:0123456789abcdef")
        return doc

    got = db.query(lambda ctx: change(ctx.db.get(doc_id)))
    assert got["n"] is True and got["f"] == 2 and type(got["f"]) is int
    got = db.query(lambda ctx: {**ctx.db.get(doc_id), "n": Level(3)})
    assert got["n"] == 3


@pytest.mark.parametrize("n", [0, 1, 15, 16, 65535, 65536])
def test_encoded_list_matches_msgspec(n):
    from livedb._values import encode, encoded_list

    items = [i % 300 for i in range(n)]
    assert encoded_list([encode(i) for i in items]) == encode(items)
