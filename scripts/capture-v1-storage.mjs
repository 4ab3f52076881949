// The driver behind scripts/capture-v1-storage: runs the worker of an old commit (already
// built in a git worktree) under `wrangler dev` against fake providers, leaves one job of
// each scenario at the point where its stored state is interesting (mid-run, queued, done),
// kills the whole wrangler process group with SIGKILL as a crash would, and writes every
// job's Durable Object storage to tests/fixtures/storage/v1/<scenario>.json, and the whole
// state directory the kill left to tests/fixtures/storage/v1/state.tar.gz, with a README.
//
// Run it through scripts/capture-v1-storage, which makes the worktree and picks the Node;
// it needs Node 22 (global fetch and WebSocket, node:sqlite) and nothing from npm.
//
//   node scripts/capture-v1-storage.mjs --worktree DIR --work DIR --commit SHA
//        --out tests/fixtures/storage/v1 --command "bash scripts/capture-v1-storage 292d417"

import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import v8 from "node:v8";

// ---- options -------------------------------------------------------------------------------

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
}
// `--csv-only FILE` only writes the generated Goodreads import, for a look at it.
for (const need of args["csv-only"] ? [] : ["worktree", "work", "commit", "out", "command"]) {
  if (!args[need]) throw new Error(`missing --${need}`);
}
const WORKTREE = path.resolve(args.worktree ?? ".");
const WORK = path.resolve(args.work ?? ".");
const OUT = path.resolve(args.out ?? ".");
const STATE_DIR = path.join(WORK, "state");
const LOG_PATH = path.join(WORK, "wrangler.log");
const started = Date.now();

/** The signing key every capture uses, so a test can run new code with the same key. */
const SIGNING_KEY = "capture-v1-storage-fixed-test-signing-key-7d2c";
const GEMINI_KEY = "test-gemini-key-3f9a1c";
const GEMINI_MODEL = "gemini-test";
/** What the Goodreads progress persists at: 20 updates of 500 records (csv_import policy). */
const CSV_PERSIST_RECORDS = 10_000;

const say = (...m) => console.error("[capture]", ...m);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fixture(dir, name) {
  return fs.readFileSync(path.join(WORKTREE, "tests/fixtures", dir, name));
}

// ---- small helpers: ISBNs, randomness ---------------------------------------------------

function isbn10Check(nine) {
  let sum = 0;
  for (let i = 0; i < 9; i++) sum += (10 - i) * Number(nine[i]);
  const c = (11 - (sum % 11)) % 11;
  return c === 10 ? "X" : String(c);
}

function isbn13Check(twelve) {
  let sum = 0;
  for (let i = 0; i < 12; i++) sum += Number(twelve[i]) * (i % 2 ? 3 : 1);
  return String((10 - (sum % 10)) % 10);
}

function isbn13to10(isbn13) {
  if (!isbn13.startsWith("978")) return null;
  const nine = isbn13.slice(3, 12);
  return nine + isbn10Check(nine);
}

/** mulberry32: small, seeded, reproducible. */
function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, below: (n) => Math.floor(next() * n), pick: (list) => list[Math.floor(next() * list.length)] };
}

// ---- the CSV of csv_mid and complete_csv ------------------------------------------------

const GOODREADS_HEADER =
  "Book Id,Title,Author,Author l-f,Additional Authors,ISBN,ISBN13,My Rating,Average Rating," +
  "Publisher,Binding,Number of Pages,Year Published,Original Publication Year,Date Read," +
  "Date Added,Bookshelves,Bookshelves with positions,Exclusive Shelf,My Review,Spoiler," +
  "Private Notes,Read Count,Owned Copies";
const FIRST = ["Ursula", "Terry", "Octavia", "Iain", "Becky", "Ann", "Ted", "N. K.", "Jo", "Hilary"];
const LAST = ["Le Guin", "Pratchett", "Butler", "Banks", "Chambers", "Leckie", "Chiang", "Jemisin"];
const WORDS = ["Silent", "Harbor", "Glass", "Orchard", "Winter", "Engine", "Lantern", "Tide", "Hollow",
  "Crown", "Salt", "Garden", "Signal", "Ember", "Atlas", "Meridian"];
const SHELVES = ["read", "read", "read", "to-read", "currently-reading"];
const REVIEWS = [
  "Loved it.<br/>\nThe second half drags, but \"the ending\" earns it, mostly.",
  "Three things:\r\n1. pacing, <b>great</b>\r\n2. characters\r\n3. that \"twist\"",
  "<i>Re-read</i> for book club, still holds up. Recommended to anyone who liked the first one.",
];

