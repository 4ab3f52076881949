//! The job core against the real worker: tokens, sockets, protocol, state, refresh, cancel,
//! the alarm-driven schedule, cleanup and restarts (contract sections 2–6), on synthetic jobs.

use crate::support::*;
use futures_util::future::join_all;
use serde_json::{json, Value};
use tokio::sync::OnceCell;

const UNKNOWN_JOB: &str = "0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e";

/// A worker whose durations are shortened to seconds, shared by the timing tests.
async fn short_lived() -> &'static Worker {
    static SHORT: OnceCell<Worker> = OnceCell::const_new();
    SHORT
        .get_or_init(|| {
            Worker::start(
                test_options()
                    .var("TOKEN_TTL_SECS", 8)
                    .var("TOKEN_REFRESH_WINDOW_SECS", 4)
                    .var("RESULTS_TTL_SECS", 3)
                    .var("READY_TIMEOUT_SECS", 1),
            )
        })
        .await
}

fn ws_path(job: &Created, token: &str) -> String {
    format!("/ws/progress?jobId={}&token={token}", job.job_id)
}

#[tokio::test]
async fn pre_upgrade_checks_come_in_contract_order() {
    let w = shared().await;
    let job = synthetic(w, json!({ "items": 1 })).await;
    // 426 without the upgrade header, whatever else is wrong.
    let plain = get(w, "/ws/progress?jobId=nope", None).await;
    plain.assert_error(426, "UPGRADE_REQUIRED");
    let plain = get(w, &job.websocket_url, None).await;
    plain.assert_error(426, "UPGRADE_REQUIRED");
    // Then 400, 404, 401, as upgrades.
    let cases: Vec<(String, u16)> = vec![
        ("/ws/progress".into(), 400),
        ("/ws/progress?token=x".into(), 400),
        ("/ws/progress?jobId=not-a-uuid&token=x".into(), 400),
        ("/ws/progress?jobId=../../etc&token=x".into(), 400),
        (format!("/ws/progress?jobId={UNKNOWN_JOB}&token=x"), 404),
        (format!("/ws/progress?jobId={UNKNOWN_JOB}"), 404),
        (format!("/ws/progress?jobId={}", job.job_id), 401),
        (format!("/ws/progress?jobId={}&token=", job.job_id), 401),
        (ws_path(&job, "wrong-token"), 401),
        (
            format!(
                "/ws/progress?jobId={}&token={}",
                job.job_id,
                &job.token[..20]
            ),
            401,
        ),
    ];
    for (path, status) in cases {
        match Socket::connect_path(w, &path).await {
            Err(got) => assert_eq!(got, status, "{path}"),
            Ok(_) => panic!("{path} was upgraded"),
        }
    }
    assert!(Socket::connect_path(w, &job.websocket_url).await.is_ok());
}

