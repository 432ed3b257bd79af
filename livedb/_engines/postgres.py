"""The PostgreSQL engine: a database shared by processes on several machines (psycopg 3).

Tables (in the connection's schema, created on first open under an advisory lock):

- `livedb_log(n, at, data)`: the commit log, `n` strictly increasing with no gaps,
  `data` an encoded `LogEntry` (see _engines/__init__.py);
- `livedb_head(n, last_time, format)`: the newest commit, one row, locked by committers;
- `livedb_durable(owner, n)`: per process, the newest commit it knows to be on disk;
  every commit up to the largest is durable (WAL is flushed in order);
- `livedb_documents(id, tbl, creation_time, data)`: every document as of the head, so a
  new process loads it at a head and follows the log from there;
- `livedb_claims(key, owner, at)`: scheduled calls being run, and by whom;
- `livedb_files(name, part, at, data)`: stored files' bytes, in parts of 1 MiB.

A commit is one call of the function `livedb_commit`: in one transaction it locks the
head row, and if the head is still the committer's base it appends the entry, applies
its writes to `livedb_documents` and moves the head. That transaction commits without
waiting for its WAL flush (`synchronous_commit` off inside it), so the head's lock is
held for the server's work only and commits of several processes share their flushes
(PostgreSQL's group commit): the same round trip (a pipeline) runs `livedb_durable`, a
second, synchronous transaction that records the head as durable and `NOTIFY`s it once
its own commit record, which follows the commit's, is on disk. Only then is the
mutation acknowledged, and other processes read the log only up to the durable mark: a
server crash never takes away a commit that anyone acknowledged or applied. (Measured:
holding the head's lock across the flush kept 4 processes below what one committed.)

If others committed since the base and the mutation read only documents by id (no index
range), the server judges the entries in between itself: each log row also lists the ids
its commit wrote and their creation times, so "none of them wrote what I read or wrote,
none handed out one of my creation times" is one array-overlap query, and the commit
goes on top (or the function returns NULL: a conflict). Otherwise the function writes
nothing and returns the head: the entries in between are read and checked by the kernel
(ranges need the replica's index keys), and the call is made again on top of them; after
`OPTIMISTIC_TRIES` such races the engine takes the head's lock first (`SELECT ... FOR
UPDATE`), so a process that keeps losing the race still commits. (Measured with 4
processes: checking on the client under the head's lock held it across round trips and
the client's Python, and 4 processes committed less than one did; the server-side check
holds the lock for the server's own work only.)

Other processes' commits are announced with `NOTIFY livedb_commits` (the payload is the
durable mark) on a connection of its own that `LISTEN`s; the kernel then reads the log
after its newest commit, so a notification that never arrives (the listening connection
broke) delays a commit, never loses it: the listener also wakes the kernel every
`WAKE_ANYWAY` seconds.

Each opener holds a session advisory lock on its owner number (classid `ADVISORY_CLASS`)
on its main connection: PostgreSQL drops it with the session when the process dies, so
another process can tell that a claim's owner is gone and take the claim.

When the server goes away, every call raises `LiveDBError` naming it, and the next call
connects again (a commit cut off mid-flight raises an error saying its outcome is
unknown: the log tells, and the replica applies it if it was made).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from .._errors import CorruptionError, LiveDBError
from .._store import Write
from . import (
    CommitCheck,
    Conflict,
    LogEntry,
    LogGap,
    StoredRow,
    WriteError,
    decode_entry,
    encode_entry,
)

psycopg: Any
_conninfo: Any
try:
    import psycopg as _psycopg
    from psycopg import conninfo as _psycopg_conninfo

    psycopg, _conninfo = _psycopg, _psycopg_conninfo
except ImportError:  # pragma: no cover - exercised where psycopg is missing
    psycopg = _conninfo = None

FORMAT = 1
"""The layout of the tables this livedb writes and reads (`livedb_head.format`)."""
CHANNEL = "livedb_commits"
ADVISORY_CLASS = 0x6C76
"""The first key of livedb's advisory locks ("lv"); the second is an owner number."""
_SETUP_LOCK = 0
OPTIMISTIC_TRIES = 2
CONNECT_TIMEOUT = 5
WAKE_ANYWAY = 1.0
LISTEN_SLICE = 0.2
"""Seconds the listener waits for a notification before it checks whether to stop."""
LOAD_BATCH = 4096
FILE_PART = 1 << 20
LOG_KEEP = 10_000
LOG_AGE = 600.0
PRUNE_EVERY = 1000

