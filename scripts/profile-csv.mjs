// Profiles one CSV import inside a running `wrangler dev`: samples the CPU of every inspector
// target (the Worker and the job objects) through the DevTools protocol while it uploads a
// file, opens the job's socket and waits for the close, then prints the client-side timeline
// and self time by function. For names in the profile, run a worker built without
// scripts/strip-wasm-names.mjs (run worker-build yourself and point a copy of wrangler.toml's
// `main` at it). Usage, with `wrangler dev --inspector-port 9229` running:
//
//   node scripts/profile-csv.mjs --base http://127.0.0.1:8787 --inspector 9229 \
//     --file /tmp/goodreads.csv [--interval-us 100] [--top 40] [--out /tmp/csv.cpuprofile]
//     [--phases x] [--inclusive REGEX] [--no-profile x]
//
// --phases prints the top functions between the client's marks (upload answered, job_started,
// ...); --inclusive the inclusive time of the functions matching REGEX; --no-profile only
// times the import. Under `wrangler dev` the Worker and its objects share one isolate, so one
// target holds everything.
// `cargo run --release --example goodreads_csv > /tmp/goodreads.csv` writes the bench's file.
import { readFileSync, writeFileSync } from "node:fs";
import WebSocket from "ws";

const args = Object.fromEntries(
  process.argv
    .slice(2)
    .reduce((pairs, arg, i, all) => (arg.startsWith("--") ? [...pairs, [arg.slice(2), all[i + 1]]] : pairs), []),
);
const base = args.base ?? "http://127.0.0.1:8787";
const inspector = args.inspector ?? "9229";
const intervalUs = Number(args["interval-us"] ?? 100);
const top = Number(args.top ?? 40);
const file = readFileSync(args.file);

/// One DevTools connection: `send` resolves with the answer to its command.
async function devtools(url) {
  const ws = new WebSocket(url, { maxPayload: 1 << 30 });
  await new Promise((resolve, reject) => ws.once("open", resolve).once("error", reject));
  let id = 0;
  const waiting = new Map();
  ws.on("message", (data) => {
    const message = JSON.parse(data);
    if (message.id && waiting.has(message.id)) {
      waiting.get(message.id)(message);
      waiting.delete(message.id);
    }
  });
  return {
    send(method, params = {}) {
      id += 1;
      ws.send(JSON.stringify({ id, method, params }));
      return new Promise((resolve) => waiting.set(id, resolve));
    },
    close: () => ws.close(),
  };
}

// --no-profile times the import alone, without the sampler's overhead.
const targets = "no-profile" in args ? [] : await (await fetch(`http://127.0.0.1:${inspector}/json`)).json();
const sessions = [];
for (const target of targets) {
  const session = await devtools(target.webSocketDebuggerUrl);
  await session.send("Profiler.enable");
  await session.send("Profiler.setSamplingInterval", { interval: intervalUs });
  await session.send("Profiler.start");
  sessions.push({ target, session });
}

// The import, as the bench does it: upload, socket, ready, until the close.
const t0 = performance.now();
const at = (label) => timeline.push([label, performance.now() - t0]);
const timeline = [];
const answer = await fetch(`${base}/api/import/csv`, {
  method: "POST",
  headers: { "content-type": "text/csv" },
  body: file,
});
at("upload answered");
const created = (await answer.json()).data;
if (!created?.websocketUrl) throw new Error(`creation failed: ${answer.status}`);
const socket = new WebSocket(base.replace(/^http/, "ws") + created.websocketUrl);
await new Promise((resolve) => socket.once("open", resolve));
at("socket open");
socket.send(JSON.stringify({ type: "ready" }));
let progress = 0;
const closed = new Promise((resolve) => socket.once("close", (code) => resolve(code)));
socket.on("message", (data) => {
  const message = JSON.parse(data);
  if (message.type === "job_progress") {
    progress += 1;
    if (progress === 1) at("first job_progress");
  } else {
    at(message.type);
  }
});
const code = await closed;
at(`closed ${code} (${progress} progress messages)`);

for (const [label, ms] of timeline) console.log(`${ms.toFixed(1).padStart(8)} ms  ${label}`);
const total = performance.now() - t0;
console.log(`${(50_000 / (total / 1000)).toFixed(0)} rows/s if the file has 50,000 rows\n`);