function csvCell(text) {
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/**
 * A deterministic Goodreads export. Records 1..10,000 are what the kill leaves stored; the
 * records after them are only in the upload. Special records (1-based data record numbers):
 * exact duplicate rows and a title/author duplicate before and after the kill point, rows
 * without a title, rows whose only ISBN fails its checksum, and one row with invalid UTF-8.
 */
function goodreadsCsv() {
  const TOTAL = 12_000;
  const exactDuplicates = { 1500: 12, 4321: 300, 7777: 5001, 9999: 9000, 10250: 42, 11000: 7000, 11900: 10100 };
  const titleDuplicates = { 11500: 20 };
  const missingTitle = [2000, 10600];
  const badChecksum = [3000, 11200];
  const invalidUtf8 = [5555];
  const r = rng(20260101);
  const rows = new Map(); // record -> { bytes, title, author }
  const parts = [Buffer.from(GOODREADS_HEADER + "\n")];
  for (let rec = 1; rec <= TOTAL; rec++) {
    let row;
    if (exactDuplicates[rec]) {
      row = rows.get(exactDuplicates[rec]);
    } else if (titleDuplicates[rec]) {
      const orig = rows.get(titleDuplicates[rec]);
      // Same book once case and punctuation are ignored; no ISBN, so only the title matches.
      const cells = [String(900000 + rec), orig.title.toUpperCase() + "!", orig.author.toLowerCase(),
        "", "", '=""', '=""', "0", "", "", "", "", "", "", "", "", "", "", "to-read", "", "", "", "0", "0"];
      row = { bytes: Buffer.from(cells.map(csvCell).join(",") + "\n"), title: orig.title, author: orig.author };
    } else {
      const series = r.below(10) === 0 ? ` (${r.pick(WORDS)} Cycle, #${1 + r.below(9)})` : "";
      let title = `${r.pick(WORDS)} ${r.pick(WORDS)} ${rec}${series}`;
      const author = `${r.pick(FIRST)} ${r.pick(LAST)}`;
      const nine = String(70_000_000 + rec).padStart(9, "0");
      const isbn10 = nine + isbn10Check(nine);
      const twelve = "978" + nine;
      let isbn13 = twelve + isbn13Check(twelve);
      let cellIsbn = "", cellIsbn13 = "";
      const kind = r.below(20);
      if (kind < 5) [cellIsbn, cellIsbn13] = [isbn10, isbn13];
      else if (kind < 6) cellIsbn = isbn10;
      else if (kind < 7) {
        const t979 = "979" + String(10_000_000 + rec).padStart(9, "0");
        cellIsbn13 = t979 + isbn13Check(t979);
      }
      if (badChecksum.includes(rec)) {
        const good = isbn13Check(twelve);
        cellIsbn = "";
        cellIsbn13 = twelve + String((Number(good) + 1) % 10);
      }
      if (missingTitle.includes(rec)) title = "";
      const shelf = r.pick(SHELVES);
      const rating = shelf === "read" ? String(r.below(6)) : "0";
      const dateRead = shelf === "read" && r.below(2) === 0
        ? `${2010 + r.below(15)}/${String(1 + r.below(12)).padStart(2, "0")}/${String(1 + r.below(28)).padStart(2, "0")}` : "";
      // Some rows carry a review, several lines long in places (lines and records differ).
      const review = r.below(40) === 0 ? r.pick(REVIEWS) : "";
      const cells = [String(200000 + rec), title, author, "", "", `="${cellIsbn}"`, `="${cellIsbn13}"`,
        rating, "", "", "", "", "", "", dateRead, "", "", "", shelf, review, "", "", shelf === "read" ? "1" : "0", "0"];
      let bytes = Buffer.from(cells.map(csvCell).join(",") + "\n");
      if (invalidUtf8.includes(rec)) {
        // A Latin-1 "é" (0xE9) inside the title: invalid UTF-8, imported with a warning.
        const at = bytes.indexOf(Buffer.from(title));
        bytes = Buffer.concat([bytes.subarray(0, at + 3), Buffer.from([0xe9]), bytes.subarray(at + 3)]);
      }
      row = { bytes, title, author };
    }
    rows.set(rec, row);
    parts.push(row.bytes);
  }
  return {
    bytes: Buffer.concat(parts),
    description: {
      generator: "goodreadsCsv() in scripts/capture-v1-storage.mjs (seeded, deterministic)",
      header: GOODREADS_HEADER,
      dataRecords: TOTAL,
      exactDuplicateRecords: exactDuplicates,
      titleAuthorDuplicateRecords: titleDuplicates,
      missingTitleRecords: missingTitle,
      badChecksumRecords: badChecksum,
      invalidUtf8Records: invalidUtf8,
      note: "keys of the duplicate maps are the duplicate's 1-based data record number, values the record it repeats; the upload is just over 1 MiB, so it is stored as two in: slices",
    },
  };
}

// ---- enrichment books and scan photos ----------------------------------------------------

/** 25 books, chunks of 10: the first chunk answers at once, the later books hang at capture. */
const ENRICH_BOOKS = [
  { title: "Dune", author: "Frank Herbert", isbn: "0441013597" },
  { title: "The Hobbit", author: "J.R.R. Tolkien", isbn: "9780547928227" },
  { title: "Station Eleven", author: "Emily St. John Mandel", isbn: "9780143127550" },
  { title: "The Glass Orchard", author: "Becky Chambers" },
  { title: "Unknown Manuscript", author: "Nobody In Particular" },
  { title: "Foundation", isbn: "978-0-553-29335-7" },
  { title: "Harbor Lights", author: "Terry Pratchett" },
  { title: "Unknown Ledger", author: "Ann Leckie", isbn: "1234567890" },
  { title: "Neuromancer", author: "William Gibson", isbn: "9780441569595" },
  { title: "Outage Diaries", author: "Ted Chiang" },
  // second chunk
  { title: "The Left Hand of Darkness", author: "Ursula K. Le Guin", isbn: "9780441478125" },
  { title: "Lantern Tide", author: "Octavia Butler" },
  { title: "Unknown Almanac", author: "Iain Banks" },
  { title: "The Hitchhiker's Guide to the Galaxy", author: "Douglas Adams", isbn: "0345391802" },
  { title: "Ember Atlas", author: "N. K. Jemisin" },
  { title: "Salt Meridian" },
  { title: "The Catcher in the Rye", author: "J.D. Salinger", isbn: "9780316769488" },
  { title: "Unknown Gazetteer", author: "Hilary Mantel", isbn: "9780000000002" },
  { title: "Crown Hollow", author: "Jo Walton" },
  { title: "Signal Garden", author: "Ann Leckie" },
  // third chunk
  { title: "To Kill a Mockingbird", author: "Harper Lee", isbn: "9780061120084" },
  { title: "Winter Engine", author: "Terry Pratchett" },
  { title: "Unknown Breviary" },
  { title: "Nineteen Eighty-Four", author: "George Orwell", isbn: "9780452284234" },
  { title: "Orchard Silent", author: "Becky Chambers" },
];

/** What makes the fake hang a later book's first request: its ISBN query, else its title. */
function holdMarker(book) {
  const isbn13 = validIsbn13(book.isbn);
  return isbn13 ? `isbn:${isbn13}` : `intitle:${book.title}`;
}

function validIsbn13(raw) {
  if (!raw) return null;
  const d = raw.replace(/[-\s]/g, "").toUpperCase();
  if (/^\d{9}[\dX]$/.test(d)) {
    if (isbn10Check(d.slice(0, 9)) !== d[9]) return null;
    const twelve = "978" + d.slice(0, 9);
    return twelve + isbn13Check(twelve);
  }
  if (/^\d{13}$/.test(d)) return isbn13Check(d.slice(0, 12)) === d[12] ? d : null;
  return null;
}

/** Image bytes of `kind` carrying a scenario marker, as tests/e2e/support/providers.rs makes them. */
function image(kind, scenario) {
  const heads = {
    jpeg: Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00]),
    png: Buffer.from("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", "latin1"),
    webp: Buffer.from("RIFF\x24\x00\x00\x00WEBPVP8 ", "latin1"),
  };
  const marker = Buffer.from(`scenario=${scenario};`);
  return Buffer.concat([heads[kind], marker, Buffer.alloc(512, 0x42)]);
}

/** Three photos: position 1 is the one whose Gemini call hangs at capture. */
const SCAN_PHOTOS = [
  { position: 0, index: 0, kind: "jpeg", scenario: "fenced", geminiFixture: "fenced.json" },
  { position: 1, index: 4, kind: "png", scenario: "wrapped", geminiFixture: "wrapped_books.json" },
  { position: 2, index: 7, kind: "webp", scenario: "bare", geminiFixture: "bare_array.json" },
];

// ---- the fake providers (same answers as tests/e2e/support/providers.rs) -----------------

const KNOWN_BOOKS = [
  ["9780441013593", "Dune", "Frank Herbert"],
  ["9780441478125", "The Left Hand of Darkness", "Ursula K. Le Guin"],
  ["9780441569595", "Neuromancer", "William Gibson"],
  ["9780553293357", "Foundation", "Isaac Asimov"],
  ["9780345391803", "The Hitchhiker's Guide to the Galaxy", "Douglas Adams"],
  ["9780547928227", "The Hobbit", "J.R.R. Tolkien"],
  ["9780316769488", "The Catcher in the Rye", "J.D. Salinger"],
  ["9780061120084", "To Kill a Mockingbird", "Harper Lee"],
  ["9780452284234", "Nineteen Eighty-Four", "George Orwell"],
  ["9780143127550", "Station Eleven", "Emily St. John Mandel"],
];
const GOOGLE_OUTAGE_ISBNS = ["9780143127550"];
const known = (isbn) => KNOWN_BOOKS.find(([i]) => i === isbn);

/** `%XX` decoded; `+` stays `+`, as in the Rust fake. */
function percentDecode(text) {
  const bytes = [];
  for (let i = 0; i < text.length; ) {
    if (text[i] === "%" && i + 2 < text.length && /^[0-9a-fA-F]{2}$/.test(text.slice(i + 1, i + 3))) {
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 3;
    } else {
      bytes.push(...Buffer.from(text[i]));
      i += 1;
    }
  }
  return Buffer.from(bytes).toString("utf8");
}

function queryParam(target, name) {
  const q = target.split("?")[1];
  if (!q) return null;
  for (const pair of q.split("&")) {
    const at = pair.indexOf("=");
    if (at > 0 && pair.slice(0, at) === name) return percentDecode(pair.slice(at + 1));
  }
  return null;
}

const jsonAnswer = (status, body) => ({ status, body: typeof body === "string" ? body : JSON.stringify(body) });

function volume(isbn13, title, author) {
  const ids = [];
  if (isbn13) {
    ids.push({ type: "ISBN_13", identifier: isbn13 });
    const isbn10 = isbn13to10(isbn13);
    if (isbn10) ids.push({ type: "ISBN_10", identifier: isbn10 });
  }
  return {
    kind: "books#volume",
    id: `fake${Buffer.byteLength(title)}`,
    volumeInfo: {
      title, authors: [author], publisher: "Fake Press", publishedDate: "2001-02-03", pageCount: 321,
      industryIdentifiers: ids,
      imageLinks: {
        smallThumbnail: "http://books.google.com/books/content?id=x&zoom=5",
        thumbnail: "http://books.google.com/books/content?id=x&zoom=1&edge=curl",
      },
    },
  };
}

function volumes(items) {
  return jsonAnswer(200, items.length
    ? { kind: "books#volumes", totalItems: items.length, items }
    : { kind: "books#volumes", totalItems: 0 });
}

function googleBooks(target) {
  const q = queryParam(target, "q") ?? "";
  if (q.startsWith("isbn:")) {
    const isbn = q.slice(5);
    if (GOOGLE_OUTAGE_ISBNS.includes(isbn)) return jsonAnswer(500, '{"error":{"code":500,"message":"Backend Error"}}');
    const k = known(isbn);
    return volumes(k ? [volume(...k)] : []);
  }
  const title = (q.split("intitle:")[1] ?? "").split("+inauthor:")[0];
  const author = q.split("+inauthor:")[1] ?? "Anonymous";
  if (title.includes("Outage")) return jsonAnswer(503, '{"error":{"code":503,"message":"Service Unavailable"}}');
  if (title.includes("Unknown")) return volumes([]);
  return volumes([volume(null, title, author)]);
}

