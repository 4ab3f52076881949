//! The CSV import pipeline against the real worker: formats, a 10 MiB file, restarts, limits.

use crate::support::*;
use bookstrack_jobs::pipelines::csv::generate_goodreads;
use serde_json::{json, Value};
use std::time::Instant;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/csv/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn import(w: &Worker, body: Vec<u8>) -> Created {
    Created::from_answer(&post_bytes(w, "/api/import/csv", Some("text/csv"), body).await)
}

async fn results(w: &Worker, job: &Created) -> Value {
    all_results(w, &format!("/v1/csv/results/{}", job.job_id), &job.token).await
}

#[tokio::test]
async fn every_format_imports_end_to_end_row_by_row() {
    let w = shared().await;
    for name in [
        "goodreads",
        "goodreads_old",
        "storygraph",
        "librarything",
        "plain",
    ] {
        let expected: Value =
            serde_json::from_slice(&fixture(&format!("{name}.expected.json"))).unwrap();
        let job = import(w, fixture(&format!("{name}.csv"))).await;
        assert_eq!(job.pipeline, "csv_import");
        let mut ws = Socket::connect(w, &job).await;
        ws.ready().await;
        let total = expected["totals"]["dataRecords"].as_u64().unwrap();
        assert_eq!(
            ws.until("job_started").await["payload"]["totalCount"],
            total,
            "{name}"
        );
        assert_eq!(
            ws.until_closed().await.code,
            1000,
            "{name}: {:?}",
            ws.kinds()
        );
        let summary = ws.of_kind("job_complete")[0]["payload"]["summary"].clone();
        let totals = &expected["totals"];
        assert_eq!(
            summary["totalProcessed"], totals["dataRecords"],
            "{name}: {summary}"
        );
        assert_eq!(summary["successCount"], totals["books"], "{name}");
        assert_eq!(summary["failureCount"], totals["errors"], "{name}");
        assert_eq!(summary["duplicates"], totals["duplicates"], "{name}");
        let got = results(w, &job).await;
        let want = json!({ "books": expected["books"], "errors": expected["errors"], "successRate": expected["successRate"] });
        let (got_books, want_books) = (
            got["books"].as_array().unwrap(),
            want["books"].as_array().unwrap(),
        );
        assert_eq!(got_books.len(), want_books.len(), "{name}: book count");
        for (i, (g, e)) in got_books.iter().zip(want_books).enumerate() {
            assert_eq!(g, e, "{name}: book {i}");
        }
        assert_eq!(got["errors"], want["errors"], "{name}: errors");
        assert_eq!(got["successRate"], want["successRate"], "{name}");
    }
}

#[tokio::test]
async fn a_ten_mib_file_of_fifty_thousand_rows_is_fully_accounted_for() {
    let w = shared().await;
    let (file, claimed) = generate_goodreads(50_000, 7);
    assert!(
        file.len() > 9_500_000 && file.len() <= 10 * 1024 * 1024,
        "{} bytes",
        file.len()
    );
    let started = Instant::now();
    let job = import(w, file.clone()).await;
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    assert_eq!(ws.until_closed().await.code, 1000, "{:?}", ws.kinds());
    let elapsed = started.elapsed();
    let summary = ws.of_kind("job_complete")[0]["payload"]["summary"].clone();
    println!(
        "csv e2e: 50,000 rows, {} bytes, upload to job_complete in {:.2} s = {:.0} rows/s",
        file.len(),
        elapsed.as_secs_f64(),
        50_000.0 / elapsed.as_secs_f64()
    );
    let (books, errors, dups) = (
        summary["successCount"].as_u64().unwrap(),
        summary["failureCount"].as_u64().unwrap(),
        summary["duplicates"].as_u64().unwrap(),
    );
    assert_eq!(
        books + errors + dups,
        50_000,
        "every row accounted for: {summary}"
    );
    assert_eq!(
        (books, errors, dups),
        (claimed.books, claimed.errors, claimed.duplicates)
    );
    let got = results(w, &job).await;
    let (want, _) = reference::csv_results(&file);
    assert_eq!(got["books"].as_array().unwrap().len() as u64, claimed.books);
    assert!(
        reference::csv_core(&got) == want,
        "results differ from a native import"
    );
    // The job's progress was reported along the way, at a bounded rate.
    assert!(ws.of_kind("job_progress").len() >= 2, "{:?}", ws.kinds());
}

