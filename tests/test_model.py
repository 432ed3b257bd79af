"""Model-based tests: livedb against a plain-dict model, and the value total order.

The stateful test drives one `items` table through inserts, patches, replaces,
deletes, all-or-nothing and read-your-writes mutations, and checks every legal
index-range shape (with order, take / collect / first / iteration / pagination)
against the model sorted by the API's total order. The reference order is written
here from API.md, independently of livedb's own key encoding.
"""

from __future__ import annotations

import math
from decimal import Decimal
from functools import cmp_to_key
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
)

import livedb
from livedb import (
    DELETE_FIELD,
    AppError,
    DocumentNotFoundError,
    define_schema,
    define_table,
    v,
)

# ---------------------------------------------------------------------------------------
# The reference total order (API.md): missing < None < numbers < bool < str < bytes
# < list < dict; ints and floats by value, NaN after every other number; lists
# element-wise with a prefix first; dicts as their sorted (key, value) pairs.
# ---------------------------------------------------------------------------------------


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def _kind(x: Any) -> int:
    if x is MISSING:
        return 0
    if x is None:
        return 1
    if isinstance(x, bool):
        return 3
    if isinstance(x, (int, float)):
        return 2
    if isinstance(x, str):
        return 4
    if isinstance(x, bytes):
        return 5
    if isinstance(x, list):
        return 6
    if isinstance(x, dict):
        return 7
    raise TypeError(f"not a value: {x!r}")


def _sign(n: int) -> int:
    return (n > 0) - (n < 0)


def ref_cmp(x: Any, y: Any) -> int:
    """-1, 0 or 1: how `x` compares to `y` in the API's total order."""
    kx, ky = _kind(x), _kind(y)
    if kx != ky:
        return _sign(kx - ky)
    if kx <= 1:
        return 0
    if kx == 2:
        xn = isinstance(x, float) and math.isnan(x)
        yn = isinstance(y, float) and math.isnan(y)
        if xn or yn:
            return int(xn) - int(yn)
        # Python compares int and float exactly (no rounding of large ints).
        return (x > y) - (x < y)
    if kx in (3, 4, 5):
        return (x > y) - (x < y)
    if kx == 6:
        for a, b in zip(x, y, strict=False):
            c = ref_cmp(a, b)
            if c:
                return c
        return _sign(len(x) - len(y))
    px = sorted(x.items(), key=lambda kv: kv[0])
    py = sorted(y.items(), key=lambda kv: kv[0])
    for (ka, va), (kb, vb) in zip(px, py, strict=False):
        if ka != kb:
            return -1 if ka < kb else 1
        c = ref_cmp(va, vb)
        if c:
            return c
    return _sign(len(px) - len(py))


def test_reference_order_sanity() -> None:
    """The hand-written reference itself follows API.md on a few fixed cases."""
    ordered = [MISSING, None, -math.inf, -5, 1, 1.5, 2, math.inf, math.nan, False, True, "",
               "A", "a", "é", b"", b"\x00", [], [None], [1], [1, 2], [2], {}, {"a": 1},
               {"a": 1, "b": 0}, {"a": 2}, {"b": 0}]
    for i, x in enumerate(ordered):
        for j, y in enumerate(ordered):
            assert ref_cmp(x, y) == _sign(i - j), (x, y)
    assert ref_cmp(1, 1.0) == 0
    assert ref_cmp(2**63 - 1, 2.0**63) == -1


# ---------------------------------------------------------------------------------------
# The stateful model test.
# ---------------------------------------------------------------------------------------

SCHEMA = define_schema({
    "items": define_table({"a": v.int64(), "b": v.string(), "c": v.optional(v.float64())})
    .index("by_a_b", ["a", "b"])
    .index("by_c", ["c"]),
})

INDEX_FIELDS = {
    "by_a_b": ("a", "b"),
    "by_c": ("c",),
    "by_creation_time": ("_creation_time",),
}

