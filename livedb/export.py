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
An export is one snapshot: it pins the stored files' bytes before taking it, so a file
deleted while the export runs is still written whole. An export file is created with
mode 0600 and appears under its name only once complete.

Importing runs as one mutation: it validates every document against the target's
schema and commits all of them or none, stored files' bytes included (see
`storage.FileImport`). A table that already holds documents is left alone unless `mode`
is "append" (keep them, add the imported ones) or "replace" (delete them first).

Bad input is a `ValidationError` raised before more than a limit is read or written:
members are read as streams, a line is refused once it passes `LINE_LIMIT` bytes, a
stored file's bytes once they pass the size its row declares, and the manifest once it
passes `MANIFEST_LIMIT`. Members whose names point outside the archive (absolute, with a
`..` part or a backslash) or appear twice are refused, and so are `_creation_time`s that
are not between 0 (1970) and `MAX_YEARS_AHEAD` years after the database clock's now.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import struct
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from ._database import Database, files_of, kernel_of, open_for_tool
from ._errors import DatabaseLockedError, LiveDBError, ValidationError
from ._ids import new_id, parse_id, valid_table_name
from ._query import Reader, Writer
from ._storage import (
    CHUNK,
    EXPORT_FILES,
    EXPORT_ROWS,
    FILE_MODE,
    TABLE,
    FileImport,
    check_content_type,
)
from ._values import KEY_MAX, MAX_DOCUMENT_BYTES, decode, type_name

FORMAT = "livedb-export"
VERSION = 1
MANIFEST = "livedb_export.json"
DOCUMENTS = "documents.jsonl"
MODES = ("refuse", "append", "replace")

LINE_LIMIT = 8 * MAX_DOCUMENT_BYTES
"""The longest JSON line an import reads (8 MiB). A document is at most 1 MiB encoded, and
its JSON is at most about six times that (a byte such as `false` or a control character,
escaped as `\\u0001`, takes six), so every document livedb stores fits, with room to spare."""
MANIFEST_LIMIT = MAX_DOCUMENT_BYTES
"""The largest manifest an import reads (1 MiB: a few bytes per table)."""
MAX_YEARS_AHEAD = 100
"""How far after the database clock's now an imported `_creation_time` may be."""
_YEAR = 365.25 * 86400
_OUTSIDE = re.compile(r"(?:^|/)\.\.(?:/|$)|^/|^[A-Za-z]:|\\|\x00")
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)
"""What zipfile raises on a damaged, truncated, encrypted or unsupported archive."""

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
    """`value` with bytes and non-finite floats replaced by their tagged JSON objects
    (`{"$bytes": base64}`, `{"$float": base64 of the little-endian float64}`), as exports
    write them.

    Args:
        value: A storable value.

    Returns:
        A value `json.dumps` accepts (with `allow_nan=False`).

    Examples:
        >>> from livedb.export import to_json
        >>> to_json({"data": b"hi", "score": 1.5})
        {'data': {'$bytes': 'aGk='}, 'score': 1.5}
    """
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


def dumps(doc: dict[str, Any]) -> str:
    """One JSON line for a document, as exports write it (no newline; tagged values for
    bytes and non-finite floats).

    Args:
        doc: A document (or any storable dict).

    Returns:
        The JSON text.

    Examples:
        >>> from livedb.export import dumps
        >>> dumps({"n": 1, "x": 1.0, "raw": b"hi"})
        '{"n":1,"x":1.0,"raw":{"$bytes":"aGk="}}'
    """
    try:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                          default=_default)
    except ValueError:
        return json.dumps(to_json(doc), ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False)


def _tagged(obj: dict[str, Any]) -> Any:
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
    """A document from one JSON line of an export, tagged values decoded: use it to read
    an export's `documents.jsonl` yourself.

    Args:
        line: One line of JSON.

    Returns:
        The document (ints stay ints, floats floats, bytes bytes).

    Raises:
        ValidationError: An unknown or malformed tagged value.
        ValueError: The line is not JSON (`json.JSONDecodeError`).

    Examples:
        >>> from livedb.export import loads
        >>> loads('{"n":1,"x":1.0,"raw":{"$bytes":"aGk="}}')
        {'n': 1, 'x': 1.0, 'raw': b'hi'}
    """
    return json.loads(line, object_hook=_tagged)


# -- export ---------------------------------------------------------------------------


