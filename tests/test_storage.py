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
    files = None if db._files.folder is None else Path(db._files.folder)
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
        assert list(db._files._blobs) == [kept]
    else:
        assert not gone_path.exists()
        assert [p.name for p in files.iterdir()] == [kept.partition(":")[2]]


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
    folder = Path(path + ".files")
    (folder / ".tmp-half-written").write_bytes(b"partial")
    (folder / "41d0000000000000abcdef").write_bytes(b"renamed but never committed")
    with Database(path=path) as db:
        assert [p.name for p in folder.iterdir()] == [file_id.partition(":")[2]]
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
        assert db._files._blobs == {}


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
            assert names == sorted(i.partition(":")[2] for i in (first, second))
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
        assert [p for p in Path(target_path + ".files").iterdir()] == []