_SETUP = [
    """CREATE TABLE IF NOT EXISTS livedb_documents (id text PRIMARY KEY, tbl text NOT NULL,
        creation_time float8 NOT NULL, data bytea NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS livedb_log (n bigint PRIMARY KEY,
        at timestamptz NOT NULL DEFAULT now(), data bytea NOT NULL, ids text[] NOT NULL,
        times float8[] NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS livedb_head (one int PRIMARY KEY CHECK (one = 1),
        n bigint NOT NULL, last_time float8 NOT NULL, format int NOT NULL)""",
    f"INSERT INTO livedb_head VALUES (1, 0, 0, {FORMAT}) ON CONFLICT DO NOTHING",
    """CREATE TABLE IF NOT EXISTS livedb_durable (owner bigint PRIMARY KEY,
        n bigint NOT NULL)""",
    f"""CREATE OR REPLACE FUNCTION livedb_durable(me bigint) RETURNS bigint
        LANGUAGE plpgsql AS $$
    DECLARE done bigint;
    BEGIN
        SELECT n INTO done FROM livedb_head WHERE one = 1;
        INSERT INTO livedb_durable VALUES (me, done)
            ON CONFLICT (owner) DO UPDATE SET n = greatest(livedb_durable.n, done);
        PERFORM pg_notify('{CHANNEL}', done::text);
        RETURN done;
    END $$""",
    """CREATE TABLE IF NOT EXISTS livedb_claims (key text PRIMARY KEY, owner bigint NOT NULL,
        at float8 NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS livedb_files (name text NOT NULL, part int NOT NULL,
        at timestamptz NOT NULL DEFAULT now(), data bytea NOT NULL,
        PRIMARY KEY (name, part))""",
    """CREATE OR REPLACE FUNCTION livedb_commit(base bigint, entry bytea,
        new_last_time float8, up_ids text[], up_tables text[], up_times float8[],
        up_data bytea[], del_ids text[], written text[], written_times float8[],
        read_ids text[], new_times float8[], only_ids boolean)
        RETURNS bigint LANGUAGE plpgsql AS $$
    DECLARE h bigint;
    BEGIN
        PERFORM set_config('synchronous_commit', 'off', true);
        SELECT n INTO h FROM livedb_head WHERE one = 1 FOR UPDATE;
        IF h <> base THEN
            IF NOT only_ids OR h < base OR NOT EXISTS (
                    SELECT 1 FROM livedb_log WHERE n = base + 1) THEN
                RETURN -h - 1;
            END IF;
            IF EXISTS (SELECT 1 FROM livedb_log WHERE n > base
                       AND (ids && read_ids OR times && new_times)) THEN
                RETURN NULL;
            END IF;
        END IF;
        INSERT INTO livedb_log (n, data, ids, times)
            VALUES (h + 1, entry, written, written_times);
        IF cardinality(up_ids) > 0 THEN
            INSERT INTO livedb_documents AS d
                SELECT * FROM unnest(up_ids, up_tables, up_times, up_data)
                ON CONFLICT (id) DO UPDATE SET tbl = EXCLUDED.tbl,
                    creation_time = EXCLUDED.creation_time, data = EXCLUDED.data;
        END IF;
        IF cardinality(del_ids) > 0 THEN
            DELETE FROM livedb_documents WHERE id = ANY(del_ids);
        END IF;
        UPDATE livedb_head SET n = h + 1, last_time = greatest(last_time, new_last_time)
            WHERE one = 1;
        RETURN h + 1;
    END $$""",
]


def describe(url: str) -> str:
    """`url` without its password, for messages."""
    if _conninfo is None:
        return "postgresql://..."
    try:
        parts = _conninfo.conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - a bad URL is reported when connecting
        return "postgresql://..."
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = parts.get("host") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


