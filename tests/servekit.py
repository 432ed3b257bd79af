"""A strict raw client of Convex's sync protocol for the `livedb serve` tests.

It checks every frame the server sends the way the `convex` npm client would trip over
it: message shapes, base64 u64 timestamps, the version chain (each Transition starts
exactly where the previous one ended) and that every value is one `jsonToConvex`
accepts. It decodes values on its own (not with livedb's code), so the tests check the
encoding rather than restate it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
E2E = ROOT / "tests" / "e2e_convex"
APP = E2E / "app"
REQUIRE_E2E = os.environ.get("LIVEDB_REQUIRE_ALL") == "1"
ZERO_TS = base64.b64encode(bytes(8)).decode()


def missing(reason: str) -> None:
    """Skip (on a laptop without the tool) or fail (in CI, LIVEDB_REQUIRE_ALL=1)."""
    if REQUIRE_E2E:
        pytest.fail(f"{reason} (LIVEDB_REQUIRE_ALL=1: .ci/run must provide it)")
    pytest.skip(reason)


def u64(text: Any) -> int:
    """A protocol u64: standard padded base64 of exactly 8 little-endian bytes."""
    assert isinstance(text, str), f"a u64 is a base64 string, got {text!r}"
    raw = base64.b64decode(text, validate=True)
    assert len(raw) == 8, f"a u64 is 8 bytes, got {len(raw)} in {text!r}"
    assert base64.b64encode(raw).decode() == text, f"non-canonical base64 {text!r}"
    return int.from_bytes(raw, "little")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def integer(n: int) -> dict[str, str]:
    """A JavaScript bigint as the client sends it."""
    return {"$integer": b64(n.to_bytes(8, "little", signed=True))}


def decode(value: Any, path: str = "value") -> Any:
    """A value as `jsonToConvex` reads it; AssertionError where the client would throw."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [decode(item, f"{path}[{i}]") for i, item in enumerate(value)]
    assert isinstance(value, dict), f"{path}: unexpected {value!r}"
    if len(value) == 1:
        (key, payload), = value.items()
        if key == "$integer":
            raw = base64.b64decode(payload, validate=True)
            assert len(raw) == 8, path
            return ("int", int.from_bytes(raw, "little", signed=True))
        if key == "$float":
            raw = base64.b64decode(payload, validate=True)
            assert len(raw) == 8, path
            return ("float", struct.unpack("<d", raw)[0])
        if key == "$bytes":
            return base64.b64decode(payload, validate=True)
    out = {}
    for key, item in value.items():
        assert len(key) <= 1024 and not key.startswith("$"), f"{path}: bad key {key!r}"
        assert all(32 <= ord(c) < 127 for c in key), f"{path}: non-ASCII key {key!r}"
        out[key] = decode(item, f"{path}.{key}")
    return out


def plain(value: Any) -> Any:
    """`decode`'s output with int64s as ints and special floats as floats."""
    if isinstance(value, tuple):
        return value[1]
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


_VERSION_KEYS = {"querySet", "identity", "ts"}


def _check_version(version: Any) -> tuple[int, int, int]:
    assert isinstance(version, dict) and set(version) == _VERSION_KEYS, version
    assert type(version["querySet"]) is int and type(version["identity"]) is int, version
    return version["querySet"], version["identity"], u64(version["ts"])


def check_message(message: Any) -> None:
    """Assert that `message` has exactly the shape the client parses."""
    assert isinstance(message, dict), message
    kind = message.get("type")
    keys = set(message)
    if kind == "Transition":
        assert keys <= {"type", "startVersion", "endVersion", "modifications",
                        "clientClockSkew", "serverTs"}, keys
        _check_version(message["startVersion"])
        _check_version(message["endVersion"])
        assert isinstance(message["modifications"], list)
        for change in message["modifications"]:
            assert type(change.get("queryId")) is int, change
            if change["type"] == "QueryUpdated":
                assert set(change) == {"type", "queryId", "value", "logLines", "journal"}, change
                decode(change["value"])
            elif change["type"] == "QueryFailed":
                assert set(change) - {"errorData"} == {"type", "queryId", "errorMessage",
                                                       "logLines", "journal"}, change
                assert isinstance(change["errorMessage"], str)
                if "errorData" in change:
                    decode(change["errorData"])
            else:
                assert change["type"] == "QueryRemoved" and set(change) == {
                    "type", "queryId"}, change
            if "logLines" in change:
                assert change["logLines"] == []
            if "journal" in change:
                assert change["journal"] is None or isinstance(change["journal"], str)
    elif kind in ("MutationResponse", "ActionResponse"):
        assert type(message["requestId"]) is int and message["logLines"] == []
        if message["success"] is True:
            expected = {"type", "requestId", "success", "result", "logLines"}
            if kind == "MutationResponse":
                expected.add("ts")
                u64(message["ts"])
            assert keys == expected, keys
            decode(message["result"])
        else:
            assert message["success"] is False
            assert keys - {"errorData"} == {"type", "requestId", "success", "result",
                                            "logLines"}, keys
            assert isinstance(message["result"], str)
            if "errorData" in message:
                decode(message["errorData"])
    elif kind == "AuthError":
        assert keys == {"type", "error", "baseVersion", "authUpdateAttempted"}, keys
        assert isinstance(message["error"], str) and type(message["baseVersion"]) is int
        assert type(message["authUpdateAttempted"]) is bool
    elif kind == "Ping":
        assert keys == {"type"}
    else:
        raise AssertionError(f"the server sent {kind!r}: {message}")


