"""Export and import: ZIPs of JSON Lines that round-trip every value kind, keep `_id`
and `_creation_time`, refuse to mix into non-empty tables unless told, and are atomic."""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livedb import (
    Database,
    DatabaseLockedError,
    LiveDBError,
    ValidationError,
    define_schema,
    define_table,
    v,
)
from livedb.export import TerminalProgress, dumps, export_zip, import_zip, loads

ROOT = Path(__file__).resolve().parent.parent

SCHEMA = define_schema({
    "items": define_table({"name": v.string(), "value": v.any()}).index("by_name", ["name"]),
    "tags": define_table({"label": v.string()}),
})

VALUES = {
    "int": 7, "big": 2**63 - 1, "negative": -(2**63), "float": 7.0, "third": 1 / 3,
    "neg_zero": -0.0, "nan": math.nan, "inf": math.inf, "ninf": -math.inf, "tiny": 5e-324,
    "bytes": b"\x00\x01\xfe\xff", "empty_bytes": b"", "text": "héllo \u2603 \"q\"\n",
    "none": None, "true": True, "list": [1, 1.0, b"b", [None, {"k": 2.5}]],
    "dict": {"nested": {"x": 1, "y": 1.0, "z": b"z"}}, "empty": {},
}


def fill(db):
    ids = {}
    for name, value in VALUES.items():
        ids[name] = db.mutation(lambda ctx, n=name, x=value: ctx.db.insert(
            "items", {"name": n, "value": x}))
    db.mutation(lambda ctx: ctx.db.insert("tags", {"label": "one"}))
    return ids


def dump(db):
    return db.query(lambda ctx: {t: ctx.db.query(t).collect() for t in ("items", "tags")})


def same(a, b):
    """Equal as values and as types, NaN equal to NaN and -0.0 told from 0.0."""
    if isinstance(a, float) and isinstance(b, float):
        return (a == b and math.copysign(1, a) == math.copysign(1, b)) or (a != a and b != b)
    if type(a) is not type(b) and not (isinstance(a, str) and isinstance(b, str)):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.fixture
def source():
    db = Database(SCHEMA)
    fill(db)
    return db


def test_round_trip_keeps_every_value_kind_ids_and_creation_times(source, tmp_path):
    target = tmp_path / "out.zip"
    counts = export_zip(source, target)
    assert counts == {"items": len(VALUES), "tags": 1}
    copy = Database(SCHEMA)
    assert import_zip(copy, target) == counts
    before, after = dump(source), dump(copy)
    assert same(before, after)
    values = {d["name"]: d["value"] for d in after["items"]}
    assert type(values["int"]) is int and type(values["float"]) is float
    assert values["big"] == 2**63 - 1 and math.isnan(values["nan"])
    assert math.copysign(1, values["neg_zero"]) == -1 and values["bytes"] == b"\x00\x01\xfe\xff"
    by_name = copy.query(lambda ctx: ctx.db.query("items")
                         .with_index("by_name", lambda q: q.eq("name", "third")).unique())
    assert by_name["value"] == 1 / 3


def test_the_zip_holds_one_jsonl_file_per_table_and_a_manifest(source, tmp_path):
    target = tmp_path / "out.zip"
    export_zip(source, target)
    with zipfile.ZipFile(target) as archive:
        assert sorted(archive.namelist()) == ["items/documents.jsonl", "livedb_export.json",
                                              "tags/documents.jsonl"]
        manifest = json.loads(archive.read("livedb_export.json"))
        lines = archive.read("items/documents.jsonl").decode().splitlines()
    assert manifest["format"] == "livedb-export" and manifest["tables"]["items"] == len(VALUES)
    first = json.loads(lines[0])
    assert list(first)[:2] == ["_id", "_creation_time"]
    assert first["value"] == 7 and '"value":7,' not in lines[1] and '"value":7.0}' in lines[3]
    tagged = {json.loads(line)["name"]: json.loads(line)["value"] for line in lines}
    assert tagged["bytes"] == {"$bytes": "AAH+/w=="}
    assert tagged["inf"] == {"$float": "AAAAAAAA8H8="}


def test_values_convert_both_ways():
    for value in VALUES.values():
        assert same(loads(dumps({"v": value}))["v"], value)
    assert loads('{"v": {"$integer": "AQAAAAAAAAA="}}') == {"v": 1}
    with pytest.raises(ValidationError, match=r"unknown tagged value '\$nope'"):
        loads('{"v": {"$nope": 1}}')