function openLibrary(target) {
  const p = target.split("?")[0];
  let m = p.match(/^\/ol\/isbn\/(.*)\.json$/);
  if (m) {
    const k = known(m[1]);
    if (!k) return jsonAnswer(404, '{"error":"notfound","key":"/isbn"}');
    const [i, title] = k;
    return jsonAnswer(200, {
      title, publishers: ["Open Press"], publish_date: "1999", number_of_pages: 250, isbn_13: [i],
      covers: [12345], authors: [{ key: `/authors/OL${i}A` }], key: `/books/OL${i}M`,
    });
  }
  m = p.match(/^\/ol\/authors\/OL(.*)A\.json$/);
  if (m) {
    const k = known(m[1]);
    return jsonAnswer(200, { name: k ? k[2] : "Someone", key: `/authors/OL${m[1]}A` });
  }
  if (p === "/ol/search.json") {
    const title = queryParam(target, "title") ?? "";
    const author = queryParam(target, "author") ?? "Anonymous";
    if (title.includes("Unknown") || title.includes("Outage")) return jsonAnswer(200, '{"numFound":0,"start":0,"docs":[]}');
    const doc = { title, author_name: [author], first_publish_year: 1990, cover_i: 777, key: "/works/OL1W" };
    return jsonAnswer(200, { numFound: 1, start: 0, docs: [doc] });
  }
  return jsonAnswer(404, '{"error":"notfound"}');
}

function geminiScenario(body) {
  try {
    const parts = JSON.parse(body).contents[0].parts;
    const data = parts.map((p) => p.inline_data?.data ?? p.inlineData?.data).find(Boolean) ?? "";
    const text = Buffer.from(data, "base64").toString("latin1");
    return (text.split("scenario=")[1] ?? "").split(";")[0];
  } catch {
    return "";
  }
}

function gemini(body) {
  const scenario = geminiScenario(body);
  const ok = (name) => jsonAnswer(200, fixture("gemini", `${name}.json`).toString());
  switch (scenario.split("-")[0]) {
    case "fenced": case "prose": return { scenario, ...ok(scenario) };
    case "bare": return { scenario, ...ok("bare_array") };
    case "wrapped": return { scenario, ...ok("wrapped_books") };
    case "boxes": return { scenario, ...ok("out_of_range_boxes") };
    default: return { scenario, ...jsonAnswer(400, { error: { code: 400, message: `no scenario "${scenario}"` } }) };
  }
}

/**
 * The fake provider server. `holds` lists substrings of a (percent-decoded) request target,
 * or Gemini scenario markers, whose requests get no answer at all until the process ends:
 * that is how a job is caught with a call in flight.
 */
function startFake() {
  const fake = { holds: new Set(), held: [], seen: [], listeners: new Set() };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString();
      const target = req.url;
      const decoded = percentDecode(target);
      let answer;
      let marker = decoded;
      if (target.startsWith("/v1beta/models/")) {
        answer = gemini(body);
        marker = `gemini:${answer.scenario}`;
      } else if (target.startsWith("/books/v1/volumes")) answer = googleBooks(target);
      else if (target.startsWith("/ol/")) answer = openLibrary(target);
      else answer = jsonAnswer(404, '{"error":"no such fake endpoint"}');
      const hold = [...fake.holds].some((h) => marker.includes(h));
      const entry = { at: Date.now(), method: req.method, target: decoded, marker, held: hold, status: hold ? null : answer.status };
      fake.seen.push(entry);
      fake.listeners.forEach((l) => l(entry));
      if (hold) {
        fake.held.push(res);
        return;
      }
      res.writeHead(answer.status, { "content-type": "application/json; charset=utf-8" });
      res.end(answer.body);
    });
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      fake.base = `http://127.0.0.1:${server.address().port}`;
      fake.close = () => {
        fake.held.forEach((r) => r.destroy());
        server.closeAllConnections?.();
        server.close();
      };
      resolve(fake);
    });
  });
}

function waitFake(fake, what, pred, timeoutMs = 30_000) {
  if (fake.seen.filter(pred).length) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      fake.listeners.delete(listener);
      reject(new Error(`timed out waiting for the fake to see ${what}`));
    }, timeoutMs);
    const listener = (e) => {
      if (pred(e)) {
        clearTimeout(timer);
        fake.listeners.delete(listener);
        resolve();
      }
    };
    fake.listeners.add(listener);
  });
}

// ---- wrangler dev ----------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The processes of a process group, from /proc: [{ pid, comm }]. */
function groupMembers(pgid) {
  const out = [];
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, "utf8");
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const fields = stat.slice(close + 2).split(" ");
      if (Number(fields[2]) === pgid && fields[0] !== "Z") out.push({ pid: Number(name), comm });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

class Worker {
  constructor(vars) {
    this.vars = vars;
    this.events = [];
    this.listeners = new Set();
    this.lines = 0;
    this.lastLineAt = Date.now();
  }

  async start() {
    this.port = await freePort();
    this.base = `http://127.0.0.1:${this.port}`;
    const argv = [path.join(WORKTREE, "node_modules/wrangler/bin/wrangler.js"), "dev",
      "--ip", "127.0.0.1", "--port", String(this.port), "--inspector-port", String(await freePort()),
      "--persist-to", STATE_DIR, "--show-interactive-dev-session=false"];
    for (const [k, v] of Object.entries(this.vars)) argv.push("--var", `${k}:${v}`);
    this.log = fs.openSync(LOG_PATH, "a");
    this.child = spawn(process.execPath, argv, {
      cwd: WORKTREE,
      detached: true, // its own process group, killed as one
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, WRANGLER_SEND_METRICS: "false", NO_COLOR: "1", FORCE_COLOR: "0" },
    });
    this.pgid = this.child.pid;
    liveGroups.add(this.pgid);
    for (const stream of [this.child.stdout, this.child.stderr]) {
      let rest = "";
      stream.on("data", (chunk) => {
        fs.writeSync(this.log, chunk);
        rest += chunk.toString();
        const lines = rest.split("\n");
        rest = lines.pop();
        lines.forEach((l) => this.line(l));
      });
    }
    this.exited = new Promise((r) => this.child.on("exit", r));
    const deadline = Date.now() + 120_000;
    for (;;) {
      try {
        const res = await fetch(`${this.base}/health`);
        if (res.ok) {
          this.health = (await res.json()).data;
          return;
        }
      } catch {
        // not up yet
      }
      if (this.child.exitCode !== null) throw new Error(`wrangler exited:\n${this.tail()}`);
      if (Date.now() > deadline) throw new Error(`wrangler did not answer /health:\n${this.tail()}`);
      await sleep(200);
    }
  }

  line(text) {
    this.lines++;
    this.lastLineAt = Date.now();
    const at = text.indexOf('{"');
    if (at < 0) return;
    let event;
    try {
      event = JSON.parse(text.slice(at));
    } catch {
      return;
    }
    if (!event.event) return;
    event.receivedAt = Date.now();
    this.events.push(event);
    this.listeners.forEach((l) => l(event));
  }

  tail(n = 40) {
    return fs.readFileSync(LOG_PATH, "utf8").split("\n").slice(-n).join("\n");
  }

  /** Resolves with the first event matching `pred` (already logged or still to come). */
  waitEvent(what, pred, timeoutMs = 60_000) {
    const found = this.events.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(listener);
        reject(new Error(`worker never logged ${what}\n${this.tail()}`));
      }, timeoutMs);
      const listener = (e) => {
        if (pred(e)) {
          clearTimeout(timer);
          this.listeners.delete(listener);
          resolve(e);
        }
      };
      this.listeners.add(listener);
    });
  }

  workerdPids() {
    return groupMembers(this.pgid).filter((p) => p.comm.startsWith("workerd")).map((p) => p.pid);
  }

  /** Freezes workerd (wrangler keeps forwarding what it already printed). */
  freeze() {
    const pids = this.workerdPids();
    if (!pids.length) throw new Error("no workerd process in the wrangler process group");
    pids.forEach((pid) => process.kill(pid, "SIGSTOP"));
    return pids;
  }

  thaw(pids) {
    pids.forEach((pid) => process.kill(pid, "SIGCONT"));
  }

  /** SIGKILL to the whole process group, as a crash; waits until every member is gone. */
  async kill() {
    try {
      process.kill(-this.pgid, "SIGKILL");
    } catch {
      // already gone
    }
    await Promise.race([this.exited, sleep(10_000)]);
    const deadline = Date.now() + 10_000;
    while (groupMembers(this.pgid).length && Date.now() < deadline) await sleep(50);
    liveGroups.delete(this.pgid);
    fs.closeSync(this.log);
  }
}

