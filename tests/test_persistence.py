"""Durable databases: round trips through the file, reopening, group commit, schema
evolution, format versions, locking, damaged files, read-only files and a full disk."""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import livedb
from livedb import (
    CorruptionError,
    Database,
    DatabaseLockedError,
    LiveDBError,
    SchemaError,
    ValidationError,
    define_schema,
    define_table,
    mutation,
    query,
    v,
)
from livedb._database import kernel_of
from livedb._engines.sqlite import APPLICATION_ID, FORMAT_VERSION, SqliteEngine

ROOT = Path(__file__).resolve().parent.parent

SCHEMA = define_schema({
    "tasks": define_table({"title": v.string(), "rank": v.int64(),
                           "meta": v.optional(v.any())})
    .index("by_rank", ["rank"]),
    "notes": define_table({"body": v.string()}),
})


@mutation(args={"title": v.string(), "rank": v.int64()})
def add_task(ctx, title, rank):
    return ctx.db.insert("tasks", {"title": title, "rank": rank})


@query
def all_tasks(ctx):
    return ctx.db.query("tasks").collect()


@query
def tasks_by_rank(ctx):
    return ctx.db.query("tasks").with_index("by_rank").order("desc").collect()


def insert(db, table, doc):
    return db.mutation(lambda ctx: ctx.db.insert(table, doc))


def everything(db, tables=("tasks", "notes")):
    """Every document of `tables`, in creation order, as plain data."""
    return db.query(lambda ctx: {t: ctx.db.query(t).collect() for t in tables})


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "app.livedb")


def seed(path, n=5, durability="normal"):
    with Database(SCHEMA, path=path, durability=durability) as db:
        ids = [db.mutation(add_task, {"title": f"t{i}", "rank": i}) for i in range(n)]
        before = everything(db)
    return ids, before


# -- round trips --------------------------------------------------------------------------


def test_writes_survive_close_and_reopen(path):
    values = {"int": 2**62, "float": 1.0, "neg_zero": -0.0, "nan": math.nan, "inf": -math.inf,
              "bytes": b"\x00\xff", "list": [1, 2.5, "x", None, True],
              "nested": {"a": {"b": [b"y", {"c": 3}]}}}
    with Database(SCHEMA, path=path) as db:
        kept = db.mutation(add_task, {"title": "kept", "rank": 1})
        patched = db.mutation(add_task, {"title": "patch me", "rank": 2})
        replaced = db.mutation(add_task, {"title": "replace me", "rank": 3})
        deleted = db.mutation(add_task, {"title": "delete me", "rank": 4})
        db.mutation(lambda ctx: ctx.db.patch(patched, {"rank": 20, "meta": values}))
        db.mutation(lambda ctx: ctx.db.replace(replaced, {"title": "replaced", "rank": 30}))
        db.mutation(lambda ctx: ctx.db.delete(deleted))
        insert(db, "notes", {"body": "hello"})
        before = everything(db)
    with Database(SCHEMA, path=path) as db:
        after = everything(db)
        assert db.query(lambda ctx: ctx.db.get(deleted)) is None
        assert db.query(lambda ctx: ctx.db.get(kept))["title"] == "kept"
        meta = db.query(lambda ctx: ctx.db.get(patched))["meta"]
    assert [d["title"] for d in after["tasks"]] == ["kept", "patch me", "replaced"]
    assert repr(after) == repr(before)
    assert type(meta["int"]) is int and type(meta["float"]) is float
    assert math.copysign(1, meta["neg_zero"]) == -1 and math.isnan(meta["nan"])
    assert meta["bytes"] == b"\x00\xff" and meta["nested"]["a"]["b"][0] == b"y"
    assert isinstance(after["tasks"][0]["_id"], livedb.Id)