class PostgresEngine:
    """A livedb database kept in PostgreSQL (see the module docstring)."""

    durable = True
    shared = True

    def __init__(self, url: str, durability: str) -> None:
        if psycopg is None:
            raise LiveDBError("Database(url=...) needs psycopg 3: pip install "
                              "'livedb[postgres]'")
        self.url = url
        self.location = describe(url)
        self.durability = durability
        self._lock = threading.RLock()
        """Guards the main connection (commits, reads of the log, claims)."""
        self._main: Any = None
        self._closed = False
        self._head = 0
        self._last_time = 0.0
        self._commits = 0
        self._mine: set[int] = set()
        """Numbers of this opener's own commits whose notification has not come back."""
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self.owner = 0
        self.files = PostgresFiles(self)
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                                 (ADVISORY_CLASS, _SETUP_LOCK))
                    for statement in _SETUP:
                        conn.execute(statement)
                    found = conn.execute("SELECT format FROM livedb_head").fetchone()[0]
            except psycopg.Error as e:
                self._drop()
                raise self._error("cannot set up", e) from None
            if found != FORMAT:
                self.close()
                raise LiveDBError(f"{self.location} holds livedb tables of format {found}; "
                                  f"this livedb reads format {FORMAT} only")

    # -- connections -----------------------------------------------------------------

    def connect(self, autocommit: bool = True) -> Any:
        """A new connection to the server (`LiveDBError` naming it if it cannot be had)."""
        try:
            conn = psycopg.connect(self.url, autocommit=autocommit,
                                   connect_timeout=CONNECT_TIMEOUT)
        except psycopg.Error as e:
            raise self._error("cannot connect to", e) from None
        if self.durability == "normal":
            conn.execute("SET synchronous_commit = off")
        return conn

    def _connection(self) -> Any:
        """The main connection (lock held), connecting again if it broke."""
        if self._closed:
            raise LiveDBError(f"{self.location} is closed")
        conn = self._main
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._drop()
        conn = self.connect()
        try:
            if not self.owner:
                self.owner = self._take_owner(conn)
            elif not conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                                  (ADVISORY_CLASS, self.owner)).fetchone()[0]:
                self.owner = self._take_owner(conn)
        except psycopg.Error as e:
            conn.close()
            raise self._error("cannot use", e) from None
        self._main = conn
        return conn

    @staticmethod
    def _take_owner(conn: Any) -> int:
        while True:
            number = random.randrange(1, 1 << 31)
            if conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                            (ADVISORY_CLASS, number)).fetchone()[0]:
                return number

    def _drop(self) -> None:
        conn, self._main = self._main, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close
                pass

    def _error(self, doing: str, error: BaseException) -> LiveDBError:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(
            error).__name__
        if psycopg is not None and isinstance(error, psycopg.OperationalError):
            self._drop()
            return LiveDBError(f"{doing} PostgreSQL at {self.location}: the server is "
                               f"unreachable or went away ({reason}); livedb connects again "
                               "on the next call")
        return LiveDBError(f"{doing} PostgreSQL at {self.location}: {reason}")

    # -- loading ---------------------------------------------------------------------

    def load(self) -> Iterator[list[StoredRow]]:
        """Every document at one point (one repeatable-read transaction)."""
        conn = self.connect(autocommit=False)
        try:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            head, last_time = conn.execute("SELECT n, last_time FROM livedb_head").fetchone()
            self._head = head
            self._last_time = float(last_time)
            with conn.cursor(name="livedb_load") as cursor:
                cursor.itersize = LOAD_BATCH
                cursor.execute("SELECT id, tbl, creation_time, data FROM livedb_documents")
                while True:
                    rows = cursor.fetchmany(LOAD_BATCH)
                    if not rows:
                        break
                    batch: list[StoredRow] = []
                    for doc_id, table, creation_time, data in rows:
                        if not doc_id.startswith(table + ":"):
                            raise CorruptionError(f"{self.location} is damaged: the row of "
                                                  f"document {doc_id!r} does not match it")
                        batch.append((doc_id, table, float(creation_time), bytes(data)))
                    yield batch
            conn.rollback()
            with self._lock:  # what was read may not be on disk yet: wait until it is
                self._flush(self._connection())
        except psycopg.Error as e:
            raise self._error("cannot read", e) from None
        finally:
            conn.close()

    def head(self) -> int:
        return self._head

    def last_time(self) -> float:
        return self._last_time

    # -- the log -----------------------------------------------------------------------

    def since(self, n: int) -> list[LogEntry]:
        """The durable log entries after commit `n`, in order (see `_durable`)."""
        with self._lock:
            try:
                return self._since(self._connection(), n)
            except psycopg.Error as e:
                raise self._error("cannot read the commit log in", e) from None

    def _flush(self, conn: Any) -> None:
        """Return once every commit this connection has seen is on the server's disk (a
        transaction of its own, whose commit waits for the flush of its commit record,
        which comes after every commit visible to it)."""
        if self.durability == "full":
            conn.execute("SELECT pg_current_xact_id()")

    def _since(self, conn: Any, n: int, durable: bool = True) -> list[LogEntry]:
        """The entries after `n` up to the durable mark (or, with `durable` False, to the
        head: a committer's own flush then covers them), read in one statement."""
        return self._entries(n, conn.execute(_SINCE if durable else _SINCE_ALL,
                                             (n,)).fetchall())

    def _entries(self, n: int, rows: list[Any]) -> list[LogEntry]:
        head = rows[0][0] if rows else n
        entries = [decode_entry(m, bytes(data), self.location) for _h, m, data in rows
                   if m is not None]
        if head > n and (not entries or entries[0].n != n + 1):
            raise LogGap(f"the commit log in {self.location} no longer holds commit {n + 1}")
        return entries

    def commit(self, base: int, writes: list[Write], last_time: float,
               check: CommitCheck) -> tuple[int, list[LogEntry]]:
        """Append one commit on top of `base` or of the entries since, if `check` allows.

        The entries returned may stop short of the commit (the server judged them): the
        caller reads the rest with `since`."""
        up_ids: list[str] = []
        up_tables: list[str] = []
        up_times: list[float] = []
        up_data: list[bytes] = []
        del_ids: list[str] = []
        for doc_id, blob, creation_time in writes:
            if blob is None:
                del_ids.append(doc_id)
            else:
                up_ids.append(doc_id)
                up_tables.append(doc_id[:doc_id.index(":")])
                up_times.append(creation_time)
                up_data.append(blob)
        params = [0, encode_entry(writes, last_time), last_time, up_ids, up_tables, up_times,
                  up_data, del_ids, [w[0] for w in writes], [w[2] for w in writes],
                  sorted(check.ids), sorted(check.times), check.only_ids]
        with self._lock:
            try:
                conn = self._connection()
            except LiveDBError as e:
                raise WriteError(f"{e}; the mutation was not committed", True) from None
            between: list[LogEntry] = []
            at = base
            try:
                for _ in range(OPTIMISTIC_TRIES):
                    params[0] = at
                    with conn.pipeline():
                        found = conn.execute(_COMMIT, params)
                        conn.execute(_DURABLE, (self.owner,))
                    n = found.fetchone()[0]
                    if n is None:  # the server found a conflict
                        new = self._since(conn, at, durable=False)
                        between += new
                        check(new)
                        self._flush(conn)
                        raise Conflict(between)
                    if n > 0:
                        return self._committed(n), between
                    at = self._rebase(conn, at, -n - 1, between, check)
                with conn.transaction():
                    head = conn.execute("SELECT n FROM livedb_head FOR UPDATE").fetchone()[0]
                    at = self._rebase(conn, at, head, between, check)
                    params[0] = at
                    n = conn.execute(_COMMIT, params).fetchone()[0]
                if n is None or n <= 0:
                    raise LiveDBError(f"the head of {self.location} moved while locked")
                conn.execute(_DURABLE, (self.owner,))
                return self._committed(n), between
            except (Conflict, LiveDBError):
                raise
            except psycopg.Error as e:
                error = self._error("could not commit to", e)
                if isinstance(e, psycopg.OperationalError):
                    raise WriteError(f"{error}; the outcome of this mutation is unknown (it "
                                     "may have committed: its writes then appear once the "
                                     "server is back)") from None
                raise WriteError(f"{error}; the mutation was not committed") from None

    def _rebase(self, conn: Any, at: int, head: int, between: list[LogEntry],
                check: CommitCheck) -> int:
        """Check the entries after `at` (up to the head or further); the new base."""
        if head < at:
            raise LiveDBError(f"the commit log in {self.location} went back from commit {at} "
                              f"to {head} (was the database restored from a backup?); "
                              "reopen the Database")
        if head == at:
            return at
        new = self._since(conn, at, durable=False)
        between += new
        if not check(new):
            self._flush(conn)
            raise Conflict(between)
        return new[-1].n if new else at

    def _committed(self, n: int) -> int:
        self._mine.add(n)
        if len(self._mine) > 10_000:
            self._mine.clear()
        self._commits += 1
        if self._commits % PRUNE_EVERY == 0:
            try:
                self._main.execute("DELETE FROM livedb_log WHERE n <= %s AND at < now() - "
                                   "make_interval(secs => %s)", (n - LOG_KEEP, LOG_AGE))
            except psycopg.Error:
                pass
        return n

    # -- the change signal -------------------------------------------------------------

    def watch(self, wake: Callable[[], None]) -> None:
        """LISTEN for commits in a thread of its own and call `wake()` on each."""
        thread = threading.Thread(target=self._listen, args=(wake,),
                                  name="livedb-postgres-listen", daemon=True)
        self._listener = thread
        thread.start()

    def _listen(self, wake: Callable[[], None]) -> None:
        stop = self._stop
        conn = None
        failures = 0
        last = time.monotonic()
        while not stop.is_set():
            try:
                if conn is None:
                    conn = self.connect()
                    conn.execute(f"LISTEN {CHANNEL}")
                    failures = 0
                    wake()
                mine = self._mine
                for notify in conn.notifies(timeout=LISTEN_SLICE):
                    try:
                        number = int(notify.payload)
                    except ValueError:
                        number = 0
                    if number in mine:
                        mine.discard(number)
                    else:
                        wake()
                        last = time.monotonic()
                    if stop.is_set():
                        break
            except (LiveDBError, psycopg.Error):
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass
                    conn = None
                failures += 1
                stop.wait(min(0.05 * failures, 1.0))
            now = time.monotonic()
            if now - last >= WAKE_ANYWAY:
                last = now
                self._mark_durable()
                wake()
        if conn is not None:
            conn.close()

    def _mark_durable(self) -> None:
        """Move the durable mark up to the head (a committer that died between its two
        transactions left its commit short of the mark); errors wait for the next time."""
        with self._lock:
            try:
                self._connection().execute(_DURABLE, (self.owner,))
            except (LiveDBError, psycopg.Error):
                pass

    # -- claims of scheduled calls -----------------------------------------------------

    def claim(self, key: str) -> bool:
        """Take `key` for this opener unless a live opener holds it (row locks)."""
        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction():
                    conn.execute("SET LOCAL synchronous_commit = off")
                    taken = conn.execute(
                        "INSERT INTO livedb_claims VALUES (%s, %s, %s) ON CONFLICT DO NOTHING "
                        "RETURNING key", (key, self.owner, time.time())).fetchone()
                    if taken is not None:
                        return True
                    row = conn.execute("SELECT owner FROM livedb_claims WHERE key = %s "
                                       "FOR UPDATE SKIP LOCKED", (key,)).fetchone()
                    if row is None:
                        return False
                    owner = row[0]
                    if owner != self.owner:
                        free = conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                                            (ADVISORY_CLASS, owner)).fetchone()[0]
                        if not free:
                            return False
                        conn.execute("SELECT pg_advisory_unlock(%s, %s)",
                                     (ADVISORY_CLASS, owner))
                    conn.execute("UPDATE livedb_claims SET owner = %s, at = %s WHERE key = %s",
                                 (self.owner, time.time(), key))
                    return True
            except psycopg.Error as e:
                raise self._error("could not claim a scheduled call in", e) from None

    def unclaim(self, key: str) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._connection().execute(
                    "DELETE FROM livedb_claims WHERE key = %s AND owner = %s", (key, self.owner))
            except psycopg.Error as e:
                raise self._error("could not release a scheduled call in", e) from None

    def write(self, batch: list[Any]) -> None:
        """Not used: the kernel commits to a shared engine with `commit`."""
        raise LiveDBError("a shared engine commits with commit(), not write()")

    # -- closing -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop listening and close the connections (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._drop()
        self.files.close()
        self._stop.set()
        listener = self._listener
        if listener is not None and listener is not threading.current_thread():
            listener.join()