def test_export_from_a_durable_file_and_import_into_a_new_one(tmp_path):
    source = str(tmp_path / "a.livedb")
    with Database(SCHEMA, path=source, durability="normal") as db:
        fill(db)
        before = dump(db)
        with pytest.raises(DatabaseLockedError):
            export_zip(source, tmp_path / "locked.zip")
        export_zip(db, tmp_path / "live.zip")
    export_zip(source, tmp_path / "out.zip")
    assert (tmp_path / "out.zip").read_bytes()[:2] == b"PK"
    target = str(tmp_path / "b.livedb")
    import_zip(target, tmp_path / "out.zip")
    with Database(SCHEMA, path=target) as db:
        assert same(dump(db), before)
    with pytest.raises(LiveDBError, match="no database"):
        export_zip(str(tmp_path / "missing.livedb"), tmp_path / "x.zip")
    assert not (tmp_path / "missing.livedb").exists() and not (tmp_path / "x.zip").exists()


def test_import_refuses_a_non_empty_table_unless_told(source, tmp_path):
    target = tmp_path / "out.zip"
    export_zip(source, target)
    copy = Database(SCHEMA)
    existing = copy.mutation(lambda ctx: ctx.db.insert("tags", {"label": "mine"}))
    with pytest.raises(LiveDBError, match="'tags' already has documents.*append.*replace"):
        import_zip(copy, target)
    assert dump(copy)["items"] == []

    import_zip(copy, target, mode="append")
    labels = [d["label"] for d in dump(copy)["tags"]]
    assert labels == ["one", "mine"]

    with pytest.raises(LiveDBError, match="already exists"):
        import_zip(copy, target, mode="append")
    assert len(dump(copy)["items"]) == len(VALUES)

    import_zip(copy, target, mode="replace")
    after = dump(copy)
    assert same(after, dump(source))
    assert copy.query(lambda ctx: ctx.db.get(existing)) is None


def test_import_checks_the_schema_and_is_all_or_nothing(tmp_path):
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("tags/documents.jsonl", '{"label": "fine"}\n{"label": 3}\n')
    db = Database(SCHEMA)
    with pytest.raises(ValidationError, match="line 2.*tags.label: expected string, got int"):
        import_zip(db, archive)
    assert dump(db)["tags"] == []


def test_lines_without_system_fields_get_new_ones(tmp_path):
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("tags/documents.jsonl", '{"label": "a"}\n\n{"label": "b"}\n')
    db = Database(SCHEMA)
    assert import_zip(db, archive) == {"tags": 2}
    docs = dump(db)["tags"]
    assert [d["label"] for d in docs] == ["a", "b"]
    assert docs[0]["_creation_time"] < docs[1]["_creation_time"]
    assert all(d["_id"].table == "tags" for d in docs)


def test_bad_ids_and_creation_times_are_rejected(tmp_path):
    db = Database(SCHEMA)
    other = db.mutation(lambda ctx: ctx.db.insert("items", {"name": "x", "value": 1}))
    for line, message in [
        (json.dumps({"_id": other, "_creation_time": 1.0, "label": "x"}), "not an id of table"),
        (json.dumps({"_id": "tags:zz", "_creation_time": 1.0, "label": "x"}), "not an id"),
        (json.dumps({"_id": other.replace("items", "tags"), "label": "x"}), "_creation_time"),
    ]:
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("tags/documents.jsonl", line + "\n")
        with pytest.raises(ValidationError, match=message):
            import_zip(db, io.BytesIO(archive.getvalue()))


def test_imported_creation_times_move_the_clock_forward(tmp_path):
    late = Database(SCHEMA, clock=lambda: 5000.0)
    late.mutation(lambda ctx: ctx.db.insert("tags", {"label": "late"}))
    export_zip(late, tmp_path / "late.zip")
    early = Database(SCHEMA, clock=lambda: 10.0)
    import_zip(early, tmp_path / "late.zip")
    new = early.mutation(lambda ctx: ctx.db.insert("tags", {"label": "new"}))
    assert early.query(lambda ctx: ctx.db.get(new))["_creation_time"] > 5000.0


