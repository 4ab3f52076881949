//! Protocol v2 for phones (contract 9.4 and 9.6): numbered events, `item_result`, resuming with
//! `since` (also across a restart of the worker), room made by silent sockets, and socket
//! rights that end with their token.

use crate::support::providers::{shared_providers, Providers};
use crate::support::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// The job's events a socket received, by seq: everything but the replies to its own `ready`
/// and the coalesced progress.
fn events(received: &[Value]) -> BTreeMap<u64, Value> {
    received
        .iter()
        .filter(|m| {
            !matches!(
                m["type"].as_str(),
                Some("ready_ack" | "reconnected" | "job_progress")
            )
        })
        .map(|m| {
            (
                m["seq"].as_u64().expect("every message has a seq"),
                m["payload"].clone(),
            )
        })
        .collect()
}

fn last_seq(received: &[Value]) -> u64 {
    received
        .iter()
        .filter_map(|m| m["seq"].as_u64())
        .max()
        .unwrap_or(0)
}

/// Five books that finish 300 ms apart, so a socket can drop between two of them.
fn five_books(tag: &str) -> Value {
    let books: Vec<Value> = (0..5)
        .map(|i| json!({ "title": format!("{tag} Stagger{} {i}", i + 1), "author": "A" }))
        .collect();
    json!({ "books": books })
}

async fn reads_until_item_results(ws: &mut Socket, n: usize) {
    while ws.of_kind("item_result").len() < n {
        ws.next().await.expect("open");
    }
}

/// Reconnects with `since` and reads to the close.
async fn resume(w: &Worker, job: &Created, since: u64) -> Socket {
    let path = format!("{}&since={since}", job.websocket_url);
    let mut ws = Socket::connect_path(w, &path).await.expect("upgrade");
    ws.ready().await;
    assert_eq!(ws.until_closed().await.code, 1000, "{:?}", ws.kinds());
    ws
}

#[tokio::test]
async fn a_client_that_drops_and_resumes_with_since_ends_with_the_same_events() {
    let (_, w) = shared_providers().await;
    let body = five_books(&format!("Resume {}", std::process::id()));
    let job = Created::from_answer(&post_json(w, "/api/enrichment/batch", &body, None).await);
    // Both sockets are open before the first `ready` starts the job, so both see every
    // event from `job_started` on, however slowly the second one would connect.
    let mut steady = Socket::connect(w, &job).await;
    let mut dropping = Socket::connect(w, &job).await;
    steady.ready().await;
    dropping.ready().await;
    reads_until_item_results(&mut dropping, 2).await;
    let dropped = dropping.vanish();
    let since = last_seq(&dropped);
    assert_eq!(steady.until_closed().await.code, 1000);
    let back = resume(w, &job, since).await;
    let mut resumed = events(&dropped);
    resumed.extend(events(&back.received));
    assert_eq!(
        resumed,
        events(&steady.received),
        "the same events under the same seq"
    );
    assert_eq!(
        resumed
            .values()
            .filter(|p| p["type"] == "item_result")
            .count(),
        5
    );
    let replayed: Vec<u64> = back
        .received
        .iter()
        .skip(1)
        .filter_map(|m| m["seq"].as_u64())
        .collect();
    assert!(
        replayed.iter().all(|s| *s > since),
        "nothing at or before since: {replayed:?}"
    );
    assert!(
        replayed.windows(2).all(|p| p[0] < p[1]),
        "in order: {replayed:?}"
    );
    let live: Vec<u64> = steady
        .received
        .iter()
        .filter_map(|m| m["seq"].as_u64())
        .collect();
    assert!(
        live.windows(2).all(|p| p[0] < p[1]),
        "live messages in order: {live:?}"
    );
    // Each item_result is that book's results entry.
    let results = get(
        w,
        &format!("/v1/enrichment/results/{}", job.job_id),
        Some(&job.token),
    )
    .await;
    for item in resumed.values().filter(|p| p["type"] == "item_result") {
        let index = item["index"].as_u64().unwrap() as usize;
        assert_eq!(item["book"], results.data()["books"][index], "item {index}");
    }
}

