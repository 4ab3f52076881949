// The job console: a browser client of the public API and the progress WebSocket, written to
// double as a reference client (docs/PROTOCOL.md). It speaks protocol v1 and the v2 additions
// when the worker sends them: `seq` on messages (shown in the log, sent back as `since` on a
// reconnect), `item_result` rows, `reconnected.resync`, and results pages with `nextCursor`.
//
// Tokens live in this module's memory only: never in the page URL, history, cookies or Web
// Storage. The one URL that carries a token is the socket's, as the contract requires.
//
// The page's Content-Security-Policy allows images from the worker and data: URLs only, so
// enrichment cover URLs (on the providers' hosts) are shown as links, not loaded: the page
// never contacts a third party by itself.

const CSV_LIMIT_BYTES = 10 * 1024 * 1024;
const IMAGE_LIMIT_BYTES = 5 * 1024 * 1024;
const MAX_PHOTOS = 5;
const MAX_BOOKS = 100;
const PAGE_ROWS = 20; // table rows per page
const FETCH_LIMIT = 500; // books asked per results request (v2 pages them)
const LOG_LIMIT = 1000; // log lines kept per job
const PING_EVERY_MS = 30_000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15_000;

const RESULTS_SEGMENT = { csv_import: "csv", ai_scan: "scan", batch_enrichment: "enrichment" };
const PIPELINE_NAMES = {
  csv_import: "CSV import",
  ai_scan: "Shelf scan",
  batch_enrichment: "Enrichment",
};
const FINAL = new Set(["complete", "failed", "canceled"]);

// ---------------------------------------------------------------------------------------
// Small DOM helpers. Text goes in through textContent only (the policy requires Trusted
// Types, so no HTML string can reach the page).

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function clock(ms) {
  const d = new Date(ms);
  const pad = (v, w = 2) => String(v).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** A cover URL as a link that opens in a new tab (never loaded by the page), or nothing. */
function coverLink(url) {
  if (typeof url !== "string" || !url.startsWith("https://")) return null;
  return el("a", { href: url, target: "_blank", rel: "noopener noreferrer", class: "cover", text: "cover ↗" });
}

function showFormError(form, message) {
  const box = form.closest(".card").querySelector(".form-error");
  box.textContent = message || "";
  box.hidden = !message;
}

// ---------------------------------------------------------------------------------------
// HTTP: every answer is the contract's envelope.

/** Calls the API; resolves to `{ status, data, error, headers }`, never rejects. */
async function api(method, path, { token, json, body } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (json !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(json);
  }
  try {
    const response = await fetch(path, { method, headers, body, cache: "no-store", credentials: "omit" });
    let envelope = null;
    try {
      envelope = await response.json();
    } catch {
      envelope = null;
    }
    return {
      status: response.status,
      data: envelope?.data ?? null,
      error: envelope?.error ?? (response.ok ? null : { code: `HTTP_${response.status}`, message: response.statusText }),
      headers: response.headers,
    };
  } catch (err) {
    return { status: 0, data: null, error: { code: "NETWORK", message: `the worker could not be reached (${err.message})` }, headers: null };
  }
}

function describeError(error) {
  if (!error) return "";
  let text = `${error.code}: ${error.message}`;
  if (error.details !== undefined) text += ` ${JSON.stringify(error.details)}`;
  return text;
}

function withQuery(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null) url.searchParams.set(k, v);
  return url.pathname + url.search;
}

// ---------------------------------------------------------------------------------------
// Pure decisions about the socket, kept apart so that they read as the protocol says.

/** Whether a socket closed with `code` should be opened again (docs/PROTOCOL.md 6.6). */
function shouldReconnect(code) {
  switch (code) {
    case 1000: // job complete
    case 1001: // job canceled or deleted
    case 1011: // job failed
    case 1008: // token expired: a new socket would be refused
    case 1002: // our message was refused: a bug here, trying again would repeat it
    case 1003:
    case 1007:
    case 1009:
      return false;
    default: // 1006 lost connection, 1013 too many sockets, 4000 idle (v2), 4001 our drop
      return true;
  }
}

