"""Full-text search: tokens, prefix, relevance, filters, limits, snapshots and live updates."""

from __future__ import annotations

import math
import random
import re
import threading
import time

import pytest

from livedb import (
    Database,
    LiveDBError,
    PaginationResult,
    ValidationError,
    define_schema,
    define_table,
    query,
    v,
)
from livedb import _search as search_module
from livedb import _searchindex as searchindex_module
from livedb._database import kernel_of
from livedb._query import Writer

SCHEMA = define_schema({
    "messages": define_table({"channel": v.string(), "kind": v.optional(v.string()),
                              "body": v.string(), "n": v.optional(v.int64())})
    .index("by_channel", ["channel"])
    .search_index("search_body", search_field="body", filter_fields=["channel", "kind"]),
    "notes": define_table({"meta": v.object({"text": v.optional(v.any())})})
    .search_index("by_text", search_field="meta.text"),
})


@pytest.fixture(params=["numpy", "python"])
def db(request, monkeypatch):
    """A database whose search indexes rank with numpy, or with the pure-Python fallback."""
    if request.param == "python":
        monkeypatch.setattr(search_module, "np", None)
        monkeypatch.setattr(searchindex_module, "np", None)
    database = Database(SCHEMA)
    index = kernel_of(database).search_indexes.search[("messages", "search_body")]
    assert (index.columns is not None) == (request.param == "numpy")
    return database


def insert(db, *bodies, channel="general", kind=None):
    def run(ctx):
        ids = []
        for body in bodies:
            doc = {"channel": channel, "body": body}
            if kind is not None:
                doc["kind"] = kind
            ids.append(ctx.db.insert("messages", doc))
        return ids

    return db.mutation(run)


def search(db, text, channel=None, kind=None, limit=None):
    """Bodies of the matches for `text`, best first."""
    def run(ctx):
        def build(q):
            q = q.search("body", text)
            if channel is not None:
                q = q.eq("channel", channel)
            if kind is not None:
                q = q.eq("kind", kind)
            return q

        found = ctx.db.query("messages").with_search_index("search_body", build)
        docs = found.collect() if limit is None else found.take(limit)
        return [d["body"] for d in docs]

    return db.query(run)


@query(args={"text": v.string(), "channel": v.string()})
def live_search(ctx, text, channel):
    return [d["body"] for d in ctx.db.query("messages")
            .with_search_index("search_body",
                               lambda q: q.search("body", text).eq("channel", channel))
            .take(10)]


# -- matching ----------------------------------------------------------------------------


def test_terms_are_case_insensitive_and_split_on_punctuation(db):
    insert(db, "Hello, WORLD!", "nothing here", "say hello-again")
    assert sorted(search(db, "hello")) == ["Hello, WORLD!", "say hello-again"]
    assert search(db, "world") == ["Hello, WORLD!"]
    assert search(db, "HeLLo world") == ["Hello, WORLD!", "say hello-again"]
    assert search(db, "again") == ["say hello-again"]
    assert search(db, "...!") == []
    assert search(db, "") == []


def test_only_the_last_term_matches_as_a_prefix(db):
    insert(db, "helicopter ride", "hello there", "a quiet evening")
    assert sorted(search(db, "hel")) == ["hello there", "helicopter ride"][::-1]
    assert search(db, "hel quiet") == ["a quiet evening"]
    assert search(db, "quiet hel")[0] == "a quiet evening"
    assert set(search(db, "quiet hel")) == {"a quiet evening", "helicopter ride",
                                             "hello there"}
    assert search(db, "helicopterx") == []


def test_with_repeated_words_only_the_last_term_is_a_prefix(db):
    insert(db, "foo", "bar", "baz", "foo bar", "bazooka")
    assert set(search(db, "foo foo ba")) == {"foo", "foo bar", "bar", "baz", "bazooka"}
    assert set(search(db, "foo ba foo")) == {"foo", "foo bar"}, "'ba' is not the last term"
    assert set(search(db, "ba foo foo")) == {"foo", "foo bar"}
    assert search(db, "foo ba foo") == search(db, "ba foo"), "the same terms, the same roles"


def test_a_search_text_with_a_lone_surrogate_is_a_validation_error(db):
    insert(db, "hello")
    with pytest.raises(ValidationError, match="surrogate"):
        search(db, "hel\ud800")


def test_an_exact_last_term_outranks_longer_words_it_prefixes(db):
    insert(db, "cats everywhere", "cat")
    insert(db, "the cat sat")
    assert search(db, "cat") == ["cat", "the cat sat", "cats everywhere"]