def export_zip(source: Database | str | os.PathLike[str], destination: str | os.PathLike[str]
               | IO[bytes], *, progress: Progress | None = None) -> dict[str, int]:
    """Write every user table of `source`, and every stored file, to a ZIP: a backup.

    The export is one snapshot: every document and every stored file's bytes as of one
    commit, taken while an open database keeps serving (writes made meanwhile are not in
    it). That holds for a database shared between processes too: `source` may be a
    PostgreSQL URL (`"postgresql://..."`), and a path that other processes have open
    with `shared=True` is opened shared beside them. The archive holds
    `<table>/documents.jsonl` (one document per line, with its `_id` and
    `_creation_time`, in creation order), the stored files under `_storage/`, and a
    manifest `livedb_export.json`: the layout of Convex's snapshot exports. Values JSON
    cannot tell apart are tagged: bytes as `{"$bytes": base64}`, NaN and the infinities
    as `{"$float": base64}`; an int is a number without a fraction, a float always has
    one. A file written to a path is created with mode 0600 and appears under its name
    only once complete. `python -m livedb export SOURCE backup.zip` does the same from a
    shell.

    Args:
        source: An open `Database`, the path of a database file (opened, and locked,
            for the export; opened shared if shared openers use it), or a PostgreSQL URL.
        destination: A path to write the ZIP to (replaced if it exists), or a binary file
            object open for writing.
        progress: None, or a function called as `progress(table, documents done,
            documents in the table or None)` as the export goes.

    Returns:
        The number of documents written per table.

    Raises:
        LiveDBError: There is no database at the `source` path, or the destination
            cannot be written.
        DatabaseLockedError: The `source` path is open in another `Database` (export
            from that one instead).
        CorruptionError: A stored file's bytes are missing or damaged.

    Examples:
        >>> from livedb import Database
        >>> from livedb.export import export_zip
        >>> db = Database()
        >>> _ = db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
        >>> export_zip(db, "backup.zip")
        {'notes': 1}
        >>> db.close()
    """
    if isinstance(source, Database):
        return _export(source, destination, progress)
    location = os.fspath(source)
    if not is_url(location) and not os.path.exists(location):
        raise LiveDBError(f"export: there is no database at {location}")
    with open_location(location) as db:
        return _export(db, destination, progress)


def is_url(location: str) -> bool:
    """Whether `location` names a PostgreSQL database rather than a file."""
    return location.startswith(("postgresql://", "postgres://"))


def open_location(location: str, schema: Any = None) -> Database:
    """Open a database file or URL for a tool (export, import): a file in use by shared
    openers is opened shared beside them; the tool's scheduler runs nothing."""
    if is_url(location):
        return open_for_tool(schema, url=location)
    try:
        return open_for_tool(schema, path=location)
    except DatabaseLockedError as e:
        if "shared=True in other" not in str(e) and "with shared=True in another" not in str(e):
            raise
    return open_for_tool(schema, path=location, shared=True)


def _export(db: Database, destination: str | os.PathLike[str] | IO[bytes],
            progress: Progress | None) -> dict[str, int]:
    if not isinstance(destination, (str, os.PathLike)):
        return _write_zip(db, destination, progress)
    target = os.fspath(destination)
    folder = os.path.dirname(os.path.abspath(target))
    try:
        fd, partial = tempfile.mkstemp(prefix=os.path.basename(target) + ".",
                                       suffix=".partial", dir=folder)
    except OSError as e:
        raise LiveDBError(f"export: cannot write {target}: {e.strerror or e}") from None
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as out:
            counts = _write_zip(db, out, progress)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    except BaseException as e:
        try:
            os.remove(partial)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise LiveDBError(f"export: cannot write {target}: {e.strerror or e}") from e
        raise
    return counts


def _write_zip(db: Database, out: IO[bytes], progress: Progress | None) -> dict[str, int]:
    counts: dict[str, int] = {}
    files = files_of(db)
    kernel = kernel_of(db)
    with files.pinned():
        txn = kernel.reader()
        try:
            tables = kernel.catalog.user_tables()
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
                for table in tables:
                    counts[table] = _write_table(txn, archive, table, progress)
                stored = files.export_to(txn, archive)
                if stored:
                    counts[TABLE] = stored
                manifest = {"format": FORMAT, "version": VERSION, "exported_at": time.time(),
                            "tables": counts}
                archive.writestr(MANIFEST, json.dumps(manifest, indent=2) + "\n")
        finally:
            txn.close()
    return counts