/** The wait before reconnect attempt `attempt` (0-based): doubling, capped, half jittered. */
function backoffMs(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/** When to refresh a token that lives `expiresInSecs`, in ms from now. */
function refreshDelayMs(expiresInSecs) {
  const secs = expiresInSecs > 600 ? expiresInSecs - 300 : expiresInSecs / 2;
  return Math.max(1, secs) * 1000;
}

// ---------------------------------------------------------------------------------------
// Results tables, one column list per pipeline. A cell is text or a node.

const authorOf = (b) => b.author ?? "";
const COLUMNS = {
  csv_import: [
    ["#", (_, i) => i + 1],
    ["Title", (b) => b.title],
    ["Author", authorOf],
    ["ISBN", (b) => b.isbn ?? b.identifier ?? ""],
    ["Shelf", (b) => b.shelf ?? ""],
    ["Rating", (b) => b.rating ?? ""],
    ["Read", (b) => b.dateRead ?? ""],
  ],
  ai_scan: [
    ["Photo", (b) => b.photoIndex ?? ""],
    ["Title", (b) => b.title],
    ["Author", authorOf],
    ["ISBN", (b) => b.isbn ?? ""],
    ["Confidence", (b) => (typeof b.confidence === "number" ? `${Math.round(b.confidence * 100)}%` : "")],
  ],
  batch_enrichment: [
    ["#", (_, i) => i + 1],
    ["Asked for", (b) => [b.input?.title, b.input?.author].filter(Boolean).join(" — ")],
    ["Found", (b) => (b.success ? "✓" : "✗")],
    ["Title", (b) => b.enriched?.title ?? ""],
    ["Authors", (b) => (b.enriched?.authors ?? []).join(", ")],
    ["ISBN-13", (b) => b.enriched?.isbn13 ?? ""],
    ["Publisher", (b) => b.enriched?.publisher ?? ""],
    ["Published", (b) => b.enriched?.publishedDate ?? ""],
    ["Cover", (b) => coverLink(b.enriched?.coverUrl)],
    ["Note", (b) => b.error ?? ""],
  ],
};

/** Columns of free text, which may wrap; the others (numbers, ISBNs, dates) stay on a line. */
const WRAPPING = new Set(["Title", "Author", "Authors", "Asked for", "Publisher", "Note", "Entry", "Error", "Warning"]);

function table(columns, rows, offset = 0) {
  const head = el("tr", {}, ...columns.map(([name]) => el("th", { scope: "col", text: name })));
  const body = rows.map((row, i) =>
    el("tr", {}, ...columns.map(([name, cell]) => el("td", { class: WRAPPING.has(name) && "wrap" }, cell(row, offset + i) ?? ""))),
  );
  return { head, body };
}

// ---------------------------------------------------------------------------------------
// One job: its card, its socket, its results.

const jobs = new Map();

class Job {
  constructor({ jobId, token, pipeline, websocketUrl, expiresIn }) {
    this.id = jobId;
    this.token = token;
    this.pipeline = pipeline ?? "";
    this.socketPath = websocketUrl ?? `/ws/progress?jobId=${encodeURIComponent(jobId)}`;
    this.status = "queued";
    this.processed = 0;
    this.total = null;
    this.progress = 0;
    this.version = 0; // the highest job version applied (JobState / reconnected)
    this.lastSeq = null; // the highest `seq` seen (v2)
    this.socket = null;
    this.attempts = 0; // reconnect attempts since the last ready_ack
    this.timers = new Set();
    this.pingTimer = null;
    this.final = false;
    this.gone = false; // forgotten by the user
    this.resultsUrl = null; // set once the results are asked for
    this.rows = [];
    this.cursor = null;
    this.page = 0;
    this.logCount = 0;
    this.card = this.render();
    if (expiresIn) this.later(refreshDelayMs(expiresIn), () => this.refreshToken());
  }

  // --- the card ---------------------------------------------------------------------

  render() {
    const card = $("#job-template").content.firstElementChild.cloneNode(true);
    card.dataset.jobId = this.id;
    $(".job-id", card).textContent = this.id;
    $(".job-id", card).title = "job id";
    $(".cancel-btn", card).addEventListener("click", () => this.cancel());
    $(".drop-btn", card).addEventListener("click", () => this.simulateDrop());
    $(".forget-btn", card).addEventListener("click", () => this.forget());
    $(".prev-btn", card).addEventListener("click", () => this.showPage(this.page - 1));
    $(".next-btn", card).addEventListener("click", () => this.nextPage());
    $("#jobs").prepend(card);
    $("#no-jobs").hidden = true;
    return card;
  }

  update() {
    const c = this.card;
    c.dataset.status = this.status;
    c.dataset.pipeline = this.pipeline;
    $(".pipeline", c).textContent = PIPELINE_NAMES[this.pipeline] ?? (this.pipeline || "job");
    $(".status", c).textContent = this.status;
    const percent = this.status === "complete" ? 100 : Math.max(0, Math.min(100, Math.floor(this.progress * 100)));
    const bar = $(".bar", c);
    bar.setAttribute("aria-valuenow", String(percent));
    $(".fill", bar).style.width = `${percent}%`;
    const counts = this.total === null ? `${this.processed}` : `${this.processed} / ${this.total}`;
    const parts = [`${percent}%`, counts];
    if (this.currentItem && !FINAL.has(this.status)) parts.push(this.currentItem);
    $(".progress-text", c).textContent = parts.join(" · ");
    $(".cancel-btn", c).disabled = this.final;
    $(".drop-btn", c).disabled = this.final || !this.socket || this.socket.readyState !== WebSocket.OPEN;
  }

  setConn(state, text = state) {
    this.card.dataset.conn = state;
    $(".conn", this.card).textContent = text;
    this.update();
  }

  showError(text) {
    const box = $(".error-box", this.card);
    box.replaceChildren(...(Array.isArray(text) ? text : [text]));
    box.hidden = false;
  }

  log(direction, text, { seq, type } = {}) {
    const list = $(".log-list", this.card);
    const line = el(
      "li",
      { "data-dir": direction, "data-type": type },
      el("span", { class: "t", text: clock(Date.now()) }),
      el("span", { class: "seq", text: seq ?? "—", title: "seq" }),
      el("span", { class: "dir", text: direction }),
      el("span", { class: "msg", text }),
    );
    list.append(line);
    this.logCount += 1;
    while (list.childElementCount > LOG_LIMIT) list.firstElementChild.remove();
    const dropped = this.logCount - list.childElementCount;
    $(".log-count", this.card).textContent = dropped > 0 ? `(${this.logCount}, the first ${dropped} dropped)` : `(${this.logCount})`;
  }

  /** Runs `fn` after `ms`, unless the job is forgotten first. */
  later(ms, fn) {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (!this.gone) fn();
    }, ms);
    this.timers.add(timer);
    return timer;
  }

  // --- state --------------------------------------------------------------------------

  /** Applies a JobState or `reconnected` payload if it is newer than what is shown. */
  applySnapshot(s) {
    if (typeof s.version === "number") {
      if (s.version <= this.version) return;
      this.version = s.version;
    }
    if (s.pipeline) this.pipeline = s.pipeline;
    if (typeof s.totalCount === "number") this.total = s.totalCount;
    if (typeof s.processedCount === "number") this.processed = s.processedCount;
    if (typeof s.progress === "number") this.progress = s.progress;
    this.currentItem = s.currentItem;
    if (s.status) this.status = s.status;
    if (s.status === "complete") this.completed(s.summary, s.resultsUrl);
    else if (s.status === "failed") this.failed(s.error ?? { code: "UNKNOWN", message: "the job failed" });
    else if (s.status === "canceled") this.ended("canceled");
    this.update();
  }

  ended(status) {
    this.status = status;
    this.final = true;
    clearInterval(this.pingTimer);
    this.update();
  }

  /** The end of a completed job, from `job_complete` or a snapshot (a v1 reconnect to an
   * ended job sends both): the summary when given, and the results, asked for once. */
  completed(summary, resultsUrl) {
    this.progress = 1;
    if (this.total !== null) this.processed = this.total;
    this.ended("complete");
    if (summary) this.showSummary(summary);
    const url = resultsUrl ?? (RESULTS_SEGMENT[this.pipeline] && `/v1/${RESULTS_SEGMENT[this.pipeline]}/results/${this.id}`);
    if (url && !this.resultsUrl) this.loadResults(url);
  }

  failed(error) {
    this.ended("failed");
    this.showError([
      el("strong", { text: error.code }),
      ` ${error.message} `,
      el("span", { class: error.retryable ? "pill retry" : "pill noretry", text: error.retryable ? "retryable" : "not retryable" }),
    ]);
  }

  showSummary(summary) {
    const dl = $(".summary", this.card);
    const entries = [];
    for (const [key, value] of Object.entries(summary)) {
      if (value === null || typeof value === "object") continue; // e.g. a scan's per-photo list
      const shown = key === "duration" ? `${(value / 1000).toFixed(1)} s` : String(value);
      entries.push(el("div", {}, el("dt", { text: key }), el("dd", { text: shown })));
    }
    dl.replaceChildren(...entries);
    dl.hidden = false;
  }

  // --- the socket ---------------------------------------------------------------------

  socketUrl(reconnect) {
    const url = new URL(this.socketPath, location.origin);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("token", this.token); // the refreshed one, after a refresh
    if (reconnect) {
      url.searchParams.set("reconnect", "true");
      if (this.lastSeq !== null) url.searchParams.set("since", String(this.lastSeq));
    }
    return url.href;
  }

  connect(reconnect = false) {
    if (this.gone || this.final) return;
    const socket = new WebSocket(this.socketUrl(reconnect));
    this.socket = socket;
    let opened = false;
    this.setConn("connecting", reconnect ? "reconnecting…" : "connecting…");
    const note = reconnect && this.lastSeq !== null ? ` since=${this.lastSeq}` : "";
    this.log("·", `${reconnect ? "reconnecting" : "connecting"}${reconnect ? " (reconnect=true" + note + ")" : ""}`);
    socket.addEventListener("open", () => {
      opened = true;
      this.setConn("open", "live");
      this.send({ type: "ready" });
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_EVERY_MS);
    });
    socket.addEventListener("message", (event) => this.onMessage(event.data));
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      clearInterval(this.pingTimer);
      this.socket = null;
      this.onClose(event.code, event.reason, opened);
    });
  }

  send(message) {
    if (this.socket?.readyState !== WebSocket.OPEN) return;
    const text = JSON.stringify(message);
    this.socket.send(text);
    if (message.type !== "ping") this.log("↑", text, { type: message.type });
  }

  onMessage(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      this.log("↓", text, { type: "unreadable" });
      return;
    }
    if (msg?.type === "pong") return;
    const seq = typeof msg.seq === "number" ? msg.seq : undefined;
    if (seq !== undefined) {
      if (this.lastSeq !== null && seq <= this.lastSeq) {
        this.log("↓", `(already seen) ${text}`, { seq, type: msg.type });
        return;
      }
      this.lastSeq = seq;
    }
    this.log("↓", text, { seq, type: msg.type });
    if (msg.pipeline) this.pipeline = msg.pipeline;
    const p = msg.payload ?? {};
    switch (msg.type) {
      case "ready_ack":
        this.attempts = 0;
        break;
      case "reconnected":
        if (p.resync) this.noteResync();
        this.applySnapshot(p);
        break;
      case "job_started":
        this.status = "running";
        if (typeof p.totalCount === "number") this.total = p.totalCount;
        break;
      case "job_progress":
        if (!this.final) {
          this.status = p.status ?? "running";
          this.processed = p.processedCount ?? this.processed;
          this.progress = p.progress ?? this.progress;
          this.currentItem = p.currentItem;
        }
        break;
      case "item_result":
        this.addItem(p);
        break;
      case "job_complete":
        this.completed(p.summary, p.resultsUrl);
        break;
      case "error":
        this.failed(p);
        break;
      default:
        break; // unknown types are ignored, as the protocol asks
    }
    this.update();
  }

  onClose(code, reason, opened) {
    this.log("·", `closed ${code}${reason ? ` ${reason}` : ""}`, { type: "close" });
    if (this.gone) return;
    if (code === 1001 && !this.final) {
      if (reason === "job deleted" || reason === "job no longer exists") {
        this.showError(`the job no longer exists (${reason})`);
        this.ended(this.status);
      } else {
        this.ended("canceled");
      }
    }
    if (code === 1008) this.showError("the token expired: the job can no longer be followed");
    if (this.final || !shouldReconnect(code)) {
      this.setConn("closed", "closed");
      return;
    }
    if (!opened) {
      // The browser hides why an upgrade was refused; the job-state route tells.
      this.diagnose();
      return;
    }
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    const wait = backoffMs(this.attempts);
    this.attempts += 1;
    this.setConn("waiting", `reconnecting in ${(wait / 1000).toFixed(1)} s`);
    this.log("·", `reconnect attempt ${this.attempts} in ${wait} ms`);
    this.later(wait, () => this.connect(true));
  }

  /** After a refused upgrade: ask the job's state, apply it, and reconnect only if useful. */
  async diagnose() {
    const answer = await api("GET", `/api/job-state/${this.id}`, { token: this.token });
    if (this.gone) return;
    if (answer.status === 200) {
      this.applySnapshot(answer.data);
      if (this.final) this.setConn("closed", "closed");
      else this.scheduleReconnect();
    } else if (answer.status === 401 || answer.status === 404) {
      this.showError(`the socket was refused: ${describeError(answer.error)}`);
      this.final = true;
      this.setConn("closed", "closed");
    } else {
      this.scheduleReconnect();
    }
  }

  noteResync() {
    const note = $(".items-note", this.card);
    note.textContent = "Some rows were missed while disconnected; the results table will have them all.";
    note.hidden = false;
  }

  addItem(p) {
    const section = $(".items", this.card);
    section.hidden = false;
    const parts = [el("span", { class: "idx", text: `#${p.index}` }), el("span", { class: p.success ? "ok" : "bad", text: p.success ? "✓" : "✗" })];
    if (p.book) {
      const b = p.book;
      const found = b.enriched;
      const title = found ? `${found.title}${found.authors?.length ? ` — ${found.authors.join(", ")}` : ""}` : (b.input?.title ?? "");
      parts.push(el("span", { text: title }));
      const link = coverLink(found?.coverUrl);
      if (link) parts.push(link);
    }
    if (Array.isArray(p.books)) {
      const names = p.books.slice(0, 8).map((b) => b.title).join("; ");
      parts.push(el("span", { text: `${p.books.length} book${p.books.length === 1 ? "" : "s"}${names ? `: ${names}` : ""}${p.books.length > 8 ? "; …" : ""}` }));
    }
    const error = p.error ?? p.book?.error;
    if (error) parts.push(el("span", { class: "muted", text: typeof error === "string" ? error : describeError(error) }));
    $(".item-list", this.card).append(el("li", {}, ...parts));
  }

  // --- actions ------------------------------------------------------------------------

  async cancel() {
    $(".cancel-btn", this.card).disabled = true;
    this.log("·", `POST /api/jobs/${this.id}/cancel`);
    const answer = await api("POST", `/api/jobs/${this.id}/cancel`, { token: this.token });
    if (answer.status === 200) {
      this.ended("canceled");
    } else {
      this.log("·", `cancel refused: ${describeError(answer.error)}`);
      if (answer.status !== 409) this.showError(`cancel failed: ${describeError(answer.error)}`);
      this.update();
    }
  }

  /** Closes the socket the way a lost connection ends, so the reconnect path runs. */
  simulateDrop() {
    if (this.socket?.readyState !== WebSocket.OPEN) return;
    this.log("·", "dropping the connection (close 4001)");
    this.socket.close(4001, "simulated drop");
  }

  forget() {
    this.gone = true;
    for (const timer of this.timers) clearTimeout(timer);
    clearInterval(this.pingTimer);
    const socket = this.socket;
    this.socket = null;
    socket?.close(1000, "forgotten");
    this.token = null;
    jobs.delete(this.id);
    this.card.remove();
    $("#no-jobs").hidden = jobs.size > 0;
  }

  async refreshToken() {
    const answer = await api("POST", "/api/token/refresh", { json: { jobId: this.id, oldToken: this.token } });
    if (this.gone) return;
    if (answer.status === 200) {
      this.token = answer.data.token;
      this.log("·", `token refreshed; it lasts ${answer.data.expiresIn} s`);
      this.later(refreshDelayMs(answer.data.expiresIn), () => this.refreshToken());
    } else if (answer.status === 409 || answer.status === 429) {
      const secs = answer.error?.details?.retryAfterSecs ?? answer.error?.details?.retryAfter ?? 60;
      this.later(secs * 1000, () => this.refreshToken());
    } else {
      this.log("·", `token refresh failed: ${describeError(answer.error)}`);
    }
  }

  // --- results ------------------------------------------------------------------------

  async loadResults(url) {
    this.resultsUrl = url;
    const section = $(".results", this.card);
    section.hidden = false;
    $(".results-note", this.card).textContent = "loading…";
    const answer = await api("GET", withQuery(url, { limit: FETCH_LIMIT }), { token: this.token });
    if (this.gone) return;
    if (answer.status !== 200) {
      $(".results-note", this.card).textContent = `results unavailable: ${describeError(answer.error)}`;
      return;
    }
    const data = answer.data ?? {};
    this.rows = Array.isArray(data.books) ? data.books : [];
    this.cursor = data.nextCursor ?? null;
    const notes = [];
    if (data.successRate) notes.push(`${data.successRate} rows imported`);
    if (typeof data.totalDetected === "number") notes.push(`${data.totalDetected} detected, ${data.approved} approved, ${data.needsReview} to review`);
    if (!Array.isArray(data.books)) notes.push(JSON.stringify(data));
    $(".results-note", this.card).textContent = notes.join(" · ");
    this.renderExtra(data);
    this.showPage(0);
  }

  /** Row errors and (v2) warnings of a CSV import; they come on the first page only. */
  renderExtra(data) {
    const blocks = [];
    for (const [key, title, field] of [["errors", "Rows not imported", "error"], ["warnings", "Repaired or dropped values", "warning"]]) {
      const list = data[key];
      if (!Array.isArray(list) || list.length === 0) continue;
      const cols = [["Line", (r) => r.line], ["Title", (r) => r.title ?? r.field ?? ""], [field === "error" ? "Error" : "Warning", (r) => r[field] ?? ""]];
      const { head, body } = table(cols, list);
      blocks.push(el("h5", { text: `${title} (${list.length})` }), el("div", { class: "table-wrap" }, el("table", { class: `${key}-table` }, el("thead", {}, head), el("tbody", {}, ...body))));
    }
    $(".extra", this.card).replaceChildren(...blocks);
  }

  showPage(page) {
    const pages = Math.max(1, Math.ceil(this.rows.length / PAGE_ROWS));
    this.page = Math.max(0, Math.min(page, pages - 1));
    const start = this.page * PAGE_ROWS;
    const columns = COLUMNS[this.pipeline] ?? [["#", (_, i) => i + 1], ["Entry", (r) => JSON.stringify(r)]];
    const { head, body } = table(columns, this.rows.slice(start, start + PAGE_ROWS), start);
    $(".results-table thead", this.card).replaceChildren(head);
    $(".results-table tbody", this.card).replaceChildren(...body);
    const more = this.cursor ? "+" : "";
    const last = Math.min(start + PAGE_ROWS, this.rows.length);
    $(".page-info", this.card).textContent =
      this.rows.length === 0 ? "no rows" : `rows ${start + 1}–${last} of ${this.rows.length}${more} · page ${this.page + 1} of ${pages}${more}`;
    $(".prev-btn", this.card).disabled = this.page === 0;
    $(".next-btn", this.card).disabled = this.page >= pages - 1 && !this.cursor;
  }

  /** The next page, fetching the next results page (`nextCursor`, v2) when the rows run out. */
  async nextPage() {
    if ((this.page + 1) * PAGE_ROWS >= this.rows.length && this.cursor) {
      $(".next-btn", this.card).disabled = true;
      const answer = await api("GET", withQuery(this.resultsUrl, { limit: FETCH_LIMIT, cursor: this.cursor }), { token: this.token });
      if (answer.status === 200) {
        this.rows.push(...(answer.data?.books ?? []));
        this.cursor = answer.data?.nextCursor ?? null;
      } else {
        $(".results-note", this.card).textContent = `the next page failed: ${describeError(answer.error)}`;
      }
    }
    this.showPage(this.page + 1);
  }
}

