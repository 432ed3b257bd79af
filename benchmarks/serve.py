"""`livedb serve` latency over loopback: the sync protocol as the convex client sees it.

`python -m livedb serve benchmarks.serve` runs in a subprocess (this module is also the
served package: `serve:tick`, `serve:latest`); the clients are raw protocol clients on an
asyncio loop in this process. Two figures, each with 1 and with 100 connected clients
that all watch the query a mutation changes:

- mutation round trip: from sending `Mutation` to the moment the client would resolve
  its promise (the MutationResponse, then a Transition whose ts covers the commit);
- commit to update: from the mutation handler's clock reading (server side, just before
  its commit) to a watching client receiving the Transition that shows it (every
  connected client's delivery counts).

Target: p99 under 10 ms with 100 clients. Latencies are reported as p50/p99 in the
detail column; the rate column is 1 / p50.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

from livedb import mutation, query

from .harness import Config, Row, workload

ROOT = Path(__file__).resolve().parent.parent
TARGET_P99_MS = 10.0


@query
def latest(ctx: Any) -> dict | None:
    return ctx.db.query("ticks").order("desc").first()


@mutation
def tick(ctx: Any, n: float) -> float:
    ctx.db.insert("ticks", {"n": n, "t": time.time_ns()})
    return n


def _u64(text: str) -> int:
    return int.from_bytes(base64.b64decode(text), "little")


def _int64(value: dict) -> int:
    return int.from_bytes(base64.b64decode(value["$integer"]), "little", signed=True)


class _Client:
    """A minimal protocol client watching `serve:latest`, timing what it receives."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ts = 0
        self.responses: dict[int, int] = {}
        self.delays: list[float] = []
        self.latest_n = -1.0
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, http: Any, url: str) -> _Client:
        ws = await http.ws_connect(url.replace("http://", "ws://") + "/api/1.48.0/sync")
        await ws.send_str(msgspec.json.encode({
            "type": "Connect", "sessionId": str(uuid.uuid4()), "connectionCount": 0,
            "lastCloseReason": None, "clientTs": 0}).decode())
        await ws.send_str(msgspec.json.encode({
            "type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1,
            "modifications": [{"type": "Add", "queryId": 0, "udfPath": "serve:latest",
                               "args": [{}]}]}).decode())
        return cls(ws)

    async def _read(self) -> None:
        decode = msgspec.json.decode
        async for frame in self.ws:
            message = decode(frame.data)
            kind = message["type"]
            if kind == "Transition":
                self.ts = _u64(message["endVersion"]["ts"])
                for change in message["modifications"]:
                    value = change.get("value")
                    if value:
                        self.delays.append(time.time_ns() - _int64(value["t"]))
                        self.latest_n = value["n"]
            elif kind == "MutationResponse":
                self.responses[message["requestId"]] = _u64(message["ts"])
            self.changed.set()

    async def wait(self, check: Any) -> None:
        while not check():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 10)

    async def mutate(self, request_id: int) -> float:
        """One mutation; seconds until the client would resolve its promise."""
        started = time.perf_counter()
        await self.ws.send_str(msgspec.json.encode({
            "type": "Mutation", "requestId": request_id, "udfPath": "serve:tick",
            "args": [{"n": float(request_id)}]}).decode())
        await self.wait(lambda: request_id in self.responses
                        and self.ts >= self.responses[request_id])
        return time.perf_counter() - started

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(url: str, clients: int, mutations: int) -> tuple[list[float], list[float]]:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        writer = await _Client.connect(http, url)
        watchers = [await _Client.connect(http, url) for _ in range(clients - 1)]
        everyone = [writer, *watchers]
        for client in everyone:
            await client.wait(lambda c=client: c.ts > 0)
        for n in range(20):
            await writer.mutate(n)
        for client in everyone:
            await client.wait(lambda c=client: c.latest_n == 19.0)
            client.delays.clear()
        trips = []
        for n in range(20, 20 + mutations):
            trips.append(await writer.mutate(n))
            last = float(n)
            for client in watchers:
                await client.wait(lambda c=client, last=last: c.latest_n == last)
        delays = [d / 1e9 for client in everyone for d in client.delays]
        for client in everyone:
            await client.close()
        return trips, delays


def _start_server() -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen([sys.executable, "-m", "livedb", "serve", "benchmarks.serve",
                             "--port", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "livedb serve:" not in line:
        proc.kill()
        raise RuntimeError(f"livedb serve did not start: {line}{proc.communicate()[0]}")
    return proc, line.rsplit(" ", 1)[1].strip()


def _row(key: str, title: str, samples: list[float], judge: bool) -> Row:
    """A latency row: livedb's p99 against the 10 ms target (the ratio is p99 / target)."""
    p50, p99 = _percentile(samples, 0.5), _percentile(samples, 0.99)
    return Row(key, title, {"livedb": p99, "p99 target": TARGET_P99_MS / 1e3},
               baseline="p99 target", target=1.0 if judge else None,
               detail=f"p99 (the livedb column) {p99 * 1e3:.2f} ms, p50 {p50 * 1e3:.2f} ms "
                      f"over {len(samples):,} samples",
               extra={"p50": p50, "p99": p99})


@workload("serve", "serve latency")
def serve_latency(config: Config) -> list[Row]:
    """Mutation round trips and commit-to-update latency with 1 and 100 clients."""
    mutations = 30 if config.smoke else 300
    crowd = 10 if config.smoke else 100
    proc, url = _start_server()
    rows = []
    try:
        for clients in (1, crowd):
            trips, delays = asyncio.run(_measure(url, clients, mutations))
            judge = clients == 100
            who = f"{clients} client{'s' if clients > 1 else ''}"
            rows.append(_row(f"serve-trip-{clients}", f"serve: mutation round trip, {who}",
                             trips, judge))
            rows.append(_row(f"serve-update-{clients}", f"serve: commit to update, {who}",
                             delays, judge))
    finally:
        proc.terminate()
        proc.wait(30)
    return rows
