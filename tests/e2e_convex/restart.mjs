// A server restart in the middle of a session, driven by test_serve_e2e.py over stdin and
// stdout. The clients connect through a TCP proxy the test controls: it swallows the
// server's answer to a mutation, the server is killed (-9) after committing it and
// started again on the same database file, and the client re-sends the mutation on
// reconnect. It must resolve with its original result, be applied once, and the live
// queries of both clients must re-sync.
// Usage: node restart.mjs PROXY_URL   (prints "ready", "sent"; reads "go", "restarted")
import { ConvexClient } from "convex/browser";
import { anyApi as api } from "convex/server";
import { createInterface } from "node:readline";
import { assert, recordingLogger, runTests, until, watch } from "./lib.mjs";

const url = process.argv[2];
const lines = createInterface({ input: process.stdin });
const received = [];
lines.on("line", (line) => received.push(line.trim()));
const expect = (line) => until(() => received.includes(line), `"${line}" from the test`, 60000);
const name = `restart-${process.pid}`;

const tests = [
  ["a mutation whose answer was lost is re-sent after a restart and applied once", async () => {
    const a = new ConvexClient(url, { logger: recordingLogger("a") });
    const b = new ConvexClient(url, { logger: recordingLogger("b") });
    const wa = watch(a, api.counter.get, { name });
    const wb = watch(b, api.counter.get, { name });
    await wa.until((v) => v === 0n, "a's first result");
    await wb.until((v) => v === 0n, "b's first result");
    console.log("ready");
    await expect("go");
    let resolved;
    const pending = a.mutation(api.counter.increment, { name }).then((v) => { resolved = v; });
    await until(() => a.connectionState().inflightMutations === 1, "the mutation in flight");
    console.log("sent");
    await expect("restarted");
    await pending;
    assert.equal(resolved, 1n, "the original result, replayed");
    await wa.until((v) => v === 1n, "a to re-sync");
    await wb.until((v) => v === 1n, "b to re-sync");
    assert.equal(await a.mutation(api.counter.increment, { name }), 2n);
    await wb.until((v) => v === 2n, "b to see the next mutation live");
    assert.ok(!wa.seen.includes(3n) && !wb.seen.includes(3n), "never applied twice");
    assert.ok(a.connectionState().connectionCount >= 2, "a reconnected");
    await a.close();
    await b.close();
  }],
];

const failed = await runTests(tests);
lines.close();
process.exit(failed ? 1 : 0);
