// The console against protocol v2, before the worker speaks it: a scripted stand-in serves
// the console's own files (console/) with the worker's policy and plays one enrichment job the
// way contract section 9 describes it: `seq` on every message, `item_result` rows (with cover
// URLs on a foreign host), a lost connection, a resume with `since=<last seq>` that replays
// what was missed (one message twice), and results in two pages joined by `nextCursor`.
// Usage: node tests/browser/console-v2.mjs '{"csp": "...", "screenshot": "..."}'.
// Run by tests/e2e/console.rs; exit code 0 means it passed.

import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocketServer } from "ws";
import { launch } from "./chromium.mjs";

const WAIT_MS = 30_000;
const OVERALL_MS = 120_000;
const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const spec = JSON.parse(process.argv[2] ?? "{}");
const started = performance.now();
const say = (text) => console.log(`[console-v2 +${Math.round(performance.now() - started)} ms] ${text}`);
setTimeout(() => {
  console.error(`[console-v2] FAILED: not done after ${OVERALL_MS} ms`);
  process.exit(2);
}, OVERALL_MS).unref();

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const JOB = "6b10e77b-4023-4598-8aca-013ca61e372f";
const TOKEN = "v2-stand-in-token-aaaaaaaaaaaaaaaaaaaaaaaaaa";
const BOOKS = [
  { input: { title: "Dune" }, success: true, enriched: { title: "Dune", authors: ["Frank Herbert"], isbn13: "9780441013593", coverUrl: "https://covers.example/dune.jpg", provider: "google_books" } },
  { input: { title: "Nowhere Book" }, success: false, error: "no matching book found" },
  { input: { title: "The Hobbit" }, success: true, enriched: { title: "The Hobbit", authors: ["J.R.R. Tolkien"], coverUrl: "https://covers.example/hobbit.jpg", provider: "open_library" } },
];

// --- the stand-in worker ------------------------------------------------------------------

const files = {
  "/": ["text/html; charset=utf-8", "index.html"],
  "/console.css": ["text/css; charset=utf-8", "console.css"],
  "/console.js": ["text/javascript; charset=utf-8", "console.js"],
};
const seen = { sockets: [], results: [] };
const envelope = (data) => JSON.stringify({ data, metadata: { timestamp: new Date().toISOString() } });

const server = createServer((req, res) => {
  const url = new URL(req.url, "http://stand-in");
  const file = files[url.pathname];
  if (req.method === "GET" && file) {
    res.writeHead(200, { "content-type": file[0], "content-security-policy": spec.csp, "cache-control": "no-store" });
    res.end(readFileSync(join(ROOT, "console", file[1])));
  } else if (req.method === "GET" && url.pathname === "/health") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(envelope({ status: "ok", version: "2.0.0-stand-in", commit: "unknown" }));
  } else if (req.method === "POST" && url.pathname === "/api/enrichment/batch") {
    req.resume();
    res.writeHead(202, { "content-type": "application/json" });
    res.end(envelope({ jobId: JOB, token: TOKEN, expiresIn: 7200, pipeline: "batch_enrichment", websocketUrl: `/ws/progress?jobId=${JOB}&token=${TOKEN}` }));
  } else if (req.method === "GET" && url.pathname === `/v1/enrichment/results/${JOB}`) {
    check(req.headers.authorization === `Bearer ${TOKEN}`, "results asked without the token");
    const cursor = url.searchParams.get("cursor");
    seen.results.push(url.search);
    const page = cursor === "page-2" ? { books: BOOKS.slice(2) } : { books: BOOKS.slice(0, 2), nextCursor: "page-2" };
    res.writeHead(200, { "content-type": "application/json" });
    res.end(envelope(page));
  } else {
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ data: null, metadata: { timestamp: new Date().toISOString() }, error: { code: "NOT_FOUND", message: `no route for ${url.pathname}` } }));
  }
});