def test_indexes_are_rebuilt_at_open(path):
    with Database(SCHEMA, path=path, durability="normal") as db:
        for rank in [5, 1, 4, 2, 3]:
            db.mutation(add_task, {"title": f"r{rank}", "rank": rank})
        before = db.query(tasks_by_rank)
    with Database(SCHEMA, path=path) as db:
        after = db.query(tasks_by_rank)
        middle = db.query(lambda ctx: ctx.db.query("tasks")
                          .with_index("by_rank", lambda q: q.gt("rank", 1).lt("rank", 4))
                          .collect())
    assert after == before
    assert [d["rank"] for d in after] == [5, 4, 3, 2, 1]
    assert [d["rank"] for d in middle] == [2, 3]


def test_creation_times_keep_increasing_after_reopen_even_with_a_clock_behind(path):
    clock = lambda: 1000.0  # noqa: E731
    with Database(SCHEMA, path=path, clock=clock, durability="normal") as db:
        ids = [db.mutation(add_task, {"title": f"t{i}", "rank": i}) for i in range(3)]
        newest = db.query(lambda ctx: ctx.db.get(ids[-1]))["_creation_time"]
        db.mutation(lambda ctx: ctx.db.delete(ids[-1]))
    with Database(SCHEMA, path=path, clock=clock) as db:
        fresh = db.mutation(add_task, {"title": "fresh", "rank": 9})
        doc = db.query(lambda ctx: ctx.db.get(fresh))
        order = [d["title"] for d in db.query(all_tasks)]
    assert doc["_creation_time"] > newest
    assert fresh not in ids
    assert order == ["t0", "t1", "fresh"]


def test_path_like_and_normal_durability(tmp_path):
    target = tmp_path / "sub.livedb"
    with Database(SCHEMA, path=target, durability="normal") as db:
        db.mutation(add_task, {"title": "a", "rank": 1})
    with Database(SCHEMA, path=target) as db:
        assert [d["title"] for d in db.query(all_tasks)] == ["a"]


def test_schemaless_database_keeps_every_table(path):
    with Database(path=path) as db:
        insert(db, "alpha", {"x": 1})
        insert(db, "beta", {"y": [1, 2]})
    with Database(path=path) as db:
        assert db.query(lambda ctx: ctx.db.query("alpha").collect())[0]["x"] == 1
        assert db.query(lambda ctx: ctx.db.query("beta").collect())[0]["y"] == [1, 2]
        assert db.stats()["tables"] == ["alpha", "beta"]


def test_empty_database_reopens_empty(path):
    Database(SCHEMA, path=path).close()
    with Database(SCHEMA, path=path) as db:
        assert db.query(all_tasks) == []
        assert db.stats()["documents"] == 0


def test_close_is_idempotent_and_final(path):
    db = Database(SCHEMA, path=path)
    db.mutation(add_task, {"title": "a", "rank": 1})
    db.close()
    db.close()
    with pytest.raises(LiveDBError, match="closed"):
        db.mutation(add_task, {"title": "b", "rank": 2})
    with Database(SCHEMA, path=path) as again:
        assert len(again.query(all_tasks)) == 1


def test_subscriptions_see_durable_commits(path):
    seen = []
    with Database(SCHEMA, path=path) as db:
        sub = db.subscribe(all_tasks, {}, lambda result: seen.append(len(result)))
        db.mutation(add_task, {"title": "a", "rank": 1})
        db.mutation(add_task, {"title": "b", "rank": 2})
        sub.unsubscribe()
    assert seen == [0, 1, 2]


def test_a_mutation_that_only_reads_returns_what_was_committed(path):
    with Database(SCHEMA, path=path, durability="normal") as db:
        db.mutation(add_task, {"title": "a", "rank": 1})
        count = db.mutation(lambda ctx: len(ctx.db.query("tasks").collect()))
    assert count == 1


# -- group commit and visibility ----------------------------------------------------------


