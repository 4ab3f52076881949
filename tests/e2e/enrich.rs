//! The enrichment pipeline against the real worker and fake Google Books / Open Library.

use crate::support::fake::FakeRequest;
use crate::support::providers::{shared_providers, Providers, GOOGLE_OUTAGE_ISBNS, KNOWN_BOOKS};
use crate::support::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

async fn create(w: &Worker, books: &[Value]) -> Answer {
    post_json(w, "/api/enrichment/batch", &json!({ "books": books }), None).await
}

/// Which book a provider request was about: its ISBN or title, as the fake sees it.
fn subject(req: &FakeRequest) -> String {
    req.target.clone()
}

async fn results(w: &Worker, job: &Created) -> Vec<Value> {
    let a = get(
        w,
        &format!("/v1/enrichment/results/{}", job.job_id),
        Some(&job.token),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.data()["books"].as_array().unwrap().clone()
}

/// Twenty books: ten by ISBN (one of which Google Books fails on), eight by title, an
/// unknown title, and an ISBN-less title with an author.
fn twenty_books() -> Vec<Value> {
    let mut books: Vec<Value> = KNOWN_BOOKS
        .iter()
        .map(|(isbn, title, author)| json!({ "title": title, "author": author, "isbn": isbn }))
        .collect();
    for i in 0..8 {
        books.push(
            json!({ "title": format!("Title Only Volume {i}"), "author": format!("Writer {i}") }),
        );
    }
    books.push(json!({ "title": "An Unknown Book Nobody Wrote", "author": "Nobody" }));
    books.push(json!({ "title": "Another Title Only", "author": "Some Author" }));
    books
}

#[tokio::test]
async fn twenty_books_enrich_with_fallback_and_bounded_concurrency() {
    // Its own providers and worker: the in-flight counter must see only this job.
    let providers = Providers::start(Duration::from_millis(150));
    let w = Worker::start(providers.options(test_options())).await;
    let books = twenty_books();
    let job = Created::from_answer(&create(&w, &books).await);
    assert_eq!(job.pipeline, "batch_enrichment");
    let mut ws = Socket::connect(&w, &job).await;
    ws.ready().await;
    assert_eq!(ws.until("job_started").await["payload"]["totalCount"], 20);
    assert_eq!(ws.until_closed().await.code, 1000, "{:?}", ws.kinds());
    let items: Vec<&str> = ws
        .of_kind("job_progress")
        .iter()
        .filter_map(|m| m["payload"]["currentItem"].as_str())
        .collect();
    assert!(
        items
            .iter()
            .any(|i| i.starts_with("Enriched ") && i.ends_with(" of 20")),
        "{items:?}"
    );
    let summary = ws.of_kind("job_complete")[0]["payload"]["summary"].clone();
    assert_eq!(
        (
            summary["totalProcessed"].as_u64(),
            summary["successCount"].as_u64()
        ),
        (Some(20), Some(19)),
        "{summary}"
    );
    assert_eq!(summary["notFound"], 1);

    let outcomes = results(&w, &job).await;
    assert_eq!(outcomes.len(), 20);
    for (i, (outcome, input)) in outcomes.iter().zip(&books).enumerate() {
        assert_eq!(
            outcome["input"]["title"], input["title"],
            "row {i} out of order"
        );
        let title = input["title"].as_str().unwrap();
        if title.contains("Unknown") {
            assert_eq!(outcome["success"], false);
            assert!(outcome["error"].as_str().is_some_and(|e| !e.is_empty()));
            assert!(outcome.get("enriched").is_none());
            continue;
        }
        assert_eq!(outcome["success"], true, "row {i}: {outcome}");
        let e = &outcome["enriched"];
        assert_eq!(e["title"], input["title"], "row {i}");
        assert!(
            e["authors"].as_array().is_some_and(|a| !a.is_empty()),
            "row {i}: {e}"
        );
        let isbn = input["isbn"].as_str();
        let expected_provider = if isbn.is_some_and(|i| GOOGLE_OUTAGE_ISBNS.contains(&i)) {
            "open_library"
        } else {
            "google_books"
        };
        assert_eq!(e["provider"], expected_provider, "row {i}: {e}");
        if let Some(isbn) = isbn {
            assert_eq!(e["isbn13"], isbn, "row {i}");
        }
        if let Some(cover) = e["coverUrl"].as_str() {
            assert!(cover.starts_with("https://"), "row {i}: {cover}");
        }
    }
    // The Google Books outage was asked and then Open Library answered.
    let outage = GOOGLE_OUTAGE_ISBNS[0];
    let asked: Vec<String> = providers
        .server
        .requests()
        .iter()
        .map(subject)
        .filter(|t| t.contains(outage))
        .collect();
    assert!(
        asked.iter().any(|t| t.starts_with("/books/v1/"))
            && asked.iter().any(|t| t.starts_with("/ol/isbn/")),
        "{asked:?}"
    );
    let peak = providers.server.max_in_flight();
    assert!(
        (2..=10).contains(&peak),
        "at most 10 lookups at once, and some at once: {peak}"
    );
}

#[tokio::test]
async fn bad_enrichment_requests_are_400_with_the_index() {
    let (_, w) = shared_providers().await;
    let ok = json!({ "title": "Dune" });
    let many: Vec<Value> = (0..101)
        .map(|i| json!({ "title": format!("Book {i}") }))
        .collect();
    let cases: Vec<(&str, Value, Option<u64>)> = vec![
        ("no books", json!({ "books": [] }), None),
        ("books missing", json!({}), None),
        ("books not an array", json!({ "books": "Dune" }), None),
        ("101 books", json!({ "books": many }), None),
        (
            "missing title",
            json!({ "books": [ok.clone(), { "author": "X" }] }),
            Some(1),
        ),
        (
            "blank title",
            json!({ "books": [ok.clone(), ok.clone(), { "title": "  " }] }),
            Some(2),
        ),
        (
            "title not a string",
            json!({ "books": [{ "title": 42 }] }),
            Some(0),
        ),
        (
            "title 501 chars",
            json!({ "books": [{ "title": "t".repeat(501) }] }),
            Some(0),
        ),
        (
            "author 301 chars",
            json!({ "books": [ok.clone(), { "title": "x", "author": "a".repeat(301) }] }),
            Some(1),
        ),
        (
            "isbn 18 chars",
            json!({ "books": [{ "title": "x", "isbn": "9".repeat(18) }] }),
            Some(0),
        ),
        (
            "book not an object",
            json!({ "books": [ok.clone(), "Dune"] }),
            Some(1),
        ),
        (
            "bad job id",
            json!({ "jobId": "42", "books": [ok.clone()] }),
            None,
        ),
    ];
    for (name, body, index) in cases {
        let a = post_json(w, "/api/enrichment/batch", &body, None).await;
        a.assert_error(400, "INVALID_REQUEST");
        if let Some(index) = index {
            assert_eq!(
                a.body["error"]["details"]["index"].as_u64(),
                Some(index),
                "{name}: {}",
                a.text
            );
        }
    }
    // Limits hold exactly at their edge.
    let edge = json!({ "books": [{ "title": "t".repeat(500), "author": "a".repeat(300), "isbn": "978-0-441-01359-3" }] });
    assert_eq!(
        post_json(w, "/api/enrichment/batch", &edge, None)
            .await
            .status,
        202
    );
    let hundred: Vec<Value> = (0..100)
        .map(|i| json!({ "title": format!("Book {i}") }))
        .collect();
    assert_eq!(create(w, &hundred).await.status, 202);
    // Wrong content type and oversized bodies.
    post_bytes(w, "/api/enrichment/batch", Some("text/plain"), "{}".into())
        .await
        .assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
    post_bytes(w, "/v1/enrichment/batch", None, "{}".into())
        .await
        .assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
    let big = format!(r#"{{"books":[{{"title":"{}"}}]}}"#, "x".repeat(300 * 1024));
    post_bytes(
        w,
        "/api/enrichment/batch",
        Some("application/json"),
        big.into_bytes(),
    )
    .await
    .assert_error(413, "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn the_alias_and_a_proposed_job_id_work() {
    let (_, w) = shared_providers().await;
    let id = "2c4e6a8b-1d3f-4a5b-8c7d-9e0f1a2b3c4d";
    let a = post_json(
        w,
        "/v1/enrichment/batch",
        &json!({ "jobId": id, "books": [{ "title": "Dune", "author": "Frank Herbert" }] }),
        None,
    )
    .await;
    let job = Created::from_answer(&a);
    assert_eq!(job.job_id, id);
    post_json(
        w,
        "/v1/enrichment/batch",
        &json!({ "jobId": id, "books": [{ "title": "Dune" }] }),
        None,
    )
    .await
    .assert_error(409, "CONFLICT");
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    assert_eq!(ws.until_closed().await.code, 1000);
    let outcomes = results(w, &job).await;
    assert_eq!(outcomes[0]["enriched"]["title"], "Dune");
}

#[tokio::test]
async fn cancel_mid_batch_stops_the_lookups() {
    let (providers, w) = shared_providers().await;
    let tag = format!("Cancel {}", std::process::id());
    // The books of a chunk finish 300 ms apart, so the cancel lands inside the first chunk
    // however slow the machine is.
    let books: Vec<Value> = (0..40)
        .map(|i| json!({ "title": format!("{tag} Stagger{} {i}", i % 10), "author": "A" }))
        .collect();
    let job = Created::from_answer(&create(w, &books).await);
    cancel_after_first_progress(w, &job, "/api/enrichment/cancel").await;
    server_time_passes(w, 1_500).await;
    let looked_up: std::collections::HashSet<String> = providers
        .server
        .requests()
        .iter()
        .filter(|r| {
            r.target.starts_with("/books/v1/") && r.target.contains(&tag.replace(' ', "%20"))
        })
        .map(|r| r.target.clone())
        .collect();
    assert!(
        looked_up.len() <= 10,
        "{} books were looked up; only the first chunk may be",
        looked_up.len()
    );
    assert_eq!(job_state(w, &job).await["status"], "canceled");
}

#[tokio::test]
async fn a_restart_mid_batch_looks_up_no_book_twice_beyond_the_chunk_in_flight() {
    let providers = Providers::start(Duration::from_millis(120));
    let mut w = Worker::start(providers.options(test_options())).await;
    let books: Vec<Value> = (0..30)
        .map(|i| json!({ "title": format!("Restart Volume {i:02}"), "author": "Author" }))
        .collect();
    let job = Created::from_answer(&create(&w, &books).await);
    let mut ws = Socket::connect(&w, &job).await;
    ws.ready().await;
    let mut seen = 0;
    while seen < 12 {
        seen = ws.until("job_progress").await["payload"]["processedCount"]
            .as_u64()
            .unwrap();
    }
    w.crash().await;
    let state = state_until(&w, &job, "completion after the restart", |s| {
        s["status"] == "complete"
    })
    .await;
    assert_eq!(state["processedCount"], 30);
    let outcomes = results(&w, &job).await;
    assert_eq!(outcomes.len(), 30);
    assert!(
        outcomes.iter().all(|o| o["success"] == true),
        "{outcomes:?}"
    );
    // Count first-provider requests per book.
    let mut per_book: HashMap<String, usize> = HashMap::new();
    for r in providers
        .server
        .requests()
        .iter()
        .filter(|r| r.target.starts_with("/books/v1/"))
    {
        if let Some(pos) = r.target.find("Restart%20Volume%20") {
            let key = r.target[pos..pos + "Restart%20Volume%20".len() + 2].to_string();
            *per_book.entry(key).or_default() += 1;
        }
    }
    assert_eq!(per_book.len(), 30, "every book was looked up");
    let twice: Vec<_> = per_book.iter().filter(|(_, n)| **n > 1).collect();
    assert!(per_book.values().all(|n| *n <= 2), "{per_book:?}");
    assert!(
        twice.len() <= 10,
        "only the chunk in flight may be repeated: {twice:?}"
    );
}