/** Tracks a job the worker just created (its 202 `data`) or one given by id and token. */
function track(created) {
  const job = new Job(created);
  jobs.set(job.id, job);
  job.update();
  return job;
}

/** Shows the creation answer: a new job, or the error envelope on the form. */
function created(form, answer) {
  if (answer.status !== 202) {
    let message = describeError(answer.error);
    const retry = answer.headers?.get("retry-after");
    if (answer.status === 429 && retry) message += ` (retry in ${retry} s)`;
    showFormError(form, message);
    return null;
  }
  showFormError(form, "");
  const job = track(answer.data);
  job.log("·", `created: 202 ${answer.data.pipeline}, token valid ${answer.data.expiresIn} s`);
  job.connect();
  return job;
}

/** Disables a form's button while `work` runs. */
async function busy(form, work) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    await work();
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------
// The forms.

function setUpCsv() {
  const form = $("#csv-form");
  const zone = $("#csv-drop");
  const input = $("#csv-file");
  let file = null;
  const choose = (chosen) => {
    file = chosen ?? null;
    $(".drop-text", zone).textContent = file ? `${file.name} · ${formatBytes(file.size)}` : "Drop a CSV or TSV export here, or click to choose one";
    zone.classList.toggle("chosen", Boolean(file));
    showFormError(form, "");
  };
  input.addEventListener("change", () => choose(input.files[0]));
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer?.files?.length) choose(e.dataTransfer.files[0]);
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (!file) return showFormError(form, "Choose or drop a file first.");
    if (file.size > CSV_LIMIT_BYTES) return showFormError(form, `${file.name} is ${formatBytes(file.size)}; the limit is 10 MiB.`);
    const body = new FormData();
    body.append("file", file, file.name);
    const format = $("#csv-format").value;
    if (format !== "auto") body.append("format", format); // v2; a v1 worker ignores the part
    return busy(form, async () => {
      if (created(form, await api("POST", "/api/import/csv", { body }))) {
        input.value = "";
        choose(null);
      }
    });
  });
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function setUpScan() {
  const form = $("#scan-form");
  const input = $("#scan-files");
  const text = $(".drop-text", form);
  input.addEventListener("change", () => {
    const files = [...input.files];
    text.textContent = files.length ? files.map((f) => `${f.name} (${formatBytes(f.size)})`).join(", ") : "Choose 1 to 5 shelf photos";
    form.querySelector(".drop").classList.toggle("chosen", files.length > 0);
    showFormError(form, "");
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const files = [...input.files];
    if (files.length === 0) return showFormError(form, "Choose at least one photo.");
    if (files.length > MAX_PHOTOS) return showFormError(form, `${files.length} photos chosen; at most ${MAX_PHOTOS}.`);
    const big = files.find((f) => f.size > IMAGE_LIMIT_BYTES);
    if (big) return showFormError(form, `${big.name} is ${formatBytes(big.size)}; the limit is 5 MiB a photo.`);
    return busy(form, async () => {
      // The batch route takes base64 with or without a data: prefix, for any photo count.
      const images = await Promise.all(files.map(async (f, index) => ({ index, data: await readAsDataUrl(f) })));
      if (created(form, await api("POST", "/api/scan-bookshelf/batch", { json: { images } }))) {
        input.value = "";
        input.dispatchEvent(new Event("change"));
      }
    });
  });
}

