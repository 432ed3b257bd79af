"""Validators (`v.*`): each compiles once into a checking closure.

A check returns the value to store (ints become floats for float fields) and raises
`Mismatch` on failure; the path of the failure is collected only while the error
propagates, so a passing check builds no strings at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._errors import ValidationError
from ._ids import Id, parse_id, system_table_name, valid_table_name
from ._values import (
    INT64_MAX,
    INT64_MIN,
    MAX_ARRAY_LENGTH,
    MAX_DEPTH,
    MAX_FIELD_NAME_LENGTH,
    type_name,
)

Check = Callable[[Any, int], Any]


class Mismatch(Exception):
    """A failed check; `path` is collected innermost first while the error propagates."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str | int] = []

    def render(self, prefix: str) -> str:
        path = prefix
        for key in reversed(self.path):
            if isinstance(key, int):
                path = f"{path}[{key}]"
            else:
                path = f"{path}.{key}" if path else key
        return f"{path}: {self.message}" if path else self.message


def expected(what: str, value: Any) -> Mismatch:
    return Mismatch(f"expected {what}, got {type_name(value)}")


def _too_deep(depth: int) -> None:
    if depth > MAX_DEPTH:
        raise Mismatch(f"nesting deeper than the limit of {MAX_DEPTH}")


def valid_text(text: str) -> bool:
    """Whether a `str` encodes to UTF-8 (it holds no lone surrogate such as "\\ud800")."""
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _bad_text(text: str) -> Mismatch:
    return Mismatch(f"string {text[:40]!r} is not valid Unicode (it holds a lone surrogate "
                    "and cannot be encoded as UTF-8)")


def check_text(value: str) -> str:
    """`value` if it encodes to UTF-8, else `Mismatch`."""
    if value.isascii() or valid_text(value):
        return value
    raise _bad_text(value)


def check_field_name(name: Any, top_level: bool) -> None:
    if name.__class__ is not str:
        if not isinstance(name, str):
            raise Mismatch(f"field names must be strings, got {type_name(name)} {name!r}")
    if not name:
        raise Mismatch("field names must not be empty")
    if not valid_text(name):
        raise Mismatch(f"field name {name[:40]!r} is not valid Unicode (it holds a lone "
                       "surrogate)")
    if len(name) > MAX_FIELD_NAME_LENGTH:
        raise Mismatch(f"field name {name[:40]!r}... is longer than the limit of "
                       f"{MAX_FIELD_NAME_LENGTH} characters")
    first = name[0]
    if first == "$" or (top_level and first == "_"):
        what = "'_' or '$'" if top_level else "'$'"
        raise Mismatch(f"field name {name!r} must not start with {what}")


_LEAVES = frozenset({float, bool, bytes, type(None), Id})
"""Leaves that are always fine (a `str` must also encode to UTF-8, an `int` fit int64)."""


def _make_check_any(max_array: int | None) -> Check:
    """The generic check behind `v.any()`: any value of the storable kinds and nesting
    depth, with arrays of at most `max_array` items (None: any length)."""

    def check_any(value: Any, depth: int) -> Any:
        cls = value.__class__
        if cls is str:
            if value.isascii() or valid_text(value):
                return value
            raise _bad_text(value)
        if cls in _LEAVES:
            return value
        if cls is dict:
            if depth > MAX_DEPTH:
                _too_deep(depth)
            inner = depth + 1
            for key, item in value.items():
                if key.__class__ is not str or not key or key[0] == "$" or (
                        len(key) > MAX_FIELD_NAME_LENGTH) or not key.isascii():
                    check_field_name(key, False)
                c = item.__class__
                if c in _LEAVES or (c is int and INT64_MIN <= item <= INT64_MAX) or (
                        c is str and item.isascii()):
                    continue
                try:
                    check_any(item, inner)
                except Mismatch as e:
                    e.path.append(key)
                    raise
            return value
        if cls is list:
            if depth > MAX_DEPTH:
                _too_deep(depth)
            if max_array is not None and len(value) > max_array:
                raise Mismatch(f"array of {len(value)} items is longer than the limit of "
                               f"{max_array}")
            inner = depth + 1
            for i, item in enumerate(value):
                c = item.__class__
                if c in _LEAVES or (c is int and INT64_MIN <= item <= INT64_MAX) or (
                        c is str and item.isascii()):
                    continue
                try:
                    check_any(item, inner)
                except Mismatch as e:
                    e.path.append(i)
                    raise
            return value
        if cls is int:
            if INT64_MIN <= value <= INT64_MAX:
                return value
            raise Mismatch(f"integer {value} is outside the int64 range")
        if isinstance(value, str):
            return check_any(str(value), depth)
        if isinstance(value, float) and not isinstance(value, bool):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return check_any(int(value), depth)
        raise Mismatch(f"{type_name(value)} is not a storable value "
                       "(use None, bool, int, float, str, bytes, list or dict)")

    return check_any