_SINCE = ("SELECT h.n, l.n, l.data FROM (SELECT coalesce(max(n), 0) AS n FROM livedb_durable) h "
          "LEFT JOIN livedb_log l ON l.n > %s AND l.n <= h.n ORDER BY l.n")
_SINCE_ALL = ("SELECT h.n, l.n, l.data FROM livedb_head h LEFT JOIN livedb_log l ON l.n > %s "
              "ORDER BY l.n")
_DURABLE = "SELECT livedb_durable(%s)"
_COMMIT = ("SELECT livedb_commit(%s, %s, %s, %s::text[], %s::text[], %s::float8[], "
           "%s::bytea[], %s::text[], %s::text[], %s::float8[], %s::text[], %s::float8[], %s)")


class PostgresFiles:
    """Stored files' bytes in `livedb_files`, on a connection of their own."""

    def __init__(self, engine: PostgresEngine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._conn: Any = None

    def _connection(self) -> Any:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if self._engine._closed:
                raise LiveDBError(f"{self._engine.location} is closed")
            self._conn = conn = self._engine.connect()
        return conn

    def _fail(self, doing: str, error: BaseException) -> LiveDBError:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
        return self._engine._error(doing, error)

    def put(self, name: str, chunks: Iterator[bytes]) -> int:
        """Store bytes under `name` in parts (in one transaction); their size."""
        size = 0
        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction():
                    pending = b""
                    part = 0
                    for chunk in chunks:
                        pending += bytes(chunk)
                        size += len(chunk)
                        while len(pending) >= FILE_PART:
                            conn.execute("INSERT INTO livedb_files (name, part, data) VALUES "
                                         "(%s, %s, %s) ON CONFLICT DO NOTHING",
                                         (name, part, pending[:FILE_PART]))
                            pending = pending[FILE_PART:]
                            part += 1
                    if pending or part == 0:
                        conn.execute("INSERT INTO livedb_files (name, part, data) VALUES "
                                     "(%s, %s, %s) ON CONFLICT DO NOTHING", (name, part, pending))
            except psycopg.Error as e:
                raise self._fail("could not store a file in", e) from None
        return size

    def rename(self, old: str, new: str) -> None:
        """Give the bytes stored as `old` the name `new` (nothing if `old` is gone)."""
        with self._lock:
            try:
                self._connection().execute("UPDATE livedb_files SET name = %s WHERE name = %s",
                                           (new, old))
            except psycopg.Error as e:
                raise self._fail("could not store a file in", e) from None

    def get(self, name: str) -> bytes | None:
        with self._lock:
            try:
                rows = self._connection().execute(
                    "SELECT data FROM livedb_files WHERE name = %s ORDER BY part",
                    (name,)).fetchall()
            except psycopg.Error as e:
                raise self._fail("could not read a stored file from", e) from None
        if not rows:
            return None
        return b"".join(bytes(r[0]) for r in rows)

    def remove(self, names: list[str]) -> None:
        if not names:
            return
        with self._lock:
            try:
                self._connection().execute("DELETE FROM livedb_files WHERE name = ANY(%s)",
                                           (list(names),))
            except psycopg.Error as e:
                raise self._fail("could not remove stored files from", e) from None

    def names(self, older_than: float = 0.0) -> list[str]:
        """The names stored, only those stored more than `older_than` seconds ago."""
        with self._lock:
            try:
                rows = self._connection().execute(
                    "SELECT DISTINCT name FROM livedb_files WHERE at < now() - "
                    "make_interval(secs => %s)", (older_than,)).fetchall()
            except psycopg.Error as e:
                raise self._fail("could not list stored files in", e) from None
        return [r[0] for r in rows]

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass
