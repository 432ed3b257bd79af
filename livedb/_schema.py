"""Schemas: `define_schema`, `define_table` and the index definitions of each table."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import SchemaError
from ._ids import valid_table_name
from ._validators import Object, Union, Validator, _Scalar, as_validator

BUILTIN_INDEXES = ("by_id", "by_creation_time")
_INDEX_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
_PATH_PART = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
MAX_SEARCH_TERMS = 16


def _check_index_name(name: Any, taken: Mapping[str, Any]) -> None:
    if not isinstance(name, str) or not _INDEX_NAME.match(name):
        raise SchemaError(f"index name {name!r}: use letters, digits and '_', starting with a "
                          "letter")
    if name in BUILTIN_INDEXES:
        raise SchemaError(f"index name {name!r} is reserved for the built-in index")
    if name in taken:
        raise SchemaError(f"index {name!r} is defined twice")


def _check_path(path: Any, what: str) -> tuple[str, ...]:
    if not isinstance(path, str) or not path:
        raise SchemaError(f"{what}: field paths are non-empty strings, got {path!r}")
    parts = tuple(path.split("."))
    for part in parts:
        if not _PATH_PART.match(part):
            raise SchemaError(f"{what}: {path!r} is not a field path (dotted names of "
                              "letters, digits and '_', e.g. 'profile.city')")
    return parts


class IndexDefinition:
    """A sorted index as declared: its name and field paths (each a tuple of names)."""

    __slots__ = ("name", "fields", "paths")

    def __init__(self, name: str, fields: Sequence[str], paths: Sequence[tuple[str, ...]]):
        self.name = name
        self.fields = tuple(fields)
        self.paths = tuple(paths)


class SearchIndexDefinition:
    """A full-text search index as declared: name, search field and filter fields."""

    __slots__ = ("name", "search_field", "filter_fields")

    def __init__(self, name: str, search_field: str, filter_fields: Sequence[str]):
        self.name = name
        self.search_field = search_field
        self.filter_fields = tuple(filter_fields)


class VectorIndexDefinition:
    """A vector index as declared: name, vector field, dimensions and filter fields."""

    __slots__ = ("name", "vector_field", "dimensions", "filter_fields")

    def __init__(self, name: str, vector_field: str, dimensions: int,
                 filter_fields: Sequence[str]):
        self.name = name
        self.vector_field = vector_field
        self.dimensions = dimensions
        self.filter_fields = tuple(filter_fields)


class TableDefinition:
    """One table of a schema: its documents' validator and its indexes.

    Made by `define_table`; `.index()`, `.search_index()` and `.vector_index()` add
    indexes and return the table, so they chain.

    Every table also has two built-in indexes: `by_id` (on `_id`) and
    `by_creation_time` (on `_creation_time`). Every index orders documents with equal
    fields by `_creation_time`, then `_id`.
    """

    def __init__(self, document: Validator | Mapping[str, Validator]) -> None:
        try:
            self.validator = as_validator(document, "define_table")
        except TypeError as e:
            raise SchemaError(str(e)) from None
        members = (self.validator.members if isinstance(self.validator, Union)
                   else (self.validator,))
        for member in members:
            for name in getattr(member, "fields", ()):
                if name[0] in "_$":
                    raise SchemaError(f"define_table: field {name!r} must not start with '_' "
                                      "or '$' (reserved for system fields)")
        if not _is_document_validator(self.validator):
            raise SchemaError("define_table takes a dict of field validators, v.object(...), "
                              "a v.union of objects or v.any(), got "
                              f"{self.validator.describe()}")
        self.indexes: dict[str, IndexDefinition] = {}
        self.search_indexes: dict[str, SearchIndexDefinition] = {}
        self.vector_indexes: dict[str, VectorIndexDefinition] = {}

    def _names(self) -> dict[str, Any]:
        return {**self.indexes, **self.search_indexes, **self.vector_indexes}

    def index(self, name: str, fields: Sequence[str]) -> TableDefinition:
        """Add a sorted index over `fields`, for `ctx.db.query(table).with_index(name, ...)`.

        The index sorts documents by the fields in order, each in livedb's total order
        of values (a missing field first, then null, numbers, booleans, strings, bytes,
        lists, dicts), then by `_creation_time`. A query's range may fix the first
        fields with `eq` and bound the next one with `gt`/`gte`/`lt`/`lte`. Adding an
        index to the schema of an existing database builds it when the database opens.

        Args:
            name: Letters, digits and `_`, starting with a letter; unique in the table
                and not `by_id` or `by_creation_time`.
            fields: One or more field paths; a dotted path reads inside a nested
                object (`"profile.city"`). `_creation_time` is added automatically.

        Returns:
            This table, so calls chain.

        Raises:
            SchemaError: The name is malformed, reserved or taken, or a field is listed
                twice, is a system field or (for a table of fixed fields) is not one of
                the table's fields.

        Examples:
            >>> from livedb import define_table, v
            >>> messages = (define_table({"channel": v.string(), "body": v.string()})
            ...             .index("by_channel", ["channel"]))
        """
        _check_index_name(name, self._names())
        if isinstance(fields, str) or not isinstance(fields, Sequence) or not fields:
            raise SchemaError(f"index {name!r}: fields must be a non-empty list of field "
                              f"paths, got {fields!r}")
        paths = [_check_path(f, f"index {name!r}") for f in fields]
        if len(set(fields)) != len(fields):
            raise SchemaError(f"index {name!r}: a field is listed twice in {list(fields)!r}")
        for f, path in zip(fields, paths, strict=True):
            self._check_known_field(f"index {name!r}", f, path)
        self.indexes[name] = IndexDefinition(name, fields, paths)
        return self

    def search_index(self, name: str, search_field: str,
                     filter_fields: Sequence[str] = ()) -> TableDefinition:
        """Add a full-text search index, for `.with_search_index(name, ...)`.

        Documents whose `search_field` holds a string are indexed by its terms (runs of
        letters and digits, case-insensitive); a search matches any term of its text,
        the last term also as a prefix, ranked by relevance (BM25).

        Args:
            name: Letters, digits and `_`, starting with a letter; unique in the table.
            search_field: The field path holding the text.
            filter_fields: Field paths a search may narrow by equality
                (`q.search(...).eq(field, value)`).

        Returns:
            This table, so calls chain.

        Raises:
            SchemaError: The name is malformed or taken, or a field is a system field,
                listed twice, or not one of the table's fields.

        Examples:
            >>> from livedb import define_table, v
            >>> messages = (define_table({"channel": v.string(), "body": v.string()})
            ...             .search_index("search_body", search_field="body",
            ...                           filter_fields=["channel"]))
        """
        _check_index_name(name, self._names())
        path = _check_path(search_field, f"search index {name!r}")
        self._check_known_field(f"search index {name!r}", search_field, path)
        filters = self._filter_fields(f"search index {name!r}", filter_fields)
        self.search_indexes[name] = SearchIndexDefinition(name, search_field, filters)
        return self

    def vector_index(self, name: str, vector_field: str, dimensions: int,
                     filter_fields: Sequence[str] = ()) -> TableDefinition:
        """Add a vector index, for `ctx.vector_search(table, name, vector, ...)` in actions.

        Once the index exists, every write of `vector_field` must hold a list of exactly
        `dimensions` finite numbers, or `None`, or leave the field out (a document
        without a vector is not in the index); anything else is a `ValidationError`.
        Similarity is cosine similarity.

        Args:
            name: Letters, digits and `_`, starting with a letter; unique in the table.
            vector_field: The field path holding the vector.
            dimensions: The length of every vector, 2 to 4096.
            filter_fields: Field paths a vector search may filter by equality.

        Returns:
            This table, so calls chain.

        Raises:
            SchemaError: The name is malformed or taken, `dimensions` is out of range,
                or a field is a system field, listed twice, or not one of the table's
                fields.

        Examples:
            >>> from livedb import define_table, v
            >>> docs = (define_table({"kind": v.string(), "embedding": v.array(v.float64())})
            ...         .vector_index("by_embedding", vector_field="embedding",
            ...                       dimensions=3, filter_fields=["kind"]))
        """
        _check_index_name(name, self._names())
        path = _check_path(vector_field, f"vector index {name!r}")
        self._check_known_field(f"vector index {name!r}", vector_field, path)
        if dimensions.__class__ is not int or not 2 <= dimensions <= 4096:
            raise SchemaError(f"vector index {name!r}: dimensions must be an int from 2 to "
                              f"4096, got {dimensions!r}")
        filters = self._filter_fields(f"vector index {name!r}", filter_fields)
        self.vector_indexes[name] = VectorIndexDefinition(name, vector_field, dimensions,
                                                          filters)
        return self

    def _filter_fields(self, what: str, fields: Sequence[str]) -> list[str]:
        if isinstance(fields, str) or not isinstance(fields, Sequence):
            raise SchemaError(f"{what}: filter_fields must be a list of field paths")
        for f in fields:
            self._check_known_field(what, f, _check_path(f, what))
        if len(set(fields)) != len(fields):
            raise SchemaError(f"{what}: a filter field is listed twice")
        return list(fields)

    def _check_known_field(self, what: str, field: str, path: tuple[str, ...]) -> None:
        if path[0].startswith("_") and field != "_creation_time":
            raise SchemaError(f"{what}: {field!r} is a system field")
        if field == "_creation_time":
            raise SchemaError(f"{what}: '_creation_time' is added to every index "
                              "automatically; use the by_creation_time index")
        members = (self.validator.members if isinstance(self.validator, Union)
                   else (self.validator,))
        if any(not isinstance(m, Object) for m in members):
            return
        if not any(path[0] in m.fields for m in members):  # type: ignore[attr-defined]
            raise SchemaError(f"{what}: field {path[0]!r} is not in the table's fields")


def _is_document_validator(validator: Validator) -> bool:
    if isinstance(validator, Object):
        return True
    if isinstance(validator, _Scalar):
        return validator.describe() == "any"
    if isinstance(validator, Union):
        return all(isinstance(m, Object) for m in validator.members)
    return False


def define_table(document: Validator | Mapping[str, Validator]) -> TableDefinition:
    """Describe a table by the documents it holds.

    Every document of the table is checked on every write (insert, patch, replace).
    User field names must not start with `_` or `$`; the system fields `_id` and
    `_creation_time` are added to every document and need no validator.

    Args:
        document: A dict of field name to validator (the usual form), `v.object(...)`,
            a `v.union(...)` of objects (a table of several shapes), or `v.any()` (any
            document).

    Returns:
        The table definition; chain `.index()`, `.search_index()` and `.vector_index()`
            on it.

    Raises:
        SchemaError: `document` is not one of those forms, or a field name starts with
            `_` or `$`.

    Examples:
        >>> from livedb import define_table, v
        >>> users = define_table({"name": v.string(), "email": v.string(),
        ...                       "age": v.optional(v.int64())}).index("by_email", ["email"])
        >>> events = define_table(v.union(
        ...     v.object({"kind": v.literal("click"), "x": v.float64(), "y": v.float64()}),
        ...     v.object({"kind": v.literal("key"), "key": v.string()})))
    """
    return TableDefinition(document)


class Schema:
    """The tables of a database with their validators and indexes (see `define_schema`)."""

    def __init__(self, tables: Mapping[str, TableDefinition], schema_validation: bool = True,
                 strict_table_names: bool = True) -> None:
        if not isinstance(tables, Mapping):
            raise SchemaError(f"define_schema takes a dict of table definitions, got "
                              f"{type(tables).__name__}")
        for name, table in tables.items():
            if not valid_table_name(name):
                raise SchemaError(f"table name {name!r}: use letters, digits and '_', "
                                  "starting with a letter, at most 64 characters")
            if not isinstance(table, TableDefinition):
                raise SchemaError(f"table {name!r}: expected define_table(...), got "
                                  f"{type(table).__name__}")
        self.tables: dict[str, TableDefinition] = dict(tables)
        self.schema_validation = bool(schema_validation)
        self.strict_table_names = bool(strict_table_names)


def define_schema(tables: Mapping[str, TableDefinition], schema_validation: bool = True,
                  strict_table_names: bool = True) -> Schema:
    """Build the schema of a database from its tables: pass it to `Database(schema)`.

    A database opened with a schema checks every write against its table's validator
    and keeps the indexes it declares. Opening a file with a schema checks the
    documents already stored and builds indexes added since; removed indexes are
    dropped. No migration step is needed.

    Args:
        tables: Table name (letters, digits and `_`, starting with a letter, at most 64
            characters) to `define_table(...)`.
        schema_validation: When False, documents are not checked against the tables'
            validators, neither on writes nor when a file is opened: use it to open a
            file whose documents no longer match and repair them with mutations.
            Indexes are kept either way.
        strict_table_names: When True (the default), reading or writing a table not in
            the schema is a `ValidationError`; when False, such tables hold any
            documents, unchecked.

    Returns:
        The schema.

    Raises:
        SchemaError: `tables` is not a dict of `define_table(...)`, or a table name is
            malformed.

    Examples:
        >>> from livedb import Database, define_schema, define_table, v
        >>> schema = define_schema({
        ...     "users": define_table({"name": v.string()}),
        ... })
        >>> db = Database(schema)
        >>> lenient = define_schema({"users": define_table({"name": v.string()})},
        ...                         schema_validation=False)
    """
    return Schema(tables, schema_validation, strict_table_names)
