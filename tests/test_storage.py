"""File storage: round trips in memory and on disk, deletion, crashes, large files, export."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

from livedb import (
    CorruptionError,
    Database,
    DocumentNotFoundError,
    LiveDBError,
    ValidationError,
    action,
    mutation,
    query,
    v,
)
from livedb._database import files_of, kernel_of
from livedb.export import export_zip, import_zip


@action(args={"data": v.bytes(), "content_type": v.optional(v.string())})
def store(ctx, data, content_type=None):
    return ctx.storage.store(data, content_type)


@action(args={"id": v.id("_storage")})
def get(ctx, id):
    return ctx.storage.get(id)


@action(args={"id": v.id("_storage")})
def delete_in_action(ctx, id):
    ctx.storage.delete(id)


@mutation(args={"id": v.id("_storage"), "fail": v.boolean()})
def delete_in_mutation(ctx, id, fail):
    ctx.storage.delete(id)
    if fail:
        raise RuntimeError("rolled back")


@query(args={"id": v.id("_storage")})
def metadata(ctx, id):
    return ctx.storage.get_metadata(id)


@query(args={"id": v.id("_storage")})
def url(ctx, id):
    return ctx.storage.get_url(id)


@action(args={"id": v.id("_storage")})
def action_metadata_and_url(ctx, id):
    return [ctx.storage.get_metadata(id), ctx.storage.get_url(id)]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def url_path(file_url: str) -> Path:
    parsed = urlparse(file_url)
    assert parsed.scheme == "file"
    return Path(url2pathname(parsed.path))


@pytest.fixture(params=["memory", "disk"])
def db(request, tmp_path):
    path = None if request.param == "memory" else str(tmp_path / "files.livedb")
    with Database(path=path) as database:
        yield database


def test_store_get_and_metadata_round_trip(db):
    data = bytes(range(256)) * 100
    file_id = db.action(store, {"data": data, "content_type": "application/octet-stream"})
    assert file_id.table == "_storage"
    assert db.action(get, {"id": file_id}) == data
    meta = db.query(metadata, {"id": file_id})
    assert meta == {"_id": file_id, "_creation_time": meta["_creation_time"],
                    "sha256": sha(data), "size": len(data),
                    "content_type": "application/octet-stream"}
    assert db.action(action_metadata_and_url, {"id": file_id})[0] == meta
    assert db.query(lambda ctx: ctx.db.system.get(file_id))["sha256"] == sha(data)
    empty = db.store_file(b"")
    assert db.action(get, {"id": empty}) == b""
    assert db.query(metadata, {"id": empty})["size"] == 0
    assert db.query(metadata, {"id": empty})["content_type"] is None


def test_store_from_file_objects_and_bytes_like_values(db, tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"on disk " * 1000)
    with open(source, "rb") as f:
        from_file = db.store_file(f, "text/plain")
    from_stream = db.store_file(io.BytesIO(b"stream"))
    from_view = db.store_file(memoryview(bytearray(b"view")))
    assert db.action(get, {"id": from_file}) == source.read_bytes()
    assert db.action(get, {"id": from_stream}) == b"stream"
    assert db.action(get, {"id": from_view}) == b"view"
    assert db.query(metadata, {"id": from_file})["content_type"] == "text/plain"


def test_bad_data_and_ids_are_refused(db, tmp_path):
    with pytest.raises(TypeError, match="bytes or a binary file object"):
        db.store_file("text")
    text = tmp_path / "text.txt"
    text.write_text("hello")
    with open(text) as f, pytest.raises(TypeError, match="binary mode"):
        db.store_file(f)
    with pytest.raises(ValidationError, match="content_type"):
        db.store_file(b"x", content_type=5)
    with pytest.raises(ValidationError, match="not a storage id"):
        db.query(lambda ctx: ctx.storage.get_metadata("users:0123456789abcdef"))
    with pytest.raises(ValidationError, match="not a storage id"):
        db.action(lambda ctx: ctx.storage.get("nonsense"))
    assert db.query(lambda ctx: ctx.db.system.query("_storage").collect()) == []


def test_store_and_get_are_for_actions_only(db):
    file_id = db.store_file(b"x")
    with pytest.raises(LiveDBError, match="actions only"):
        db.mutation(lambda ctx: ctx.storage.store(b"y"))
    with pytest.raises(LiveDBError, match="actions only"):
        db.query(lambda ctx: ctx.storage.get(file_id))
    with pytest.raises(LiveDBError, match="inside a mutation"):
        db.mutation(lambda ctx: db.store_file(b"y"))
    assert db.query(lambda ctx: len(ctx.db.system.query("_storage").collect())) == 1


def test_deleting_removes_the_blob(db):
    kept = db.store_file(b"kept")
    gone = db.store_file(b"gone")
    by_mutation = db.store_file(b"by mutation")
    files = None if files_of(db).folder is None else Path(files_of(db).folder)
    if files is not None:
        assert len(list(files.iterdir())) == 3
        gone_path = url_path(db.query(url, {"id": gone}))
        assert gone_path.read_bytes() == b"gone"
    db.action(delete_in_action, {"id": gone})
    assert db.action(get, {"id": gone}) is None
    assert db.query(metadata, {"id": gone}) is None
    assert db.query(url, {"id": gone}) is None
    with pytest.raises(DocumentNotFoundError, match="no stored file"):
        db.action(delete_in_action, {"id": gone})

    with pytest.raises(RuntimeError):
        db.mutation(delete_in_mutation, {"id": by_mutation, "fail": True})
    assert db.action(get, {"id": by_mutation}) == b"by mutation"
    db.mutation(delete_in_mutation, {"id": by_mutation, "fail": False})
    assert db.action(get, {"id": by_mutation}) is None
    with pytest.raises(DocumentNotFoundError):
        db.mutation(delete_in_mutation, {"id": by_mutation, "fail": False})

    assert db.action(get, {"id": kept}) == b"kept"
    if files is None:
        assert list(files_of(db)._blobs.values()) == [b"kept"]
    else:
        assert not gone_path.exists()
        kept_name = url_path(db.query(url, {"id": kept})).name
        assert [p.name for p in files.iterdir()] == [kept_name]


def test_metadata_is_reactive(db):
    file_id = db.store_file(b"watch me", "text/plain")
    seen = []
    with db.subscribe(metadata, {"id": file_id}, lambda meta: seen.append(meta)):
        db.store_file(b"another file")
        db.action(delete_in_action, {"id": file_id})
    assert [None if m is None else m["size"] for m in seen] == [8, None]


def test_urls_are_file_urls_on_disk_and_none_in_memory(tmp_path):
    with Database() as db:
        file_id = db.store_file(b"x")
        assert db.query(url, {"id": file_id}) is None
    path = tmp_path / "with space" / "app.livedb"
    path.parent.mkdir()
    with Database(path=str(path)) as db:
        file_id = db.store_file(b"bytes on disk")
        file_url = db.query(url, {"id": file_id})
        assert file_url.startswith("file://")
        assert db.action(action_metadata_and_url, {"id": file_id})[1] == file_url
        on_disk = url_path(file_url)
        assert on_disk.parent == Path(str(path) + ".files")
        assert on_disk.read_bytes() == b"bytes on disk"


def test_stored_files_survive_a_restart(tmp_path):
    path = str(tmp_path / "app.livedb")
    with Database(path=path) as db:
        file_id = db.store_file(b"durable", "text/plain")
        meta = db.query(metadata, {"id": file_id})
    with Database(path=path) as db:
        assert db.action(get, {"id": file_id}) == b"durable"
        assert db.query(metadata, {"id": file_id}) == meta


def test_leftovers_of_a_crash_are_swept_at_open(tmp_path):
    path = str(tmp_path / "app.livedb")
    with Database(path=path) as db:
        file_id = db.store_file(b"real")
        real = url_path(db.query(url, {"id": file_id})).name
    folder = Path(path + ".files")
    (folder / ".tmp-half-written").write_bytes(b"partial")
    (folder / ("41d0000000000000abcdef-" + sha(b"x"))).write_bytes(b"x, renamed, not committed")
    with Database(path=path) as db:
        assert [p.name for p in folder.iterdir()] == [real]
        assert db.action(get, {"id": file_id}) == b"real"


def test_a_damaged_or_missing_blob_is_reported_not_served(tmp_path):
    path = str(tmp_path / "app.livedb")
    with Database(path=path) as db:
        damaged = db.store_file(b"original bytes")
        missing = db.store_file(b"will vanish")
        url_path(db.query(url, {"id": damaged})).write_bytes(b"tampered bytes")
        url_path(db.query(url, {"id": missing})).unlink()
        with pytest.raises(CorruptionError, match="damaged"):
            db.action(get, {"id": damaged})
        with pytest.raises(CorruptionError, match="missing"):
            db.action(get, {"id": missing})


def test_a_failed_store_leaves_no_row_and_no_file(tmp_path):
    path = str(tmp_path / "app.livedb")

    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def read(self, n: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 3:
                raise OSError("disk on fire")
            return b"x" * 1000

    with Database(path=path) as db:
        with pytest.raises(OSError, match="disk on fire"):
            db.store_file(Broken())
        assert os.listdir(path + ".files") == []
        assert db.query(lambda ctx: ctx.db.system.query("_storage").collect()) == []
    with Database() as db:
        with pytest.raises(OSError):
            db.store_file(Broken())
        assert files_of(db)._blobs == {}


class Generated(io.RawIOBase):
    """`size` bytes of a repeated random block, made as they are read."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = os.urandom(1 << 16)
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = min(self.left, len(self.block) if n < 0 else n)
        data = (self.block * (n // len(self.block) + 1))[:n]
        self.left -= n
        self.digest.update(data)
        return data


def test_a_50_mb_file_is_stored_with_bounded_memory(tmp_path):
    size = 50 * 1024 * 1024
    path = str(tmp_path / "big.livedb")
    with Database(path=path) as db:
        source = Generated(size)
        tracemalloc.start()
        try:
            file_id = db.store_file(source, "application/octet-stream")
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert source.left == 0
        assert peak < 8 * 1024 * 1024, f"peak {peak} bytes while storing {size}"
        meta = db.query(metadata, {"id": file_id})
        assert meta["size"] == size
        assert meta["sha256"] == source.digest.hexdigest()
        on_disk = url_path(db.query(url, {"id": file_id}))
        assert on_disk.stat().st_size == size
        digest = hashlib.sha256()
        with open(on_disk, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        assert digest.hexdigest() == meta["sha256"]


# -- export and import ------------------------------------------------------------------------


@pytest.mark.parametrize("target_on_disk", [False, True])
def test_export_and_import_carry_stored_files(db, tmp_path, target_on_disk):
    db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "has files"}))
    first = db.store_file(b"first file", "text/plain")
    second = db.store_file(bytes(range(256)) * 4000)
    gone = db.store_file(b"deleted before the export")
    db.action(delete_in_action, {"id": gone})
    archive = tmp_path / "export.zip"
    assert export_zip(db, archive) == {"notes": 1, "_storage": 2}

    target_path = str(tmp_path / "target.livedb") if target_on_disk else None
    with Database(path=target_path) as target:
        assert import_zip(target, archive) == {"notes": 1, "_storage": 2}
        for file_id in (first, second):
            assert target.action(get, {"id": file_id}) == db.action(get, {"id": file_id})
            assert (target.query(metadata, {"id": file_id})
                    == db.query(metadata, {"id": file_id}))
        assert target.query(metadata, {"id": gone}) is None
        with pytest.raises(LiveDBError, match="table 'notes' already has documents"):
            import_zip(target, archive, mode="refuse")
        with pytest.raises(LiveDBError, match="already exists"):
            import_zip(target, archive, mode="append")
        assert target.action(get, {"id": first}) == b"first file"
        extra = target.store_file(b"not in the export")
        assert import_zip(target, archive, mode="replace")["_storage"] == 2
        assert target.query(metadata, {"id": extra}) is None
        assert target.action(get, {"id": second}) == bytes(range(256)) * 4000
        if target_on_disk:
            names = sorted(p.name for p in Path(target_path + ".files").iterdir())
            assert names == sorted(url_path(target.query(url, {"id": i})).name
                                   for i in (first, second))
        new = target.store_file(b"after import")
        assert target.query(metadata, {"id": new})["_creation_time"] > target.query(
            metadata, {"id": second})["_creation_time"]


