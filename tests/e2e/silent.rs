//! Every close reaches a client that never sent a message, and its connection ends with it
//! (contract 9.6).
//!
//! workerd keeps the connection of a hibernatable socket whose client never spoke open after
//! the closing handshake until the object is evicted (about 10 s later); clients that report a
//! close only when the connection ends (browsers, Node, Python) then see it 10 s late. The
//! close frame itself always goes out at once. Each test opens sockets that never send a byte
//! and checks both: the frame within 1 s, and the end of the connection within 1 s after it.

use crate::support::*;
use serde_json::json;
use std::time::Duration;
use tokio::sync::OnceCell;

const FRAME_WITHIN: Duration = Duration::from_secs(1);
/// Generous against the 10 s of an eviction, tight against a client's patience.
const CONNECTION_ENDS_WITHIN: Duration = Duration::from_secs(2);
const TOKEN_TTL_SECS: u64 = 8;
const SOCKET_IDLE_SECS: u64 = 2;

/// Jobs here start a second after creation without any client saying `ready`.
async fn worker() -> &'static Worker {
    static SHARED: OnceCell<Worker> = OnceCell::const_new();
    SHARED
        .get_or_init(|| {
            Worker::start(
                test_options()
                    .var("READY_TIMEOUT_SECS", 1)
                    .var("TOKEN_TTL_SECS", TOKEN_TTL_SECS)
                    .var("SOCKET_IDLE_SECS", SOCKET_IDLE_SECS),
            )
        })
        .await
}

/// Waits for the close and the end of the connection; checks the code and both delays.
async fn closes_silently(ws: &mut Socket, code: u16, within: Duration, what: &str) {
    let (closed, frame_at, ended_at) = ws
        .until_disconnected(within + Duration::from_secs(15))
        .await;
    println!(
        "{what}: close {} after {frame_at:?}, connection ended after {ended_at:?}",
        closed.code
    );
    assert_eq!(closed.code, code, "{what}: {closed:?}");
    assert!(
        frame_at <= within,
        "{what}: the close frame came after {frame_at:?}"
    );
    assert!(
        ended_at - frame_at <= CONNECTION_ENDS_WITHIN,
        "{what}: the connection ended {:?} after the close frame",
        ended_at - frame_at
    );
}

#[tokio::test]
async fn a_cancel_closes_silent_sockets_1001() {
    let w = worker().await;
    let job = synthetic(w, json!({ "items": 5, "chunkDelayMs": 60000 })).await;
    let mut sockets = vec![
        Socket::connect(w, &job).await,
        Socket::connect(w, &job).await,
    ];
    let path = format!("/api/jobs/{}/cancel", job.job_id);
    assert_eq!(
        post_json(w, &path, &json!({}), Some(&job.token))
            .await
            .status,
        200
    );
    for ws in &mut sockets {
        closes_silently(ws, 1001, FRAME_WITHIN, "cancel").await;
    }
}

#[tokio::test]
async fn a_completed_job_closes_its_silent_socket_1000() {
    let w = worker().await;
    let job = synthetic(w, json!({ "items": 3 })).await;
    let mut ws = Socket::connect(w, &job).await;
    // The ready timeout starts it: nobody ever says ready.
    closes_silently(&mut ws, 1000, Duration::from_secs(10), "complete").await;
    assert_eq!(ws.kinds().last().map(String::as_str), Some("job_complete"));
}

#[tokio::test]
async fn a_failed_job_closes_its_silent_socket_1011() {
    let w = worker().await;
    let job = synthetic(w, json!({ "items": 3, "failFirstAttempts": 5 })).await;
    let mut ws = Socket::connect(w, &job).await;
    closes_silently(&mut ws, 1011, Duration::from_secs(15), "failed").await;
    assert_eq!(ws.kinds().last().map(String::as_str), Some("error"));
}

#[tokio::test]
async fn the_ninth_silent_socket_is_closed_1013() {
    let w = worker().await;
    let job = synthetic(w, json!({ "items": 5, "chunkDelayMs": 60000 })).await;
    let mut open = Vec::new();
    for _ in 0..8 {
        open.push(Socket::connect(w, &job).await);
    }
    let mut ninth = Socket::connect(w, &job).await;
    closes_silently(&mut ninth, 1013, FRAME_WITHIN, "ninth socket").await;
}

#[tokio::test]
async fn token_expiry_closes_silent_sockets_1008() {
    let w = worker().await;
    // Queued past its expiry: created, never started by anyone before the token ran out.
    let job = synthetic(w, json!({ "items": 2, "chunkDelayMs": 60000 })).await;
    let mut ws = Socket::connect(w, &job).await;
    closes_silently(
        &mut ws,
        1008,
        Duration::from_secs(TOKEN_TTL_SECS + 1),
        "token expiry",
    )
    .await;
}

#[tokio::test]
async fn a_socket_silent_past_the_idle_time_makes_room_4000() {
    let w = worker().await;
    let job = synthetic(w, json!({ "items": 5, "chunkDelayMs": 60000 })).await;
    let mut eight = Vec::new();
    for _ in 0..8 {
        eight.push(Socket::connect(w, &job).await);
    }
    server_time_passes(w, SOCKET_IDLE_SECS * 1_000 + 200).await;
    let mut ninth = Socket::connect(w, &job).await;
    ninth.ready().await;
    assert_eq!(
        ninth.until("ready_ack").await["type"],
        "ready_ack",
        "the new socket is kept"
    );
    let mut replaced = 0;
    for ws in &mut eight {
        // Exactly one has been closed; the others are still open (the job's own messages
        // come and go, no close frame).
        let closed = tokio::time::timeout(Duration::from_millis(300), ws.until_closed()).await;
        if let Ok(closed) = closed {
            assert_eq!(closed.code, 4000, "{closed:?}");
            replaced += 1;
        }
    }
    assert_eq!(replaced, 1, "one silent socket made room");
}
