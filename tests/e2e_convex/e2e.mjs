// The unmodified `convex` npm client against `python -m livedb serve tests/e2e_convex/app`.
// Usage: node e2e.mjs http://127.0.0.1:PORT  (prints "N passed, M failed"; exit 1 on failure)
import { ConvexClient, ConvexHttpClient } from "convex/browser";
import { anyApi as api } from "convex/server";
import { ConvexError } from "convex/values";
import { assert, recordingLogger, runTests, until, watch } from "./lib.mjs";

const url = process.argv[2];
if (!url) {
  console.error("usage: node e2e.mjs http://127.0.0.1:PORT");
  process.exit(2);
}
const clients = [];
function client(name = "client") {
  const logger = recordingLogger(name);
  const c = new ConvexClient(url, { logger });
  c.logger = logger;
  clients.push(c);
  return c;
}
let channels = 0;
const channel = () => `e2e-${process.pid}-${++channels}`;

async function signUp(email) {
  const reply = await fetch(`${url}/api/auth/sign_up`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password: "correct horse battery" }),
  });
  assert.equal(reply.status, 200, await reply.clone().text());
  return await reply.json();
}

async function freshJwt(sessionToken) {
  const reply = await fetch(`${url}/api/auth/token`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: sessionToken }),
  });
  assert.equal(reply.status, 200);
  return (await reply.json()).jwt;
}