def test_importing_files_into_a_database_that_has_some_is_refused_by_default(tmp_path):
    with Database() as db:
        file_id = db.store_file(b"only files")
        assert export_zip(db, tmp_path / "files.zip") == {"_storage": 1}
    with Database() as target:
        other = target.store_file(b"already here")
        with pytest.raises(LiveDBError, match="already has stored files"):
            import_zip(target, tmp_path / "files.zip")
        assert target.query(metadata, {"id": file_id}) is None
        assert import_zip(target, tmp_path / "files.zip", mode="append") == {"_storage": 1}
        assert target.action(get, {"id": other}) == b"already here"
        assert target.action(get, {"id": file_id}) == b"only files"


def test_an_export_without_files_has_no_storage_entry(tmp_path):
    with Database() as db:
        db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "plain"}))
        assert export_zip(db, tmp_path / "plain.zip") == {"notes": 1}
    with Database() as target:
        assert import_zip(target, tmp_path / "plain.zip") == {"notes": 1}


def test_a_tampered_file_in_an_export_fails_the_whole_import(tmp_path):
    import zipfile

    with Database() as db:
        db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "x"}))
        file_id = db.store_file(b"genuine")
        export_zip(db, tmp_path / "good.zip")
    with zipfile.ZipFile(tmp_path / "good.zip") as good, \
            zipfile.ZipFile(tmp_path / "bad.zip", "w") as bad:
        for item in good.infolist():
            data = good.read(item)
            if item.filename.startswith("_storage/files/"):
                data = b"forged"
            bad.writestr(item, data)
    target_path = str(tmp_path / "target.livedb")
    with Database(path=target_path) as target:
        with pytest.raises(ValidationError, match="does not match its size and sha256"):
            import_zip(target, tmp_path / "bad.zip")
        assert target.query(lambda ctx: ctx.db.system.query("_storage").collect()) == []
        assert target.query(metadata, {"id": file_id}) is None
        folder = Path(target_path + ".files")
        assert not folder.exists() or list(folder.iterdir()) == []