A_VALUES = st.integers(0, 5)
B_VALUES = st.sampled_from(["", "a", "ab", "b", "ba", "z"])
C_VALUES = st.one_of(
    st.sampled_from([-1.5, 0.0, -0.0, 1.0, 2.5, math.inf, -math.inf]),
    st.integers(-2, 3),  # float fields accept ints and store them as floats
)
# Bound values may be of any kind: a bound of another kind sorts wholly before or after.
A_BOUNDS = st.one_of(st.integers(-1, 6), st.sampled_from([2.5, -0.5, None, "x", True]))
B_BOUNDS = st.one_of(B_VALUES, st.sampled_from(["aa", "c", "\uffff", 3, None, b"a"]))
C_BOUNDS = st.one_of(C_VALUES, st.sampled_from([None, math.nan, 0.5, "s"]))

FIELD_BOUNDS = {"a": A_BOUNDS, "b": B_BOUNDS, "c": C_BOUNDS}
FIELD_VALUES = {"a": A_VALUES, "b": B_VALUES, "c": C_VALUES}


def _field(doc: dict, name: str) -> Any:
    return doc.get(name, MISSING)


def _doc_cmp(fields: tuple[str, ...]):
    def cmp(x: dict, y: dict) -> int:
        for f in fields:
            c = ref_cmp(_field(x, f), _field(y, f))
            if c:
                return c
        c = ref_cmp(x["_creation_time"], y["_creation_time"])
        if c:
            return c
        return (str(x["_id"]) > str(y["_id"])) - (str(x["_id"]) < str(y["_id"]))

    return cmp


class RangeSpec:
    """One legal `with_index` range: eq on a prefix, then optional bounds on the next field."""

    def __init__(self, index: str, eqs: list, bounds: list, call_style: str) -> None:
        self.index = index
        self.eqs = eqs  # [(field, value)]
        self.bounds = bounds  # [(op, field, value)] in call order, at most one lower/upper
        self.call_style = call_style  # "none" | "identity" | "apply"

    def __repr__(self) -> str:
        return (f"RangeSpec({self.index!r}, eqs={self.eqs!r}, bounds={self.bounds!r}, "
                f"{self.call_style})")

    def range_fn(self):
        if self.call_style == "none":
            return None
        if self.call_style == "identity":
            return lambda q: q

        def fn(q):
            for f, x in self.eqs:
                q = q.eq(f, x)
            for op, f, x in self.bounds:
                q = getattr(q, op)(f, x)
            return q

        return fn

    def matches(self, doc: dict) -> bool:
        for f, x in self.eqs:
            if ref_cmp(_field(doc, f), x) != 0:
                return False
        for op, f, x in self.bounds:
            c = ref_cmp(_field(doc, f), x)
            if not {"gt": c > 0, "gte": c >= 0, "lt": c < 0, "lte": c <= 0}[op]:
                return False
        return True


WHOLE_TABLE = RangeSpec("by_creation_time", [], [], "none")


@st.composite
def range_specs(draw) -> RangeSpec:
    index = draw(st.sampled_from(["by_a_b", "by_a_b", "by_a_b", "by_c", "by_creation_time"]))
    fields = INDEX_FIELDS[index]
    if index == "by_creation_time":
        return RangeSpec(index, [], [], draw(st.sampled_from(["none", "identity"])))
    shape = draw(st.sampled_from(["none", "eq_prefix", "bounds"]))
    if shape == "none":
        return RangeSpec(index, [], [], draw(st.sampled_from(["none", "identity"])))
    if shape == "eq_prefix":
        n_eq = draw(st.integers(1, len(fields)))
    else:
        n_eq = draw(st.integers(0, len(fields) - 1))
    eqs = [(f, draw(FIELD_VALUES[f] | FIELD_BOUNDS[f])) for f in fields[:n_eq]]
    bounds = []
    if shape == "bounds":
        f = fields[n_eq]
        which = draw(st.sampled_from(["lower", "upper", "both"]))
        if which in ("lower", "both"):
            bounds.append((draw(st.sampled_from(["gt", "gte"])), f, draw(FIELD_BOUNDS[f])))
        if which in ("upper", "both"):
            bounds.append((draw(st.sampled_from(["lt", "lte"])), f, draw(FIELD_BOUNDS[f])))
        if draw(st.booleans()):
            bounds.reverse()  # the upper bound may be given first
    return RangeSpec(index, eqs, bounds, "apply")


FILTERS = {
    "none": None,
    "has_c": lambda d: "c" in d,
    "b_not_a": lambda d: d["b"] != "a",
    "odd_a": lambda d: d["a"] % 2 == 1,
}

