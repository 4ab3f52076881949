//! Jobs persisted by the v1 worker (commit 292d417) resume and finish on this one, in the real
//! runtime.
//!
//! `tests/fixtures/storage/v1/state.tar.gz` is the whole `--persist-to` directory the old
//! worker left when it was SIGKILLed mid-work (see the README beside it; `bash
//! scripts/capture-v1-storage 292d417` makes it). The test unpacks it, starts this worker on it
//! with the capture's signing key and lifetimes and the e2e fake providers (which answer as the
//! capture's fake did), and for each job:
//! - mid-run and queued: a socket with the job's v1 token says `ready` and sees the job to
//!   `job_complete` and close 1000; the worker logs `job.completed`, never went below the
//!   stored progress, and never asked a provider again for work the old code had stored;
//!   the summary and results are the old code's own for the same inputs;
//! - complete: its results and summary are served as the old code served them.
//!
//! The runtime fires the overdue alarms of the unpacked state as soon as the worker is up, so
//! the mid-run jobs usually finish before their socket connects; the socket then gets
//! `job_complete` and the close as any late client does (PROTOCOL.md 6.7), and the worker's
//! own `job.completed` line shows that this worker finished them. `synthetic_mid`'s next chunk
//! is due a minute after the capture: a run within that minute waits for it (at most ~60 s).
//! The capture's tokens and results last a year from the capture; after that, capture again.

use crate::support::providers::Providers;
use crate::support::wrangler::repo_root;
use crate::support::*;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const FIXTURES: &str = "tests/fixtures/storage/v1";

/// The `--var`s taken from the capture: ids carry a MAC under the signing key, and the
/// lifetimes decide when tasks fall due. `PROVIDER_TIMEOUT_MS` is not one: this worker reads
/// `GEMINI_TIMEOUT_SECS` and `BOOKS_API_TIMEOUT_SECS`, which `Providers::options` sets.
const CAPTURED_VARS: &[&str] = &[
    "TOKEN_SIGNING_KEY",
    "TOKEN_TTL_SECS",
    "RESULTS_TTL_SECS",
    "READY_TIMEOUT_SECS",
    "GEMINI_API_KEY",
    "GEMINI_MODEL",
];

/// Jobs the old worker left unfinished, in the order they are driven; the synthetic one last,
/// since its next chunk was a minute away at capture.
const UNFINISHED: &[&str] = &[
    "queued",
    "enrich_mid",
    "scan_mid",
    "csv_mid",
    "synthetic_mid",
];
const FINISHED: &[&str] = &["complete_csv", "complete_enrich", "complete_scan"];

/// One `<scenario>.json` of the capture.
struct Fixture {
    name: &'static str,
    doc: Value,
}

impl Fixture {
    fn load(name: &'static str) -> Fixture {
        let path = repo_root().join(FIXTURES).join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        Fixture {
            name,
            doc: serde_json::from_str(&text).unwrap(),
        }
    }

    fn job(&self) -> Created {
        let (job_id, token) = (self.str("jobId"), self.str("token"));
        if self.stored("work")["kind"] == "synthetic" {
            // Created by the old worker, not through this harness: its summary and results
            // are checked as a synthetic job's.
            crate::support::schema::note_synthetic_job(&job_id);
        }
        Created {
            websocket_url: format!("/ws/progress?jobId={job_id}&token={token}"),
            job_id,
            token,
            pipeline: self.str("pipeline"),
        }
    }

    fn str(&self, field: &str) -> String {
        self.doc[field].as_str().unwrap().to_string()
    }

    /// A stored JSON document (`core`, `work`) as the old code wrote it.
    fn stored(&self, key: &str) -> Value {
        serde_json::from_str(self.doc["storage"][key]["text"].as_str().unwrap()).unwrap()
    }

    fn stored_state(&self, field: &str) -> u64 {
        self.stored("core")["state"][field].as_u64().unwrap()
    }

    fn expected(&self) -> &Value {
        &self.doc["inputs"]["expected"]
    }