# -- imports never touch the bytes of files they do not commit ----------------------------------


def _rewrite(source: Path, target: Path, changes: dict) -> None:
    """Copy a ZIP, passing the data of each member named in `changes` through its function."""
    import zipfile

    with zipfile.ZipFile(source) as good, zipfile.ZipFile(target, "w") as out:
        names = good.namelist()
        for name in names:
            data = good.read(name)
            if name in changes:
                data = changes[name](data)
            out.writestr(name, data)
        for name, change in changes.items():
            if name not in names:
                out.writestr(name, change(b""))


def _forge_reused_file(db, tmp_path: Path, reused: str, new: bytes, *, extra_rows: str = "",
                       extra_members: dict | None = None) -> Path:
    """An export of `db` in which the file `reused` has bytes `new` (row updated to match)."""
    import json

    own, forged = tmp_path / "own.zip", tmp_path / "forged.zip"
    export_zip(db, own)

    def rows(data: bytes) -> bytes:
        lines = []
        for line in data.decode().splitlines():
            row = json.loads(line)
            if row["_id"] == reused:
                row.update(sha256=sha(new), size=len(new))
            lines.append(json.dumps(row))
        return ("\n".join(lines) + "\n" + extra_rows).encode()

    changes = {"_storage/documents.jsonl": rows,
               "_storage/files/" + reused.partition(":")[2]: lambda _data: new}
    changes.update(extra_members or {})
    _rewrite(own, forged, changes)
    return forged