doc_bodies = st.fixed_dictionaries(
    {"a": A_VALUES, "b": B_VALUES}, optional={"c": C_VALUES})


def _stored(body: dict) -> dict:
    """What the database stores for `body`: float fields hold floats."""
    out = dict(body)
    if "c" in out:
        out["c"] = float(out["c"])
    return out


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class ItemsMachine(RuleBasedStateMachine):
    ids = Bundle("ids")

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.db = livedb.Database(SCHEMA, clock=self.clock)
        self.model: dict[str, dict] = {}

    def teardown(self) -> None:
        self.db.close()

    # -- helpers --------------------------------------------------------------------

    def expected(self, spec: RangeSpec, order: str, flt: str,
                 model: dict[str, dict] | None = None) -> list[dict]:
        docs = [d for d in (self.model if model is None else model).values()
                if spec.matches(d)]
        predicate = FILTERS[flt]
        if predicate is not None:
            docs = [d for d in docs if predicate(d)]
        docs.sort(key=cmp_to_key(_doc_cmp(INDEX_FIELDS[spec.index])), reverse=order == "desc")
        return docs

    def build(self, ctx, spec: RangeSpec, order: str, flt: str, order_style: str):
        q = ctx.db.query("items")
        fn = spec.range_fn()
        if spec.call_style == "none":
            q = q.with_index(spec.index)
        else:
            q = q.with_index(spec.index, fn)
        if order_style == "explicit" or order == "desc":
            q = q.order(order)
        if FILTERS[flt] is not None:
            q = q.filter(FILTERS[flt])
        return q

    def all_docs(self) -> list[dict]:
        return self.db.query(lambda ctx: ctx.db.query("items").collect())

    # -- rules ----------------------------------------------------------------------

    @initialize(target=ids, bodies=st.lists(doc_bodies, min_size=1, max_size=6))
    def seed(self, bodies):
        def handler(ctx):
            out = []
            for body in bodies:
                new_id = ctx.db.insert("items", body)
                out.append(ctx.db.get(new_id))
            return out

        docs = self.db.mutation(handler)
        for doc, body in zip(docs, bodies, strict=True):
            assert doc == {"_id": doc["_id"], "_creation_time": doc["_creation_time"],
                           **_stored(body)}
            self.model[doc["_id"]] = doc
        return multiple(*[d["_id"] for d in docs])

    @rule(seconds=st.sampled_from([0.0, 0.001, 1.0]))
    def tick(self, seconds):
        self.clock.now += seconds

    @rule(target=ids, body=doc_bodies)
    def insert(self, body):
        def handler(ctx):
            new_id = ctx.db.insert("items", body)
            return ctx.db.get(new_id)

        doc = self.db.mutation(handler)
        assert isinstance(doc["_id"], livedb.Id)
        assert doc["_id"].table == "items"
        assert doc["_id"] not in self.model
        assert all(doc["_creation_time"] > d["_creation_time"] for d in self.model.values())
        assert doc == {"_id": doc["_id"], "_creation_time": doc["_creation_time"],
                       **_stored(body)}
        if "c" in body:
            assert type(doc["c"]) is float
        self.model[doc["_id"]] = doc
        return doc["_id"]

    @rule(doc_id=ids, data=st.data())
    def patch(self, doc_id, data):
        fields = data.draw(st.fixed_dictionaries(
            {}, optional={"a": A_VALUES, "b": B_VALUES,
                          "c": C_VALUES | st.just(DELETE_FIELD)}))
        if doc_id in self.model and data.draw(st.booleans()):
            # system fields may be carried along unchanged
            fields["_id"] = doc_id
            fields["_creation_time"] = self.model[doc_id]["_creation_time"]
            if data.draw(st.booleans()):
                # ... but never changed: the whole mutation is refused
                bad = dict(fields, _creation_time=fields["_creation_time"] + 1.0)
                with pytest.raises(livedb.ValidationError):
                    self.db.mutation(lambda ctx: ctx.db.patch(doc_id, bad))
        mut = livedb.mutation(lambda ctx: ctx.db.patch(doc_id, fields))
        if doc_id not in self.model:
            with pytest.raises(DocumentNotFoundError):
                self.db.mutation(mut)
            return
        self.db.mutation(mut)
        doc = dict(self.model[doc_id])
        for k, x in fields.items():
            if k.startswith("_"):
                continue
            if x is DELETE_FIELD:
                doc.pop(k, None)
            else:
                doc[k] = float(x) if k == "c" else x
        self.model[doc_id] = doc

    @rule(doc_id=ids, body=doc_bodies)
    def replace(self, doc_id, body):
        if doc_id in self.model and body["a"] % 2:
            body = dict(body, _id=doc_id,
                        _creation_time=self.model[doc_id]["_creation_time"])
        mut = livedb.mutation(lambda ctx: ctx.db.replace(doc_id, body))
        if doc_id not in self.model:
            with pytest.raises(DocumentNotFoundError):
                self.db.mutation(mut)
            return
        self.db.mutation(mut)
        old = self.model[doc_id]
        body = {k: x for k, x in body.items() if not k.startswith("_")}
        self.model[doc_id] = {"_id": old["_id"], "_creation_time": old["_creation_time"],
                              **_stored(body)}

    @rule(doc_id=ids)
    def delete(self, doc_id):
        mut = livedb.mutation(lambda ctx: ctx.db.delete(doc_id))
        if doc_id not in self.model:
            with pytest.raises(DocumentNotFoundError):
                self.db.mutation(mut)
            return
        self.db.mutation(mut)
        del self.model[doc_id]

    @rule(doc_id=ids)
    def get(self, doc_id):
        got = self.db.query(lambda ctx: ctx.db.get(doc_id))
        assert got == self.model.get(doc_id)
        if got is not None:
            assert isinstance(got["_id"], livedb.Id)
            if "c" in got:
                assert type(got["c"]) is float
            # a returned dict is a copy: changing it changes nothing stored
            got["a"] = 999
            got.pop("b")
            assert self.db.query(lambda ctx: ctx.db.get(doc_id)) == self.model[doc_id]

    @rule(spec=range_specs(), order=st.sampled_from(["asc", "desc"]),
          order_style=st.sampled_from(["default", "explicit"]),
          flt=st.sampled_from(sorted(FILTERS)),
          terminal=st.sampled_from(["collect", "take", "first", "iterate", "unique"]),
          n=st.integers(0, 7))
    def index_query(self, spec, order, order_style, flt, terminal, n):
        expected = self.expected(spec, order, flt)

        def handler(ctx):
            q = self.build(ctx, spec, order, flt, order_style)
            if terminal == "collect":
                return q.collect()
            if terminal == "take":
                return q.take(n)
            if terminal == "first":
                return q.first()
            if terminal == "unique":
                try:
                    return {"unique": q.unique()}
                except livedb.LiveDBError as e:
                    assert type(e) is livedb.LiveDBError
                    return "several"
            return [doc for doc in q]

        got = self.db.query(handler)
        for doc in got if isinstance(got, list) else []:
            assert isinstance(doc["_id"], livedb.Id)
        if terminal == "take":
            expected = expected[:n]
        elif terminal == "first":
            expected = expected[0] if expected else None
        elif terminal == "unique":
            expected = "several" if len(expected) > 1 else {
                "unique": expected[0] if expected else None}
        assert got == expected, spec

    @rule(spec=range_specs(), order=st.sampled_from(["asc", "desc"]),
          flt=st.sampled_from(sorted(FILTERS)),
          sizes=st.lists(st.integers(1, 5), min_size=1, max_size=40))
    def paginate(self, spec, order, flt, sizes):
        expected = self.expected(spec, order, flt)
        pages: list[list[dict]] = []
        cursors: list[str | None] = [None]
        done = False
        while not done:
            size = sizes[len(pages) % len(sizes)]
            assert len(pages) <= len(expected) + 1, "pagination does not terminate"

            def handler(ctx, size=size, cursor=cursors[-1]):
                return self.build(ctx, spec, order, flt, "explicit").paginate(size, cursor)

            result = self.db.query(handler)
            assert isinstance(result, livedb.PaginationResult)
            assert isinstance(result.continue_cursor, str)
            if not result.is_done:
                assert len(result.page) == size
            else:
                assert len(result.page) <= size
            pages.append(result.page)
            cursors.append(result.continue_cursor)
            done = result.is_done
        assert [d for page in pages for d in page] == expected, spec

        # end_cursor: exactly the documents between two cursors, whatever num_items says
        for k, page in enumerate(pages):
            def between(ctx, k=k):
                return self.build(ctx, spec, order, flt, "explicit").paginate(
                    1, cursors[k], end_cursor=cursors[k + 1])

            assert self.db.query(between).page == page, (spec, k)

        # a cursor is only valid for the same query
        other = "desc" if order == "asc" else "asc"
        with pytest.raises(livedb.ValidationError):
            self.db.query(lambda ctx: self.build(ctx, spec, other, flt, "explicit")
                          .paginate(1, cursors[1]))

    @rule(spec=range_specs(), order=st.sampled_from(["asc", "desc"]),
          flt=st.sampled_from(sorted(FILTERS)),
          steps=st.lists(st.tuples(
              st.integers(1, 4),
              st.lists(st.tuples(st.sampled_from(["insert", "patch", "replace", "delete"]),
                                 doc_bodies, st.integers(0, 1 << 30)), max_size=3)),
              min_size=1, max_size=12))
    def paginate_while_writing(self, spec, order, flt, steps):
        """Writes between pages: each page continues right after the previous page's last
        document as it is now, and documents nobody touched are visited exactly once."""
        cmp = _doc_cmp(INDEX_FIELDS[spec.index])
        untouched = {d["_id"] for d in self.expected(spec, order, flt)}
        seen: list[str] = []
        cursor = None
        last: dict | None = None
        for size, writes in steps:
            result = self.db.query(
                lambda ctx, size=size, cursor=cursor:
                self.build(ctx, spec, order, flt, "explicit").paginate(size, cursor))
            rest = self.expected(spec, order, flt)
            if last is not None:
                rest = [d for d in rest
                        if (cmp(d, last) > 0) == (order == "asc") and cmp(d, last) != 0]
            if result.is_done:
                assert result.page == rest[:size] and len(rest) <= size, spec
            else:
                assert result.page == rest[:size], spec
                assert len(result.page) == size
            seen.extend(d["_id"] for d in result.page)
            if result.page:
                last = result.page[-1]
            cursor = result.continue_cursor
            if result.is_done:
                break
            for op, body, pick in writes:
                touched = self.apply_write(op, body, pick)
                untouched.discard(touched)
        else:
            return  # not run to the end: nothing more to check
        for doc_id in untouched:
            assert seen.count(doc_id) == 1, (doc_id, spec)

    def apply_write(self, op: str, body: dict, pick: int) -> str:
        """One single-write mutation, mirrored in the model; returns the id written."""
        live = sorted(self.model)
        if op == "insert" or not live:
            doc = self.db.mutation(lambda ctx: ctx.db.get(ctx.db.insert("items", body)))
            self.model[doc["_id"]] = doc
            return doc["_id"]
        target = live[pick % len(live)]
        old = self.model[target]
        if op == "patch":
            self.db.mutation(lambda ctx: ctx.db.patch(target, body))
            self.model[target] = {**old, **_stored(body)}
        elif op == "replace":
            self.db.mutation(lambda ctx: ctx.db.replace(target, body))
            self.model[target] = {"_id": old["_id"], "_creation_time": old["_creation_time"],
                                  **_stored(body)}
        else:
            self.db.mutation(lambda ctx: ctx.db.delete(target))
            del self.model[target]
        return target

    @rule(ops=st.lists(st.tuples(st.sampled_from(["insert", "patch", "replace", "delete"]),
                                 doc_bodies, st.integers(0, 1 << 30)),
                       min_size=1, max_size=6),
          spec=range_specs(), order=st.sampled_from(["asc", "desc"]),
          fail=st.booleans(), limit=st.sampled_from([None, None, 1, 2, 5]))
    def batch(self, ops, spec, order, fail, limit):
        """Several writes in one mutation; after each, reads see them (read-your-writes);
        if the mutation raises at the end, none of them is visible afterwards."""
        scratch = {k: dict(d) for k, d in self.model.items()}
        before = self.all_docs()
        machine = self

        def handler(ctx):
            for op, body, pick in ops:
                live = sorted(scratch)
                if op == "insert" or not live:
                    new_id = ctx.db.insert("items", body)
                    doc = ctx.db.get(new_id)
                    assert doc == {"_id": new_id, "_creation_time": doc["_creation_time"],
                                   **_stored(body)}
                    assert all(doc["_creation_time"] > d["_creation_time"]
                               for d in scratch.values())
                    scratch[new_id] = doc
                else:
                    target = live[pick % len(live)]
                    if op == "patch":
                        ctx.db.patch(target, body)
                        scratch[target] = {**scratch[target], **_stored(body)}
                    elif op == "replace":
                        ctx.db.replace(target, body)
                        old = scratch[target]
                        scratch[target] = {"_id": old["_id"],
                                           "_creation_time": old["_creation_time"],
                                           **_stored(body)}
                    else:
                        ctx.db.delete(target)
                        del scratch[target]
                        assert ctx.db.get(target) is None
                        with pytest.raises(DocumentNotFoundError):
                            ctx.db.patch(target, {"a": 1})
                    if target in scratch:
                        assert ctx.db.get(target) == scratch[target]
                # read-your-writes through an index range and the full table
                q = machine.build(ctx, spec, order, "none", "explicit")
                got = q.collect() if limit is None else q.take(limit)
                assert got == machine.expected(spec, order, "none", scratch)[:limit], spec
                assert all(isinstance(d["_id"], livedb.Id) for d in got)
                everything = ctx.db.query("items").collect()
                assert everything == machine.expected(
                    WHOLE_TABLE, "asc", "none",
                    scratch)
            if fail:
                raise AppError({"rolled": "back", "n": len(ops)})
            return len(scratch)

        if fail:
            with pytest.raises(AppError) as info:
                self.db.mutation(handler)
            assert info.value.data == {"rolled": "back", "n": len(ops)}
            assert self.all_docs() == before
        else:
            assert self.db.mutation(handler) == len(scratch)
            self.model = scratch

    @rule(doc_id=ids, body=doc_bodies)
    def failing_validation_rolls_back(self, doc_id, body):
        """A write the schema rejects, after good writes, rolls the whole mutation back."""
        before = self.all_docs()

        def handler(ctx):
            ctx.db.insert("items", body)
            if doc_id in self.model:
                ctx.db.patch(doc_id, {"c": 1.0})
            ctx.db.insert("items", {"a": "not an int", "b": "x"})

        with pytest.raises(livedb.ValidationError):
            self.db.mutation(handler)
        assert self.all_docs() == before

    # -- invariants -----------------------------------------------------------------

    @invariant()
    def table_matches_model(self):
        self.db._check()
        got = self.all_docs()
        expected = sorted(self.model.values(), key=lambda d: d["_creation_time"])
        assert got == expected