// The job's messages in seq order; the first socket gets 1..=4 and is then lost, the second
// resumes after `since` (and is sent seq 4 again, which the page must ignore).
const message = (seq, type, payload) => JSON.stringify({ type, jobId: JOB, pipeline: "batch_enrichment", timestamp: Date.now(), version: "1.0.0", seq, payload: { type, ...payload } });
const SCRIPT = [
  [2, "job_started", { totalCount: 3 }],
  [3, "item_result", { index: 0, success: true, book: BOOKS[0] }],
  [4, "job_progress", { progress: 1 / 3, status: "running", processedCount: 1, currentItem: "Enriched 1 of 3" }],
  [6, "item_result", { index: 1, success: false, book: BOOKS[1], error: "no matching book found" }],
  [7, "item_result", { index: 2, success: true, book: BOOKS[2] }],
  [8, "job_progress", { progress: 1, status: "running", processedCount: 3, currentItem: "Enriched 3 of 3" }],
  [9, "job_complete", { pipeline: "batch_enrichment", summary: { totalProcessed: 3, successCount: 2, failureCount: 1, notFound: 1, providerErrors: 0, duration: 812 }, resultsUrl: `/v1/enrichment/results/${JOB}` }],
];
const sockets = new WebSocketServer({ noServer: true });
server.on("upgrade", (req, socket, head) => {
  const url = new URL(req.url, "http://stand-in");
  seen.sockets.push(url.search);
  sockets.handleUpgrade(req, socket, head, (ws) => {
    const first = seen.sockets.length === 1;
    ws.on("message", (data) => {
      const msg = JSON.parse(String(data));
      if (msg.type !== "ready") return;
      if (first) {
        ws.send(message(1, "ready_ack", {}));
        for (const [seq, type, payload] of SCRIPT.slice(0, 3)) ws.send(message(seq, type, payload));
        // Lost without a close frame, as a dropped network would be: the page sees 1006.
        setImmediate(() => ws.terminate());
      } else {
        const since = Number(url.searchParams.get("since"));
        ws.send(message(5, "ready_ack", {}));
        ws.send(message(4, "job_progress", SCRIPT[2][2])); // a repeat the page must skip
        for (const [seq, type, payload] of SCRIPT.filter(([seq]) => seq > since && seq > 5)) ws.send(message(seq, type, payload));
        ws.close(1000, "job complete");
      }
    });
  });
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${server.address().port}`;
say(`stand-in worker on ${origin}`);

// --- the browser --------------------------------------------------------------------------

const { browser, close } = await launch();
const requests = [];
const problems = [];
let failure = null;
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  page.on("request", (r) => requests.push(r.url()));
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warn") problems.push(`${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
  const until = (what, fn, ...args) =>
    page.waitForFunction(fn, { timeout: WAIT_MS, polling: "mutation" }, ...args).catch((err) => {
      throw new Error(`timed out waiting for ${what}: ${err.message}; problems: ${problems}`);
    });

  await page.goto(`${origin}/`, { waitUntil: "load" });
  await page.type("#enrich-books", "Dune\nNowhere Book\nThe Hobbit");
  await page.click("#enrich-form button[type=submit]");
  const card = `.job[data-job-id="${JOB}"]`;
  await until("the job to complete", (sel) => document.querySelector(sel)?.dataset.status === "complete", card);
  await until("three item rows", (sel) => document.querySelectorAll(`${sel} .item-list li`).length === 3, card);
  await until("the first results page", (sel) => document.querySelectorAll(`${sel} .results-table tbody tr`).length === 2, card);

  const log = await page.$$eval(`${card} .log-list li`, (lines) => lines.map((l) => ({ seq: l.querySelector(".seq").textContent, dir: l.dataset.dir, type: l.dataset.type, text: l.querySelector(".msg").textContent })));
  const received = log.filter((l) => l.dir === "↓");
  check(received.every((l) => /^\d+$/.test(l.seq)), `a message without its seq in the log: ${JSON.stringify(received)}`);
  check(received.some((l) => l.seq === "4" && l.text.startsWith("(already seen)")), "the repeated seq 4 was not marked as already seen");
  check(seen.sockets.length === 2, `sockets: ${seen.sockets}`);
  check(seen.sockets[1].includes("reconnect=true") && seen.sockets[1].includes("since=4"), `the resume asked ${seen.sockets[1]}`);
  const progress = await page.$eval(`${card} .progress-text`, (e) => e.textContent);
  check(progress.startsWith("100% · 3 / 3"), `progress ${progress}`);
  const items = await page.$$eval(`${card} .item-list li`, (lines) => lines.map((l) => l.textContent));
  check(items[0].includes("#0") && items[0].includes("cover ↗") && items[1].includes("no matching book found"), `items ${items}`);
  say(`resumed with ${seen.sockets[1]}; ${received.length} messages, the repeat skipped; ${items.length} item rows`);

  // The second page comes from nextCursor.
  const info = await page.$eval(`${card} .page-info`, (e) => e.textContent);
  check(info.includes("of 2+"), `the pager does not show more to come: ${info}`);
  await page.click(`${card} .next-btn`);
  await until("the second results page", (sel) => document.querySelectorAll(`${sel} .results-table tbody tr`).length === 3, card);
  check(seen.results.length === 2 && seen.results[1].includes("cursor=page-2"), `results asked: ${seen.results}`);
  const last = await page.$eval(`${card} .page-info`, (e) => e.textContent);
  check(last.includes("of 3") && !last.includes("+"), `pager after the last page: ${last}`);
  say(`results: ${seen.results.join(" then ")}; ${last}`);

  if (spec.screenshot) {
    await page.$eval(`${card} details.log`, (d) => {
      d.open = true;
    });
    await page.screenshot({ path: spec.screenshot, fullPage: true });
  }
  const outside = requests.filter((u) => !(u.startsWith(`${origin}/`) || u.startsWith(origin.replace("http", "ws")) || u.startsWith("data:")));
  check(outside.length === 0, `requests outside the stand-in: ${outside}`);
  check(problems.length === 0, `the page reported problems: ${problems.join(" | ")}`);
} catch (err) {
  failure = err;
} finally {
  await close();
  server.close();
}
if (failure) {
  console.error(`[console-v2] FAILED: ${failure.stack ?? failure}`);
  process.exit(1);
}
say("passed");