def test_any_term_matches_and_more_matched_terms_rank_first(db):
    insert(db, "red apple", "green apple", "red green apple", "blue sky")
    assert search(db, "red green apple")[0] == "red green apple"
    assert set(search(db, "red green")) == {"red apple", "green apple", "red green apple"}


def test_term_frequency_and_length_count(db):
    insert(db, "rust rust rust in the garden", "rust in the garden", "rust")
    assert search(db, "rust") == ["rust", "rust rust rust in the garden",
                                  "rust in the garden"]


def test_rare_terms_weigh_more_than_common_ones(db):
    insert(db, *[f"common words number {i}" for i in range(20)])
    insert(db, "a rare gem", "common gem")
    assert search(db, "common rare")[0] == "a rare gem"


def test_ties_come_newest_first(db):
    ids = insert(db, "same text", "same text", "same text")
    found = db.query(lambda ctx: [d["_id"] for d in ctx.db.query("messages")
                                  .with_search_index("search_body",
                                                     lambda q: q.search("body", "same"))
                                  .collect()])
    assert found == ids[::-1]


def test_eq_filters_on_filter_fields(db):
    insert(db, "deploy today", channel="ops", kind="alert")
    insert(db, "deploy tomorrow", channel="ops")
    insert(db, "deploy never", channel="dev", kind="alert")
    assert sorted(search(db, "deploy", channel="ops")) == ["deploy today", "deploy tomorrow"]
    assert search(db, "deploy", kind="alert", channel="dev") == ["deploy never"]
    assert sorted(search(db, "deploy", kind="alert")) == ["deploy never", "deploy today"]
    assert search(db, "deploy", channel="nowhere") == []


def test_eq_null_does_not_match_a_missing_filter_field(db):
    insert(db, "no kind here")

    def run(ctx, kind):
        return [d["body"] for d in ctx.db.query("messages").with_search_index(
            "search_body", lambda q: q.search("body", "kind").eq("kind", kind)).collect()]

    assert db.query(lambda ctx: run(ctx, None)) == []
    assert search(db, "kind") == ["no kind here"]


def test_documents_without_a_string_in_the_search_field_are_not_indexed(db):
    def fill(ctx):
        for value in ("nested words", 42, None, ["nested"], "nested again"):
            ctx.db.insert("notes", {"meta": {"text": value}})
        ctx.db.insert("notes", {"meta": {}})

    db.mutation(fill)
    found = db.query(lambda ctx: [d["meta"]["text"] for d in ctx.db.query("notes")
                                  .with_search_index("by_text",
                                                     lambda q: q.search("meta.text", "nested"))
                                  .collect()])
    assert sorted(found) == ["nested again", "nested words"]


# -- limits and errors -----------------------------------------------------------------


def test_at_most_16_terms(db):
    insert(db, "t0 t1")
    assert search(db, " ".join(f"t{i}" for i in range(16)))[0] == "t0 t1"
    assert search(db, "t0 " * 40) == ["t0 t1"]
    with pytest.raises(ValidationError, match="17 terms; the limit is 16"):
        search(db, " ".join(f"t{i}" for i in range(17)))


def test_at_most_1024_results_and_take_keeps_the_best(db):
    insert(db, *["filler match"] * 1100)
    insert(db, "match")
    found = search(db, "match")
    assert len(found) == 1024
    assert found[0] == "match"
    assert search(db, "match", limit=3) == ["match", "filler match", "filler match"]


@pytest.mark.parametrize("build, message", [
    (lambda q: q.query("messages").with_search_index("nope", lambda s: s.search("body", "x")),
     "no search index 'nope'"),
    (lambda q: q.query("messages").with_search_index("search_body",
                                                     lambda s: s.search("channel", "x")),
     "searches 'body'"),
    (lambda q: q.query("messages").with_search_index("search_body",
                                                     lambda s: s.search("body", 3)),
     "must be a str"),
    (lambda q: q.query("messages").with_search_index("search_body", lambda s: s),
     r"call q.search"),
    (lambda q: q.query("messages").with_search_index("search_body",
                                                     lambda s: s.eq("channel", "x")),
     "call search"),
    (lambda q: q.query("messages").with_search_index(
        "search_body", lambda s: s.search("body", "x").eq("body", "x")),
     "not a filter field"),
    (lambda q: q.query("messages").with_search_index(
        "search_body", lambda s: s.search("body", "x").eq("channel", "a").eq("channel", "b")),
     "already has an eq"),
    (lambda q: q.query("messages").with_search_index(
        "search_body", lambda s: s.search("body", "x").eq("channel", {1, 2})),
     "value"),
    (lambda q: q.query("messages").with_search_index(
        "search_body", lambda s: s.search("body", "x")).order("desc"),
     "relevance order"),
    (lambda q: q.query("messages").with_index("by_channel").with_search_index(
        "search_body", lambda s: s.search("body", "x")),
     "with_search_index must come right after"),
    (lambda q: q.query("messages").with_search_index("by_channel",
                                                     lambda s: s.search("body", "x")),
     "no search index 'by_channel'"),
])
def test_bad_search_queries_are_validation_errors(db, build, message):
    with pytest.raises(ValidationError, match=message):
        db.query(lambda ctx: build(ctx.db).collect())