ItemsMachine.TestCase.settings = settings(
    max_examples=120,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestItemsModel = ItemsMachine.TestCase


# ---------------------------------------------------------------------------------------
# The value total order through a full index scan.
# ---------------------------------------------------------------------------------------

ORDER_SCHEMA = define_schema({
    "vals": define_table({"x": v.optional(v.any()), "n": v.int64()}).index("by_x", ["x"]),
})

KEYS = st.text(alphabet="abcxyzAZé", min_size=1, max_size=3)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 1, -1, 2, 2**53, 2**53 + 1, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, 1.5, 2.0**53, 2.0**63, math.inf, -math.inf, math.nan]),
    st.text(max_size=4),
    st.text(alphabet="aAbé\x00\U0001f600\uffff", max_size=3),
    st.binary(max_size=4),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(KEYS, children, max_size=3),
    ),
    max_leaves=6,
)
MAYBE_VALUES = st.one_of(st.just(MISSING), VALUES)


def _insert_values(db: livedb.Database, values: list) -> list[str]:
    def handler(ctx):
        out = []
        for n, x in enumerate(values):
            doc = {"n": n} if x is MISSING else {"x": x, "n": n}
            out.append(ctx.db.insert("vals", doc))
        return out

    return db.mutation(handler)


def _expected_order(values: list) -> list[int]:
    """Positions sorted by value, ties by insertion (= creation time) order."""
    return sorted(range(len(values)),
                  key=cmp_to_key(lambda i, j: ref_cmp(values[i], values[j]) or (i - j)))


