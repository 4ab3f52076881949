//! Real inputs against the real worker: every CSV fixture (each a quirk of real export files)
//! uploaded and compared with its expected document, and each provider answer that was once
//! mishandled, replayed through the stand-in providers.

use crate::support::providers::{image, shared_providers, RealShape};
use crate::support::*;
use serde_json::{json, Value};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/csv/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// How a file is uploaded: raw `text/csv` to a path (which may carry `?format=`), or as a
/// multipart form with an optional `format` field.
enum Upload<'a> {
    Raw(&'a str),
    Form(Option<&'a str>),
}

async fn upload(w: &Worker, file: Vec<u8>, how: &Upload<'_>) -> Answer {
    match how {
        Upload::Raw(path) => post_bytes(w, path, Some("text/csv"), file).await,
        Upload::Form(format) => {
            let boundary = "inputsboundary7Qx";
            let mut body = Vec::new();
            if let Some(format) = format {
                body.extend_from_slice(
                    format!("--{boundary}\r\nContent-Disposition: form-data; name=\"format\"\r\n\r\n{format}\r\n")
                        .as_bytes(),
                );
            }
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"export.csv\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                    .as_bytes(),
            );
            body.extend_from_slice(&file);
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            let ct = format!("multipart/form-data; boundary={boundary}");
            post_bytes(w, "/api/import/csv", Some(&ct), body).await
        }
    }
}

/// Imports `file` to the end and checks the summary and the results document against the
/// fixture's expected document.
async fn import_matches(w: &Worker, name: &str, file: Vec<u8>, expected: &Value, how: Upload<'_>) {
    let job = Created::from_answer(&upload(w, file, &how).await);
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    assert_eq!(
        ws.until_closed().await.code,
        1000,
        "{name}: {:?}",
        ws.kinds()
    );
    let summary = ws.of_kind("job_complete")[0]["payload"]["summary"].clone();
    let totals = &expected["totals"];
    assert_eq!(
        summary["totalProcessed"], totals["dataRecords"],
        "{name}: {summary}"
    );
    assert_eq!(
        summary["successCount"], totals["books"],
        "{name}: {summary}"
    );
    assert_eq!(
        summary["failureCount"], totals["errors"],
        "{name}: {summary}"
    );
    assert_eq!(
        summary["duplicates"], totals["duplicates"],
        "{name}: {summary}"
    );
    assert_eq!(summary["format"], expected["format"], "{name}: {summary}");
    let answer = get(
        w,
        &format!("/v1/csv/results/{}", job.job_id),
        Some(&job.token),
    )
    .await;
    assert_eq!(answer.status, 200, "{name}: {}", answer.text);
    let got = answer.data();
    let (got_books, want_books) = (
        got["books"].as_array().unwrap(),
        expected["books"].as_array().unwrap(),
    );
    assert_eq!(got_books.len(), want_books.len(), "{name}: book count");
    for (i, (g, e)) in got_books.iter().zip(want_books).enumerate() {
        assert_eq!(g, e, "{name}: book {i}");
    }
    assert_eq!(got["errors"], expected["errors"], "{name}: errors");
    // `warnings` is present only when there is one.
    let warnings = got.get("warnings").cloned().unwrap_or(json!([]));
    assert_eq!(warnings, expected["warnings"], "{name}: warnings");
    assert_eq!(got["successRate"], expected["successRate"], "{name}");
}

#[tokio::test]
async fn every_real_world_csv_fixture_imports_with_its_expected_books() {
    let w = shared().await;
    let fixtures = [
        "librarything_1252.tsv",
        "librarything_old.csv",
        "goodreads_wrapped.csv",
        "goodreads_padded.csv",
        "goodreads_numbers.csv",
        "goodreads_headerless.csv",
        "goodreads_duplicates.csv",
        "storygraph_quirks.csv",
        "bookbuddy.csv",
        "calibre.csv",
        "goodreads.csv",
        "goodreads_old.csv",
        "storygraph.csv",
        "librarything.csv",
        "plain.csv",
    ];
    for name in fixtures {
        let stem = name.rsplit_once('.').unwrap().0;
        let expected: Value =
            serde_json::from_slice(&fixture(&format!("{stem}.expected.json"))).unwrap();
        import_matches(
            w,
            name,
            fixture(name),
            &expected,
            Upload::Raw("/api/import/csv"),
        )
        .await;
    }
}

#[tokio::test]
async fn a_goodreads_export_without_its_header_row_imports_in_auto_and_as_goodreads() {
    let w = shared().await;
    let expected: Value =
        serde_json::from_slice(&fixture("goodreads_headerless.expected.json")).unwrap();
    let file = || fixture("goodreads_headerless.csv");
    let ways = [
        ("auto", Upload::Raw("/api/import/csv")),
        ("query auto", Upload::Raw("/api/import/csv?format=auto")),
        (
            "query goodreads",
            Upload::Raw("/api/import/csv?format=goodreads"),
        ),
        ("form goodreads", Upload::Form(Some("goodreads"))),
        ("form, no format", Upload::Form(None)),
        (
            "alias, goodreads",
            Upload::Raw("/api/import/csv-gemini?format=goodreads"),
        ),
    ];
    for (how, upload) in ways {
        import_matches(w, &format!("header-less, {how}"), file(), &expected, upload).await;
    }
}

