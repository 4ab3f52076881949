//! Fault tests: the worker killed at seeded random points of every pipeline, slow providers,
//! and a client that never reads.

use crate::support::providers::{image, Providers};
use crate::support::*;
use bookstrack_jobs::base64;
use bookstrack_jobs::pipelines::csv::generate_goodreads;
use serde_json::{json, Value};
use std::time::Duration;

/// Seeds for the kill points; each gives one kill per pipeline.
const SEEDS: [u64; 3] = [11, 23, 42];

/// A small deterministic generator, so a failing seed can be replayed.
fn kill_point(seed: u64, total: u64) -> u64 {
    let mixed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (mixed >> 33) % total.max(1)
}

/// Starts `job`, crashes the worker's runtime once the job has reported `kill_after` processed
/// items (or before it starts at all, for 0), lets it come back on the same state, and waits
/// for the job's end. Returns the final state.
async fn kill_and_recover(w: &mut Worker, job: &Created, kill_after: u64) -> Value {
    if kill_after > 0 {
        let mut ws = Socket::connect(w, job).await;
        ws.ready().await;
        loop {
            let msg = ws.until("job_progress").await;
            if msg["payload"]["processedCount"].as_u64().unwrap_or(0) >= kill_after {
                break;
            }
        }
    }
    w.crash().await;
    // A fresh client says ready after the restart; a queued job starts then.
    let mut ws = Socket::connect_path(w, &format!("{}&reconnect=true", job.websocket_url))
        .await
        .unwrap();
    ws.ready().await;
    let closed = ws.until_closed().await;
    assert_eq!(
        closed.code,
        1000,
        "job {} did not complete after the restart: {:?}",
        job.job_id,
        ws.kinds()
    );
    job_state(w, job).await
}

async fn results(w: &Worker, job: &Created, segment: &str) -> Value {
    all_results(
        w,
        &format!("/v1/{segment}/results/{}", job.job_id),
        &job.token,
    )
    .await
}

/// Runs an undisturbed job to its end and returns its results.
async fn undisturbed(w: &Worker, job: &Created, segment: &str) -> Value {
    let mut ws = Socket::connect(w, job).await;
    ws.ready().await;
    assert_eq!(ws.until_closed().await.code, 1000, "{:?}", ws.kinds());
    results(w, job, segment).await
}

#[tokio::test]
async fn csv_imports_survive_kills_at_random_points() {
    let mut w = Worker::start(test_options()).await;
    let (file, claimed) = generate_goodreads(30_000, 5);
    let (reference, totals) = reference::csv_results(&file);
    assert_eq!(totals, claimed);
    let mut recovered = 0;
    for (i, seed) in SEEDS.iter().enumerate() {
        let answer = post_bytes(&w, "/api/import/csv", Some("text/csv"), file.clone()).await;
        let job = Created::from_answer(&answer);
        // The first seed kills before the job starts; the others somewhere in the import.
        let point = if i == 0 {
            0
        } else {
            1 + kill_point(*seed, 20_000)
        };
        let state = kill_and_recover(&mut w, &job, point).await;
        assert_eq!(state["processedCount"], 30_000);
        let got = results(&w, &job, "csv").await;
        let core = json!({ "books": got["books"], "errors": got["errors"], "successRate": got["successRate"] });
        assert!(
            core == reference,
            "seed {seed}: results differ from an undisturbed import"
        );
        recovered += 1;
    }
    println!(
        "faults csv_import: {} kills, {recovered} of {} jobs recovered",
        SEEDS.len(),
        SEEDS.len()
    );
}

#[tokio::test]
async fn enrichment_batches_survive_kills_at_random_points() {
    let providers = Providers::start(Duration::from_millis(60));
    let mut w = Worker::start(providers.options(test_options())).await;
    let books: Vec<Value> = (0..30)
        .map(|i| json!({ "title": format!("Fault Volume {i:02}"), "author": "Author" }))
        .collect();
    let create = |w: &Worker| {
        let body = json!({ "books": books });
        let url = w.url("/api/enrichment/batch");
        async move {
            Created::from_answer(
                &Answer::from(http().post(url).json(&body).send().await.unwrap()).await,
            )
        }
    };
    let reference_job = create(&w).await;
    let reference = undisturbed(&w, &reference_job, "enrichment").await;
    let mut recovered = 0;
    for (i, seed) in SEEDS.iter().enumerate() {
        let job = create(&w).await;
        let point = if i == 0 { 0 } else { 1 + kill_point(*seed, 25) };
        let state = kill_and_recover(&mut w, &job, point).await;
        assert_eq!(state["processedCount"], 30);
        assert!(
            results(&w, &job, "enrichment").await == reference,
            "seed {seed}: results differ"
        );
        recovered += 1;
    }
    println!(
        "faults batch_enrichment: {} kills, {recovered} of {} jobs recovered",
        SEEDS.len(),
        SEEDS.len()
    );
}

#[tokio::test]
async fn scans_survive_kills_at_random_points() {
    let providers = Providers::start(Duration::from_millis(5));
    let mut w = Worker::start(providers.options(test_options())).await;
    let body = json!({ "images": (0..4).map(|i| json!({ "index": i, "data": base64::encode(&image("jpeg", "slow-fault")) })).collect::<Vec<_>>() });
    let create = |w: &Worker| {
        let (url, body) = (w.url("/api/scan-bookshelf/batch"), body.clone());
        async move {
            Created::from_answer(
                &Answer::from(http().post(url).json(&body).send().await.unwrap()).await,
            )
        }
    };
    let reference_job = create(&w).await;
    let reference = undisturbed(&w, &reference_job, "scan").await;
    let mut recovered = 0;
    for (i, seed) in SEEDS.iter().enumerate() {
        let job = create(&w).await;
        let point = if i == 0 { 0 } else { 1 + kill_point(*seed, 3) };
        let state = kill_and_recover(&mut w, &job, point).await;
        assert_eq!(state["processedCount"], 4);
        assert!(
            results(&w, &job, "scan").await == reference,
            "seed {seed}: results differ"
        );
        recovered += 1;
    }
    println!(
        "faults ai_scan: {} kills, {recovered} of {} jobs recovered",
        SEEDS.len(),
        SEEDS.len()
    );
}

