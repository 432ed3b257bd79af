"""The tables of a running database, their index keys, and the creation clock.

Every table has the built-in indexes `by_id` (position 0) and `by_creation_time`
(position 1), then its schema's indexes in definition order. A document's key in an
index is one flat tuple (see _values.py): the `(rank, value)` pairs of the index's
fields, then the creation time and the id; in `by_id` it is the id string itself.

Tables come from the schema, from the features that keep system tables (`_storage`,
`_scheduled_functions`, ...: names starting with `_`, written only by livedb), and from
well-known tables that a module of livedb registers for every database (PasswordAuth's
`auth_*` tables): those are known with or without a strict schema, so that reading or
importing them works before the module is set up.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable
from typing import Any

from ._errors import LiveDBError, ValidationError
from ._ids import system_table_name, valid_table_name
from ._schema import BUILTIN_INDEXES, Schema, TableDefinition
from ._store import IndexName
from ._validators import Check, IdValidator, Object, v
from ._values import (
    ABSENT,
    MISSING_PAIR,
    RANK_NUMBER,
    RANK_STR,
    encode_key,
    type_name,
    value_getter,
)

KeyFn = Callable[[dict[str, Any]], Any]

_WELL_KNOWN: dict[str, Callable[[], TableDefinition]] = {}


def register_well_known_table(name: str, definition: Callable[[], TableDefinition]) -> None:
    """Make `name` a table every database knows, with `definition()` unless its schema
    declares it (used by livedb.auth for its tables)."""
    _WELL_KNOWN[name] = definition


def _field_key(path: tuple[str, ...]) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    if len(path) == 1:
        name = path[0]

        def one(doc: dict[str, Any]) -> tuple[int, Any]:
            value = doc.get(name, ABSENT)
            return MISSING_PAIR if value is ABSENT else encode_key(value)

        return one
    raw = value_getter(path)

    def nested(doc: dict[str, Any]) -> tuple[int, Any]:
        value = raw(doc)
        return MISSING_PAIR if value is ABSENT else encode_key(value)

    return nested


def _index_key(paths: tuple[tuple[str, ...], ...]
               ) -> Callable[[dict[str, Any], str, float], tuple[Any, ...]]:
    """The key function of an index over `paths`: `key(doc, id, creation time)` is the
    fields' flat pairs, the creation time and the id."""
    getters = [_field_key(p) for p in paths]
    if len(getters) == 1:
        get = getters[0]

        def key1(doc: dict[str, Any], doc_id: str, creation_time: float) -> tuple[Any, ...]:
            rank, value = get(doc)
            return (rank, value, creation_time, doc_id)

        return key1

    def key(doc: dict[str, Any], doc_id: str, creation_time: float) -> tuple[Any, ...]:
        flat: list[Any] = []
        for g in getters:
            flat.extend(g(doc))
        flat.append(creation_time)
        flat.append(doc_id)
        return tuple(flat)

    return key


def _of_full(key: Callable[[dict[str, Any], str, float], tuple[Any, ...]]) -> KeyFn:
    """The key function reading the id and creation time from a full document."""
    return lambda doc: key(doc, str(doc["_id"]), doc["_creation_time"])


def _by_id_key(doc: dict[str, Any]) -> str:
    return str(doc["_id"])


def _by_creation_time_key(doc: dict[str, Any]) -> tuple[Any, ...]:
    ct = doc["_creation_time"]
    return (RANK_NUMBER, ct, ct, str(doc["_id"]))


_SHARED_STRING_LENGTH = 64
"""Short strings in index keys are interned: documents that share a value (a channel, a
status, a user id) then share one string object in every key that holds it, instead of
one each (about 50 bytes per document per such field). Interned strings are freed with
their last key."""


