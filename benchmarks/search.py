"""Search workloads: full-text queries next to sqlite3 FTS5, and exact vector search.

(a) `search`: 100,000 messages of 8 to 16 words drawn from a Zipf-like vocabulary of
8,000 words; each query is two words and the prefix of a third (`"w1 w2 pre"`, the
last term matching as a prefix), ranked by BM25, top 10 — livedb's search index against
an FTS5 table (`"w1" OR "w2" OR pre*`, `ORDER BY rank`). Once more with an `eq` filter
on one of 100 channels (an FTS5 column filter), and single-document inserts into the
indexed table (the cost of keeping the index, next to an FTS5 insert).
(b) `vector`: `ctx.vector_search` over 100,000 vectors of 384 dimensions, top 10 by
cosine, unfiltered and filtered to one of 10 kinds; no sqlite3 counterpart, so the
row's baseline is a bare numpy scan of the same normalized matrix (the floor), and the
detail shows the pure-Python fallback, timed in a subprocess where numpy cannot be
imported.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from livedb import Database, action, define_schema, define_table, mutation, query, v

from .harness import Config, Row, Run, Untimed, best_times, check, workload

SEED = 11
SYLLABLES = ("ka", "lo", "mi", "ne", "pu", "ra", "si", "to", "ve", "zu", "ba", "de", "fo",
             "gi", "hu", "ja")
CHANNELS = 100
DIMS = 384
KINDS = 10
SIDES = ("livedb", "sqlite3")
ROOT = Path(__file__).resolve().parent.parent
FALLBACK = """
import sys
sys.modules["numpy"] = None
from benchmarks.search import fallback_ms
print(fallback_ms(int(sys.argv[1])))
"""
"""Run with `python -c` from the repository root: the fallback's ms per query, no numpy."""

SEARCH_SCHEMA = define_schema({
    "messages": define_table({"channel": v.string(), "body": v.string()})
    .search_index("search_body", search_field="body", filter_fields=["channel"]),
})
VECTOR_SCHEMA = define_schema({
    "items": define_table({"kind": v.string(), "embedding": v.array(v.float64())})
    .vector_index("by_embedding", vector_field="embedding", dimensions=DIMS,
                  filter_fields=["kind"]),
})


# -- full text --------------------------------------------------------------------------


def vocabulary() -> list[str]:
    """8,000 distinct three-syllable words (6 letters), most common first."""
    words = [a + b + c for a in SYLLABLES for b in SYLLABLES for c in SYLLABLES]
    random.Random(SEED).shuffle(words)
    return words[:8000]


def corpus(count: int) -> list[tuple[str, str]]:
    """`count` (channel, body) pairs; word frequencies fall off as 1/rank."""
    rng = random.Random(SEED)
    words = vocabulary()
    weights = [1.0 / (rank + 1) for rank in range(len(words))]
    total = 0.0
    cumulative = []
    for weight in weights:
        total += weight
        cumulative.append(total)
    return [(f"c{rng.randrange(CHANNELS)}",
             " ".join(rng.choices(words, cum_weights=cumulative, k=rng.randint(8, 16))))
            for _ in range(count)]


def search_queries(count: int) -> list[tuple[str, str, str]]:
    """(word, word, prefix): two mid-frequency words and 4 letters of a third."""
    rng = random.Random(SEED + 1)
    words = vocabulary()
    return [(rng.choice(words[50:500]), rng.choice(words[50:500]),
             rng.choice(words[20:2000])[:4]) for _ in range(count)]


@mutation
def load_messages(ctx: Any, rows: list[Any]) -> None:
    """Insert (channel, body) rows."""
    for channel, body in rows:
        ctx.db.insert("messages", {"channel": channel, "body": body})


@mutation(args={"channel": v.string(), "body": v.string()})
def insert_searchable(ctx: Any, channel: str, body: str) -> Any:
    return ctx.db.insert("messages", {"channel": channel, "body": body})


@query(args={"text": v.string()})
def search_top10(ctx: Any, text: str) -> list[dict[str, Any]]:
    return (ctx.db.query("messages")
            .with_search_index("search_body", lambda q: q.search("body", text)).take(10))


@query(args={"text": v.string(), "channel": v.string()})
def search_top10_in(ctx: Any, text: str, channel: str) -> list[dict[str, Any]]:
    return (ctx.db.query("messages")
            .with_search_index("search_body",
                               lambda q: q.search("body", text).eq("channel", channel))
            .take(10))


@query(args={"text": v.string()})
def search_count(ctx: Any, text: str) -> int:
    return len(ctx.db.query("messages")
               .with_search_index("search_body", lambda q: q.search("body", text)).collect())


SQL_FTS_CREATE = "CREATE VIRTUAL TABLE messages USING fts5(channel, body)"
SQL_FTS_INSERT = "INSERT INTO messages (channel, body) VALUES (?, ?)"
SQL_FTS_TOP = ("SELECT rowid, channel, body FROM messages WHERE messages MATCH ? "
               "ORDER BY rank LIMIT 10")
SQL_FTS_COUNT = "SELECT count(*) FROM messages WHERE messages MATCH ?"