check_any = _make_check_any(MAX_ARRAY_LENGTH)
"""Any storable value as stored in a document: arrays of at most `MAX_ARRAY_LENGTH`."""
check_value = _make_check_any(None)
"""Any value of the storable kinds, as function arguments and results are (limits on
sizes and lengths bind only what is stored)."""


class Validator:
    """What every `v.*` constructor returns: a description of the values it accepts.

    Validators compare equal when they describe the same values, so `v.number() ==
    v.float64()`. Their checks are compiled once, on first use.
    """

    __slots__ = ("_check", "_check_value")
    optional = False

    def __init__(self) -> None:
        self._check: Check | None = None
        self._check_value: Check | None = None

    def describe(self) -> str:
        """A short description for error messages, e.g. ``"array of string"``.

        Returns:
            The description.
        """
        raise NotImplementedError

    def _compile(self, stored: bool) -> Check:
        raise NotImplementedError

    def compile(self, stored: bool = True) -> Check:
        """The compiled check `check(value, depth)` (built once, then cached).

        Args:
            stored: Check values as stored in a document (arrays of at most 8192 items);
                False checks them as function arguments and results are (any length).

        Returns:
            A function returning the value as it is stored, raising an internal
                mismatch otherwise; use `validate` for a `ValidationError`.
        """
        if stored:
            if self._check is None:
                self._check = self._compile(True)
            return self._check
        if self._check_value is None:
            self._check_value = self._compile(False)
        return self._check_value

    def validate(self, value: Any, path: str = "") -> Any:
        """Check `value` and return it as it would be stored.

        Args:
            value: Any Python value.
            path: A prefix for the error message's path (e.g. a table name).

        Returns:
            `value`, or a copy with ints in float fields turned into floats.

        Raises:
            ValidationError: `value` does not pass; the message names the path inside
                `value` and what was expected.

        Examples:
            >>> v.array(v.string()).validate(["a", 1], path="tags")
            Traceback (most recent call last):
            livedb._errors.ValidationError: tags[1]: expected string, got int
        """
        try:
            return self.compile()(value, 1)
        except Mismatch as e:
            raise ValidationError(e.render(path)) from None

    def to_json(self) -> Any:
        """A plain description of the validator, used to compare validators.

        Returns:
            Nested dicts and lists naming the validator's kind and parts.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<validator {self.describe()}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Validator) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(repr(self.to_json()))


class _Scalar(Validator):
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name

    def describe(self) -> str:
        return self._name

    def to_json(self) -> Any:
        return {"type": self._name}

    def _compile(self, stored: bool) -> Check:
        if self._name == "any":
            return check_any if stored else check_value
        return _SCALAR_CHECKS[self._name]


def _check_string(value: Any, depth: int) -> Any:
    if value.__class__ is str or isinstance(value, str):
        if value.isascii() or valid_text(value):
            return value
        raise _bad_text(value)
    raise expected("string", value)


def _check_int64(value: Any, depth: int) -> Any:
    if value.__class__ is int:
        if INT64_MIN <= value <= INT64_MAX:
            return value
        raise Mismatch(f"integer {value} is outside the int64 range")
    if isinstance(value, int) and not isinstance(value, bool):
        return _check_int64(int(value), depth)
    raise expected("int64", value)


def _check_float64(value: Any, depth: int) -> Any:
    cls = value.__class__
    if cls is float:
        return value
    if cls is int or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        try:
            return float(value)
        except OverflowError:
            raise Mismatch(f"integer of {int(value).bit_length()} bits is too large for "
                           "float64") from None
    raise expected("float64", value)


def _check_boolean(value: Any, depth: int) -> Any:
    if value is True or value is False:
        return value
    raise expected("boolean", value)


def _check_null(value: Any, depth: int) -> Any:
    if value is None:
        return value
    raise expected("null", value)


def _check_bytes(value: Any, depth: int) -> Any:
    if value.__class__ is bytes:
        return value
    raise expected("bytes", value)


_SCALAR_CHECKS: dict[str, Check] = {
    "string": _check_string,
    "int64": _check_int64,
    "float64": _check_float64,
    "boolean": _check_boolean,
    "null": _check_null,
    "bytes": _check_bytes,
}


class Literal(Validator):
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        super().__init__()
        if value is not None and value.__class__ not in (str, int, float, bool):
            raise TypeError(f"v.literal takes a str, int, float, bool or None, got "
                            f"{type_name(value)}")
        if value.__class__ is str and not valid_text(value):  # pyright: ignore[reportArgumentType]
            raise TypeError(f"v.literal: {value[:40]!r} is not valid Unicode")  # pyright: ignore[reportOptionalSubscript]
        self.value = value

    def describe(self) -> str:
        return f"literal {self.value!r}"

    def to_json(self) -> Any:
        return {"type": "literal", "value": self.value}

    def _compile(self, stored: bool) -> Check:
        want = self.value
        kind = want.__class__

        def check_literal(value: Any, depth: int) -> Any:
            if value.__class__ is kind and value == want:
                return value
            if kind is float and value.__class__ is int and value == want:
                return float(value)
            if kind is str and isinstance(value, str) and value == want:
                return value
            raise Mismatch(f"expected {want!r}, got {type_name(value)} {value!r}"[:200])

        return check_literal


class IdValidator(Validator):
    __slots__ = ("table",)

    def __init__(self, table: str) -> None:
        super().__init__()
        if not (valid_table_name(table) or system_table_name(table)):
            raise TypeError(f"v.id takes a table name, got {table!r}")
        self.table = table

    def describe(self) -> str:
        return f"id of table {self.table!r}"

    def to_json(self) -> Any:
        return {"type": "id", "table": self.table}

    def _compile(self, stored: bool) -> Check:
        table = self.table
        what = self.describe()

        def check_id(value: Any, depth: int) -> Any:
            parsed = parse_id(value)
            if parsed is not None and parsed[0] == table:
                return value
            if isinstance(value, str):
                raise Mismatch(f"expected {what}, got string {value[:80]!r}")
            raise expected(what, value)

        return check_id


class Array(Validator):
    __slots__ = ("item",)

    def __init__(self, item: Validator) -> None:
        super().__init__()
        self.item = _need_validator(item, "v.array")

    def describe(self) -> str:
        return f"array of {self.item.describe()}"

    def to_json(self) -> Any:
        return {"type": "array", "item": self.item.to_json()}

    def _compile(self, stored: bool) -> Check:
        item_check = self.item.compile(stored)
        max_length = MAX_ARRAY_LENGTH if stored else None

        def check_array(value: Any, depth: int) -> Any:
            if value.__class__ is not list:
                raise expected("array", value)
            if depth > MAX_DEPTH:
                _too_deep(depth)
            if max_length is not None and len(value) > max_length:
                raise Mismatch(f"array of {len(value)} items is longer than the limit of "
                               f"{max_length}")
            out = None
            inner = depth + 1
            for i, item in enumerate(value):
                try:
                    checked = item_check(item, inner)
                except Mismatch as e:
                    e.path.append(i)
                    raise
                if checked is not item:
                    if out is None:
                        out = list(value)
                    out[i] = checked
            return value if out is None else out

        return check_array


class Object(Validator):
    __slots__ = ("fields",)

    def __init__(self, fields: Mapping[str, Validator]) -> None:
        super().__init__()
        if not isinstance(fields, Mapping):
            raise TypeError(f"v.object takes a dict of validators, got {type_name(fields)}")
        checked: dict[str, Validator] = {}
        for name, validator in fields.items():
            try:
                check_field_name(name, False)
            except Mismatch as e:
                raise TypeError(f"v.object: {e.message}") from None
            checked[name] = _need_validator(validator, f"v.object field {name!r}")
        self.fields = checked

    def describe(self) -> str:
        return "object"

    def to_json(self) -> Any:
        return {"type": "object",
                "fields": {k: [f.to_json(), f.optional] for k, f in self.fields.items()}}

    def _compile(self, stored: bool) -> Check:
        specs = [(name, f.compile(stored), f.optional) for name, f in self.fields.items()]
        names = frozenset(self.fields)
        required = frozenset(n for n, f in self.fields.items() if not f.optional)
        n_required = len(required)
        absent = object()

        def check_object(value: Any, depth: int) -> Any:
            if value.__class__ is not dict:
                raise expected("object", value)
            if depth > MAX_DEPTH:
                _too_deep(depth)
            out = None
            inner = depth + 1
            seen = seen_required = 0
            for name, check, optional in specs:
                item = value.get(name, absent)
                if item is absent:
                    continue
                seen += 1
                if not optional:
                    seen_required += 1
                try:
                    checked = check(item, inner)
                except Mismatch as e:
                    e.path.append(name)
                    raise
                if checked is not item:
                    if out is None:
                        out = dict(value)
                    out[name] = checked
            if seen != len(value) or seen_required != n_required:
                for key in value:
                    if key not in names:
                        check_field_name(key, depth == 1)
                        error = Mismatch("unexpected field (not in the validator)")
                        error.path.append(key)
                        raise error
                for name in required:
                    if name not in value:
                        error = Mismatch("missing required field")
                        error.path.append(name)
                        raise error
            return value if out is None else out

        return _straight_line(self.fields, check_object, stored)


_FAST_TESTS = {
    "string": "x.__class__ is str and x.isascii()",
    "int64": "x.__class__ is int and INT64_MIN <= x <= INT64_MAX",
    "float64": "x.__class__ is float",
    "boolean": "x.__class__ is bool",
    "null": "x is None",
    "bytes": "x.__class__ is bytes",
}
"""Per scalar kind, a test that passes only values its check returns unchanged."""


def _straight_line(fields: dict[str, Validator], slow: Check, stored: bool) -> Check:
    """An object check generated as straight-line code for `fields`: each field's test
    inline where its kind has one, else its compiled check; any doubt (a missing, extra
    or changed field, a value the inline test does not pass) hands the whole value to
    `slow`, the general check, which returns the same or raises the precise error. One
    Python call instead of one per field, on every function call with args and every
    document written."""
    lines = ["def check_object(value, depth):",
             "    if value.__class__ is not dict or depth > MAX_DEPTH:",
             "        return slow(value, depth)",
             "    get = value.get",
             "    seen = 0"]
    namespace: dict[str, Any] = {"slow": slow, "MAX_DEPTH": MAX_DEPTH, "ABSENT": _ABSENT,
                                 "INT64_MIN": INT64_MIN, "INT64_MAX": INT64_MAX,
                                 "Mismatch": Mismatch, "parse_id": parse_id}
    required = 0
    for i, (name, validator) in enumerate(fields.items()):
        inner = validator.inner if isinstance(validator, Optional) else validator
        if isinstance(inner, _Scalar) and inner._name in _FAST_TESTS:
            test = _FAST_TESTS[inner._name]
        elif isinstance(inner, IdValidator):
            test = f"(p := parse_id(x)) is not None and p[0] == {inner.table!r}"
        else:
            namespace[f"c{i}"] = inner.compile(stored)
            test = f"_passes(c{i}, x, depth + 1)"
        lines.append(f"    x = get({name!r}, ABSENT)")
        if validator.optional:
            lines += ["    if x is not ABSENT:",
                      "        seen += 1",
                      f"        if not ({test}):",
                      "            return slow(value, depth)"]
        else:
            required += 1
            lines += [f"    if x is ABSENT or not ({test}):",
                      "        return slow(value, depth)"]
    lines += [f"    if len(value) != {required} + seen:",
              "        return slow(value, depth)",
              "    return value"]
    namespace["_passes"] = _passes_unchanged
    exec("\n".join(lines), namespace)  # noqa: S102 - our own generated source
    check: Check = namespace["check_object"]
    check.__wrapped__ = slow  # type: ignore[attr-defined]
    return check


_ABSENT = object()


def _passes_unchanged(check: Check, value: Any, depth: int) -> bool:
    try:
        return check(value, depth) is value
    except Mismatch:
        return False


class Record(Validator):
    __slots__ = ("key", "value")

    def __init__(self, key: Validator, value: Validator) -> None:
        super().__init__()
        self.key = _need_validator(key, "v.record key")
        self.value = _need_validator(value, "v.record value")

    def describe(self) -> str:
        return f"record of {self.key.describe()} to {self.value.describe()}"

    def to_json(self) -> Any:
        return {"type": "record", "key": self.key.to_json(), "value": self.value.to_json()}

    def _compile(self, stored: bool) -> Check:
        key_check = self.key.compile(stored)
        value_check = self.value.compile(stored)

        def check_record(value: Any, depth: int) -> Any:
            if value.__class__ is not dict:
                raise expected("object", value)
            if depth > MAX_DEPTH:
                _too_deep(depth)
            out = None
            inner = depth + 1
            for k, item in value.items():
                try:
                    check_field_name(k, depth == 1)
                    key_check(k, inner)
                    checked = value_check(item, inner)
                except Mismatch as e:
                    e.path.append(k if isinstance(k, str) else repr(k))
                    raise
                if checked is not item:
                    if out is None:
                        out = dict(value)
                    out[k] = checked
            return value if out is None else out

        return check_record


class Union(Validator):
    __slots__ = ("members",)

    def __init__(self, *members: Validator) -> None:
        super().__init__()
        if not members:
            raise TypeError("v.union needs at least one member")
        self.members = tuple(_need_validator(m, "v.union member") for m in members)

    def describe(self) -> str:
        return " | ".join(m.describe() for m in self.members)

    def to_json(self) -> Any:
        return {"type": "union", "members": [m.to_json() for m in self.members]}

    def _compile(self, stored: bool) -> Check:
        checks = [m.compile(stored) for m in self.members]
        what = self.describe()

        def check_union(value: Any, depth: int) -> Any:
            deepest: Mismatch | None = None
            for check in checks:
                try:
                    return check(value, depth)
                except Mismatch as e:
                    if e.path and (deepest is None or len(e.path) > len(deepest.path)):
                        deepest = e
            if deepest is not None and value.__class__ is dict:
                raise deepest
            raise expected(what, value)

        return check_union


class Optional(Validator):
    __slots__ = ("inner",)
    optional = True

    def __init__(self, inner: Validator) -> None:
        super().__init__()
        self.inner = _need_validator(inner, "v.optional")

    def describe(self) -> str:
        return f"optional {self.inner.describe()}"

    def to_json(self) -> Any:
        return {"type": "optional", "inner": self.inner.to_json()}

    def _compile(self, stored: bool) -> Check:
        return self.inner.compile(stored)


def _need_validator(value: Any, where: str) -> Validator:
    if isinstance(value, Validator):
        return value
    raise TypeError(f"{where} expects a validator such as v.string(), got {value!r}")


def as_validator(value: Any, where: str) -> Validator:
    """A validator from a `v.*` value or a dict of field validators (shorthand for v.object)."""
    if isinstance(value, Mapping):
        return Object(value)
    return _need_validator(value, where)


class v:  # noqa: N801 - spelled as Convex spells it: `v.string()`, `v.object({...})`
    """The validator constructors: `v.string()`, `v.int64()`, `v.object({...})`, ...

    A validator describes the values a document field, a function argument or a return
    value may hold. Pass them to `define_table` (one per field, as a dict) and to the
    `args=` / `returns=` of `@query`, `@mutation` and `@action`. Validators are
    immutable and may be shared between tables and functions.

    Every check also enforces the value limits: nesting at most 16 deep, arrays of at
    most 8192 items, field names of at most 1024 characters that do not start with `$`
    (nor, at the top level of a document, with `_`), strings of valid Unicode (no lone
    surrogates). A whole document is at most 1 MiB encoded, checked when it is written.
    The size and length limits bind what is stored (documents, a scheduled call's
    args), not function arguments and results. A value that does not fit raises
    `livedb.ValidationError` naming the path inside the value and what was expected,
    e.g. ``messages.body: expected string, got int``.

    Storable values are `None`, `bool`, `int` (64-bit), `float`, `str`, `bytes`, and
    `list`s and `dict`s (with `str` keys) of them; a `tuple`, `set`, `datetime` or
    other object is not storable. Mind two differences from Convex: `v.number()` is
    `v.float64()` (an `int` given to it is stored as a `float`), and in index order
    `int` and `float` are one kind compared by value (`1 < 1.5 < 2`).

    `v` is a namespace: call its static methods, never `v()` itself.

    Examples:
        >>> from livedb import v
        >>> user = v.object({"name": v.string(), "age": v.optional(v.int64())})
        >>> user.validate({"name": "Ada"})
        {'name': 'Ada'}
        >>> v.float64().validate(3)
        3.0
    """

    _string = _Scalar("string")
    _int64 = _Scalar("int64")
    _float64 = _Scalar("float64")
    _boolean = _Scalar("boolean")
    _null = _Scalar("null")
    _bytes = _Scalar("bytes")
    _any = _Scalar("any")

    @staticmethod
    def string() -> Validator:
        """Accept a `str`. Stored strings must encode to UTF-8 (no lone surrogates).

        Returns:
            The string validator.

        Examples:
            >>> v.string().validate("hello")
            'hello'
        """
        return v._string

    @staticmethod
    def int64() -> Validator:
        """Accept an `int` in the signed 64-bit range (-2**63 to 2**63 - 1).

        A `bool` is never accepted, although Python makes it an `int` subclass, and a
        `float` is refused even when it is whole (`1.0`).

        Returns:
            The int64 validator.

        Examples:
            >>> v.int64().validate(42)
            42
            >>> v.int64().validate(2**63)
            Traceback (most recent call last):
            livedb._errors.ValidationError: integer 9223372036854775808 is outside the int64 range
        """
        return v._int64

    @staticmethod
    def float64() -> Validator:
        """Accept a `float`, or an `int`, which is stored as a `float`.

        NaN and the infinities are accepted. A `bool` is never accepted as a number.

        Returns:
            The float64 validator.

        Examples:
            >>> v.float64().validate(2)
            2.0
            >>> v.float64().validate(True)
            Traceback (most recent call last):
            livedb._errors.ValidationError: expected float64, got boolean
        """
        return v._float64

    @staticmethod
    def number() -> Validator:
        """The same validator as `v.float64()`: Convex's `v.number()` is a float64.

        Use `v.int64()` for whole numbers that must stay `int` (counters, ids from other
        systems); `v.number()` stores `3` as `3.0`.

        Returns:
            The float64 validator.

        Examples:
            >>> v.number() == v.float64()
            True
        """
        return v._float64

    @staticmethod
    def boolean() -> Validator:
        """Accept `True` or `False` (and not `0` or `1`).

        In the total order of values, booleans sort after every number (`False < True`).

        Returns:
            The boolean validator.

        Examples:
            >>> v.boolean().validate(True)
            True
            >>> v.boolean().validate(1)
            Traceback (most recent call last):
            livedb._errors.ValidationError: expected boolean, got int
        """
        return v._boolean

    @staticmethod
    def null() -> Validator:
        """Accept only `None`.

        Combine it with `v.union` for a nullable field: `v.union(v.string(), v.null())`.
        A null value is not an absent field: for a field that may be left out, use
        `v.optional`.

        Returns:
            The null validator.

        Examples:
            >>> nullable = v.object({"deleted_at": v.union(v.float64(), v.null())})
            >>> nullable.validate({"deleted_at": None})
            {'deleted_at': None}
        """
        return v._null

    @staticmethod
    def bytes() -> Validator:
        """Accept `bytes` (not `bytearray` or `memoryview`).

        For large binary data (images, uploads), prefer file storage (`ctx.storage`,
        `db.store_file`): a document is at most 1 MiB.

        Returns:
            The bytes validator.

        Examples:
            >>> v.bytes().validate(b"\\x00\\x01")
            b'\\x00\\x01'
        """
        return v._bytes

    @staticmethod
    def any() -> Validator:
        """Accept any storable value: `None`, `bool`, `int` (int64), `float`, `str`,
        `bytes`, and `list`s and `dict`s (with `str` keys) of them, within the limits.

        Returns:
            The any validator.

        Examples:
            >>> v.any().validate({"tags": ["a", 1, None]})
            {'tags': ['a', 1, None]}
        """
        return v._any

    @staticmethod
    def literal(value: str | int | float | bool | None) -> Validator:
        """Accept exactly `value` (of the same kind: the literal `1` refuses `True`).

        A float literal also accepts an equal `int` (and stores it as a float).

        Args:
            value: A `str`, `int`, `float`, `bool` or `None`.

        Returns:
            A validator for that one value.

        Raises:
            TypeError: `value` is of another type.

        Examples:
            >>> status = v.union(v.literal("open"), v.literal("closed"))
            >>> status.validate("open")
            'open'
        """
        return Literal(value)

    @staticmethod
    def id(table: str) -> Validator:
        """Accept an id of a document of `table` (an `Id`, or the `str` it equals).

        Only the form is checked: that the document exists is not (a deleted document's id
        still passes). An id kept in a document field reads back as a plain `str`, equal
        to the `Id` (`ctx.db.get` takes either).

        Args:
            table: The table the ids belong to (a system table such as `"_storage"` or
                `"_scheduled_functions"` too).

        Returns:
            A validator of that table's ids.

        Raises:
            TypeError: `table` is not a valid table name.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> user_id = db.mutation(lambda ctx: ctx.db.insert("users", {"name": "Ada"}))
            >>> v.id("users").validate(str(user_id)) == user_id
            True
            >>> v.id("messages").validate(user_id)
            Traceback (most recent call last):
            livedb._errors.ValidationError: expected id of table 'messages', got string '...'
            >>> db.close()
        """
        return IdValidator(table)

    @staticmethod
    def array(item: Validator) -> Validator:
        """Accept a `list` whose items all pass `item` (at most 8192 of them).

        A `tuple` is not accepted: values are stored and returned as lists.

        Args:
            item: The validator of every item.

        Returns:
            A validator of such lists.

        Raises:
            TypeError: `item` is not a validator.

        Examples:
            >>> v.array(v.float64()).validate([1, 2.5])
            [1.0, 2.5]
        """
        return Array(item)

    @staticmethod
    def object(fields: Mapping[str, Validator]) -> Validator:
        """Accept a `dict` with exactly these fields: each required unless wrapped in
        `v.optional(...)`, and no others.

        `define_table({...})` and `args={...}` take the same dict directly.

        Args:
            fields: Field name to validator. Names must not be empty nor start with `$`.

        Returns:
            A validator of such dicts.

        Raises:
            TypeError: A field name is not allowed, or a value is not a validator.

        Examples:
            >>> point = v.object({"x": v.float64(), "y": v.float64()})
            >>> point.validate({"x": 1, "y": 2})
            {'x': 1.0, 'y': 2.0}
            >>> point.validate({"x": 1})
            Traceback (most recent call last):
            livedb._errors.ValidationError: y: missing required field
        """
        return Object(fields)

    @staticmethod
    def record(key: Validator, value: Validator) -> Validator:
        """Accept a `dict` with any keys that pass `key` and values that pass `value`.

        Keys are always strings: use `v.string()` (or a union of literals, or
        `v.id(table)`) for `key`.

        Args:
            key: The validator of every key.
            value: The validator of every value.

        Returns:
            A validator of such dicts.

        Raises:
            TypeError: `key` or `value` is not a validator.

        Examples:
            >>> v.record(v.string(), v.int64()).validate({"ada": 3, "bob": 5})
            {'ada': 3, 'bob': 5}
        """
        return Record(key, value)

    @staticmethod
    def union(*members: Validator) -> Validator:
        """Accept a value that passes any of `members` (tried in order).

        Args:
            *members: At least one validator.

        Returns:
            A validator of the union.

        Raises:
            TypeError: No member was given, or one is not a validator.

        Examples:
            >>> v.union(v.string(), v.null()).validate(None) is None
            True
        """
        return Union(*members)

    @staticmethod
    def optional(inner: Validator) -> Validator:
        """Let a field of an object (or an argument) be absent; when present it must pass
        `inner`.

        Absent is not `None`: `None` passes only if `inner` accepts null, as in
        `v.optional(v.union(v.string(), v.null()))`. An omitted optional argument is
        not passed to the handler, so give its parameter a default.

        Args:
            inner: The validator of the value when it is present.

        Returns:
            The optional validator (meaningful only as an object field or argument).

        Raises:
            TypeError: `inner` is not a validator.

        Examples:
            >>> person = v.object({"nickname": v.optional(v.string())})
            >>> person.validate({})
            {}
            >>> person.validate({"nickname": None})
            Traceback (most recent call last):
            livedb._errors.ValidationError: nickname: expected string, got null
        """
        return Optional(inner)