const liveGroups = new Set();
function killLiveGroups() {
  for (const g of liveGroups) {
    try {
      process.kill(-g, "SIGKILL");
    } catch {
      // gone
    }
  }
}
process.on("exit", killLiveGroups);
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    killLiveGroups();
    process.exit(130);
  });
}

// ---- the API ----------------------------------------------------------------------------

/**
 * JSON.parse that keeps every number's text (`2.0` stays `2.0` when written back), so the
 * answers kept in `inputs` are byte for byte what the old worker sent, which matters to a
 * serde_json comparison (2 and 2.0 differ there).
 */
function parseExact(text) {
  return JSON.parse(text, (_key, value, context) => (typeof value === "number" ? JSON.rawJSON(context.source) : value));
}

let clientSeq = 0;
/** Each request looks like a new client, so the per-client creation limits never bite. */
async function api(worker, method, route, { body, contentType, token } = {}) {
  clientSeq++;
  const headers = { "cf-connecting-ip": `10.77.${(clientSeq >> 8) & 255}.${clientSeq & 255}` };
  if (contentType) headers["content-type"] = contentType;
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${worker.base}${route}`, { method, headers, body, signal: AbortSignal.timeout(60_000) });
  const text = await res.text();
  let json = null;
  try {
    json = parseExact(text);
  } catch {
    // not JSON
  }
  return { status: res.status, json, text };
}

async function create(worker, route, body, contentType) {
  const a = await api(worker, "POST", route, { body, contentType });
  if (a.status !== 202) throw new Error(`POST ${route} answered ${a.status}: ${a.text.slice(0, 500)}`);
  return a.json.data;
}

/** A progress socket that says `ready` once open and records every message. */
function socket(worker, created) {
  const ws = new WebSocket(`ws://127.0.0.1:${worker.port}${created.websocketUrl}`);
  const sock = { ws, messages: [], closed: null, listeners: new Set() };
  const notify = () => sock.listeners.forEach((l) => l());
  ws.onmessage = (e) => {
    try {
      sock.messages.push(parseExact(e.data));
    } catch {
      sock.messages.push({ type: "text", text: String(e.data) });
    }
    notify();
  };
  ws.onclose = (e) => {
    sock.closed = { code: e.code, reason: e.reason };
    notify();
  };
  ws.onerror = () => {};
  sock.opened = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the socket of job ${created.jobId} did not open`)), 30_000);
    ws.onopen = () => {
      clearTimeout(timer);
      ws.send('{"type":"ready"}');
      resolve();
    };
  });
  sock.until = (what, pred, timeoutMs = 120_000) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const m = sock.messages.find(pred);
        if (m || (what === "close" && sock.closed)) {
          clearTimeout(timer);
          sock.listeners.delete(check);
          resolve(m ?? sock.closed);
        } else if (sock.closed && what !== "close") {
          clearTimeout(timer);
          sock.listeners.delete(check);
          reject(new Error(`socket closed (${JSON.stringify(sock.closed)}) before ${what}`));
        }
      };
      const timer = setTimeout(() => {
        sock.listeners.delete(check);
        reject(new Error(`timed out waiting for ${what} on job ${created.jobId}`));
      }, timeoutMs);
      sock.listeners.add(check);
      check();
    });
  return sock;
}

/** Runs a created job to its end over its socket; returns its summary and results. */
async function runToCompletion(worker, created, resultsRoute) {
  const sock = socket(worker, created);
  await sock.opened;
  const done = await sock.until("job_complete", (m) => m.type === "job_complete" || m.type === "error");
  if (done.type !== "job_complete") throw new Error(`job ${created.jobId} failed: ${JSON.stringify(done)}`);
  await sock.until("close", () => false);
  const res = await api(worker, "GET", `${resultsRoute}/${created.jobId}`, { token: created.token });
  if (res.status !== 200) throw new Error(`results of ${created.jobId}: ${res.status} ${res.text.slice(0, 300)}`);
  return { summary: done.payload.summary, results: res.json.data };
}

const forJob = (jobId, event, extra = () => true) => (e) => e.jobId === jobId && e.event === event && extra(e);

// ---- what is on disk -------------------------------------------------------------------
//
// A `job.persisted` line proves nothing about the disk: the runtime resolves a storage write
// before its SQLite transaction commits. So every scenario is confirmed by reading the
// object's SQLite file (read-only, which the runtime's WAL mode allows while it runs or is
// frozen), and the kill waits for that.

function namespaceDir() {
  const root = path.join(STATE_DIR, "v3/do");
  const dirs = fs.existsSync(root) ? fs.readdirSync(root).filter((d) => d.endsWith("-JobObject")) : [];
  if (dirs.length > 1) throw new Error(`expected one JobObject namespace, found ${dirs}`);
  return dirs.length ? path.join(root, dirs[0]) : null;
}

const fileOfJob = new Map();

/** The committed `core`, `work` and key list of a job's object, or null when none yet. */
function durable(jobId) {
  const dir = namespaceDir();
  if (!dir) return null;
  if (!fileOfJob.has(jobId)) {
    for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".sqlite") && f !== "metadata.sqlite")) {
      if ([...fileOfJob.values()].includes(file)) continue;
      try {
        const db = new DatabaseSync(path.join(dir, file), { readOnly: true });
        try {
          const name = db.prepare("SELECT name FROM __miniflare_do_name").get()?.name;
          if (name) fileOfJob.set(name, file);
        } finally {
          db.close();
        }
      } catch {
        // being created; try again next time
      }
    }
  }
  const file = fileOfJob.get(jobId);
  if (!file) return null;
  const db = new DatabaseSync(path.join(dir, file), { readOnly: true });
  try {
    const get = (key) => {
      const row = db.prepare("SELECT value FROM _cf_KV WHERE key = ?").get(key);
      return row ? JSON.parse(v8.deserialize(Buffer.from(row.value))) : null;
    };
    const keys = db.prepare("SELECT key FROM _cf_KV ORDER BY key").all().map((r) => r.key);
    return { core: get("core"), work: get("work"), keys };
  } catch {
    return null; // no tables yet
  } finally {
    db.close();
  }
}

/** Polls the disk until the job's committed state satisfies `pred`. */
async function waitDurable(jobId, what, pred, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const d = durable(jobId);
    if (d?.core && pred(d)) return d;
    if (Date.now() > deadline) throw new Error(`${what} never reached the disk: ${JSON.stringify(d?.core?.state ?? null)}`);
    await sleep(50);
  }
}

// ---- the scenarios ----------------------------------------------------------------------

async function capture(worker, fake) {
  const jobs = {}; // scenario -> { created, inputs, wanted }
  const csv = goodreadsCsv();
  const csvSha = createHash("sha256").update(csv.bytes).digest("hex");
  const enrichBody = JSON.stringify({ books: ENRICH_BOOKS });
  const scanBody = JSON.stringify({
    images: SCAN_PHOTOS.map((p) => ({ index: p.index, data: image(p.kind, p.scenario).toString("base64") })),
  });
  const photoInputs = SCAN_PHOTOS.map((p) => ({ ...p, bytes: image(p.kind, p.scenario).length, storedAt: `img:${p.position}:0` }));

  // Finished jobs first, with nothing held: they are also the expected outcome of the
  // interrupted jobs below, which get the very same inputs.
  say("complete_csv: importing", csv.bytes.length, "bytes");
  let c = await create(worker, "/api/import/csv", csv.bytes, "text/csv");
  const csvDone = await runToCompletion(worker, c, "/v1/csv/results");
  const csvExpected = {
    summary: csvDone.summary,
    books: csvDone.results.books.length,
    errors: csvDone.results.errors,
    warnings: csvDone.results.warnings ?? [],
    successRate: csvDone.results.successRate,
    firstBooks: csvDone.results.books.slice(0, 3),
    lastBooks: csvDone.results.books.slice(-3),
  };
  jobs.complete_csv = {
    created: c, wanted: "complete",
    inputs: {
      csv: { ...csv.description, bytes: csv.bytes.length, sha256: csvSha, sameFileAs: "csv_mid (whose in: slices hold it; the upload of a finished import is deleted)" },
      expected: csvExpected,
      note: "the full results document is the concatenation of the stored res:csv:* slices; expected holds its counts, every error and warning, and the first and last books as the old code served them",
    },
  };

  say("complete_enrich: 25 books");
  c = await create(worker, "/api/enrichment/batch", enrichBody, "application/json");
  const enrichDone = await runToCompletion(worker, c, "/v1/enrichment/results");
  jobs.complete_enrich = {
    created: c, wanted: "complete",
    inputs: { books: ENRICH_BOOKS, expected: enrichDone },
  };

  say("complete_scan: 3 photos");
  c = await create(worker, "/api/scan-bookshelf/batch", scanBody, "application/json");
  const scanDone = await runToCompletion(worker, c, "/v1/scan/results");
  jobs.complete_scan = {
    created: c, wanted: "complete",
    inputs: { photos: photoInputs, expected: scanDone, note: "the photos (img:*) of a finished scan are deleted; the same bytes are in scan_mid's storage" },
  };

  // A queued job: created, nobody says ready, READY_TIMEOUT_SECS is a day.
  say("queued: a CSV job nobody starts");
  const small = fixture("csv", "goodreads.csv");
  c = await create(worker, "/api/import/csv", small, "text/csv");
  await worker.waitEvent("the queued job's creation", forJob(c.jobId, "job.created"));
  await waitDurable(c.jobId, "the queued job", (d) => d.core.state.status === "queued" && d.keys.includes("in:0"));
  jobs.queued = {
    created: c, wanted: "queued",
    inputs: {
      csv: { fixture: "tests/fixtures/csv/goodreads.csv", bytes: small.length, sha256: createHash("sha256").update(small).digest("hex") },
      expected: { fixture: "tests/fixtures/csv/goodreads.expected.json" },
    },
  };

  // Enrichment caught after its first chunk: the later books' first requests hang.
  say("enrich_mid: 25 books, books 11-25 hang");
  const heldBooks = ENRICH_BOOKS.slice(10).map(holdMarker);
  heldBooks.forEach((h) => fake.holds.add(h));
  const seenBefore = fake.seen.length;
  c = await create(worker, "/api/enrichment/batch", enrichBody, "application/json");
  let sock = socket(worker, c);
  await sock.opened;
  await worker.waitEvent("enrich_mid's first chunk stored", forJob(c.jobId, "job.persisted", (e) => e.reason === "chunk" && e.processedCount === 10));
  await waitFake(fake, "the second chunk's 10 held lookups",
    () => fake.seen.slice(seenBefore).filter((e) => e.held).length >= 10);
  await waitDurable(c.jobId, "enrich_mid's first chunk", (d) => d.core.state.processedCount === 10 && d.work.done.filter(Boolean).length === 10);
  jobs.enrich_mid = {
    created: c, wanted: "running",
    inputs: {
      books: ENRICH_BOOKS,
      heldAtCapture: heldBooks,
      expected: enrichDone,
      expectedFrom: "complete_enrich (same books, same fake answers, run to the end by the old code)",
    },
  };

  // A scan caught with photo 0 stored and photo 1's Gemini call in flight.
  say("scan_mid: photo 1 hangs");
  fake.holds.add("gemini:wrapped");
  c = await create(worker, "/api/scan-bookshelf/batch", scanBody, "application/json");
  sock = socket(worker, c);
  await sock.opened;
  await worker.waitEvent("scan_mid's photo 0 stored", forJob(c.jobId, "job.persisted", (e) => e.reason === "photo" && e.processedCount === 1));
  await waitFake(fake, "photo 1's held Gemini call", (e) => e.held && e.marker === "gemini:wrapped");
  await waitDurable(c.jobId, "scan_mid's photo 1 start", (d) => d.work.photos.map((p) => p.record.status).join() === "done,processing,queued");
  jobs.scan_mid = {
    created: c, wanted: "running",
    inputs: {
      photos: photoInputs,
      heldAtCapture: ["gemini:wrapped (photo position 1)"],
      expected: scanDone,
      expectedFrom: "complete_scan (same photos, same fake answers, run to the end by the old code)",
    },
  };

  // A synthetic job after its first chunk; the next one is a minute away.
  say("synthetic_mid: 40 items, 20 per chunk, a minute between chunks");
  const spec = { pipeline: "csv_import", items: 40, itemsPerChunk: 20, chunkDelayMs: 60_000 };
  c = await create(worker, "/api/test/jobs", JSON.stringify(spec), "application/json");
  sock = socket(worker, c);
  await sock.opened;
  await worker.waitEvent("synthetic_mid's first chunk stored", forJob(c.jobId, "job.persisted", (e) => e.processedCount === 20));
  await waitDurable(c.jobId, "synthetic_mid's first chunk", (d) => d.core.state.processedCount === 20);
  jobs.synthetic_mid = {
    created: c, wanted: "running", deadline: Date.now() + spec.chunkDelayMs - 5_000,
    inputs: { spec, expected: { summary: { totalProcessed: 40, successCount: 40, failureCount: 0 }, results: { items: 40 } } },
  };

  // Last, the CSV import: caught between its first stored progress (10,000 records, five
  // result slices) and its end. Workerd is frozen (SIGSTOP) the moment that write is logged,
  // then let run a millisecond at a time until the write is on disk; if the import ended
  // first, it is tried again with a new job.
  let frozen = null;
  for (let attempt = 1; attempt <= 4 && !frozen; attempt++) {
    say(`csv_mid: importing the same ${csv.bytes.length} bytes (attempt ${attempt})`);
    c = await create(worker, "/api/import/csv", csv.bytes, "text/csv");
    const persisted = worker.waitEvent("csv_mid's first stored progress",
      forJob(c.jobId, "job.persisted", (e) => e.reason === "throttle" && e.processedCount >= CSV_PERSIST_RECORDS), 120_000);
    let pids = [];
    const stop = persisted.then((e) => {
      pids = worker.freeze();
      return e;
    });
    sock = socket(worker, c);
    await sock.opened;
    await stop;
    let outcome = "no commit seen";
    for (let step = 0; step < 500; step++) {
      const d = durable(c.jobId);
      const st = d?.core?.state;
      if (st && st.status !== "running") {
        outcome = `the import ended (${st.status}) first`;
        break;
      }
      if (st && st.processedCount === CSV_PERSIST_RECORDS) {
        frozen = { pids, steps: step };
        break;
      }
      if (st && st.processedCount > CSV_PERSIST_RECORDS) {
        outcome = `stored at ${st.processedCount}`;
        break;
      }
      worker.thaw(pids);
      await sleep(1);
      pids = worker.freeze();
    }
    if (frozen) say(`csv_mid: frozen with 10,000 records on disk after ${frozen.steps} one-millisecond steps`);
    else {
      say(`csv_mid attempt ${attempt} was not caught (${outcome}); trying again`);
      worker.thaw(pids);
    }
  }
  if (!frozen) throw new Error("could not catch the CSV import mid-run");
  if (Date.now() > jobs.synthetic_mid.deadline) throw new Error("synthetic_mid may have run its next chunk; run again");
  jobs.csv_mid = {
    created: c, wanted: "running",
    inputs: {
      csv: { ...csv.description, bytes: csv.bytes.length, sha256: csvSha, storedAt: "in:0, in:1" },
      caughtAfterRecords: CSV_PERSIST_RECORDS,
      expected: csvExpected,
      expectedFrom: "complete_csv (same file, run to the end by the old code)",
    },
  };
  return jobs;
}

// ---- packing the state ------------------------------------------------------------------
//
// The whole `--persist-to` directory as the kill left it, packed before anything reads it
// (dumpObjects opens the SQLite files read-write, and closing the last connection can
// checkpoint a WAL into its database), so a test can start a newer worker on exactly it.

/** Every file under `dir` (relative path and size), in the order `tar --sort=name` packs. */
function filesUnder(dir, rel = "") {
  const out = [];
  const names = fs.readdirSync(path.join(dir, rel)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const name of names) {
    const r = rel ? `${rel}/${name}` : name;
    const st = fs.statSync(path.join(dir, r));
    if (st.isDirectory()) out.push(...filesUnder(dir, r));
    else out.push({ path: r, bytes: st.size });
  }
  return out;
}

/** Packs STATE_DIR into WORK/state.tar.gz with a stable order and neutral owners and times. */
function packState(mtime) {
  const file = path.join(WORK, "state.tar.gz");
  const files = filesUnder(STATE_DIR);
  const tar = spawnSync("tar", [
    "--sort=name", "--owner=0", "--group=0", "--numeric-owner", `--mtime=@${Math.floor(mtime / 1000)}`,
    "--format=gnu", "-I", "gzip -9n", "-C", STATE_DIR, "-cf", file, ".",
  ], { stdio: ["ignore", "inherit", "inherit"] });
  if (tar.status !== 0) throw new Error(`tar failed (${tar.status ?? tar.signal})`);
  return { file, bytes: fs.statSync(file).size, files };
}

// ---- dumping the state -------------------------------------------------------------------

/** The runtime keeps alarm times as integer nanoseconds since the epoch; epoch ms here. */
function nanosToMs(v) {
  return v == null ? null : Number(BigInt(v) / 1_000_000n);
}

/** A stored value as the fixture keeps it: text stays text, bytes become base64. */
function encodeValue(raw) {
  const value = v8.deserialize(Buffer.from(raw));
  if (typeof value === "string") return { text: value };
  if (value instanceof Uint8Array) return { base64: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64") };
  if (value instanceof ArrayBuffer) return { base64: Buffer.from(value).toString("base64") };
  return { v8: value };
}

function dumpObjects() {
  const dir = namespaceDir();
  if (!dir) throw new Error(`no JobObject storage under ${STATE_DIR}`);
  const scheduler = new Map();
  if (fs.existsSync(path.join(dir, "metadata.sqlite"))) {
    const db = new DatabaseSync(path.join(dir, "metadata.sqlite"), { readBigInts: true });
    for (const row of db.prepare("SELECT * FROM _cf_ALARM").all()) {
      scheduler.set(row.actor_id, nanosToMs(row.scheduled_time));
    }
    db.close();
  }
  const objects = [];
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith(".sqlite") && f !== "metadata.sqlite")) {
    const db = new DatabaseSync(path.join(dir, file), { readBigInts: true });
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all().map((t) => t.name);
    const storage = {};
    if (tables.includes("_cf_KV")) {
      for (const row of db.prepare("SELECT key, value FROM _cf_KV ORDER BY key").all()) storage[row.key] = encodeValue(row.value);
    }
    let alarm = null;
    if (tables.includes("_cf_METADATA")) {
      const row = db.prepare("SELECT value FROM _cf_METADATA WHERE key = 1").get();
      alarm = row ? nanosToMs(row.value) : null;
    }
    const name = tables.includes("__miniflare_do_name")
      ? db.prepare("SELECT name FROM __miniflare_do_name").get()?.name ?? null : null;
    db.close();
    const actorId = file.replace(/\.sqlite$/, "");
    objects.push({ file, actorId, name, storage, alarm, schedulerAlarm: scheduler.get(actorId) ?? null });
  }
  return objects;
}

// ---- fixtures, README and summary ---------------------------------------------------------

function keyRanges(keys) {
  const groups = new Map();
  for (const k of keys) {
    const m = k.match(/^(.*?)(\d+)$/);
    const [prefix, n] = m ? [m[1], m[2]] : [k, null];
    if (!groups.has(prefix)) groups.set(prefix, []);
    groups.get(prefix).push(n);
  }
  return [...groups].map(([prefix, ns]) => {
    if (ns[0] === null) return prefix;
    return ns.length === 1 ? `${prefix}${ns[0]}` : `${prefix}${ns[0]}..${ns.at(-1)}`;
  }).join(", ");
}

const iso = (ms) => (ms == null ? "none" : new Date(ms).toISOString());
const fmtBytes = (n) => (n >= 1e6 ? `${(n / 1e6).toFixed(2)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`);

/**
 * The packed state, one line per job object (its database, write-ahead log and WAL index
 * together) and one per other store, for the README.
 */
function stateListing(files, fixtures, others) {
  const groups = new Map(); // label -> { order, bytes, files }
  const add = (order, label, f) => {
    const g = groups.get(label) ?? { order, bytes: 0, files: 0 };
    g.bytes += f.bytes;
    g.files += 1;
    groups.set(label, g);
  };
  for (const f of files) {
    const dir = path.dirname(f.path);
    const base = path.basename(f.path).replace(/\.sqlite(-wal|-shm)?$/, "");
    if (dir.endsWith("-JobObject")) {
      if (base === "metadata") {
        add(2, `\`${dir}/metadata.sqlite*\`: the namespace's alarm table \`_cf_ALARM\`, from which the local runtime fires them`, f);
        continue;
      }
      const fx = fixtures.find((x) => x.object.id === base);
      const o = others.find((x) => x.actorId === base);
      const st = o?.storage.core ? JSON.parse(o.storage.core.text).state : null;
      const what = fx ? `\`${fx.scenario}\``
        : o ? `job ${o.name ?? "(no name)"}, no fixture${st ? ` (${st.status} ${st.processedCount}/${st.totalCount})` : ""}`
        : "a job object nobody named";
      add(fx ? 0 : 1, `\`${dir}/${base.slice(0, 12)}….sqlite*\`: ${what}`, f);
    } else if (dir.endsWith("-RateLimiter")) {
      add(3, `\`${dir}/\`: the rate limiter's objects and alarms`, f);
    } else {
      add(4, `\`v3/{cache,d1,flagship,kv,observability,r2}/\`: the local runtime's own stores, nothing the worker wrote (\`observability\` holds wrangler's local traces)`, f);
    }
  }
  return [...groups].sort((a, b) => a[1].order - b[1].order)
    .map(([label, g]) => `  - ${label}; ${g.files} files, ${fmtBytes(g.bytes)}`).join("\n");
}

