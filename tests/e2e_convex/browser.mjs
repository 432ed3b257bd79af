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
  const context = await browser.newContext({ viewport: { width: 640, height: 620 } });
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

async function say(page, text) {
  await page.fill("input[name=message]", text);
  await page.press("input[name=message]", "Enter");
}

const messages = (page) => page.getByTestId("messages").locator("li span").allTextContents();

const tests = [
  ["a message typed in one page appears in the other", async () => {
    const channel = `browser-${process.pid}`;
    const ada = await open(channel);
    const bob = await open(channel);
    await signUp(ada, `ada-${process.pid}@example.com`);
    await signUp(bob, `bob-${process.pid}@example.com`);
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
    await ada.screenshot({ path: screenshot });
  }],

  ["usePaginatedQuery loads older messages", async () => {
    const channel = `history-${process.pid}`;
    for (let i = 1; i <= 11; i++) {
      const reply = await fetch(`${convexUrl}/api/mutation`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ path: "messages:send", args: [{ channel, body: `note ${i}` }] }),
      });
      assert.equal(reply.status, 200);
    }
    const page = await open(channel);
    await signUp(page, `eve-${process.pid}@example.com`);
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
