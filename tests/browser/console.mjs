// The browser test of the job console, driven by tests/e2e/console.rs against a real worker
// under `wrangler dev`. Usage: node tests/browser/console.mjs '<spec JSON>' where the spec is
//   { base, csv: { path, books }, enrich?: { text, books }, scan?: { photos: [path] },
//     watch: { jobId, token }, screenshot }
// It drops the CSV on the page and waits for the bar to reach 100% and the results table to
// fill; runs an enrichment and a shelf scan when asked; watches a long job created elsewhere, drops its socket
// and sees the page reconnect and resync, then cancels it; checks that tokens stayed out of
// the URL, the DOM and browser storage, that the page logged no error (CSP refusals
// included) and made no request outside the worker; and saves a screenshot.
// Every wait is bounded and waits on the page, never on time. Exit code 0 means it passed.

import { mkdirSync, readFileSync } from "node:fs";
import { basename, dirname } from "node:path";
import { launch } from "./chromium.mjs";

const WAIT_MS = 30_000;
const OVERALL_MS = 180_000;

const spec = JSON.parse(process.argv[2] ?? "{}");
const started = performance.now();
const say = (text) => console.log(`[console-test +${Math.round(performance.now() - started)} ms] ${text}`);
const overall = setTimeout(() => {
  console.error(`[console-test] FAILED: not done after ${OVERALL_MS} ms`);
  process.exit(2);
}, OVERALL_MS);
overall.unref();

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const origin = new URL(spec.base).origin;
const wsOrigin = origin.replace(/^http/, "ws");
const { browser, close, notes } = await launch();
for (const note of notes) say(note);
say(`launched ${await browser.version()}`);

const requests = []; // every URL the page asked for, sockets included
const problems = []; // console errors, page errors, CSP refusals

/** Waits until `fn(...args)` is truthy in the page; on timeout, says what was awaited. */
async function until(page, what, fn, ...args) {
  try {
    return await page.waitForFunction(fn, { timeout: WAIT_MS, polling: "mutation" }, ...args);
  } catch (err) {
    const jobs = await page
      .$$eval(".job", (cards) => cards.map((c) => `${c.dataset.pipeline}:${c.dataset.status}:${c.dataset.conn}:${c.querySelector(".progress-text").textContent}`))
      .catch(() => []);
    throw new Error(`timed out waiting for ${what} (${err.message}); jobs: ${JSON.stringify(jobs)}; problems: ${JSON.stringify(problems)}`);
  }
}

/** The selector of the card of a job. */
const cardOf = (jobId) => `.job[data-job-id="${jobId}"]`;

/** Clicks a form's submit button and returns the selector of the job card it adds. */
async function submit(page, form) {
  const before = await page.$$eval(".job", (cards) => cards.length);
  await page.click(`${form} button[type=submit]`);
  await until(page, `a new job from ${form}`, (n) => document.querySelectorAll(".job").length > n, before);
  return cardOf(await page.$eval("#jobs .job", (card) => card.dataset.jobId));
}