function describe(fixture) {
  const core = JSON.parse(fixture.storage.core.text);
  const work = JSON.parse(fixture.storage.work.text);
  const s = core.state;
  const tasks = Object.entries(core.schedule.tasks)
    .map(([k, t]) => `${k} at ${iso(t.due)}${t.attempts ? ` (${t.attempts} attempts)` : ""}`);
  return { core, work, status: s.status, processed: s.processedCount, total: s.totalCount, version: s.version, tasks, keys: Object.keys(fixture.storage) };
}

function workDetail(work) {
  switch (work.kind) {
    case "csv": return `cursor ${JSON.stringify(work.cursor)}, totals ${JSON.stringify(work.totals)}, ${work.resultSlices} result slices, upload ${work.bytes} bytes`;
    case "enrich": return `${work.done.filter(Boolean).length} of ${work.books} books done (found ${work.found}, not found ${work.notFound}, provider errors ${work.providerErrors})`;
    case "scan": return work.photos.map((p, i) => `photo ${i} (index ${p.record.index}) ${p.record.status}${p.record.attempts ? `, attempt ${p.record.attempts}` : ""}, ${p.record.booksFound} books`).join("; ");
    case "synthetic": return `spec ${JSON.stringify({ ...work, kind: undefined })}`;
    default: return work.kind;
  }
}

