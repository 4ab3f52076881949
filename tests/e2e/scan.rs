//! The shelf-scan pipeline against the real worker and a fake Gemini (contract sections 2, 6).

use crate::support::providers::{image, shared_providers, GEMINI_KEY, GEMINI_MODEL};
use crate::support::*;
use bookstrack_jobs::base64;
use serde_json::{json, Value};

async fn post_image(w: &Worker, content_type: &str, body: Vec<u8>) -> Answer {
    post_bytes(w, "/api/scan-bookshelf", Some(content_type), body).await
}

async fn post_batch(w: &Worker, body: &Value) -> Answer {
    post_json(w, "/api/scan-bookshelf/batch", body, None).await
}

fn batch(images: &[(i64, Vec<u8>)]) -> Value {
    let images: Vec<Value> = images
        .iter()
        .map(|(i, b)| json!({ "index": i, "data": base64::encode(b) }))
        .collect();
    json!({ "images": images })
}

/// Connects, says ready and reads to the close.
async fn run_to_end(w: &Worker, job: &Created) -> Socket {
    let mut ws = Socket::connect(w, job).await;
    ws.ready().await;
    ws.until_closed().await;
    ws
}

async fn results(w: &Worker, job: &Created) -> Value {
    let a = get(
        w,
        &format!("/v1/scan/results/{}", job.job_id),
        Some(&job.token),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    a.data().clone()
}

#[tokio::test]
async fn a_single_scan_completes_with_clamped_boxes_and_review_split() {
    let (_, w) = shared_providers().await;
    let job = Created::from_answer(&post_image(w, "image/jpeg", image("jpeg", "boxes")).await);
    assert_eq!(job.pipeline, "ai_scan");
    let ws = run_to_end(w, &job).await;
    let complete = ws.of_kind("job_complete");
    assert_eq!(complete.len(), 1, "{:?}", ws.kinds());
    let summary = &complete[0]["payload"]["summary"];
    assert_eq!(
        (
            summary["totalDetected"].as_u64(),
            summary["approved"].as_u64()
        ),
        (Some(6), Some(3)),
        "{summary}"
    );
    assert!(complete[0].to_string().len() < 4096);
    let r = results(w, &job).await;
    assert_eq!(
        (
            r["totalDetected"].as_u64(),
            r["approved"].as_u64(),
            r["needsReview"].as_u64()
        ),
        (Some(6), Some(3), Some(3))
    );
    let books = r["books"].as_array().unwrap();
    assert_eq!(books.len(), 6);
    for book in books {
        assert_eq!(book["photoIndex"], 0);
        assert!(book["title"].as_str().is_some_and(|t| !t.is_empty()));
        let c = book["confidence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&c), "{book}");
        let b = &book["boundingBox"];
        let (x, y, wd, h) = (
            b["x"].as_f64().unwrap(),
            b["y"].as_f64().unwrap(),
            b["width"].as_f64().unwrap(),
            b["height"].as_f64().unwrap(),
        );
        for v in [x, y, wd, h] {
            assert!((0.0..=1.0).contains(&v), "{book}");
        }
        assert!(x + wd <= 1.0 + 1e-9 && y + h <= 1.0 + 1e-9, "{book}");
    }
    let approved = books
        .iter()
        .filter(|b| b["confidence"].as_f64().unwrap() >= 0.7)
        .count();
    assert_eq!(approved, 3);
}

#[tokio::test]
async fn a_multipart_photo_is_accepted() {
    let (_, w) = shared_providers().await;
    let boundary = "----bookstrack-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"shelf.png\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend(image("png", "fenced"));
    body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    let answer = post_image(
        w,
        &format!("multipart/form-data; boundary={boundary}"),
        body,
    )
    .await;
    let job = Created::from_answer(&answer);
    let ws = run_to_end(w, &job).await;
    assert_eq!(ws.of_kind("job_complete").len(), 1, "{:?}", ws.kinds());
    assert!(results(w, &job).await["totalDetected"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn a_batch_reports_every_photo_and_keeps_photo_indexes() {
    let (_, w) = shared_providers().await;
    let answer = post_batch(
        w,
        &batch(&[
            (4, image("jpeg", "fenced")),
            (7, image("webp", "wrapped")),
            (9, image("heic", "prose")),
        ]),
    )
    .await;
    let job = Created::from_answer(&answer);
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    assert_eq!(ws.until("job_started").await["payload"]["totalCount"], 3);
    let closed = ws.until_closed().await;
    assert_eq!(closed.code, 1000, "{:?}", ws.kinds());
    let progress = ws.of_kind("job_progress");
    assert!(
        progress.len() >= 3,
        "at least one progress message per photo: {:?}",
        ws.kinds()
    );
    let items: Vec<&str> = progress
        .iter()
        .filter_map(|m| m["payload"]["currentItem"].as_str())
        .collect();
    assert!(
        items.iter().any(|i| i.contains("photo 1 of 3"))
            && items.iter().any(|i| i.contains("of 3")),
        "{items:?}"
    );
    let counts: Vec<u64> = progress
        .iter()
        .map(|m| m["payload"]["processedCount"].as_u64().unwrap())
        .collect();
    assert!(
        counts.contains(&1) && counts.contains(&2),
        "per-photo counts {counts:?}"
    );
    let r = results(w, &job).await;
    let mut indexes: Vec<u64> = r["books"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["photoIndex"].as_u64().unwrap())
        .collect();
    indexes.dedup();
    assert_eq!(indexes, [4, 7, 9]);
    let summary = &ws.of_kind("job_complete")[0]["payload"]["summary"];
    assert_eq!(
        (
            summary["successCount"].as_u64(),
            summary["failureCount"].as_u64()
        ),
        (Some(3), Some(0))
    );
}

#[tokio::test]
async fn one_photo_failing_permanently_does_not_fail_the_others() {
    let (_, w) = shared_providers().await;
    let job = Created::from_answer(
        &post_batch(
            w,
            &batch(&[
                (0, image("png", "fenced")),
                (1, image("png", "blocked")),
                (2, image("png", "bare")),
            ]),
        )
        .await,
    );
    let ws = run_to_end(w, &job).await;
    let summary = &ws.of_kind("job_complete")[0]["payload"]["summary"];
    assert_eq!(
        (
            summary["successCount"].as_u64(),
            summary["failureCount"].as_u64()
        ),
        (Some(2), Some(1)),
        "{summary}"
    );
    let photos = summary["photos"].as_array().unwrap();
    assert_eq!(photos[1]["status"], "failed");
    let r = results(w, &job).await;
    assert!(r["books"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["photoIndex"] != 1));
}

#[tokio::test]
async fn a_transient_500_is_retried_and_succeeds() {
    let (providers, w) = shared_providers().await;
    let marker = format!("flaky-{}", std::process::id());
    let job = Created::from_answer(&post_image(w, "image/png", image("png", &marker)).await);
    let ws = run_to_end(w, &job).await;
    assert_eq!(ws.of_kind("job_complete").len(), 1, "{:?}", ws.kinds());
    assert_eq!(
        providers.gemini_counts.get(&marker),
        2,
        "one failure, one success"
    );
}

#[tokio::test]
async fn every_photo_failing_fails_the_job_with_1011() {
    let (_, w) = shared_providers().await;
    // Permanent failures: not retryable.
    let job = Created::from_answer(
        &post_batch(
            w,
            &batch(&[
                (0, image("png", "badrequest")),
                (1, image("png", "blocked")),
            ]),
        )
        .await,
    );
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    assert_eq!(ws.until_closed().await.code, 1011);
    let error = &ws.of_kind("error")[0]["payload"];
    assert_eq!(error["retryable"], false, "{error}");
    assert_eq!(job_state(w, &job).await["status"], "failed");
    // Retries run out on a provider that stays down: retryable.
    let job = Created::from_answer(&post_image(w, "image/png", image("png", "down-all")).await);
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    assert_eq!(ws.until_closed().await.code, 1011);
    assert_eq!(ws.of_kind("error")[0]["payload"]["retryable"], true);
}

#[tokio::test]
async fn cancel_stops_further_photos() {
    let (providers, w) = shared_providers().await;
    let marker = format!("slow-cancel-{}", std::process::id());
    let photos: Vec<(i64, Vec<u8>)> = (0..4).map(|i| (i, image("jpeg", &marker))).collect();
    let job = Created::from_answer(&post_batch(w, &batch(&photos)).await);
    cancel_after_first_progress(w, &job, "/api/scan-bookshelf/cancel").await;
    // Longer than two more photos would take, had the scan gone on.
    server_time_passes(w, 1_500).await;
    let asked = providers.gemini_counts.get(&marker);
    assert!(
        asked <= 2,
        "{asked} photos were sent to Gemini after a cancel during the first"
    );
    let state = job_state(w, &job).await;
    assert_eq!(state["status"], "canceled");
    assert!(state["processedCount"].as_u64().unwrap() <= 1);
}

#[tokio::test]
async fn the_api_key_goes_in_the_header_and_never_into_logs() {
    let (providers, w) = shared_providers().await;
    let marker = format!("fenced-key-{}", std::process::id());
    let job = Created::from_answer(&post_image(w, "image/jpeg", image("jpeg", &marker)).await);
    let ws = run_to_end(w, &job).await;
    assert_eq!(ws.of_kind("job_complete").len(), 1, "{:?}", ws.kinds());
    w.job_logged_end(&job.job_id).await;
    let calls: Vec<_> = providers
        .server
        .requests()
        .into_iter()
        .filter(|r| r.path() == format!("/v1beta/models/{GEMINI_MODEL}:generateContent"))
        .collect();
    assert!(!calls.is_empty());
    for call in &calls {
        assert_eq!(call.method, "POST");
        assert_eq!(call.header("x-goog-api-key"), Some(GEMINI_KEY));
        assert!(
            !call.target.contains(GEMINI_KEY),
            "the key must not be in the URL"
        );
        let body: Value = serde_json::from_slice(&call.body).unwrap();
        assert_eq!(
            body["generationConfig"]["responseMimeType"],
            "application/json"
        );
        // The answer and the thinking before it are bounded (GEMINI_MAX_OUTPUT_TOKENS and
        // GEMINI_THINKING_BUDGET, defaults here).
        assert_eq!(body["generationConfig"]["maxOutputTokens"], 16_384);
        assert_eq!(
            body["generationConfig"]["thinkingConfig"]["thinkingBudget"],
            0
        );
    }
    assert!(
        !w.log().contains(GEMINI_KEY),
        "the API key appeared in the worker's log"
    );
}

#[tokio::test]
async fn without_an_api_key_the_job_fails_clearly_and_not_retryably() {
    let w = shared().await; // no GEMINI_API_KEY configured
    let job = Created::from_answer(&post_image(w, "image/jpeg", image("jpeg", "fenced")).await);
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    assert_eq!(ws.until_closed().await.code, 1011);
    let error = &ws.of_kind("error")[0]["payload"];
    assert_eq!(error["retryable"], false);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("GEMINI_API_KEY"),
        "{error}"
    );
}

#[tokio::test]
async fn bad_scan_requests_get_400_413_415() {
    let (_, w) = shared_providers().await;
    let png = image("png", "fenced");
    let big = vec![0x89u8; 5 * 1024 * 1024 + 10];
    let mut big_png = png.clone();
    big_png.resize(5 * 1024 * 1024 + 1, 0);
    let six: Vec<(i64, Vec<u8>)> = (0..6).map(|i| (i, png.clone())).collect();
    let cases: Vec<(&str, Answer, u16, &str)> = vec![
        (
            "text/plain single",
            post_image(w, "text/plain", png.clone()).await,
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "gif bytes",
            post_image(w, "image/jpeg", image("gif", "x")).await,
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "empty image",
            post_image(w, "image/png", Vec::new()).await,
            400,
            "INVALID_REQUEST",
        ),
        (
            "oversized single",
            post_image(w, "image/png", big.clone()).await,
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "truncated multipart",
            post_image(
                w,
                "multipart/form-data; boundary=xyz",
                b"--xyz\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\nabc".to_vec(),
            )
            .await,
            400,
            "INVALID_REQUEST",
        ),
        (
            "multipart without image",
            post_image(
                w,
                "multipart/form-data; boundary=xyz",
                b"--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc\r\n--xyz--\r\n"
                    .to_vec(),
            )
            .await,
            400,
            "INVALID_REQUEST",
        ),
        (
            "batch not json",
            post_batch(w, &json!("nope")).await,
            400,
            "INVALID_REQUEST",
        ),
        (
            "no images",
            post_batch(w, &json!({ "images": [] })).await,
            400,
            "INVALID_REQUEST",
        ),
        (
            "six images",
            post_batch(w, &batch(&six)).await,
            400,
            "INVALID_REQUEST",
        ),
        (
            "duplicate index",
            post_batch(w, &batch(&[(1, png.clone()), (1, png.clone())])).await,
            400,
            "INVALID_REQUEST",
        ),
        (
            "negative index",
            post_batch(w, &batch(&[(-1, png.clone())])).await,
            400,
            "INVALID_REQUEST",
        ),
        (
            "bad base64",
            post_batch(
                w,
                &json!({ "images": [{ "index": 0, "data": "@@@not-base64@@@" }] }),
            )
            .await,
            400,
            "INVALID_REQUEST",
        ),
        (
            "missing data",
            post_batch(w, &json!({ "images": [{ "index": 0 }] })).await,
            400,
            "INVALID_REQUEST",
        ),
        (
            "bad job id",
            post_batch(
                w,
                &json!({ "jobId": "x", "images": [{ "index": 0, "data": base64::encode(&png) }] }),
            )
            .await,
            400,
            "INVALID_REQUEST",
        ),
        (
            "image over 5 MiB",
            post_batch(w, &batch(&[(0, big_png)])).await,
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "gif in batch",
            post_batch(w, &batch(&[(0, image("gif", "x"))])).await,
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
    ];
    for (name, answer, status, code) in cases {
        assert_eq!(
            (answer.status, answer.code()),
            (status, code),
            "{name}: {}",
            answer.text
        );
        answer.assert_envelope();
    }
    post_bytes(
        w,
        "/api/scan-bookshelf/batch",
        Some("text/plain"),
        "{}".into(),
    )
    .await
    .assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
    // A body over 36 MiB is refused whole.
    let huge = vec![b' '; 36 * 1024 * 1024 + 1];
    post_bytes(
        w,
        "/api/scan-bookshelf/batch",
        Some("application/json"),
        huge,
    )
    .await
    .assert_error(413, "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn a_providers_answer_text_never_reaches_the_client() {
    let (_, w) = shared_providers().await;
    let marker = format!("echokey-{}", std::process::id());
    let job = Created::from_answer(&post_image(w, "image/png", image("png", &marker)).await);
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    assert_eq!(ws.until_closed().await.code, 1011);
    let error = ws.of_kind("error")[0]["payload"].clone();
    let message = error["message"].as_str().unwrap();
    assert!(
        !message.contains(GEMINI_KEY),
        "the key reached the client: {message}"
    );
    assert!(
        message.contains("Gemini answered HTTP 400"),
        "says which provider failed and its status: {message}"
    );
    let state = job_state(w, &job).await;
    assert!(!state.to_string().contains(GEMINI_KEY));
    assert!(!w.log().contains(GEMINI_KEY), "nor the worker's log");
}