class GatedWrites:
    """Wraps `SqliteEngine._write`: records batch sizes; can hold writes until released."""

    def __init__(self, monkeypatch, hold=False, delay=0.0):
        self.sizes: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        original = SqliteEngine._write

        def write(persistence, batch):
            self.sizes.append(len(batch))
            self.entered.set()
            assert self.release.wait(10)
            if delay:
                time.sleep(delay)
            return original(persistence, batch)

        monkeypatch.setattr(SqliteEngine, "_write", write)


def test_concurrent_mutations_share_syncs_and_all_survive(path, monkeypatch):
    gate = GatedWrites(monkeypatch, delay=0.01)
    per_thread, threads = 15, 4
    with Database(SCHEMA, path=path) as db:
        def work(t):
            for i in range(per_thread):
                db.mutation(add_task, {"title": f"{t}-{i}", "rank": i})

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(30)
    assert sum(gate.sizes) == per_thread * threads
    assert max(gate.sizes) > 1
    assert len(gate.sizes) < per_thread * threads
    with Database(SCHEMA, path=path) as db:
        titles = {d["title"] for d in db.query(all_tasks)}
    assert titles == {f"{t}-{i}" for t in range(threads) for i in range(per_thread)}


def test_readers_see_a_commit_only_once_it_is_on_disk(path, monkeypatch):
    with Database(SCHEMA, path=path) as db:
        first = db.mutation(add_task, {"title": "first", "rank": 1})
        gate = GatedWrites(monkeypatch, hold=True)
        results = {}

        def slow():
            results["slow"] = db.mutation(add_task, {"title": "slow", "rank": 2})

        def reader_of_slow():
            results["next"] = db.mutation(
                lambda ctx: [d["title"] for d in ctx.db.query("tasks").collect()])

        writer = threading.Thread(target=slow)
        writer.start()
        assert gate.entered.wait(10)
        # The commit is applied but not on disk: readers do not see it, the next
        # mutation does (and is held back with it).
        assert [d["_id"] for d in db.query(all_tasks)] == [first]
        follower = threading.Thread(target=reader_of_slow)
        follower.start()
        time.sleep(0.05)
        assert "slow" not in results and "next" not in results
        gate.release.set()
        writer.join(10)
        follower.join(10)
        assert results["next"] == ["first", "slow"]
        assert [d["title"] for d in db.query(all_tasks)] == ["first", "slow"]


# -- schema evolution ----------------------------------------------------------------------


def test_an_index_added_to_the_schema_is_backfilled(path):
    seed(path)
    evolved = define_schema({
        "tasks": define_table({"title": v.string(), "rank": v.int64(),
                               "meta": v.optional(v.any())})
        .index("by_rank", ["rank"]).index("by_title", ["title"]),
        "notes": define_table({"body": v.string()}),
    })
    with Database(evolved, path=path) as db:
        found = db.query(lambda ctx: ctx.db.query("tasks")
                         .with_index("by_title", lambda q: q.eq("title", "t3")).unique())
        assert found["rank"] == 3


def test_an_index_removed_from_the_schema_is_dropped(path):
    ids, before = seed(path)
    smaller = define_schema({
        "tasks": define_table({"title": v.string(), "rank": v.int64(),
                               "meta": v.optional(v.any())}),
        "notes": define_table({"body": v.string()}),
    })
    with Database(smaller, path=path) as db:
        with pytest.raises(ValidationError, match="by_rank"):
            db.query(tasks_by_rank)
        assert everything(db) == before
    with Database(SCHEMA, path=path) as db:
        assert [d["rank"] for d in db.query(tasks_by_rank)] == [4, 3, 2, 1, 0]


def test_a_compatible_schema_change_opens(path):
    _ids, before = seed(path)
    wider = define_schema({
        "tasks": define_table({"title": v.string(), "rank": v.number(),
                               "meta": v.optional(v.any()), "due": v.optional(v.string())}),
        "notes": define_table({"body": v.string()}),
        "tags": define_table({"name": v.string()}),
    })
    with Database(wider, path=path) as db:
        assert everything(db) == before


