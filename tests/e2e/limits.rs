//! Rate limits on the hot paths (job-state and results reads, socket upgrades), IPv6 clients
//! counted per /64 and per /48, and over-limit requests refused before their body is read.

use crate::support::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank]
}

fn report(what: &str, values: &mut [f64]) {
    println!(
        "latency: {what}: n={} p50={:.2} ms p95={:.2} ms",
        values.len(),
        percentile(values, 50.0),
        percentile(values, 95.0)
    );
}

/// The cost of the limits on the hot paths, as a client sees it: job-state reads and
/// upgrades from clients whose limiter is warm (they asked before) and cold (first request).
/// Not a check: run it by hand, before and after a change, and compare the p50s.
#[tokio::test]
#[ignore = "a measurement: cargo test --test e2e limits::hot_path_latency -- --ignored --nocapture"]
async fn hot_path_latency() {
    let w = Worker::start(
        test_options()
            .var("LOG_LEVEL", "info")
            .var("READY_TIMEOUT_SECS", 600),
    )
    .await;
    let job = synthetic(&w, json!({ "items": 1 })).await;
    let state_path = format!("/api/job-state/{}", job.job_id);
    let client = reqwest::Client::new();
    let read = |ip: String| {
        let request = client
            .get(w.url(&state_path))
            .bearer_auth(&job.token)
            .header("cf-connecting-ip", ip);
        async move {
            let started = Instant::now();
            let status = request.send().await.unwrap().status().as_u16();
            assert_eq!(status, 200);
            started.elapsed().as_secs_f64() * 1_000.0
        }
    };
    // Warm-up: the job's object, the connection, the isolate.
    for n in 0..20 {
        read(format!("192.0.2.{n}")).await;
    }
    // Warm clients: four addresses in turn, 75 reads each, under their 120 a minute.
    let mut warm = Vec::new();
    for n in 0..300 {
        warm.push(read(format!("198.51.100.{}", n % 4)).await);
    }
    report("job-state, warm client", &mut warm);
    let mut cold = Vec::new();
    for n in 0..100 {
        cold.push(read(format!("203.0.113.{}", n + 1)).await);
    }
    report("job-state, first read of a client", &mut cold);

    // Upgrades on a fresh connection each, as a phone's would be; closed after the 101.
    let upgrade = |ip: String| {
        let (w, path) = (&w, job.websocket_url.clone());
        async move {
            let started = Instant::now();
            let socket = Socket::connect_path_from(w, &path, &ip)
                .await
                .expect("upgrade");
            let ms = started.elapsed().as_secs_f64() * 1_000.0;
            drop(socket);
            // Let the object see the close, so the job stays under its 8 sockets.
            tokio::time::sleep(Duration::from_millis(5)).await;
            ms
        }
    };
    for n in 0..10 {
        upgrade(format!("192.0.2.{}", 100 + n)).await;
    }
    let mut warm = Vec::new();
    for n in 0..200 {
        warm.push(upgrade(format!("198.51.100.{}", 10 + n % 5)).await);
    }
    report("upgrade, warm client", &mut warm);
    let mut cold = Vec::new();
    for n in 0..100 {
        cold.push(upgrade(format!("203.0.113.{}", 101 + n)).await);
    }
    report("upgrade, first upgrade of a client", &mut cold);
}