class SyncClient:
    """One socket of a strict protocol client: tracks the version chain and results."""

    def __init__(self, ws: Any, session_id: str) -> None:
        self.ws = ws
        self.session_id = session_id
        self.version = (0, 0, 0)
        """(querySet, identity, ts) of the last Transition's end."""
        self.results: dict[int, Any] = {}
        self.failures: dict[int, dict] = {}
        self.journals: dict[int, str | None] = {}
        self.received: list[dict] = []
        self.query_set = 0
        self.identity_version = 0

    @classmethod
    async def connect(cls, http: Any, url: str, session_id: str | None = None,
                      connection_count: int = 0) -> SyncClient:
        ws = await http.ws_connect(url.replace("http://", "ws://") + "/api/1.48.0/sync")
        client = cls(ws, session_id or str(uuid.uuid4()))
        await client.send(type="Connect", sessionId=client.session_id,
                          connectionCount=connection_count, lastCloseReason=None,
                          clientTs=0)
        return client

    async def send(self, **message: Any) -> None:
        await self.ws.send_json(message)

    async def add(self, query_id: int, path: str, args: dict | None = None,
                  journal: str | None = None) -> None:
        """Add one query (a ModifyQuerySet from the current version to the next)."""
        base = self.query_set
        self.query_set += 1
        change: dict[str, Any] = {"type": "Add", "queryId": query_id, "udfPath": path,
                                  "args": [args or {}]}
        if journal is not None:
            change["journal"] = journal
        await self.send(type="ModifyQuerySet", baseVersion=base, newVersion=self.query_set,
                        modifications=[change])

    async def remove(self, query_id: int) -> None:
        base = self.query_set
        self.query_set += 1
        await self.send(type="ModifyQuerySet", baseVersion=base, newVersion=self.query_set,
                        modifications=[{"type": "Remove", "queryId": query_id}])

    async def next(self, timeout: float = 10.0) -> dict:
        """The next message (Pings included), checked and applied."""
        frame = await asyncio.wait_for(self.ws.receive(), timeout)
        if frame.type.name != "TEXT":
            raise ConnectionError(f"the server closed or sent {frame.type.name}: "
                                  f"{frame.data!r} {frame.extra!r}")
        message = frame.json()
        check_message(message)
        self.received.append(message)
        if message["type"] == "Transition":
            start = _check_version(message["startVersion"])
            end = _check_version(message["endVersion"])
            assert start == self.version, f"Transition starts at {start}, not {self.version}"
            assert end[0] >= start[0] and end[1] >= start[1] and end[2] >= start[2], (
                start, end)
            for change in message["modifications"]:
                query_id = change["queryId"]
                if change["type"] == "QueryUpdated":
                    self.results[query_id] = plain(decode(change["value"]))
                    self.failures.pop(query_id, None)
                    self.journals[query_id] = change["journal"]
                elif change["type"] == "QueryFailed":
                    self.failures[query_id] = change
                    self.results.pop(query_id, None)
                else:
                    self.results.pop(query_id, None)
                    self.failures.pop(query_id, None)
            self.version = end
        return message

    async def until(self, predicate: Callable[[dict], bool], timeout: float = 10.0) -> dict:
        """Read messages until one satisfies `predicate`; return it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            message = await self.next(max(0.01, deadline - loop.time()))
            if predicate(message):
                return message

    async def transition(self, timeout: float = 10.0) -> dict:
        return await self.until(lambda m: m["type"] == "Transition", timeout)

    async def mutation(self, request_id: int, path: str, args: dict | None = None
                       ) -> tuple[dict, dict]:
        """Send a mutation; return its response and the Transition that resolves it (the
        first one after the response whose ts covers the commit)."""
        await self.send(type="Mutation", requestId=request_id, udfPath=path,
                        args=[args or {}])
        response = await self.until(lambda m: m["type"] == "MutationResponse"
                                    and m["requestId"] == request_id)
        if not response["success"]:
            return response, {}
        ts = u64(response["ts"])
        resolved = await self.until(lambda m: m["type"] == "Transition"
                                    and u64(m["endVersion"]["ts"]) >= ts)
        return response, resolved

    async def close(self) -> None:
        await self.ws.close()