    fn results_path(&self) -> String {
        let kind = match self.str("pipeline").as_str() {
            "csv_import" => "csv",
            "ai_scan" => "scan",
            "batch_enrichment" => "enrichment",
            other => panic!("{}: pipeline {other}", self.name),
        };
        format!("/v1/{kind}/results/{}", self.str("jobId"))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Unpacks the capture's state directory into a fresh directory under `target/e2e/`.
fn unpack_state() -> PathBuf {
    let tarball = repo_root().join(FIXTURES).join("state.tar.gz");
    let dir = repo_root()
        .join("target/e2e")
        .join(format!("compat-{}", std::process::id()))
        .join("state");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&dir)
        .status()
        .expect("running tar");
    assert!(status.success(), "unpacking {tarball:?} failed");
    assert!(
        dir.join("v3/do/bookstrack-jobs-JobObject/metadata.sqlite")
            .exists(),
        "{tarball:?} holds no JobObject namespace"
    );
    dir
}

/// Keys v2 added to v1's documents (contract 9): a warning's `field`, an enrichment line's
/// `errorKind`. The v1 capture lacks them; every other key must match.
const V2_ADDITIONS: [&str; 2] = ["field", "errorKind"];

/// Where two JSON values first differ, as a path and both sides (short, unlike a diff of a
/// 12,000-book document).
fn first_difference(got: &Value, want: &Value, at: &str) -> Option<String> {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let mut keys: Vec<&String> = g.keys().chain(w.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| match (g.get(k), w.get(k)) {
                (Some(a), Some(b)) => first_difference(a, b, &format!("{at}.{k}")),
                (Some(_), None) if V2_ADDITIONS.contains(&k.as_str()) => None,
                (a, b) => Some(format!("{at}.{k}: got {a:?}, want {b:?}")),
            })
        }
        (Value::Array(g), Value::Array(w)) => g
            .iter()
            .zip(w)
            .enumerate()
            .find_map(|(i, (a, b))| first_difference(a, b, &format!("{at}[{i}]")))
            .or_else(|| {
                (g.len() != w.len()).then(|| format!("{at}: {} items, want {}", g.len(), w.len()))
            }),
        // serde_json tells 2 from 2.0, as the worker's JSON does.
        (a, b) if a == b => None,
        (a, b) => Some(format!("{at}: got {a}, want {b}")),
    }
}

#[track_caller]
fn assert_same(what: &str, got: &Value, want: &Value) {
    if let Some(diff) = first_difference(got, want, "") {
        panic!("{what} differs from the v1 worker's: {diff}");
    }
}

/// A summary without `duration`, the one field that differs from run to run, and without
/// v2's `parseErrors` (provider answers that could not be read), which v1 never wrote and
/// which must be 0 here, as the capture's providers answered well.
fn without_duration(summary: &Value) -> Value {
    assert!(summary.is_object(), "summary {summary} is not an object");
    let mut summary = summary.clone();
    let fields = summary.as_object_mut().unwrap();
    fields.remove("duration");
    if let Some(parse_errors) = fields.remove("parseErrors") {
        assert_eq!(parse_errors, 0, "unreadable provider answers in a v1 job");
    }
    // v2's CSV counts: a v1 capture holds far fewer than 1,000 errors or warnings, so
    // every one is kept and the counts equal v1's.
    if let Some(error_count) = fields.remove("errorCount") {
        assert_eq!(Some(&error_count), fields.get("failureCount"), "errorCount");
        assert_eq!(fields.remove("errorsTruncated"), Some(json!(false)));
        assert!(fields.remove("warningCount").is_some_and(|n| n.is_u64()));
        assert_eq!(fields.remove("warningsTruncated"), Some(json!(false)));
    }
    summary
}

async fn results(w: &Worker, f: &Fixture) -> Value {
    all_results(w, &f.results_path(), &f.str("token")).await
}

