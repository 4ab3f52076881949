//! `npm run bench`: measured speed, cost and size of the real worker under `wrangler dev`.
//!
//! Builds the release worker (through the end-to-end harness), starts it on loopback, runs
//! each scenario `BENCH_REPS` times (default 5), stops everything, prints one table and
//! writes `bench/results.json` with min/median/max of every figure. Scenarios:
//!
//! 1. Latency and its floors, measured in the same run: job creation → socket open, first
//!    socket (a fresh object) and second (warm), over `BENCH_JOBS` jobs (default 200),
//!    p50/p95/p99; the first request to a never-used object, the same request to an object in
//!    memory and `/health` (the Worker alone), each from a new client over a new connection;
//!    `ready` → `ready_ack` (first and repeated) next to the runtime's own answer to a ping
//!    (no object code), and the ratios to those floors.
//! 2. Fan-out: one job, 8 sockets, 2,000 uncoalesced progress updates: messages per second
//!    delivered, summed over the sockets, and the end-to-end time.
//! 3. Storage operations per 1,000 progress updates under each pipeline's throttle policy, as
//!    counted by the job object itself, and the ratio to the policy's minimum.
//! 4. CSV import of 50,000 Goodreads rows from upload to `job_complete`, next to the native
//!    parser's rows/s (the ceiling), measured right before it in the same repetition, and the
//!    two as a ratio per repetition: this machine's speed drifts over minutes, and pairs
//!    taken together drift together.
//! 5. Cost per job: a 2,000-row CSV import, a 1-photo scan and a 100-book enrichment (against
//!    fake providers with a fixed latency), each with a client that stays connected and one
//!    that goes to the background after `ready`, priced per 1,000 jobs from the counts in each
//!    job's `job.cost` log line (`src/cost.rs`).
//! 6. Wasm size, raw and gzip -9, next to Cloudflare's limits.
//! 7. Hibernation: idle jobs with open sockets are evicted (a ping while idle constructs
//!    nothing) and a message afterwards wakes them with their state intact.
//!
//! The worker runs at the default log level, as in production, except for the hibernation
//! scenario, which counts constructions from debug lines.
#![cfg(not(target_arch = "wasm32"))]

// The benchmark drives the worker with the end-to-end harness and uses only part of it.
#[allow(dead_code, unused_imports)]
#[path = "../e2e/support/mod.rs"]
mod support;