def _keys_function(index_paths: list[tuple[tuple[str, ...], ...]]
                   ) -> Callable[[dict[str, Any], str, float], tuple[Any, ...]]:
    """`keys(doc, id, creation time)`: a document's key in every index of its table, in
    position order, generated as straight-line code (each field read and encoded once,
    strings inline and shared, see `_SHARED_STRING_LENGTH`) since it runs for every
    document written."""
    namespace: dict[str, Any] = {"ABSENT": ABSENT, "MISSING_PAIR": MISSING_PAIR,
                                 "RANK_STR": RANK_STR, "RANK_NUMBER": RANK_NUMBER,
                                 "encode_key": encode_key, "intern": sys.intern}
    lines = ["def keys(doc, doc_id, ct):", "    get = doc.get"]
    slots: dict[tuple[str, ...], int] = {}
    for paths in index_paths:
        for path in paths:
            if path in slots:
                continue
            i = slots[path] = len(slots)
            if len(path) == 1:
                lines.append(f"    x{i} = get({path[0]!r}, ABSENT)")
            else:
                namespace[f"g{i}"] = value_getter(path)
                lines.append(f"    x{i} = g{i}(doc)")
            lines += [f"    if x{i}.__class__ is str:",
                      f"        r{i} = RANK_STR",
                      f"        if len(x{i}) <= {_SHARED_STRING_LENGTH}:",
                      f"            x{i} = intern(x{i})",
                      f"    elif x{i} is ABSENT:",
                      f"        r{i}, x{i} = MISSING_PAIR",
                      "    else:",
                      f"        r{i}, x{i} = encode_key(x{i})"]
    keys = ["doc_id", "(RANK_NUMBER, ct, ct, doc_id)"]
    for paths in index_paths:
        fields = "".join(f"r{slots[p]}, x{slots[p]}, " for p in paths)
        keys.append(f"({fields}ct, doc_id)")
    lines.append(f"    return ({', '.join(keys)})")
    exec("\n".join(lines), namespace)  # noqa: S102 - our own generated source
    function: Callable[[dict[str, Any], str, float], tuple[Any, ...]] = namespace["keys"]
    return function


class TableInfo:
    """What a running database needs of one table: its check and its index keys."""

    __slots__ = ("name", "definition", "check", "check_full", "system", "index_names",
                 "index_fields",
                 "positions", "index_ids", "key_fns", "keys")

    def __init__(self, name: str, definition: TableDefinition | None, validate: bool,
                 system: bool = False) -> None:
        self.name = name
        self.definition = definition
        self.check: Check | None = (definition.validator.compile()
                                    if definition is not None and validate else None)
        """The check of a document's user fields (None: any storable object)."""
        self.check_full: Check | None = (
            Object({"_id": IdValidator(name), "_creation_time": v.float64(),
                    **definition.validator.fields}).compile()
            if definition is not None and validate and isinstance(definition.validator, Object)
            else None)
        """The same with the system fields too, for rewriting a whole stored document (a
        table defined by a union of objects has none)."""
        self.system = system
        """Written only by livedb (its name starts with `_`)."""
        self.index_names: list[str] = list(BUILTIN_INDEXES)
        self.index_fields: list[tuple[str, ...]] = [("_id",), ("_creation_time",)]
        self.key_fns: list[KeyFn] = [_by_id_key, _by_creation_time_key]
        """Per index, the key of a full document (with `_id` and `_creation_time`)."""
        paths: list[tuple[tuple[str, ...], ...]] = []
        if definition is not None:
            for index in definition.indexes.values():
                self.index_names.append(index.name)
                self.index_fields.append(index.fields)
                self.key_fns.append(_of_full(_index_key(index.paths)))
                paths.append(index.paths)
        self.keys = _keys_function(paths)
        """`keys(doc, id, creation time)`: the document's key in every index, in position
        order (its user fields are read; system fields may be there or not)."""
        self.positions = {n: i for i, n in enumerate(self.index_names)}
        self.index_ids: list[IndexName] = [(name, n) for n in self.index_names]