/// A CSV results document against the v1 expectations of the capture (counts, every error
/// and warning, the first and last books, the success rate).
fn assert_csv_results(f: &Fixture, got: &Value) {
    let want = f.expected();
    let books = got["books"].as_array().expect("books");
    assert_eq!(
        books.len() as u64,
        want["books"].as_u64().unwrap(),
        "{}: book count",
        f.name
    );
    let first = want["firstBooks"].as_array().unwrap();
    let last = want["lastBooks"].as_array().unwrap();
    assert_same(
        &format!("{}: first books", f.name),
        &json!(books[..first.len()]),
        &json!(first),
    );
    assert_same(
        &format!("{}: last books", f.name),
        &json!(books[books.len() - last.len()..]),
        &json!(last),
    );
    assert_same(
        &format!("{}: errors", f.name),
        &got["errors"],
        &want["errors"],
    );
    let warnings = got.get("warnings").cloned().unwrap_or(json!([]));
    assert_same(
        &format!("{}: warnings", f.name),
        &warnings,
        &want["warnings"],
    );
    assert_same(
        &format!("{}: successRate", f.name),
        &got["successRate"],
        &want["successRate"],
    );
}

/// The worker's log lines about one job.
fn job_events(w: &Worker, job_id: &str) -> Vec<Value> {
    w.events()
        .into_iter()
        .filter(|e| e["jobId"] == job_id)
        .collect()
}

/// An ISBN as the enrichment looks it up (ISBN-13), if it is a valid ISBN-10 or ISBN-13.
fn isbn13(raw: &str) -> Option<String> {
    let d: String = raw.chars().filter(|c| !matches!(c, '-' | ' ')).collect();
    let digit = |c: char| c.to_digit(10);
    match d.len() {
        10 => {
            let sum: u32 = d.chars().enumerate().try_fold(0, |sum, (i, c)| {
                let v = if i == 9 && (c == 'X' || c == 'x') {
                    10
                } else {
                    digit(c)?
                };
                Some(sum + (10 - i as u32) * v)
            })?;
            if !sum.is_multiple_of(11) {
                return None;
            }
            let twelve = format!("978{}", &d[..9]);
            let sum: u32 = twelve
                .chars()
                .enumerate()
                .map(|(i, c)| digit(c).unwrap() * if i % 2 == 1 { 3 } else { 1 })
                .sum();
            Some(format!("{twelve}{}", (10 - sum % 10) % 10))
        }
        13 => {
            let sum: u32 = d.chars().enumerate().try_fold(0, |sum, (i, c)| {
                Some(sum + digit(c)? * if i % 2 == 1 { 3 } else { 1 })
            })?;
            sum.is_multiple_of(10).then_some(d)
        }
        _ => None,
    }
}

/// What in a provider request names an enrichment input: its ISBN-13 if valid, its title as
/// the worker puts it in a query.
fn lookup_markers(book: &Value) -> Vec<String> {
    let mut markers = vec![book["title"].as_str().unwrap().replace(' ', "%20")];
    markers.extend(book["isbn"].as_str().and_then(isbn13));
    markers
}

/// The old code had stored the outcome of the books `work.done` marks: none of them may be
/// looked up again. Every other book must be (which also shows the markers are right).
fn assert_enrichment_resumed(f: &Fixture, providers: &Providers) {
    let targets: Vec<String> = providers
        .server
        .requests()
        .into_iter()
        .filter(|r| r.target.starts_with("/books/v1/") || r.target.starts_with("/ol/"))
        .map(|r| r.target)
        .collect();
    let done = f.stored("work")["done"].as_array().unwrap().clone();
    let books = f.doc["inputs"]["books"].as_array().unwrap();
    assert_eq!(done.len(), books.len());
    for (i, (book, done)) in books.iter().zip(&done).enumerate() {
        let asked: Vec<&String> = targets
            .iter()
            .filter(|t| lookup_markers(book).iter().any(|m| t.contains(m.as_str())))
            .collect();
        if done == true {
            assert!(
                asked.is_empty(),
                "{}: book {i} ({book}) was stored by the old code, yet looked up again: {asked:?}",
                f.name
            );
        } else {
            assert!(
                !asked.is_empty(),
                "{}: book {i} ({book}) was never looked up; requests: {targets:?}",
                f.name
            );
        }
    }
}