def test_stored_data_that_breaks_the_schema_is_a_schema_error(path):
    ids, _before = seed(path)
    stricter = define_schema({
        "tasks": define_table({"title": v.string(), "rank": v.string(),
                               "owner": v.string()}),
        "notes": define_table({"body": v.string()}),
    })
    with pytest.raises(SchemaError) as caught:
        Database(stricter, path=path)
    message = str(caught.value)
    assert "5 document(s) fail" in message
    assert repr(str(ids[0])) in message
    assert "tasks.rank: expected string, got int" in message
    with_owner = define_schema({
        "tasks": define_table({"title": v.string(), "rank": v.int64(), "owner": v.string()}),
        "notes": define_table({"body": v.string()}),
    })
    with pytest.raises(SchemaError, match="tasks.owner: .*missing"):
        Database(with_owner, path=path)
    # The failed open released the file.
    relaxed = define_schema(stricter.tables, schema_validation=False)
    with Database(relaxed, path=path) as db:
        assert len(db.query(all_tasks)) == 5


def test_a_table_dropped_from_the_schema_while_it_has_documents(path):
    with Database(SCHEMA, path=path) as db:
        note = insert(db, "notes", {"body": "n"})
    only_tasks = {"tasks": SCHEMA.tables["tasks"]}
    with pytest.raises(SchemaError, match="table 'notes' holds 1 document"):
        Database(define_schema(only_tasks), path=path)
    loose = define_schema(only_tasks, strict_table_names=False)
    with Database(loose, path=path) as db:
        assert db.query(lambda ctx: ctx.db.get(note))["body"] == "n"


# -- the file format ---------------------------------------------------------------------


def test_the_file_records_its_format(path):
    seed(path, 1)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA user_version").fetchone()[0] == FORMAT_VERSION
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 1
    finally:
        conn.close()


def test_an_unknown_format_version_is_a_clear_error(path):
    _ids, before = seed(path, 2)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={FORMAT_VERSION + 1}")
    conn.close()
    with pytest.raises(LiveDBError, match="format version 2 .*newer livedb.* reads version 1"):
        Database(SCHEMA, path=path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={FORMAT_VERSION}")
    conn.close()
    with Database(SCHEMA, path=path) as db:
        assert everything(db) == before


def test_a_foreign_sqlite_file_is_refused(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptionError, match="not a livedb file"):
        Database(SCHEMA, path=path)


# -- locking ----------------------------------------------------------------------------


def test_a_second_database_on_the_same_path_is_refused(path):
    with Database(SCHEMA, path=path) as db:
        with pytest.raises(DatabaseLockedError, match="this process"):
            Database(SCHEMA, path=path)
        with pytest.raises(DatabaseLockedError):
            Database(path=os.path.relpath(path))
        alias = os.path.join(os.path.dirname(path), "alias.livedb")
        os.symlink(path, alias)
        with pytest.raises(DatabaseLockedError):
            Database(path=alias)
        db.mutation(add_task, {"title": "still usable", "rank": 1})
    with Database(SCHEMA, path=path) as db:
        assert len(db.query(all_tasks)) == 1


def _python(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


OPEN_IN_CHILD = """
    import sys
    import livedb
    try:
        db = livedb.Database(path=sys.argv[1])
    except livedb.LiveDBError as e:
        print(type(e).__name__, e, flush=True)
        sys.exit(0)
    print("opened", flush=True)
    sys.stdin.readline()
"""


def test_another_process_is_locked_out_while_the_database_is_open(path):
    with Database(SCHEMA, path=path):
        child = subprocess.run([sys.executable, "-c", textwrap.dedent(OPEN_IN_CHILD), path],
                               cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert child.stdout.startswith("DatabaseLockedError"), child.stdout + child.stderr
    assert f"process {os.getpid()}" in child.stdout


def test_a_lock_held_by_another_process_is_released_when_it_dies(path):
    seed(path, 1)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(OPEN_IN_CHILD), path],
                             cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "opened"
        with pytest.raises(DatabaseLockedError, match=f"process {child.pid}"):
            Database(SCHEMA, path=path)
    finally:
        child.kill()
        child.wait(30)
    with Database(SCHEMA, path=path) as db:
        assert len(db.query(all_tasks)) == 1


OPEN_AND_COMMIT_IN_CHILD = """
    import sys
    import livedb
    try:
        with livedb.Database(path=sys.argv[1]) as db:
            db.mutation(lambda ctx: ctx.db.insert("tasks", {"title": "child", "rank": -1}))
    except livedb.LiveDBError as e:
        print(type(e).__name__, e, flush=True)
    else:
        print("committed", flush=True)
"""


def _open_and_commit_in_child(path: str) -> str:
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(OPEN_AND_COMMIT_IN_CHILD),
                            path], cwd=ROOT, capture_output=True, text=True, timeout=60)
    return child.stdout + child.stderr


