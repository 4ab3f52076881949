//! The schema's tests: the checked-in file is the generated one, what the worker's own
//! encoders produce validates, and hand-made samples show what each entry rejects.

use super::*;
use crate::envelope;
use crate::error::{ApiError, ErrorCode};
use crate::job::JobError;
use crate::pipelines::csv::{Book, CsvSummary, Format, ImportTotals, RowError, RowWarning};
use crate::pipelines::enrich::EnrichmentSummary;
use crate::pipelines::enrich::{BookInput, BookOutcome, EnrichedBook, Provider};
use crate::pipelines::scan::ScanSummary;
use crate::pipelines::scan::{BoundingBox, PhotoStatus, PhotoSummary, ScanBook};
use crate::protocol::PONG_TEXT;
use jsonschema::ValidatorMap;
use std::sync::OnceLock;

const ID: &str = "0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e";

/// Validators of the generated schema in its closed form (what the tests hold the wire to),
/// one per entry.
fn validators() -> &'static ValidatorMap {
    static MAP: OnceLock<ValidatorMap> = OnceLock::new();
    MAP.get_or_init(|| {
        jsonschema::validator_map_for(&closed(&protocol_schema())).expect("a valid schema")
    })
}

/// Validators of the schema as checked in, with open objects (what clients get).
fn open_validators() -> &'static ValidatorMap {
    static MAP: OnceLock<ValidatorMap> = OnceLock::new();
    MAP.get_or_init(|| jsonschema::validator_map_for(&protocol_schema()).expect("a valid schema"))
}

/// Validates `instance` against the entry `def` of the closed schema: `Err` lists what is
/// wrong. Whatever it accepts, the open schema accepts too.
pub(crate) fn check(def: &str, instance: &Value) -> Result<(), String> {
    let result = check_in(validators(), def, instance);
    if result.is_ok() {
        if let Err(why) = check_in(open_validators(), def, instance) {
            panic!("the open {def} refused what the closed one accepted: {why}");
        }
    }
    result
}