def _files_as_they_were(db, files: dict) -> None:
    for file_id, data in files.items():
        assert db.action(get, {"id": file_id}) == data
        assert db.query(metadata, {"id": file_id})["sha256"] == sha(data)
        if files_of(db).folder is not None:
            assert url_path(db.query(url, {"id": file_id})).read_bytes() == data


@pytest.mark.parametrize("on_disk", [False, True])
def test_a_failed_replace_import_leaves_every_stored_file_as_it_was(tmp_path, on_disk):
    path = str(tmp_path / "target.livedb") if on_disk else None
    with Database(path=path) as db:
        db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "kept"}))
        reused = db.store_file(b"the old bytes of a file the import reuses", "text/plain")
        other = db.store_file(b"another old file")
        files = {reused: b"the old bytes of a file the import reuses",
                 other: b"another old file"}
        forged = _forge_reused_file(db, tmp_path, reused, b"new bytes, of another length",
                                    extra_rows='{"_id": "not an id"}\n')
        with pytest.raises(ValidationError, match="documents.jsonl line 3"):
            import_zip(db, forged, mode="replace")
        _files_as_they_were(db, files)
        assert [d["text"] for d in db.query(lambda ctx: ctx.db.query("notes").collect())] == [
            "kept"]
        if on_disk:
            assert len(os.listdir(path + ".files")) == 2
    if on_disk:
        with Database(path=path) as db:
            _files_as_they_were(db, files)
            assert len(os.listdir(path + ".files")) == 2


