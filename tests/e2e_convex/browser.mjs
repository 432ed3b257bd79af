// Two headless Chromium pages run the React chat (ConvexReactClient) against livedb serve:
// each signs up, one types a message, the other sees it; then "Load older" pages back.
// Usage: node browser.mjs SITE_URL CONVEX_URL SCREENSHOT.png [CHROMIUM]
import { chromium } from "playwright-core";
import { assert, runTests } from "./lib.mjs";

const [site, convexUrl, screenshot, executable = "/usr/bin/chromium"] = process.argv.slice(2);
if (!screenshot) {
  console.error("usage: node browser.mjs SITE_URL CONVEX_URL SCREENSHOT.png [CHROMIUM]");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: executable,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const pageErrors = [];

async function open(channel) {
  const context = await browser.newContext({ viewport: { width: 620, height: 420 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(m.text());
  });
  await page.goto(`${site}/index.html?convex=${encodeURIComponent(convexUrl)}` +
    `&channel=${channel}`);
  return page;
}

async function signUp(page, email) {
  await page.fill("input[name=email]", email);
  await page.fill("input[name=password]", "correct horse battery");
  await page.click("button[name=signup]");
  await page.getByTestId("me").filter({ hasText: email }).waitFor({ timeout: 15000 });
}

// Both pages side by side in one picture (for the docs).
async function sideBySide(pages, captions, path) {
  const shots = [];
  for (const page of pages) shots.push((await page.screenshot()).toString("base64"));
  const context = await browser.newContext({ viewport: { width: 1290, height: 466 } });
  const board = await context.newPage();
  await board.setContent(`<body style="margin:0;background:#dfe3e8;font:14px system-ui">
    <div style="display:flex;gap:20px;padding:10px 10px 0">${shots.map((shot, i) => `
      <figure style="margin:0"><img style="border-radius:8px;display:block"
        src="data:image/png;base64,${shot}"><figcaption style="padding:6px 2px;color:#444">
        ${captions[i]}</figcaption></figure>`).join("")}</div></body>`);
  await board.screenshot({ path });
  await context.close();
}

async function say(page, text) {
  await page.fill("input[name=message]", text);
  await page.press("input[name=message]", "Enter");
}

const messages = (page) => page.getByTestId("messages").locator("li span").allTextContents();

const tests = [
  ["a message typed in one page appears in the other", async () => {
    const channel = "general";
    const ada = await open(channel);
    const bob = await open(channel);
    await signUp(ada, "ada@example.com");
    await signUp(bob, "bob@example.com");
    await say(ada, "Hello from a Python process!");
    await bob.getByTestId("messages").getByText("Hello from a Python process!")
      .waitFor({ timeout: 10000 });
    await say(bob, "Live in my browser, no Convex deployment needed.");
    await ada.getByTestId("messages").getByText("no Convex deployment needed")
      .waitFor({ timeout: 10000 });
    await say(ada, "useQuery, useMutation and usePaginatedQuery all work.");
    await bob.getByTestId("messages").getByText("all work").waitFor({ timeout: 10000 });
    assert.deepEqual(await messages(ada), await messages(bob));
    await ada.getByTestId("count").filter({ hasText: "3 messages" }).waitFor();
    await ada.waitForFunction(() => !document.querySelector(".messages li.pending"));
    await bob.waitForFunction(() => !document.querySelector(".messages li.pending"));
    await sideBySide([ada, bob], ["Ada's browser", "Bob's browser"], screenshot);
  }],

  ["usePaginatedQuery loads older messages", async () => {
    const channel = "history";
    for (let i = 1; i <= 11; i++) {
      const reply = await fetch(`${convexUrl}/api/mutation`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ path: "messages:send", args: [{ channel, body: `note ${i}` }] }),
      });
      assert.equal(reply.status, 200);
    }
    const page = await open(channel);
    await signUp(page, "eve@example.com");
    await page.getByTestId("count").filter({ hasText: "11 messages" }).waitFor();
    await page.getByTestId("count").filter({ hasText: "8 shown" }).waitFor();
    assert.equal((await messages(page))[0], "note 4");
    await page.click("button[name=more]");
    await page.getByTestId("count").filter({ hasText: "11 shown" }).waitFor();
    assert.deepEqual(await messages(page), Array.from({ length: 11 }, (_, i) => `note ${i + 1}`));
    await say(page, "note 12");
    await page.getByTestId("count").filter({ hasText: "12 shown" }).waitFor();
    assert.equal((await messages(page))[11], "note 12");
  }],

  ["no errors in the pages", async () => {
    assert.deepEqual(pageErrors, []);
  }],
];

const failed = await runTests(tests);
await browser.close();
process.exit(failed ? 1 : 0);