class Catalog:
    """The tables of one database and its creation clock (thread-safe)."""

    def __init__(self, schema: Schema | None, clock: Callable[[], float]) -> None:
        self.schema = schema
        self.clock = clock
        self.last_time = 0.0
        """The newest creation time handed out: the next one is later."""
        self._validate = schema is None or schema.schema_validation
        self._strict = schema is not None and schema.strict_table_names
        self._lock = threading.Lock()
        self.tables: dict[str, TableInfo] = {}
        if schema is not None:
            for name, definition in schema.tables.items():
                self.tables[name] = TableInfo(name, definition, self._validate)
        self.on_new_table: Callable[[TableInfo], None] | None = None
        """Told of each table added while running (the store defines its indexes)."""

    # -- tables ----------------------------------------------------------------------------

    def add_system_table(self, name: str) -> TableInfo:
        """Register a system table (no schema, written only by livedb)."""
        if not system_table_name(name):
            raise ValueError(f"{name!r} is not a system table name")
        return self._add(TableInfo(name, None, False, system=True))

    def well_known(self) -> dict[str, TableInfo]:
        """Register the well-known tables the schema does not declare; the ones added."""
        added = {}
        for name, make in _WELL_KNOWN.items():
            if name not in self.tables:
                added[name] = self._add(TableInfo(name, make(), True))
        return added

    def forget(self, name: str) -> None:
        """Unregister a table nothing was stored in (a well-known one, after opening)."""
        with self._lock:
            self.tables.pop(name, None)

    def stored(self, name: str, strict_ok: bool = False) -> TableInfo | None:
        """The table of a document found while opening: its info, a new schemaless one,
        or None when a strict schema does not have it (unless `strict_ok`)."""
        info = self.tables.get(name)
        if info is not None:
            return info
        if system_table_name(name):
            return self.add_system_table(name)
        if self._strict and self._validate and not strict_ok:
            return None
        return self._add(TableInfo(name, None, False))

    def _add(self, info: TableInfo) -> TableInfo:
        with self._lock:
            found = self.tables.get(info.name)
            if found is not None:
                return found
            self.tables[info.name] = info
        if self.on_new_table is not None:
            self.on_new_table(info)
        return info

    def for_read(self, table: Any, op: str) -> TableInfo:
        """The table a read names (`op` names the operation in errors)."""
        info = self.tables.get(table)
        return info if info is not None else self._unknown(table, op)

    def for_write(self, table: Any, op: str = "insert") -> TableInfo:
        """The user table a write names; `ValidationError` for a system table."""
        info = self.tables.get(table)
        if info is None:
            info = self._unknown(table, op)
        if info.system:
            raise ValidationError(f"{op}: {table!r} is a read-only system table")
        return info

    def _unknown(self, table: Any, op: str) -> TableInfo:
        if not isinstance(table, str):
            raise ValidationError(f"{op}: a table name is a str, got {type_name(table)}")
        if system_table_name(table):
            known = ", ".join(sorted(n for n, i in self.tables.items() if i.system))
            raise ValidationError(f"{op}: {table!r} is not a system table (system tables: "
                                  f"{known or 'none'})")
        if not valid_table_name(table):
            raise ValidationError(f"{op}: {table!r} is not a valid table name (letters, "
                                  "digits and '_', starting with a letter)")
        make = _WELL_KNOWN.get(table)
        if make is not None:
            return self._add(TableInfo(table, make(), True))
        if self._strict:
            known = ", ".join(sorted(n for n, i in self.tables.items() if not i.system))
            raise ValidationError(f"{op}: table {table!r} is not in the schema (tables: "
                                  f"{known or 'none'})")
        return self._add(TableInfo(table, None, False))

    def user_tables(self) -> list[str]:
        """The names of the user tables, sorted."""
        return sorted(n for n, i in self.tables.items() if not i.system)

    def definitions(self) -> dict[str, TableDefinition | None]:
        """Every table's definition (None for schemaless and system tables)."""
        return {name: info.definition for name, info in self.tables.items()}

    # -- the creation clock ----------------------------------------------------------------

    def now(self) -> float:
        """The database clock, as a float; `LiveDBError` if it is not a finite number."""
        now = self.clock()
        if now.__class__ is not float:
            if not isinstance(now, int | float) or isinstance(now, bool):
                raise LiveDBError(f"the database clock returned {now!r}, not a number")
            now = float(now)
        if not math.isfinite(now):
            raise LiveDBError(f"the database clock returned {now!r}")
        return now

    def next_creation_time(self) -> float:
        """A creation time later than every one handed out: now, or just after the last
        one (called by the writer only)."""
        now = self.clock()
        if now.__class__ is not float or not -math.inf < now < math.inf:
            now = self.now()
        last = self.last_time
        self.last_time = t = now if now > last else math.nextafter(last, math.inf)
        return t

    def saw_creation_time(self, creation_time: float) -> None:
        """Keep the clock ahead of a creation time that came from outside (an import)."""
        if creation_time > self.last_time:
            self.last_time = creation_time