def test_an_import_that_fails_to_commit_leaves_every_stored_file_as_it_was(tmp_path):
    path = str(tmp_path / "target.livedb")
    old = b"the old bytes of a file the import reuses"
    with Database(path=path) as db:
        reused = db.store_file(old)
        notes = "".join('{"text": "%s"}\n' % ("x" * 3000) for _ in range(100)).encode()
        forged = _forge_reused_file(db, tmp_path, reused, b"brand new bytes",
                                    extra_members={"notes/documents.jsonl": lambda _d: notes})
        conn = kernel_of(db).engine._conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages + 1}")
        with pytest.raises(LiveDBError, match="full.*not committed"):
            import_zip(db, forged, mode="replace")
        conn.execute("PRAGMA max_page_count=1073741823")
        _files_as_they_were(db, {reused: old})
        assert db.query(lambda ctx: ctx.db.query("notes").collect()) == []
        assert len(os.listdir(path + ".files")) == 1
    with Database(path=path) as db:
        _files_as_they_were(db, {reused: old})
        assert len(os.listdir(path + ".files")) == 1


def test_a_replace_import_with_new_bytes_for_an_id_commits_them(tmp_path):
    path = str(tmp_path / "target.livedb")
    with Database(path=path) as db:
        reused = db.store_file(b"old")
        forged = _forge_reused_file(db, tmp_path, reused, b"new and longer")
        assert import_zip(db, forged, mode="replace") == {"_storage": 1}
        _files_as_they_were(db, {reused: b"new and longer"})
        assert len(os.listdir(path + ".files")) == 1
    with Database(path=path) as db:
        _files_as_they_were(db, {reused: b"new and longer"})


# -- an export is one snapshot, files included ---------------------------------------------------