def _write_table(txn: Reader, archive: zipfile.ZipFile, table: str,
                 progress: Progress | None) -> int:
    index = (table, "by_creation_time")
    total = len(txn.store.index(index))
    done = 0
    with archive.open(f"{table}/{DOCUMENTS}", "w", force_zip64=True) as raw:
        out = io.BufferedWriter(raw, 1 << 16)
        for _key, blob in txn.scan(index, 1, (), (KEY_MAX,), False):
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
    """Import a ZIP written by `export_zip` into `target`, all or nothing (`target` may
    be a PostgreSQL URL, and a path or URL in use by shared openers is imported into
    beside them).

    All documents and stored files commit in one mutation, or nothing changes (stored
    files' bytes included). Documents keep their `_id` and `_creation_time`, so ids
    stored in other documents still point at them; a line without `_id` gets a new id.
    Into an open `Database` every document is checked against its schema; a path is
    opened without a schema (its schema is checked at the next open). Bad input is
    refused before more than a limit is read: a line over 8 MiB, a malformed manifest,
    a `_creation_time` that is not a finite time between 1970 and 100 years ahead, an id
    of another table, a member path outside the archive. `python -m livedb import TARGET
    backup.zip [--append | --replace]` does the same from a shell.

    Args:
        target: An open `Database`, the path of a database file (created if missing),
            or a PostgreSQL URL.
        source: The ZIP: a path, or a binary file object open for reading.
        mode: What to do with a table that already holds documents: `"refuse"` (the
            default: raise, changing nothing), `"append"` (keep them and add the
            imported ones) or `"replace"` (delete them first).
        progress: None, or a function called as `progress(table, documents done,
            documents in the table or None)`.

    Returns:
        The number of documents imported per table.

    Raises:
        ValidationError: Bad input: not a readable ZIP, a malformed line, manifest or
            value, a document that fails the schema, or a limit passed.
        LiveDBError: With `mode="refuse"`, a table that already holds documents; with
            `mode="append"`, a document or stored file whose id is already there.
        DatabaseLockedError: The `target` path is open in another `Database`.
        ValueError: An unknown `mode`.

    Examples:
        >>> from livedb import Database
        >>> from livedb.export import export_zip, import_zip
        >>> with Database() as source:
        ...     _ = source.mutation(lambda ctx: ctx.db.insert("notes", {"text": "hi"}))
        ...     _ = export_zip(source, "backup.zip")
        >>> with Database(path="restored.livedb") as target:
        ...     import_zip(target, "backup.zip")
        ...     [note["text"] for note in target.query(lambda ctx: ctx.db.query("notes").collect())]
        {'notes': 1}
        ['hi']
    """
    if mode not in MODES:
        raise ValueError(f"import: mode must be one of {', '.join(MODES)}, got {mode!r}")
    try:
        archive = zipfile.ZipFile(source)
    except _ZIP_ERRORS as e:
        raise ValidationError(f"import: {_source_name(source)} is not a readable ZIP file "
                              f"({e})") from None
    with archive:
        members = _members(archive)
        tables = _tables_in(archive, members)
        if isinstance(target, Database):
            return _import(target, archive, members, tables, mode, progress)
        with open_location(os.fspath(target)) as db:
            return _import(db, archive, members, tables, mode, progress)