def _refused_here_and_elsewhere(db, path: str, other_name: str) -> list[str]:
    """Open `other_name` (a name of `path`'s file) here, then in another process that
    commits if it can; both must be refused while `db` commits on. Titles committed."""
    titles = [f"before {other_name}"]
    db.mutation(add_task, {"title": titles[0], "rank": 0})
    with pytest.raises(DatabaseLockedError):
        Database(SCHEMA, path=other_name)
    titles.append("between")
    db.mutation(add_task, {"title": "between", "rank": 1})
    for name in (other_name, path):
        outcome = _open_and_commit_in_child(name)
        assert outcome.startswith("DatabaseLockedError"), outcome
    titles.append("after")
    db.mutation(add_task, {"title": "after", "rank": 2})
    return titles


def test_a_deleted_lock_file_does_not_let_another_opener_in(path):
    """A second open in this process used to open and close the file, dropping SQLite's
    locks, so another process could then open it and commit, and that commit was lost."""
    with Database(SCHEMA, path=path) as db:
        os.remove(path + ".lock")
        titles = _refused_here_and_elsewhere(db, path, path)
    with Database(SCHEMA, path=path) as db:
        assert [d["title"] for d in db.query(all_tasks)] == titles


def test_a_hard_link_does_not_let_another_opener_in(path):
    alias = os.path.join(os.path.dirname(path), "link.livedb")
    with Database(SCHEMA, path=path) as db:
        os.link(path, alias)
        titles = _refused_here_and_elsewhere(db, path, alias)
    for name in (path, alias):
        with Database(SCHEMA, path=name) as db:
            assert [d["title"] for d in db.query(all_tasks)] == titles


def test_a_file_renamed_while_open_is_still_locked_and_loses_nothing(path):
    """A renamed open file is known by its identity: its new name is refused here and
    elsewhere; its old name, where its WAL stays, is not taken for a new database."""
    moved = os.path.join(os.path.dirname(path), "moved.livedb")
    with Database(SCHEMA, path=path) as db:
        os.rename(path, moved)
        titles = _refused_here_and_elsewhere(db, moved, moved)
        with pytest.raises(DatabaseLockedError):
            Database(SCHEMA, path=path)
        assert not os.path.exists(path)
    with pytest.raises(LiveDBError, match="put the database file back"):
        Database(SCHEMA, path=path)
    os.rename(moved, path)
    with Database(SCHEMA, path=path) as db:
        assert [d["title"] for d in db.query(all_tasks)] == titles


def test_opening_a_file_open_here_under_another_name_leaves_it_untouched(path):
    """The refusal comes before the file (or a new lock file) is opened at all."""
    alias = os.path.join(os.path.dirname(path), "link.livedb")
    with Database(SCHEMA, path=path) as db:
        os.link(path, alias)
        for _ in range(3):
            with pytest.raises(DatabaseLockedError, match=r"this process, opened as .*app"):
                Database(SCHEMA, path=alias)
        assert not os.path.exists(alias + ".lock")
        db.mutation(add_task, {"title": "still mine", "rank": 1})
    with Database(SCHEMA, path=alias) as db:
        assert [d["title"] for d in db.query(all_tasks)] == ["still mine"]


