"""Export and import: ZIPs of JSON Lines that round-trip every value kind, keep `_id`
and `_creation_time`, refuse to mix into non-empty tables unless told, and are atomic."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

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