#[tokio::test]
async fn a_cancel_mid_import_ends_the_run_in_flight_and_nothing_moves_after() {
    // Runs are 20,000 records, and the first progress arrives as the first run ends: the
    // cancel lands during the second. Whatever that run still does, the job ends canceled and
    // nothing it parsed afterwards shows.
    let w = shared().await;
    let (file, _) = generate_goodreads(50_000, 11);
    let job = import(w, file).await;
    let cancel = format!("/api/jobs/{}/cancel", job.job_id);
    let ws = cancel_after_first_progress(w, &job, &cancel).await;
    assert!(ws.of_kind("job_complete").is_empty(), "{:?}", ws.kinds());
    let at_cancel = job_state(w, &job).await;
    assert_eq!(at_cancel["status"], "canceled");
    let processed = at_cancel["processedCount"].as_u64().unwrap();
    assert!(
        processed < 50_000,
        "the import ran on to the end: {at_cancel}"
    );
    server_time_passes(w, 400).await;
    let later = job_state(w, &job).await;
    assert_eq!(later["processedCount"], at_cancel["processedCount"]);
    assert_eq!(later["version"], at_cancel["version"]);
}

#[tokio::test]
async fn a_restart_mid_import_gives_exactly_the_undisturbed_results() {
    let mut w = Worker::start(test_options()).await;
    let (file, claimed) = generate_goodreads(50_000, 11);
    let job = import(&w, file.clone()).await;
    let mut ws = Socket::connect(&w, &job).await;
    ws.ready().await;
    let progress = ws.until("job_progress").await;
    let seen = progress["payload"]["processedCount"].as_u64().unwrap();
    w.kill();
    assert!(
        seen < 50_000,
        "the import was still running when killed ({seen})"
    );
    let log_mark = w.log().len();
    w.restart().await;
    let state = state_until(&w, &job, "the import to complete after a restart", |s| {
        s["status"] == "complete"
    })
    .await;
    assert_eq!(state["processedCount"], 50_000);
    let after: Vec<Value> = w.log()[log_mark..]
        .lines()
        .filter_map(|l| {
            l.find("{\"")
                .and_then(|i| serde_json::from_str::<Value>(&l[i..]).ok())
        })
        .filter(|e| e["jobId"] == job.job_id && e["event"] == "task.run")
        .collect();
    assert!(!after.is_empty(), "the import resumed after the restart");
    let got = results(&w, &job).await;
    let (want, totals) = reference::csv_results(&file);
    assert_eq!(totals, claimed);
    assert_eq!(
        got["books"].as_array().unwrap().len() as u64,
        claimed.books,
        "no row lost or duplicated"
    );
    assert!(
        reference::csv_core(&got) == want,
        "results differ from an undisturbed import"
    );
}

#[tokio::test]
async fn uploads_are_checked_before_any_job_exists() {
    let w = shared().await;
    let no_title = post_bytes(
        w,
        "/api/import/csv",
        Some("text/csv"),
        b"Name,Writer,ISBN\nDune,Herbert,\n".to_vec(),
    )
    .await;
    no_title.assert_error(400, "INVALID_REQUEST");
    assert_eq!(
        no_title.body["error"]["details"]["columnsFound"],
        json!(["Name", "Writer", "ISBN"])
    );
    post_bytes(w, "/api/import/csv", Some("text/csv"), Vec::new())
        .await
        .assert_error(400, "INVALID_REQUEST");
    post_bytes(
        w,
        "/api/import/csv",
        Some("application/json"),
        b"{}".to_vec(),
    )
    .await
    .assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
    post_bytes(w, "/api/import/csv", None, b"Title\nDune\n".to_vec())
        .await
        .assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
    let mut big = b"Title\n".to_vec();
    big.resize(10 * 1024 * 1024 + 1, b'x');
    post_bytes(w, "/api/import/csv", Some("text/csv"), big)
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");
    let boundary = "csvboundary";
    let form = |field: &str| {
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"books.csv\"\r\nContent-Type: text/csv\r\n\r\nTitle,Author\nDune,Frank Herbert\n\r\n--{boundary}--\r\n")
            .into_bytes()
    };
    let ct = format!("multipart/form-data; boundary={boundary}");
    post_bytes(w, "/api/import/csv", Some(&ct), form("upload"))
        .await
        .assert_error(400, "INVALID_REQUEST");
    let job = Created::from_answer(
        &post_bytes(w, "/api/import/csv-gemini", Some(&ct), form("file")).await,
    );
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    assert_eq!(ws.until_closed().await.code, 1000);
    let got = results(w, &job).await;
    assert_eq!(
        got["books"],
        json!([{ "title": "Dune", "author": "Frank Herbert" }])
    );
    assert_eq!(got["successRate"], "1/1");
}