/** What each scenario's storage must show for the capture to count; the problems found. */
function check(scenario, fixture, d) {
  const problems = [];
  const keys = d.keys;
  const want = (cond, what) => cond || problems.push(what);
  const docs = (prefix) => keys.filter((k) => k.startsWith(prefix)).map((k) => JSON.parse(fixture.storage[k].text));
  const bytesOf = (prefix) => keys.filter((k) => k.startsWith(prefix)).reduce((n, k) => n + Buffer.from(fixture.storage[k].base64, "base64").length, 0);
  switch (scenario) {
    case "csv_mid": {
      const slices = docs("res:csv:");
      want(d.processed === CSV_PERSIST_RECORDS && d.total > d.processed, `processedCount ${d.processed} of ${d.total}`);
      want(slices.length === d.work.resultSlices && slices.length >= 1, `${slices.length} result slices, work says ${d.work.resultSlices}`);
      want(slices.reduce((n, sl) => n + sl.books.length, 0) === d.work.totals.books, "stored books differ from totals.books");
      want(slices.reduce((n, sl) => n + sl.errors.length, 0) === d.work.totals.errors, "stored errors differ from totals.errors");
      want(bytesOf("in:") === d.work.bytes && keys.filter((k) => k.startsWith("in:")).length === 2, "the upload is not two in: slices");
      want(d.tasks.some((t) => t.startsWith("process")), "no process task");
      break;
    }
    case "complete_csv":
      want(!keys.some((k) => k.startsWith("in:")), "the upload is still stored");
      want(docs("res:csv:").reduce((n, sl) => n + sl.books.length, 0) === d.work.totals.books, "stored books differ from totals.books");
      break;
    case "enrich_mid":
      want(d.processed === 10 && docs("res:enr:").length === 10 && d.work.done.filter(Boolean).length === 10, "not exactly the first chunk stored");
      break;
    case "complete_enrich":
      want(docs("res:enr:").length === 25, "not 25 results");
      break;
    case "scan_mid": {
      const photos = d.work.photos.map((p) => p.record.status).join(",");
      want(photos === "done,processing,queued" && keys.includes("res:scan:00") && !keys.includes("res:scan:01"), `photos ${photos}`);
      want(keys.filter((k) => k.startsWith("img:")).length === 3, "photos missing");
      break;
    }
    case "complete_scan":
      want(docs("res:scan:").length === 3 && !keys.some((k) => k.startsWith("img:")), "not three results without photos");
      break;
    case "queued":
      want(d.tasks.some((t) => t.startsWith("start")) && keys.includes("in:0"), "no start task or no upload");
      break;
    case "synthetic_mid":
      want(d.processed === 20, `processedCount ${d.processed}`);
      break;
  }
  return problems;
}