/** Parses the enrichment box: `title | author | ISBN` per line (a tab works as `|` too). */
function parseBooks(text) {
  const books = [];
  for (const line of text.split(/\r?\n/)) {
    const [title, author, isbn] = line.split(/\s*[|\t]\s*/).map((s) => s.trim());
    if (!title) continue;
    const book = { title };
    if (author) book.author = author;
    if (isbn) book.isbn = isbn;
    books.push(book);
  }
  return books;
}

function setUpEnrichment() {
  const form = $("#enrich-form");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const books = parseBooks($("#enrich-books").value);
    if (books.length === 0) return showFormError(form, "Write at least one title.");
    if (books.length > MAX_BOOKS) return showFormError(form, `${books.length} books; at most ${MAX_BOOKS} a job.`);
    return busy(form, async () => {
      created(form, await api("POST", "/api/enrichment/batch", { json: { books } }));
    });
  });
}

function setUpWatch() {
  const form = $("#watch-form");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const jobId = $("#watch-id").value.trim().toLowerCase();
    const tokenInput = $("#watch-token");
    const token = tokenInput.value.trim();
    if (!jobId || !token) return showFormError(form, "Both the job id and its token are needed.");
    if (jobs.has(jobId)) return showFormError(form, "That job is already on the page.");
    return busy(form, async () => {
      const answer = await api("GET", `/api/job-state/${encodeURIComponent(jobId)}`, { token });
      if (answer.status !== 200) return showFormError(form, describeError(answer.error));
      showFormError(form, "");
      tokenInput.value = ""; // the token now lives in the job's memory only
      $("#watch-id").value = "";
      const job = track({ jobId: answer.data.jobId, token, pipeline: answer.data.pipeline });
      job.log("·", `watching: job-state ${answer.data.status}, version ${answer.data.version}`);
      job.applySnapshot(answer.data);
      job.connect(true);
      return undefined;
    });
  });
}

async function showHealth() {
  const answer = await api("GET", "/health");
  $("#health").textContent =
    answer.status === 200 ? `worker ${answer.data.version} · commit ${answer.data.commit} · ${location.host}` : `the worker is not healthy: ${describeError(answer.error)}`;
}

// A file dropped outside the drop zone must not make the browser navigate away (and lose
// every token in memory).
for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());

setUpCsv();
setUpScan();
setUpEnrichment();
setUpWatch();
showHealth();