const tests = [
  ["live updates reach a second client; a resolved mutation is already visible", async () => {
    const a = client("a");
    const b = client("b");
    const ch = channel();
    const wa = watch(a, api.messages.list, { channel: ch });
    const wb = watch(b, api.messages.list, { channel: ch });
    await wa.until((v) => v.length === 0, "a's first result");
    await wb.until((v) => v.length === 0, "b's first result");
    for (let i = 0; i < 5; i++) {
      const id = await a.mutation(api.messages.send, { channel: ch, body: `hello ${i}` });
      assert.equal(typeof id, "string");
      const local = a.client.localQueryResult("messages:list", { channel: ch });
      assert.equal(local.length, i + 1, "read-your-writes when the mutation resolves");
      assert.equal(local[i]._id, id);
      assert.equal(typeof local[i]._creationTime, "number");
      assert.ok(Math.abs(local[i]._creationTime - Date.now()) < 60_000, "_creationTime in ms");
    }
    const seen = await wb.until((v) => v.length === 5, "b to see all 5");
    assert.deepEqual(seen.map((m) => m.body), [0, 1, 2, 3, 4].map((i) => `hello ${i}`));
    // b saw every state in order, never one going backwards
    const lengths = wb.seen.map((v) => v.length);
    assert.deepEqual(lengths, [...lengths].sort((x, y) => x - y));
    assert.deepEqual(a.logger.errors, []);
    assert.deepEqual(b.logger.errors, []);
  }],

  ["ConvexError carries the AppError's data; other failures are Errors", async () => {
    const a = client();
    await assert.rejects(a.mutation(api.messages.fail, { code: "E1" }), (e) => {
      assert.ok(e instanceof ConvexError, `got ${e}`);
      assert.deepEqual(e.data, { code: "E1", n: 7n });
      return true;
    });
    await assert.rejects(a.mutation(api.messages.send, { channel: "x", body: "  " }),
      (e) => e instanceof ConvexError && e.data.code === "EMPTY");
    await assert.rejects(a.mutation(api.messages.send, { channel: 5, body: "x" }),
      (e) => !(e instanceof ConvexError) && /expected string/.test(e.message));
    await assert.rejects(a.query(api.messages.nope, {}),
      (e) => /Could not find public function for 'messages:nope'/.test(e.message));
  }],

  ["bigint, bytes, -0, NaN and Infinity round trip", async () => {
    const a = client();
    const bytes = new Uint8Array([0, 1, 2, 254, 255]).buffer;
    const sent = { i: 5n, max: 2n ** 63n - 1n, min: -(2n ** 63n), b: bytes, z: -0,
      nan: NaN, inf: -Infinity, f: 1.5, list: [1n, "two", null, true] };
    const echoed = await a.action(api.values.echo, sent);
    assert.equal(echoed.i, 5n);
    assert.equal(echoed.max, 2n ** 63n - 1n);
    assert.equal(echoed.min, -(2n ** 63n));
    assert.deepEqual(new Uint8Array(echoed.b), new Uint8Array(bytes));
    assert.ok(Object.is(echoed.z, -0));
    assert.ok(Number.isNaN(echoed.nan));
    assert.equal(echoed.inf, -Infinity);
    assert.deepEqual(echoed.list, [1n, "two", null, true]);
    const stored = await a.mutation(api.values.store, { n: 42n, blob: bytes });
    assert.equal(stored.n, 42n);
    assert.deepEqual(new Uint8Array(stored.blob), new Uint8Array(bytes));
    const big = await a.query(api.values.big, {});
    assert.equal(big.len, 4n, "a Python int is a bigint");
    assert.ok(Object.is(big.neg_zero, -0));
  }],

  ["one-shot query, the default export, and a result the client cannot accept", async () => {
    const a = client();
    const ch = channel();
    assert.equal(await a.query(api.messages.count, { channel: ch }), 0n);
    await a.mutation(api.messages.send, { channel: ch, body: "x" });
    assert.equal(await a.query(api.messages.count, { channel: ch }), 1n);
    assert.equal(await a.query(api.values.default, {}), "the default export");
    await assert.rejects(a.query(api.values.bad_key, {}), /café/);
    assert.deepEqual(a.logger.errors, [], "a bad field name is a query error, not a crash");
  }],

  ["optimistic update shows at once and is replaced by the committed result", async () => {
    const a = client();
    const ch = channel();
    const w = watch(a, api.messages.list, { channel: ch });
    await w.until((v) => v.length === 0);
    const pending = a.mutation(api.messages.send, { channel: ch, body: "optimistic" }, {
      optimisticUpdate: (store, args) => {
        const current = store.getQuery(api.messages.list, { channel: args.channel });
        if (current !== undefined) {
          store.setQuery(api.messages.list, { channel: args.channel },
            [...current, { _id: "temp", _creationTime: Date.now(), channel: args.channel,
              author: "me", body: args.body }]);
        }
      },
    });
    await w.until((v) => v.length === 1 && v[0]._id === "temp", "the optimistic message");
    const id = await pending;
    const final = await w.until((v) => v.length === 1 && v[0]._id === id, "the real one");
    assert.equal(final[0].author, "anonymous");
    assert.ok(!w.seen.some((v) => v.length > 1), "never shown twice");
  }],

  ["setAuth with a JWT for a session: confirmed, refreshed, used by functions", async () => {
    const session = await signUp(`ada-${process.pid}@example.com`);
    const a = client("auth");
    const calls = [];
    const changes = [];
    a.setAuth(async ({ forceRefreshToken }) => {
      calls.push(forceRefreshToken);
      return forceRefreshToken ? await freshJwt(session.token) : session.jwt;
    }, (isAuthenticated) => changes.push(isAuthenticated));
    await until(() => changes.includes(true), "auth to be confirmed");
    await until(() => calls.includes(true), "the client to fetch a fresh token");
    const who = watch(a, api.messages.whoami, {});
    await who.until((v) => v === `ada-${process.pid}@example.com`, "whoami");
    const ch = channel();
    await a.mutation(api.messages.send, { channel: ch, body: "signed" });
    const [message] = await a.query(api.messages.list, { channel: ch });
    assert.equal(message.author, `ada-${process.pid}@example.com`);
    await until(() => a.logger.errors.length === 0 && calls.length >= 2, "settled auth");
    assert.deepEqual(a.logger.errors, [], "the token decodes as a JWT with iat and exp");
    const jwt = a.getAuth();
    assert.ok(jwt.decoded.exp > jwt.decoded.iat + 60);
  }],

  ["a rejected token: AuthError, onChange(false), queries go on unauthenticated", async () => {
    const a = client("rejected");
    const changes = [];
    a.setAuth(async () => "not.a-valid.token", (ok) => changes.push(ok));
    await until(() => changes.includes(false), "auth to be rejected");
    const who = watch(a, api.messages.whoami, {});
    await who.until((v) => v === null, "whoami as nobody");
  }],

  ["ConvexHttpClient: query, mutation, action, consistentQuery, auth", async () => {
    const http = new ConvexHttpClient(url, { logger: false });
    const ch = channel();
    const id = await http.mutation(api.messages.send, { channel: ch, body: "over http" });
    const list = await http.query(api.messages.list, { channel: ch });
    assert.deepEqual(list.map((m) => m._id), [id]);
    assert.equal((await http.action(api.values.echo, { n: 9n })).n, 9n);
    assert.equal(await http.consistentQuery(api.messages.count, { channel: ch }), 1n);
    await assert.rejects(http.mutation(api.messages.fail, { code: "H1" }),
      (e) => e instanceof ConvexError && e.data.code === "H1");
    assert.equal(await http.query(api.messages.whoami, {}), null);
    const session = await signUp(`bob-${process.pid}@example.com`);
    http.setAuth(session.jwt);
    assert.equal(await http.query(api.messages.whoami, {}), `bob-${process.pid}@example.com`);
    http.setAuth("garbage");
    await assert.rejects(http.query(api.messages.whoami, {}), /Unauthenticated/);
  }],

  ["paginated query loads more while documents are inserted", async () => {
    const writer = client("writer");
    const reader = client("reader");
    const ch = channel();
    for (let i = 0; i < 7; i++) {
      await writer.mutation(api.messages.send, { channel: ch, body: `old ${i}` });
    }
    let latest;
    reader.onPaginatedUpdate_experimental(api.messages.page, { channel: ch },
      { initialNumItems: 3 }, (r) => { latest = r; });
    await until(() => latest && latest.status === "CanLoadMore" && latest.results.length === 3,
      "the first page");
    assert.deepEqual(latest.results.map((m) => m.body), ["old 6", "old 5", "old 4"]);
    let inserted = 0;
    const inserting = (async () => {
      for (; inserted < 6; inserted++) {
        await writer.mutation(api.messages.send, { channel: ch, body: `new ${inserted}` });
      }
    })();
    while (latest.status !== "Exhausted") {
      if (latest.status === "CanLoadMore") latest.loadMore(2);
      await new Promise((r) => setTimeout(r, 5));
    }
    await inserting;
    const all = await until(() => latest.results.length === 13 && latest.results, "all 13");
    const bodies = all.map((m) => m.body);
    const expected = [5, 4, 3, 2, 1, 0].map((i) => `new ${i}`)
      .concat([6, 5, 4, 3, 2, 1, 0].map((i) => `old ${i}`));
    assert.deepEqual(bodies, expected, "every document once, newest first, no gaps");
    assert.deepEqual(reader.logger.errors, []);
  }],
];

const failed = await runTests(tests);
await Promise.all(clients.map((c) => c.close()));
process.exit(failed ? 1 : 0);