#[tokio::test]
async fn a_job_runs_ready_to_complete_with_throttled_progress() {
    let w = shared().await;
    let job = synthetic(
        w,
        json!({ "items": 30, "itemsPerChunk": 3, "chunkDelayMs": 20 }),
    )
    .await;
    assert_eq!(job.pipeline, "csv_import");
    assert!(job.websocket_url.contains(&job.job_id) && job.websocket_url.contains(&job.token));
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    let ack = ws.next().await.unwrap();
    assert_eq!(ack["type"], "ready_ack");
    for key in ["jobId", "pipeline", "timestamp", "version", "payload"] {
        assert!(ack.get(key).is_some(), "{key} missing from {ack}");
    }
    assert_eq!(ack["jobId"], job.job_id);
    assert_eq!(ack["version"], "1.0.0");
    assert_eq!(ack["payload"]["type"], "ready_ack");
    let started = ws.until("job_started").await;
    assert_eq!(started["payload"]["totalCount"], 30);
    let closed = ws.until_closed().await;
    assert_eq!(closed.code, 1000, "{closed:?}");
    let kinds = ws.kinds();
    assert!(
        !kinds.contains(&"reconnected".to_string()),
        "a fresh client needs no snapshot: {kinds:?}"
    );
    let progress = ws.of_kind("job_progress");
    assert!(!progress.is_empty(), "no progress in {kinds:?}");
    let counts: Vec<u64> = progress
        .iter()
        .map(|m| m["payload"]["processedCount"].as_u64().unwrap())
        .collect();
    assert!(
        counts.windows(2).all(|p| p[0] <= p[1]),
        "progress went backwards: {counts:?}"
    );
    for m in &progress {
        assert_eq!(m["payload"]["status"], "running");
        let p = m["payload"]["progress"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
    }
    // At most 20 progress messages in any one second (server timestamps).
    let stamps: Vec<u64> = progress
        .iter()
        .map(|m| m["timestamp"].as_u64().unwrap())
        .collect();
    for (i, t) in stamps.iter().enumerate() {
        let in_second = stamps[i..].iter().take_while(|u| **u < t + 1_000).count();
        assert!(
            in_second <= 20,
            "{in_second} progress messages within a second"
        );
    }
    let complete = ws.of_kind("job_complete")[0].clone();
    assert_eq!(complete["payload"]["pipeline"], "csv_import");
    assert_eq!(
        complete["payload"]["resultsUrl"],
        format!("/v1/csv/results/{}", job.job_id)
    );
    let summary = &complete["payload"]["summary"];
    assert_eq!(summary["totalProcessed"], 30);
    assert!(summary["duration"].as_u64().is_some());
    assert!(
        complete.to_string().len() < 4096,
        "job_complete must stay under 4 KiB"
    );
    assert_eq!(kinds.last().unwrap(), "job_complete");

    let state = job_state(w, &job).await;
    assert_eq!(state["status"], "complete");
    assert_eq!(
        (
            state["processedCount"].as_u64(),
            state["totalCount"].as_u64()
        ),
        (Some(30), Some(30))
    );
    assert_eq!(state["progress"], 1.0);
    assert!(state["endTime"].as_u64().unwrap() >= state["startTime"].as_u64().unwrap());
    assert_eq!(state["resultsUrl"], complete["payload"]["resultsUrl"]);
    assert!(state.get("error").is_none());
    let results = get(
        w,
        &format!("/v1/csv/results/{}", job.job_id),
        Some(&job.token),
    )
    .await;
    assert_eq!(results.status, 200, "{}", results.text);
}

#[tokio::test]
async fn job_state_route_checks_token_and_id() {
    let w = shared().await;
    let job = synthetic(w, json!({ "items": 2 })).await;
    let path = format!("/api/job-state/{}", job.job_id);
    let state = get(w, &path, Some(&job.token)).await;
    assert_eq!(state.status, 200);
    state.assert_envelope();
    let d = state.data();
    assert_eq!(d["jobId"], job.job_id);
    assert_eq!(d["status"], "queued");
    assert_eq!(d["pipeline"], "csv_import");
    assert!(d["version"].as_u64().unwrap() >= 1);
    assert_eq!(d["startTime"], d["lastUpdate"]);
    get(w, &path, None).await.assert_error(401, "AUTH_ERROR");
    get(w, &path, Some("wrong"))
        .await
        .assert_error(401, "AUTH_ERROR");
    // A token in the query string of an HTTP route is ignored.
    get(w, &format!("{path}?token={}", job.token), None)
        .await
        .assert_error(401, "AUTH_ERROR");
    get(
        w,
        &format!("/api/job-state/{UNKNOWN_JOB}"),
        Some(&job.token),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    get(w, "/api/job-state/not-a-uuid", Some(&job.token))
        .await
        .assert_error(400, "INVALID_REQUEST");
    // A token is never valid for another job.
    let other = synthetic(w, json!({ "items": 2 })).await;
    get(
        w,
        &format!("/api/job-state/{}", other.job_id),
        Some(&job.token),
    )
    .await
    .assert_error(401, "AUTH_ERROR");
}

#[tokio::test]
async fn a_proposed_job_id_is_used_once() {
    let w = shared().await;
    let id = "6f2d3c1b-8a4e-4f5a-9b7c-0d1e2f3a4b5c";
    let first = post_json(
        w,
        "/api/test/jobs",
        &json!({ "items": 1, "jobId": id }),
        None,
    )
    .await;
    assert_eq!(Created::from_answer(&first).job_id, id);
    post_json(
        w,
        "/api/test/jobs",
        &json!({ "items": 1, "jobId": id }),
        None,
    )
    .await
    .assert_error(409, "CONFLICT");
    post_json(
        w,
        "/api/test/jobs",
        &json!({ "items": 1, "jobId": "nope" }),
        None,
    )
    .await
    .assert_error(400, "INVALID_REQUEST");
}

#[tokio::test]
async fn malformed_client_messages_close_1002_and_the_job_keeps_running() {
    let w = shared().await;
    let job = synthetic(w, json!({ "items": 20, "chunkDelayMs": 30 })).await;
    let mut watcher = Socket::connect(w, &job).await;
    watcher.ready().await;
    watcher.until("job_started").await;
    let malformed = [
        "this is not json",
        "[\"ready\"]",
        r#"{"kind":"ready"}"#,
        r#"{"type":42}"#,
        r#"{"type":"dance"}"#,
    ];
    for text in malformed {
        let mut ws = Socket::connect(w, &job).await;
        ws.send_text(text).await;
        let closed = ws.until_closed().await;
        assert_eq!(closed.code, 1002, "{text}: {closed:?}");
        assert!(closed.reason.len() <= 123);
    }
    let mut binary = Socket::connect(w, &job).await;
    binary.send_binary(vec![1, 2, 3]).await;
    assert_eq!(binary.until_closed().await.code, 1002);
    // The job was not disturbed: the first socket sees it through.
    assert_eq!(watcher.until_closed().await.code, 1000);
    assert!(!watcher.of_kind("job_complete").is_empty());
}

#[tokio::test]
async fn an_oversized_message_closes_1009() {
    let w = shared().await;
    let job = synthetic(w, json!({ "items": 1 })).await;
    let mut ws = Socket::connect(w, &job).await;
    ws.send_text(&format!(
        r#"{{"type":"ready","pad":"{}"}}"#,
        "x".repeat(70_000)
    ))
    .await;
    assert_eq!(ws.until_closed().await.code, 1009);
}

#[tokio::test]
async fn ping_is_answered_with_pong() {
    let w = shared().await;
    let job = synthetic(w, json!({ "items": 1 })).await;
    let mut ws = Socket::connect(w, &job).await;
    ws.send_text(r#"{"type":"ping"}"#).await;
    let pong = ws.next().await.unwrap();
    assert_eq!(pong, json!({ "type": "pong" }));
    // A ping the runtime's exact match misses is answered by the object.
    ws.send_text(r#"{ "type": "ping" }"#).await;
    assert_eq!(ws.next().await.unwrap(), json!({ "type": "pong" }));
}

#[tokio::test]
async fn the_ninth_socket_is_closed_1013() {
    let w = shared().await;
    let job = synthetic(w, json!({ "items": 1 })).await;
    let mut open = Vec::new();
    for _ in 0..8 {
        let mut ws = Socket::connect(w, &job).await;
        // A round trip proves the socket is accepted and open before the next one comes.
        ws.send_text(r#"{"type":"ping"}"#).await;
        assert_eq!(ws.next().await.unwrap()["type"], "pong");
        open.push(ws);
    }
    let mut ninth = Socket::connect(w, &job).await;
    let closed = ninth.until_closed().await;
    assert_eq!(closed.code, 1013, "{closed:?}");
    // The eight are still served: all of them see the job through.
    open[0].ready().await;
    for ws in &mut open {
        assert_eq!(ws.until_closed().await.code, 1000);
        assert_eq!(ws.of_kind("job_complete").len(), 1);
    }
}

#[tokio::test]
async fn two_sockets_both_see_completion() {
    let w = shared().await;
    let job = synthetic(
        w,
        json!({ "items": 12, "itemsPerChunk": 2, "chunkDelayMs": 20 }),
    )
    .await;
    let mut a = Socket::connect(w, &job).await;
    let mut b = Socket::connect(w, &job).await;
    a.ready().await;
    a.until("ready_ack").await;
    let (ca, cb) = tokio::join!(a.until_closed(), b.until_closed());
    assert_eq!((ca.code, cb.code), (1000, 1000));
    for ws in [&a, &b] {
        assert_eq!(ws.of_kind("job_started").len(), 1, "{:?}", ws.kinds());
        assert_eq!(ws.of_kind("job_complete").len(), 1, "{:?}", ws.kinds());
    }
}

#[tokio::test]
async fn reconnecting_gets_a_snapshot_and_loses_no_progress() {
    let w = shared().await;
    let job = synthetic(w, json!({ "items": 40, "chunkDelayMs": 50 })).await;
    let mut first = Socket::connect(w, &job).await;
    first.ready().await;
    let mut seen = 0;
    while seen < 5 {
        let msg = first.until("job_progress").await;
        seen = msg["payload"]["processedCount"].as_u64().unwrap();
    }
    drop(first);
    let mut again = Socket::connect_path(w, &format!("{}&reconnect=true", job.websocket_url))
        .await
        .unwrap();
    again.ready().await;
    // Broadcast progress may arrive before the answer to `ready`; the snapshot comes right
    // after the acknowledgement.
    again.until("ready_ack").await;
    let snapshot = again.next().await.unwrap();
    assert_eq!(snapshot["type"], "reconnected");
    let p = &snapshot["payload"];
    assert_eq!(p["status"], "running");
    assert_eq!(p["totalCount"], 40);
    assert!(
        p["processedCount"].as_u64().unwrap() >= seen,
        "snapshot {p} behind {seen}"
    );
    for key in ["progress", "lastUpdate", "version"] {
        assert!(p.get(key).is_some(), "{key} missing from {p}");
    }
    assert_eq!(again.until_closed().await.code, 1000);
    let last = again.of_kind("job_complete");
    assert_eq!(last.len(), 1);
}

#[tokio::test]
async fn a_socket_on_an_ended_job_learns_how_it_ended() {
    let w = shared().await;
    // Complete.
    let job = synthetic(w, json!({ "items": 2 })).await;
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    ws.until_closed().await;
    let mut late = Socket::connect(w, &job).await;
    late.ready().await;
    assert_eq!(late.until_closed().await.code, 1000);
    assert_eq!(late.kinds(), ["ready_ack", "reconnected", "job_complete"]);
    assert_eq!(late.received[1]["payload"]["status"], "complete");
    // Canceled: no final message, close 1001 after the snapshot.
    let job = synthetic(w, json!({ "items": 2 })).await;
    let cancel = post_json(
        w,
        &format!("/api/jobs/{}/cancel", job.job_id),
        &json!({}),
        Some(&job.token),
    )
    .await;
    assert_eq!(cancel.status, 200);
    let mut late = Socket::connect(w, &job).await;
    late.ready().await;
    assert_eq!(late.until_closed().await.code, 1001);
    assert_eq!(late.kinds(), ["ready_ack", "reconnected"]);
    // Failed: the error again, then 1011.
    let job = synthetic(w, json!({ "items": 2, "failFirstAttempts": 99 })).await;
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    ws.until_closed().await;
    let mut late = Socket::connect(w, &job).await;
    late.ready().await;
    assert_eq!(late.until_closed().await.code, 1011);
    assert_eq!(late.kinds(), ["ready_ack", "reconnected", "error"]);
}

#[tokio::test]
async fn failing_tasks_are_retried_then_fail_with_error_and_1011() {
    let w = shared().await;
    // One chunk whose first two attempts fail.
    let job = synthetic(
        w,
        json!({ "items": 3, "itemsPerChunk": 3, "failFirstAttempts": 2 }),
    )
    .await;
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    assert_eq!(ws.until_closed().await.code, 1000, "{:?}", ws.kinds());
    w.job_logged_end(&job.job_id).await;
    let retries = w
        .events()
        .into_iter()
        .filter(|e| e["event"] == "task.retry" && e["jobId"] == job.job_id)
        .count();
    assert_eq!(retries, 2, "two failed attempts were retried");

    let job = synthetic(w, json!({ "items": 3, "failFirstAttempts": 99 })).await;
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    let closed = ws.until_closed().await;
    assert_eq!(closed.code, 1011);
    let error = ws.of_kind("error")[0]["payload"].clone();
    assert_eq!(error["retryable"], true);
    assert!(error["code"].is_string() && error["message"].is_string());
    let state = job_state(w, &job).await;
    assert_eq!(state["status"], "failed");
    assert_eq!(state["error"]["retryable"], true);
    w.job_logged_end(&job.job_id).await;
    let attempts: Vec<u64> = w
        .events()
        .into_iter()
        .filter(|e| e["event"] == "task.retry" && e["jobId"] == job.job_id)
        .filter_map(|e| e["attempts"].as_u64())
        .collect();
    assert_eq!(
        attempts,
        [1, 2, 3, 4],
        "attempts are counted, then the job fails"
    );
}

#[tokio::test]
async fn cancel_stops_the_job_and_closes_1001() {
    let w = shared().await;
    let job = synthetic(w, json!({ "items": 200, "chunkDelayMs": 40 })).await;
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    ws.until("job_progress").await;
    let answer = post_json(
        w,
        &format!("/api/jobs/{}/cancel", job.job_id),
        &json!({}),
        Some(&job.token),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.data()["status"], "canceled");
    assert_eq!(answer.data()["jobId"], job.job_id);
    assert_eq!(ws.until_closed().await.code, 1001);
    let at_cancel = job_state(w, &job).await;
    assert_eq!(at_cancel["status"], "canceled");
    assert!(at_cancel["endTime"].is_u64());
    // Several chunk intervals later nothing has moved.
    server_time_passes(w, 400).await;
    let later = job_state(w, &job).await;
    assert_eq!(later["processedCount"], at_cancel["processedCount"]);
    assert_eq!(later["version"], at_cancel["version"]);
    // Ended jobs cannot be canceled again; unknown jobs are 404; a token is required.
    post_json(
        w,
        &format!("/api/jobs/{}/cancel", job.job_id),
        &json!({}),
        Some(&job.token),
    )
    .await
    .assert_error(409, "CONFLICT");
    post_json(
        w,
        &format!("/api/jobs/{UNKNOWN_JOB}/cancel"),
        &json!({}),
        Some(&job.token),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    let fresh = synthetic(w, json!({ "items": 5 })).await;
    post_json(
        w,
        &format!("/api/jobs/{}/cancel", fresh.job_id),
        &json!({}),
        None,
    )
    .await
    .assert_error(401, "AUTH_ERROR");
}

#[tokio::test]
async fn cancel_aliases_take_the_id_in_the_body() {
    let w = shared().await;
    for alias in ["/api/enrichment/cancel", "/api/scan-bookshelf/cancel"] {
        let job = synthetic(w, json!({ "items": 5 })).await;
        let answer = post_json(w, alias, &json!({ "jobId": job.job_id }), Some(&job.token)).await;
        assert_eq!(answer.status, 200, "{alias}: {}", answer.text);
        assert_eq!(job_state(w, &job).await["status"], "canceled");
        post_json(w, alias, &json!({}), Some(&job.token))
            .await
            .assert_error(400, "INVALID_REQUEST");
        post_json(w, alias, &json!({ "jobId": job.job_id }), None)
            .await
            .assert_error(401, "AUTH_ERROR");
    }
}

#[tokio::test]
async fn a_queued_job_that_is_canceled_never_starts() {
    let w = short_lived().await; // starts by itself after 1 s
    let job = synthetic(w, json!({ "items": 3 })).await;
    let answer = post_json(
        w,
        &format!("/api/jobs/{}/cancel", job.job_id),
        &json!({}),
        Some(&job.token),
    )
    .await;
    assert_eq!(answer.status, 200);
    // A second job created later starts by itself; once it has completed, the first job's
    // start time has long passed.
    let later = synthetic(w, json!({ "items": 1 })).await;
    state_until(w, &later, "the later job to complete", |s| {
        s["status"] == "complete"
    })
    .await;
    let state = job_state(w, &job).await;
    assert_eq!(state["status"], "canceled");
    assert_eq!(state["processedCount"], 0);
}

#[tokio::test]
async fn a_job_without_clients_starts_after_the_ready_timeout() {
    let w = short_lived().await;
    let job = synthetic(w, json!({ "items": 4 })).await;
    let state = state_until(w, &job, "completion", |s| s["status"] == "complete").await;
    assert_eq!(state["processedCount"], 4);
}

#[tokio::test]
async fn ended_jobs_are_deleted_after_the_results_ttl() {
    let w = short_lived().await;
    let job = synthetic(w, json!({ "items": 1 })).await;
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    assert_eq!(ws.until_closed().await.code, 1000);
    let path = format!("/api/job-state/{}", job.job_id);
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let a = get(w, &path, Some(&job.token)).await;
        if a.status == 404 {
            a.assert_error(404, "NOT_FOUND");
            break;
        }
        assert_eq!(a.status, 200);
        assert!(tokio::time::Instant::now() < deadline, "never cleaned up");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    get(
        w,
        &format!("/v1/csv/results/{}", job.job_id),
        Some(&job.token),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    assert_eq!(
        Socket::connect_path(w, &job.websocket_url).await.err(),
        Some(404)
    );
}

#[tokio::test]
async fn an_expiring_token_closes_sockets_1008() {
    let w = short_lived().await; // tokens live 8 s
    let job = synthetic(w, json!({ "items": 1000, "chunkDelayMs": 100 })).await;
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    let closed = ws.until_closed().await;
    assert_eq!(closed.code, 1008, "{closed:?}");
    get(
        w,
        &format!("/api/job-state/{}", job.job_id),
        Some(&job.token),
    )
    .await
    .assert_error(401, "AUTH_ERROR");
    assert_eq!(
        Socket::connect_path(w, &job.websocket_url).await.err(),
        Some(401)
    );
}

#[tokio::test]
async fn refresh_only_inside_its_window_and_only_once() {
    let w = short_lived().await; // 8 s lifetime, refresh in the last 4 s
    let job = synthetic(w, json!({ "items": 1000, "chunkDelayMs": 200 })).await;
    let refresh = |old: String| {
        let job_id = job.job_id.clone();
        async move {
            post_json(
                w,
                "/api/token/refresh",
                &json!({ "jobId": job_id, "oldToken": old }),
                None,
            )
            .await
        }
    };
    let early = refresh(job.token.clone()).await;
    early.assert_error(409, "CONFLICT");
    let wait = early.body["error"]["details"]["retryAfterSecs"]
        .as_u64()
        .unwrap();
    assert!((1..=4).contains(&wait), "retryAfterSecs {wait}");
    refresh("not-the-token".into())
        .await
        .assert_error(401, "AUTH_ERROR");
    post_json(
        w,
        "/api/token/refresh",
        &json!({ "jobId": "nope", "oldToken": "x" }),
        None,
    )
    .await
    .assert_error(400, "INVALID_REQUEST");
    // The 409 says when the window opens.
    server_time_passes(w, wait * 1_000).await;
    let answers = join_all((0..10).map(|_| refresh(job.token.clone()))).await;
    let winners: Vec<&Answer> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(
        winners.len(),
        1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert!(answers
        .iter()
        .filter(|a| a.status != 200)
        .all(|a| a.status == 401 && a.code() == "AUTH_ERROR"));
    let data = winners[0].data();
    assert_eq!(data["jobId"], job.job_id);
    assert_eq!(data["expiresIn"], 8);
    let new_token = data["token"].as_str().unwrap().to_string();
    assert_ne!(new_token, job.token);
    let path = format!("/api/job-state/{}", job.job_id);
    get(w, &path, Some(&job.token))
        .await
        .assert_error(401, "AUTH_ERROR");
    assert_eq!(get(w, &path, Some(&new_token)).await.status, 200);
    let cancel = post_json(
        w,
        &format!("/api/jobs/{}/cancel", job.job_id),
        &json!({}),
        Some(&new_token),
    )
    .await;
    assert_eq!(cancel.status, 200);
}

/// The progress values this job persisted, from the worker's own `job.persisted` lines.
fn persisted_counts(w: &Worker, job: &Created) -> Vec<u64> {
    persisted(w, job)
        .iter()
        .filter_map(|e| e["processedCount"].as_u64())
        .collect()
}

fn persisted(w: &Worker, job: &Created) -> Vec<Value> {
    w.events()
        .into_iter()
        .filter(|e| e["event"] == "job.persisted" && e["jobId"] == job.job_id)
        .collect()
}

#[tokio::test]
async fn a_restart_mid_job_resumes_from_persisted_state() {
    let mut w = Worker::start(test_options()).await;
    // batch_enrichment persists every 5 updates; one update per 100 ms.
    let job = synthetic(
        &w,
        json!({ "pipeline": "batch_enrichment", "items": 60, "chunkDelayMs": 100 }),
    )
    .await;
    let mut ws = Socket::connect(&w, &job).await;
    ws.ready().await;
    let mut seen = 0;
    while seen < 23 {
        seen = ws.until("job_progress").await["payload"]["processedCount"]
            .as_u64()
            .unwrap();
    }
    w.kill();
    let last_persisted = *persisted_counts(&w, &job)
        .last()
        .expect("something was persisted");
    assert!(
        last_persisted >= 20,
        "persisted {last_persisted}, seen {seen}"
    );
    w.restart().await;
    // The token still works, and the state never goes below what was persisted.
    let after = job_state(&w, &job).await;
    assert!(
        after["processedCount"].as_u64().unwrap() >= last_persisted,
        "{after}"
    );
    let mut again = Socket::connect_path(&w, &format!("{}&reconnect=true", job.websocket_url))
        .await
        .unwrap();
    again.ready().await;
    let closed = again.until_closed().await;
    assert_eq!(closed.code, 1000, "{:?}", again.kinds());
    let snapshot = again.of_kind("reconnected")[0]["payload"].clone();
    assert!(snapshot["processedCount"].as_u64().unwrap() >= last_persisted);
    let counts: Vec<u64> = again
        .of_kind("job_progress")
        .iter()
        .map(|m| m["payload"]["processedCount"].as_u64().unwrap())
        .collect();
    assert!(
        counts.iter().all(|c| *c >= last_persisted),
        "{counts:?} below {last_persisted}"
    );
    let state = job_state(&w, &job).await;
    assert_eq!(
        (state["status"].clone(), state["processedCount"].clone()),
        (json!("complete"), json!(60))
    );
    // Versions keep rising across the restart.
    assert!(state["version"].as_u64().unwrap() > snapshot["version"].as_u64().unwrap());
}

#[tokio::test]
async fn persisted_writes_follow_the_policy() {
    let w = shared().await;
    // 1,000 updates under csv_import's policy (every 20 updates or 30 s).
    let job = synthetic(w, json!({ "items": 1000, "itemsPerChunk": 100 })).await;
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    assert_eq!(ws.until_closed().await.code, 1000);
    let completed = w.job_logged_end(&job.job_id).await;
    let by_throttle: Vec<u64> = persisted(w, &job)
        .iter()
        .filter(|e| e["reason"] == "throttle")
        .filter_map(|e| e["processedCount"].as_u64())
        .collect();
    assert_eq!(
        by_throttle,
        (1..=50).map(|n| n * 20).collect::<Vec<_>>(),
        "one write per 20 updates"
    );
    let writes = completed["storageWrites"].as_u64().unwrap();
    println!(
        "storage writes per 1000 csv_import updates: {writes}; reads: {}",
        completed["storageReads"]
    );
    assert!(writes <= 55, "{completed}");
    // Its cost line counts what the object did for it, without a write of its own.
    let cost = w
        .wait_event("the job's cost", |e| {
            e["event"] == "job.cost" && e["jobId"] == job.job_id.as_str()
        })
        .await;
    let count = |key: &str| {
        cost[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {cost}"))
    };
    assert_eq!((count("requests"), count("messagesIn")), (2, 1), "{cost}");
    assert_eq!(count("messagesOut"), ws.received.len() as u64, "{cost}");
    assert!(
        count("rowsWritten") >= writes && count("alarms") >= 10,
        "{cost}"
    );
    assert!(cost["dollars"].as_f64().is_some_and(|d| d > 0.0), "{cost}");
}

#[tokio::test]
async fn a_flush_persists_pending_progress_when_the_window_closes() {
    let w = shared().await;
    // One update every 600 ms, far below 20 updates, with a 150 ms window: each update is
    // written by a flush before the next one comes.
    let job = synthetic(
        w,
        json!({ "items": 3, "chunkDelayMs": 600, "throttleMs": 150 }),
    )
    .await;
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    assert_eq!(ws.until_closed().await.code, 1000);
    w.job_logged_end(&job.job_id).await;
    let flushed: Vec<u64> = persisted(w, &job)
        .iter()
        .filter(|e| e["reason"] == "flush")
        .filter_map(|e| e["processedCount"].as_u64())
        .collect();
    assert_eq!(flushed, [1, 2], "flushes wrote the pending updates");
}

#[tokio::test]
async fn versions_keep_rising_across_repeated_restarts() {
    let mut w = Worker::start(test_options()).await;
    let job = synthetic(&w, json!({ "items": 5 })).await;
    let mut versions = vec![job_state(&w, &job).await["version"].as_u64().unwrap()];
    for _ in 0..2 {
        w.crash().await;
        versions.push(job_state(&w, &job).await["version"].as_u64().unwrap());
    }
    assert!(
        versions.windows(2).all(|v| v[0] < v[1]),
        "versions must rise: {versions:?}"
    );
}