def _source_name(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(os.fspath(source))
    return "the archive"


def _brief(value: Any) -> str:
    """`repr(value)`, cut short: error messages stay one short line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by name, refusing names outside the archive and duplicates."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = info.filename
        if not name or _OUTSIDE.search(name):
            raise ValidationError(f"import: the archive member {_brief(name)} points outside "
                                  "the archive (an absolute path, a '..' part or a backslash)")
        if name in members:
            raise ValidationError(f"import: the archive holds {_brief(name)} twice")
        members[name] = info
    return members


def _tables_in(archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]
               ) -> dict[str, tuple[zipfile.ZipInfo, int | None]]:
    """`table -> (member, document count from the manifest or None)`."""
    counts: dict[str, int] = {}
    if MANIFEST in members:
        counts = _manifest(archive, members[MANIFEST])
    tables: dict[str, tuple[zipfile.ZipInfo, int | None]] = {}
    for name, info in members.items():
        table, _, rest = name.partition("/")
        if rest != DOCUMENTS or table.startswith("_"):
            continue
        if not valid_table_name(table):
            raise ValidationError(f"import: {_brief(name)}: {_brief(table)} is not a valid "
                                  "table name")
        tables[table] = (info, counts.get(table))
    return tables


def _manifest(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict[str, int]:
    """The manifest's document counts per table, after checking its shape."""
    data = b"".join(_member_chunks(archive, info, MANIFEST_LIMIT))
    try:
        manifest = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise ValidationError(f"import: {MANIFEST} is not valid JSON ({e})") from None
    if manifest.__class__ is not dict:
        raise ValidationError(f"import: {MANIFEST} must be a JSON object, got "
                              f"{type_name(manifest)}")
    form, version = manifest.get("format"), manifest.get("version")
    if form.__class__ is not str:
        raise ValidationError(f"import: {MANIFEST}: field 'format' must be the string "
                              f"{FORMAT!r}, got {_brief(form)}")
    if version.__class__ is not int:
        raise ValidationError(f"import: {MANIFEST}: field 'version' must be an integer, got "
                              f"{_brief(version)}")
    if form != FORMAT or version != VERSION:
        raise ValidationError(f"import: unknown export format {_brief(form)} version "
                              f"{version}; this livedb reads {FORMAT} version {VERSION}")
    exported_at = manifest.get("exported_at")
    if exported_at is not None and exported_at.__class__ not in (int, float):
        raise ValidationError(f"import: {MANIFEST}: field 'exported_at' must be a number, "
                              f"got {_brief(exported_at)}")
    counts = manifest.get("tables", {})
    if counts.__class__ is not dict or not all(
            valid_table_name(t) or t == TABLE for t in counts):
        raise ValidationError(f"import: {MANIFEST}: field 'tables' must be an object mapping "
                              f"table names to document counts, got {_brief(counts)}")
    for table, count in counts.items():
        if count.__class__ is not int or count < 0:
            raise ValidationError(f"import: {MANIFEST}: field 'tables.{table}' must be a "
                                  f"document count (an integer >= 0), got {_brief(count)}")
    return counts


def _member_chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo,
                   limit: int | None = None) -> Iterator[bytes]:
    """The decompressed bytes of a member, streamed; more than `limit` is refused."""
    if limit is not None and info.file_size > limit:
        raise ValidationError(f"import: {info.filename} is larger than the limit of {limit} "
                              "bytes")
    total = 0
    try:
        with archive.open(info) as stream:
            while True:
                chunk = stream.read(CHUNK)
                if not chunk:
                    return
                total += len(chunk)
                if limit is not None and total > limit:
                    raise ValidationError(f"import: {info.filename} is larger than the limit "
                                          f"of {limit} bytes")
                yield chunk
    except _ZIP_ERRORS as e:
        raise ValidationError(f"import: {info.filename} cannot be read from the archive "
                              f"({e})") from None


def _lines(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[tuple[int, bytes]]:
    """`(line number, line)` of the non-blank lines of a member (see `split_lines`)."""
    return split_lines(_member_chunks(archive, info), info.filename)


def split_lines(chunks: Iterable[bytes], member: str) -> Iterator[tuple[int, bytes]]:
    """`(line number, line)` of the non-blank lines in a stream of chunks, each refused
    with `ValidationError` once it is longer than `LINE_LIMIT` (so at most about that
    much is ever held)."""
    number = 0
    partial = bytearray()
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                if len(partial) + len(chunk) - start > LINE_LIMIT:
                    raise _too_long(member, number + 1)
                partial += memoryview(chunk)[start:]
                break
            number += 1
            if partial:
                if len(partial) + end - start > LINE_LIMIT:
                    raise _too_long(member, number)
                partial += memoryview(chunk)[start:end]
                line = bytes(partial)
                partial.clear()
            elif end - start > LINE_LIMIT:
                raise _too_long(member, number)
            else:
                line = chunk[start:end]
            start = end + 1
            if line and not line.isspace():
                yield number, line
    if partial and not partial.isspace():
        yield number + 1, bytes(partial)


def _too_long(member: str, number: int) -> ValidationError:
    return ValidationError(f"import: {member} line {number} is longer than {LINE_LIMIT} bytes "
                           f"(the JSON of a document of at most {MAX_DOCUMENT_BYTES} bytes "
                           "encoded is shorter)")


def _now(db: Database) -> float:
    """The database clock's now, for the bound on imported creation times."""
    return kernel_of(db).catalog.now()


def _creation_time(value: Any, now: float, where: str) -> float:
    """An imported `_creation_time`, refused unless between 1970 and 100 years from now."""
    latest = now + MAX_YEARS_AHEAD * _YEAR
    if value.__class__ not in (int, float) or not 0 <= value <= latest:
        raise ValidationError(f"import: {where}: _creation_time must be seconds since the "
                              f"epoch from 0 (1970) to {MAX_YEARS_AHEAD} years after now "
                              f"({latest:.0f}), got {_brief(value)}")
    return float(value)


def _import(db: Database, archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo],
            tables: dict[str, tuple[zipfile.ZipInfo, int | None]], mode: str,
            progress: Progress | None) -> dict[str, int]:
    counts: dict[str, int] = {}
    now = _now(db)
    files = files_of(db).importer()
    try:
        rows = _stage_files(archive, members, files, now)

        def run(ctx: Any) -> None:
            txn: Writer = ctx.db
            for table, (info, total) in tables.items():
                counts[table] = _import_table(db, txn, archive, table, info, total, mode, now,
                                              progress)
            if rows is not None:
                _import_files(db, txn, files, rows, mode)
                counts[TABLE] = len(rows)

        db.mutation(run)
    except BaseException:
        files.finish(False)
        raise
    files.finish(True)
    return counts


