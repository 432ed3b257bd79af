"""Export and import: a database as a ZIP of JSON Lines, one file per table.

Layout (as Convex's snapshot exports): `<table>/documents.jsonl`, one document per line
with its `_id` and `_creation_time`, in creation order, plus `livedb_export.json` naming
the format and the document count of each table. JSON cannot tell every livedb value
apart, so a few are tagged, as Convex does: bytes are `{"$bytes": base64}` and NaN and
the infinities `{"$float": base64 of the little-endian float64}`; an int is a JSON number
without a fraction or exponent and a float always has one (`1` vs `1.0`), so ints and
floats come back as they went (`{"$integer": ...}` from Convex is read too). User field
names never start with `$`, so the tags are unambiguous.

Stored files, if any, are in `_storage/`: their metadata rows as `documents.jsonl`, their
bytes as `files/<id>`; they are imported in the same mutation, checked against their sha256.

Importing runs as one mutation: it validates every document against the target's
schema and commits all of them or none. A table that already holds documents is left
alone unless `mode` is "append" (keep them, add the imported ones) or "replace"
(delete them first).
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import struct
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from typing import IO, Any

from .database import SYSTEM_TABLES, Database
from .errors import LiveDBError, ValidationError
from .ids import new_id, parse_id, valid_table_name
from .storage import FileImport
from .transaction import Transaction, WriteTransaction
from .values import KEY_MAX, decode, type_name

FORMAT = "livedb-export"
VERSION = 1
MANIFEST = "livedb_export.json"
DOCUMENTS = "documents.jsonl"
MODES = ("refuse", "append", "replace")

Progress = Callable[[str, int, int | None], None]
"""Called as `progress(table, documents done, documents in the table or None)`."""

_FLOAT = struct.Struct("<d")
_INT = struct.Struct("<q")


# -- values <-> JSON ----------------------------------------------------------------


def _default(value: Any) -> Any:
    if value.__class__ is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"{type_name(value)} is not a storable value")


def to_json(value: Any) -> Any:
    """`value` with bytes and non-finite floats replaced by their tagged JSON objects."""
    cls = value.__class__
    if cls is float:
        if math.isfinite(value):
            return value
        return {"$float": base64.b64encode(_FLOAT.pack(value)).decode("ascii")}
    if cls is bytes:
        return _default(value)
    if cls is list:
        return [to_json(item) for item in value]
    if cls is dict:
        return {key: to_json(item) for key, item in value.items()}
    return value


def dumps(doc: dict) -> str:
    """One JSON line for a document (no newline)."""
    try:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                          default=_default)
    except ValueError:
        return json.dumps(to_json(doc), ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False)


def _tagged(obj: dict) -> Any:
    if len(obj) == 1:
        for key, value in obj.items():
            if key[:1] == "$":
                return _untag(key, value)
    return obj


def _untag(key: str, value: Any) -> Any:
    if key not in ("$bytes", "$float", "$integer"):
        raise ValidationError(f"unknown tagged value {key!r} (field names never start with "
                              "'$')")
    try:
        raw = base64.b64decode(value, validate=True)
        if key == "$bytes":
            return raw
        return (_FLOAT if key == "$float" else _INT).unpack(raw)[0]
    except (TypeError, ValueError, struct.error) as e:
        raise ValidationError(f"bad {key} value {value!r}: {e}") from None


def loads(line: str | bytes) -> Any:
    """A document from one JSON line, tagged values decoded."""
    return json.loads(line, object_hook=_tagged)


# -- export ---------------------------------------------------------------------------


def export_zip(source: Database | str | os.PathLike[str], destination: str | os.PathLike[str]
               | IO[bytes], *, progress: Progress | None = None) -> dict[str, int]:
    """Write every user table of `source` (an open Database or a file path) to a ZIP.

    A Database is read at one snapshot while it keeps serving; a path is opened (and
    locked) for the export. Returns the number of documents written per table.
    """
    if isinstance(source, Database):
        return _export(source, destination, progress)
    path = os.fspath(source)
    if not os.path.exists(path):
        raise LiveDBError(f"export: there is no database at {path}")
    with Database(path=path) as db:
        return _export(db, destination, progress)


def _export(db: Database, destination: str | os.PathLike[str] | IO[bytes],
            progress: Progress | None) -> dict[str, int]:
    if isinstance(destination, (str, os.PathLike)):
        target = os.fspath(destination)
        partial = target + ".partial"
        try:
            with open(partial, "wb") as out:
                counts = _write_zip(db, out, progress)
                out.flush()
                os.fsync(out.fileno())
            os.replace(partial, target)
        except BaseException:
            if os.path.exists(partial):
                os.remove(partial)
            raise
        return counts
    return _write_zip(db, destination, progress)


def _write_zip(db: Database, out: IO[bytes], progress: Progress | None) -> dict[str, int]:
    txn = Transaction(db)
    counts: dict[str, int] = {}
    try:
        tables = sorted(name for name in db._tables if name not in SYSTEM_TABLES)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for table in tables:
                counts[table] = _write_table(txn, archive, table, progress)
            stored = db._files.export_to(txn, archive)
            if stored:
                counts["_storage"] = stored
            manifest = {"format": FORMAT, "version": VERSION, "exported_at": time.time(),
                        "tables": counts}
            archive.writestr(MANIFEST, json.dumps(manifest, indent=2) + "\n")
    finally:
        txn.close()
    return counts


def _write_table(txn: Transaction, archive: zipfile.ZipFile, table: str,
                 progress: Progress | None) -> int:
    index = (table, "by_creation_time")
    total = len(txn._store.index(index))
    done = 0
    with archive.open(f"{table}/{DOCUMENTS}", "w", force_zip64=True) as raw:
        out = io.BufferedWriter(raw, 1 << 16)
        for _key, blob in txn._scan(index, 1, (), (KEY_MAX,), False):
            out.write(dumps(decode(blob)).encode() + b"\n")
            done += 1
            if progress is not None and not done % 1000:
                progress(table, done, total)
        out.flush()
    if progress is not None:
        progress(table, done, done)
    return done


# -- import ---------------------------------------------------------------------------


def import_zip(target: Database | str | os.PathLike[str], source: str | os.PathLike[str]
               | IO[bytes], *, mode: str = "refuse",
               progress: Progress | None = None) -> dict[str, int]:
    """Import a ZIP written by `export_zip` into `target` (an open Database or a path).

    All documents commit in one mutation or none do. `mode` says what to do with a
    table that already has documents: "refuse" (raise, the default), "append" or
    "replace". Documents keep their `_id` and `_creation_time`; a line without `_id`
    gets a new id. Into an open Database every document is checked against its schema;
    a path is opened without a schema (its schema is checked at the next open).
    Returns the number of documents imported per table.
    """
    if mode not in MODES:
        raise ValueError(f"import: mode must be one of {', '.join(MODES)}, got {mode!r}")
    with zipfile.ZipFile(source) as archive:
        tables = _tables_in(archive)
        if isinstance(target, Database):
            return _import(target, archive, tables, mode, progress)
        with Database(path=os.fspath(target)) as db:
            return _import(db, archive, tables, mode, progress)


def _tables_in(archive: zipfile.ZipFile) -> dict[str, tuple[str, int | None]]:
    """`table -> (member name, document count from the manifest or None)`."""
    counts: dict[str, int] = {}
    names = archive.namelist()
    if MANIFEST in names:
        try:
            manifest = json.loads(archive.read(MANIFEST))
        except ValueError as e:
            raise ValidationError(f"import: {MANIFEST} is not valid JSON ({e})") from None
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise LiveDBError(f"import: unknown export format {manifest.get('format')!r} "
                              f"version {manifest.get('version')!r}; this livedb reads "
                              f"{FORMAT} version {VERSION}")
        counts = manifest.get("tables") or {}
    tables: dict[str, tuple[str, int | None]] = {}
    for name in names:
        table, _, rest = name.partition("/")
        if rest != DOCUMENTS or table.startswith("_"):
            continue
        if not valid_table_name(table):
            raise ValidationError(f"import: {name}: {table!r} is not a valid table name")
        tables[table] = (name, counts.get(table))
    return tables


def _import(db: Database, archive: zipfile.ZipFile, tables: dict[str, tuple[str, int | None]],
            mode: str, progress: Progress | None) -> dict[str, int]:
    counts: dict[str, int] = {}
    files = FileImport(db._files, archive, mode)

    def run(ctx: Any) -> None:
        txn: WriteTransaction = ctx.db
        for table, (member, total) in tables.items():
            info = db._table_for_write(table)
            if mode == "replace":
                for doc in txn.query(table).collect():
                    txn.delete(doc["_id"])
            elif mode == "refuse" and txn.query(table).first() is not None:
                raise LiveDBError(f"import: table {table!r} already has documents; import "
                                  "with mode='append' or 'replace' (--append / --replace)")
            done = 0
            for number, line in _lines(archive, member):
                where = f"{member} line {number}"
                doc_id, creation_time, fields = _document(table, line, where)
                if doc_id is None:
                    creation_time = db._next_creation_time()
                    doc_id = new_id(table, creation_time)
                elif txn._blob(doc_id) is not None:
                    raise LiveDBError(f"import: {where}: a document with _id {doc_id!r} "
                                      "already exists")
                elif creation_time > db._last_time:
                    db._last_time = creation_time
                try:
                    checked = txn._checked(info, fields, "import")
                except ValidationError as e:
                    raise ValidationError(f"import: {where}: {e}") from None
                full = {"_id": doc_id, "_creation_time": creation_time}
                full.update(checked)
                txn._put(info, doc_id, full, creation_time, None)
                done += 1
                if progress is not None and not done % 1000:
                    progress(table, done, total)
            counts[table] = done
            if progress is not None:
                progress(table, done, done)
        stored = files.run(txn)
        if stored is not None:
            counts["_storage"] = stored

    try:
        db.mutation(run)
    except BaseException:
        files.discard()
        raise
    return counts


def _lines(archive: zipfile.ZipFile, member: str) -> Iterator[tuple[int, bytes]]:
    with archive.open(member) as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                yield number, line


def _document(table: str, line: bytes, where: str) -> tuple[str | None, float, dict]:
    """`(id or None, creation time, user fields)` of one JSON line."""
    try:
        doc = loads(line)
    except ValueError as e:
        raise ValidationError(f"import: {where}: not valid JSON ({e})") from None
    if doc.__class__ is not dict:
        raise ValidationError(f"import: {where}: a document is a JSON object, got "
                              f"{type_name(doc)}")
    doc_id = doc.pop("_id", None)
    creation_time = doc.pop("_creation_time", None)
    if doc_id is None:
        return None, 0.0, doc
    parsed = parse_id(doc_id)
    if parsed is None or parsed[0] != table:
        raise ValidationError(f"import: {where}: _id {doc_id!r} is not an id of table "
                              f"{table!r}")
    if (creation_time.__class__ not in (int, float)
            or not math.isfinite(creation_time)):
        raise ValidationError(f"import: {where}: _creation_time must be a finite number, "
                              f"got {creation_time!r}")
    return parsed[1], float(creation_time), doc


# -- terminal progress ----------------------------------------------------------------


class TerminalProgress:
    """Progress on one updating line of a terminal, at most ten times a second."""

    def __init__(self, verb: str, stream: IO[str] | None = None) -> None:
        self.verb = verb
        self.stream = stream or sys.stderr
        self._shown = 0.0
        self._table: str | None = None

    def __call__(self, table: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._shown < 0.1:
            return
        self._shown = now
        of = f"/{total:,}" if total is not None else ""
        end = "\n" if finished else ""
        self.stream.write(f"\r{self.verb} {table}: {done:,}{of} documents\033[K{end}")
        self.stream.flush()
