//! Idempotent creation (contract 9.3): a repeat of a creation with the same `Idempotency-Key`
//! and request creates nothing and answers as the first did, also when the two are sent at
//! once; the same key with another request is 409.

use crate::support::providers::{image, shared_providers};
use crate::support::*;
use serde_json::{json, Value};

/// POSTs `body` to `path` with an `Idempotency-Key`, from one client address.
async fn post_keyed(
    client: &reqwest::Client,
    w: &Worker,
    path: &str,
    content_type: &str,
    key: &str,
    body: Vec<u8>,
) -> Answer {
    let req = client
        .post(w.url(path))
        .header("content-type", content_type)
        .header("idempotency-key", key)
        .body(body);
    Answer::from(req.send().await.unwrap()).await
}

fn key(name: &str) -> String {
    format!("{name}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
async fn two_identical_creations_at_once_make_one_job_on_every_route() {
    let (_, w) = shared_providers().await;
    let csv = b"Title,Author\nDune,Frank Herbert\n".to_vec();
    let books = serde_json::to_vec(&json!({ "books": [{ "title": "Dune" }] })).unwrap();
    let batch = serde_json::to_vec(&json!({ "images": [
        { "index": 0, "data": bookstrack_jobs::base64::encode(&image("png", "fenced")) }
    ] }))
    .unwrap();
    let routes: &[(&str, &str, Vec<u8>)] = &[
        ("/api/import/csv", "text/csv", csv),
        ("/api/enrichment/batch", "application/json", books),
        ("/api/scan-bookshelf", "image/jpeg", image("jpeg", "fenced")),
        ("/api/scan-bookshelf/batch", "application/json", batch),
    ];
    for (path, content_type, body) in routes {
        let client = http();
        let key = key("same");
        let (a, b) = tokio::join!(
            post_keyed(&client, w, path, content_type, &key, body.clone()),
            post_keyed(&client, w, path, content_type, &key, body.clone()),
        );
        let (a, b) = (Created::from_answer(&a), Created::from_answer(&b));
        assert_eq!(a.job_id, b.job_id, "{path}: one job");
        assert_eq!(a.token, b.token, "{path}: one token");
        // Later, the same again; the token works.
        let c = Created::from_answer(
            &post_keyed(&client, w, path, content_type, &key, body.clone()).await,
        );
        assert_eq!((&c.job_id, &c.token), (&a.job_id, &a.token), "{path}");
        assert_eq!(job_state(w, &c).await["jobId"], a.job_id.as_str());
        let created: Vec<Value> = w
            .events()
            .into_iter()
            .filter(|e| e["event"] == "job.created" && e["jobId"] == a.job_id)
            .collect();
        assert_eq!(created.len(), 1, "{path}: created once");
        // The same key with another request is a conflict.
        let mut other = body.clone();
        other.extend_from_slice(if *content_type == "application/json" {
            b" "
        } else {
            b"\n"
        });
        if *content_type == "application/json" {
            // JSON with another book list, not just other spacing (spacing is the same request).
            other = serde_json::to_vec(&json!({ "books": [{ "title": "Emma" }] })).unwrap();
            if path.contains("scan") {
                other = serde_json::to_vec(&json!({ "images": [
                    { "index": 1, "data": bookstrack_jobs::base64::encode(&image("png", "fenced")) }
                ] }))
                .unwrap();
            }
        } else if path.contains("scan") {
            other = image("jpeg", "prose");
        }
        post_keyed(&client, w, path, content_type, &key, other)
            .await
            .assert_error(409, "CONFLICT");
    }
}

#[tokio::test]
async fn a_repeat_framed_differently_is_still_the_same_request() {
    let (_, w) = shared_providers().await;
    let client = http();
    let key = key("framing");
    let compact = br#"{"books":[{"title":"Dune","author":"Frank Herbert"}]}"#.to_vec();
    let spaced =
        b"{ \"books\" : [ { \"author\": \"Frank Herbert\", \"title\": \"Dune\" } ] }\n".to_vec();
    let a = Created::from_answer(
        &post_keyed(
            &client,
            w,
            "/api/enrichment/batch",
            "application/json",
            &key,
            compact,
        )
        .await,
    );
    let b = Created::from_answer(
        &post_keyed(
            &client,
            w,
            "/api/enrichment/batch",
            "application/json",
            &key,
            spaced,
        )
        .await,
    );
    assert_eq!((a.job_id, a.token), (b.job_id, b.token));
}

#[tokio::test]
async fn idempotency_keys_are_checked() {
    let (_, w) = shared_providers().await;
    let client = http();
    let long = "k".repeat(129);
    for bad in ["", "has space", long.as_str()] {
        let body = serde_json::to_vec(&json!({ "books": [{ "title": "Dune" }] })).unwrap();
        let req = client
            .post(w.url("/api/enrichment/batch"))
            .header("content-type", "application/json")
            .header("idempotency-key", bad)
            .body(body);
        Answer::from(req.send().await.unwrap())
            .await
            .assert_error(400, "INVALID_REQUEST");
    }
}