def _import_table(db: Database, txn: Writer, archive: zipfile.ZipFile, table: str,
                  info: zipfile.ZipInfo, total: int | None, mode: str, now: float,
                  progress: Progress | None) -> int:
    catalog = kernel_of(db).catalog
    table_info = catalog.for_write(table, "import")
    if mode == "replace":
        for doc in txn.query(table).collect():
            txn.delete(doc["_id"])
    elif mode == "refuse" and txn.query(table).first() is not None:
        raise LiveDBError(f"import: table {table!r} already has documents; import "
                          "with mode='append' or 'replace' (--append / --replace)")
    done = 0
    for number, line in _lines(archive, info):
        where = f"{info.filename} line {number}"
        doc_id, creation_time, fields = _document(table, line, where, now)
        if doc_id is None:
            creation_time = catalog.next_creation_time()
            doc_id = new_id(table, creation_time)
        elif txn.blob(doc_id) is not None:
            raise LiveDBError(f"import: {where}: a document with _id {doc_id!r} "
                              "already exists")
        else:
            catalog.saw_creation_time(creation_time)
        try:
            txn.checked_put(table_info, doc_id, creation_time, fields, "import")
        except ValidationError as e:
            raise ValidationError(f"import: {where}: {e}") from None
        done += 1
        if progress is not None and not done % 1000:
            progress(table, done, total)
    if progress is not None:
        progress(table, done, done)
    return done


def _stage_files(archive: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo],
                 files: FileImport, now: float) -> list[tuple[str, float, dict[str, Any]]] | None:
    """Read the stored files' rows and stage their bytes; the rows, or None if none."""
    info = members.get(EXPORT_ROWS)
    if info is None:
        return None
    rows: list[tuple[str, float, dict[str, Any]]] = []
    seen: set[str] = set()
    for number, line in _lines(archive, info):
        where = f"{EXPORT_ROWS} line {number}"
        doc_id, creation_time, fields = _file_row(line, where, now)
        if doc_id in seen:
            raise ValidationError(f"import: {where}: _id {doc_id!r} appears twice")
        seen.add(doc_id)
        member = EXPORT_FILES + doc_id.partition(":")[2]
        entry = members.get(member)
        if entry is None:
            raise ValidationError(f"import: {where}: the export has no {member}")
        if entry.file_size != fields["size"]:
            raise ValidationError(f"import: {member} does not match its size and sha256 in "
                                  f"{where}: it holds {entry.file_size} bytes, the row says "
                                  f"{fields['size']}")
        files.stage(doc_id, fields, _member_chunks(archive, entry), member)
        rows.append((doc_id, creation_time, fields))
    return rows