const SCENARIO_TEXT = {
  csv_mid: (f) => `Goodreads CSV import of ${f.inputs.csv.dataRecords} records (${f.inputs.csv.bytes} bytes, so two \`in:\` slices of at most 1 MiB), killed after its first stored progress: 10,000 records read (20 progress updates of 500, the csv_import persist batch), their books in five \`res:csv:*\` slices of at most 2,000 books (the errors and the UTF-8 warning in the first), the rest only in the upload. Exact duplicates sit both before and after the kill point (\`inputs.csv.exactDuplicateRecords\`): records 10,250 and 11,000 and the title/author duplicate 11,500 repeat books stored before it, so only a dedupe memory rebuilt from the stored slices catches them; 11,900 repeats 10,100, read after the kill.`,
  enrich_mid: "Enrichment of 25 books (each chunk has books found by ISBN, found by title and author, and not found; the first also one found through Open Library after Google Books answered 500, an ISBN-10 input, a hyphenated ISBN-13 and an invalid ISBN), killed after the first chunk of 10 was stored (`res:enr:000..009`, with `work.done` true for books 0-9), while the second chunk's 10 lookups hung at the fake providers (their outcomes were never recorded).",
  scan_mid: "Batch scan of 3 photos (indexes 0, 4, 7), killed with photo 0 scanned and stored (`res:scan:00`) and photo 1's Gemini call in flight (its status `processing`, written before the call).",
  queued: "CSV import of tests/fixtures/csv/goodreads.csv (its expected results are goodreads.expected.json beside it) created and never started: no client said `ready` and `READY_TIMEOUT_SECS` is a day, so the stored schedule holds a `start` task a day after creation and `totalCount` is still 0 (it is counted at the start).",
  complete_csv: "The csv_mid file imported to the end: only result slices remain (the upload is deleted at the end). Its results are csv_mid's expected outcome.",
  complete_enrich: "The enrich_mid books enriched to the end, nothing held. Its results are enrich_mid's expected outcome.",
  complete_scan: "The scan_mid photos scanned to the end, nothing held (photos deleted at the end). Its results are scan_mid's expected outcome.",
  synthetic_mid: "Synthetic job (`POST /api/test/jobs`, pipeline csv_import, 40 items, 20 per chunk, 60 s between chunks), killed after its first chunk was stored.",
};

function readme(fixtures, meta) {
  const rows = fixtures.map((f) => {
    const d = describe(f);
    return `| \`${f.scenario}\` | ${d.core.state.pipeline} | ${d.status} | ${d.processed}/${d.total} | ${d.version} | ${keyRanges(d.keys)} |`;
  });
  const sections = fixtures.map((f) => {
    const d = describe(f);
    return [
      `### \`${f.scenario}\``,
      "",
      typeof SCENARIO_TEXT[f.scenario] === "function" ? SCENARIO_TEXT[f.scenario](f) : SCENARIO_TEXT[f.scenario] ?? "",
      "",
      `- job \`${f.jobId}\`, status \`${d.status}\`, processedCount ${d.processed} of ${d.total}, version ${d.version}${d.core.state.currentItem ? `, currentItem "${d.core.state.currentItem}"` : ""}`,
      `- schedule: ${d.tasks.join("; ") || "empty"}`,
      `- alarm: ${iso(f.alarm)}`,
      `- work: ${workDetail(d.work)}`,
      `- keys (${d.keys.length}): ${keyRanges(d.keys)}`,
      "",
    ].join("\n");
  });
  return `# Storage fixtures of the v1 job object (commit ${meta.commit.slice(0, 7)})

Durable Object storage of jobs persisted by the worker at commit \`${meta.commit}\`, captured
from a real \`wrangler dev\` run, so that a redesigned worker can prove it resumes and finishes
jobs that today's code left behind. Regenerate with:

\`\`\`sh
${meta.command}
\`\`\`

It checks the commit out in a throwaway git worktree, builds it, runs it under \`wrangler dev\`
against fake providers (the answers of \`tests/e2e/support/providers.rs\`), drives each scenario
over HTTP and WebSocket, SIGKILLs the whole wrangler process group once every job is in its
wanted state (a crash, not a shutdown), and reads each object's SQLite file from the state
directory. Captured ${meta.capturedAt}; the capture itself (after the build) took ${meta.seconds} s.

## Files

One \`<scenario>.json\` per job:

- \`storage\`: every key of the object, in key order. \`{"text": ...}\` for values stored as
  strings (all JSON documents: \`core\`, \`work\`, \`res:*\`), \`{"base64": ...}\` for values
  stored as bytes (\`Uint8Array\`: the CSV upload \`in:<n>\`, photos \`img:<position>:<n>\`, the
  enrichment input \`in:books\`). Load them back with \`put(key, string)\` and
  \`put(key, Uint8Array)\` respectively; the type matters, the old code reads uploads with
  \`bytes()\` and documents with \`as_string()\`.
- \`alarm\`: the object's alarm (epoch ms) or null. Restore it with \`setAlarm\`: the old code
  keeps its own schedule in \`core.schedule\` and re-arms from it only when it handles an event,
  so a job whose alarm is lost never wakes. \`schedulerAlarm\`: the local runtime's copy of it.
- \`object\`: the object's id (the SQLite file's name, which the runtime derives from the
  name) and the name it was addressed by (the job id, \`idFromName(jobId)\`).
- \`token\`: the job's bearer token (its SHA-256 is \`core.auth.hash\`); \`vars\`: the \`--var\`
  values the worker ran with. Job ids were issued by the server and carry a MAC under
  \`TOKEN_SIGNING_KEY\`, so run the new code with the same key. Provider bases pointed at a fake
  on a random port; point them at yours.
- \`inputs\`: what a test needs to know the right outcome. The mid-run scenarios carry the
  old code's own final answer for the same inputs (\`expected\`, from the matching
  \`complete_*\` job run on the same worker: its \`job_complete\` summary and its results
  document, or for the CSV its counts, errors, warnings and first and last books), and what
  the fake held back at capture (\`heldAtCapture\`: substrings of the request URL, or the
  Gemini scenario marker in the photo's bytes). These answers keep the worker's exact JSON
  (\`2.0\` stays \`2.0\`); only \`summary.duration\` differs from run to run. A resumed
  \`csv_mid\` must also serve the same results as \`complete_csv\` served by the same code.
- \`state.tar.gz\` (${fmtBytes(meta.state.bytes)}; ${fmtBytes(meta.state.files.reduce((n, f) => n + f.bytes, 0))}
  unpacked): the killed worker's whole \`--persist-to\` directory, packed right after the
  SIGKILL and before anything opened it (the JSON fixtures above are read from the same files
  afterwards, so both come from one run), with \`tar --sort=name --owner=0 --group=0
  --numeric-owner --mtime=@<capture time> -I "gzip -9n"\` (paths relative, \`./v3/...\`).
  Unpack it into an empty directory and start a worker on it (\`tar xzf state.tar.gz -C DIR\`,
  then \`wrangler dev --persist-to DIR\` with \`TOKEN_SIGNING_KEY\` from \`vars\`): every
  object wakes exactly as the crash left it, SQLite write-ahead logs and the local runtime's
  alarm table included, with no loading code in between; \`tests/e2e/compat.rs\` does that
  with the current worker. Its files:

${stateListing(meta.state.files, fixtures, meta.others)}
${meta.others.length ? `
  The jobs without a fixture are CSV catch attempts that went past their kill point before
  they could be frozen; they are in the tarball (and resume or stay finished like any other
  job) but nothing checks them.
` : ""}
- The fake answers as \`tests/e2e/support/providers.rs\` does (known ISBNs, \`Unknown\` and
  \`Outage\` titles, Gemini fixtures by the \`scenario=<name>;\` marker in the image), so the
  e2e harness's fake gives the same outcomes when a test resumes these jobs; held requests
  were simply never answered.
- Lifetimes were stretched (\`TOKEN_TTL_SECS\` and \`RESULTS_TTL_SECS\` of a year) so tokens
  stay valid and no cleanup falls due for a year after capture; \`READY_TIMEOUT_SECS\` is a day,
  so \`queued\` starts by itself only if it is loaded more than a day after capture.

## Scenarios

| scenario | pipeline | status | processed/total | version | keys |
|---|---|---|---|---|---|
${rows.join("\n")}

${sections.join("\n")}
## Format notes

- Values are V8-serialised in \`_cf_KV(key TEXT PRIMARY KEY, value BLOB)\` of
  \`<state>/v3/do/bookstrack-jobs-JobObject/<object id>.sqlite\`; the script decodes them with
  Node's \`v8.deserialize\`: strings come back as strings, \`Uint8Array\` values as
  \`Uint8Array\`. The alarm is in the same file, \`_cf_METADATA\` row \`key = 1\`, as integer
  *nanoseconds* since the epoch, and again in the namespace's \`metadata.sqlite\` table
  \`_cf_ALARM(actor_id, scheduled_time, actor_name)\` (also nanoseconds), from which the local
  runtime fires it; the fixtures give milliseconds. \`__miniflare_do_name\` holds the name the
  object was addressed by (the job id); \`object.id\` in a fixture is the file's name.
- The JSON documents are written by serde: \`core\` is \`{auth, state, schedule, throttle,
  runningSince?, throttleWindowMs?}\`, \`work\` is tagged by \`kind\` (\`csv\`, \`enrich\`, \`scan\`,
  \`synthetic\`), a CSV result slice is \`{books, errors, warnings?}\`, an enrichment result is
  one book's outcome, a scan result is the array of one photo's books.
- A finished job keeps its results and \`work\` but not its uploads: \`in:<n>\` of an import
  and \`img:*\` of a scan are deleted at the end; \`in:books\` of an enrichment is kept.
- A job that is mid-run has its schedule stored with the \`process\` task due when an
  earlier run set it (between runs the task is re-set only in memory; \`core\` is written by
  progress checkpoints, not at run boundaries), while the alarm is the one the object last
  armed: the stored \`process\` due time is in the past and the alarm may be later (the
  synthetic job's alarm is its next chunk, a minute on). A finished job's alarm is the
  earliest task left, its token expiry. ${meta.alarmNote}
- The old code, loading a job that has not ended, rewrites \`core\` at once with \`version\`
  raised by the persist batch (20 for csv_import and ai_scan, 5 for batch_enrichment); these
  fixtures are as the running objects left them, before any such reload.
- \`job.persisted\` is logged when the storage write resolves, which under the local runtime
  is before its SQLite transaction commits: a kill right after the line can find the previous
  state on disk. The capture therefore confirms every scenario by reading the SQLite files,
  and freezes workerd (SIGSTOP) at the CSV import's line, letting it run a millisecond at a
  time until the checkpoint is committed, then kills.
`;
}