def test_a_search_query_is_single_use_and_supports_every_terminal(db):
    insert(db, "one match", "two match", "three")

    def run(ctx):
        def fresh():
            return ctx.db.query("messages").with_search_index(
                "search_body", lambda q: q.search("body", "match"))

        q = fresh()
        first = q.first()
        with pytest.raises(LiveDBError, match="already run"):
            q.collect()
        with pytest.raises(LiveDBError, match="more than one"):
            fresh().unique()
        only = ctx.db.query("messages").with_search_index(
            "search_body", lambda q: q.search("body", "three")).unique()
        return [first["body"], [d["body"] for d in fresh()], only["body"],
                [d["body"] for d in fresh().filter(lambda d: d["body"].startswith("one"))
                 .collect()]]

    first, iterated, only, filtered = db.query(run)
    assert first == "two match"
    assert iterated == ["two match", "one match"]
    assert only == "three"
    assert filtered == ["one match"]


# -- writes, snapshots, transactions -----------------------------------------------------


def test_patches_replaces_and_deletes_are_reflected(db):
    first, second = insert(db, "alpha beta", "beta gamma")
    db.mutation(lambda ctx: ctx.db.patch(first, {"body": "delta"}))
    assert search(db, "alpha") == []
    assert search(db, "delta") == ["delta"]
    db.mutation(lambda ctx: ctx.db.replace(second, {"channel": "x", "body": "epsilon"}))
    assert search(db, "beta") == []
    assert search(db, "epsilon", channel="x") == ["epsilon"]
    db.mutation(lambda ctx: ctx.db.delete(first))
    assert search(db, "delta") == []


def test_old_versions_leave_the_index_once_collected(db, monkeypatch):
    monkeypatch.setattr(searchindex_module, "_REBUILD_AT", 8)
    (doc,) = insert(db, "version zero")
    (other,) = insert(db, "other document")
    for n in range(1, 50):
        db.mutation(lambda ctx, n=n: ctx.db.patch(doc, {"body": f"version word{n}"}))
        assert search(db, f"word{n}") == [f"version word{n}"]
        assert search(db, "version") == [f"version word{n}"]
    kernel_of(db).store.tidy(force=True)  # collection runs in batches; finish it now
    index = kernel_of(db).search_indexes.search[("messages", "search_body")]
    assert len(index.entries[doc]) == 1 and len(index.entries[other]) == 1
    columns = index.columns
    if columns is None:
        assert set(index.postings) == {"version", "word49", "other", "document"}
        assert len(index.vocab) == 4
    else:
        assert columns.size - columns.dead == 2 and columns.size < 20
        assert len(columns.vocab) < 20
    db.mutation(lambda ctx: ctx.db.delete(doc))
    kernel_of(db).store.tidy(force=True)
    assert set(index.entries) == {other}
    assert search(db, "version") == [] and search(db, "other") == ["other document"]
    if columns is None:
        assert set(index.postings) == {"other", "document"}


def test_rolled_back_commits_leave_the_index(db):
    """A durable commit that fails to reach the disk is rolled back in the store."""
    (doc,) = insert(db, "kept words")
    kernel = kernel_of(db)
    store = kernel.store
    txn = Writer(store, kernel.catalog, store.applied, False, kernel.search_indexes)
    txn.patch(doc, {"body": "lost words"})
    txn.insert("messages", {"channel": "general", "body": "lost too"})
    writes, changes = txn.commit_changes()
    txn.close()
    with kernel._write_lock:
        ts = store.commit(writes, changes, publish=False)
        store.rollback(ts - 1, [w[0] for w in writes], [changes])
    assert search(db, "words") == ["kept words"]
    assert search(db, "lost") == []
    index = kernel_of(db).search_indexes.search[("messages", "search_body")]
    assert len(index.entries) == 1 and len(index.entries[doc]) == 1
    db.mutation(lambda ctx: ctx.db.patch(doc, {"body": "kept again"}))
    assert search(db, "kept") == ["kept again"]