let failure = null;
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  page.on("request", (request) => requests.push(request.url()));
  page.on("console", (message) => {
    if (message.type() === "error" || message.type() === "warn") problems.push(`console ${message.type()}: ${message.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  const cdp = await page.createCDPSession();
  await cdp.send("Network.enable");
  cdp.on("Network.webSocketCreated", (event) => requests.push(event.url));

  // 1. The page and its policy.
  const response = await page.goto(`${origin}/`, { waitUntil: "load", timeout: WAIT_MS });
  check(response.status() === 200, `GET / answered ${response.status()}`);
  const csp = response.headers()["content-security-policy"] ?? "";
  check(csp.startsWith("default-src 'none'"), `weak or missing CSP: ${csp}`);
  await until(page, "the health line", () => document.querySelector("#health").textContent.startsWith("worker "));
  say(`page loaded: ${await page.$eval("#health", (e) => e.textContent)}`);
  const historyAtLoad = await page.evaluate(() => history.length);

  // 2. A CSV import, dropped on the drop zone.
  const csvText = readFileSync(spec.csv.path, "utf8");
  await page.evaluate(
    (name, text) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File([text], name, { type: "text/csv" }));
      const zone = document.querySelector("#csv-drop");
      zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
      zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    },
    basename(spec.csv.path),
    csvText,
  );
  await page.select("#csv-format", "goodreads");
  const csv = await submit(page, "#csv-form");
  await until(
    page,
    "the CSV job to complete at 100%",
    (sel) => {
      const card = document.querySelector(sel);
      return card?.dataset.status === "complete" && card.querySelector(".bar").getAttribute("aria-valuenow") === "100";
    },
    csv,
  );
  const shownRows = Math.min(spec.csv.books, 20);
  await until(page, `${shownRows} result rows`, (sel, n) => document.querySelectorAll(`${sel} .results-table tbody tr`).length === n, csv, shownRows);
  const csvInfo = await page.$eval(`${csv} .page-info`, (e) => e.textContent);
  check(csvInfo.includes(`of ${spec.csv.books}`), `the pager says ${csvInfo}`);
  const csvKinds = await page.$$eval(`${csv} .log-list li[data-dir="↓"]`, (lines) => lines.map((l) => l.dataset.type));
  for (const kind of ["ready_ack", "job_started", "job_complete"]) check(csvKinds.includes(kind), `the CSV log lacks ${kind}: ${csvKinds}`);
  say(`CSV import complete: ${csvInfo}; ${csvKinds.length} messages`);

  // 3. An enrichment from the text box, when the worker has providers to ask.
  if (spec.enrich) {
    await page.type("#enrich-books", spec.enrich.text);
    const enrich = await submit(page, "#enrich-form");
    await until(page, "the enrichment to complete", (sel) => document.querySelector(sel)?.dataset.status === "complete", enrich);
    await until(page, "the enrichment rows", (sel, n) => document.querySelectorAll(`${sel} .results-table tbody tr`).length === n, enrich, spec.enrich.books);
    const covers = await page.$$eval(`${enrich} a.cover`, (links) => links.map((a) => a.href));
    check(covers.every((href) => href.startsWith("https://")), `cover links ${covers}`);
    say(`enrichment complete: ${spec.enrich.books} rows, ${covers.length} cover links (not loaded)`);
  }

  // 3b. A shelf scan of the photos chosen in the file picker, when the worker has a Gemini.
  if (spec.scan) {
    const picker = await page.$("#scan-files");
    await picker.uploadFile(...spec.scan.photos);
    const scan = await submit(page, "#scan-form");
    await until(page, "the scan to complete", (sel) => document.querySelector(sel)?.dataset.status === "complete", scan);
    await until(page, "the scan's books", (sel) => document.querySelectorAll(`${sel} .results-table tbody tr`).length > 0, scan);
    const note = await page.$eval(`${scan} .results-note`, (e) => e.textContent);
    check(note.includes("detected"), `scan results note: ${note}`);
    say(`scan of ${spec.scan.photos.length} photos complete: ${note}`);
  }

  // 4. A long job created elsewhere: watch it, drop the socket, see it resync, cancel it.
  await page.click("details.watch summary");
  await page.type("#watch-id", spec.watch.jobId);
  await page.type("#watch-token", spec.watch.token);
  await page.click("#watch-form button[type=submit]");
  const long = cardOf(spec.watch.jobId);
  await until(
    page,
    "the long job to make progress",
    (sel) => {
      const card = document.querySelector(sel);
      return card?.dataset.conn === "open" && card.dataset.status === "running" && Number(card.querySelector(".bar").getAttribute("aria-valuenow")) > 0;
    },
    long,
  );
  const snapshots = async () => page.$$eval(`${long} .log-list li[data-type="reconnected"]`, (l) => l.length);
  const before = await snapshots();
  await page.click(`${long} .drop-btn`);
  await until(page, "the 4001 close", (sel) => [...document.querySelectorAll(`${sel} .log-list li[data-type="close"]`)].some((l) => l.textContent.includes("closed 4001")), long);
  await until(
    page,
    "a reconnect with a state snapshot",
    (sel, n) => {
      const card = document.querySelector(sel);
      return card.dataset.conn === "open" && card.querySelectorAll('.log-list li[data-type="reconnected"]').length > n;
    },
    long,
    before,
  );
  const progressBefore = await page.$eval(`${long} .bar`, (b) => Number(b.getAttribute("aria-valuenow")));
  say(`long job resynced after a dropped socket at ${progressBefore}%`);
  await page.click(`${long} .cancel-btn`);
  await until(
    page,
    "the long job to be canceled and its socket closed 1001",
    (sel) => {
      const card = document.querySelector(sel);
      const closes = [...card.querySelectorAll('.log-list li[data-type="close"]')].map((l) => l.textContent);
      return card.dataset.status === "canceled" && card.dataset.conn === "closed" && closes.some((t) => t.includes("closed 1001"));
    },
    long,
  );
  const canceledAt = await page.$eval(`${long} .bar`, (b) => Number(b.getAttribute("aria-valuenow")));
  check(canceledAt < 100, `a canceled job shows ${canceledAt}%`);
  say(`long job canceled at ${canceledAt}%`);

  // 5. Tokens stayed in memory: not in the URL, the history, the DOM, cookies or storage.
  const traces = await page.evaluate((token) => ({
    url: location.href,
    history: history.length,
    local: localStorage.length,
    session: sessionStorage.length,
    cookie: document.cookie,
    inDom: document.documentElement.outerHTML.includes(token),
    inputs: [...document.querySelectorAll("input")].map((i) => i.value).filter(Boolean),
  }), spec.watch.token);
  check(traces.url === `${origin}/`, `the page URL changed to ${traces.url}`);
  check(traces.history === historyAtLoad, `history grew from ${historyAtLoad} to ${traces.history} entries`);
  check(traces.local === 0 && traces.session === 0 && traces.cookie === "", `browser storage used: ${JSON.stringify(traces)}`);
  check(!traces.inDom && traces.inputs.length === 0, `a token is left in the page: ${JSON.stringify(traces)}`);
  const socketUrls = requests.filter((u) => u.startsWith("ws"));
  check(socketUrls.length >= 3, `expected at least 3 sockets, saw ${socketUrls}`);

  // 6. The screenshot: the CSV job's message log open, the page from the top.
  await page.$eval(`${csv} details.log`, (d) => {
    d.open = true;
  });
  await page.$eval("details.watch", (d) => {
    d.open = false;
  });
  await page.evaluate(() => window.scrollTo(0, 0));
  mkdirSync(dirname(spec.screenshot), { recursive: true });
  await page.screenshot({ path: spec.screenshot, fullPage: true });
  say(`screenshot saved to ${spec.screenshot}`);

  // 7. Every request went to the worker.
  const outside = requests.filter((u) => !(u.startsWith(`${origin}/`) || u.startsWith(`${wsOrigin}/`) || u.startsWith("data:")));
  check(outside.length === 0, `requests outside the worker: ${outside}`);
  check(problems.length === 0, `the page reported problems: ${problems.join(" | ")}`);
  const paths = [...new Set(requests.map((u) => new URL(u).pathname))].sort();
  say(`${requests.length} requests (${socketUrls.length} sockets), all to ${origin}: ${paths.join(" ")}`);
} catch (err) {
  failure = err;
} finally {
  await close();
}
if (failure) {
  console.error(`[console-test] FAILED: ${failure.stack ?? failure}`);
  process.exit(1);
}
say("passed");