def test_an_unknown_export_version_is_refused(tmp_path):
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("livedb_export.json", json.dumps({"format": "livedb-export", "version": 9}))
    with pytest.raises(LiveDBError, match="version 9"):
        import_zip(Database(SCHEMA), archive)


def test_progress_is_reported(source, tmp_path):
    seen = []
    export_zip(source, tmp_path / "out.zip", progress=lambda *a: seen.append(a))
    assert ("items", len(VALUES), len(VALUES)) in seen and ("tags", 1, 1) in seen
    stream = io.StringIO()
    show = TerminalProgress("exporting", stream)
    show("items", 10, 100)
    show("items", 100, 100)
    assert stream.getvalue().endswith("exporting items: 100/100 documents\x1b[K\n")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "livedb", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


SCHEMA_MODULE = """
from livedb import define_schema, define_table, v
schema = define_schema({"tags": define_table({"label": v.string()})})
"""


def test_the_command_line_round_trip(tmp_path):
    source, copy = str(tmp_path / "a.livedb"), str(tmp_path / "b.livedb")
    out = str(tmp_path / "out.zip")
    with Database(SCHEMA, path=source, durability="normal") as db:
        fill(db)
        before = dump(db)
    exported = _cli("export", source, out)
    assert exported.returncode == 0, exported.stderr
    assert f"{len(VALUES) + 1} documents" in exported.stdout
    imported = _cli("import", copy, out)
    assert imported.returncode == 0, imported.stderr
    refused = _cli("import", copy, out)
    assert refused.returncode == 1 and "already has documents" in refused.stderr
    replaced = _cli("import", copy, out, "--replace")
    assert replaced.returncode == 0, replaced.stderr
    with Database(SCHEMA, path=copy) as db:
        assert same(dump(db), before)
    missing = _cli("export", str(tmp_path / "none.livedb"), out)
    assert missing.returncode == 1 and "no database" in missing.stderr