for (const { target, session } of sessions) {
  const { result } = await session.send("Profiler.stop");
  session.close();
  const profile = result.profile;
  // --out PREFIX: each target's profile as PREFIX.<n>, for Chrome DevTools or further sums.
  if (args.out) writeFileSync(`${args.out}.${sessions.findIndex((s) => s.target === target)}`, JSON.stringify(profile));
  // Self time: each sample is charged the time until the next one.
  const selfUs = new Map();
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  });
  const byName = new Map();
  let busy = 0;
  let all = 0;
  for (const [id, us] of selfUs) {
    const frame = nodes.get(id).callFrame;
    const name = frame.functionName || `(anonymous ${frame.url.split("/").pop()}:${frame.lineNumber})`;
    byName.set(name, (byName.get(name) ?? 0) + us);
    all += us;
    if (name !== "(idle)" && name !== "(program)") busy += us;
  }
  if (busy < 1000) continue;
  // Busy and idle time between the client's marks (the profile starts just before t0).
  const phases = timeline.map(([label, ms]) => ({ label, end: ms * 1000, busy: 0, idle: 0 }));
  let clock = 0;
  profile.samples.forEach((id, i) => {
    clock += profile.timeDeltas[i] ?? 0;
    const phase = phases.find((p) => clock < p.end) ?? phases[phases.length - 1];
    const name = nodes.get(id).callFrame.functionName;
    const delta = profile.timeDeltas[i + 1] ?? 0;
    if (name === "(idle)") phase.idle += delta;
    else phase.busy += delta;
    const label = name || "(anonymous)";
    phase.self ??= new Map();
    phase.self.set(label, (phase.self.get(label) ?? 0) + delta);
  });
  console.log("phase (until the mark)            busy ms   idle ms");
  for (const p of phases) {
    console.log(`${p.label.padEnd(34)} ${(p.busy / 1000).toFixed(1).padStart(7)} ${(p.idle / 1000).toFixed(1).padStart(9)}`);
  }
  if ("phases" in args) {
    // --phases: the functions with the most self time in each phase.
    for (const p of phases.filter((p) => p.busy > 10_000)) {
      console.log(`  -- ${p.label}`);
      const rows = [...(p.self ?? [])].filter(([n]) => n !== "(idle)").sort((a, b) => b[1] - a[1]);
      for (const [name, us] of rows.slice(0, 12)) {
        console.log(`  ${(us / 1000).toFixed(1).padStart(7)} ms  ${name.slice(0, 120)}`);
      }
    }
  }
  // Inclusive time: each sample counts once for every distinct function on its stack.
  const parent = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const inclusive = new Map();
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i + 1] ?? 0;
    const seen = new Set();
    for (let at = id; at !== undefined; at = parent.get(at)) {
      const frame = nodes.get(at).callFrame;
      seen.add(frame.functionName || `(anonymous ${frame.url.split("/").pop()}:${frame.lineNumber})`);
    }
    for (const name of seen) inclusive.set(name, (inclusive.get(name) ?? 0) + delta);
  });
  console.log(`== ${target.title} (${target.url}): ${(all / 1000).toFixed(0)} ms sampled, ${(busy / 1000).toFixed(0)} ms busy`);
  const rows = [...byName].sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [name, us] of rows) {
    const share = name === "(idle)" ? "" : `${((100 * us) / busy).toFixed(1)}%`;
    console.log(`${(us / 1000).toFixed(1).padStart(8)} ms ${share.padStart(6)}  ${name.slice(0, 140)}`);
  }
  if (args.inclusive) {
    // --inclusive REGEX: inclusive time of the functions whose name matches.
    const pattern = new RegExp(args.inclusive);
    console.log(`-- inclusive, functions matching /${args.inclusive}/`);
    const matching = [...inclusive].filter(([name]) => pattern.test(name)).sort((a, b) => b[1] - a[1]);
    for (const [name, us] of matching.slice(0, top)) {
      console.log(`${(us / 1000).toFixed(1).padStart(8)} ms ${`${((100 * us) / busy).toFixed(1)}%`.padStart(6)}  ${name.slice(0, 140)}`);
    }
  }
  console.log("");
}