def test_a_search_sees_its_snapshot_and_not_later_commits(db):
    (doc,) = insert(db, "before")
    txn = kernel_of(db).reader()
    try:
        db.mutation(lambda ctx: ctx.db.patch(doc, {"body": "after"}))
        insert(db, "before too")
        old = [d["body"] for d in txn.query("messages").with_search_index(
            "search_body", lambda q: q.search("body", "before")).collect()]
        older = [d["body"] for d in txn.query("messages").with_search_index(
            "search_body", lambda q: q.search("body", "after")).collect()]
    finally:
        txn.close()
    assert old == ["before"]
    assert older == []
    assert search(db, "before") == ["before too"]
    assert search(db, "after") == ["after"]


def test_a_mutation_searches_its_own_writes(db):
    (doc,) = insert(db, "stale words")

    def run(ctx):
        ctx.db.insert("messages", {"channel": "general", "body": "fresh words"})
        ctx.db.patch(doc, {"body": "changed"})
        return [d["body"] for d in ctx.db.query("messages").with_search_index(
            "search_body", lambda q: q.search("body", "words")).collect()]

    assert db.mutation(run) == ["fresh words"]


def test_pagination_visits_every_result_once(db):
    insert(db, *[f"page word {'x ' * (i % 7)}{i}" for i in range(45)])
    expected = search(db, "word")

    def page(ctx, cursor, end_cursor=None):
        return ctx.db.query("messages").with_search_index(
            "search_body", lambda q: q.search("body", "word")).paginate(
                10, cursor, end_cursor=end_cursor)

    seen, cursor, pages = [], None, []
    while True:
        result = db.query(lambda ctx, cursor=cursor: page(ctx, cursor))
        assert isinstance(result, PaginationResult)
        pages.append((cursor, result.continue_cursor))
        seen.extend(d["body"] for d in result.page)
        cursor = result.continue_cursor
        if result.is_done:
            break
    assert seen == expected
    assert len(pages) == 5
    start, end = pages[1]
    between = db.query(lambda ctx: page(ctx, start, end))
    assert [d["body"] for d in between.page] == expected[10:20]
    assert not between.is_done
    done = db.query(lambda ctx: page(ctx, cursor))
    assert done.page == [] and done.is_done
    with pytest.raises(ValidationError, match="different query"):
        db.query(lambda ctx: ctx.db.query("messages").with_search_index(
            "search_body", lambda q: q.search("body", "other")).paginate(10, start))
    with pytest.raises(ValidationError, match="not one livedb made"):
        db.query(lambda ctx: page(ctx, "garbage!"))


def test_a_durable_database_rebuilds_its_search_index(tmp_path):
    path = tmp_path / "search.livedb"
    with Database(SCHEMA, path=path) as db:
        insert(db, "persisted words", "other text")
    with Database(SCHEMA, path=path) as db:
        assert search(db, "words") == ["persisted words"]
        insert(db, "more words")
        assert search(db, "words") == ["more words", "persisted words"]


# -- live search ---------------------------------------------------------------------


def test_live_search_reruns_only_for_writes_that_could_change_it(db):
    insert(db, "hello ops", channel="ops")
    seen = []
    db.subscribe(live_search, {"text": "hello", "channel": "ops"}, seen.append)
    assert seen == [["hello ops"]]

    def reruns():
        return db.stats()["reruns"]

    insert(db, "unrelated words", channel="ops")
    insert(db, "hello elsewhere", channel="dev")
    insert(db, "yellow hello", channel="other")
    assert reruns() == 0
    (new,) = insert(db, "hello again", channel="ops")
    assert seen[-1] == ["hello again", "hello ops"] and reruns() == 1
    db.mutation(lambda ctx: ctx.db.patch(new, {"n": 5}))
    assert reruns() == 2 and len(seen) == 2
    db.mutation(lambda ctx: ctx.db.patch(new, {"channel": "dev"}))
    assert seen[-1] == ["hello ops"] and reruns() == 3
    db.mutation(lambda ctx: ctx.db.patch(new, {"body": "bye"}))
    assert reruns() == 3
    db.mutation(lambda ctx: ctx.db.delete(new))
    assert reruns() == 3
    (_other,) = insert(db, "helloworld", channel="ops")
    assert reruns() == 4 and seen[-1] == ["hello ops", "helloworld"]