async function main() {
  fs.mkdirSync(STATE_DIR, { recursive: true });
  const fake = await startFake();
  const vars = {
    ENABLE_TEST_ROUTES: "true",
    LOG_LEVEL: "debug",
    TOKEN_SIGNING_KEY: SIGNING_KEY,
    READY_TIMEOUT_SECS: "86400",
    TOKEN_TTL_SECS: "31536000",
    RESULTS_TTL_SECS: "31536000",
    PROVIDER_TIMEOUT_MS: "300000",
    GEMINI_API_KEY: GEMINI_KEY,
    GEMINI_MODEL,
    GEMINI_API_BASE: `${fake.base}/v1beta`,
    GOOGLE_BOOKS_API_BASE: `${fake.base}/books/v1`,
    OPENLIBRARY_API_BASE: `${fake.base}/ol`,
  };
  const worker = new Worker(vars);
  say(`starting wrangler dev (log: ${LOG_PATH})`);
  await worker.start();
  say(`worker up on ${worker.base}, build ${worker.health.commit}`);
  if (!args.commit.startsWith(worker.health.commit)) {
    throw new Error(`the worker reports commit ${worker.health.commit}, not ${args.commit}`);
  }
  let jobs;
  try {
    jobs = await capture(worker, fake);
  } finally {
    await worker.kill();
    fake.close();
  }
  const capturedAt = new Date().toISOString();
  const state = packState(Date.parse(capturedAt));
  say(`worker killed; packed its state directory (${state.files.length} files, ${fmtBytes(state.files.reduce((n, f) => n + f.bytes, 0))}) into ${fmtBytes(state.bytes)}; reading it`);
  const objects = dumpObjects();
  const fixtures = [];
  const problems = [];
  for (const [scenario, job] of Object.entries(jobs)) {
    const object = objects.find((o) => o.storage.core && JSON.parse(o.storage.core.text).state.jobId === job.created.jobId);
    if (!object) {
      problems.push(`${scenario}: no stored object for job ${job.created.jobId}`);
      continue;
    }
    const fixture = {
      scenario,
      capturedFrom: args.commit,
      capturedAt,
      command: args.command,
      vars,
      jobId: job.created.jobId,
      token: job.created.token,
      pipeline: job.created.pipeline,
      alarm: object.alarm,
      // The local runtime's own copy, from which it fires alarms; a kill can land between
      // the two writes, so they may differ by one re-arm.
      schedulerAlarm: object.schedulerAlarm,
      object: { id: object.actorId, name: object.name },
      inputs: job.inputs,
      storage: object.storage,
    };
    const d = describe(fixture);
    if (d.status !== job.wanted) problems.push(`${scenario}: status ${d.status}, wanted ${job.wanted}`);
    problems.push(...check(scenario, fixture, d).map((p) => `${scenario}: ${p}`));
    fixtures.push(fixture);
  }
  const order = ["csv_mid", "enrich_mid", "scan_mid", "queued", "complete_csv", "complete_enrich", "complete_scan", "synthetic_mid"];
  fixtures.sort((a, b) => order.indexOf(a.scenario) - order.indexOf(b.scenario));
  if (problems.length) throw new Error(`the capture is not what it should be:\n${problems.join("\n")}`);

  // Only now replace the previous fixtures.
  fs.mkdirSync(OUT, { recursive: true });
  for (const f of fs.readdirSync(OUT)) if (f.endsWith(".json")) fs.rmSync(path.join(OUT, f));
  const sizes = {};
  for (const f of fixtures) {
    const text = JSON.stringify(f, null, 1) + "\n";
    fs.writeFileSync(path.join(OUT, `${f.scenario}.json`), text);
    sizes[f.scenario] = Buffer.byteLength(text);
  }
  const seconds = Math.round((Date.now() - started) / 1000);
  const differing = fixtures.filter((f) => f.alarm !== f.schedulerAlarm).map((f) => `\`${f.scenario}\``);
  const alarmNote = differing.length
    ? `In ${differing.join(", ")} the kill fell between the object's alarm write and the local scheduler's, so \`schedulerAlarm\` differs (one re-arm apart); \`alarm\` is the object's own.`
    : "The object's alarm and the local scheduler's copy (`schedulerAlarm`) agree in every fixture of this capture; a kill can fall between their writes, so they may differ by one re-arm in another.";
  const others = objects.filter((o) => !fixtures.some((f) => f.jobId === o.name));
  say(`${others.length} other object(s) in the state not written (failed catch attempts)`);
  fs.copyFileSync(state.file, path.join(OUT, "state.tar.gz"));
  fs.writeFileSync(path.join(OUT, "README.md"), readme(fixtures, { commit: args.commit, command: args.command, capturedAt, seconds, alarmNote, state, others }));

  const table = [["scenario", "status", "processed/total", "alarm", "size", "keys"]];
  for (const f of fixtures) {
    const d = describe(f);
    table.push([f.scenario, d.status, `${d.processed}/${d.total}`, iso(f.alarm), `${(sizes[f.scenario] / 1e6).toFixed(2)} MB`, keyRanges(d.keys)]);
  }
  const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  console.log(table.map((r) => r.map((c, i) => c.padEnd(widths[i])).join("  ")).join("\n"));
  const big = Object.entries(sizes).filter(([, n]) => n > 3_000_000);
  if (big.length) say(`warning: over 3 MB: ${big.map(([s]) => s).join(", ")}`);
  say(`state.tar.gz: ${fmtBytes(state.bytes)} (${state.files.length} files, ${fmtBytes(state.files.reduce((n, f) => n + f.bytes, 0))} unpacked)`);
  if (state.bytes > 3_000_000) say(`warning: state.tar.gz is over 3 MB`);
  say(`wrote ${fixtures.length} fixtures, state.tar.gz and README.md to ${OUT} in ${seconds} s`);
}

if (args["csv-only"]) fs.writeFileSync(args["csv-only"], goodreadsCsv().bytes);
else main().then(() => process.exit(0), (e) => {
  console.error("[capture] failed:", e.stack ?? e);
  killLiveGroups();
  process.exit(1);
});
