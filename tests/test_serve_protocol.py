"""`livedb serve` against a strict raw client of Convex's sync protocol and its HTTP API.

The real `convex` npm client is exercised in test_serve_e2e.py; these tests pin down what
it relies on, message by message: the version chain, a Transition after every mutation
response (never a covering one before it), exactly-once mutations across reconnects and
restarts, AuthError, QueryFailed instead of a frame the client cannot parse, Ping.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import livedb
from livedb import Database, LiveDBError
from livedb.auth import PasswordAuth
from tests.servekit import APP, SyncClient, decode, integer, missing, plain, u64

try:
    import aiohttp
except ImportError:
    aiohttp = None

if aiohttp is None:
    missing("aiohttp is not installed (pip install 'livedb[serve]')")

sys_path_app = str(APP)


def run(test: Callable[[Any], Awaitable[None]]) -> None:
    """Run an async test body with an aiohttp client session."""

    async def main() -> None:
        async with aiohttp.ClientSession() as http:
            await test(http)

    asyncio.run(main())


@pytest.fixture
def app_schema() -> Any:
    from livedb._serve.registry import load

    return load(sys_path_app).schema


@pytest.fixture
def served(app_schema: Any) -> Any:
    db = Database(app_schema)
    server = livedb.serve(db, sys_path_app, port=0, ping_interval=0.3)
    yield server
    server.close()
    db.close()


def test_subscribe_then_a_mutation_its_response_then_the_covering_transition(served: Any
                                                                            ) -> None:
    async def body(http: Any) -> None:
        a = await SyncClient.connect(http, served.url)
        await a.add(0, "messages:list", {"channel": "general"})
        first = await a.transition()
        assert first["startVersion"] == {"querySet": 0, "identity": 0, "ts": "AAAAAAAAAAA="}
        assert first["endVersion"]["querySet"] == 1
        assert a.results[0] == []

        for n in range(20):
            await a.send(type="Mutation", requestId=n, udfPath="messages:send",
                         args=[{"channel": "general", "body": f"hello {n}"}])
            response = await a.until(lambda m: m["type"] != "Ping")
            assert response["type"] == "MutationResponse", (
                f"mutation {n}: a Transition covering the commit came before its response")
            assert response["success"] is True
            ts = u64(response["ts"])
            assert a.version[2] < ts
            resolved = await a.until(lambda m: m["type"] == "Transition")
            assert u64(resolved["endVersion"]["ts"]) >= ts
            assert [m["body"] for m in a.results[0]] == [f"hello {i}" for i in range(n + 1)]
            assert a.results[0][-1]["_id"] == response["result"]
        doc = a.results[0][-1]
        assert doc["_id"] == response["result"] and doc["author"] == "anonymous"
        assert isinstance(doc["_creationTime"], float) and doc["_creationTime"] > 1e12
        assert "_creation_time" not in doc

    run(body)


def test_a_mutation_that_changes_nothing_watched_still_gets_an_empty_transition(
        served: Any) -> None:
    async def body(http: Any) -> None:
        a = await SyncClient.connect(http, served.url)
        await a.add(0, "messages:list", {"channel": "general"})
        await a.transition()
        for request_id in range(3):
            response, resolved = await a.mutation(request_id, "counter:increment",
                                                  {"name": "c"})
            assert plain(decode(response["result"])) == request_id + 1
            assert resolved["modifications"] == []
            assert u64(resolved["endVersion"]["ts"]) >= u64(response["ts"])

    run(body)


def test_live_updates_reach_a_second_connection_and_transitions_chain(served: Any) -> None:
    async def body(http: Any) -> None:
        a = await SyncClient.connect(http, served.url)
        b = await SyncClient.connect(http, served.url)
        await b.add(0, "messages:count", {"channel": "x"})
        await b.transition()
        assert b.results[0] == 0
        for n in range(1, 6):
            await a.mutation(n, "messages:send", {"channel": "x", "body": f"m{n}"})
            await b.until(lambda m, n=n: m["type"] == "Transition" and b.results[0] == n)
        await a.mutation(99, "messages:send", {"channel": "elsewhere", "body": "unrelated"})
        await a.mutation(100, "messages:send", {"channel": "x", "body": "m6"})
        update = await b.until(lambda m: m["type"] == "Transition" and b.results[0] == 6)
        assert [c["queryId"] for c in update["modifications"]] == [0]

    run(body)


def test_query_set_changes_remove_and_version_mismatch(served: Any) -> None:
    async def body(http: Any) -> None:
        a = await SyncClient.connect(http, served.url)
        await a.send(type="ModifyQuerySet", baseVersion=0, newVersion=1, modifications=[
            {"type": "Add", "queryId": 0, "udfPath": "messages:count",
             "args": [{"channel": "a"}]},
            {"type": "Add", "queryId": 1, "udfPath": "values.js:default", "args": [{}]},
            {"type": "Add", "queryId": 2, "udfPath": "values", "args": [{}]}])
        a.query_set = 1
        await a.until(lambda m: m["type"] == "Transition" and a.version[0] == 1)
        assert a.results == {0: 0, 1: "the default export", 2: "the default export"}
        await a.remove(1)
        removed = await a.transition()
        assert removed["modifications"] == [{"type": "QueryRemoved", "queryId": 1}]
        assert a.version[0] == 2
        await a.send(type="ModifyQuerySet", baseVersion=7, newVersion=8, modifications=[])
        with pytest.raises(ConnectionError):
            await a.until(lambda m: False, timeout=5)

    run(body)


def test_failures_are_query_failed_never_a_broken_frame(served: Any) -> None:
    async def body(http: Any) -> None:
        a = await SyncClient.connect(http, served.url)
        await a.add(0, "values:bad_key")
        await a.add(1, "messages:nope")
        await a.add(2, "messages:list", {"channel": 5})
        await a.add(3, "messages:send", {"channel": "a", "body": "b"})
        await a.add(4, "values:big")
        await a.until(lambda m: m["type"] == "Transition" and a.version[0] == 5)
        assert "café" in a.failures[0]["errorMessage"]
        assert a.failures[1]["errorMessage"] == "Could not find public function for " \
                                                "'messages:nope'"
        assert "expected string" in a.failures[2]["errorMessage"]
        assert "not a query" in a.failures[3]["errorMessage"]
        big = decode(a.results and (await _value(a, 4)))
        assert big["max"] == ("int", 2**63 - 1) and big["min"] == ("int", -2**63)
        assert big["len"] == ("int", 4) and big["bytes"] == bytes(range(256))
        neg_zero = big["neg_zero"][1]
        assert neg_zero == 0.0 and str(neg_zero) == "-0.0"
        assert big["nan"][1] != big["nan"][1] and big["inf"] == ("float", float("inf"))
        response, _ = await a.mutation(0, "messages:fail", {"code": "E1"})
        assert response["success"] is False
        assert plain(decode(response["errorData"])) == {"code": "E1", "n": 7}
        response, _ = await a.mutation(1, "values:store", {"bad": {"café": 1}})
        assert response["success"] is False and "café" in response["result"]
        response, _ = await a.mutation(2, "values:nope", {})
        assert response["result"] == "Could not find public function for 'values:nope'"
        await a.add(5, "messages:count", {"channel": "never"})
        await a.until(lambda m: m["type"] == "Transition" and a.version[0] == 6)
        assert a.results[5] == 0, "the failed mutations committed nothing"

    run(body)


async def _value(client: SyncClient, query_id: int) -> Any:
    for message in reversed(client.received):
        if message["type"] != "Transition":
            continue
        for change in message["modifications"]:
            if change["queryId"] == query_id and change["type"] == "QueryUpdated":
                return change["value"]
    raise AssertionError(f"no value for query {query_id}")


def test_values_round_trip_through_an_action_and_a_stored_document(served: Any) -> None:
    async def body(http: Any) -> None:
        a = await SyncClient.connect(http, served.url)
        args = {"i": integer(-5), "big": integer(2**62), "f": 1.5, "whole": 3,
                "neg_zero": {"$float": "AAAAAAAAAIA="}, "nan": {"$float": "AAAAAAAA+H8="},
                "b": {"$bytes": "AAEC/w=="}, "nested": [{"k": None, "t": True}]}
        await a.send(type="Action", requestId=0, udfPath="values:echo", args=[args])
        response = await a.until(lambda m: m["type"] == "ActionResponse")
        echoed = decode(response["result"])
        assert echoed["i"] == ("int", -5) and echoed["big"] == ("int", 2**62)
        assert echoed["whole"] == 3.0 and response["result"]["whole"] == 3.0, (
            "a JavaScript number is a float64")
        assert echoed["b"] == b"\x00\x01\x02\xff" and echoed["nested"] == [{"k": None,
                                                                            "t": True}]
        assert str(echoed["neg_zero"][1]) == "-0.0" and echoed["nan"][1] != echoed["nan"][1]
        await a.transition()
        response, _ = await a.mutation(0, "values:store", {"n": integer(7), "x": 2.5})
        doc = decode(response["result"])
        assert doc["n"] == ("int", 7) and doc["x"] == 2.5 and "_creationTime" in doc
        response, _ = await a.mutation(1, "values:store", {"copy": response["result"]})
        copied = decode(response["result"])["copy"]
        assert copied["_creationTime"] == doc["_creationTime"], (
            "a document sent back keeps its creation time")

    run(body)


def test_a_resent_mutation_is_answered_from_its_record_not_run_again(served: Any) -> None:
    async def body(http: Any) -> None:
        session = str(uuid.uuid4())
        a = await SyncClient.connect(http, served.url, session)
        await a.add(0, "counter:get", {"name": "once"})
        await a.transition()
        response, _ = await a.mutation(0, "counter:increment", {"name": "once"})
        await a.close()
        again = await SyncClient.connect(http, served.url, session, connection_count=1)
        await again.add(0, "counter:get", {"name": "once"})
        await again.transition()
        replay, resolved = await again.mutation(0, "counter:increment", {"name": "once"})
        assert replay["result"] == response["result"] and replay["ts"] == response["ts"]
        assert again.results[0] == 1
        fresh, _ = await again.mutation(1, "counter:increment", {"name": "once"})
        assert plain(decode(fresh["result"])) == 2 and u64(fresh["ts"]) > u64(replay["ts"])
        other = await SyncClient.connect(http, served.url)
        other_response, _ = await other.mutation(0, "counter:increment", {"name": "once"})
        assert plain(decode(other_response["result"])) == 3, (
            "request ids are per session: another session's request 0 runs")

    run(body)


def test_exactly_once_and_monotonic_timestamps_across_a_restart(app_schema: Any,
                                                               tmp_path: Path) -> None:
    path = str(tmp_path / "app.livedb")
    session = str(uuid.uuid4())
    first: dict[str, Any] = {}

    async def before(http: Any) -> None:
        a = await SyncClient.connect(http, server.url, session)
        await a.add(0, "counter:get", {"name": "r"})
        await a.transition()
        first["response"], first["resolved"] = await a.mutation(0, "counter:increment",
                                                                 {"name": "r"})
        first["seen"] = a.version[2]

    async def after(http: Any) -> None:
        a = await SyncClient.connect(http, server.url, session, connection_count=1)
        await a.add(0, "counter:get", {"name": "r"})
        synced = await a.transition()
        assert a.results[0] == 1
        assert u64(synced["endVersion"]["ts"]) > first["seen"], (
            "timestamps went backwards across the restart")
        replay, resolved = await a.mutation(0, "counter:increment", {"name": "r"})
        assert replay["result"] == first["response"]["result"]
        assert replay["ts"] == first["response"]["ts"]
        assert resolved, "the replayed mutation resolves on a Transition"
        assert a.results[0] == 1
        fresh, _ = await a.mutation(1, "counter:increment", {"name": "r"})
        assert plain(decode(fresh["result"])) == 2
        assert u64(fresh["ts"]) > u64(first["response"]["ts"])

    db = Database(app_schema, path=path)
    server = livedb.serve(db, sys_path_app, port=0)
    try:
        run(before)
    finally:
        server.close()
        db.close()
    db = Database(app_schema, path=path)
    server = livedb.serve(db, sys_path_app, port=0)
    try:
        run(after)
    finally:
        server.close()
        db.close()


def test_authenticate_a_jwt_reruns_queries_and_a_bad_token_gets_auth_error(
        app_schema: Any) -> None:
    db = Database(app_schema)
    auth = PasswordAuth(db, scrypt_n=2**10)
    server = livedb.serve(db, sys_path_app, port=0, auth=auth)

    async def body(http: Any) -> None:
        async with http.post(f"{server.url}/api/auth/sign_up",
                             json={"email": "ada@example.com", "password": "correct horse"}
                             ) as reply:
            assert reply.status == 200
            signed = await reply.json()
        jwt, session_token = signed["jwt"], signed["token"]
        header, payload, _sig = jwt.split(".")
        claims = json.loads(_unb64(payload))
        assert json.loads(_unb64(header)) == {"alg": "HS256", "typ": "JWT"}
        assert claims["exp"] - claims["iat"] == 3600 and claims["iat"] <= time.time() + 1
        a = await SyncClient.connect(http, server.url)
        await a.add(0, "messages:whoami")
        await a.transition()
        assert a.results[0] is None
        await a.send(type="Authenticate", baseVersion=0, tokenType="User", value=jwt)
        confirmed = await a.transition()
        assert a.version[1] == 1 and a.results[0] == "ada@example.com"
        assert confirmed["modifications"][0]["queryId"] == 0
        response, _ = await a.mutation(0, "messages:send", {"channel": "c", "body": "hi"})
        await a.add(1, "messages:list", {"channel": "c"})
        await a.transition()
        assert a.results[1][0]["author"] == "ada@example.com"
        await a.send(type="Authenticate", baseVersion=1, tokenType="User",
                     value=session_token)
        await a.transition()
        assert a.version[1] == 2 and a.results[0] == "ada@example.com", (
            "a plain session token works too")
        await a.send(type="Authenticate", baseVersion=2, tokenType="None")
        await a.transition()
        assert a.version[1] == 3 and a.results[0] is None

        async with http.post(f"{server.url}/api/auth/token", json={"token": session_token}
                             ) as reply:
            fresh = (await reply.json())["jwt"]
        assert fresh != jwt
        for bad in (jwt[:-2] + ("AA" if not jwt.endswith("AA") else "BB"), "not-a-token",
                    fresh.replace(".", ".x", 1)):
            b = await SyncClient.connect(http, server.url)
            await b.send(type="Authenticate", baseVersion=0, tokenType="User", value=bad)
            error = await b.next()
            assert error["type"] == "AuthError" and error["baseVersion"] == 0
            assert error["authUpdateAttempted"] is True
            with pytest.raises(ConnectionError):
                await b.next()
        async with http.post(f"{server.url}/api/auth/sign_out",
                             json={"token": session_token}) as reply:
            assert (await reply.json()) == {"signedOut": True}
        c = await SyncClient.connect(http, server.url)
        await c.send(type="Authenticate", baseVersion=0, tokenType="User", value=fresh)
        error = await c.next()
        assert error["type"] == "AuthError" and "session has ended" in error["error"]
        async with http.post(f"{server.url}/api/auth/sign_in",
                             json={"email": "ada@example.com", "password": "wrong"}) as reply:
            assert reply.status == 401

    try:
        run(body)
    finally:
        server.close()
        db.close()


def _unb64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_an_idle_connection_gets_pings(served: Any) -> None:
    async def body(http: Any) -> None:
        a = await SyncClient.connect(http, served.url)
        ping = await a.next(timeout=3)
        assert ping == {"type": "Ping"}
        await a.add(0, "messages:count", {"channel": "p"})
        await a.transition()
        assert (await a.next(timeout=3)) == {"type": "Ping"}

    run(body)


def test_paginated_query_keeps_its_page_boundary_and_journal(served: Any) -> None:
    async def body(http: Any) -> None:
        a = await SyncClient.connect(http, served.url)
        for n in range(5):
            await a.mutation(n, "messages:send", {"channel": "p", "body": f"m{n}"})
        opts = {"numItems": 2, "cursor": None, "id": 1}
        await a.add(0, "messages:page", {"channel": "p", "paginationOpts": opts})
        await a.transition()
        page = a.results[0]
        assert [m["body"] for m in page["page"]] == ["m4", "m3"] and page["isDone"] is False
        journal = a.journals[0]
        assert isinstance(journal, str) and journal == page["continueCursor"]
        await a.mutation(10, "messages:send", {"channel": "p", "body": "newest"})
        assert [m["body"] for m in a.results[0]["page"]] == ["newest", "m4", "m3"], (
            "the first page grows instead of pushing m3 onto the next page")
        await a.add(1, "messages:page", {"channel": "p", "paginationOpts": {
            "numItems": 10, "cursor": page["continueCursor"], "id": 1}})
        await a.transition()
        assert [m["body"] for m in a.results[1]["page"]] == ["m2", "m1", "m0"]
        assert a.results[1]["isDone"] is True
        b = await SyncClient.connect(http, served.url)
        await b.add(0, "messages:page", {"channel": "p", "paginationOpts": opts},
                    journal=journal)
        await b.transition()
        assert b.results[0] == a.results[0], "a journal pins the page after a reconnect"
        await b.add(1, "messages:page", {"channel": "q", "paginationOpts": opts},
                    journal=journal)
        await b.transition()
        assert b.failures[1]["errorMessage"].startswith("InvalidCursor")

    run(body)


def test_http_api_query_mutation_action_function_and_consistent_reads(served: Any) -> None:
    async def body(http: Any) -> None:
        url = served.url

        async def call(endpoint: str, payload: dict, headers: dict | None = None
                       ) -> tuple[int, Any]:
            async with http.post(f"{url}/api/{endpoint}", json=payload,
                                 headers=headers or {}) as reply:
                return reply.status, await reply.json(content_type=None)

        status, reply = await call("mutation", {"path": "messages:send", "format":
                                                "convex_encoded_json",
                                                "args": [{"channel": "h", "body": "one"}]})
        assert status == 200 and reply["status"] == "success" and reply["logLines"] == []
        status, reply = await call("query", {"path": "messages:count",
                                             "args": [{"channel": "h"}]})
        assert decode(reply["value"]) == ("int", 1)
        status, reply = await call("function", {"path": "values:echo",
                                                "args": {"i": integer(3)}})
        assert status == 200 and decode(reply["value"]) == {"i": ("int", 3)}
        status, reply = await call("mutation", {"path": "messages:fail",
                                                "args": [{"code": "H"}]})
        assert status == 560 and reply["status"] == "error"
        assert plain(decode(reply["errorData"])) == {"code": "H", "n": 7}
        status, reply = await call("query", {"path": "nope:x", "args": [{}]})
        assert status == 560 and "Could not find public function" in reply["errorMessage"]
        status, ts = await call("query_ts", {})
        assert status == 200 and u64(ts["ts"]) > 0
        await call("mutation", {"path": "messages:send", "args": [{"channel": "h",
                                                                   "body": "two"}]})
        status, old = await call("query_at_ts", {"path": "messages:count",
                                                 "args": [{"channel": "h"}], "ts": ts["ts"]})
        assert status == 200 and decode(old["value"]) == ("int", 1)
        status, new = await call("query", {"path": "messages:count",
                                           "args": [{"channel": "h"}]})
        assert decode(new["value"]) == ("int", 2)
        async with http.post(f"{url}/api/query", json={"path": "messages:whoami",
                                                       "args": [{}]},
                             headers={"Authorization": "Bearer nonsense"}) as reply:
            assert reply.status == 401
            assert (await reply.json())["code"] == "Unauthenticated"
        async with http.options(f"{url}/api/query", headers={
                "Origin": "http://localhost:5173",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,convex-client"}) as reply:
            assert reply.status == 204
            assert reply.headers["Access-Control-Allow-Origin"] == "*"
            assert "convex-client" in reply.headers["Access-Control-Allow-Headers"]

    run(body)


def test_allowed_origins_limit_browsers(app_schema: Any) -> None:
    db = Database(app_schema)
    server = livedb.serve(db, sys_path_app, port=0, allowed_origins=["http://app.local"])

    async def body(http: Any) -> None:
        async with http.post(f"{server.url}/api/query", json={"path": "values",
                                                              "args": [{}]},
                             headers={"Origin": "http://evil.example"}) as reply:
            assert "Access-Control-Allow-Origin" not in reply.headers
        async with http.post(f"{server.url}/api/query", json={"path": "values",
                                                              "args": [{}]},
                             headers={"Origin": "http://app.local"}) as reply:
            assert reply.headers["Access-Control-Allow-Origin"] == "http://app.local"
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(server.url.replace("http", "ws") + "/api/1.48.0/sync",
                                  headers={"Origin": "http://evil.example"})

    try:
        run(body)
    finally:
        server.close()
        db.close()


def test_serve_errors_are_clear(app_schema: Any, tmp_path: Path) -> None:
    db = Database(app_schema)
    try:
        with pytest.raises(LiveDBError, match="cannot import"):
            livedb.serve(db, "no_such_package_here", port=0)
        with pytest.raises(LiveDBError, match="not a directory"):
            livedb.serve(db, str(tmp_path / "missing" / "app.py"), port=0)
        with pytest.raises(ValueError, match="port"):
            livedb.serve(db, sys_path_app, port=70000)
        with livedb.serve(db, sys_path_app, port=0) as server:
            with pytest.raises(LiveDBError, match="cannot listen"):
                livedb.serve(db, sys_path_app, port=server.port)
    finally:
        db.close()


def test_query_ts_snapshots_are_released_when_the_server_closes(app_schema: Any) -> None:
    db = Database(app_schema)
    baseline = db.stats()["snapshots"]
    server = livedb.serve(db, sys_path_app, port=0)

    async def body(http: Any) -> None:
        for _ in range(3):
            async with http.post(f"{server.url}/api/query_ts") as reply:
                assert reply.status == 200
            async with http.post(f"{server.url}/api/mutation", json={
                    "path": "counter:increment", "args": [{"name": "pins"}]}) as reply:
                assert reply.status == 200

    try:
        run(body)
        assert db.stats()["snapshots"] == baseline + 3
    finally:
        server.close()
    assert db.stats()["snapshots"] == baseline
    db.close()