@settings(max_examples=300, deadline=None)
@given(values=st.lists(MAYBE_VALUES, min_size=1, max_size=25))
def test_index_scan_follows_total_order(values):
    db = livedb.Database(ORDER_SCHEMA)
    ids = _insert_values(db, values)
    asc = db.query(lambda ctx: ctx.db.query("vals").with_index("by_x").collect())
    desc = db.query(lambda ctx: ctx.db.query("vals").with_index("by_x").order("desc").collect())
    expected = [ids[i] for i in _expected_order(values)]
    assert [d["_id"] for d in asc] == expected, [values[d["n"]] for d in asc]
    assert [d["_id"] for d in desc] == expected[::-1]
    for d in asc:
        x = values[d["n"]]
        if x is MISSING:
            assert "x" not in d
        else:
            assert ref_cmp(d["x"], x) == 0
            assert _kind(d["x"]) == _kind(x)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(MAYBE_VALUES, min_size=1, max_size=20), pivot=VALUES,
       op=st.sampled_from(["eq", "gt", "gte", "lt", "lte"]),
       order=st.sampled_from(["asc", "desc"]))
def test_index_bounds_follow_total_order(values, pivot, op, order):
    """Range bounds of any kind select exactly the values the total order puts there."""
    db = livedb.Database(ORDER_SCHEMA)
    ids = _insert_values(db, values)
    got = db.query(lambda ctx: ctx.db.query("vals")
                   .with_index("by_x", lambda q: getattr(q, op)("x", pivot))
                   .order(order).collect())

    def keep(i: int) -> bool:
        c = ref_cmp(values[i], pivot)
        return {"eq": c == 0, "gt": c > 0, "gte": c >= 0, "lt": c < 0, "lte": c <= 0}[op]

    expected = [ids[i] for i in _expected_order(values) if keep(i)]
    if order == "desc":
        expected.reverse()
    assert [d["_id"] for d in got] == expected