def test_an_export_has_every_file_of_its_snapshot_while_a_thread_deletes_them(db, tmp_path):
    import json
    import threading
    import zipfile

    db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "the export's first table"}))
    contents = {}
    for i in range(40):
        data = os.urandom(2000 + i)
        contents[db.store_file(data)] = data
    snapshot_taken, all_deleted = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def deleter() -> None:
        try:
            assert snapshot_taken.wait(30)
            for file_id in contents:
                db.action(delete_in_action, {"id": file_id})
            all_deleted.set()
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)
            all_deleted.set()

    def progress(table: str, done: int, total: int | None) -> None:
        if table == "notes" and done == total:
            snapshot_taken.set()
            assert all_deleted.wait(60)

    thread = threading.Thread(target=deleter)
    thread.start()
    try:
        counts = export_zip(db, tmp_path / "snapshot.zip", progress=progress)
    finally:
        snapshot_taken.set()
        thread.join(60)
    assert not errors and all_deleted.is_set()
    assert counts == {"notes": 1, "_storage": len(contents)}
    with zipfile.ZipFile(tmp_path / "snapshot.zip") as archive:
        rows = [json.loads(line) for line in
                archive.read("_storage/documents.jsonl").decode().splitlines()]
        assert sorted(r["_id"] for r in rows) == sorted(contents)
        for file_id, data in contents.items():
            assert archive.read("_storage/files/" + file_id.partition(":")[2]) == data
    for file_id in contents:
        assert db.action(get, {"id": file_id}) is None
    if files_of(db).folder is not None:
        assert os.listdir(files_of(db).folder) == []
    else:
        assert files_of(db)._blobs == {}
    with Database() as copy:
        assert import_zip(copy, tmp_path / "snapshot.zip")["_storage"] == len(contents)
        for file_id, data in contents.items():
            assert copy.action(get, {"id": file_id}) == data


# -- the blob folder: permissions, full disks, links, leftovers ----------------------------------


def test_stored_files_and_their_folder_are_private_whatever_the_umask(tmp_path):
    import stat

    path = str(tmp_path / "app.livedb")
    old = os.umask(0)
    try:
        with Database(path=path) as db:
            file_id = db.store_file(b"secret")
            on_disk = url_path(db.query(url, {"id": file_id}))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path + ".files").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(on_disk).st_mode) == 0o600


UNREADABLE_CHILD = """
    import os, sys
    import livedb
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
    db = livedb.Database(path=sys.argv[1])
    print("opened", db.query(lambda ctx: [d["text"] for d in ctx.db.query("notes").collect()]))
    for what, call in [("get", lambda: db.action(lambda ctx: ctx.storage.get(sys.argv[2]))),
                       ("store", lambda: db.store_file(b"more"))]:
        try:
            call()
        except livedb.LiveDBError as e:
            print(what, type(e).__name__, e)
        else:
            print(what, "worked")
    print("rows", db.query(lambda ctx: len(ctx.db.system.query("_storage").collect())))
    db.close()
"""


def test_an_unreadable_blob_folder_is_a_clear_error_and_does_not_stop_opening():
    import shutil
    import subprocess
    import sys
    import tempfile
    import textwrap

    folder = Path(tempfile.mkdtemp(prefix="livedb-unreadable-"))
    try:
        os.chmod(folder, 0o777)
        path = str(folder / "app.livedb")
        with Database(path=path) as db:
            db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "readable"}))
            file_id = db.store_file(b"locked away")
        for name in os.listdir(folder):
            if not name.endswith(".files"):
                os.chmod(folder / name, 0o666)
        os.chmod(path + ".files", 0o000)
        try:
            child = subprocess.run(
                [sys.executable, "-c", textwrap.dedent(UNREADABLE_CHILD), path, file_id],
                capture_output=True, text=True, timeout=60)
        finally:
            os.chmod(path + ".files", 0o700)
        lines = child.stdout.splitlines()
        assert lines and lines[0] == "opened ['readable']", child.stdout + child.stderr
        assert lines[1].startswith("get LiveDBError") and "app.livedb.files" in lines[1], lines
        assert "Permission denied" in lines[1]
        assert lines[2].startswith("store LiveDBError") and "app.livedb.files" in lines[2], lines
        assert lines[3] == "rows 1"
        with Database(path=path) as db:
            assert db.action(get, {"id": file_id}) == b"locked away"
    finally:
        shutil.rmtree(folder)


