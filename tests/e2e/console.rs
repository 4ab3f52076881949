//! The job console: unknown (404) unless `CONSOLE_ENABLED` is on; with it, the page and its
//! two files under a strict policy, and the page driven in headless Chromium
//! (tests/browser/console.mjs) through an import, an enrichment, a scan, a dropped socket and
//! a cancel.
//! Until the worker speaks protocol v2, a stand-in plays v2 to the same page
//! (tests/browser/console-v2.mjs).

use crate::support::providers::{self, Providers};
use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// Where the console's files are served.
const ASSETS: [(&str, &str); 3] = [
    ("/", "text/html"),
    ("/console.css", "text/css"),
    ("/console.js", "text/javascript"),
];

/// Books the fake providers know, as the page's enrichment box takes them.
const ENRICH_TEXT: &str = "Dune | Frank Herbert | 9780441013593\nThe Hobbit | J.R.R. Tolkien\nNeuromancer | William Gibson";

/// One worker with the console on and fake providers behind it, for the tests below.
async fn console_worker() -> &'static Worker {
    static SHARED: OnceCell<(Providers, Worker)> = OnceCell::const_new();
    let (_, worker) = SHARED
        .get_or_init(|| async {
            let providers = Providers::start(Duration::from_millis(20));
            let options = providers.options(test_options().var("CONSOLE_ENABLED", "true"));
            let worker = Worker::start(options).await;
            (providers, worker)
        })
        .await;
    worker
}

#[tokio::test]
async fn the_console_is_unknown_when_disabled() {
    let w = shared().await; // the default options: console off
    for (path, _) in ASSETS {
        let a = get(w, path, None).await;
        a.assert_error(404, "NOT_FOUND");
        assert!(
            a.header("content-type")
                .unwrap()
                .starts_with("application/json"),
            "{path}"
        );
        assert!(a.header("content-security-policy").is_none(), "{path}");
    }
}

#[tokio::test]
async fn the_console_files_are_served_under_a_strict_policy() {
    let w = console_worker().await;
    for (path, media) in ASSETS {
        let resp = http().get(w.url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        assert!(header("content-type").starts_with(media), "{path}");
        let csp = header("content-security-policy");
        assert!(csp.starts_with("default-src 'none';"), "{path}: {csp}");
        assert!(csp.contains("connect-src 'self'"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("cache-control"), "no-store", "{path}");
        let body = resp.text().await.unwrap();
        if path == "/" {
            assert!(body.contains("src=\"/console.js\""), "{body}");
            assert!(body.contains("href=\"/console.css\""), "{body}");
        }
    }
    // Only GET: the usual 405 envelope otherwise.
    let a = post_bytes(w, "/", Some("text/plain"), b"x".to_vec()).await;
    a.assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(a.header("allow"), Some("GET, OPTIONS"));
}

/// Runs a browser test script with its spec: its output, as an error when it failed.
///
/// One browser at a time: a Chromium is busy for a few seconds, the machine has two cores,
/// and other end-to-end tests running meanwhile measure timing.
async fn run_browser_script(script: &str, spec: &Value) -> Result<String, String> {
    static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_BROWSER.lock().await;
    let started = Instant::now();
    let run = tokio::process::Command::new(wrangler::node_bin())
        .arg(script)
        .arg(spec.to_string())
        .current_dir(wrangler::repo_root())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 240 s"))
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{output}{script}: {:?}", started.elapsed());
    if out.status.success() {
        Ok(output)
    } else {
        Err(format!("{script} failed ({}):\n{output}", out.status))
    }
}

#[tokio::test]
async fn a_browser_imports_enriches_scans_resyncs_and_cancels_through_the_console() {
    let w = console_worker().await;
    let root = wrangler::repo_root();
    let csv = root.join("tests/fixtures/csv/goodreads.csv");
    let expected: Value = serde_json::from_slice(
        &std::fs::read(root.join("tests/fixtures/csv/goodreads.expected.json")).unwrap(),
    )
    .unwrap();
    // The long job the page watches and cancels: 1,000 items, 100 ms apart. The page itself
    // only starts real jobs; this one is created here and given to the page by id and token.
    let long = synthetic(w, json!({ "items": 1000, "chunkDelayMs": 100 })).await;
    // Two shelf photos the fake Gemini answers with books (a marker in the bytes says how).
    let photos: Vec<_> = ["fenced", "bare"]
        .iter()
        .map(|scenario| {
            let path = root.join(format!("target/e2e/console-shelf-{scenario}.jpg"));
            std::fs::write(&path, providers::image("jpeg", scenario)).unwrap();
            path
        })
        .collect();
    let screenshot = root.join("target/e2e/console.png");
    let _ = std::fs::remove_file(&screenshot);
    let spec = json!({
        "base": w.base,
        "csv": { "path": csv, "books": expected["books"].as_array().unwrap().len() },
        "enrich": { "text": ENRICH_TEXT, "books": 3 },
        "scan": { "photos": photos },
        "watch": { "jobId": long.job_id, "token": long.token },
        "screenshot": screenshot,
    });
    if let Err(failure) = run_browser_script("tests/browser/console.mjs", &spec).await {
        panic!("{failure}\nworker log:\n{}", w.log_tail(40));
    }
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // The page's cancel reached the job.
    assert_eq!(job_state(w, &long).await["status"], "canceled");
}

#[tokio::test]
async fn the_console_follows_protocol_v2_seq_resume_item_results_and_cursors() {
    let spec = json!({
        "csp": bookstrack_jobs::runtime::console::CONTENT_SECURITY_POLICY,
        "screenshot": wrangler::repo_root().join("target/e2e/console-v2.png"),
    });
    if let Err(failure) = run_browser_script("tests/browser/console-v2.mjs", &spec).await {
        panic!("{failure}");
    }
}
