// Helpers shared by the end-to-end scripts: watching a query, waiting for a condition,
// a logger that records what the Convex client complains about, a tiny test runner.
import assert from "node:assert/strict";

export function recordingLogger(name) {
  const errors = [];
  const warnings = [];
  return {
    errors,
    warnings,
    logVerbose() {},
    log() {},
    warn(...args) {
      warnings.push(args.join(" "));
    },
    error(...args) {
      errors.push(args.join(" "));
      if (process.env.E2E_VERBOSE) console.error(`[${name}]`, ...args);
    },
  };
}

export function until(check, what, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = () => {
      let value;
      try {
        value = check();
      } catch (e) {
        reject(e);
        return;
      }
      if (value) {
        resolve(value);
      } else if (Date.now() - started > timeoutMs) {
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      } else {
        setTimeout(poll, 5);
      }
    };
    poll();
  });
}

// Every result a subscription delivers, in order; `until(pred)` waits for one.
export function watch(client, query, args) {
  const seen = [];
  const errors = [];
  const unsubscribe = client.onUpdate(query, args, (value) => seen.push(value),
    (error) => errors.push(error));
  return {
    seen,
    errors,
    unsubscribe,
    latest: () => seen[seen.length - 1],
    until: (pred, what = "a matching result") =>
      until(() => (seen.length > 0 && pred(seen[seen.length - 1])
        ? { value: seen[seen.length - 1] } : null), what).then((found) => found.value),
  };
}

export async function runTests(tests) {
  let passed = 0;
  let failed = 0;
  const only = process.env.E2E_ONLY;
  for (const [name, fn] of tests) {
    if (only && !name.includes(only)) continue;
    const started = Date.now();
    try {
      await fn();
      passed += 1;
      console.log(`ok ${name} (${Date.now() - started} ms)`);
    } catch (e) {
      failed += 1;
      console.log(`FAILED ${name}: ${e && e.stack ? e.stack : e}`);
    }
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed;
}

export { assert };
