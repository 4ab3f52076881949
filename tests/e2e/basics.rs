//! The HTTP surface every route shares: envelope, 404, 405, CORS, /health, deployability.

use crate::support::*;
use std::process::Command;

#[tokio::test]
async fn health_reports_status_version_and_commit() {
    let w = shared().await;
    let a = get(w, "/health", None).await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.assert_envelope();
    assert_eq!(a.data()["status"], "ok");
    assert_eq!(a.data()["version"], env!("CARGO_PKG_VERSION"));
    let commit = a.data()["commit"].as_str().unwrap();
    assert!(!commit.is_empty(), "commit stamp missing");
    assert!(a
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
}

#[tokio::test]
async fn unknown_paths_are_404_envelopes() {
    let w = shared().await;
    for path in [
        "/",
        "/nope",
        "/api",
        "/api/job-state",
        "/health/extra",
        "/v1/books/results/x",
    ] {
        let a = get(w, path, None).await;
        a.assert_error(404, "NOT_FOUND");
    }
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow() {
    let w = shared().await;
    let client = http();
    let cases = [
        (reqwest::Method::POST, "/health", "GET"),
        (reqwest::Method::DELETE, "/api/import/csv", "POST"),
        (reqwest::Method::GET, "/api/token/refresh", "POST"),
        (
            reqwest::Method::PUT,
            "/api/job-state/0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e",
            "GET",
        ),
        (reqwest::Method::PATCH, "/v1/enrichment/batch", "POST"),
    ];
    for (method, path, allowed) in cases {
        let a = Answer::from(
            client
                .request(method.clone(), w.url(path))
                .send()
                .await
                .unwrap(),
        )
        .await;
        a.assert_error(405, "METHOD_NOT_ALLOWED");
        assert!(
            a.header("allow").unwrap().contains(allowed),
            "{method} {path}: {:?}",
            a.header("allow")
        );
    }
}

#[tokio::test]
async fn preflight_answers_204_with_cors_headers() {
    let w = shared().await;
    let resp = http()
        .request(reqwest::Method::OPTIONS, w.url("/api/import/csv"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let headers = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        headers.contains("authorization")
            && headers.contains("content-type")
            && headers.contains("idempotency-key"),
        "{headers}"
    );
    // Ordinary answers carry the origin header too, errors included.
    let a = get(w, "/nope", None).await;
    assert_eq!(a.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn allowed_origins_are_honoured() {
    let w = Worker::start(test_options().var(
        "ALLOWED_ORIGINS",
        "https://app.example,https://admin.example",
    ))
    .await;
    let preflight = |origin: &'static str| {
        http()
            .request(reqwest::Method::OPTIONS, w.url("/health"))
            .header("origin", origin)
            .send()
    };
    let allowed = preflight("https://admin.example").await.unwrap();
    assert_eq!(allowed.status().as_u16(), 204);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://admin.example"
    );
    assert!(allowed.headers()["vary"]
        .to_str()
        .unwrap()
        .contains("Origin"));
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

/// `wrangler deploy --dry-run` bundles the worker without an account; it must keep working.
#[tokio::test]
async fn deploy_dry_run_succeeds_offline() {
    let _ = shared().await; // builds the worker
    let out = std::env::temp_dir().join(format!("bookstrack-dry-run-{}", std::process::id()));
    let status = Command::new("bash")
        .args(["scripts/wrangler", "deploy", "--dry-run", "--outdir"])
        .arg(&out)
        .current_dir(wrangler::repo_root())
        .env("WRANGLER_SEND_METRICS", "false")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&status.stdout).to_string()
        + &String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "dry run failed:\n{log}");
    assert!(log.contains("--dry-run: exiting now"), "{log}");
    let upload = log
        .lines()
        .find(|l| l.contains("Total Upload"))
        .unwrap_or("(no size line)");
    println!("deploy dry run: {}", upload.trim());
    let wasm = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.path().extension().is_some_and(|x| x == "wasm"));
    assert!(wasm, "no wasm module in {}", out.display());
    let _ = std::fs::remove_dir_all(out);
}

/// The fake provider server the pipeline tests stand on: it answers through its handler,
/// logs every request, and measures how many were in flight at once.
#[tokio::test]
async fn fake_provider_server_answers_logs_and_counts_concurrency() {
    use crate::support::fake::{FakeResponse, FakeServer};
    use std::sync::Arc;
    use std::time::Duration;
    let server = FakeServer::start(Arc::new(|req| {
        let delay = if req.path() == "/slow" {
            Duration::from_millis(300)
        } else {
            Duration::ZERO
        };
        let echo = serde_json::json!({ "path": req.path(), "key": req.header("x-goog-api-key") });
        FakeResponse::json(200, echo.to_string()).after(delay)
    }));
    let client = http();
    let answer: serde_json::Value = client
        .get(format!("{}/v1/thing?q=1", server.base))
        .header("x-goog-api-key", "k")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer,
        serde_json::json!({ "path": "/v1/thing", "key": "k" })
    );
    let slow = (0..3).map(|_| client.get(format!("{}/slow", server.base)).send());
    for r in futures_util::future::join_all(slow).await {
        assert_eq!(r.unwrap().status().as_u16(), 200);
    }
    let log = server.requests();
    assert_eq!(log.len(), 4);
    assert_eq!(
        (log[0].method.as_str(), log[0].target.as_str()),
        ("GET", "/v1/thing?q=1")
    );
    assert!(log[0].body.is_empty());
    assert_eq!(server.max_in_flight(), 3);
}