# -- file modes -------------------------------------------------------------------------


def _mode(name: str) -> int:
    return os.stat(name).st_mode & 0o777


def test_files_are_private_whatever_the_umask(tmp_path):
    """The database, its WAL and its lock file hold password and token hashes (and the
    lock file, the owner's pid): only their owner may read them."""
    path = str(tmp_path / "app.livedb")
    old = os.umask(0o022)
    try:
        with Database(SCHEMA, path=path) as db:
            db.mutation(add_task, {"title": "secret", "rank": 1})
            created = sorted(os.listdir(tmp_path))
            assert created == ["app.livedb", "app.livedb-wal", "app.livedb.lock"]
            assert {name: _mode(str(tmp_path / name)) for name in created} == {
                name: 0o600 for name in created}
        with Database(SCHEMA, path=path) as db:
            db.mutation(add_task, {"title": "again", "rank": 2})
            assert _mode(path + "-wal") == 0o600
    finally:
        os.umask(old)
    assert _mode(path) == 0o600 and _mode(path + ".lock") == 0o600


def test_an_existing_files_mode_is_left_as_its_owner_set_it(path):
    seed(path, 1)
    os.chmod(path, 0o640)
    with Database(SCHEMA, path=path) as db:
        db.mutation(add_task, {"title": "x", "rank": 1})
        assert _mode(path) == 0o640 and _mode(path + "-wal") == 0o640


# -- damaged files ----------------------------------------------------------------------


def _damaged(path, change) -> bytes:
    data = bytearray(Path(path).read_bytes())
    change(data)
    Path(path).write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("keep", [0, 100, 4096, 0.5, -1])
def test_a_truncated_file_is_a_corruption_error(path, keep):
    seed(path, 300)
    size = os.path.getsize(path)
    cut = int(size * keep) if isinstance(keep, float) else (size + keep if keep < 0 else keep)
    with open(path, "r+b") as f:
        f.truncate(cut)
    with pytest.raises(CorruptionError):
        Database(SCHEMA, path=path)


def test_a_garbled_document_is_caught_by_its_checksum(path):
    seed(path, 20)
    target = b"t17"

    def flip(data):
        at = data.index(target)
        data[at + 1] = ord("X")

    _damaged(path, flip)
    with pytest.raises(CorruptionError, match="checksum"):
        Database(SCHEMA, path=path)


def test_a_garbled_header_is_a_corruption_error(path):
    seed(path, 3)

    def garble(data):
        data[0:16] = b"definitely not.."

    _damaged(path, garble)
    with pytest.raises(CorruptionError):
        Database(SCHEMA, path=path)


def test_random_garbling_never_serves_wrong_data(path):
    """Flip bytes anywhere: opening either fails with CorruptionError or shows exactly
    the original data (the bytes hit were unused space)."""
    import random

    _ids, before = seed(path, 200)
    original = Path(path).read_bytes()
    rng = random.Random(4)
    outcomes = {"corrupt": 0, "intact": 0}
    for _ in range(40):
        Path(path).write_bytes(original)

        def garble(data):
            for _ in range(rng.choice([1, 4, 64])):
                data[rng.randrange(100, len(data))] ^= 1 << rng.randrange(8)

        _damaged(path, garble)
        try:
            db = Database(SCHEMA, path=path)
        except CorruptionError:
            outcomes["corrupt"] += 1
            continue
        try:
            assert everything(db) == before
        finally:
            db.close()
        outcomes["intact"] += 1
    assert outcomes["corrupt"] > 0


def test_an_empty_file_is_not_taken_for_a_new_database(path):
    Path(path).write_bytes(b"")
    with pytest.raises(CorruptionError, match="empty"):
        Database(SCHEMA, path=path)
    assert os.path.getsize(path) == 0


# -- read-only files and full disks -------------------------------------------------------


