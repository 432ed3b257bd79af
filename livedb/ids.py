"""Document ids: opaque strings that remember their table."""

from __future__ import annotations

import itertools
import os
import re

_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
_SUFFIX = re.compile(r"[0-9a-z]{8,40}\Z")


class Id(str):
    """A document id: a `str` of the form ``"<table>:<opaque>"``; `.table` names its table."""

    __slots__ = ()

    @property
    def table(self) -> str:
        return self[: self.index(":")]

    def __repr__(self) -> str:
        return f"Id({str.__repr__(self)})"


def valid_table_name(name: object) -> bool:
    """Whether `name` may name a user table (letters, digits, `_`, starting with a letter)."""
    return isinstance(name, str) and _TABLE_NAME.match(name) is not None


def parse_id(value: object) -> tuple[str, str] | None:
    """Split an id string into (table, id) or return None when it is not an id at all."""
    if not isinstance(value, str):
        return None
    table, sep, suffix = value.partition(":")
    if not sep or _SUFFIX.match(suffix) is None:
        return None
    if not (_TABLE_NAME.match(table) or table in ("_scheduled_functions", "_storage")):
        return None
    return table, value


class IdGenerator:
    """Hands out ids that are never reused: a random per-open prefix and a counter."""

    __slots__ = ("_prefix", "_next")

    def __init__(self) -> None:
        self._prefix = os.urandom(7).hex()
        self._next = itertools.count(1).__next__

    def new(self, table: str) -> str:
        return f"{table}:{self._prefix}{self._next():06x}"