use bookstrack_jobs::cost::{Usage, PRICES};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};
use support::providers::{image, Providers};
use support::*;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Whether a scenario runs: all of them unless `BENCH_ONLY` names some (comma-separated:
/// latency, fanout, storage, csv, cost, hibernation). A partial run writes its figures to
/// `target/bench/results.json`, never over `bench/results.json`.
fn runs(scenario: &str) -> bool {
    match std::env::var("BENCH_ONLY") {
        Ok(only) => only.split(',').any(|s| s.trim() == scenario),
        Err(_) => true,
    }
}

/// A figure as the table shows it: more digits for small values (ratios, dollars).
fn show(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 || v == 0.0 => format!("{value:.1}"),
        v if v >= 1.0 => format!("{value:.2}"),
        _ => format!("{value:.4}"),
    }
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Every figure's value in each repetition, with its unit and target.
#[derive(Default)]
struct Figures {
    values: BTreeMap<String, (Vec<f64>, &'static str, &'static str)>,
    order: Vec<String>,
}

impl Figures {
    fn record(&mut self, name: &str, unit: &'static str, target: &'static str, value: f64) {
        if !self.values.contains_key(name) {
            self.order.push(name.to_string());
        }
        self.values
            .entry(name.to_string())
            .or_insert((Vec::new(), unit, target))
            .0
            .push(value);
    }

    /// Records `label pNN` in ms for each percentile asked for, with its target.
    fn record_latency(&mut self, label: &str, values: &[f64], targets: &[(f64, &'static str)]) {
        for (p, target) in targets {
            let value = percentile(values, *p);
            self.record(&format!("{label} p{p}"), "ms", target, value);
        }
    }

    fn summary(&self, name: &str) -> (f64, f64, f64) {
        let v = &self.values[name].0;
        (
            percentile(v, 0.0),
            percentile(v, 50.0),
            percentile(v, 100.0),
        )
    }
}

async fn timed_connect(w: &Worker, path: &str) -> (Socket, f64) {
    let started = Instant::now();
    let socket = Socket::connect_path(w, path).await.expect("upgrade");
    (socket, started.elapsed().as_secs_f64() * 1_000.0)
}

async fn upgrade_latency(w: &Worker, jobs: usize, rep: usize, figures: &mut Figures) {
    let (mut cold, mut warm, mut unused, mut live, mut health) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Each request below comes from a new client (a new address, so a new rate limiter
    // object) over a new connection: only what stands behind the Worker differs.
    let timed_get = |path: String, token: Option<String>| async move {
        let client = http();
        let started = Instant::now();
        let mut request = client.get(w.url(&path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let status = request.send().await.unwrap().status().as_u16();
        (status, started.elapsed().as_secs_f64() * 1_000.0)
    };
    for n in 0..jobs {
        let job = synthetic(w, json!({ "items": 1 })).await;
        let (first, first_ms) = timed_connect(w, &job.websocket_url).await;
        let (second, second_ms) = timed_connect(w, &job.websocket_url).await;
        cold.push(first_ms);
        warm.push(second_ms);
        // The floor of first contact: the Worker alone.
        let (status, ms) = timed_get("/health".into(), None).await;
        assert_eq!(status, 200);
        health.push(ms);
        // A never-used object: an id nobody created (the object is constructed to say 404).
        let id = format!("{:08x}-{rep:04x}-4000-8000-{n:012x}", std::process::id());
        let (status, ms) = timed_get(format!("/api/job-state/{id}"), Some("x".into())).await;
        assert_eq!(status, 404);
        unused.push(ms);
        // The same request to an object that is in memory (its sockets are open).
        let path = format!("/api/job-state/{}", job.job_id);
        let (status, ms) = timed_get(path, Some(job.token.clone())).await;
        assert_eq!(status, 200);
        live.push(ms);
        drop((first, second));
    }
    for (label, values, target50, target99) in [
        ("upgrade first socket", &cold, "≤ 25 (fresh object)", ""),
        ("upgrade second socket", &warm, "≤ 5", "≤ 25"),
    ] {
        figures.record_latency(
            label,
            values,
            &[(50.0, target50), (95.0, ""), (99.0, target99)],
        );
    }
    for (label, values, target) in [
        ("/health round trip (the floor)", &health, ""),
        ("first request to a never-used object", &unused, "≤ 25"),
        ("the same request to an object in memory", &live, ""),
    ] {
        figures.record_latency(label, values, &[(50.0, target), (99.0, "")]);
    }
    figures.record(
        "first request to a never-used object ÷ /health (p50)",
        "ratio",
        "≤ 2",
        percentile(&unused, 50.0) / percentile(&health, 50.0),
    );
}

/// `ready` → `ready_ack` on an open socket, first and repeated, next to the runtime's own
/// answer to an exact `{"type":"ping"}` (no object code runs) and to a ping the runtime does
/// not recognise (`{ "type": "ping" }`, answered by the object: the cost of reaching object
/// code at all). Every timed message is sent after the same pause, when the object has
/// finished with the one before: a message sent while the object is still busy waits for it,
/// even a ping the runtime answers. Each job runs its first item and then waits, so the
/// object is idle while the repeated messages are timed; it is canceled afterwards.
async fn ready_latency(w: &Worker, jobs: usize, figures: &mut Figures) {
    const REPEATS: usize = 3;
    const PAUSE: Duration = Duration::from_millis(10);
    let (mut first, mut repeated, mut pings, mut object_pings) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let ms = |started: Instant| started.elapsed().as_secs_f64() * 1_000.0;
    for _ in 0..jobs {
        let job = synthetic(w, json!({ "items": 2, "chunkDelayMs": 60_000 })).await;
        let mut ws = Socket::connect(w, &job).await;
        tokio::time::sleep(PAUSE).await;
        let started = Instant::now();
        ws.ready().await;
        ws.until("ready_ack").await;
        first.push(ms(started));
        // The first item is done and the next is a minute away: the object is idle.
        ws.until("job_progress").await;
        for _ in 0..REPEATS {
            for (text, times) in [
                (r#"{"type":"ping"}"#, &mut pings),
                (r#"{ "type": "ping" }"#, &mut object_pings),
            ] {
                tokio::time::sleep(PAUSE).await;
                let started = Instant::now();
                ws.send_text(text).await;
                ws.until("pong").await;
                times.push(ms(started));
            }
            tokio::time::sleep(PAUSE).await;
            let started = Instant::now();
            ws.ready().await;
            ws.until("ready_ack").await;
            repeated.push(ms(started));
            ws.until("reconnected").await;
        }
        let path = format!("/api/jobs/{}/cancel", job.job_id);
        let answer = post_json(w, &path, &json!({}), Some(&job.token)).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(ws.until_closed().await.code, 1001);
    }
    let ping_p50 = percentile(&pings, 50.0);
    for (label, values) in [
        ("ping answered by the runtime (the floor)", &pings),
        ("ping answered by the object", &object_pings),
        ("ready → ready_ack, first", &first),
        ("ready → ready_ack, repeated", &repeated),
    ] {
        figures.record_latency(label, values, &[(50.0, ""), (99.0, "")]);
    }
    for (label, values, target) in [
        ("ready → ready_ack, first", &first, "≤ 2"),
        ("ready → ready_ack, repeated", &repeated, "≤ 2"),
        ("ping answered by the object", &object_pings, ""),
    ] {
        figures.record(
            &format!("{label} ÷ runtime's ping (p50)"),
            "ratio",
            target,
            percentile(values, 50.0) / ping_p50,
        );
    }
}

async fn fan_out(w: &Worker, figures: &mut Figures) {
    const UPDATES: usize = 2_000;
    const SOCKETS: usize = 8;
    let job = synthetic(
        w,
        json!({ "items": UPDATES, "itemsPerChunk": UPDATES, "coalesceMs": 0 }),
    )
    .await;
    let mut sockets = Vec::new();
    for _ in 0..SOCKETS {
        sockets.push(Socket::connect(w, &job).await);
    }
    let started = Instant::now();
    sockets[0].ready().await;
    let closes = futures_util::future::join_all(sockets.iter_mut().map(|s| s.until_closed())).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(closes.iter().all(|c| c.code == 1000), "{closes:?}");
    let delivered: usize = sockets
        .iter()
        .map(|s| s.of_kind("job_progress").len())
        .sum();
    assert_eq!(
        delivered,
        UPDATES * SOCKETS,
        "every update reached every socket"
    );
    figures.record(
        "fan-out to 8 sockets",
        "msg/s",
        "≥ 10,000",
        delivered as f64 / elapsed,
    );
    figures.record("fan-out end-to-end", "ms", "", elapsed * 1_000.0);
}

async fn storage_per_thousand(w: &Worker, figures: &mut Figures) {
    for (pipeline, per_write) in [
        ("csv_import", 20.0),
        ("ai_scan", 20.0),
        ("batch_enrichment", 5.0),
    ] {
        let job = synthetic(
            w,
            json!({ "pipeline": pipeline, "items": 1_000, "itemsPerChunk": 100 }),
        )
        .await;
        let mut ws = Socket::connect(w, &job).await;
        ws.ready().await;
        assert_eq!(ws.until_closed().await.code, 1000);
        let done = w.job_logged_end(&job.job_id).await;
        let writes = done["storageWrites"].as_f64().unwrap();
        let reads = done["storageReads"].as_f64().unwrap();
        let minimum = 1_000.0 / per_write;
        let target = if pipeline == "csv_import" {
            "≤ 55"
        } else {
            ""
        };
        figures.record(
            &format!("storage writes / 1,000 updates, {pipeline}"),
            "writes",
            target,
            writes,
        );
        figures.record(
            &format!("storage reads / 1,000 updates, {pipeline}"),
            "reads",
            target,
            reads,
        );
        figures.record(
            &format!("writes ÷ minimum ({minimum:.0}), {pipeline}"),
            "ratio",
            "",
            writes / minimum,
        );
        figures.record(
            &format!("alarm sets / 1,000 updates, {pipeline}"),
            "sets",
            "",
            done["alarmSets"].as_f64().unwrap(),
        );
    }
}

/// Imports `file` as a phone would (the upload, then a socket and `ready`) and returns the time
/// from the start of the upload to the socket's close 1000, and the final summary.
async fn import_to_close(w: &Worker, file: &[u8]) -> (f64, Value) {
    let started = Instant::now();
    let resp = http()
        .post(w.url("/api/import/csv"))
        .header("content-type", "text/csv")
        .body(file.to_vec())
        .send()
        .await
        .unwrap();
    let job = Created::from_answer(&Answer::from(resp).await);
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    assert_eq!(ws.until_closed().await.code, 1000);
    let elapsed = started.elapsed().as_secs_f64();
    (
        elapsed,
        ws.of_kind("job_complete")[0]["payload"]["summary"].clone(),
    )
}

/// The import in workerd, after the native parser's own five runs, and the ratio of the two.
async fn csv_import(w: &Worker, file: &[u8], figures: &mut Figures) {
    let native = native_csv();
    // The example times five runs itself; each is one sample of the ceiling.
    for sample in native["rows_per_s_samples"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let rows_per_s = sample.as_f64().unwrap_or(0.0);
        figures.record("native CSV parser (ceiling)", "rows/s", "", rows_per_s);
    }
    let (elapsed, summary) = import_to_close(w, file).await;
    assert_eq!(summary["totalProcessed"], 50_000);
    let rows_per_s = 50_000.0 / elapsed;
    figures.record(
        "CSV import in workerd, 50,000 rows",
        "rows/s",
        "≥ 20,000",
        rows_per_s,
    );
    let native_median = native["rows_per_s"].as_f64().expect("the example's median");
    figures.record(
        "CSV in workerd ÷ native parser, paired",
        "%",
        "≥ 25",
        100.0 * rows_per_s / native_median,
    );
    figures.record(
        "CSV import upload → job_complete",
        "ms",
        "",
        elapsed * 1_000.0,
    );
}

/// The small-job floor: a 1,000-row import from the start of its upload to the close, the
/// median of five in a row.
async fn small_csv_import(w: &Worker, file: &[u8], figures: &mut Figures) {
    let mut times = Vec::new();
    for _ in 0..5 {
        let (elapsed, summary) = import_to_close(w, file).await;
        assert_eq!(summary["totalProcessed"], 1_000);
        times.push(elapsed * 1_000.0);
    }
    figures.record(
        "CSV import, 1,000 rows: upload → close",
        "ms",
        "≤ 100",
        percentile(&times, 50.0),
    );
}

/// The native parser's throughput, from the release build of the throughput example.
fn native_csv() -> Value {
    let out = Command::new("cargo")
        .args(["run", "--quiet", "--release", "--example", "csv_throughput"])
        .current_dir(support::wrangler::repo_root())
        .output()
        .expect("running the throughput example");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("{}")).expect("the example's JSON line")
}

/// How long the fake providers take to answer, standing in for the real ones' latency: the
/// object is awake (and billed) while it awaits them. Gemini takes longer on a real photo.
const BOOK_LOOKUP_MS: u64 = 100;
const GEMINI_SCENARIO: &str = "slow"; // answers after 700 ms

/// The three jobs the cost table prices: what each creation route is sent.
#[derive(Clone, Copy)]
enum CostJob {
    Csv2000,
    Scan1,
    Enrich100,
}

impl CostJob {
    const ALL: [CostJob; 3] = [CostJob::Csv2000, CostJob::Scan1, CostJob::Enrich100];

    fn label(self) -> &'static str {
        match self {
            CostJob::Csv2000 => "2,000-row CSV import",
            CostJob::Scan1 => "1-photo scan",
            CostJob::Enrich100 => "100-book enrichment",
        }
    }

    async fn create(self, w: &Worker) -> Created {
        let answer = match self {
            CostJob::Csv2000 => {
                let (file, _) = bookstrack_jobs::pipelines::csv::generate_goodreads(2_000, 7);
                post_bytes(w, "/api/import/csv", Some("text/csv"), file).await
            }
            CostJob::Scan1 => {
                let photo = image("jpeg", GEMINI_SCENARIO);
                post_bytes(w, "/api/scan-bookshelf", Some("image/jpeg"), photo).await
            }
            CostJob::Enrich100 => {
                let books: Vec<Value> = (0..100)
                    .map(|i| json!({ "title": format!("Volume {i}"), "author": format!("Writer {i}") }))
                    .collect();
                post_json(w, "/api/enrichment/batch", &json!({ "books": books }), None).await
            }
        };
        Created::from_answer(&answer)
    }
}

/// Runs each [`CostJob`] twice, with a client that stays connected to the end and with one
/// that goes to the background (drops its connection) once `ready` is acknowledged, and
/// prices the counts of each job's `job.cost` line per 1,000 jobs. Returns the counts, for
/// `bench/results.json`.
async fn cost_per_job(w: &Worker, figures: &mut Figures) -> Vec<Value> {
    let mut counts = Vec::new();
    for job_kind in CostJob::ALL {
        for stays in [true, false] {
            let job = job_kind.create(w).await;
            let mut ws = Socket::connect(w, &job).await;
            ws.ready().await;
            ws.until("ready_ack").await;
            if stays {
                let closed = ws.until_closed().await;
                assert_eq!(closed.code, 1000, "{:?}", ws.kinds());
            } else {
                ws.vanish();
            }
            let line = w
                .wait_event("the job's cost", |e| {
                    e["event"] == "job.cost" && e["jobId"] == job.job_id.as_str()
                })
                .await;
            assert_eq!(line["ended"], "completed", "{line}");
            let usage: Usage = serde_json::from_value(line.clone()).unwrap();
            let client = if stays {
                "client stays"
            } else {
                "client backgrounds"
            };
            let label = format!("{}, {client}", job_kind.label());
            let thousand = PRICES.cost(&usage).times(1_000.0);
            figures.record(
                &format!("$ per 1,000 jobs: {label}"),
                "$",
                "",
                thousand.total(),
            );
            counts.push(json!({ "job": label, "usage": usage, "dollarsPerThousand": thousand }));
        }
    }
    counts
}

/// The cost table under the figures: each job's counts from its last repetition.
fn print_costs(counts: &[Value]) {
    println!(
        "\nCost per job (prices of {}; counts from the job.cost line of the last repetition;\n\
         book lookups answer in {BOOK_LOOKUP_MS} ms, Gemini in 700 ms):\n",
        PRICES.as_of
    );
    println!("| job | requests | msgs in | msgs out | alarms | awake ms | rows read | rows written | alarm sets | $ / 1,000 jobs |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let last: BTreeMap<String, &Value> = counts
        .iter()
        .map(|c| (c["job"].as_str().unwrap_or("").to_string(), c))
        .collect();
    for entry in counts.iter().take(6) {
        let c = last[entry["job"].as_str().unwrap_or("")];
        let u = &c["usage"];
        let d = &c["dollarsPerThousand"];
        let total: f64 = ["requests", "duration", "rowsRead", "rowsWritten"]
            .iter()
            .map(|k| d[k].as_f64().unwrap_or(0.0))
            .sum();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            c["job"].as_str().unwrap_or(""),
            u["requests"],
            u["messagesIn"],
            u["messagesOut"],
            u["alarms"],
            u["awakeMs"],
            u["rowsRead"],
            u["rowsWritten"],
            u["alarmSets"],
            show(total)
        );
    }
}

fn wasm_size(figures: &mut Figures) {
    let wasm = support::wrangler::repo_root().join("build/index_bg.wasm");
    let raw = std::fs::metadata(&wasm).unwrap().len() as f64;
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -9 -c '{}' | wc -c", wasm.display()))
        .output()
        .unwrap();
    let gzip: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    figures.record("wasm raw", "KB", "", raw / 1_000.0);
    figures.record(
        "wasm gzip -9",
        "KB",
        "≤ 600 (Cloudflare: 3,000 free / 10,000 paid)",
        gzip / 1_000.0,
    );
}

async fn hibernation(w: &Worker, idle: Duration, figures: &mut Figures) {
    const JOBS: usize = 5;
    let constructions = |w: &Worker, id: &str| {
        w.events()
            .iter()
            .filter(|e| e["event"] == "object.constructed" && e["object"] == id)
            .count()
    };
    let mut jobs = Vec::new();
    for _ in 0..JOBS {
        let job = synthetic(w, json!({ "items": 3 })).await;
        let before = job_state(w, &job).await;
        let socket = Socket::connect(w, &job).await;
        jobs.push((job, before, socket));
    }
    // Idle: no request, no alarm due (the ready timeout is far away).
    tokio::time::sleep(idle).await;
    let (mut quiet_pings, mut woken, mut intact) = (0, 0, 0);
    for (job, before, socket) in &mut jobs {
        let built = constructions(w, &job.job_id);
        socket.send_text(r#"{"type":"ping"}"#).await;
        assert_eq!(socket.next().await.unwrap(), json!({ "type": "pong" }));
        // Give a construction the chance to be logged before counting again.
        server_time_passes(w, 50).await;
        quiet_pings += usize::from(constructions(w, &job.job_id) == built);
        // A message the runtime cannot answer by itself wakes the object; its constructor's
        // log line reaches the log shortly after the answer.
        socket.send_text(r#"{ "type": "ping" }"#).await;
        assert_eq!(socket.next().await.unwrap(), json!({ "type": "pong" }));
        let deadline = Instant::now() + Duration::from_secs(5);
        while constructions(w, &job.job_id) == built && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        woken += usize::from(constructions(w, &job.job_id) > built);
        let state = job_state(w, job).await;
        let same = [
            "status",
            "processedCount",
            "totalCount",
            "startTime",
            "pipeline",
        ]
        .iter()
        .all(|k| state[k] == before[k]);
        intact += usize::from(same && state["version"].as_u64() > before["version"].as_u64());
    }
    figures.record(
        "idle pings answered without waking the object",
        "of 5",
        "5",
        quiet_pings as f64,
    );
    figures.record(
        "objects woken by a message after the idle period",
        "of 5",
        "5",
        woken as f64,
    );
    figures.record(
        "woken objects with their state intact",
        "of 5",
        "5",
        intact as f64,
    );
}

#[tokio::test]
#[ignore = "a benchmark: run it with npm run bench"]
async fn bench() {
    // The e2e harness checks every message against the schema; here that would time the
    // client, not the worker.
    support::schema::stop_checking();
    let reps = env_number("BENCH_REPS", 5);
    let jobs = env_number("BENCH_JOBS", 200);
    let idle = Duration::from_secs(env_number("BENCH_IDLE_SECS", 20) as u64);
    // The default log level, as in production: per-request lines are debug-only. The fake
    // providers stand in for Gemini and the book APIs in the cost scenario.
    let providers = Providers::start(Duration::from_millis(BOOK_LOOKUP_MS));
    let w = Worker::start(
        providers.options(
            test_options()
                .var("READY_TIMEOUT_SECS", 600)
                .var("LOG_LEVEL", "info"),
        ),
    )
    .await;
    let (file, _) = bookstrack_jobs::pipelines::csv::generate_goodreads(50_000, 3);
    let (small_file, _) = bookstrack_jobs::pipelines::csv::generate_goodreads(1_000, 5);
    let mut figures = Figures::default();
    let mut costs = Vec::new();
    for rep in 0..reps {
        eprintln!("[bench] repetition {} of {reps}", rep + 1);
        if runs("latency") {
            upgrade_latency(&w, jobs, rep, &mut figures).await;
            ready_latency(&w, jobs.div_ceil(2), &mut figures).await;
        }
        if runs("fanout") {
            fan_out(&w, &mut figures).await;
        }
        if runs("storage") {
            storage_per_thousand(&w, &mut figures).await;
        }
        if runs("csv") {
            csv_import(&w, &file, &mut figures).await;
            small_csv_import(&w, &small_file, &mut figures).await;
        }
        if runs("cost") {
            costs.extend(cost_per_job(&w, &mut figures).await);
        }
        wasm_size(&mut figures);
    }
    drop(w);
    if runs("hibernation") {
        // Constructions are counted from debug lines, so this scenario logs everything.
        eprintln!("[bench] hibernation: {} s idle", idle.as_secs());
        let w = Worker::start(test_options().var("READY_TIMEOUT_SECS", 600)).await;
        hibernation(&w, idle, &mut figures).await;
    }

    println!("\n| figure | unit | min | median | max | target |\n|---|---|---:|---:|---:|---|");
    let mut json_figures = Map::new();
    for name in &figures.order {
        let (min, median, max) = figures.summary(name);
        let (values, unit, target) = &figures.values[name];
        println!(
            "| {name} | {unit} | {} | {} | {} | {target} |",
            show(min),
            show(median),
            show(max)
        );
        json_figures.insert(
            name.clone(),
            json!({ "unit": unit, "min": min, "median": median, "max": max, "target": target, "samples": values }),
        );
    }
    if !costs.is_empty() {
        print_costs(&costs);
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let results = json!({
        "machine": { "cpuModel": cpu, "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), "os": std::env::consts::OS },
        "commit": commit,
        "repetitions": reps,
        "upgradeJobsPerRepetition": jobs,
        "hibernationIdleSecs": idle.as_secs(),
        "command": "npm run bench",
        "figures": json_figures,
        "prices": { "asOf": PRICES.as_of, "perMillionRequests": PRICES.per_million_requests, "perMillionGbS": PRICES.per_million_gb_s, "billedMemoryGb": PRICES.billed_memory_gb, "perMillionRowsRead": PRICES.per_million_rows_read, "perMillionRowsWritten": PRICES.per_million_rows_written, "messagesPerRequest": PRICES.messages_per_request },
        "providerLatencyMs": { "bookLookup": BOOK_LOOKUP_MS, "gemini": 700 },
        "costs": costs,
    });
    let partial = std::env::var("BENCH_ONLY").is_ok();
    let dir = support::wrangler::repo_root().join(if partial { "target/bench" } else { "bench" });
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("results.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&results).unwrap() + "\n",
    )
    .unwrap();
    println!("\nwritten to {}", path.display());
}