def test_the_command_line_checks_a_schema_when_given(tmp_path):
    (tmp_path / "tagschema.py").write_text(SCHEMA_MODULE)
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("tags/documents.jsonl", '{"label": 1}\n')
    target = str(tmp_path / "t.livedb")
    result = subprocess.run([sys.executable, "-m", "livedb", "import", target, str(archive),
                             "--schema", "tagschema:schema"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120,
                            env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": ""})
    assert result.returncode == 1 and "tags.label: expected string, got int" in result.stderr


# -- bad input: refused before more than the limits are read or written --------------------------


def _zip(path: Path, members: dict[str, bytes | str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _line(doc: dict) -> str:
    return json.dumps(doc) + "\n"


def _tag_id(db) -> str:
    tag = db.mutation(lambda ctx: ctx.db.insert("tags", {"label": "probe"}))
    db.mutation(lambda ctx: ctx.db.delete(tag))
    return tag


def test_absurd_creation_times_are_refused_naming_the_line(tmp_path):
    db = Database(SCHEMA, clock=lambda: 1_700_000_000.0)
    tag = _tag_id(db)
    for raw, why in [("1.797e308", "1.797e+308"), ("1e999", "inf"), ("NaN", "nan"),
                     ("-1.0", "-1.0"), ("4102444800.0e1", "41024448000.0"),
                     ("100000000000000000000000000000", "1000000")]:
        line = f'{{"_id": "{tag}", "_creation_time": {raw}, "label": "x"}}\n'
        archive = _zip(tmp_path / "t.zip", {"tags/documents.jsonl": _line({"label": "ok"}) + line})
        with pytest.raises(ValidationError, match="tags/documents.jsonl line 2: _creation_time "
                                                  f".*{re.escape(why)}"):
            import_zip(db, archive)
    assert dump(db)["tags"] == []
    with Database() as files:
        file_id = files.store_file(b"x")
        export_zip(files, tmp_path / "files.zip")
    with zipfile.ZipFile(tmp_path / "files.zip") as good:
        row = json.loads(good.read("_storage/documents.jsonl"))
        data = good.read("_storage/files/" + file_id.partition(":")[2])
    row["_creation_time"] = 1.797e308
    _zip(tmp_path / "bad_files.zip", {"_storage/documents.jsonl": _line(row),
                                      "_storage/files/" + file_id.partition(":")[2]: data})
    with pytest.raises(ValidationError, match="_storage/documents.jsonl line 1: _creation_time"):
        import_zip(db, tmp_path / "bad_files.zip")
    times = [db.query(lambda ctx, i=i: ctx.db.get(i))["_creation_time"]
             for i in [db.mutation(lambda ctx: ctx.db.insert("tags", {"label": "after"}))
                       for _ in range(3)]]
    assert all(math.isfinite(t) and t < 1_800_000_000 for t in times)
    assert times[0] < times[1] < times[2]


def test_a_line_over_the_limit_is_refused_after_reading_about_the_limit(tmp_path):
    import tracemalloc

    archive = tmp_path / "huge.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z, \
            z.open("tags/documents.jsonl", "w", force_zip64=True) as out:
        out.write(_line({"label": "fine"}).encode() + b'{"label": "')
        block = b"x" * (1 << 20)
        for _ in range(64):
            out.write(block)
        out.write(b'"}\n')
    db = Database(SCHEMA)
    tracemalloc.start()
    try:
        with pytest.raises(ValidationError, match=r"tags/documents.jsonl line 2 is longer than "
                                                  r"8388608 bytes"):
            import_zip(db, archive)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20, f"peak {peak} bytes to refuse a 64 MiB line"
    assert dump(db)["tags"] == []


def test_a_line_of_a_large_document_within_the_limits_is_imported(tmp_path):
    source = Database(SCHEMA)
    worst = "\x01" * ((1 << 20) - 200)
    source.mutation(lambda ctx: ctx.db.insert("tags", {"label": worst}))
    export_zip(source, tmp_path / "big.zip")
    copy = Database(SCHEMA)
    assert import_zip(copy, tmp_path / "big.zip")["tags"] == 1
    assert dump(copy)["tags"][0]["label"] == worst


def _written() -> int:
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))


def _storage_archive(tmp_path: Path, declared: bytes, entry: Path | bytes) -> Path:
    """An archive with one stored file whose row declares `declared` and holds `entry`."""
    import hashlib

    with Database() as db:
        file_id = db.store_file(declared)
        export_zip(db, tmp_path / "one.zip")
    with zipfile.ZipFile(tmp_path / "one.zip") as good:
        rows = good.read("_storage/documents.jsonl")
    assert json.loads(rows)["sha256"] == hashlib.sha256(declared).hexdigest()
    archive = tmp_path / "lying.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("_storage/documents.jsonl", rows)
        with z.open("_storage/files/" + file_id.partition(":")[2], "w", force_zip64=True) as out:
            if isinstance(entry, bytes):
                out.write(entry)
            else:
                block = b"\0" * (1 << 20)
                for _ in range(int(entry.name)):
                    out.write(block)
    return archive


@pytest.mark.parametrize("on_disk", [False, True])
def test_a_file_entry_larger_than_its_row_says_is_refused_before_it_is_written(tmp_path, on_disk):
    import tracemalloc

    archive = _storage_archive(tmp_path, b"abc", Path("300"))
    path = str(tmp_path / "t.livedb") if on_disk else None
    with Database(path=path) as db:
        before = _written()
        tracemalloc.start()
        try:
            with pytest.raises(ValidationError, match=r"_storage/files/\w+ does not match .* "
                                                      r"holds 314572800 bytes, the row says 3"):
                import_zip(db, archive)
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert _written() - before < 1 << 20
        assert peak < 4 << 20
        assert db.query(lambda ctx: ctx.db.system.query("_storage").collect()) == []
        if on_disk:
            assert not os.path.exists(path + ".files") or os.listdir(path + ".files") == []


def _patch_sizes(archive: Path, member: str, size: int) -> None:
    """Make the ZIP headers of `member` declare `size` uncompressed bytes (a lying entry)."""
    import struct

    data = bytearray(archive.read_bytes())
    name = member.encode()
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            name_at = start + (30 if signature == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(name)] == name:
                struct.pack_into("<I", data, start + offset, size)
            start += 4
    archive.write_bytes(bytes(data))


def test_a_file_entry_whose_zip_header_lies_is_refused_as_it_streams(tmp_path):
    archive = _storage_archive(tmp_path, b"abc", b"abc" + b"\0" * (8 << 20))
    with zipfile.ZipFile(archive) as z:
        member = next(n for n in z.namelist() if n.startswith("_storage/files/"))
    _patch_sizes(archive, member, 3)
    path = str(tmp_path / "t.livedb")
    with Database(path=path) as db:
        before = _written()
        with pytest.raises(ValidationError, match=member):
            import_zip(db, archive)
        assert _written() - before < 1 << 20
        assert db.query(lambda ctx: ctx.db.system.query("_storage").collect()) == []


MANIFESTS = [
    ("[]", "livedb_export.json must be a JSON object"),
    ("{not json", "livedb_export.json is not valid JSON"),
    (json.dumps({"format": 3, "version": 1}), "field 'format'"),
    (json.dumps({"format": "livedb-export", "version": "1"}), "field 'version'"),
    (json.dumps({"format": "livedb-export", "version": 1, "tables": []}), "field 'tables'"),
    (json.dumps({"format": "livedb-export", "version": 1, "tables": {"tags": "many"}}),
     r"field 'tables\.tags'"),
    (json.dumps({"format": "livedb-export", "version": 1, "tables": {"bad name": 1}}),
     "field 'tables'"),
    (json.dumps({"format": "livedb-export", "version": 1, "exported_at": "noon"}),
     "field 'exported_at'"),
]


@pytest.mark.parametrize(("manifest", "message"), MANIFESTS)
def test_a_malformed_manifest_is_a_validation_error_naming_the_field(tmp_path, manifest, message):
    archive = _zip(tmp_path / "m.zip", {"livedb_export.json": manifest,
                                        "tags/documents.jsonl": _line({"label": "x"})})
    db = Database(SCHEMA)
    with pytest.raises(ValidationError, match=message):
        import_zip(db, archive)
    assert dump(db)["tags"] == []


@pytest.mark.parametrize("name", ["../tags/documents.jsonl", "/tags/documents.jsonl",
                                  "tags\\documents.jsonl", "tags/../../documents.jsonl",
                                  "C:/tags/documents.jsonl"])
def test_members_outside_the_archive_are_refused(tmp_path, name):
    archive = _zip(tmp_path / "p.zip", {"tags/documents.jsonl": _line({"label": "x"}),
                                        name: _line({"label": "y"})})
    db = Database(SCHEMA)
    with pytest.raises(ValidationError, match="outside the archive"):
        import_zip(db, archive)
    assert dump(db)["tags"] == []


def test_deeply_nested_json_is_a_validation_error(tmp_path):
    deep = '{"label": "x", "n": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
    archive = _zip(tmp_path / "d.zip", {"tags/documents.jsonl": deep})
    with pytest.raises(ValidationError, match="line 1"):
        import_zip(Database(), archive)


@pytest.mark.parametrize("line", [
    '{"label": "\\ud800"}',
    '{"label": "ok", "note\\udfff": 1}',
    '{"label": "ok", "deep": [{"x": ["\\udbff"]}]}',
])
def test_lone_surrogates_in_an_import_are_validation_errors_naming_the_line(tmp_path, line):
    archive = _zip(tmp_path / "s.zip", {"tags/documents.jsonl": _line({"label": "fine"}) + line})
    db = Database()
    with pytest.raises(ValidationError, match="tags/documents.jsonl line 2.*surrogate"):
        import_zip(db, archive)
    encoded = _zip(tmp_path / "e.zip", {"tags/documents.jsonl": _line({"label": "fine"}).encode()
                                        + b'{"label": "\xed\xa0\x80"}\n'})
    with pytest.raises(ValidationError, match="tags/documents.jsonl line 2: not valid UTF-8"):
        import_zip(db, encoded)
    paired = _zip(tmp_path / "ok.zip", {"tags/documents.jsonl": '{"label": "\\ud83d\\ude00"}'})
    import_zip(db, paired)
    assert db.query(lambda ctx: ctx.db.query("tags").first())["label"] == "\U0001f600"


def test_a_lone_surrogate_in_a_stored_files_content_type_is_refused(tmp_path):
    with Database() as db:
        file_id = db.store_file(b"x", "text/plain")
        export_zip(db, tmp_path / "f.zip")
    with zipfile.ZipFile(tmp_path / "f.zip") as good:
        row = json.loads(good.read("_storage/documents.jsonl"))
        data = good.read("_storage/files/" + file_id.partition(":")[2])
    line = json.dumps(row).replace('"text/plain"', '"text/\\ud800"')
    archive = _zip(tmp_path / "bad.zip", {"_storage/documents.jsonl": line + "\n",
                                          "_storage/files/" + file_id.partition(":")[2]: data})
    with Database() as db, pytest.raises(ValidationError, match="line 1.*content_type"):
        import_zip(db, archive)


def test_an_export_file_is_private_whatever_the_umask(source, tmp_path):
    import stat

    old = os.umask(0)
    try:
        export_zip(source, tmp_path / "out.zip")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "out.zip").st_mode) == 0o600
    assert os.listdir(tmp_path) == ["out.zip"]


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    db = Database(SCHEMA)
    other = db.mutation(lambda ctx: ctx.db.insert("items", {"name": "x", "value": 1}))
    tag = _tag_id(db)
    crc = _zip(tmp_path / "crc.zip", {"tags/documents.jsonl": _line({"label": "x" * 1000})})
    raw = bytearray(crc.read_bytes())
    raw[60] ^= 0xFF
    crc.write_bytes(bytes(raw))
    cases = {
        "huge line": _zip(tmp_path / "huge.zip", {
            "tags/documents.jsonl": '{"label": "' + "x" * (9 << 20) + '"}\n'}),
        "lying entry": _storage_archive(tmp_path, b"abc", b"abc" * 1000),
        "manifest": _zip(tmp_path / "manifest.zip", {"livedb_export.json": "[1, 2]"}),
        "manifest tables": _zip(tmp_path / "tables.zip", {"livedb_export.json": json.dumps(
            {"format": "livedb-export", "version": 1, "tables": 5})}),
        "creation time": _zip(tmp_path / "time.zip", {"tags/documents.jsonl": _line(
            {"_id": tag, "_creation_time": 1.797e308, "label": "x"})}),
        "other table": _zip(tmp_path / "other.zip", {"tags/documents.jsonl": _line(
            {"_id": other, "_creation_time": 1.0, "label": "x"})}),
        "outside": _zip(tmp_path / "outside.zip", {"../evil/documents.jsonl": "{}\n"}),
        "surrogate": _zip(tmp_path / "surrogate.zip", {
            "tags/documents.jsonl": '{"label": "\\ud800"}\n'}),
        "nested": _zip(tmp_path / "nested.zip", {
            "tags/documents.jsonl": "[" * 50_000 + "]" * 50_000 + "\n"}),
        "not a zip": tmp_path / "not.zip",
        "truncated": tmp_path / "truncated.zip",
        "crc": crc,
    }
    (tmp_path / "not.zip").write_bytes(b"this is not a zip file at all")
    whole = (tmp_path / "huge.zip").read_bytes()
    (tmp_path / "truncated.zip").write_bytes(whole[: len(whole) // 2])
    return cases


def test_the_command_line_reports_every_bad_input_on_one_line(tmp_path, capsys):
    from livedb.__main__ import main

    target = str(tmp_path / "target.livedb")
    for case, archive in _bad_inputs(tmp_path).items():
        code = main(["import", target, str(archive)])
        captured = capsys.readouterr()
        assert code == 1, (case, captured)
        assert captured.out == "", (case, captured.out)
        lines = captured.err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("python -m livedb import: error: "), (
            case, captured.err[:500])
        assert len(lines[0]) < 600, (case, lines[0][:600])
    with Database(SCHEMA, path=target) as db:
        assert dump(db) == {"items": [], "tags": []}


def test_the_command_line_process_prints_no_traceback_for_bad_input(tmp_path):
    cases = _bad_inputs(tmp_path)
    for case in ("manifest", "lying entry", "surrogate", "not a zip"):
        result = _cli("import", str(tmp_path / "target.livedb"), str(cases[case]))
        assert result.returncode == 1, (case, result.stderr)
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1, (
            case, result.stderr)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"\n", b"a", b"{}", b" ", b"\r\n", b"xyz\n\n"]), max_size=40),
       st.lists(st.integers(1, 7), min_size=1, max_size=10))
def test_lines_are_split_the_same_however_the_stream_is_chunked(pieces, cuts):
    from livedb.export import split_lines

    data = b"".join(pieces)
    chunks, start, i = [], 0, 0
    while start < len(data):
        chunks.append(data[start:start + cuts[i % len(cuts)]])
        start += cuts[i % len(cuts)]
        i += 1
    expected = [(n, line) for n, line in enumerate(data.split(b"\n"), 1)
                if line and not line.isspace()]
    assert list(split_lines(chunks, "m")) == expected