#[tokio::test]
async fn resuming_with_since_works_across_a_restart_of_the_worker() {
    let providers = Providers::start(Duration::from_millis(5));
    let mut w = Worker::start(providers.options(test_options())).await;
    let body = five_books(&format!("Restart {}", std::process::id()));
    let job = Created::from_answer(&post_json(&w, "/api/enrichment/batch", &body, None).await);
    let mut steady = Socket::connect(&w, &job).await;
    let mut dropping = Socket::connect(&w, &job).await;
    steady.ready().await;
    dropping.ready().await;
    reads_until_item_results(&mut dropping, 2).await;
    let dropped = dropping.vanish();
    let dropped_at = last_seq(&dropped);
    reads_until_item_results(&mut steady, 2).await;
    // The worker dies with the job mid-batch; every socket goes with it.
    w.restart().await;
    let steady_seen = steady.vanish();
    let steady_since = last_seq(&steady_seen);
    let steady_back = resume(&w, &job, steady_since).await;
    let back = resume(&w, &job, dropped_at).await;
    let mut a = events(&steady_seen);
    a.extend(events(&steady_back.received));
    let mut b = events(&dropped);
    b.extend(events(&back.received));
    // What was before the drop the two share; after it each saw the rest live or replayed.
    let after = |m: &BTreeMap<u64, Value>| -> BTreeMap<u64, Value> {
        m.iter()
            .filter(|(s, _)| **s > steady_since)
            .map(|(s, v)| (*s, v.clone()))
            .collect()
    };
    assert_eq!(after(&a), after(&b), "the same events after the restart");
    let books: std::collections::BTreeSet<u64> = b
        .values()
        .filter(|p| p["type"] == "item_result")
        .map(|p| p["index"].as_u64().unwrap())
        .collect();
    assert_eq!(books.len(), 5, "every book reported: {books:?}");
    assert!(b.values().any(|p| p["type"] == "job_complete"));
    let mut seqs: Vec<u64> = a.keys().chain(b.keys()).copied().collect();
    seqs.sort();
    assert!(
        seqs.last().unwrap() > &10_000,
        "numbering went on past the reservation: {seqs:?}"
    );
}

#[tokio::test]
async fn a_client_seeing_everything_gets_item_results_and_numbered_messages() {
    let (_, w) = shared_providers().await;
    let body = five_books(&format!("Numbered {}", std::process::id()));
    let job = Created::from_answer(&post_json(w, "/api/enrichment/batch", &body, None).await);
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    assert_eq!(ws.until_closed().await.code, 1000);
    let seqs: Vec<u64> = ws
        .received
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs[0] >= 1 && seqs.windows(2).all(|p| p[0] < p[1]),
        "{seqs:?}"
    );
    let items: Vec<&Value> = ws.of_kind("item_result");
    assert_eq!(items.len(), 5);
    let kinds = ws.kinds();
    let first_item = kinds.iter().position(|k| k == "item_result").unwrap();
    assert!(first_item < kinds.iter().position(|k| k == "job_complete").unwrap());
    assert!(items.iter().all(|m| m["payload"]["success"] == true));
}

#[tokio::test]
async fn after_a_refresh_the_old_tokens_socket_cannot_cancel_and_closes_at_its_expiry() {
    let w = Worker::start(
        test_options()
            .var("TOKEN_TTL_SECS", 6)
            .var("TOKEN_REFRESH_WINDOW_SECS", 6)
            .var("READY_TIMEOUT_SECS", 3600),
    )
    .await;
    let job = synthetic(&w, json!({ "items": 3 })).await;
    let mut old_talker = Socket::connect(&w, &job).await;
    let mut old_silent = Socket::connect(&w, &job).await;
    let refreshed = post_json(
        &w,
        "/api/token/refresh",
        &json!({ "jobId": job.job_id, "oldToken": job.token }),
        None,
    )
    .await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    let new_token = refreshed.data()["token"].as_str().unwrap().to_string();
    let renewed = Created {
        token: new_token.clone(),
        websocket_url: format!("/ws/progress?jobId={}&token={new_token}", job.job_id),
        ..job.clone()
    };
    let mut current = Socket::connect(&w, &renewed).await;
    old_talker.send_text(r#"{"type":"cancel"}"#).await;
    assert_eq!(
        old_talker.until_closed().await.code,
        1008,
        "its rights ended with its token"
    );
    assert_eq!(
        job_state(&w, &renewed).await["status"],
        "queued",
        "nothing was canceled"
    );
    // The old token would have expired 6 s after creation: its silent socket closes then.
    assert_eq!(old_silent.until_closed().await.code, 1008);
    current.ready().await;
    assert_eq!(
        current.until("ready_ack").await["type"],
        "ready_ack",
        "the new token's socket lives"
    );
    current.send_text(r#"{"type":"cancel"}"#).await;
    assert_eq!(current.until_closed().await.code, 1001);
}

#[tokio::test]
async fn a_refresh_without_the_old_token_is_malformed() {
    let (_, w) = shared_providers().await;
    let job = synthetic(w, json!({ "items": 1 })).await;
    post_json(
        w,
        "/api/token/refresh",
        &json!({ "jobId": job.job_id }),
        None,
    )
    .await
    .assert_error(400, "INVALID_REQUEST");
    post_json(
        w,
        "/api/token/refresh",
        &json!({ "oldToken": job.token }),
        None,
    )
    .await
    .assert_error(400, "INVALID_REQUEST");
}