fn check_in(validators: &ValidatorMap, def: &str, instance: &Value) -> Result<(), String> {
    let validator = validators
        .get(&format!("#/$defs/{def}"))
        .unwrap_or_else(|| panic!("no entry {def}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

pub(crate) fn assert_valid(def: &str, instance: &Value) {
    if let Err(why) = check(def, instance) {
        panic!("{def} refused {instance}: {why}");
    }
}

/// Checks an answer as the runtime sends it: its data in the success envelope against the
/// entry `def`, an error in the error envelope against `Error`.
pub(crate) fn assert_answer(def: &str, reply: &Result<(u16, Value), ApiError>) {
    let now = 1_795_335_330_042;
    match reply {
        Ok((_, data)) => assert_valid(def, &parse(&envelope::success(data, now))),
        Err(error) => assert_valid("Error", &parse(&envelope::failure(error, now))),
    }
}

/// Checks a message as sent on a socket: against the entry of its `type`, and the union.
pub(crate) fn assert_message(text: &str) {
    let message = parse(text);
    let kind = message["type"].as_str().unwrap_or_default();
    assert!(
        MESSAGES.contains(&kind),
        "a message of no known type: {text}"
    );
    assert_valid(kind, &message);
    assert_valid("ServerMessage", &message);
}

#[test]
fn checked_in_schema_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(SCHEMA_PATH);
    let generated = protocol_schema_text();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{SCHEMA_PATH} is not the schema the types generate (a wire type changed?). \
         Regenerate it with `{REGENERATE}`, check the diff, and commit it."
    );
}

#[test]
fn schema_has_an_entry_per_message_and_answer() {
    let schema = protocol_schema();
    let defs = schema["$defs"].as_object().unwrap();
    for name in MESSAGES
        .iter()
        .chain(CLIENT_MESSAGES)
        .chain(UNIONS)
        .chain(ANSWERS)
    {
        assert!(defs.contains_key(*name), "{name}");
        assert!(validators().get(&format!("#/$defs/{name}")).is_some());
    }
    // Every kind the code can send has its entry: one per variant, as `kind` names them.
    let state = complete_state(Pipeline::CsvImport, csv_summary());
    let kinds = [
        ServerMessage::ReadyAck {}.kind(),
        ServerMessage::reconnected(&state, false).kind(),
        ServerMessage::JobStarted {
            total_count: 1,
            estimated_duration_ms: None,
        }
        .kind(),
        ServerMessage::progress(&state).kind(),
        scan_item(true).kind(),
        ServerMessage::final_for(&state).unwrap().0.unwrap().kind(),
        ServerMessage::failure(&job_error()).kind(),
    ];
    let mut with_pong = kinds.to_vec();
    with_pong.push("pong");
    assert_eq!(with_pong, MESSAGES);
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}

fn csv_summary() -> Value {
    let totals = ImportTotals {
        data_records: 10,
        books: 6,
        errors: 3,
        duplicates: 1,
        invalid_utf8_rows: 0,
        warnings: 2,
    };
    serde_json::to_value(CsvSummary::new(&totals, Format::Goodreads, 412, 3, 1)).unwrap()
}

fn scan_summary() -> Value {
    serde_json::to_value(ScanSummary {
        total_processed: 2,
        success_count: 1,
        failure_count: 1,
        duration: 9_120,
        total_detected: 1,
        approved: 1,
        needs_review: 0,
        photos: vec![
            PhotoSummary {
                index: 0,
                status: PhotoStatus::Done,
                books_found: 1,
            },
            PhotoSummary {
                index: 7,
                status: PhotoStatus::Failed,
                books_found: 0,
            },
        ],
    })
    .unwrap()
}

fn enrichment_summary() -> Value {
    serde_json::to_value(EnrichmentSummary {
        total_processed: 2,
        success_count: 1,
        failure_count: 1,
        not_found: 1,
        provider_errors: 0,
        parse_errors: 0,
        duration: 4_829,
    })
    .unwrap()
}

fn job_error() -> JobError {
    JobError {
        code: ErrorCode::ProviderError,
        message: "all 2 photos failed; the first because: Gemini answered HTTP 503".into(),
        retryable: true,
    }
}

fn running_state(pipeline: Pipeline) -> JobState {
    let mut state = JobState::new(ID, pipeline, 0, 1_000);
    state.start(4, 2_000).unwrap();
    state
        .advance(1, Some("Enriched 1 of 4".into()), 3_000)
        .unwrap();
    state
}

fn complete_state(pipeline: Pipeline, summary: Value) -> JobState {
    let mut state = running_state(pipeline);
    state.complete(summary, 4_000).unwrap();
    state
}

fn scan_book() -> ScanBook {
    ScanBook {
        title: "Dune".into(),
        author: Some("Frank Herbert".into()),
        isbn: Some("9780441013593".into()),
        confidence: 0.94,
        bounding_box: BoundingBox {
            x: 0.12,
            y: 0.05,
            width: 0.06,
            height: 0.71,
        },
        photo_index: 4,
    }
}

/// An `item_result` of a photo, as the scan builds it.
fn scan_item(success: bool) -> ServerMessage {
    ServerMessage::ItemResult {
        index: 4,
        success,
        book: None,
        books: success.then(|| serde_json::to_value(vec![scan_book()]).unwrap()),
        error: (!success).then(|| "Gemini answered HTTP 400".to_string()),
    }
}

fn found() -> BookOutcome {
    BookOutcome::found(
        BookInput::new("Dune", None, Some("0441013597")),
        EnrichedBook {
            title: "Dune".into(),
            authors: vec!["Frank Herbert".into()],
            isbn13: Some("9780441013593".into()),
            isbn10: Some("0441013597".into()),
            publisher: Some("Ace Books".into()),
            published_date: Some("2005-08-02".into()),
            page_count: Some(896),
            cover_url: Some("https://books.google.com/books/content?id=B1hSG45JCX4C".into()),
            provider: Provider::GoogleBooks,
        },
    )
}

/// An `item_result` of an enrichment input, as the enrichment builds it.
fn enrichment_item(outcome: &BookOutcome) -> ServerMessage {
    ServerMessage::ItemResult {
        index: 3,
        success: outcome.success,
        book: serde_json::to_value(outcome).ok(),
        books: None,
        error: outcome.error.clone(),
    }
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// What the worker's own encoders produce, entry by entry.
#[test]
fn what_the_worker_sends_validates() {
    let mut messages = vec![
        ServerMessage::ReadyAck {},
        ServerMessage::JobStarted {
            total_count: 4,
            estimated_duration_ms: None,
        },
        ServerMessage::JobStarted {
            total_count: 0,
            estimated_duration_ms: Some(30_000),
        },
        ServerMessage::progress(&running_state(Pipeline::AiScan)),
        ServerMessage::reconnected(&running_state(Pipeline::AiScan), false),
        ServerMessage::reconnected(&JobState::new(ID, Pipeline::AiScan, 0, 1), true),
        scan_item(true),
        scan_item(false),
        enrichment_item(&found()),
        enrichment_item(&BookOutcome::not_found(BookInput::new(
            "Ledger", None, None,
        ))),
        enrichment_item(&BookOutcome::parse_error(
            BookInput::new("Ledger", Some("A. Author"), None),
            "a provider's answer could not be read",
        )),
        ServerMessage::failure(&job_error()),
        ServerMessage::Error {
            code: ErrorCode::InternalError,
            message: "m".into(),
            retryable: false,
            details: Some(json!({ "attempts": 5 })),
        },
    ];
    let complete = [
        (Pipeline::CsvImport, csv_summary()),
        (Pipeline::AiScan, scan_summary()),
        (Pipeline::BatchEnrichment, enrichment_summary()),
    ];
    let mut states = vec![
        JobState::new(ID, Pipeline::CsvImport, 0, 1),
        running_state(Pipeline::BatchEnrichment),
    ];
    for (pipeline, summary) in complete {
        let state = complete_state(pipeline, summary);
        messages.push(ServerMessage::final_for(&state).unwrap().0.unwrap());
        states.push(state);
    }
    let mut failed = running_state(Pipeline::AiScan);
    failed.fail(job_error(), 5_000).unwrap();
    messages.push(ServerMessage::final_for(&failed).unwrap().0.unwrap());
    let mut canceled = running_state(Pipeline::CsvImport);
    canceled.cancel(5_000).unwrap();
    states.extend([failed, canceled]);
    for (seq, message) in messages.iter().enumerate() {
        let text = message.encode(ID, Pipeline::AiScan, 1_795_335_331_250, seq as u64 + 1);
        assert_valid(message.kind(), &parse(&text));
    }
    assert_valid("pong", &parse(PONG_TEXT));
    assert_eq!(serde_json::to_string(&Pong::MESSAGE).unwrap(), PONG_TEXT);

    let now = 1_795_335_330_042;
    for state in &states {
        assert_valid("JobState", &parse(&envelope::success(state, now)));
    }
    let answers: Vec<(&str, String)> = vec![
        (
            "CreateJob",
            envelope::success(
                &CreateJobData::new(
                    ID,
                    Pipeline::CsvImport,
                    "t2u2MJO7XOrNuEV-_1Aw6ye8A",
                    7_200_000,
                ),
                now,
            ),
        ),
        (
            "TokenRefresh",
            envelope::success(
                &TokenRefreshData {
                    job_id: ID.into(),
                    token: "t".into(),
                    expires_in: 7_200,
                },
                now,
            ),
        ),
        (
            "CancelJob",
            envelope::success(&CancelJobData::new(ID.into()), now),
        ),
        ("Health", envelope::success(&HealthData::CURRENT, now)),
        (
            "CsvResults",
            envelope::success(
                &Paged {
                    page: CsvResultsPage::new(
                        vec![Book {
                            title: "The Hobbit".into(),
                            author: "J.R.R. Tolkien".into(),
                            isbn: Some("9780547928227".into()),
                            isbn10: Some("054792822X".into()),
                            identifier: None,
                            shelf: Some("read".into()),
                            rating: Some(5.0),
                            date_read: Some("2023-08-15".into()),
                            series: None,
                            series_number: None,
                        }],
                        vec![
                            serde_json::to_value(RowError::new(8, None, "missing title".into()))
                                .unwrap(),
                            serde_json::to_value(RowError::new(
                                9,
                                Some("x".repeat(5_000)),
                                "unreadable ISBN".into(),
                            ))
                            .unwrap(),
                        ],
                        vec![serde_json::to_value(RowWarning {
                            line: 4,
                            field: "isbn".into(),
                            warning: "w".into(),
                        })
                        .unwrap()],
                        &ImportTotals::default(),
                    ),
                    next_cursor: Some("c1".into()),
                },
                now,
            ),
        ),
        (
            "ScanResults",
            envelope::success(
                &Paged {
                    page: ScanResultsPage {
                        total_detected: 1,
                        approved: 1,
                        needs_review: 0,
                        books: vec![scan_book()],
                    },
                    next_cursor: None,
                },
                now,
            ),
        ),
        (
            "EnrichmentResults",
            envelope::success(
                &Paged {
                    page: EnrichmentResultsPage {
                        books: vec![
                            serde_json::to_value(found()).unwrap(),
                            serde_json::to_value(BookOutcome::not_found(BookInput::new(
                                "The Hobbit",
                                Some("J.R.R. Tolkien"),
                                None,
                            )))
                            .unwrap(),
                        ],
                    },
                    next_cursor: Some("c2".into()),
                },
                now,
            ),
        ),
        (
            "SyntheticResults",
            envelope::success(
                &Paged {
                    page: SyntheticResults { items: 3 },
                    next_cursor: None,
                },
                now,
            ),
        ),
        ("Error", envelope::failure(&ApiError::rate_limited(17), now)),
        ("Error", envelope::failure(&ApiError::too_large(1024), now)),
        (
            "Error",
            envelope::failure(&ApiError::not_found("no such job"), now),
        ),
        (
            "Error",
            envelope::failure(&ApiError::method_not_allowed("GET, OPTIONS"), now),
        ),
    ];
    for (def, text) in answers {
        assert_valid(def, &parse(&text));
    }
}

/// A copy of `value` with the member at the JSON pointer set, or removed for `None`.
fn edit(value: &Value, pointer: &str, to: Option<Value>) -> Value {
    let mut copy = value.clone();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = copy
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("{pointer}"));
    match (parent, to) {
        (Value::Object(map), Some(to)) => {
            map.insert(key.into(), to);
        }
        (Value::Object(map), None) => {
            assert!(map.remove(key).is_some(), "{pointer} is not there");
        }
        (Value::Array(items), Some(to)) => items[key.parse::<usize>().unwrap()] = to,
        (Value::Array(items), None) => {
            items.remove(key.parse::<usize>().unwrap());
        }
        _ => panic!("{pointer} is not in an object or array"),
    }
    copy
}

/// A message envelope around a payload, as on the wire.
fn message(kind: &str, pipeline: &str, payload: Value) -> Value {
    let mut payload = payload;
    payload["type"] = json!(kind);
    json!({ "type": kind, "jobId": ID, "pipeline": pipeline, "timestamp": 1_795_335_331_250u64,
            "version": "1.0.0", "seq": 14, "payload": payload })
}

fn answer(data: Value) -> Value {
    json!({ "data": data, "metadata": { "timestamp": "2026-11-22T08:15:30.042Z" } })
}

/// Each entry with a valid sample and edits of it that must be refused: the schema is strict
/// where the contract is (required fields, types, enums, ranges, what goes with what).
#[test]
fn samples_are_accepted_and_drift_is_refused() {
    let csv_summary = json!({ "totalProcessed": 10, "successCount": 6, "failureCount": 3,
        "duplicates": 1, "invalidUtf8Rows": 0, "format": "plain", "successRate": "6/10",
        "duration": 412 });
    let enrichment_summary = json!({ "totalProcessed": 2, "successCount": 1, "failureCount": 1,
        "notFound": 1, "providerErrors": 0, "duration": 4829 });
    let scan_book = json!({ "title": "Dune", "confidence": 0.94, "photoIndex": 4,
        "boundingBox": { "x": 0.12, "y": 0.05, "width": 0.06, "height": 0.71 } });
    let found = json!({ "input": { "title": "Dune", "isbn": "0441013597" }, "success": true,
        "enriched": { "title": "Dune", "authors": ["Frank Herbert"], "provider": "google_books" } });
    let state = json!({ "jobId": ID, "pipeline": "batch_enrichment", "status": "complete",
        "totalCount": 2, "processedCount": 2, "progress": 1.0, "startTime": 1, "lastUpdate": 5,
        "endTime": 5, "version": 6, "summary": enrichment_summary,
        "resultsUrl": format!("/v1/enrichment/results/{ID}") });
    type Refused = Vec<(&'static str, Option<Value>)>;
    let table: Vec<(&str, Value, Refused)> = vec![
        (
            "ready_ack",
            message("ready_ack", "ai_scan", json!({})),
            vec![
                ("/seq", Some(json!(0))),
                ("/seq", None),
                ("/type", Some(json!("job_progress"))),
                ("/version", Some(json!("2.0.0"))),
                ("/timestamp", Some(json!("2026-11-22T08:15:30Z"))),
                ("/pipeline", Some(json!("books"))),
                ("/jobId", Some(json!(ID.to_uppercase()))),
                ("/payload", None),
            ],
        ),
        (
            "reconnected",
            message(
                "reconnected",
                "ai_scan",
                json!({ "status": "running", "progress": 0.55, "processedCount": 55,
                        "totalCount": 100, "lastUpdate": 1_795_335_332_010u64, "version": 61,
                        "resync": true }),
            ),
            vec![
                ("/payload/progress", Some(json!(1.5))),
                ("/payload/status", Some(json!("done"))),
                ("/payload/version", None),
                ("/payload/resync", Some(json!("yes"))),
                ("/payload/type", Some(json!("ready_ack"))),
            ],
        ),
        (
            "job_started",
            message("job_started", "csv_import", json!({ "totalCount": 100 })),
            vec![
                ("/payload/totalCount", None),
                ("/payload/totalCount", Some(json!(-1))),
                ("/payload/estimatedDuration", Some(json!("soon"))),
            ],
        ),
        (
            "job_progress",
            message(
                "job_progress",
                "ai_scan",
                json!({ "progress": 0.5, "status": "running", "processedCount": 1,
                        "currentItem": "Scanned photo 1 of 2: 14 books" }),
            ),
            vec![
                ("/seq", Some(json!("7"))),
                ("/payload/progress", Some(json!("0.5"))),
                ("/payload/progress", Some(json!(-0.1))),
                ("/payload/processedCount", Some(json!(1.5))),
                ("/payload/currentItem", Some(Value::Null)),
                ("/payload/status", Some(json!("paused"))),
            ],
        ),
        (
            "item_result",
            message(
                "item_result",
                "ai_scan",
                json!({ "index": 4, "success": true, "books": [scan_book] }),
            ),
            vec![
                ("/payload/index", None),
                ("/payload/books", None),
                ("/payload/error", Some(json!("but it worked"))),
                ("/payload/success", Some(json!(false))),
                ("/payload/books/0/confidence", Some(json!(1.2))),
                ("/payload/books/0/boundingBox", None),
            ],
        ),
        (
            "item_result",
            message(
                "item_result",
                "batch_enrichment",
                json!({ "index": 3, "success": true, "book": found }),
            ),
            vec![
                ("/payload/book/enriched", None),
                ("/payload/book/enriched/provider", Some(json!("amazon"))),
                ("/payload/book/input", None),
            ],
        ),
        (
            "job_complete",
            message(
                "job_complete",
                "csv_import",
                json!({ "pipeline": "csv_import", "summary": csv_summary,
                        "resultsUrl": format!("/v1/csv/results/{ID}") }),
            ),
            vec![
                ("/payload/summary/duplicates", None),
                ("/payload/summary/totalProcessed", None),
                ("/payload/summary/format", Some(json!("excel"))),
                ("/payload/summary/errorsTruncated", Some(json!("no"))),
                ("/payload/summary", Some(enrichment_summary.clone())),
                ("/payload/resultsUrl", Some(json!("/v1/csv/results/x"))),
                ("/payload/pipeline", Some(json!("books"))),
            ],
        ),
        (
            "job_complete",
            message(
                "job_complete",
                "batch_enrichment",
                json!({ "pipeline": "batch_enrichment", "summary": enrichment_summary,
                        "resultsUrl": format!("/v1/enrichment/results/{ID}") }),
            ),
            vec![
                ("/payload/summary", Some(csv_summary.clone())),
                ("/payload/summary/notFound", Some(json!("1"))),
                ("/payload/summary/duration", None),
            ],
        ),
        (
            "error",
            message(
                "error",
                "ai_scan",
                json!({ "code": "PROVIDER_ERROR", "message": "all 2 photos failed",
                        "retryable": true }),
            ),
            vec![
                ("/payload/code", Some(json!("OOPS"))),
                ("/payload/code", None),
                ("/payload/retryable", None),
                ("/payload/details", Some(json!("text"))),
            ],
        ),
        (
            "pong",
            json!({ "type": "pong" }),
            vec![("/type", Some(json!("ping"))), ("/type", None)],
        ),
        (
            "ServerMessage",
            message(
                "job_progress",
                "ai_scan",
                json!({ "progress": 0.5, "status": "running",
                "processedCount": 1 }),
            ),
            vec![
                ("/type", Some(json!("job_paused"))),
                ("/payload/type", Some(json!("job_paused"))),
                ("/seq", None),
                ("/payload/progress", Some(json!("half"))),
            ],
        ),
        (
            "ready",
            json!({ "type": "ready" }),
            vec![("/type", Some(json!("Ready"))), ("/type", None)],
        ),
        (
            "cancel",
            json!({ "type": "cancel" }),
            vec![("/type", Some(json!("ready")))],
        ),
        (
            "ping",
            json!({ "type": "ping" }),
            vec![("/type", Some(json!(1)))],
        ),
        (
            "ClientMessage",
            json!({ "type": "cancel" }),
            vec![("/type", Some(json!("pause"))), ("/type", None)],
        ),
        (
            "CreateJob",
            answer(json!({ "jobId": ID, "token": "t2u2MJO7", "expiresIn": 7200,
                "pipeline": "ai_scan", "websocketUrl": format!("/ws/progress?jobId={ID}&token=t2u2MJO7") })),
            vec![
                ("/data/pipeline", Some(json!("books"))),
                ("/data/token", None),
                ("/data/expiresIn", Some(json!("7200"))),
                (
                    "/data/jobId",
                    Some(json!("0B7C8F0E-4D3B-4E44-9A4E-1F2A3B4C5D6E")),
                ),
                ("/data/websocketUrl", Some(json!("wss://example.com/ws"))),
                ("/metadata/timestamp", Some(json!(1_795_335_330_042u64))),
                ("/metadata", None),
                ("/data", None),
            ],
        ),
        (
            "JobState",
            answer(state.clone()),
            vec![
                ("/data/summary", None),
                ("/data/resultsUrl", None),
                ("/data/endTime", None),
                ("/data/progress", Some(json!(2))),
                ("/data/jobId", None),
                ("/data/status", Some(json!("done"))),
                ("/data/summary/parseErrors", Some(json!(-1))),
                ("/data/summary", Some(csv_summary.clone())),
                (
                    "/data/error",
                    Some(json!({ "code": "PROVIDER_ERROR", "message": "m", "retryable": true })),
                ),
                ("/data/currentItem", Some(json!("Enriched 2 of 2"))),
            ],
        ),
        (
            "JobState",
            answer(
                json!({ "jobId": ID, "pipeline": "ai_scan", "status": "failed",
                "totalCount": 2, "processedCount": 1, "progress": 0.5, "startTime": 1,
                "lastUpdate": 5, "endTime": 5, "version": 6,
                "error": { "code": "PROVIDER_ERROR", "message": "m", "retryable": true } }),
            ),
            vec![
                ("/data/error", None),
                ("/data/error/retryable", None),
                ("/data/error/code", Some(json!("UNKNOWN"))),
                ("/data/summary", Some(enrichment_summary.clone())),
            ],
        ),
        (
            "CsvResults",
            answer(
                json!({ "books": [{ "title": "The Hobbit", "author": "J.R.R. Tolkien",
                    "isbn": "9780547928227", "rating": 5.0 }],
                "errors": [{ "line": 8, "error": "missing title" }],
                "warnings": [{ "line": 4, "field": "isbn", "warning": "w" }],
                "successRate": "1/2", "nextCursor": "abc" }),
            ),
            vec![
                ("/data/successRate", None),
                ("/data/successRate", Some(json!("50%"))),
                ("/data/books/0/title", None),
                ("/data/books/0/rating", Some(json!("5"))),
                ("/data/errors/0/line", Some(json!("8"))),
                ("/data/errors/0/error", None),
                ("/data/warnings/0/field", None),
                ("/data/nextCursor", Some(json!(2))),
                ("/data/books", None),
            ],
        ),
        (
            "ScanResults",
            answer(json!({ "totalDetected": 1, "approved": 1, "needsReview": 0,
                "books": [scan_book] })),
            vec![
                ("/data/approved", None),
                ("/data/books/0/confidence", Some(json!(1.2))),
                ("/data/books/0/boundingBox/x", Some(json!(-0.5))),
                ("/data/books/0/photoIndex", None),
                ("/data/books/0/title", Some(Value::Null)),
            ],
        ),
        (
            "EnrichmentResults",
            answer(
                json!({ "books": [found, { "input": { "title": "The Hobbit" },
                "success": false, "error": "no matching book found", "errorKind": "not_found" }] }),
            ),
            vec![
                ("/data/books/0/enriched/provider", Some(json!("amazon"))),
                (
                    "/data/books/0/enriched/authors",
                    Some(json!("Frank Herbert")),
                ),
                ("/data/books/0/success", None),
                ("/data/books/1/error", None),
                ("/data/books/1/errorKind", Some(json!("gone"))),
                ("/data/books/1/input/title", None),
            ],
        ),
        (
            "TokenRefresh",
            answer(json!({ "jobId": ID, "token": "t", "expiresIn": 7200 })),
            vec![("/data/expiresIn", None), ("/data/token", Some(json!(7)))],
        ),
        (
            "CancelJob",
            answer(json!({ "jobId": ID, "status": "canceled" })),
            vec![
                ("/data/status", Some(json!("running"))),
                ("/data/jobId", None),
            ],
        ),
        (
            "Health",
            answer(json!({ "status": "ok", "version": "0.1.0", "commit": "3f2a9c41d0be" })),
            vec![
                ("/data/status", Some(json!("down"))),
                ("/data/commit", None),
            ],
        ),
        (
            "Error",
            json!({ "data": null, "metadata": { "timestamp": "2026-11-22T08:15:30.042Z" },
                "error": { "code": "RATE_LIMIT_EXCEEDED", "message": "too many requests; retry in 3 s",
                           "details": { "retryAfter": 3 } } }),
            vec![
                ("/error/code", None),
                ("/error/code", Some(json!("TEAPOT"))),
                ("/error/message", None),
                ("/error/details", Some(json!(3))),
                ("/data", Some(json!({}))),
                ("/data", None),
                ("/error", None),
                ("/metadata/timestamp", Some(json!("yesterday"))),
            ],
        ),
        (
            "SyntheticResults",
            answer(json!({ "items": 3 })),
            vec![("/data/items", None)],
        ),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for (def, valid, refused) in &table {
        seen.insert(*def);
        assert_valid(def, valid);
        assert!(!refused.is_empty(), "{def}: no refused sample");
        for (pointer, to) in refused {
            let sample = edit(valid, pointer, to.clone());
            assert!(
                check(def, &sample).is_err(),
                "{def} accepted {pointer} = {to:?}: {sample}"
            );
        }
    }
    let all: std::collections::BTreeSet<&str> = MESSAGES
        .iter()
        .chain(CLIENT_MESSAGES)
        .chain(UNIONS)
        .chain(ANSWERS)
        .copied()
        .collect();
    assert_eq!(seen, all, "every entry has samples");
}

/// Summaries stored by earlier versions are sent as stored: the schema takes the fields that
/// came later as optional (an enrichment summary without `parseErrors`, a CSV one without the
/// 9.2 counts), and refuses a summary that is not its pipeline's.
#[test]
fn summaries_follow_their_pipeline() {
    let v1_enrichment = json!({ "totalProcessed": 25, "successCount": 19, "failureCount": 6,
        "notFound": 6, "providerErrors": 0, "duration": 311 });
    let v1_csv = json!({ "totalProcessed": 12000, "successCount": 11988, "failureCount": 4,
        "duplicates": 8, "invalidUtf8Rows": 1, "format": "goodreads",
        "successRate": "11988/12000", "duration": 461 });
    let complete = |pipeline: &str, summary: &Value| {
        let segment = match pipeline {
            "csv_import" => "csv",
            "ai_scan" => "scan",
            _ => "enrichment",
        };
        message(
            "job_complete",
            pipeline,
            json!({ "pipeline": pipeline, "summary": summary,
                    "resultsUrl": format!("/v1/{segment}/results/{ID}") }),
        )
    };
    let table = [
        ("batch_enrichment", &v1_enrichment, true),
        ("batch_enrichment", &enrichment_summary(), true),
        ("csv_import", &v1_csv, true),
        ("csv_import", &csv_summary(), true),
        ("ai_scan", &scan_summary(), true),
        ("csv_import", &v1_enrichment, false),
        ("ai_scan", &csv_summary(), false),
        ("batch_enrichment", &scan_summary(), false),
    ];
    for (pipeline, summary, ok) in table {
        let got = check("job_complete", &complete(pipeline, summary));
        assert_eq!(got.is_ok(), ok, "{pipeline} with {summary}: {got:?}");
    }
}

/// The generated text is stable and ends with a newline, as the checked-in file does.
#[test]
fn schema_text_is_deterministic() {
    assert_eq!(protocol_schema_text(), protocol_schema_text());
    assert!(protocol_schema_text().ends_with("}\n"));
    // Doc comments stay out of it; the top-level entries are described.
    let schema = protocol_schema();
    assert!(schema["$defs"]["Book"]["properties"]["title"].is_object());
    assert!(schema["$defs"]["Book"]["properties"]["isbn"]
        .get("description")
        .is_none());
    assert!(schema["$defs"]["job_progress"]["description"].is_string());
}

/// Messages the worker could be broken into sending, each made from a real one: what a client
/// relies on missing or mistyped, or a type it does not know. All refused.
#[test]
fn known_bad_messages_are_refused() {
    let real = parse(
        &ServerMessage::progress(&running_state(Pipeline::AiScan)).encode(
            ID,
            Pipeline::AiScan,
            1_795_335_331_250,
            7,
        ),
    );
    assert_valid("job_progress", &real);
    assert_valid("ServerMessage", &real);
    let mut unknown = real.clone();
    unknown["type"] = json!("job_paused");
    unknown["payload"]["type"] = json!("job_paused");
    let bad = [
        ("missing seq", edit(&real, "/seq", None)),
        ("seq 0", edit(&real, "/seq", Some(json!(0)))),
        ("unknown type", unknown),
        (
            "envelope and payload disagree",
            edit(&real, "/type", Some(json!("job_started"))),
        ),
        (
            "progress as a string",
            edit(&real, "/payload/progress", Some(json!("0.25"))),
        ),
        (
            "progress over 1",
            edit(&real, "/payload/progress", Some(json!(25))),
        ),
        ("progress missing", edit(&real, "/payload/progress", None)),
        ("no payload", edit(&real, "/payload", None)),
    ];
    for (what, message) in bad {
        assert!(
            check("ServerMessage", &message).is_err(),
            "{what} accepted: {message}"
        );
        assert!(
            check("job_progress", &message).is_err() || what == "unknown type",
            "{what} accepted as job_progress: {message}"
        );
        if let Some(kind) = message["type"].as_str().filter(|k| MESSAGES.contains(k)) {
            assert!(check(kind, &message).is_err(), "{what} accepted as {kind}");
        }
    }
}

/// The file's objects are open, as clients must ignore what they do not know; the closed form
/// the tests use refuses a member the types do not name, at any depth.
#[test]
fn the_closed_form_refuses_members_the_types_do_not_name() {
    let complete = complete_state(Pipeline::CsvImport, csv_summary());
    let message = parse(
        &ServerMessage::final_for(&complete)
            .unwrap()
            .0
            .unwrap()
            .encode(ID, Pipeline::CsvImport, 1_795_335_331_250, 9),
    );
    let state = parse(&envelope::success(&complete, 1_795_335_330_042));
    let extra = Some(json!(1));
    let cases = [
        ("job_complete", edit(&message, "/shard", extra.clone())),
        (
            "job_complete",
            edit(&message, "/payload/eta", extra.clone()),
        ),
        (
            "job_complete",
            edit(&message, "/payload/summary/skipped", extra.clone()),
        ),
        ("JobState", edit(&state, "/data/owner", extra.clone())),
        ("JobState", edit(&state, "/metadata/region", extra.clone())),
        ("JobState", edit(&state, "/debug", extra.clone())),
    ];
    for (def, sample) in cases {
        assert!(
            check(def, &sample).is_err(),
            "closed {def} accepted {sample}"
        );
        assert!(
            check_in(open_validators(), def, &sample).is_ok(),
            "the open {def} refused an unknown member: {sample}"
        );
    }
    // Client messages are read leniently: other members are ignored.
    let chatty = json!({ "type": "ready", "client": "ios/2.3" });
    assert!(check_in(open_validators(), "ready", &chatty).is_ok());
    assert!(check_in(open_validators(), "ClientMessage", &chatty).is_ok());
}

/// Every route that answers JSON names an answer entry, and the entry exists.
#[test]
fn every_route_names_its_entry() {
    use crate::routes::{ConsoleAsset, Route};
    let id = || ID.to_string();
    let routes = [
        Route::Health,
        Route::CreateCsvImport,
        Route::CreateScan,
        Route::CreateScanBatch,
        Route::CreateEnrichment,
        Route::CreateSyntheticJob,
        Route::JobState { job_id: id() },
        Route::TokenRefresh,
        Route::CancelById { job_id: id() },
        Route::CancelByBody,
        Route::Results {
            pipeline: Pipeline::CsvImport,
            job_id: id(),
        },
        Route::Results {
            pipeline: Pipeline::AiScan,
            job_id: id(),
        },
        Route::Results {
            pipeline: Pipeline::BatchEnrichment,
            job_id: id(),
        },
    ];
    for route in &routes {
        let entry = answer_entry(route).unwrap_or_else(|| panic!("{route:?}"));
        assert!(ANSWERS.contains(&entry), "{route:?}: {entry}");
    }
    for route in [Route::ProgressSocket, Route::Console(ConsoleAsset::Page)] {
        assert_eq!(answer_entry(&route), None);
    }
}