FULL_CHILD = """
    import os, resource, signal, sys
    import livedb
    db = livedb.Database(path=sys.argv[1])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    try:
        db.store_file(b"x" * (3 << 20))
    except livedb.LiveDBError as e:
        print(type(e).__name__, e)
    else:
        print("stored")
    print("files", len(os.listdir(sys.argv[1] + ".files")))
    print("rows", db.query(lambda ctx: len(ctx.db.system.query("_storage").collect())))
"""


def test_a_full_blob_folder_is_a_clear_error_and_leaves_nothing(tmp_path):
    import subprocess
    import sys
    import textwrap

    path = str(tmp_path / "app.livedb")
    with Database(path=path) as db:
        db.store_file(b"small")
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(FULL_CHILD), path],
                           capture_output=True, text=True, timeout=60)
    lines = child.stdout.splitlines()
    assert lines and lines[0].startswith("LiveDBError"), child.stdout + child.stderr
    assert "app.livedb.files" in lines[0] and "too large" in lines[0], lines
    assert lines[1] == "files 1", lines
    assert lines[2] == "rows 1"


def test_a_symlinked_blob_folder_is_refused_and_nothing_behind_it_is_touched(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "holiday.jpg").write_bytes(b"not livedb's")
    (elsewhere / "41d0000000000000abcdef").write_bytes(b"looks like a blob, is not ours")
    (elsewhere / ".tmp-notes").write_bytes(b"a user's file")
    path = str(tmp_path / "app.livedb")
    with Database(path=path) as db:
        db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "x"}))
    os.symlink(elsewhere, path + ".files")
    with pytest.raises(LiveDBError, match=r"app\.livedb\.files is a symbolic link"):
        Database(path=path)
    assert sorted(os.listdir(elsewhere)) == [".tmp-notes", "41d0000000000000abcdef",
                                             "holiday.jpg"]
    os.remove(path + ".files")
    with Database(path=path) as db:
        assert db.query(lambda ctx: ctx.db.query("notes").first())["text"] == "x"


def test_the_sweep_at_open_removes_only_what_livedb_left_behind(tmp_path):
    path = str(tmp_path / "app.livedb")
    with Database(path=path) as db:
        file_id = db.store_file(b"real")
        real = url_path(db.query(url, {"id": file_id})).name
    folder = Path(path + ".files")
    (folder / ".tmp-half-written").write_bytes(b"partial")
    (folder / ("41d0000000000000abcdef-" + "0" * 64)).write_bytes(b"never committed")
    (folder / (file_id.partition(":")[2] + "-" + "1" * 64)).write_bytes(b"superseded bytes")
    (folder / "README.txt").write_bytes(b"someone's notes")
    (folder / "Makefile2024").write_bytes(b"no row has this id")
    (folder / "subfolder").mkdir()
    with Database(path=path) as db:
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [real, "Makefile2024", "README.txt", "subfolder"])
        assert db.action(get, {"id": file_id}) == b"real"


def test_files_named_as_older_versions_named_them_are_still_served(tmp_path):
    path = str(tmp_path / "app.livedb")
    with Database(path=path) as db:
        file_id = db.store_file(b"stored by an older livedb")
        current = url_path(db.query(url, {"id": file_id}))
    os.rename(current, current.with_name(file_id.partition(":")[2]))
    with Database(path=path) as db:
        assert db.action(get, {"id": file_id}) == b"stored by an older livedb"
        assert url_path(db.query(url, {"id": file_id})).read_bytes() == (
            b"stored by an older livedb")


def test_a_content_type_with_a_lone_surrogate_is_a_validation_error(db):
    with pytest.raises(ValidationError, match="content_type"):
        db.store_file(b"x", "text/\ud800plain")
    with pytest.raises(ValidationError, match="content_type"):
        db.action(lambda ctx: ctx.storage.store(b"x", "\udfff"))
    assert db.query(lambda ctx: ctx.db.system.query("_storage").collect()) == []
    if files_of(db).folder is not None and os.path.isdir(files_of(db).folder):
        assert os.listdir(files_of(db).folder) == []