def test_live_search_with_only_a_prefix_term(db):
    seen = []
    db.subscribe(live_search, {"text": "heli", "channel": "ops"}, seen.append)
    insert(db, "hello", channel="ops")
    insert(db, "a helicopter", channel="ops")
    assert seen == [[], ["a helicopter"]]
    assert db.stats()["reruns"] == 1


def reference_search(docs, text, channel):
    """Brute-force BM25 over the matching documents, as documented in livedb/search.py."""
    terms = list(dict.fromkeys(re.findall(r"\w+", text.casefold())))
    if not terms:
        return []
    exact, prefix = terms[:-1], terms[-1]
    matched = []
    for doc in docs:
        if doc["channel"] != channel:
            continue
        tokens = re.findall(r"\w+", doc["body"].casefold())
        tf = {t: tokens.count(t) for t in tokens}
        hits = [t for t in exact if t in tf]
        partial = sum(c if t == prefix else 0.5 * c for t, c in tf.items()
                      if t.startswith(prefix))
        if hits or partial:
            matched.append((doc, tf, len(tokens), hits, partial))
    n = len(matched)
    if not n:
        return []
    average = sum(m[2] for m in matched) / n
    df = {}
    for _doc, _tf, _length, hits, _partial in matched:
        for t in hits:
            df[t] = df.get(t, 0) + 1
    df[None] = sum(1 for m in matched if m[4])

    def weight(term, count, length):
        idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
        return idf * count * 2.2 / (count + 1.2 * (0.25 + 0.75 * length / average))

    ranked = []
    for doc, tf, length, hits, partial in matched:
        score = sum(weight(t, tf[t], length) for t in hits)
        if partial:
            score += weight(None, partial, length)
        ranked.append((-score, -doc["_creation_time"], doc["_id"]))
    ranked.sort()
    return [r[2] for r in ranked[:10]]


@query(args={"text": v.string(), "channel": v.string()})
def live_ids(ctx, text, channel):
    return [d["_id"] for d in ctx.db.query("messages")
            .with_search_index("search_body",
                               lambda q: q.search("body", text).eq("channel", channel))
            .take(10)]


def test_random_writes_keep_live_and_fresh_results_equal_to_a_reference(db):
    rng = random.Random(6)
    words = ["ant", "antelope", "bee", "beetle", "cat", "catalog", "dog", "eel"]
    queries = [("ant", "a"), ("bee cat", "a"), ("dog an", "b"), ("cat", "b"), ("eel be", "a")]
    subs = {q: db.subscribe(live_ids, {"text": q[0], "channel": q[1]}, lambda r: None)
            for q in queries}
    ids = []
    for _ in range(150):
        op = rng.random()
        body = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
        channel = rng.choice("ab")
        if op < 0.5 or not ids:
            ids.append(db.mutation(lambda ctx, b=body, c=channel: ctx.db.insert(
                "messages", {"channel": c, "body": b})))
        elif op < 0.8:
            target = rng.choice(ids)
            db.mutation(lambda ctx, t=target, b=body, c=channel: ctx.db.patch(
                t, {"body": b, "channel": c}))
        else:
            target = ids.pop(rng.randrange(len(ids)))
            db.mutation(lambda ctx, t=target: ctx.db.delete(t))
        docs = db.query(lambda ctx: ctx.db.query("messages").collect())
        for (text, channel), sub in subs.items():
            expected = reference_search(docs, text, channel)
            assert db.query(live_ids, {"text": text, "channel": channel}) == expected
            assert sub.result == expected


def test_searches_in_other_threads_see_whole_commits(db):
    """Each commit rewrites every document at once; a reader must never see a mix."""
    ids = insert(db, *[f"stable round0 filler{i}" for i in range(30)])
    stop = threading.Event()
    problems: list[str] = []

    def rewrite():
        round_number = 0
        while not stop.is_set():
            round_number += 1
            words = f"round{round_number}"

            def run(ctx, words=words):
                for n, doc in enumerate(ids):
                    ctx.db.patch(doc, {"body": f"stable {words} filler{n}"})

            db.mutation(run)

    def read():
        while not stop.is_set():
            bodies = search(db, "stable")
            rounds = {b.split()[1] for b in bodies}
            if len(bodies) != 30 or len(rounds) != 1:
                problems.append(f"{len(bodies)} results from rounds {sorted(rounds)}")
                return

    threads = [threading.Thread(target=rewrite)] + [threading.Thread(target=read)
                                                     for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join()
    assert problems == []
    insert(db, "once the readers are gone, collection drops what they kept")
    assert db.stats()["search_entries"] == 31
    index = kernel_of(db).search_indexes.search[("messages", "search_body")]
    assert all(len(entries) == 1 for entries in index.entries.values())