/// Photos the old code had scanned and stored are not sent to Gemini again; the others are.
fn assert_scan_resumed(f: &Fixture, providers: &Providers) {
    let work = f.stored("work");
    for (photo, stored) in f.doc["inputs"]["photos"]
        .as_array()
        .unwrap()
        .iter()
        .zip(work["photos"].as_array().unwrap())
    {
        let scenario = photo["scenario"].as_str().unwrap();
        let asked = providers.gemini_counts.get(scenario);
        if stored["record"]["status"] == "done" {
            assert_eq!(
                asked, 0,
                "{}: photo {photo} was stored, yet scanned again",
                f.name
            );
        } else {
            assert!(asked >= 1, "{}: photo {photo} was never scanned", f.name);
        }
    }
}

/// Drives one unfinished job to its end over a socket with its v1 token; returns the summary.
async fn finish(w: &Worker, f: &Fixture) -> Value {
    let job = f.job();
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    let closed = ws.until_closed().await;
    assert_eq!(
        closed.code,
        1000,
        "{}: the resumed job did not complete: {closed:?} after {:?}\n{}",
        f.name,
        ws.received,
        w.log_tail(40)
    );
    let complete = ws.of_kind("job_complete");
    assert_eq!(complete.len(), 1, "{}: {:?}", f.name, ws.kinds());
    assert_eq!(
        complete[0]["payload"]["pipeline"],
        job.pipeline.as_str(),
        "{}",
        f.name
    );
    assert_eq!(
        complete[0]["payload"]["resultsUrl"],
        f.results_path().as_str(),
        "{}",
        f.name
    );
    complete[0]["payload"]["summary"].clone()
}

/// This worker, not the old one, finished the job: it logged the end, never started a job
/// that was running, and never stored less progress than the old code had.
async fn assert_finished_here(w: &Worker, f: &Fixture) {
    let job_id = f.str("jobId");
    let end = w.job_logged_end(&job_id).await;
    assert_eq!(end["event"], "job.completed", "{}: {end}", f.name);
    let events = job_events(w, &job_id);
    let started = events
        .iter()
        .filter(|e| e["event"] == "job.started")
        .count();
    let was_queued = f.stored("core")["state"]["status"] == "queued";
    assert_eq!(
        started,
        usize::from(was_queued),
        "{}: job.started lines",
        f.name
    );
    let stored = f.stored_state("processedCount");
    for e in events.iter().filter(|e| e["event"] == "job.persisted") {
        assert!(
            e["processedCount"].as_u64().unwrap() >= stored,
            "{}: persisted {e} below the {stored} the old code had stored",
            f.name
        );
    }
    let state = job_state(w, &f.job()).await;
    assert_eq!(state["status"], "complete", "{}: {state}", f.name);
    assert_eq!(
        state["processedCount"], state["totalCount"],
        "{}: {state}",
        f.name
    );
    assert!(
        state["version"].as_u64().unwrap() > f.stored_state("version"),
        "{}: version {} not above the stored {}",
        f.name,
        state["version"],
        f.stored_state("version")
    );
}