#[tokio::test]
async fn a_named_format_reads_a_header_less_file_in_its_order_and_bad_formats_are_400() {
    let w = shared().await;
    // A plain file without its header: refused in auto, read as Title,Author,ISBN when named.
    let plain = b"Harbor of Glass,Noor Vance,1555001084\nEmber Garden,Lu Fen,\n".to_vec();
    let refused = upload(w, plain.clone(), &Upload::Raw("/api/import/csv")).await;
    refused.assert_error(400, "INVALID_REQUEST");
    assert!(
        refused.body["error"]["details"]["columnsFound"].is_array(),
        "{}",
        refused.text
    );
    let expected = json!({
        "books": [
            { "title": "Harbor of Glass", "author": "Noor Vance", "isbn": "9781555001087", "isbn10": "1555001084" },
            { "title": "Ember Garden", "author": "Lu Fen" }
        ],
        "errors": [], "warnings": [], "successRate": "2/2", "format": "plain",
        "totals": { "dataRecords": 2, "books": 2, "errors": 0, "duplicates": 0 }
    });
    import_matches(
        w,
        "plain, named",
        plain.clone(),
        &expected,
        Upload::Form(Some("plain")),
    )
    .await;
    for (how, upload_as) in [
        ("query", Upload::Raw("/api/import/csv?format=csv")),
        (
            "query, wrong case of a name",
            Upload::Raw("/api/import/csv?format=story_graph"),
        ),
        ("form", Upload::Form(Some("excel"))),
        (
            "repeated",
            Upload::Raw("/api/import/csv?format=plain&format=plain"),
        ),
    ] {
        let answer = upload(w, plain.clone(), &upload_as).await;
        answer.assert_error(400, "INVALID_REQUEST");
        assert_eq!(
            answer.body["error"]["details"]["field"], "format",
            "{how}: {}",
            answer.text
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Provider answers

async fn enrich(w: &Worker, books: Value) -> (Socket, Vec<Value>, Created) {
    let job = Created::from_answer(
        &post_json(w, "/api/enrichment/batch", &json!({ "books": books }), None).await,
    );
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    ws.until_closed().await;
    let answer = get(
        w,
        &format!("/v1/enrichment/results/{}", job.job_id),
        Some(&job.token),
    )
    .await;
    let lines = if answer.status == 200 {
        answer.data()["books"].as_array().unwrap().clone()
    } else {
        Vec::new()
    };
    (ws, lines, job)
}

#[tokio::test]
async fn each_real_provider_answer_shape_gives_the_expected_book_or_error_kind() {
    let (_, w) = shared_providers().await;
    let title = |word: &str| format!("{word} Harbor Lights");
    let books = json!([
        { "title": title(RealShape::BOM), "author": "Noor Vance" },
        { "title": title(RealShape::UTF16_QUOTA), "author": "Noor Vance" },
        { "title": title(RealShape::UNREADABLE), "author": "Noor Vance" },
        { "title": title(RealShape::AUTHOR_SUFFIX), "author": "Noor Vance" },
        { "title": title(RealShape::QUOTED_PUBLISHER), "author": "Noor Vance" },
        { "title": title(RealShape::COVER_DUPLICATE), "author": "Noor Vance" },
        { "title": "An Unknown Book Nobody Wrote", "author": "Nobody" },
    ]);
    let (ws, lines, _) = enrich(w, books).await;
    assert_eq!(ws.of_kind("job_complete").len(), 1, "{:?}", ws.kinds());
    let summary = &ws.of_kind("job_complete")[0]["payload"]["summary"];
    assert_eq!(
        (
            summary["successCount"].as_u64(),
            summary["notFound"].as_u64()
        ),
        (Some(4), Some(1)),
        "{summary}"
    );
    assert_eq!(
        (
            summary["providerErrors"].as_u64(),
            summary["parseErrors"].as_u64()
        ),
        (Some(2), Some(1)),
        "{summary}"
    );
    // A body behind a BOM is read: the book is found at Google Books.
    assert_eq!(lines[0]["success"], true, "{}", lines[0]);
    assert_eq!(lines[0]["enriched"]["provider"], "google_books");
    // A UTF-16 429 keeps its status: a provider error naming it, not a decoding error.
    assert_eq!(lines[1]["success"], false, "{}", lines[1]);
    assert_eq!(lines[1]["errorKind"], "provider_error", "{}", lines[1]);
    let error = lines[1]["error"].as_str().unwrap();
    assert!(
        error.contains("Google Books: HTTP 429") && error.contains("Open Library: HTTP 429"),
        "{error}"
    );
    // An unreadable 200 is a parse error, never "not found".
    assert_eq!(lines[2]["errorKind"], "parse_error", "{}", lines[2]);
    assert!(
        lines[2]["error"]
            .as_str()
            .unwrap()
            .contains("Google Books answered HTTP 200"),
        "{}",
        lines[2]
    );
    // The title with its author after `\c` matches, and is reported without it.
    assert_eq!(lines[3]["success"], true, "{}", lines[3]);
    assert_eq!(
        lines[3]["enriched"]["title"],
        title(RealShape::AUTHOR_SUFFIX)
    );
    // Publisher and date take the results' shapes.
    assert_eq!(
        lines[4]["enriched"]["publisher"], "Fake Press",
        "{}",
        lines[4]
    );
    assert_eq!(
        lines[4]["enriched"]["publishedDate"], "2001-02-03",
        "{}",
        lines[4]
    );
    // Of two equal Open Library records, the one with a cover.
    assert_eq!(
        lines[5]["enriched"]["provider"], "open_library",
        "{}",
        lines[5]
    );
    assert_eq!(
        lines[5]["enriched"]["coverUrl"], "https://covers.openlibrary.org/b/id/999-L.jpg",
        "{}",
        lines[5]
    );
    assert_eq!(lines[6]["errorKind"], "not_found", "{}", lines[6]);
    for line in &lines {
        assert_eq!(
            line["success"] == false,
            line.get("errorKind").is_some(),
            "{line}"
        );
    }
}

#[tokio::test]
async fn a_utf16_quota_answer_for_every_book_fails_the_job_as_retryable() {
    let (_, w) = shared_providers().await;
    let books = json!([{ "title": format!("{} Only", RealShape::UTF16_QUOTA) }]);
    let (ws, _, _) = enrich(w, books).await;
    let error = &ws.of_kind("error")[0]["payload"];
    assert_eq!(error["code"], "PROVIDER_ERROR", "{error}");
    assert_eq!(error["retryable"], true, "a 429 may pass: {error}");
}

/// A single scan of a photo carrying `marker` (the fake Gemini's scenario), with a socket that
/// said `ready`.
async fn scan_photo_marked(w: &Worker, marker: &str) -> (Created, Socket) {
    let answer = post_bytes(
        w,
        "/api/scan-bookshelf",
        Some("image/png"),
        image("png", marker),
    )
    .await;
    let job = Created::from_answer(&answer);
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    (job, ws)
}

#[tokio::test]
async fn gemini_answers_that_hold_no_book_list_fail_their_photo_clearly() {
    let (_, w) = shared_providers().await;
    let marker = format!("notbooks-{}", std::process::id());
    let (_, mut ws) = scan_photo_marked(w, &marker).await;
    assert_eq!(ws.until_closed().await.code, 1011, "{:?}", ws.kinds());
    let error = &ws.of_kind("error")[0]["payload"];
    assert_eq!(error["retryable"], false, "{error}");
    let text = error["message"].as_str().unwrap_or_default();
    assert!(text.contains("did not contain a book list"), "{text}");

    // A 429 whose body is UTF-16 is read: its `retryDelay` (26.4 s) is honoured and the
    // message is ours, not the provider's text.
    let marker = format!("quota16-{}", std::process::id());
    let (job, mut ws) = scan_photo_marked(w, &marker).await;
    let retry = w
        .wait_event("the 429's retry", |e| {
            e["jobId"] == job.job_id.as_str() && e["event"] == "task.retry"
        })
        .await;
    let wait = retry["due"].as_u64().unwrap() - retry["ts"].as_u64().unwrap();
    assert!(
        wait >= 26_400,
        "waited {wait} ms, not the retryDelay: {retry}"
    );
    let text = retry["error"].as_str().unwrap_or_default();
    assert!(
        text.contains("HTTP 429: rate limit or quota exceeded"),
        "{text}"
    );
    assert!(
        !text.contains("exceeded your current quota"),
        "no provider text in messages: {text}"
    );
    let answer = post_json(
        w,
        "/api/scan-bookshelf/cancel",
        &json!({ "jobId": job.job_id }),
        Some(&job.token),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(ws.until_closed().await.code, 1001);

    // One photo of things that are not books beside a real one: the job completes and says
    // which photo failed.
    let batch = json!({ "images": [
        { "index": 0, "data": bookstrack_jobs::base64::encode(&image("png", "bare")) },
        { "index": 1, "data": bookstrack_jobs::base64::encode(&image("png", "notbooks")) },
    ]});
    let job = Created::from_answer(&post_json(w, "/api/scan-bookshelf/batch", &batch, None).await);
    let mut ws = Socket::connect(w, &job).await;
    ws.ready().await;
    assert_eq!(ws.until_closed().await.code, 1000, "{:?}", ws.kinds());
    let photos = ws.of_kind("job_complete")[0]["payload"]["summary"]["photos"].clone();
    assert_eq!(photos[0]["status"], "done", "{photos}");
    assert_eq!(photos[1]["status"], "failed", "{photos}");
}
