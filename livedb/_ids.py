"""Document ids: opaque strings that remember their table."""

from __future__ import annotations

import os
import random
import re
import struct

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
_SYSTEM_NAME = re.compile(r"_[a-z][a-z_]{0,62}\Z")


class Id(str):
    """A document id: a `str` that also knows its table.

    `ctx.db.insert` returns one, and every document holds its own as `_id`. An `Id` is
    a plain `str` for everything else: it compares equal to the same text, hashes the
    same, can be stored in documents (use `v.id(table)` to validate it) and passed as an
    argument. Treat the text as opaque: ids are unique within a database and never
    reused, but their form is not part of the API. To check a string from outside (a
    URL, a form), use `ctx.db.normalize_id(table, text)`.

    Examples:
        >>> from livedb import Database, Id
        >>> db = Database()
        >>> note = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
        >>> isinstance(note, Id), isinstance(note, str), note.table
        (True, True, 'notes')
        >>> db.query(lambda ctx: ctx.db.get(note))["_id"] == note
        True
    """

    __slots__ = ()

    @property
    def table(self) -> str:
        """The name of the table this id belongs to.

        Examples:
            >>> from livedb import Database
            >>> db = Database()
            >>> db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"})).table
            'notes'
            >>> db.close()
        """
        return self[: self.index(":")]

    def __repr__(self) -> str:
        return f"Id({str.__repr__(self)})"


def valid_table_name(name: object) -> bool:
    """Whether `name` may name a user table (letters, digits, `_`, starting with a letter)."""
    return isinstance(name, str) and _TABLE_NAME.match(name) is not None


def system_table_name(name: object) -> bool:
    """Whether `name` has the form of a system table's name (`_` then lower-case letters
    and `_`, like `_storage`): tables only livedb writes."""
    return isinstance(name, str) and _SYSTEM_NAME.match(name) is not None


_table_ok: dict[str, bool] = {}


def parse_id(value: object) -> tuple[str, str] | None:
    """Split an id string into (table, id) or return None when it is not an id at all."""
    found = _parsed.get(value) if value.__class__ is str or value.__class__ is Id else None  # pyright: ignore[reportArgumentType]
    if found is not None:
        return found
    if not isinstance(value, str):
        return None
    table, sep, suffix = value.partition(":")
    if not sep or not 8 <= len(suffix) <= 40 or not suffix.isalnum() or not suffix.isascii():
        return None
    ok = _table_ok.get(table)
    if ok is None:
        ok = bool(_TABLE_NAME.match(table) or _SYSTEM_NAME.match(table))
        if len(_table_ok) < 4096:
            _table_ok[table] = ok
    if not ok:
        return None
    found = (table, str(value))
    if len(_parsed) >= _PARSED_MAX:
        _parsed.clear()
    _parsed[found[1]] = found
    return found


_parsed: dict[str, tuple[str, str]] = {}
"""Recently parsed ids: the same ids arrive again and again (arguments, then `get`)."""
_PARSED_MAX = 1 << 16


def new_id(table: str, creation_time: float) -> str:
    """A fresh id: the creation time's bits (so ids sort by creation) and random bits.

    Creation times are unique and strictly increasing within a database, so these ids
    are never reused; the random tail keeps ids of different databases apart. A plain
    `str`: stored structures never hold `Id` objects, which the cyclic garbage collector
    would have to track (and so every tuple holding one).
    """
    return f"{table}:{_pack(creation_time).hex()}{_random(24):06x}"


_pack = struct.Struct(">d").pack
_random = random.Random(int.from_bytes(os.urandom(16), "big")).getrandbits