#[tokio::test]
async fn provider_timeouts_are_retried_or_fall_back() {
    let providers = Providers::start(Duration::from_millis(5));
    let w = Worker::start(
        providers
            .options(test_options())
            .var("GEMINI_TIMEOUT_SECS", 1)
            .var("BOOKS_API_TIMEOUT_SECS", 1),
    )
    .await;
    // Gemini hangs past the timeout once, then answers: the photo is retried and succeeds.
    let marker = "hangonce-timeout";
    let answer = post_bytes(
        &w,
        "/api/scan-bookshelf",
        Some("image/png"),
        image("png", marker),
    )
    .await;
    let job = Created::from_answer(&answer);
    let summary = undisturbed(&w, &job, "scan").await;
    assert!(summary["totalDetected"].as_u64().unwrap() > 0);
    assert_eq!(
        providers.gemini_counts.get(marker),
        2,
        "one timeout, one answer"
    );
    w.wait_event("a timed-out Gemini call", |e| {
        e["event"] == "provider.call"
            && e["provider"] == "gemini"
            && e["error"].as_str().is_some_and(|m| m.contains("timed out"))
    })
    .await;
    // Google Books hangs for a title: Open Library answers instead.
    let body = json!({ "books": [{ "title": "Hang Google Volume", "author": "Slow Writer" }] });
    let job = Created::from_answer(&post_json(&w, "/api/enrichment/batch", &body, None).await);
    let got = undisturbed(&w, &job, "enrichment").await;
    assert_eq!(got["books"][0]["success"], true, "{got}");
    assert_eq!(got["books"][0]["enriched"]["provider"], "open_library");
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_stall_the_job_for_others() {
    let w = shared().await;
    // Every update is sent (no coalescing), so the idle client's buffers fill up.
    let job = synthetic(
        w,
        json!({ "items": 20_000, "itemsPerChunk": 1_000, "coalesceMs": 0 }),
    )
    .await;
    let _idle = Socket::connect(w, &job).await; // connected, never read from
    let mut reader = Socket::connect(w, &job).await;
    reader.ready().await;
    assert_eq!(
        reader.until_closed().await.code,
        1000,
        "{:?}",
        &reader.kinds()[..5.min(reader.kinds().len())]
    );
    assert_eq!(
        reader.of_kind("job_progress").len(),
        20_000,
        "every update reached the reading client"
    );
    assert_eq!(job_state(w, &job).await["status"], "complete");
}

/// Development mode's fault injection makes a running job's first checkpoint writes fail.
async fn failing_writes_worker(failing: u32) -> Worker {
    Worker::start(
        test_options()
            .var("ENVIRONMENT", "development")
            .var("FAULT_FAIL_WRITES", failing)
            .var("RESULTS_TTL_SECS", 3),
    )
    .await
}

#[tokio::test]
async fn a_job_whose_writes_fail_a_few_times_goes_on_from_its_last_checkpoint() {
    let w = failing_writes_worker(2).await;
    let job = synthetic(&w, json!({ "items": 40, "itemsPerChunk": 5 })).await;
    let mut ws = Socket::connect(&w, &job).await;
    ws.ready().await;
    // Each failure resets the object, which drops the socket (1006 on this side); the client
    // reconnects and the job goes on.
    let mut drops = 0;
    loop {
        let closed = ws.until_closed().await;
        if closed.code == 1000 {
            break;
        }
        assert_eq!(closed.code, 1006, "{closed:?}");
        drops += 1;
        assert!(drops <= 2, "more drops than failures");
        ws = Socket::connect(&w, &job).await;
        ws.ready().await;
    }
    let state = job_state(&w, &job).await;
    assert_eq!(state["status"], "complete");
    assert_eq!(state["processedCount"], 40);
    let failures: Vec<_> = w
        .events()
        .into_iter()
        .filter(|e| e["event"] == "storage.failed" && e["jobId"] == job.job_id)
        .collect();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures.iter().all(|e| e["counted"] == true));
}

#[tokio::test]
async fn a_job_whose_writes_keep_failing_fails_with_internal_error_and_is_cleaned_up() {
    let w = failing_writes_worker(100).await;
    let job = synthetic(&w, json!({ "items": 40, "itemsPerChunk": 5 })).await;
    let mut ws = Socket::connect(&w, &job).await;
    ws.ready().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // Each failure resets the object, which drops the socket; reconnect until the end.
    let error = loop {
        let closed = ws.until_closed().await;
        if closed.code == 1011 {
            break ws.of_kind("error")[0]["payload"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "the job never failed");
        ws = Socket::connect(&w, &job).await;
        ws.ready().await;
    };
    assert_eq!(error["code"], "INTERNAL_ERROR", "{error}");
    assert_eq!(error["retryable"], true);
    let state = job_state(&w, &job).await;
    assert_eq!(state["status"], "failed");
    assert_eq!(state["error"]["code"], "INTERNAL_ERROR");
    // Cleanup still comes RESULTS_TTL_SECS later.
    let path = format!("/api/job-state/{}", job.job_id);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = get(&w, &path, Some(&job.token)).await;
        if answer.status == 404 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never cleaned up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
