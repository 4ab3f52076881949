//! Timed work never waits on a provider: with Gemini holding a scan's call for 40 s, token
//! expiry, cleanup and cancel still happen on time (contract 9.6).

use crate::support::providers::{image, Providers};
use crate::support::*;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

const TOKEN_TTL_SECS: u64 = 8;
const RESULTS_TTL_SECS: u64 = 6;

/// One worker with short lifetimes and the default 60 s Gemini deadline, longer than the hold.
async fn worker() -> &'static (Providers, Worker) {
    static SHARED: OnceCell<(Providers, Worker)> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async {
            let providers = Providers::start(Duration::from_millis(5));
            let options = providers
                .options(test_options())
                .var("TOKEN_TTL_SECS", TOKEN_TTL_SECS)
                .var("RESULTS_TTL_SECS", RESULTS_TTL_SECS)
                .var("GEMINI_TIMEOUT_SECS", 60);
            let worker = Worker::start(options).await;
            (providers, worker)
        })
        .await
}

/// A scan whose Gemini call is in flight (and held for 40 s) when this returns, with the
/// instant just before it was created and a socket that said `ready`.
async fn scan_in_flight(name: &str) -> (Created, Instant, Socket) {
    let (providers, w) = worker().await;
    let marker = format!("hang40-{name}-{}", std::process::id());
    let sent = Instant::now();
    let answer = post_bytes(
        w,
        "/api/scan-bookshelf",
        Some("image/jpeg"),
        image("jpeg", &marker),
    )
    .await;
    let job = Created::from_answer(&answer);
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    ws.until("job_progress").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while providers.gemini_counts.get(&marker) == 0 {
        assert!(Instant::now() < deadline, "the Gemini call never went out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (job, sent, ws)
}

#[tokio::test]
async fn token_expiry_closes_sockets_1008_on_time_while_gemini_hangs() {
    let (job, sent, mut ws) = scan_in_flight("expiry").await;
    let closed = ws.until_closed().await;
    let at = sent.elapsed();
    println!(
        "token expiry during a held call: closed {} after {at:?}",
        closed.code
    );
    assert_eq!(closed.code, 1008, "{closed:?}");
    assert!(
        at <= Duration::from_secs(TOKEN_TTL_SECS + 1),
        "closed {at:?} after creation, over a second after the {TOKEN_TTL_SECS} s expiry"
    );
    let (_, w) = worker().await;
    get(
        w,
        &format!("/api/job-state/{}", job.job_id),
        Some(&job.token),
    )
    .await
    .assert_error(401, "AUTH_ERROR");
}

#[tokio::test]
async fn a_job_whose_provider_hangs_is_deleted_on_time() {
    let (job, sent, _ws) = scan_in_flight("cleanup").await;
    let (_, w) = worker().await;
    let path = format!("/api/job-state/{}", job.job_id);
    let cleanup = Duration::from_secs(TOKEN_TTL_SECS + RESULTS_TTL_SECS);
    let deadline = sent + cleanup + Duration::from_secs(2);
    loop {
        let answer = get(w, &path, Some(&job.token)).await;
        if answer.status == 404 {
            answer.assert_error(404, "NOT_FOUND");
            break;
        }
        // Before the cleanup the job exists: its token has merely expired.
        assert!(matches!(answer.status, 200 | 401), "{}", answer.text);
        assert!(
            Instant::now() < deadline,
            "job-state still answered {} 2 s after token expiry + results TTL",
            answer.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at = sent.elapsed();
    println!("cleanup during a held call: 404 after {at:?}");
    assert!(at >= cleanup, "deleted after {at:?}, before {cleanup:?}");
}

#[tokio::test]
async fn a_cancel_during_a_hung_call_closes_every_socket_1001_at_once() {
    let (job, _, mut first) = scan_in_flight("cancel").await;
    let (_, w) = worker().await;
    let mut second = Socket::connect(w, &job).await;
    second.ready().await;
    second.until("reconnected").await;
    let asked = Instant::now();
    post_json(
        w,
        &format!("/api/jobs/{}/cancel", job.job_id),
        &serde_json::json!({}),
        Some(&job.token),
    )
    .await
    .data();
    for ws in [&mut first, &mut second] {
        assert_eq!(ws.until_closed().await.code, 1001);
        let at = asked.elapsed();
        assert!(
            at <= Duration::from_secs(1),
            "closed {at:?} after the cancel"
        );
    }
    println!(
        "cancel during a held call: both sockets closed 1001 within {:?}",
        asked.elapsed()
    );
    assert_eq!(job_state(w, &job).await["status"], "canceled");
}
