//! Hostile uploads against the real worker (issue "Field hardening", items 2 and 4): errors
//! counted and capped, records cut to 1 KiB, results paged by cursor, and the memory each job
//! costs workerd measured.

use crate::support::providers::{image, Providers};
use crate::support::*;
use bookstrack_jobs::base64;
use bookstrack_jobs::pipelines::csv::generate_goodreads;
use serde_json::{json, Value};
use std::time::Duration;

/// The contract's bound on one results page, its envelope aside; the envelope is small.
const PAGE_BYTES: usize = 1024 * 1024 + 1024;
/// The most one request (or one job's run) may grow a job object's memory (issue 13, item 4).
const MAX_GROWTH_KIB: u64 = 64 * 1024;

fn rows(header: &str, count: usize, row: impl Fn(usize) -> String) -> Vec<u8> {
    let mut file = format!("{header}\n");
    for n in 0..count {
        file.push_str(&row(n));
        file.push('\n');
    }
    file.into_bytes()
}

async fn import(w: &Worker, body: Vec<u8>) -> Created {
    let answer = post_bytes(w, "/api/import/csv", Some("text/csv"), body).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    Created::from_answer(&answer)
}

/// Runs a job to its close and returns the close code and the final message's payload.
async fn run(w: &Worker, job: &Created) -> (u16, Value) {
    let mut ws = Socket::connect(w, job).await;
    ws.ready().await;
    let closed = ws.until_closed().await;
    let last = ws
        .of_kind("job_complete")
        .first()
        .or(ws.of_kind("error").first())
        .map(|m| m["payload"].clone())
        .unwrap_or(Value::Null);
    (closed.code, last)
}

/// Every page of a CSV job's results at `limit` (the default when `None`), each checked
/// against the page bound.
async fn pages(w: &Worker, job: &Created, limit: Option<usize>) -> Vec<Value> {
    let base = format!("/v1/csv/results/{}", job.job_id);
    let mut query: Vec<String> = limit.map(|l| format!("limit={l}")).into_iter().collect();
    let mut pages = Vec::new();
    loop {
        let path = match query.is_empty() {
            true => base.clone(),
            false => format!("{base}?{}", query.join("&")),
        };
        let answer = get(w, &path, Some(&job.token)).await;
        assert_eq!(
            answer.status,
            200,
            "{path}: {}",
            &answer.text[..500.min(answer.text.len())]
        );
        assert!(
            answer.text.len() <= PAGE_BYTES,
            "{path}: a page of {} bytes",
            answer.text.len()
        );
        let page = answer.data().clone();
        pages.push(page.clone());
        assert!(pages.len() < 1_000, "the cursor never ends");
        match page["nextCursor"].as_str() {
            Some(cursor) => {
                query = limit.map(|l| format!("limit={l}")).into_iter().collect();
                query.push(format!("cursor={cursor}"));
            }
            None => return pages,
        }
    }
}

fn books_of(pages: &[Value]) -> Vec<Value> {
    pages
        .iter()
        .flat_map(|p| p["books"].as_array().unwrap().clone())
        .collect()
}

#[tokio::test]
async fn sixty_thousand_one_cell_rows_are_counted_but_a_thousand_kept() {
    let w = shared().await;
    let file = rows("Book Id,Title,Author", 60_000, |n| n.to_string());
    let job = import(w, file).await;
    let (code, done) = run(w, &job).await;
    assert_eq!(code, 1000, "{done}");
    let summary = &done["summary"];
    assert_eq!(summary["totalProcessed"], 60_000, "{summary}");
    assert_eq!(summary["failureCount"], 60_000, "{summary}");
    assert_eq!(summary["errorCount"], 60_000, "{summary}");
    assert_eq!(summary["errorsTruncated"], true, "{summary}");
    let pages = pages(w, &job, None).await;
    assert_eq!(pages.len(), 1, "no books, so one page");
    let errors = pages[0]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1_000);
    // The first thousand records, in order: the kept ones are not a random sample.
    let lines: Vec<u64> = errors.iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, (2..1_002).collect::<Vec<u64>>());
    // The state answer says the same as the final message.
    let state = job_state(w, &job).await;
    assert_eq!(state["summary"]["errorCount"], 60_000, "{state}");
}

