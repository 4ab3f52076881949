//! A bounded load test on loopback: concurrent jobs of every pipeline, two sockets each.
//!
//! `LOAD_JOBS` sets the number of jobs (default 50); `npm run load` runs a longer one.

use crate::support::providers::{image, Providers};
use crate::support::*;
use futures_util::future::join_all;
use serde_json::json;
use std::time::{Duration, Instant};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Creates job number `n`, cycling through the pipelines.
async fn create(w: &Worker, n: usize) -> Created {
    let client = http();
    let request = match n % 3 {
        0 => client
            .post(w.url("/api/import/csv"))
            .header("content-type", "text/csv")
            .body(format!("Title,Author\nLoad Book {n},Author {n}\nAnother {n},Someone\n")),
        1 => client
            .post(w.url("/api/enrichment/batch"))
            .json(&json!({ "books": (0..5).map(|i| json!({ "title": format!("Load Volume {n} {i}"), "author": "A" })).collect::<Vec<_>>() })),
        _ => client.post(w.url("/api/scan-bookshelf")).header("content-type", "image/png").body(image("png", "fenced")),
    };
    Created::from_answer(&Answer::from(request.send().await.unwrap()).await)
}

/// Opens a socket and says how long the upgrade took.
async fn timed_connect(w: &Worker, job: &Created) -> (Socket, f64) {
    let started = Instant::now();
    let socket = Socket::connect(w, job).await;
    (socket, started.elapsed().as_secs_f64() * 1_000.0)
}

#[tokio::test]
async fn concurrent_jobs_of_every_pipeline_all_complete_on_every_socket() {
    let jobs: usize = std::env::var("LOAD_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let providers = Providers::start(Duration::from_millis(10));
    let w = Worker::start(providers.options(test_options())).await;
    let started = Instant::now();
    let runs = (0..jobs).map(|n| {
        let w = &w;
        async move {
            let job = create(w, n).await;
            let (mut a, first_ms) = timed_connect(w, &job).await;
            let (mut b, second_ms) = timed_connect(w, &job).await;
            a.ready().await;
            let (ca, cb) = tokio::join!(a.until_closed(), b.until_closed());
            assert_eq!(
                (ca.code, cb.code),
                (1000, 1000),
                "job {n} ({}): {:?} / {:?}",
                job.pipeline,
                a.kinds(),
                b.kinds()
            );
            for socket in [&a, &b] {
                assert_eq!(
                    socket.of_kind("job_complete").len(),
                    1,
                    "job {n}: {:?}",
                    socket.kinds()
                );
            }
            (first_ms, second_ms)
        }
    });
    let latencies = join_all(runs).await;
    let total = started.elapsed();
    let mut cold: Vec<f64> = latencies.iter().map(|l| l.0).collect();
    let mut warm: Vec<f64> = latencies.iter().map(|l| l.1).collect();
    cold.sort_by(f64::total_cmp);
    warm.sort_by(f64::total_cmp);
    println!(
        "load: {jobs} jobs x 2 sockets in {:.2} s; upgrade first socket p50 {:.1} ms p99 {:.1} ms, second socket p50 {:.1} ms p99 {:.1} ms",
        total.as_secs_f64(),
        percentile(&cold, 50.0),
        percentile(&cold, 99.0),
        percentile(&warm, 50.0),
        percentile(&warm, 99.0)
    );
}