@settings(max_examples=200, deadline=None)
@given(values=st.lists(VALUES, min_size=2, max_size=8))
def test_values_round_trip_and_sort_by_creation(values):
    """Stored values come back equal (same kinds) and `order()` without an index is by
    creation time."""
    db = livedb.Database(ORDER_SCHEMA)
    ids = _insert_values(db, values)
    docs = db.query(lambda ctx: ctx.db.query("vals").collect())
    assert [d["_id"] for d in docs] == ids
    for d, x in zip(docs, values, strict=True):
        assert ref_cmp(d["x"], x) == 0
        assert _same_shape(d["x"], x)


def _same_shape(a: Any, b: Any) -> bool:
    if _kind(a) != _kind(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_shape(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_shape(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        return type(a) is type(b)
    return True


def test_returned_documents_changed_by_the_handler_are_still_validated():
    """A handler may change the dicts it read; what it returns is still checked as a value
    (a `set` is not storable), and a mutation whose return value fails rolls back."""
    db = livedb.Database(ORDER_SCHEMA)
    doc_id = db.mutation(lambda ctx: ctx.db.insert("vals", {"x": 1, "n": 0}))

    def get_and_spoil(ctx):
        doc = ctx.db.get(doc_id)
        doc["x"] = {1, 2}
        return doc

    def collect_and_spoil(ctx):
        docs = ctx.db.query("vals").collect()
        docs[0]["x"] = object()
        return docs

    def page_and_spoil(ctx):
        result = ctx.db.query("vals").paginate(5)
        result.page[0]["x"] = [{1}]
        return result

    def swap_in_an_equal_non_value(ctx):
        doc = ctx.db.get(doc_id)
        doc["x"] = Decimal(1)  # == 1, but a Decimal is not a storable value
        return doc

    def swap_in_a_list(ctx):
        docs = ctx.db.query("vals").collect()
        docs[0]["x"] = Decimal(1)
        return docs

    for fn in (get_and_spoil, collect_and_spoil, page_and_spoil, swap_in_an_equal_non_value,
               swap_in_a_list):
        try:
            db.query(fn)
        except livedb.ValidationError:
            continue
        pytest.fail(f"{fn.__name__}: a non-storable return value was accepted")

    def insert_and_spoil(ctx):
        new_id = ctx.db.insert("vals", {"x": 2, "n": 1})
        doc = ctx.db.get(new_id)
        doc["x"] = {2}
        return doc

    with pytest.raises(livedb.ValidationError):
        db.mutation(insert_and_spoil)
    assert db.query(lambda ctx: ctx.db.query("vals").collect()) == [
        db.query(lambda ctx: ctx.db.get(doc_id))]