def _import_files(db: Database, txn: Writer, files: FileImport,
                  rows: list[tuple[str, float, dict[str, Any]]], mode: str) -> None:
    existing = txn.system.query(TABLE).collect()
    if mode == "replace":
        for row in existing:
            files.supersede(txn, row)
    elif mode == "refuse" and existing:
        raise LiveDBError("import: the database already has stored files; import with "
                          "mode='append' or 'replace' (--append / --replace)")
    for doc_id, creation_time, fields in rows:
        if txn.blob(doc_id) is not None:
            raise LiveDBError(f"import: {EXPORT_ROWS}: a stored file with _id {doc_id!r} "
                              "already exists")
        kernel_of(db).catalog.saw_creation_time(creation_time)
        txn.system_insert(TABLE, fields, doc_id, creation_time)
    files.place()


def _parse(line: bytes, where: str) -> Any:
    """One JSON line, tagged values decoded; lone surrogates in its strings are refused."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValidationError(f"import: {where}: not valid UTF-8 ({e.reason} at byte "
                              f"{e.start}; a lone surrogate is not valid Unicode)") from None
    try:
        value = loads(text)
        bad = _lone_surrogate(value) if "\\u" in text else None
    except (ValueError, RecursionError) as e:
        problem = ("nested too deeply" if isinstance(e, RecursionError)
                   else f"not valid JSON ({e})")
        raise ValidationError(f"import: {where}: {problem}") from None
    if bad is not None:
        raise ValidationError(f"import: {where}: {_brief(bad)[1:-1]} holds a lone "
                              "surrogate (a string that is not valid Unicode)")
    return value


def _lone_surrogate(value: Any, path: str = "") -> str | None:
    """Where in `value` the first string that is not valid UTF-8 is (a field, an element or
    a field name), or None if there is none."""
    cls = value.__class__
    if cls is str:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"field {path!r}" if path else "the value"
        return None
    if cls is list:
        for i, item in enumerate(value):
            found = _lone_surrogate(item, f"{path}[{i}]")
            if found is not None:
                return found
    elif cls is dict:
        for key, item in value.items():
            inner = f"{path}.{key}" if path else key
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                return f"the field name {inner!r}"
            found = _lone_surrogate(item, inner)
            if found is not None:
                return found
    return None


def _document(table: str, line: bytes, where: str, now: float
              ) -> tuple[str | None, float, dict[str, Any]]:
    """`(id or None, creation time, user fields)` of one JSON line."""
    doc = _parse(line, where)
    if doc.__class__ is not dict:
        raise ValidationError(f"import: {where}: a document is a JSON object, got "
                              f"{type_name(doc)}")
    doc_id = doc.pop("_id", None)
    creation_time = doc.pop("_creation_time", None)
    if doc_id is None:
        return None, 0.0, doc
    parsed = parse_id(doc_id)
    if parsed is None or parsed[0] != table:
        raise ValidationError(f"import: {where}: _id {_brief(doc_id)} is not an id of table "
                              f"{table!r}")
    return parsed[1], _creation_time(creation_time, now, where), doc


def _file_row(line: bytes, where: str, now: float) -> tuple[str, float, dict[str, Any]]:
    """`(id, creation time, fields)` of one stored file's row."""
    row = _parse(line, where)
    if row.__class__ is not dict:
        raise ValidationError(f"import: {where}: expected a JSON object, got {type_name(row)}")
    parsed = parse_id(row.get("_id"))
    sha256 = row.get("sha256")
    size = row.get("size")
    content_type = row.get("content_type")
    if (parsed is None or parsed[0] != TABLE
            or not isinstance(sha256, str) or re.fullmatch(r"[0-9a-f]{64}", sha256) is None
            or size.__class__ is not int or size < 0):
        raise ValidationError(f"import: {where}: not a stored file's metadata (_id, "
                              "_creation_time, sha256, size, content_type)")
    check_content_type(content_type, f"import: {where}")
    creation_time = _creation_time(row.get("_creation_time"), now, where)
    return parsed[1], creation_time, {"sha256": sha256, "size": size,
                                      "content_type": content_type}


# -- terminal progress ----------------------------------------------------------------


class TerminalProgress:
    """A `progress` function for `export_zip` and `import_zip` that shows progress on one
    updating line of a terminal, at most ten times a second (what the command line uses).

    Args:
        verb: The word shown before each table, e.g. `"exporting"`.
        stream: Where to write (default `sys.stderr`).

    Examples:
        >>> import io
        >>> from livedb.export import TerminalProgress
        >>> out = io.StringIO()
        >>> TerminalProgress("exporting", out)("notes", 3, 3)
        >>> out.getvalue().strip()
        'exporting notes: 3/3 documents\\x1b[K'
    """

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