def fts_match(first: str, second: str, prefix: str, channel: str | None = None) -> str:
    terms = f'body : ("{first}" OR "{second}" OR {prefix}*)'
    return terms if channel is None else f'{terms} AND channel : "{channel}"'


def livedb_search_db(rows: list[tuple[str, str]]) -> Database:
    db = Database(SEARCH_SCHEMA)
    for start in range(0, len(rows), 5000):
        db.mutation(load_messages, {"rows": [list(r) for r in rows[start:start + 5000]]})
    return db


def sqlite_fts(rows: list[tuple[str, str]]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.execute(SQL_FTS_CREATE)
    with conn:
        conn.executemany(SQL_FTS_INSERT, rows)
    return conn


@workload("search", "full-text search, top 10")
def full_text(config: Config) -> list[Row]:
    """Top-10 BM25 queries over 100,000 messages, plain and filtered, and indexed inserts."""
    count = config.table_docs
    rows = corpus(count)
    queries = search_queries(20 if config.smoke else 300)
    channels = [f"c{random.Random(SEED + 2).randrange(CHANNELS)}" for _ in queries]
    started = time.perf_counter()
    db = livedb_search_db(rows)
    livedb_load = time.perf_counter() - started
    started = time.perf_counter()
    conn = sqlite_fts(rows)
    sqlite_load = time.perf_counter() - started
    texts = [f"{a} {b} {p}" for a, b, p in queries]
    matches = [fts_match(a, b, p) for a, b, p in queries]
    for text, match in list(zip(texts, matches, strict=True))[:5]:
        in_livedb = db.query(search_count, {"text": text})
        in_sqlite = conn.execute(SQL_FTS_COUNT, (match,)).fetchone()[0]
        check(in_livedb == min(in_sqlite, 1024),
               f"search {text!r}: livedb found {in_livedb}, FTS5 {in_sqlite} (cap 1024)")

    def livedb_plain() -> Run:
        def run() -> int:
            for text in texts:
                db.query(search_top10, {"text": text})
            return len(texts)

        return run

    def sqlite_plain() -> Run:
        def run() -> int:
            for match in matches:
                conn.execute(SQL_FTS_TOP, (match,)).fetchall()
            return len(matches)

        return run

    filtered = [fts_match(a, b, p, c) for (a, b, p), c in zip(queries, channels, strict=True)]

    def livedb_filtered() -> Run:
        def run() -> int:
            for text, channel in zip(texts, channels, strict=True):
                db.query(search_top10_in, {"text": text, "channel": channel})
            return len(texts)

        return run

    def sqlite_filtered() -> Run:
        def run() -> int:
            for match in filtered:
                conn.execute(SQL_FTS_TOP, (match,)).fetchall()
            return len(filtered)

        return run

    inserts = rows[:config.inserts]

    def livedb_insert() -> Run:
        fresh = Database(SEARCH_SCHEMA)

        def run() -> int:
            for channel, body in inserts:
                fresh.mutation(insert_searchable, {"channel": channel, "body": body})
            return len(inserts)

        return run

    def sqlite_insert() -> Run:
        fresh = sqlite3.connect(":memory:")
        fresh.execute(SQL_FTS_CREATE)

        def run() -> int:
            for row in inserts:
                with fresh:
                    fresh.execute(SQL_FTS_INSERT, row)
            return len(inserts)

        return run

    plain = best_times(config, livedb_plain, sqlite_plain)
    narrowed = best_times(config, livedb_filtered, sqlite_filtered)
    written = best_times(config, livedb_insert, sqlite_insert)
    return [
        Row("search", "full-text search, top 10", dict(zip(SIDES, plain, strict=True)),
            detail=f"{count:,} messages of 8-16 words (Zipf-like, 8,000 words); 'w1 w2 pre' "
                   f"with a prefix last term, BM25, vs FTS5 MATCH ... ORDER BY rank (sqlite3 "
                   f"column); load {livedb_load:.1f} s (livedb) vs {sqlite_load:.1f} s (FTS5)"),
        Row("search-eq", "full-text search, eq filter", dict(zip(SIDES, narrowed, strict=True)),
            detail=f"the same queries in one of {CHANNELS} channels (FTS5 column filter)"),
        Row("search-insert", "insert, search-indexed", dict(zip(SIDES, written, strict=True)),
            detail="single-document transactions into the indexed table vs FTS5 inserts"),
    ]


# -- vectors ---------------------------------------------------------------------------


@action(args={"vector": v.array(v.float64())})
def nearest(ctx: Any, vector: list[float]) -> list[dict[str, Any]]:
    return ctx.vector_search("items", "by_embedding", vector, limit=10)


@action(args={"vector": v.array(v.float64()), "kind": v.string()})
def nearest_of_kind(ctx: Any, vector: list[float], kind: str) -> list[dict[str, Any]]:
    return ctx.vector_search("items", "by_embedding", vector, limit=10,
                             filter=lambda q: q.eq("kind", kind))


def _vectors(count: int, seed: int) -> Any:
    import numpy as np

    return np.random.default_rng(seed).standard_normal((count, DIMS))


def livedb_vector_db(count: int, batch: int = 1000) -> tuple[Database, list[Any], Any]:
    """A database of `count` random vectors; returns it, the ids, and the vectors."""
    vectors = _vectors(count, SEED)
    db = Database(VECTOR_SCHEMA)
    ids: list[Any] = []
    for start in range(0, count, batch):
        chunk = vectors[start:start + batch].tolist()

        def load(ctx: Any, chunk: list[Any] = chunk, start: int = start) -> list[Any]:
            return [ctx.db.insert("items", {"kind": f"k{(start + i) % KINDS}",
                                            "embedding": row})
                    for i, row in enumerate(chunk)]

        ids.extend(db.mutation(load))
    return db, ids, vectors


def _numpy_top(matrix: Any, query: Any, limit: int = 10) -> list[int]:
    import numpy as np

    scores = matrix @ query
    top = np.argpartition(-scores, limit - 1)[:limit]
    return top[np.argsort(-scores[top])].tolist()


@workload("vector", "vector search, top 10")
def vector_search(config: Config) -> list[Row]:
    """Exact cosine top-10 over 100,000 vectors of 384 dimensions."""
    import numpy as np

    count = config.table_docs
    started = time.perf_counter()
    with Untimed():
        db, ids, vectors = livedb_vector_db(count)
    load = time.perf_counter() - started
    queries = _vectors(10 if config.smoke else 100, SEED + 1)
    lists = queries.tolist()
    normalized = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    for query_vector, as_list in list(zip(queries, lists, strict=True))[:3]:
        q = (query_vector / np.linalg.norm(query_vector)).astype(np.float32)
        expected = [ids[i] for i in _numpy_top(normalized, q)]
        found = [d["_id"] for d in db.action(nearest, {"vector": as_list})]
        check(found == expected, "vector search disagrees with a brute-force numpy scan")

    def livedb_side() -> Run:
        def run() -> int:
            for vector in lists:
                db.action(nearest, {"vector": vector})
            return len(lists)

        return run

    def livedb_filtered() -> Run:
        def run() -> int:
            for n, vector in enumerate(lists):
                db.action(nearest_of_kind, {"vector": vector, "kind": f"k{n % KINDS}"})
            return len(lists)

        return run

    def numpy_side() -> Run:
        qs = [(q / np.linalg.norm(q)).astype(np.float32) for q in queries]

        def run() -> int:
            for q in qs:
                _numpy_top(normalized, q)
            return len(qs)

        return run

    plain, filtered, bare = best_times(config, livedb_side, livedb_filtered, numpy_side)
    fallback_count = min(count, 10_000)
    fallback = _fallback_in_subprocess(fallback_count)
    matrix_mib = count * DIMS * 4 / 2 ** 20
    return [
        Row("vector", "vector search, top 10", {"livedb": plain, "numpy scan": bare},
            baseline="numpy scan",
            detail=f"{count:,} vectors of {DIMS} dimensions, exact cosine; baseline: a bare "
                   f"numpy scan of the same normalized float32 matrix ({matrix_mib:.0f} MiB); "
                   f"the pure-Python fallback: {fallback} ms per query over "
                   f"{fallback_count:,} vectors; load {load:.1f} s (gc off)"),
        Row("vector-eq", "vector search, eq filter", {"livedb": filtered, "numpy scan": bare},
            baseline="numpy scan",
            detail=f"the same, restricted to one of {KINDS} kinds"),
    ]


def fallback_ms(count: int) -> float:
    """Milliseconds of one top-10 query over `count` random vectors, as a fresh process sees.

    Run by `_fallback_in_subprocess` in a process where numpy cannot be imported, so
    livedb takes its pure-Python path.
    """
    rng = random.Random(SEED)
    db = Database(VECTOR_SCHEMA)
    for start in range(0, count, 1000):
        chunk = [[rng.gauss(0.0, 1.0) for _ in range(DIMS)]
                 for _ in range(min(1000, count - start))]

        def load(ctx: Any, chunk: list[Any] = chunk, start: int = start) -> None:
            for i, row in enumerate(chunk):
                ctx.db.insert("items", {"kind": f"k{(start + i) % KINDS}", "embedding": row})

        db.mutation(load)
    query_vector = [rng.gauss(0.0, 1.0) for _ in range(DIMS)]
    started = time.perf_counter()
    found = db.action(nearest, {"vector": query_vector})
    elapsed = (time.perf_counter() - started) * 1000
    db.close()
    check(len(found) == min(10, count), f"the fallback found {len(found)} vectors")
    return elapsed


def _fallback_in_subprocess(count: int) -> str:
    """`fallback_ms(count)` run without numpy, formatted; or why it could not run."""
    done = subprocess.run([sys.executable, "-c", FALLBACK, str(count)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise AssertionError(f"the pure-Python vector fallback failed:\n{done.stderr}")
    return f"{float(done.stdout.strip().splitlines()[-1]):,.0f}"


__all__ = ["fallback_ms", "full_text", "vector_search"]