#[tokio::test]
async fn a_cell_of_400k_control_characters_is_cleaned_and_cut() {
    let w = shared().await;
    let controls: String = (0..400_000)
        .map(|i| if i % 2 == 0 { 'a' } else { '\u{1}' })
        .collect();
    let file = rows("Title,Author", 3, |n| match n {
        1 => format!("\"{controls}\",Someone"),
        _ => format!("Book {n},Someone"),
    });
    let job = import(w, file).await;
    let (code, done) = run(w, &job).await;
    assert_eq!(code, 1000, "{done}");
    assert_eq!(done["summary"]["successCount"], 3, "{done}");
    assert_eq!(done["summary"]["warningCount"], 1, "{done}");
    let pages = pages(w, &job, None).await;
    let books = books_of(&pages);
    let title = books[1]["title"].as_str().unwrap();
    assert_eq!(title.len(), 1024, "the long title is cut to 1 KiB");
    assert!(
        title.chars().all(|c| !c.is_control()),
        "a control character was kept"
    );
    let warnings = pages[0]["warnings"].as_array().expect("a warning");
    assert!(
        warnings[0]["warning"]
            .as_str()
            .is_some_and(|m| m.contains("cut to the first 1024")),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn results_are_paged_by_cursor_errors_on_the_first_page_only() {
    let w = shared().await;
    let (file, claimed) = generate_goodreads(2_500, 29);
    assert!(claimed.errors > 0 && claimed.errors < 1_000);
    let job = import(w, file).await;
    let (code, done) = run(w, &job).await;
    assert_eq!(code, 1000, "{done}");
    let books = done["summary"]["successCount"].as_u64().unwrap() as usize;
    assert!(books > 2_000, "{done}");
    let whole = pages(w, &job, None).await;
    assert_eq!(whole.len(), books.div_ceil(1_000), "default pages of 1,000");
    let small = pages(w, &job, Some(293)).await;
    assert_eq!(small.len(), books.div_ceil(293));
    assert_eq!(
        books_of(&whole),
        books_of(&small),
        "the same books, whatever the limit"
    );
    assert_eq!(books_of(&whole).len(), books);
    for page in [&whole, &small] {
        let errors = page[0]["errors"].as_array().unwrap();
        assert_eq!(errors.len() as u64, claimed.errors);
        for later in &page[1..] {
            assert_eq!(later["errors"], json!([]), "errors on a later page");
        }
    }
    // A cursor is the job's own: another job's results refuse it.
    let other = import(w, rows("Title,Author", 1, |_| "A,B".into())).await;
    run(w, &other).await;
    let cursor = whole[0]["nextCursor"].as_str().unwrap();
    let answer = get(
        w,
        &format!("/v1/csv/results/{}?cursor={cursor}", other.job_id),
        Some(&other.token),
    )
    .await;
    answer.assert_error(400, "INVALID_REQUEST");
}

/// Measures how much workerd's resident memory grows at its peak, in KiB, phase by phase:
/// each phase's peak is read against the memory resident when it began.
struct Growth<'w> {
    worker: &'w Worker,
    start_kib: u64,
}

impl<'w> Growth<'w> {
    fn start(worker: &'w Worker) -> Self {
        let (start_kib, _) = worker.workerd_memory_kib();
        worker.reset_memory_peak();
        Growth { worker, start_kib }
    }

    /// The growth since the phase began; the next phase begins now.
    fn phase(&mut self) -> u64 {
        let (now, peak) = self.worker.workerd_memory_kib();
        let grew = peak.saturating_sub(self.start_kib);
        *self = Growth::start(self.worker);
        let _ = now;
        grew
    }
}

/// Two sessions of their own (the Worker and the job objects in separate workerd processes,
/// as separate isolates on Cloudflare), warmed up (the wasm compiled and instantiated, the
/// object classes loaded) by one small job of each kind, so that what is measured after is
/// the job's own.
async fn warm_workers(providers: &Providers) -> SplitWorkers {
    let split = SplitWorkers::start(providers.options(test_options())).await;
    let w = &split.entry;
    let job = import(w, rows("Title,Author", 10, |n| format!("T{n},A"))).await;
    run(w, &job).await;
    let photo =
        json!({ "images": [{ "index": 0, "data": base64::encode(&image("jpeg", "fenced")) }] });
    let answer = post_json(w, "/api/scan-bookshelf/batch", &photo, None).await;
    let (code, done) = run(w, &Created::from_answer(&answer)).await;
    assert_eq!(code, 1000, "{done}");
    split
}

/// A 5 MiB photo that the fake Gemini answers with books (its `fenced` reply).
fn big_photo(n: usize) -> Vec<u8> {
    let mut photo = image("jpeg", "fenced");
    photo.resize(5 * 1024 * 1024 - n, 0x42);
    photo
}

/// What one job made each process grow at its peak, phase by phase.
struct Figures(Vec<(String, &'static str, u64)>);

impl Figures {
    fn add(&mut self, job: &str, phase: &str, entry: &mut Growth, objects: &mut Growth) {
        self.0
            .push((format!("{job}: {phase}"), "Worker", entry.phase()));
        self.0
            .push((format!("{job}: {phase}"), "object", objects.phase()));
    }
}

/// Issue "Field hardening", item 4: no request grows the job's object by more than 64 MiB.
/// The object runs in a workerd process of its own, whose peak resident memory is read
/// around each phase of each job; the Worker's process is measured too and held to its
/// isolate's 128 MB.
#[tokio::test]
async fn no_job_grows_its_object_by_more_than_64_mib() {
    let providers = Providers::start(Duration::ZERO);
    let (csv, scan) = tokio::join!(warm_workers(&providers), warm_workers(&providers));
    let mut figures = Figures(Vec::new());

    // 1 MiB of short one-cell rows: each an error (once 493 MiB of workerd).
    let amplified = rows("Book Id,Title,Author", 180_000, |n| {
        (n % 100_000).to_string()
    });
    assert!(amplified.len() > 1 << 20);
    // 10 MiB of one-cell rows, each an error too: the most an upload may be.
    let large = rows("Book Id,Title,Author", 103_000, |n| format!("{n:0>100}"));
    assert!(
        large.len() > 9 << 20 && large.len() <= 10 << 20,
        "{}",
        large.len()
    );
    for (name, file) in [
        ("1 MiB of one-cell rows", amplified),
        ("10 MiB of one-cell rows", large),
    ] {
        let w = &csv.entry;
        let (mut entry, mut objects) = (Growth::start(&csv.entry), Growth::start(&csv.objects));
        let job = import(w, file).await;
        figures.add(name, "creation", &mut entry, &mut objects);
        let (code, done) = run(w, &job).await;
        assert_eq!(code, 1000, "{name}: {done}");
        assert_eq!(done["summary"]["errorsTruncated"], true, "{name}: {done}");
        pages(w, &job, None).await;
        figures.add(name, "run and results", &mut entry, &mut objects);
    }

    // Five 5 MiB photos in one batch: a 33 MiB JSON body (once 193 MiB of workerd).
    let w = &scan.entry;
    let images: Vec<Value> = (0..5)
        .map(|i| json!({ "index": i, "data": base64::encode(&big_photo(i)) }))
        .collect();
    let body = json!({ "images": images });
    let (mut entry, mut objects) = (Growth::start(&scan.entry), Growth::start(&scan.objects));
    let answer = post_json(w, "/api/scan-bookshelf/batch", &body, None).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    figures.add("5 × 5 MiB batch scan", "creation", &mut entry, &mut objects);
    let job = Created::from_answer(&answer);
    let (code, done) = run(w, &job).await;
    assert_eq!(code, 1000, "{done}");
    assert_eq!(
        done["summary"]["totalDetected"].as_u64().map(|n| n > 0),
        Some(true),
        "{done}"
    );
    figures.add(
        "5 × 5 MiB batch scan",
        "run and results",
        &mut entry,
        &mut objects,
    );

    for (name, process, grew) in &figures.0 {
        eprintln!(
            "[memory] {name}: the {process}'s workerd grew {} MiB at its peak",
            grew / 1024
        );
    }
    for (name, process, grew) in figures.0 {
        let limit = match process {
            "object" => MAX_GROWTH_KIB,
            _ => 128 * 1024,
        };
        assert!(
            grew <= limit,
            "{name}: the {process}'s workerd grew {} MiB, over {} MiB",
            grew / 1024,
            limit / 1024
        );
    }
}