READ_ONLY_CHILD = """
    import os, sys
    import livedb
    os.fchdir(int(sys.argv[1]))
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
    try:
        livedb.Database(path="app.livedb")
    except livedb.LiveDBError as e:
        print(type(e).__name__, e)
    else:
        print("opened")
"""


def test_a_read_only_file_is_a_clear_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = str(folder / "app.livedb")
    _ids, before = seed(path, 3)
    os.chmod(path, 0o444)
    os.chmod(folder, 0o777)
    fd = os.open(folder, os.O_RDONLY)
    try:
        child = subprocess.run([sys.executable, "-c", textwrap.dedent(READ_ONLY_CHILD), str(fd)],
                               cwd=ROOT, capture_output=True, text=True, timeout=60,
                               pass_fds=(fd,))
    finally:
        os.close(fd)
    assert child.stdout.startswith("LiveDBError cannot open app.livedb for writing"), (
        child.stdout + child.stderr)
    os.chmod(path, 0o644)
    with Database(SCHEMA, path=path) as db:
        assert everything(db) == before


def _fill_the_disk(db):
    """Let the file grow by a few pages at most, as a full disk would."""
    conn = kernel_of(db).engine._conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages + 1}")
    return lambda: conn.execute("PRAGMA max_page_count=1073741823")


def test_a_full_disk_fails_the_mutation_and_loses_nothing(path):
    big = "x" * 3000
    with Database(SCHEMA, path=path) as db:
        kept = [db.mutation(add_task, {"title": f"k{i}", "rank": i}) for i in range(3)]
        make_room = _fill_the_disk(db)
        with pytest.raises(LiveDBError, match="full.*not committed"):
            for i in range(20):
                db.mutation(add_task, {"title": big + str(i), "rank": 100 + i})
        survivors = db.query(all_tasks)
        written = db.mutation(lambda ctx: [d["title"] for d in ctx.db.query("tasks").collect()])
        assert written == [d["title"] for d in survivors]
        assert [d["_id"] for d in survivors][:3] == kept
        make_room()
        db.mutation(add_task, {"title": "after", "rank": 999})
        before = everything(db)
    with Database(SCHEMA, path=path) as db:
        assert everything(db) == before
        assert [d["title"] for d in db.query(all_tasks)][-1] == "after"


def test_a_failed_write_also_fails_the_commits_that_read_it(path, monkeypatch):
    with Database(SCHEMA, path=path) as db:
        base = db.mutation(add_task, {"title": "base", "rank": 1})
        gate = GatedWrites(monkeypatch, hold=True)
        original = SqliteEngine._write
        calls = []

        def failing(persistence, batch):
            calls.append(len(batch))
            if len(calls) == 1:
                gate.entered.set()
                assert gate.release.wait(10)
                error = sqlite3.OperationalError("database or disk is full")
                error.sqlite_errorname = "SQLITE_FULL"
                raise error
            return original(persistence, batch)

        monkeypatch.setattr(SqliteEngine, "_write", failing)
        errors = {}

        def run(name, fn):
            try:
                db.mutation(fn)
            except LiveDBError as e:
                errors[name] = e

        first = threading.Thread(target=run, args=("first", lambda ctx: ctx.db.patch(
            base, {"rank": 2})))
        first.start()
        assert gate.entered.wait(10)

        def builds_on_first(ctx):
            rank = ctx.db.get(base)["rank"]
            ctx.db.insert("tasks", {"title": f"saw {rank}", "rank": rank})

        second = threading.Thread(target=run, args=("second", builds_on_first))
        second.start()
        time.sleep(0.05)
        gate.release.set()
        first.join(10)
        second.join(10)
        assert set(errors) == {"first", "second"}
        assert "not committed" in str(errors["second"])
        state = db.mutation(lambda ctx: [[d["title"], d["rank"]]
                                         for d in ctx.db.query("tasks").collect()])
        assert state == [["base", 1]]
        assert db.query(tasks_by_rank)[0]["rank"] == 1
        db.mutation(lambda ctx: ctx.db.patch(base, {"rank": 3}))
    with Database(SCHEMA, path=path) as db:
        assert [[d["title"], d["rank"]] for d in db.query(all_tasks)] == [["base", 3]]
        assert [d["rank"] for d in db.query(
            lambda ctx: ctx.db.query("tasks").with_index(
                "by_rank", lambda q: q.eq("rank", 3)).collect())] == [3]