#[tokio::test]
async fn v1_jobs_resume_and_finish_on_this_worker() {
    let fixtures: Vec<Fixture> = FINISHED
        .iter()
        .chain(UNFINISHED)
        .map(|name| Fixture::load(name))
        .collect();
    let by_name = |name: &str| fixtures.iter().find(|f| f.name == name).unwrap();
    let vars = fixtures[0].doc["vars"].clone();
    for f in &fixtures {
        assert_eq!(f.doc["vars"], vars, "{}: not from the same capture", f.name);
        let expires = f.stored("core")["auth"]["expiresAt"].as_u64().unwrap();
        assert!(
            now_ms() < expires,
            "{}: its token expired at {expires}; capture again (bash scripts/capture-v1-storage 292d417)",
            f.name
        );
    }

    let providers = Providers::start(Duration::ZERO);
    let mut options = providers.options(test_options());
    for name in CAPTURED_VARS {
        let value = vars[*name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} missing from vars"));
        options = options.var(name, value);
    }
    let w = Worker::start(WorkerOptions {
        persist_to: Some(unpack_state()),
        ..options
    })
    .await;

    // Finished jobs: served as the old code served them.
    for name in FINISHED {
        let f = by_name(name);
        let job = f.job();
        let state = job_state(&w, &job).await;
        assert_eq!(state["status"], "complete", "{name}: {state}");
        assert_same(
            &format!("{name}: summary"),
            &without_duration(&state["summary"]),
            &without_duration(&f.expected()["summary"]),
        );
        let got = results(&w, f).await;
        if *name == "complete_csv" {
            assert_csv_results(f, &got);
        } else {
            assert_same(&format!("{name}: results"), &got, &f.expected()["results"]);
        }
        // A socket on the finished job gets its end and the close.
        let mut ws = Socket::connect(&w, &job).await;
        ws.ready().await;
        assert_eq!(
            ws.until_closed().await.code,
            1000,
            "{name}: {:?}",
            ws.kinds()
        );
        assert_same(
            &format!("{name}: job_complete summary"),
            &ws.of_kind("job_complete")[0]["payload"]["summary"],
            &state["summary"],
        );
    }
    let complete_csv_results = results(&w, by_name("complete_csv")).await;

    // Unfinished jobs: resumed from where the old code stopped, finished here.
    for name in UNFINISHED {
        let f = by_name(name);
        if *name == "synthetic_mid" {
            // Its next chunk is due a minute after the capture; only a run within that minute
            // waits (at most 60 s), every later one finds it due.
            let due = f.doc["alarm"].as_u64().unwrap();
            let early = due.saturating_sub(now_ms() + 20_000).min(60_000);
            if early > 0 {
                eprintln!(
                    "{name}: its next chunk is due in {} s",
                    (due - now_ms()) / 1000
                );
                tokio::time::sleep(Duration::from_millis(early)).await;
            }
        }
        let started = std::time::Instant::now();
        let summary = finish(&w, f).await;
        assert_finished_here(&w, f).await;
        let got = results(&w, f).await;
        match *name {
            "queued" => {
                let path = f.expected()["fixture"].as_str().unwrap();
                let want: Value =
                    serde_json::from_slice(&std::fs::read(repo_root().join(path)).unwrap())
                        .unwrap();
                for field in ["books", "errors", "successRate"] {
                    assert_same(&format!("{name}: {field}"), &got[field], &want[field]);
                }
                let totals = &want["totals"];
                assert_same(
                    &format!("{name}: summary"),
                    &json!({
                        "totalProcessed": summary["totalProcessed"],
                        "successCount": summary["successCount"],
                        "failureCount": summary["failureCount"],
                        "duplicates": summary["duplicates"],
                        "invalidUtf8Rows": summary["invalidUtf8Rows"],
                    }),
                    &json!({
                        "totalProcessed": totals["dataRecords"],
                        "successCount": totals["books"],
                        "failureCount": totals["errors"],
                        "duplicates": totals["duplicates"],
                        "invalidUtf8Rows": totals["invalidUtf8Rows"],
                    }),
                );
            }
            "csv_mid" => {
                assert_same(
                    &format!("{name}: summary"),
                    &without_duration(&summary),
                    &without_duration(&f.expected()["summary"]),
                );
                assert_csv_results(f, &got);
                assert_same(
                    &format!("{name}: results against complete_csv's"),
                    &got,
                    &complete_csv_results,
                );
            }
            _ => {
                assert_same(
                    &format!("{name}: summary"),
                    &without_duration(&summary),
                    &without_duration(&f.expected()["summary"]),
                );
                assert_same(&format!("{name}: results"), &got, &f.expected()["results"]);
            }
        }
        match *name {
            "enrich_mid" => assert_enrichment_resumed(f, &providers),
            "scan_mid" => assert_scan_resumed(f, &providers),
            _ => {}
        }
        eprintln!("{name}: finished and checked in {:?}", started.elapsed());
    }
}