def test_a_reader_that_starts_after_a_delete_does_not_delay_its_removal(tmp_path):
    path = str(tmp_path / "app.livedb")
    with Database(path=path) as db:
        file_id = db.store_file(b"going")
        on_disk = url_path(db.query(url, {"id": file_id}))
        files = files_of(db)
        with files.pinned():
            db.action(delete_in_action, {"id": file_id})
            assert on_disk.exists()
            later = files.pinned()
            later.__enter__()
        assert not on_disk.exists()
        later.__exit__(None, None, None)
        assert db.action(get, {"id": file_id}) is None


def _two_versions(db, tmp_path: Path, file_id: str) -> tuple[Path, Path]:
    """Two archives of `db` giving `file_id` the bytes b"A..." and b"B..." respectively."""
    archives = []
    for letter in "AB":
        folder = tmp_path / letter
        folder.mkdir()
        archives.append(_forge_reused_file(db, folder, file_id, letter.encode() * 5000))
    return archives[0], archives[1]


@pytest.mark.parametrize("on_disk", [False, True])
def test_gets_while_imports_replace_a_files_bytes_see_old_or_new_bytes_whole(
        tmp_path, frequent_thread_switches, on_disk):
    import threading

    from threadkit import run_threads

    path = str(tmp_path / "app.livedb") if on_disk else None
    with Database(path=path) as db:
        file_id = db.store_file(b"A" * 5000)
        to_a, to_b = _two_versions(db, tmp_path, file_id)
        done = threading.Event()
        seen: set[bytes] = set()

        def reader() -> None:
            while not done.is_set():
                seen.add(db.action(get, {"id": file_id}))

        def importer() -> None:
            try:
                for i in range(30):
                    import_zip(db, to_b if i % 2 == 0 else to_a, mode="replace")
            finally:
                done.set()

        run_threads([reader, reader, importer], timeout=120)
        assert seen and seen <= {b"A" * 5000, b"B" * 5000}
        if path is None:
            assert list(files_of(db)._blobs.values()) == [b"A" * 5000]
        else:
            assert len(os.listdir(path + ".files")) == 1


IMPORT_CHILD = """
    import sys
    sys.path.insert(0, sys.argv[4])
    from livedb import Database
    from livedb.export import import_zip

    db = Database(path=sys.argv[1])
    print("ready", flush=True)
    for i in range(1_000_000):
        import_zip(db, sys.argv[2 + i % 2], mode="replace")
        print("ack", i, flush=True)
"""


def test_a_process_killed_while_imports_replace_a_file_leaves_it_whole(tmp_path):
    import random
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    path = str(tmp_path / "app.livedb")
    with Database(path=path) as db:
        file_id = db.store_file(b"A" * 5000)
        to_a, to_b = _two_versions(db, tmp_path, file_id)
    root = str(Path(__file__).resolve().parent.parent)
    for _round in range(4):
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(IMPORT_CHILD), path, str(to_b), str(to_a),
             root], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        time.sleep(random.uniform(0.05, 0.5))
        child.send_signal(signal.SIGKILL)
        child.wait()
        with Database(path=path) as db:
            data = db.action(get, {"id": file_id})
            assert data in (b"A" * 5000, b"B" * 5000)
            assert db.query(metadata, {"id": file_id})["sha256"] == sha(data)
            assert len(os.listdir(path + ".files")) == 1


def test_a_blob_folder_that_is_a_file_is_a_clear_error_when_a_file_is_stored(tmp_path):
    path = str(tmp_path / "app.livedb")
    with Database(path=path) as db:
        db.mutation(lambda ctx: ctx.db.insert("notes", {"text": "x"}))
    Path(path + ".files").write_bytes(b"not a folder")
    with Database(path=path) as db:
        assert db.query(lambda ctx: ctx.db.query("notes").first())["text"] == "x"
        with pytest.raises(LiveDBError, match=r"app\.livedb\.files exists but is not a folder"):
            db.store_file(b"y")
        assert db.query(lambda ctx: ctx.db.system.query("_storage").collect()) == []