def test_an_uncertain_write_failure_refuses_further_writes_until_reopened(path, monkeypatch):
    with Database(SCHEMA, path=path) as db:
        db.mutation(add_task, {"title": "safe", "rank": 1})
        original = SqliteEngine._write
        calls = []

        def failing(persistence, batch):
            calls.append(1)
            if len(calls) == 1:
                error = sqlite3.OperationalError("disk I/O error")
                error.sqlite_errorname = "SQLITE_IOERR_FSYNC"
                raise error
            return original(persistence, batch)

        monkeypatch.setattr(SqliteEngine, "_write", failing)
        with pytest.raises(LiveDBError, match="disk I/O error"):
            db.mutation(add_task, {"title": "lost", "rank": 2})
        with pytest.raises(LiveDBError, match="uncertain.*open it again"):
            db.mutation(add_task, {"title": "refused", "rank": 3})
        assert [d["title"] for d in db.query(all_tasks)] == ["safe"]
    monkeypatch.undo()
    with Database(SCHEMA, path=path) as db:
        db.mutation(add_task, {"title": "again", "rank": 4})
        assert [d["title"] for d in db.query(all_tasks)] == ["safe", "again"]


def test_random_write_failures_leave_exactly_the_successful_mutations(path, monkeypatch):
    """Three threads patch, insert and delete their own documents while a fifth of the
    disk writes fail; what remains (in memory, in the index, after reopening) is exactly
    what the mutations that returned normally wrote."""
    import random

    original = SqliteEngine._write
    rng = random.Random(11)
    lock = threading.Lock()

    def flaky(persistence, batch):
        with lock:
            fail = rng.random() < 0.2
        if fail:
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorname = "SQLITE_FULL"
            raise error
        return original(persistence, batch)

    monkeypatch.setattr(SqliteEngine, "_write", flaky)
    models: list[dict] = [{} for _ in range(3)]

    def work(number):
        mine = models[number]
        local = random.Random(number)
        for step in range(60):
            choice = local.random()
            try:
                if choice < 0.4 or not mine:
                    doc_id = db.mutation(add_task, {"title": f"{number}", "rank": step})
                    mine[doc_id] = step
                elif choice < 0.8:
                    doc_id = local.choice(sorted(mine))
                    rank = local.randrange(100)
                    db.mutation(lambda ctx, d=doc_id, r=rank: ctx.db.patch(d, {"rank": r}))
                    mine[doc_id] = rank
                else:
                    doc_id = local.choice(sorted(mine))
                    db.mutation(lambda ctx, d=doc_id: ctx.db.delete(d))
                    del mine[doc_id]
            except LiveDBError as e:
                assert "not committed" in str(e)

    def expected():
        merged = {k: r for model in models for k, r in model.items()}
        return sorted(merged.items(), key=lambda item: item[1])

    def actual(db):
        by_id = {d["_id"]: d["rank"] for d in db.query(all_tasks)}
        ranked = [(d["_id"], d["rank"]) for d in reversed(db.query(tasks_by_rank))]
        return by_id, ranked

    with Database(SCHEMA, path=path, durability="normal") as db:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        by_id, ranked = actual(db)
        assert by_id == dict(expected())
        assert sorted(ranked, key=lambda item: item[1]) == ranked
        assert sorted(ranked) == sorted(expected())
    monkeypatch.undo()
    with Database(SCHEMA, path=path) as db:
        by_id, ranked = actual(db)
    assert by_id == dict(expected()) and sorted(ranked) == sorted(expected())
