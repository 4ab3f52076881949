//! Fuzz targets for every parser that reads untrusted input, written as proptest strategies
//! driven through a counting `TestRunner` (so no extra crate), each mixing arbitrary input with
//! generated input shaped like the real thing:
//!
//! - `fuzz_ws_client_messages`: `protocol::parse_client_text` and `classify_client_binary`
//!   never panic, generated messages get exactly the documented outcome (only the types
//!   `ready`, `cancel` and `ping` are accepted), and every violation closes with 1009 when too
//!   big, else 1002, with a reason of at most 123 bytes.
//! - `fuzz_csv_reader`: `csv_import::read_header`, `parse_slice` and `count_data_records` on
//!   arbitrary bytes and generated exports never panic; a whole import ends `done` with
//!   `data_records == books + errors + duplicates`, and importing in random slices and record
//!   limits, with evictions that resume from the persisted state, gives the same result.
//! - `fuzz_csv_dialects`: libraries generated in every recognised layout, delimiter and
//!   encoding, then damaged as spreadsheets damage them (records wrapped in one cell, padded
//!   cells, a lost header row, ISBNs turned into numbers): the import finds exactly the
//!   generated books, the layout and dialect, one warning per repair, the same in slices, and
//!   `count_data_records` counts what the import parses.
//! - `fuzz_csv_format_detection`: `read_header_with` on arbitrary first lines with every
//!   `format` hint: a header row reads the same whatever the hint, and only a Goodreads record
//!   is read without a header in `auto`.
//! - `fuzz_gemini_responses`: `scan::gemini::parse_response` and `normalize` never panic; clean
//!   generated answers yield one detection per book object, and every normalised book has a
//!   title, confidence and box within 0..=1 (box inside the image) and a valid ISBN-13 if any.
//! - `fuzz_google_books_responses`, `fuzz_open_library_responses`: the provider parsers never
//!   panic, candidates carry only `https://` covers and valid ISBNs, and `enrich::score` stays
//!   within 0..=1.
//! - `fuzz_multipart_bodies`: `multipart::boundary` and `parse` never panic, and generated
//!   well-formed bodies (binary data with line breaks and boundary look-alikes) round-trip.
//! - `fuzz_request_bodies`: the scan, enrichment, synthetic-job and internal creation decoders
//!   never panic on arbitrary and JSON-ish bodies (deep nesting, huge numbers, duplicate keys),
//!   HTTP errors are always 4xx, and valid generated bodies are accepted.
//! - `fuzz_small_parsers`: `base64`, `ids::parse_job_id`, `token::bearer` and
//!   `TokenSigner::is_authentic`: round trips, canonical ids only, and no token authentic
//!   unless it is the issued one.
//!
//! Each target runs `FUZZ_CASES` cases (default 2000: seconds in a debug build) and prints
//! `fuzz <target>: <executions> executions in <ms> ms`, visible with `--nocapture`. A failure
//! shows the shrunk input. `npm run fuzz` runs 200 000 cases per target in release mode.
#![cfg(not(target_arch = "wasm32"))]

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt::Debug;
use std::time::Instant;

use bookstrack_jobs::error::ApiError;
use bookstrack_jobs::internal::{self, Blob, CreateJob};
use bookstrack_jobs::isbn::{is_valid_isbn10, is_valid_isbn13, isbn13_to_10};
use bookstrack_jobs::job::Pipeline;
use bookstrack_jobs::multipart::{self, MultipartError, Part, MAX_PARTS};
use bookstrack_jobs::pipelines::csv::{
    apply_patches, count_data_records, parse_slice, read_header, read_header_with, Book, BookPatch,
    BookRef, Cursor, Deduper, Delimiter, Encoding, Format, FormatHint, Header, ImportTotals,
    RowError, RowWarning,
};
use bookstrack_jobs::pipelines::enrich::{
    self, best_match, google_books, open_library, score, BookInput, Candidate, EditionCandidate,
    MIN_SCORE,
};
use bookstrack_jobs::pipelines::scan::gemini::{self, GeminiError};
use bookstrack_jobs::pipelines::scan::{image, request as scan_request, ScanBook};
use bookstrack_jobs::pipelines::synthetic::{self, SyntheticSpec};
use bookstrack_jobs::pipelines::work::Work;
use bookstrack_jobs::protocol::{
    self, ClientMessage, Violation, MAX_CLIENT_MESSAGE_BYTES, MAX_CLOSE_REASON_BYTES,
};
use bookstrack_jobs::token::{self, TokenSigner};
use bookstrack_jobs::{base64, ids};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestRunner};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------------
// Runner

const DEFAULT_CASES: u32 = 2000;

fn fuzz_cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// Runs `check` over `FUZZ_CASES` inputs and reports how many executions it took, shrinking
/// included, so a run's cost is visible next to its result.
fn run_target<S: Strategy>(
    target: &str,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(Config {
        cases: fuzz_cases(),
        // Regressions belong in a unit test next to the fix, not in a file beside this one.
        failure_persistence: None,
        ..Config::default()
    });
    let executions = Cell::new(0u64);
    let started = Instant::now();
    let outcome = runner.run(&strategy, |input| {
        executions.set(executions.get() + 1);
        check(input)
    });
    println!(
        "fuzz {target}: {} executions in {} ms",
        executions.get(),
        started.elapsed().as_millis()
    );
    if let Err(failure) = outcome {
        panic!("fuzz {target} failed: {failure}");
    }
}

/// Bytes shown as escaped text in failure reports, where a list of numbers is unreadable.
#[derive(Clone)]
struct Bytes(Vec<u8>);

impl Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

fn fail(message: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(message.into())
}

/// `Index::index` panics on an empty range; an empty input simply has nothing to pick.
fn pick(index: &Index, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        index.index(len)
    }
}

// ---------------------------------------------------------------------------------------------
// Shared generators

/// Keys the parsers look up, so random objects hit real code paths rather than being ignored.
const KNOWN_KEYS: &[&str] = &[
    "type",
    "title",
    "author",
    "authors",
    "isbn",
    "books",
    "items",
    "volumeInfo",
    "docs",
    "candidates",
    "content",
    "parts",
    "text",
    "jobId",
    "images",
    "index",
    "data",
    "key",
    "name",
    "error",
];

const PLACEHOLDER_TEXTS: &[&str] = &[
    "null",
    "NULL",
    "None",
    "n/a",
    "Unknown",
    "unknown title",
    "Unknown Author",
    "unreadable",
    "?",
    "-",
    "",
    "   ",
    "\u{a0}",
];

/// JSON scalars and small containers, of the wrong type for whatever field they land in.
fn junk_value() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
        Just(json!([1, "a", null, {"b": []}])),
    ]
    .boxed()
}

fn json_key() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(KNOWN_KEYS).prop_map(str::to_string),
        1 => "\\PC{0,8}",
    ]
    .boxed()
}

/// Any JSON value a few levels deep.
fn arb_json() -> BoxedStrategy<Value> {
    junk_value()
        .prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((json_key(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
        .boxed()
}

/// Text as it appears in titles and names: mostly words, sometimes Unicode, control
/// characters, placeholders, or long enough to pass the title and author caps.
fn book_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[A-Za-z][A-Za-z' ]{0,24}",
        2 => "\\PC{0,24}",
        1 => "[ \\t\\r\\n\\x00-\\x1fa-z]{0,16}",
        1 => select(PLACEHOLDER_TEXTS).prop_map(str::to_string),
        1 => "[a-z ]{280,320}",
        1 => "[a-z ]{490,520}",
    ]
    .boxed()
}

fn check_digit_13(stem: &str) -> u32 {
    let sum: u32 = stem
        .bytes()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    (10 - sum % 10) % 10
}

fn isbn13_from_stem(stem: &str) -> String {
    format!("{stem}{}", check_digit_13(stem))
}

fn isbn10_from_stem(stem: &str) -> String {
    let sum: u32 = stem
        .bytes()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * (10 - i as u32))
        .sum();
    match (11 - sum % 11) % 11 {
        10 => format!("{stem}X"),
        check => format!("{stem}{check}"),
    }
}

fn valid_isbn13() -> BoxedStrategy<String> {
    (select(&["978", "979"][..]), "[0-9]{9}")
        .prop_map(|(prefix, digits)| isbn13_from_stem(&format!("{prefix}{digits}")))
        .boxed()
}

fn valid_isbn10() -> BoxedStrategy<String> {
    "[0-9]{9}".prop_map(|stem| isbn10_from_stem(&stem)).boxed()
}

/// The same ISBN with its last digit changed, so only the checksum is wrong.
fn with_bad_checksum(isbn: &str) -> String {
    let mut chars: Vec<char> = isbn.chars().collect();
    if let Some(last) = chars.last_mut() {
        *last = match last.to_digit(10) {
            Some(d) => char::from_digit((d + 1) % 10, 10).unwrap_or('0'),
            None => '0',
        };
    }
    chars.into_iter().collect()
}

fn hyphenated(isbn13: &str) -> String {
    let (a, rest) = isbn13.split_at(3.min(isbn13.len()));
    let (b, rest) = rest.split_at(1.min(rest.len()));
    let (c, rest) = rest.split_at(4.min(rest.len()));
    let (d, e) = rest.split_at(rest.len().saturating_sub(1));
    format!("{a}-{b}-{c}-{d}-{e}")
}

/// Identifiers as providers, exports and models spell them, valid or not.
fn isbn_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => valid_isbn13(),
        2 => valid_isbn10(),
        1 => valid_isbn13().prop_map(|i| hyphenated(&i)),
        1 => valid_isbn13().prop_map(|i| with_bad_checksum(&i)),
        1 => valid_isbn10().prop_map(|i| with_bad_checksum(&i)),
        1 => (select(&["ISBN-13: ", "isbn ", "ISBN:", "ISBN-10 "][..]), valid_isbn13())
            .prop_map(|(label, i)| format!("{label}{i}")),
        1 => "[0-9Xx -]{0,17}",
        1 => "B0[0-9A-Z]{8}",
    ]
    .boxed()
}

/// Applies byte-level edits to a real provider body, so parsers see almost-valid JSON.
fn mutated(fixtures: &'static [&'static str]) -> BoxedStrategy<String> {
    let edit = (any::<Index>(), 0u8..4, "[\\[\\]{}\",:0-9a-z ]{0,3}");
    (select(fixtures), prop::collection::vec(edit, 1..4))
        .prop_map(|(fixture, edits)| {
            let mut bytes = fixture.as_bytes().to_vec();
            for (at, kind, text) in edits {
                let at = pick(&at, bytes.len() + 1);
                match kind {
                    0 => bytes.truncate(at),
                    1 => {
                        let end = (at + text.len() + 1).min(bytes.len());
                        bytes.drain(at..end);
                    }
                    2 => {
                        bytes.splice(at..at, text.bytes());
                    }
                    _ => {
                        if let (Some(b), Some(new)) = (bytes.get_mut(at), text.bytes().next()) {
                            *b = new;
                        }
                    }
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .boxed()
}

/// JSON number spellings that stress integer and float handling.
const NUMBER_TEXTS: &[&str] = &[
    "0",
    "1",
    "-1",
    "-0",
    "1.0",
    "1.5",
    "-0.5",
    "1e3",
    "1E2",
    "1e400",
    "-1e400",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "100000",
    "100001",
    "0.0000001",
];

fn number_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => select(NUMBER_TEXTS).prop_map(str::to_string),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|n| Value::from(n).to_string()),
    ]
    .boxed()
}

/// `depth` nested arrays or objects, deeper than some parsers' limits.
fn nested_text(depth: usize, objects: bool) -> String {
    if objects {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    } else {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }
}

fn deep_value_text() -> BoxedStrategy<String> {
    (
        prop_oneof![1usize..40, 100usize..140, 250usize..600],
        any::<bool>(),
    )
        .prop_map(|(depth, objects)| nested_text(depth, objects))
        .boxed()
}

fn json_string(text: &str) -> String {
    Value::from(text).to_string()
}

/// An object written out by hand, so keys can repeat and numbers keep their spelling.
fn object_text(entries: &[(String, String)]) -> String {
    let fields: Vec<String> = entries
        .iter()
        .map(|(key, value)| format!("{}:{value}", json_string(key)))
        .collect();
    format!("{{{}}}", fields.join(","))
}

fn through_json<T: Serialize + DeserializeOwned>(value: &T) -> Result<T, TestCaseError> {
    let text = serde_json::to_string(value).map_err(|e| fail(format!("serialize: {e}")))?;
    serde_json::from_str(&text).map_err(|e| fail(format!("deserialize: {e}")))
}

/// An HTTP answer from a body parser: errors must be the client's fault, never a 5xx.
fn client_result<T>(what: &str, result: Result<T, ApiError>) -> Result<Option<T>, TestCaseError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) => {
            prop_assert!(
                (400..500).contains(&e.status()),
                "{what}: status {} for {e}",
                e.status()
            );
            prop_assert!(!e.message.is_empty(), "{what}: empty error message");
            Ok(None)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. WebSocket client messages

#[derive(Debug, Clone)]
enum WsInput {
    Text(String),
    /// Generated text and the outcome the protocol documents for it.
    Message {
        text: String,
        expected: Result<ClientMessage, Violation>,
    },
    Binary(usize),
}

const WS_TYPES: &[&str] = &[
    "ready", "cancel", "ping", "pong", "READY", "Ready", " ready", "ready ", "ready\0", "dance", "",
];

const JSON_WHITESPACE: &[&str] = &["", " ", "\n", "\r\n\t ", "   "];

fn expected_client_outcome(value: &Value, len: usize) -> Result<ClientMessage, Violation> {
    if len > MAX_CLIENT_MESSAGE_BYTES {
        return Err(Violation::TooBig { bytes: len });
    }
    let Some(object) = value.as_object() else {
        return Err(Violation::NotAnObject);
    };
    match object.get("type") {
        None => Err(Violation::MissingType),
        Some(Value::String(kind)) => match kind.as_str() {
            "ready" => Ok(ClientMessage::Ready),
            "cancel" => Ok(ClientMessage::Cancel),
            "ping" => Ok(ClientMessage::Ping),
            other => Err(Violation::UnknownType(other.chars().take(64).collect())),
        },
        Some(_) => Err(Violation::TypeNotString),
    }
}

/// Long strings around the 64 KiB limit, in characters of every UTF-8 width.
fn huge_text() -> BoxedStrategy<String> {
    (select(&["x", "é", "€", "😀"][..]), 60_000usize..70_000)
        .prop_map(|(c, bytes)| c.repeat(bytes / c.len()))
        .boxed()
}

fn ws_message() -> BoxedStrategy<WsInput> {
    let kind = prop_oneof![
        4 => select(WS_TYPES).prop_map(Value::from),
        2 => any::<String>().prop_map(Value::from),
        1 => "\\PC{60,70}".prop_map(Value::from),
        1 => huge_text().prop_map(Value::from),
        2 => junk_value(),
    ];
    let object = (
        prop::option::weighted(0.9, kind),
        prop::collection::vec((json_key(), arb_json()), 0..4),
    )
        .prop_map(|(kind, extra)| {
            let mut map: Map<String, Value> = extra.into_iter().collect();
            if let Some(kind) = kind {
                map.insert("type".into(), kind);
            }
            Value::Object(map)
        });
    let value = prop_oneof![6 => object, 1 => arb_json()];
    (
        value,
        any::<bool>(),
        select(JSON_WHITESPACE),
        select(JSON_WHITESPACE),
    )
        .prop_map(|(value, pretty, lead, trail)| {
            let body = if pretty {
                format!("{value:#}")
            } else {
                value.to_string()
            };
            let text = format!("{lead}{body}{trail}");
            let expected = expected_client_outcome(&value, text.len());
            WsInput::Message { text, expected }
        })
        .boxed()
}

/// Nesting below serde_json's limit parses; far above it is invalid JSON, not a crash.
fn ws_deep_message() -> BoxedStrategy<WsInput> {
    (
        select(WS_TYPES),
        prop_oneof![1usize..100, 200usize..2000],
        any::<bool>(),
    )
        .prop_map(|(kind, depth, objects)| {
            let text = format!(
                "{{\"type\":{},\"deep\":{}}}",
                json_string(kind),
                nested_text(depth, objects)
            );
            let expected = if depth >= 200 {
                Err(Violation::InvalidJson)
            } else {
                expected_client_outcome(&json!({ "type": kind }), text.len())
            };
            WsInput::Message { text, expected }
        })
        .boxed()
}

fn ws_input() -> impl Strategy<Value = WsInput> {
    prop_oneof![
        2 => any::<String>().prop_map(WsInput::Text),
        2 => "[\\[\\]{}\":, a-z0-9\\\\.-]{0,60}".prop_map(WsInput::Text),
        5 => ws_message(),
        1 => ws_deep_message(),
        1 => any::<usize>().prop_map(WsInput::Binary),
        1 => (MAX_CLIENT_MESSAGE_BYTES - 8..MAX_CLIENT_MESSAGE_BYTES + 8).prop_map(WsInput::Binary),
    ]
}

fn check_violation(violation: &Violation) -> Result<(), TestCaseError> {
    let want = if matches!(violation, Violation::TooBig { .. }) {
        1009
    } else {
        1002
    };
    prop_assert_eq!(violation.close_code().code(), want, "{:?}", violation);
    let reason = violation.reason();
    prop_assert!(!reason.is_empty(), "{:?}: empty reason", violation);
    prop_assert!(
        reason.len() <= MAX_CLOSE_REASON_BYTES,
        "{:?}: reason of {} bytes",
        violation,
        reason.len()
    );
    // Valid UTF-8 is the `String` type's promise; what could break it is the cut at 123
    // bytes, which would panic on a char boundary, and that is what running it here checks.
    Ok(())
}

fn check_client_outcome(
    text: &str,
    outcome: &Result<ClientMessage, Violation>,
) -> Result<(), TestCaseError> {
    match outcome {
        Ok(message) => {
            // Accepted means: small enough, a JSON object, and its type is the message's name.
            prop_assert!(text.len() <= MAX_CLIENT_MESSAGE_BYTES);
            let value: Value = serde_json::from_str(text)
                .map_err(|e| fail(format!("accepted text is not JSON: {e}")))?;
            let name = match message {
                ClientMessage::Ready => "ready",
                ClientMessage::Cancel => "cancel",
                ClientMessage::Ping => "ping",
            };
            prop_assert_eq!(value.get("type").and_then(Value::as_str), Some(name));
            Ok(())
        }
        Err(violation) => {
            if let Violation::TooBig { bytes } = violation {
                prop_assert_eq!(*bytes, text.len());
            }
            check_violation(violation)
        }
    }
}

fn check_ws(input: WsInput) -> Result<(), TestCaseError> {
    match input {
        WsInput::Text(text) => {
            let cut = protocol::close_reason(&text);
            prop_assert!(cut.len() <= MAX_CLOSE_REASON_BYTES && text.starts_with(cut));
            // A cut loses at most the three bytes of a split character.
            prop_assert!(cut.len() >= text.len().min(MAX_CLOSE_REASON_BYTES - 3));
            check_client_outcome(&text, &protocol::parse_client_text(&text))
        }
        WsInput::Message { text, expected } => {
            let outcome = protocol::parse_client_text(&text);
            prop_assert_eq!(&outcome, &expected);
            check_client_outcome(&text, &outcome)
        }
        WsInput::Binary(len) => {
            let violation = protocol::classify_client_binary(len);
            let want = if len > MAX_CLIENT_MESSAGE_BYTES {
                Violation::TooBig { bytes: len }
            } else {
                Violation::Binary
            };
            prop_assert_eq!(&violation, &want);
            check_violation(&violation)
        }
    }
}

#[test]
fn fuzz_ws_client_messages() {
    run_target("ws_client_messages", ws_input(), check_ws);
}

// ---------------------------------------------------------------------------------------------
// 2. CSV reader

const COLUMN_NAMES: &[&str] = &[
    "Title",
    "Author",
    "ISBN",
    "ISBN13",
    "My Rating",
    "Exclusive Shelf",
    "Date Read",
    "Authors",
    "ISBN/UID",
    "Read Status",
    "Star Rating",
    "Primary Author",
    "ISBNs",
    "Last Date Read",
    "Dates Read",
    "Collections",
    "Book Id",
    "Average Rating",
    "Notes",
    "",
];

const TITLE_SPELLINGS: &[&str] = &["Title", "title", " TITLE ", "Book Title", "book_title"];
const LINE_BREAKS: &[&str] = &["\n", "\r\n", "\r"];
const BLANK_LINES: &[&str] = &["\n", "\r\n", "  \n", ",,\r\n"];
const RATINGS: &[&str] = &[
    "0", "1", "3", "5", "4.5", "-1", "6", "five", "", "NaN", "inf",
];
const DATES: &[&str] = &[
    "2023/08/15",
    "2023-08-15",
    "2023/02/30",
    "2023/13/01",
    "15/08/2023",
    "2021/01/01-2021/02/03",
    "2020-01-05, 2021-03-04",
    "",
];
const TRICKY_CELL_PARTS: &[&str] = &[
    ",",
    "\"",
    "\"\"",
    "\r",
    "\n",
    "\r\n",
    "a,b",
    "x\"y",
    "  ",
    "\u{feff}",
    "(Series, #1)",
    "=\"",
    "é",
];

fn csv_cell() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        4 => "[A-Za-z][A-Za-z ]{0,12}".prop_map(String::into_bytes),
        1 => "\\PC{0,10}".prop_map(String::into_bytes),
        2 => isbn_text().prop_map(String::into_bytes),
        1 => isbn_text().prop_map(|i| format!("=\"{i}\"").into_bytes()),
        1 => select(RATINGS).prop_map(|s| s.as_bytes().to_vec()),
        1 => select(DATES).prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(select(TRICKY_CELL_PARTS), 1..4)
            .prop_map(|parts| parts.concat().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..6),
        1 => "[A-Za-z ]{1,10} \\((Dune|The Saga), #[0-9]\\)".prop_map(String::into_bytes),
    ]
    .boxed()
}

/// How a cell is written: quoted only when needed (0), always quoted (1), or raw even when
/// that breaks the record (2).
fn write_cell(cell: &[u8], style: u8, out: &mut Vec<u8>) {
    let special = cell
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
    if style == 2 || (style == 0 && !special) {
        out.extend_from_slice(cell);
        return;
    }
    out.push(b'"');
    for &b in cell {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

fn header_name(name: &str, style: u8) -> String {
    match style {
        0 => name.to_string(),
        1 => name.to_uppercase(),
        2 => name.to_lowercase(),
        3 => format!("  {name} "),
        4 => format!("\"{name}\""),
        _ => name.replace(' ', "_"),
    }
}

type CsvRow = (Vec<(Vec<u8>, u8)>, &'static str);

fn csv_row() -> BoxedStrategy<CsvRow> {
    (
        prop::collection::vec(
            (
                csv_cell(),
                prop_oneof![6 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
            ),
            0..10,
        ),
        select(LINE_BREAKS),
    )
        .boxed()
}

/// A file shaped like an export: header from the real column names, rows of realistic and
/// hostile cells.
fn shaped_csv() -> BoxedStrategy<Vec<u8>> {
    let header = (
        prop::collection::vec((select(COLUMN_NAMES), 0u8..6), 0..8),
        prop::option::weighted(0.85, (any::<Index>(), select(TITLE_SPELLINGS))),
        select(LINE_BREAKS),
    );
    (
        any::<bool>(),
        prop::collection::vec(select(BLANK_LINES), 0..2),
        header,
        (
            prop::collection::vec(csv_row(), 0..10),
            prop::collection::vec((any::<Index>(), any::<Index>()), 0..3),
        ),
        any::<bool>(),
    )
        .prop_map(|(bom, blanks, header, (mut rows, repeats), final_break)| {
            // Exports repeat books; the copies exercise the deduper across slices.
            for (from, to) in repeats {
                if let Some(row) = rows.get(pick(&from, rows.len())).cloned() {
                    rows.insert(pick(&to, rows.len() + 1), row);
                }
            }
            let (columns, title, header_break) = header;
            let mut names: Vec<String> = columns
                .iter()
                .map(|(name, style)| header_name(name, *style))
                .collect();
            if let Some((at, spelling)) = title {
                names.insert(pick(&at, names.len() + 1), spelling.to_string());
            }
            let mut file = Vec::new();
            if bom {
                file.extend_from_slice(b"\xEF\xBB\xBF");
            }
            for blank in blanks {
                file.extend_from_slice(blank.as_bytes());
            }
            file.extend_from_slice(names.join(",").as_bytes());
            file.extend_from_slice(header_break.as_bytes());
            let row_count = rows.len();
            for (i, (cells, line_break)) in rows.into_iter().enumerate() {
                for (j, (cell, style)) in cells.iter().enumerate() {
                    if j > 0 {
                        file.push(b',');
                    }
                    write_cell(cell, *style, &mut file);
                }
                if final_break || i + 1 < row_count {
                    file.extend_from_slice(line_break.as_bytes());
                }
            }
            file
        })
        .boxed()
}

/// Bytes biased towards the ones the CSV reader treats specially.
fn csv_bytes() -> BoxedStrategy<Vec<u8>> {
    let byte = prop_oneof![
        4 => select(b"ab,\"\r\n =#()[]0123456789X/-".to_vec()),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..400).boxed()
}

#[derive(Debug, Clone)]
struct CsvCase {
    file: Bytes,
    /// How many more bytes have arrived before each call, cycled.
    sizes: Vec<usize>,
    /// The record limit of each call, cycled.
    limits: Vec<usize>,
    /// Whether the job is evicted after each call and resumes from its persisted state, cycled.
    evictions: Vec<bool>,
    /// How much of the file has arrived when the header is first read.
    prefix: Index,
}

fn csv_case() -> impl Strategy<Value = CsvCase> {
    (
        prop_oneof![1 => csv_bytes(), 1 => prop::collection::vec(any::<u8>(), 0..200), 5 => shaped_csv()],
        prop_oneof![
            3 => prop::collection::vec(1usize..=64, 1..6),
            1 => prop::collection::vec(1usize..=4096, 1..3),
        ],
        prop_oneof![
            3 => prop::collection::vec(1usize..=5, 1..4),
            1 => Just(vec![usize::MAX]),
        ],
        prop::collection::vec(prop::bool::weighted(0.3), 1..5),
        any::<Index>(),
    )
        .prop_map(|(file, sizes, limits, evictions, prefix)| CsvCase {
            file: Bytes(file),
            sizes,
            limits,
            evictions,
            prefix,
        })
}

#[derive(Debug, Clone, PartialEq, Default)]
struct Import {
    books: Vec<Book>,
    errors: Vec<RowError>,
    warnings: Vec<RowWarning>,
    totals: ImportTotals,
}

fn import_whole(header: &Header, file: &[u8], start: Cursor) -> Result<Import, TestCaseError> {
    let rest = file
        .get(start.offset as usize..)
        .ok_or_else(|| fail("header cursor is past the end of the file"))?;
    let mut import = Import::default();
    let out = parse_slice(
        header,
        rest,
        start,
        true,
        usize::MAX,
        &mut import.totals,
        &mut Deduper::default(),
    );
    prop_assert!(
        out.done,
        "one unlimited pass over the whole file is not done"
    );
    prop_assert_eq!(out.cursor.offset, file.len() as u64);
    prop_assert!(
        out.patches.is_empty(),
        "one pass merges in place: {:?}",
        out.patches
    );
    import.books = out.books;
    import.errors = out.errors;
    import.warnings = out.warnings;
    Ok(import)
}

/// Drives `parse_slice` like the glue: the file arrives in pieces, each call restarts at the
/// persisted cursor, books and patches are stored as they come, and after an eviction the
/// deduper is rebuilt from the stored books and patches. The results reader applies the
/// patches at the end.
fn import_sliced(
    header: &Header,
    file: &[u8],
    start: Cursor,
    case: &CsvCase,
) -> Result<Import, TestCaseError> {
    import_sliced_with(
        header,
        file,
        start,
        &case.sizes,
        &case.limits,
        &case.evictions,
    )
}

/// [`import_sliced`] with the deliveries, record limits and evictions given, each cycled.
fn import_sliced_with(
    header: &Header,
    file: &[u8],
    start: Cursor,
    sizes: &[usize],
    limits: &[usize],
    evictions: &[bool],
) -> Result<Import, TestCaseError> {
    let mut import = Import::default();
    let mut patches: Vec<BookPatch> = Vec::new();
    let mut header = header.clone();
    let mut deduper = Deduper::default();
    let mut cursor = start;
    let mut received = start.offset as usize;
    // Each call either takes in more of the file or consumes a record.
    let max_calls = 2 * file.len() + 10;
    for call in 0.. {
        prop_assert!(call <= max_calls, "no progress after {call} calls");
        received = received
            .saturating_add(sizes[call % sizes.len()])
            .min(file.len());
        let eof = received == file.len();
        let input = file.get(cursor.offset as usize..received).ok_or_else(|| {
            fail(format!(
                "cursor {cursor:?} is past the {received} bytes received"
            ))
        })?;
        let out = parse_slice(
            &header,
            input,
            cursor,
            eof,
            limits[call % limits.len()],
            &mut import.totals,
            &mut deduper,
        );
        prop_assert!(out.cursor.offset >= cursor.offset, "cursor went backwards");
        prop_assert_eq!(deduper.len() as u64, import.totals.books);
        for patch in &out.patches {
            prop_assert!(
                patch.book.0 < import.books.len() as u64,
                "a patch names a book not stored before: {:?}",
                patch
            );
        }
        import.books.extend(out.books);
        import.errors.extend(out.errors);
        import.warnings.extend(out.warnings);
        patches.extend(out.patches);
        cursor = out.cursor;
        if out.done {
            break;
        }
        if evictions[call % evictions.len()] {
            header = through_json(&header)?;
            cursor = through_json(&cursor)?;
            import.totals = through_json(&import.totals)?;
            patches = through_json(&patches)?;
            deduper = Deduper::default();
            for book in &import.books {
                deduper.remember(book);
            }
            for patch in &patches {
                deduper.remember_patch(patch);
            }
        }
    }
    apply_patches(&mut import.books, BookRef(0), &patches);
    Ok(import)
}

/// What the `Book`, `RowError` and `RowWarning` docs promise about each row; `first_line` is
/// the line of the first data record (2 after a one-line header, 1 without one).
fn check_import_rows(import: &Import, first_line: u64) -> Result<(), TestCaseError> {
    for book in &import.books {
        prop_assert!(!book.title.is_empty(), "book without a title: {:?}", book);
        if let Some(isbn) = &book.isbn {
            prop_assert!(is_valid_isbn13(isbn), "invalid isbn in {:?}", book);
            prop_assert!(book.identifier.is_none(), "isbn and identifier: {:?}", book);
            prop_assert_eq!(&book.isbn10, &isbn13_to_10(isbn));
        } else {
            prop_assert!(book.isbn10.is_none(), "isbn10 without isbn: {:?}", book);
        }
        if let Some(rating) = book.rating {
            prop_assert!(rating > 0.0 && rating <= 5.0, "rating in {:?}", book);
        }
        if let Some(date) = &book.date_read {
            let shape = date.len() == 10
                && date.bytes().enumerate().all(|(i, b)| {
                    if i == 4 || i == 7 {
                        b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                });
            prop_assert!(shape, "date_read in {:?}", book);
        }
    }
    for error in &import.errors {
        prop_assert!(
            error.line >= first_line && !error.error.is_empty(),
            "{:?}",
            error
        );
    }
    for warning in &import.warnings {
        prop_assert!(warning.line >= first_line, "{:?}", warning);
        prop_assert!(
            ["record", "isbn", "rating", "dateRead"].contains(&warning.field.as_str()),
            "{:?}",
            warning
        );
    }
    Ok(())
}

fn check_csv(case: CsvCase) -> Result<(), TestCaseError> {
    let file = case.file.0.as_slice();
    let arrived = file
        .get(..pick(&case.prefix, file.len() + 1))
        .unwrap_or_default();
    let early = read_header(arrived, false);
    let Ok((header, start)) = read_header(file, true) else {
        prop_assert!(
            early.is_err(),
            "the header reads from a prefix but not from the whole file"
        );
        return Ok(());
    };
    if let Ok((early_header, _)) = early {
        // The encoding is decided from the bytes the header was read from; the rest of the
        // header cannot depend on how much of the file had arrived.
        let early_header = Header {
            encoding: header.encoding,
            ..early_header
        };
        prop_assert_eq!(&early_header, &header);
    }
    let whole = import_whole(&header, file, start)?;
    let totals = whole.totals;
    prop_assert_eq!(
        totals.data_records,
        totals.books + totals.errors + totals.duplicates
    );
    prop_assert_eq!(totals.books, whole.books.len() as u64);
    prop_assert_eq!(totals.errors, whole.errors.len() as u64);
    let rest = file.get(start.offset as usize..).unwrap_or_default();
    prop_assert_eq!(
        count_data_records(&header, rest, start),
        totals.data_records
    );
    check_import_rows(&whole, start.line)?;
    let sliced = import_sliced(&header, file, start, &case)?;
    prop_assert_eq!(sliced, whole);
    Ok(())
}

#[test]
fn fuzz_csv_reader() {
    run_target("csv_reader", csv_case(), check_csv);
}

// ---------------------------------------------------------------------------------------------
// 2b. CSV dialects and repairs
//
// Exports written in every recognised layout, each delimiter and both encodings, then damaged
// the way spreadsheets damage them (records wrapped whole in one cell, cells padded around
// their quotes, the header row lost, ISBNs turned into numbers). The oracle is the generated
// library itself: the import must find exactly those books, with a warning per repair.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    Goodreads,
    StoryGraph,
    LibraryThing,
    BookBuddy,
    Calibre,
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Damage {
    None,
    Wrapped,
    Padded,
    Headerless,
    Numbers,
}

/// A book as the generator means it.
#[derive(Debug, Clone)]
struct LibraryBook {
    title: String,
    author: String,
    isbn10: Option<String>,
    /// In quarter stars, 0 (unrated) to 20.
    quarters: u8,
    date: Option<(u32, u32, u32)>,
    shelf: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct DialectCase {
    layout: Layout,
    delimiter: u8,
    windows_1252: bool,
    bom: bool,
    crlf: bool,
    damage: Damage,
    books: Vec<LibraryBook>,
    chunk: usize,
    max_records: usize,
}

const BOOKBUDDY_LAYOUT: &[&str] = &[
    "Title",
    "Subtitle",
    "Series",
    "Author",
    "Author (Last, First)",
    "Publisher",
    "Status",
    "Rating",
    "Google VolumeID",
    "ISBN",
    "Date Added",
    "Date Finished",
    "Notes",
];
const CALIBRE_LAYOUT: &[&str] = &[
    "author_sort",
    "authors",
    "comments",
    "id",
    "identifiers",
    "isbn",
    "pubdate",
    "rating",
    "tags",
    "title",
    "title_sort",
    "uuid",
];
const SHELVES: &[&str] = &["read", "to-read", "currently-reading"];

impl Layout {
    fn names(self) -> &'static [&'static str] {
        use bookstrack_jobs::pipelines::csv::layouts;
        match self {
            Self::Goodreads => layouts::GOODREADS,
            Self::StoryGraph => layouts::STORYGRAPH,
            Self::LibraryThing => layouts::LIBRARYTHING,
            Self::BookBuddy => BOOKBUDDY_LAYOUT,
            Self::Calibre => CALIBRE_LAYOUT,
            Self::Plain => layouts::PLAIN,
        }
    }

    fn format(self) -> Format {
        match self {
            Self::Goodreads => Format::Goodreads,
            Self::StoryGraph => Format::StoryGraph,
            Self::LibraryThing => Format::LibraryThing,
            Self::BookBuddy => Format::BookBuddy,
            Self::Calibre => Format::Calibre,
            Self::Plain => Format::Plain,
        }
    }

    /// The hint a header-less file in this layout needs, if it can be read at all.
    fn headerless_hint(self) -> Option<FormatHint> {
        match self {
            Self::Goodreads => Some(FormatHint::Auto),
            Self::StoryGraph => Some(FormatHint::StoryGraph),
            Self::LibraryThing => Some(FormatHint::LibraryThing),
            Self::Plain => Some(FormatHint::Plain),
            Self::BookBuddy | Self::Calibre => None,
        }
    }

    /// The rating as this export writes it: Goodreads whole stars, StoryGraph quarters, the
    /// others halves. Returns the text and the value an import must read.
    fn rating(self, quarters: u8) -> (String, Option<f64>) {
        let value = match self {
            Self::Goodreads => f64::from(quarters / 4),
            Self::StoryGraph => f64::from(quarters) / 4.0,
            _ => f64::from(quarters / 2) / 2.0,
        };
        match (self, value > 0.0) {
            (Self::StoryGraph | Self::Calibre | Self::Plain, false) => (String::new(), None),
            (_, false) => ("0".into(), None),
            (_, true) => (value.to_string(), Some(value)),
        }
    }

    /// The record's cells and the book an import must find in them.
    fn record(self, index: usize, book: &LibraryBook, numbers: bool) -> (Vec<String>, Book) {
        let names = self.names();
        let mut cells = vec![String::new(); names.len()];
        let mut set = |name: &str, value: String| {
            if let Some(i) = names.iter().position(|n| *n == name) {
                cells[i] = value;
            }
        };
        let isbn13 = book
            .isbn10
            .as_ref()
            .map(|i| isbn13_from_stem(&format!("978{}", &i[..9])));
        let (rating_text, rating) = self.rating(book.quarters);
        let date = |sep: char| {
            book.date
                .map(|(y, m, d)| format!("{y:04}{sep}{m:02}{sep}{d:02}"))
                .unwrap_or_default()
        };
        let mut expected = Book {
            title: book.title.clone(),
            author: book.author.clone(),
            isbn: isbn13.clone(),
            isbn10: book.isbn10.clone(),
            identifier: None,
            shelf: book.shelf.map(Into::into),
            rating,
            date_read: book.date.map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}")),
            series: None,
            series_number: None,
        };
        match self {
            Self::Goodreads => {
                set("Book Id", (100_000 + index).to_string());
                set("Title", book.title.clone());
                set("Author", book.author.clone());
                let (isbn, isbn13_cell) = match (&book.isbn10, &isbn13) {
                    (Some(i10), Some(i13)) if numbers => {
                        // A spreadsheet's numbers: leading zeros gone, the 13 in E notation;
                        // an ISBN ending in X stays text.
                        let ten = if i10.ends_with('X') {
                            i10.clone()
                        } else {
                            i10.trim_start_matches('0').to_string()
                        };
                        (ten, format!("{}.{}E+12", &i13[..1], &i13[1..6]))
                    }
                    (Some(i10), Some(i13)) => (format!("=\"{i10}\""), format!("=\"{i13}\"")),
                    _ if numbers => (String::new(), String::new()),
                    _ => ("=\"\"".into(), "=\"\"".into()),
                };
                set("ISBN", isbn);
                set("ISBN13", isbn13_cell);
                set("My Rating", rating_text);
                set("Date Read", date('/'));
                set("Exclusive Shelf", book.shelf.unwrap_or("").into());
            }
            Self::StoryGraph => {
                set("Title", book.title.clone());
                set("Authors", book.author.clone());
                set("ISBN/UID", isbn13.clone().unwrap_or_default());
                set("Read Status", book.shelf.unwrap_or("").into());
                set("Last Date Read", date('/'));
                set("Star Rating", rating_text);
            }
            Self::LibraryThing => {
                set("Book Id", (300_000 + index).to_string());
                set("Title", book.title.clone());
                set("Primary Author", book.author.clone());
                set("Rating", rating_text);
                set("Date Read", date('-'));
                set("Collections", book.shelf.unwrap_or("").into());
                if let (Some(i10), Some(i13)) = (&book.isbn10, &isbn13) {
                    set("ISBN", format!("[{i10}]"));
                    set("ISBNs", format!("{i10}, {i13}"));
                }
            }
            Self::BookBuddy => {
                set("Title", book.title.clone());
                set("Author", book.author.clone());
                set("Status", book.shelf.unwrap_or("").into());
                set("Rating", rating_text);
                set("Google VolumeID", format!("vol{index}"));
                set("ISBN", isbn13.clone().unwrap_or_default());
                set("Date Finished", date('/'));
            }
            Self::Calibre => {
                set("author_sort", book.author.clone());
                set("authors", book.author.clone());
                set("id", index.to_string());
                if let Some(i13) = &isbn13 {
                    set("identifiers", format!("goodreads:{index},isbn:{i13}"));
                    set("isbn", i13.clone());
                }
                set("rating", rating_text);
                set("title", book.title.clone());
                set("uuid", format!("uuid-{index}"));
                expected.shelf = None;
                expected.date_read = None;
            }
            Self::Plain => {
                set("Title", book.title.clone());
                set("Author", book.author.clone());
                set("ISBN", book.isbn10.clone().unwrap_or_default());
                expected.shelf = None;
                expected.rating = None;
                expected.date_read = None;
            }
        }
        (cells, expected)
    }
}

/// A cell as a careful writer quotes it (calibre quotes everything).
fn write_dialect_cell(cell: &str, delimiter: u8, always: bool) -> String {
    let special = cell
        .bytes()
        .any(|b| b == delimiter || matches!(b, b'"' | b'\r' | b'\n'));
    if always || special {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell.to_string()
    }
}

fn dialect_text() -> BoxedStrategy<String> {
    "[A-Za-z\u{e9}\u{fc}\u{d8}\u{df}\u{c5} ,\"';]{0,14}".boxed()
}

fn library_book() -> BoxedStrategy<LibraryBook> {
    (
        dialect_text(),
        "[A-Z][a-z\u{e9}]{2,8}( [A-Z][a-z]{2,8}){0,2}",
        prop::option::weighted(0.8, 1_000_000u32..999_999_999),
        0u8..=20,
        prop::option::of((2000u32..=2024, 1u32..=12, 1u32..=28)),
        prop::option::of(select(SHELVES)),
        any::<bool>(),
    )
        .prop_map(|(title, author, stem, quarters, date, shelf, multiline)| {
            let title = if multiline {
                format!("{title}\nline two")
            } else {
                title
            };
            LibraryBook {
                title,
                author,
                isbn10: stem.map(|n| isbn10_from_stem(&format!("{n:09}"))),
                quarters,
                date,
                shelf,
            }
        })
        .boxed()
}

fn dialect_case() -> impl Strategy<Value = DialectCase> {
    (
        select(vec![
            Layout::Goodreads,
            Layout::StoryGraph,
            Layout::LibraryThing,
            Layout::BookBuddy,
            Layout::Calibre,
            Layout::Plain,
        ]),
        select(b",\t;".to_vec()),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        select(vec![
            Damage::None,
            Damage::Wrapped,
            Damage::Padded,
            Damage::Headerless,
            Damage::Numbers,
        ]),
        prop::collection::vec(library_book(), 1..8),
        (1usize..=64, 1usize..=3),
    )
        .prop_map(
            |(layout, delimiter, (windows_1252, bom, crlf), damage, books, (chunk, max))| {
                // Each damage where it can happen: numbers in Goodreads' ISBN columns, a lost
                // header where a layout can be read without one.
                let damage = match damage {
                    Damage::Numbers if layout != Layout::Goodreads => Damage::None,
                    Damage::Headerless if layout.headerless_hint().is_none() => Damage::None,
                    other => other,
                };
                // LibraryThing's header-less layout is its tab-separated one.
                let delimiter = if damage == Damage::Headerless && layout == Layout::LibraryThing {
                    b'\t'
                } else {
                    delimiter
                };
                // A cell padded around its quotes cannot hold a line break (docs/IMPORT.md).
                let books = books
                    .into_iter()
                    .enumerate()
                    .map(|(i, mut book)| {
                        if damage == Damage::Padded {
                            book.title = book.title.replace("\nline two", "");
                        }
                        // Without a header, the delimiter is read off the first record, whose
                        // values must not hold more of another separator (docs/IMPORT.md).
                        if damage == Damage::Headerless {
                            book.title = book
                                .title
                                .chars()
                                .map(|c| match c {
                                    ',' | ';' | '\t' if c as u32 != u32::from(delimiter) => ' ',
                                    c => c,
                                })
                                .collect();
                        }
                        // Unique titles and ISBNs: the import must find every book.
                        book.title = format!("B{i} {}", book.title.trim()).trim().to_string();
                        book.isbn10 = book
                            .isbn10
                            .map(|_| isbn10_from_stem(&format!("{:09}", 1_000_000 + i * 104_729)));
                        book
                    })
                    .collect();
                DialectCase {
                    layout,
                    delimiter,
                    windows_1252,
                    // A Windows-1252 file has no BOM; calibre always writes one.
                    bom: !windows_1252 && (bom || layout == Layout::Calibre),
                    crlf,
                    damage,
                    books,
                    chunk,
                    max_records: max,
                }
            },
        )
}

/// The file a case describes, the books it holds and the warnings their repairs give.
fn dialect_file(case: &DialectCase) -> (Vec<u8>, Vec<Book>, Vec<(u64, &'static str)>) {
    let delimiter = case.delimiter;
    let always = case.layout == Layout::Calibre;
    let mut records: Vec<Vec<String>> = Vec::new();
    let mut expected = Vec::new();
    records.push(
        case.layout
            .names()
            .iter()
            .map(|n| write_dialect_cell(n, delimiter, false))
            .collect(),
    );
    for (i, book) in case.books.iter().enumerate() {
        let (cells, want) = case.layout.record(i, book, case.damage == Damage::Numbers);
        records.push(
            cells
                .iter()
                .map(|c| write_dialect_cell(c, delimiter, always))
                .collect(),
        );
        expected.push(want);
    }
    let separator = (delimiter as char).to_string();
    let mut lines: Vec<String> = match case.damage {
        Damage::Padded => {
            let columns = records[0].len();
            let widths: Vec<usize> = (0..columns)
                .map(|c| {
                    records
                        .iter()
                        .map(|r| r[c].chars().count())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let joiner = format!("{separator} ");
            records
                .iter()
                .map(|r| {
                    let padded: Vec<String> = r
                        .iter()
                        .zip(&widths)
                        .map(|(cell, width)| format!("{cell:<width$}"))
                        .collect();
                    padded.join(&joiner).trim_end().to_string()
                })
                .collect()
        }
        _ => records.iter().map(|r| r.join(&separator)).collect(),
    };
    if case.damage == Damage::Wrapped {
        for line in lines.iter_mut().skip(1) {
            *line = format!("\"{}\";", line.replace('"', "\"\""));
        }
    }
    if case.damage == Damage::Headerless {
        lines.remove(0);
    }
    let newline = if case.crlf { "\r\n" } else { "\n" };
    let text = lines.join(newline) + newline;
    let mut file = Vec::new();
    if case.bom {
        file.extend_from_slice(b"\xEF\xBB\xBF");
    }
    if case.windows_1252 {
        // Every generated character is Latin-1, which Windows-1252 writes as its code point.
        file.extend(
            text.chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')),
        );
    } else {
        file.extend_from_slice(text.as_bytes());
    }
    // Where each book's record starts, for the warnings a repair gives.
    let mut warnings = Vec::new();
    let mut line = if case.damage == Damage::Headerless {
        1
    } else {
        2
    };
    for (book, record) in case
        .books
        .iter()
        .zip(&lines[lines.len() - case.books.len()..])
    {
        if case.damage == Damage::Wrapped {
            warnings.push((line, "record"));
        }
        let zero_lost = book
            .isbn10
            .as_ref()
            .is_some_and(|i| i.starts_with('0') && !i.ends_with('X'));
        if case.damage == Damage::Numbers && zero_lost {
            warnings.push((line, "isbn"));
        }
        line += 1 + record.matches('\n').count() as u64;
    }
    (file, expected, warnings)
}

fn check_dialect(case: DialectCase) -> Result<(), TestCaseError> {
    let (file, expected, warnings) = dialect_file(&case);
    let hint = match case.damage {
        Damage::Headerless => case.layout.headerless_hint().unwrap_or_default(),
        _ => FormatHint::Auto,
    };
    let (header, start) = read_header_with(&file, true, hint).map_err(|e| {
        fail(format!(
            "header refused: {e}; file {:?}",
            Bytes(file.clone())
        ))
    })?;
    prop_assert_eq!(header.format, case.layout.format());
    let delimiter = match case.delimiter {
        b'\t' => Delimiter::Tab,
        b';' => Delimiter::Semicolon,
        _ => Delimiter::Comma,
    };
    prop_assert_eq!(header.delimiter, delimiter);
    prop_assert_eq!(header.headerless, case.damage == Damage::Headerless);
    prop_assert_eq!(header.padded, case.damage == Damage::Padded);
    if case.windows_1252 && !file.is_ascii() {
        prop_assert_eq!(header.encoding, Encoding::Windows1252);
    }
    let whole = import_whole(&header, &file, start)?;
    prop_assert_eq!(&whole.errors, &Vec::<RowError>::new());
    prop_assert_eq!(&whole.books, &expected);
    // The total announced at start, counted without parsing, in every dialect.
    let rest = file.get(start.offset as usize..).unwrap_or_default();
    prop_assert_eq!(
        count_data_records(&header, rest, start),
        whole.totals.data_records
    );
    let got: Vec<(u64, &str)> = whole
        .warnings
        .iter()
        .map(|w| (w.line, w.field.as_str()))
        .collect();
    prop_assert_eq!(got, warnings);
    let sliced = import_sliced_with(
        &header,
        &file,
        start,
        &[case.chunk],
        &[case.max_records],
        &[false, true],
    )?;
    prop_assert_eq!(sliced, whole);
    Ok(())
}

#[test]
fn fuzz_csv_dialects() {
    run_target("csv_dialects", dialect_case(), check_dialect);
}

/// Format detection on arbitrary first lines, with every hint: never a panic, and a header-less
/// reading only where the docs allow one.
fn check_format_detection((bytes, hint): (Vec<u8>, FormatHint)) -> Result<(), TestCaseError> {
    let auto = read_header(&bytes, true);
    match read_header_with(&bytes, true, hint) {
        Ok((header, cursor)) => {
            prop_assert_eq!(header.names.len(), header.column_count);
            if header.headerless {
                prop_assert!(
                    hint != FormatHint::Auto || header.format == Format::Goodreads,
                    "auto reads only Goodreads without a header"
                );
                prop_assert!(cursor.line >= 1);
            } else {
                // A header row speaks for itself, whatever the hint.
                let (auto_header, auto_cursor) =
                    auto.map_err(|e| fail(format!("auto refused a header row: {e}")))?;
                prop_assert_eq!(auto_header, header);
                prop_assert_eq!(auto_cursor, cursor);
            }
        }
        Err(_) => prop_assert!(auto.is_err(), "a hint refused what auto read"),
    }
    Ok(())
}

#[test]
fn fuzz_csv_format_detection() {
    let hints = vec![
        FormatHint::Auto,
        FormatHint::Goodreads,
        FormatHint::StoryGraph,
        FormatHint::LibraryThing,
        FormatHint::Plain,
    ];
    let first_line = prop_oneof![
        2 => csv_bytes().boxed(),
        2 => shaped_csv(),
        1 => prop::collection::vec(csv_cell(), 20..32).prop_map(|cells| {
            let mut line = b"1".to_vec();
            for cell in cells {
                line.push(b',');
                write_cell(&cell, 0, &mut line);
            }
            line
        }).boxed(),
    ];
    run_target(
        "csv_format_detection",
        (first_line, select(hints)),
        check_format_detection,
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Gemini responses

const GEMINI_FIXTURES: &[&str] = &[
    include_str!("fixtures/gemini/bare_array.json"),
    include_str!("fixtures/gemini/blocked_safety.json"),
    include_str!("fixtures/gemini/empty_candidates.json"),
    include_str!("fixtures/gemini/error_429.json"),
    include_str!("fixtures/gemini/error_500.json"),
    include_str!("fixtures/gemini/fenced.json"),
    include_str!("fixtures/gemini/finish_safety.json"),
    include_str!("fixtures/gemini/missing_fields.json"),
    include_str!("fixtures/gemini/out_of_range_boxes.json"),
    include_str!("fixtures/gemini/prose.json"),
    include_str!("fixtures/gemini/truncated_max_tokens.json"),
    include_str!("fixtures/gemini/wrapped_books.json"),
];

const BLOCKING_FINISH_REASONS: &[&str] = &[
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "IMAGE_SAFETY",
];
const FINISH_REASONS: &[&str] = &[
    "STOP",
    "MAX_TOKENS",
    "SAFETY",
    "RECITATION",
    "OTHER",
    "BLOCKLIST",
    "",
    "FINISH_REASON_UNSPECIFIED",
];
const BLOCK_REASONS: &[&str] = &["", "SAFETY", "OTHER", "PROHIBITED_CONTENT", "<b>x</b> y"];
const PROSE: &[&str] = &[
    "",
    "Here are the books:",
    "Sure! I found these.",
    "Note: some spines were unreadable.",
];
const BOX_KEYS: &[&str] = &["boundingBox", "bounding_box", "bbox", "box", "box_2d"];

/// A coordinate or confidence as a model might write it.
fn loose_number() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => (-0.5f64..1.5).prop_map(Value::from),
        1 => (-5.0f64..1200.0).prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        1 => (0u32..1200).prop_map(Value::from),
        1 => select(&["0.5", " 0.25 ", "NaN", "inf", "-inf", "1e400", "-1e400", "abc", ""][..])
            .prop_map(Value::from),
        1 => Just(Value::Null),
    ]
    .boxed()
}

fn confidence_value() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => loose_number(),
        1 => (-50.0f64..250.0).prop_map(|p| Value::from(format!("{p}%"))),
        1 => select(&["95%", " 87 % ", "NaN%", "1e400%", "%", "-5%"][..]).prop_map(Value::from),
        1 => junk_value(),
    ]
    .boxed()
}

fn box_value() -> BoxedStrategy<Value> {
    let coordinate = || prop::option::weighted(0.95, loose_number());
    let named = |keys: [&'static str; 4]| {
        (coordinate(), coordinate(), coordinate(), coordinate()).prop_map(move |(a, b, c, d)| {
            let mut map = Map::new();
            for (key, value) in keys.iter().zip([a, b, c, d]) {
                if let Some(value) = value {
                    map.insert((*key).into(), value);
                }
            }
            Value::Object(map)
        })
    };
    prop_oneof![
        3 => named(["x", "y", "width", "height"]),
        1 => named(["left", "top", "w", "h"]),
        2 => prop::collection::vec(loose_number(), 3..6).prop_map(Value::Array),
        1 => junk_value(),
    ]
    .boxed()
}

fn text_like() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => book_text().prop_map(Value::from),
        1 => any::<u32>().prop_map(Value::from),
        1 => prop::collection::vec(book_text(), 0..3).prop_map(|names| json!(names)),
        1 => junk_value(),
    ]
    .boxed()
}

fn isbn_like() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => isbn_text().prop_map(Value::from),
        1 => valid_isbn13().prop_map(|i| i.parse::<u64>().map_or(Value::Null, Value::from)),
        1 => "[a-z ]{60,80}".prop_map(Value::from),
        1 => junk_value(),
    ]
    .boxed()
}

fn gemini_book() -> BoxedStrategy<Value> {
    (
        prop::option::weighted(0.9, text_like()),
        prop::option::weighted(0.7, (select(&["author", "authors"][..]), text_like())),
        prop::option::weighted(
            0.5,
            (select(&["isbn", "isbn13", "isbn10"][..]), isbn_like()),
        ),
        prop::option::weighted(0.8, confidence_value()),
        prop::option::weighted(0.8, (select(BOX_KEYS), box_value())),
    )
        .prop_map(|(title, author, isbn, confidence, bbox)| {
            let mut book = Map::new();
            if let Some(title) = title {
                book.insert("title".into(), title);
            }
            for (key, value) in [author, isbn, bbox].into_iter().flatten() {
                book.insert(key.into(), value);
            }
            if let Some(confidence) = confidence {
                book.insert("confidence".into(), confidence);
            }
            Value::Object(book)
        })
        .boxed()
}

/// How the model's text holds the book list.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Wrap {
    Bare,
    Fenced,
    Prose,
    BooksObject,
    JsonString,
    SingleObject,
    Cut,
}

fn model_text(list: &[Value], wrap: Wrap, before: &str, after: &str, cut: &Index) -> String {
    let bare = Value::Array(list.to_vec()).to_string();
    match wrap {
        Wrap::Bare => bare,
        Wrap::Fenced => format!("```json\n{bare}\n```"),
        Wrap::Prose => format!("{before}\n{bare}\n{after}"),
        Wrap::BooksObject => json!({ "books": list }).to_string(),
        Wrap::JsonString => Value::from(bare).to_string(),
        Wrap::SingleObject => list.first().map_or_else(|| "{}".into(), Value::to_string),
        Wrap::Cut => {
            let mut end = pick(cut, bare.len() + 1);
            while !bare.is_char_boundary(end) {
                end -= 1;
            }
            bare[..end].to_string()
        }
    }
}

/// Candidate and content shapes: the normal one, and each way a body can break it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    Normal,
    Missing,
    Null,
    Empty,
    WrongType,
}

fn shape() -> BoxedStrategy<Shape> {
    prop_oneof![
        8 => Just(Shape::Normal),
        1 => Just(Shape::Missing),
        1 => Just(Shape::Null),
        1 => Just(Shape::Empty),
        1 => Just(Shape::WrongType),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct GeminiCase {
    body: String,
    /// How many detections a clean answer must give.
    expected_detections: Option<usize>,
    /// A clean answer listing only objects without a book field: `GeminiError::NotBooks`.
    expect_not_books: bool,
    /// The prompt or the answer was blocked.
    expect_blocked: bool,
    photo_index: u32,
}

fn gemini_generated() -> BoxedStrategy<GeminiCase> {
    let list = (
        prop::collection::vec(gemini_book(), 0..6),
        prop::option::weighted(0.15, (any::<Index>(), junk_value())),
    );
    let wrap = prop_oneof![
        3 => Just(Wrap::Bare),
        1 => Just(Wrap::Fenced),
        1 => Just(Wrap::Prose),
        1 => Just(Wrap::BooksObject),
        1 => Just(Wrap::JsonString),
        1 => Just(Wrap::SingleObject),
        1 => Just(Wrap::Cut),
    ];
    let text = (
        list,
        wrap,
        select(PROSE),
        select(PROSE),
        any::<Index>(),
        prop::collection::vec(any::<Index>(), 0..3),
        prop::option::weighted(0.2, (any::<Index>(), "[\\[{ a-z\"]{0,20}")),
    );
    let envelope = (
        prop::option::weighted(
            0.8,
            prop_oneof![4 => select(FINISH_REASONS).prop_map(Value::from), 1 => junk_value()],
        ),
        prop::option::weighted(
            0.15,
            prop_oneof![3 => select(BLOCK_REASONS).prop_map(Value::from), 1 => junk_value()],
        ),
        shape(),
        shape(),
        any::<bool>(),
        0usize..3,
    );
    (text, envelope, any::<u32>())
        .prop_map(|(text, envelope, photo_index)| {
            let ((mut books, junk), wrap, before, after, cut, splits, thought) = text;
            let (finish, block, candidates_shape, content_shape, usage, extra_candidates) =
                envelope;
            let all_objects = junk.is_none();
            if let Some((at, value)) = junk {
                books.insert(pick(&at, books.len() + 1), value);
            }
            let model = model_text(&books, wrap, before, after, &cut);

            // The text split at char boundaries, as long answers arrive in several parts.
            let mut cuts: Vec<usize> = splits
                .iter()
                .map(|i| {
                    let mut at = pick(i, model.len() + 1);
                    while !model.is_char_boundary(at) {
                        at -= 1;
                    }
                    at
                })
                .collect();
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut from = 0;
            for at in cuts.into_iter().chain([model.len()]) {
                parts.push(json!({ "text": &model[from..at] }));
                from = at;
            }
            if let Some((at, text)) = thought {
                // Thought summaries are not the answer, even when they look like one.
                parts.insert(
                    pick(&at, parts.len() + 1),
                    json!({ "text": text, "thought": true }),
                );
            }

            let content = match content_shape {
                Shape::Normal => Some(json!({ "role": "model", "parts": parts })),
                Shape::Missing => None,
                Shape::Null => Some(Value::Null),
                Shape::Empty => Some(json!({ "role": "model" })),
                Shape::WrongType => Some(json!({ "parts": "text" })),
            };
            let mut candidate = Map::new();
            if let Some(content) = content {
                candidate.insert("content".into(), content);
            }
            if let Some(finish) = &finish {
                candidate.insert("finishReason".into(), finish.clone());
            }
            candidate.insert("index".into(), json!(0));
            let mut list = vec![Value::Object(candidate)];
            list.extend((0..extra_candidates).map(|i| json!({ "index": i + 1 })));
            let candidates = match candidates_shape {
                Shape::Normal => Some(Value::Array(list)),
                Shape::Missing => None,
                Shape::Null => Some(Value::Null),
                Shape::Empty => Some(json!([])),
                Shape::WrongType => Some(json!(["x"])),
            };
            let mut root = Map::new();
            maybe(&mut root, "candidates", candidates);
            if let Some(block) = &block {
                root.insert("promptFeedback".into(), json!({ "blockReason": block }));
            }
            if usage {
                root.insert(
                    "usageMetadata".into(),
                    json!({ "promptTokenCount": 258, "totalTokenCount": 300 }),
                );
            }

            let finish = finish.as_ref().and_then(Value::as_str).unwrap_or_default();
            let prompt_blocked = block
                .as_ref()
                .and_then(Value::as_str)
                .is_some_and(|r| !r.is_empty());
            let candidate_seen = !prompt_blocked && candidates_shape == Shape::Normal;
            let answer_blocked = candidate_seen && BLOCKING_FINISH_REASONS.contains(&finish);
            let clean =
                candidate_seen && !answer_blocked && content_shape == Shape::Normal && all_objects;
            // A list of objects none of which has a book field is not a book list.
            let book_keys = gemini::BOOK_KEYS;
            let not_books = !books.is_empty()
                && books
                    .iter()
                    .all(|b| book_keys.iter().all(|k| b.get(*k).is_none()));
            let listed = matches!(
                wrap,
                Wrap::Bare | Wrap::Fenced | Wrap::Prose | Wrap::BooksObject | Wrap::JsonString
            );
            let expect_not_books = clean && listed && not_books;
            let expected_detections = match wrap {
                _ if !clean || expect_not_books => None,
                Wrap::Bare | Wrap::Fenced | Wrap::Prose | Wrap::BooksObject | Wrap::JsonString => {
                    Some(books.len())
                }
                Wrap::SingleObject => books
                    .first()
                    .filter(|b| b.get("title").is_some())
                    .map(|_| 1),
                Wrap::Cut => None,
            };
            GeminiCase {
                body: Value::Object(root).to_string(),
                expected_detections,
                expect_not_books,
                expect_blocked: prompt_blocked || answer_blocked,
                photo_index,
            }
        })
        .boxed()
}

fn gemini_case() -> impl Strategy<Value = GeminiCase> {
    let unchecked = |body: String| GeminiCase {
        body,
        expected_detections: None,
        expect_not_books: false,
        expect_blocked: false,
        photo_index: 0,
    };
    prop_oneof![
        1 => any::<String>().prop_map(unchecked),
        1 => mutated(GEMINI_FIXTURES).prop_map(unchecked),
        6 => gemini_generated(),
    ]
}

fn in_unit_range(v: f64) -> bool {
    (0.0..=1.0).contains(&v)
}

fn check_scan_book(book: &ScanBook, photo_index: u32) -> Result<(), TestCaseError> {
    prop_assert!(!book.title.trim().is_empty(), "blank title: {:?}", book);
    prop_assert!(book.title.chars().count() <= gemini::MAX_TITLE_CHARS);
    if let Some(author) = &book.author {
        prop_assert!(
            !author.trim().is_empty() && author.chars().count() <= gemini::MAX_AUTHOR_CHARS
        );
    }
    prop_assert!(in_unit_range(book.confidence), "confidence in {:?}", book);
    let b = &book.bounding_box;
    for v in [b.x, b.y, b.width, b.height] {
        prop_assert!(in_unit_range(v), "box in {:?}", book);
    }
    prop_assert!(
        b.x + b.width <= 1.0 + 1e-9,
        "box wider than the image: {:?}",
        book
    );
    prop_assert!(
        b.y + b.height <= 1.0 + 1e-9,
        "box taller than the image: {:?}",
        book
    );
    if let Some(isbn) = &book.isbn {
        prop_assert!(is_valid_isbn13(isbn), "isbn in {:?}", book);
    }
    prop_assert_eq!(book.photo_index, photo_index);
    Ok(())
}

fn check_gemini(case: GeminiCase) -> Result<(), TestCaseError> {
    let parsed = gemini::parse_response(&case.body);
    if case.expect_blocked {
        prop_assert!(
            matches!(parsed, Err(GeminiError::Blocked { .. })),
            "expected blocked, got {:?}",
            parsed
        );
    }
    if case.expect_not_books {
        prop_assert_eq!(&parsed, &Err(GeminiError::NotBooks));
    }
    if let Some(count) = case.expected_detections {
        match &parsed {
            Ok(detections) => prop_assert_eq!(detections.len(), count),
            Err(e) => return Err(fail(format!("expected {count} detections, got {e:?}"))),
        }
    }
    let detections = match parsed {
        Ok(detections) => detections,
        Err(e) => {
            prop_assert!(!e.message().is_empty());
            if let GeminiError::Blocked { reason } = &e {
                // The reason goes into client messages: only an enum-like name may pass.
                let plain = reason
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
                prop_assert!(plain && !reason.is_empty() && reason.len() <= 64, "{:?}", e);
            }
            return Ok(());
        }
    };
    let count = detections.len();
    let books = gemini::normalize(detections, case.photo_index);
    prop_assert!(books.len() <= count.min(gemini::MAX_BOOKS_PER_PHOTO));
    for book in &books {
        check_scan_book(book, case.photo_index)?;
    }
    Ok(())
}

#[test]
fn fuzz_gemini_responses() {
    run_target("gemini_responses", gemini_case(), check_gemini);
}

// ---------------------------------------------------------------------------------------------
// 4. Google Books and Open Library responses, and match scoring

const BOOK_FIXTURES: &[&str] = &[
    include_str!("fixtures/books/gb_full.json"),
    include_str!("fixtures/books/gb_http_covers.json"),
    include_str!("fixtures/books/gb_isbn10_only.json"),
    include_str!("fixtures/books/gb_multi.json"),
    include_str!("fixtures/books/gb_near_miss.json"),
    include_str!("fixtures/books/gb_no_items.json"),
    include_str!("fixtures/books/gb_sparse.json"),
    include_str!("fixtures/books/ol_author.json"),
    include_str!("fixtures/books/ol_edition.json"),
    include_str!("fixtures/books/ol_edition_sparse.json"),
    include_str!("fixtures/books/ol_search.json"),
    include_str!("fixtures/books/ol_search_empty.json"),
];

const TITLE_WORDS: &[&str] = &[
    "Dune",
    "Messiah",
    "The",
    "A",
    "an",
    "Hobbit",
    "Hobit",
    "Foundation",
    "Second",
    "Star",
    "Wars:",
    "Heir",
    "to",
    "Empire",
    "(Dune Chronicles, #1)",
    "[Deluxe]",
    "&",
    "Ender's",
    "Game",
    "Les",
    "Misérables",
    "1984",
    ":",
    "Philosopher's",
    "Sorcerer's",
    "Stone",
    "三体",
];
const AUTHOR_NAMES: &[&str] = &[
    "Frank Herbert",
    "Herbert, Frank",
    "J.R.R. Tolkien",
    "Tolkien",
    "Isaac Asimov",
    "Martin Luther King Jr.",
    "Orson Scott Card",
    "Victor Hugo",
    "刘慈欣",
    "Ed.",
    "",
];
const AUTHOR_SEPARATORS: &[&str] = &[", ", "; ", " & ", " and ", " / ", " with "];

fn title_words() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::collection::vec(select(TITLE_WORDS), 1..7).prop_map(|w| w.join(" ")),
        1 => book_text(),
        1 => prop::collection::vec(select(TITLE_WORDS), 60..80).prop_map(|w| w.join(" ")),
    ]
    .boxed()
}

fn author_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => (prop::collection::vec(select(AUTHOR_NAMES), 1..4), select(AUTHOR_SEPARATORS))
            .prop_map(|(names, sep)| names.join(sep)),
        1 => book_text(),
    ]
    .boxed()
}

/// A provider's title field: mostly a real-looking title, so records can match the input.
fn title_like() -> BoxedStrategy<Value> {
    prop_oneof![3 => title_words().prop_map(Value::from), 1 => text_like()].boxed()
}

fn book_input() -> BoxedStrategy<BookInput> {
    (
        title_words(),
        prop::option::of(author_text()),
        prop::option::of(isbn_text()),
    )
        .prop_map(|(title, author, isbn)| BookInput {
            title,
            author,
            isbn,
        })
        .boxed()
}

/// Candidates made directly, with as many authors and ISBNs as a pathological record.
fn candidate() -> BoxedStrategy<Candidate> {
    (
        title_words(),
        prop::option::of(title_words()),
        prop_oneof![
            4 => prop::collection::vec(author_text(), 0..4),
            1 => prop::collection::vec(author_text(), 60..90),
        ],
        prop::collection::vec(valid_isbn13(), 0..3),
    )
        .prop_map(|(title, subtitle, authors, isbns)| Candidate {
            title,
            subtitle,
            authors,
            isbn13: isbns.first().cloned(),
            isbn10: isbns.first().and_then(|i| isbn13_to_10(i)),
            isbns,
            ..Candidate::default()
        })
        .boxed()
}

const URL_SCHEMES: &[&str] = &[
    "https://",
    "http://",
    "HTTP://",
    "HtTpS://",
    "//",
    "ftp://",
    "javascript:",
    "",
    " https://",
    "https:///",
    "http:// ",
];
const URL_QUERIES: &[&str] = &[
    "",
    "?id=B1hSG45JCX4C&printsec=frontcover&img=1&zoom=1&edge=curl&source=gbs_api",
    "?edge=curl",
    "?EDGE=CURL&zoom=1",
    "?&&",
    "?",
    "?zoom=1#frag",
];

fn url_like() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => (select(URL_SCHEMES), "[a-z.]{0,12}", select(&["", "/books/content", "/x y", "/b/id/1-L.jpg"][..]), select(URL_QUERIES))
            .prop_map(|(scheme, host, path, query)| Value::from(format!("{scheme}{host}{path}{query}"))),
        1 => junk_value(),
    ]
    .boxed()
}

fn maybe(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        map.insert(key.into(), value);
    }
}

fn gb_volume() -> BoxedStrategy<Value> {
    let identifier = prop_oneof![
        4 => (select(&["ISBN_13", "ISBN_10", "OTHER", "ISSN"][..]), isbn_text())
            .prop_map(|(kind, id)| json!({ "type": kind, "identifier": id })),
        1 => junk_value(),
    ];
    let links = prop::collection::vec(
        (
            select(
                &[
                    "extraLarge",
                    "large",
                    "medium",
                    "small",
                    "thumbnail",
                    "smallThumbnail",
                ][..],
            ),
            url_like(),
        ),
        0..3,
    );
    let info = (
        prop::option::weighted(0.95, title_like()),
        prop::option::weighted(0.3, text_like()),
        prop::option::weighted(
            0.7,
            prop::collection::vec(
                prop_oneof![3 => author_text().prop_map(Value::from), 1 => text_like()],
                0..3,
            ),
        ),
        prop::option::weighted(0.5, text_like()),
        prop::option::weighted(
            0.5,
            prop_oneof![
                number_text().prop_map(|n| serde_json::from_str(&n).unwrap_or(Value::Null)),
                junk_value()
            ],
        ),
        prop::option::weighted(0.7, prop::collection::vec(identifier, 0..4)),
        prop::option::weighted(0.7, links),
    )
        .prop_map(|(title, subtitle, authors, publisher, pages, ids, links)| {
            let mut info = Map::new();
            maybe(&mut info, "title", title);
            maybe(&mut info, "subtitle", subtitle);
            maybe(&mut info, "authors", authors.map(Value::Array));
            maybe(&mut info, "publisher", publisher.clone());
            maybe(&mut info, "publishedDate", publisher);
            maybe(&mut info, "pageCount", pages);
            maybe(&mut info, "industryIdentifiers", ids.map(Value::Array));
            maybe(
                &mut info,
                "imageLinks",
                links.map(|l| {
                    Value::Object(l.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            );
            Value::Object(info)
        });
    prop_oneof![
        6 => (prop::option::of("[A-Za-z0-9_-]{0,12}"), info)
            .prop_map(|(id, info)| json!({ "kind": "books#volume", "id": id, "volumeInfo": info })),
        1 => junk_value(),
        1 => junk_value().prop_map(|info| json!({ "volumeInfo": info })),
    ]
    .boxed()
}

fn gb_body() -> BoxedStrategy<String> {
    let generated = prop_oneof![
        6 => prop::collection::vec(gb_volume(), 1..5)
            .prop_map(|items| json!({ "kind": "books#volumes", "totalItems": items.len(), "items": items })),
        1 => Just(json!({ "kind": "books#volumes", "totalItems": 0 })),
        1 => junk_value().prop_map(|e| json!({ "error": e })),
        1 => (any::<u16>(), book_text())
            .prop_map(|(code, message)| json!({ "error": { "code": code, "message": message } })),
        1 => junk_value().prop_map(|items| json!({ "items": items })),
    ];
    prop_oneof![
        1 => any::<String>(),
        1 => mutated(BOOK_FIXTURES),
        6 => generated.prop_map(|v| v.to_string()),
    ]
    .boxed()
}

/// A `{"key": ...}` reference as editions and works write it, including hostile keys.
fn ol_key_ref() -> BoxedStrategy<Value> {
    let key = (
        prop_oneof![
            4 => Just("/authors/"),
            2 => Just("/works/"),
            1 => select(&["/books/", "authors/", "", "/authors/../", "/AUTHORS/"][..]),
        ],
        prop_oneof![3 => "OL[0-9]{1,6}[AWM]", 1 => "[A-Za-z0-9./ ?%]{0,10}"],
    )
        .prop_map(|(prefix, id)| format!("{prefix}{id}"));
    prop_oneof![
        3 => key.clone().prop_map(|k| json!({ "key": k })),
        1 => key.prop_map(|k| json!({ "author": { "key": k }, "type": { "key": "/type/author_role" } })),
        1 => junk_value(),
    ]
    .boxed()
}

fn cover_id() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => any::<i64>().prop_map(Value::from),
        1 => select(&[-1i64, 0, 1, i64::MAX][..]).prop_map(Value::from),
        1 => junk_value(),
    ]
    .boxed()
}

fn ol_edition_body() -> BoxedStrategy<String> {
    let strings = || {
        prop::collection::vec(
            prop_oneof![4 => isbn_text().prop_map(Value::from), 1 => junk_value()],
            0..4,
        )
    };
    let generated = (
        (
            prop::option::weighted(0.95, title_like()),
            prop::option::weighted(0.3, text_like()),
            prop::option::weighted(0.7, strings()),
            prop::option::weighted(0.7, strings()),
            prop::option::weighted(0.6, prop::collection::vec(cover_id(), 0..3)),
        ),
        (
            prop::option::weighted(0.7, prop::collection::vec(ol_key_ref(), 0..6)),
            prop::option::weighted(0.5, prop::collection::vec(ol_key_ref(), 0..3)),
            prop::option::weighted(0.5, prop::collection::vec(text_like(), 0..2)),
            prop::option::weighted(0.5, text_like()),
            prop::option::weighted(
                0.5,
                prop_oneof![
                    number_text().prop_map(|n| serde_json::from_str(&n).unwrap_or(Value::Null)),
                    junk_value()
                ],
            ),
            prop::option::weighted(0.1, text_like()),
        ),
    )
        .prop_map(|(a, b)| {
            let (title, subtitle, isbn13, isbn10, covers) = a;
            let (authors, works, publishers, date, pages, error) = b;
            let mut root = Map::new();
            maybe(&mut root, "title", title);
            maybe(&mut root, "subtitle", subtitle);
            maybe(&mut root, "isbn_13", isbn13.map(Value::Array));
            maybe(&mut root, "isbn_10", isbn10.map(Value::Array));
            maybe(&mut root, "covers", covers.map(Value::Array));
            maybe(&mut root, "authors", authors.map(Value::Array));
            maybe(&mut root, "works", works.map(Value::Array));
            maybe(&mut root, "publishers", publishers.map(Value::Array));
            maybe(&mut root, "publish_date", date);
            maybe(&mut root, "number_of_pages", pages);
            maybe(&mut root, "error", error);
            root.insert("key".into(), json!("/books/OL7353617M"));
            Value::Object(root).to_string()
        });
    prop_oneof![
        1 => any::<String>(),
        1 => mutated(BOOK_FIXTURES),
        6 => generated,
    ]
    .boxed()
}

fn ol_search_body() -> BoxedStrategy<String> {
    let doc = (
        prop::option::weighted(0.95, title_like()),
        prop::option::weighted(
            0.7,
            prop::collection::vec(
                prop_oneof![3 => author_text().prop_map(Value::from), 1 => text_like()],
                0..4,
            ),
        ),
        prop::option::weighted(
            0.7,
            prop::collection::vec(
                prop_oneof![4 => isbn_text().prop_map(Value::from), 1 => junk_value()],
                0..6,
            ),
        ),
        prop::option::weighted(0.6, cover_id()),
        prop::option::weighted(
            0.5,
            prop_oneof![
                number_text().prop_map(|n| serde_json::from_str(&n).unwrap_or(Value::Null)),
                junk_value()
            ],
        ),
        prop::option::weighted(0.5, prop::collection::vec(text_like(), 0..2)),
    )
        .prop_map(|(title, authors, isbns, cover, year, publishers)| {
            let mut doc = Map::new();
            maybe(&mut doc, "title", title);
            maybe(&mut doc, "author_name", authors.map(Value::Array));
            maybe(&mut doc, "isbn", isbns.map(Value::Array));
            maybe(&mut doc, "cover_i", cover);
            maybe(&mut doc, "first_publish_year", year.clone());
            maybe(&mut doc, "number_of_pages_median", year);
            maybe(&mut doc, "publisher", publishers.map(Value::Array));
            doc.insert("key".into(), json!("/works/OL27482W"));
            Value::Object(doc)
        });
    let generated = prop_oneof![
        6 => prop::collection::vec(prop_oneof![6 => doc, 1 => junk_value()], 0..5)
            .prop_map(|docs| json!({ "numFound": docs.len(), "docs": docs })),
        1 => junk_value().prop_map(|docs| json!({ "numFound": 0, "docs": docs })),
        1 => text_like().prop_map(|e| json!({ "error": e })),
    ];
    prop_oneof![
        1 => any::<String>(),
        1 => mutated(BOOK_FIXTURES),
        6 => generated.prop_map(|v| v.to_string()),
    ]
    .boxed()
}

fn ol_author_body() -> BoxedStrategy<String> {
    let generated = (
        prop::option::weighted(0.7, text_like()),
        prop::option::weighted(0.5, text_like()),
    )
        .prop_map(|(name, personal)| {
            let mut root = Map::new();
            maybe(&mut root, "name", name);
            maybe(&mut root, "personal_name", personal);
            Value::Object(root).to_string()
        });
    prop_oneof![1 => any::<String>(), 1 => mutated(BOOK_FIXTURES), 4 => generated].boxed()
}

/// What every candidate promises, whichever provider it came from.
fn check_candidate(c: &Candidate) -> Result<(), TestCaseError> {
    prop_assert!(
        !c.title.is_empty() && c.title.trim() == c.title,
        "title of {:?}",
        c
    );
    if let Some(url) = &c.cover_url {
        prop_assert!(url.starts_with("https://"), "cover url {:?}", url);
        let rest = &url["https://".len()..];
        prop_assert!(
            !rest.is_empty() && !rest.starts_with('/') && !rest.chars().any(char::is_whitespace),
            "cover url without a host or with whitespace: {:?}",
            url
        );
    }
    match &c.isbn13 {
        Some(isbn13) => {
            prop_assert!(is_valid_isbn13(isbn13), "isbn13 of {:?}", c);
            prop_assert!(c.isbns.contains(isbn13), "isbn13 not among isbns: {:?}", c);
            prop_assert_eq!(&c.isbn10, &isbn13_to_10(isbn13));
        }
        None => prop_assert!(
            c.isbn10.is_none() && c.isbns.is_empty(),
            "isbns without isbn13: {:?}",
            c
        ),
    }
    if let Some(isbn10) = &c.isbn10 {
        prop_assert!(is_valid_isbn10(isbn10), "isbn10 of {:?}", c);
    }
    for isbn in &c.isbns {
        prop_assert!(is_valid_isbn13(isbn), "isbns of {:?}", c);
    }
    prop_assert!(c.page_count != Some(0));
    Ok(())
}

/// `score` stays within 0..=1, an ISBN the candidate carries scores 1, and `best_match` only
/// picks what it documents.
fn check_scoring(input: &BookInput, candidates: &[Candidate]) -> Result<(), TestCaseError> {
    for c in candidates {
        let s = score(input, c);
        prop_assert!(
            in_unit_range(s),
            "score {} for {:?} against {:?}",
            s,
            input,
            c
        );
        if let Some(isbn13) = input.valid_isbn13() {
            let mut carrying = c.clone();
            carrying.isbns.push(isbn13);
            prop_assert_eq!(score(input, &carrying), 1.0);
        }
    }
    if let Some(m) = best_match(input, candidates) {
        let by_isbn = input.valid_isbn13().is_some_and(|i| m.carries_isbn(&i));
        prop_assert!(
            by_isbn || score(input, m) >= MIN_SCORE,
            "best match {:?}",
            m
        );
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct ProviderCase<B> {
    body: B,
    input: BookInput,
    extra: Vec<Candidate>,
}

/// A record of the input's own book as a provider might return it, so that scoring also
/// sees near and exact matches, not only strangers.
fn echo_candidate(input: &BookInput, variant: u8) -> Candidate {
    let authors: Vec<String> = input.author.iter().cloned().collect();
    let (title, subtitle, authors) = match variant {
        0 => (input.title.clone(), None, authors),
        1 => (
            format!("{} (Series, #1)", input.title.to_uppercase()),
            None,
            authors,
        ),
        2 => (input.title.clone(), Some("A Novel".to_string()), authors),
        3 => {
            // A doubled letter: the typo the fuzzy word match is there for.
            let mut typo = input.title.clone();
            if let Some((at, c)) = typo.char_indices().find(|(_, c)| c.is_alphabetic()) {
                typo.insert(at, c);
            }
            (typo, None, authors)
        }
        _ => (input.title.clone(), None, Vec::new()),
    };
    Candidate {
        title: title.trim().to_string(),
        subtitle,
        authors,
        ..Candidate::default()
    }
}

fn provider_case<B: Debug + Clone>(
    body: BoxedStrategy<B>,
) -> impl Strategy<Value = ProviderCase<B>> {
    (
        body,
        book_input(),
        prop::collection::vec(candidate(), 0..3),
        prop::option::weighted(0.5, 0u8..5),
    )
        .prop_map(|(body, input, mut extra, echo)| {
            if let Some(variant) = echo {
                extra.push(echo_candidate(&input, variant));
            }
            ProviderCase { body, input, extra }
        })
}

fn check_google_books(case: ProviderCase<String>) -> Result<(), TestCaseError> {
    let mut candidates = match google_books::parse(&case.body) {
        Ok(candidates) => candidates,
        Err(e) => {
            prop_assert!(!e.to_string().is_empty());
            Vec::new()
        }
    };
    for c in &candidates {
        check_candidate(c)?;
    }
    candidates.extend(case.extra);
    check_scoring(&case.input, &candidates)
}

#[test]
fn fuzz_google_books_responses() {
    run_target(
        "google_books_responses",
        provider_case(gb_body()),
        check_google_books,
    );
}

#[derive(Debug, Clone)]
enum OlBody {
    Edition(String, Vec<String>),
    Search(String),
    Author(String),
}

fn ol_body() -> BoxedStrategy<OlBody> {
    prop_oneof![
        2 => (ol_edition_body(), prop::collection::vec(book_text(), 0..4))
            .prop_map(|(body, names)| OlBody::Edition(body, names)),
        2 => ol_search_body().prop_map(OlBody::Search),
        1 => ol_author_body().prop_map(OlBody::Author),
    ]
    .boxed()
}

fn check_edition(edition: &EditionCandidate) -> Result<(), TestCaseError> {
    check_candidate(&edition.candidate)?;
    prop_assert!(edition.author_keys.len() <= open_library::MAX_AUTHOR_LOOKUPS);
    let mut seen = HashSet::new();
    for key in &edition.author_keys {
        // Keys become request paths: anything but a plain id could steer the fetch.
        let id = key.strip_prefix("/authors/").unwrap_or_default();
        prop_assert!(
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "author key {:?}",
            key
        );
        prop_assert!(seen.insert(key), "duplicate author key {:?}", key);
        let url = open_library::author_url("https://openlibrary.org", key);
        prop_assert_eq!(url, format!("https://openlibrary.org{key}.json"));
    }
    for key in &edition.work_keys {
        let id = key.strip_prefix("/works/").unwrap_or_default();
        prop_assert!(
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "work key {:?}",
            key
        );
    }
    Ok(())
}

fn check_open_library(case: ProviderCase<OlBody>) -> Result<(), TestCaseError> {
    let mut candidates = Vec::new();
    match &case.body {
        OlBody::Edition(body, names) => {
            if let Ok(edition) = open_library::parse_edition(body) {
                check_edition(&edition)?;
                let with_authors = edition.with_authors(names.clone());
                prop_assert!(with_authors
                    .authors
                    .iter()
                    .all(|a| !a.is_empty() && a.trim() == a));
                candidates.push(with_authors);
            }
        }
        OlBody::Search(body) => {
            if let Ok(found) = open_library::parse_search(body) {
                candidates = found;
            }
        }
        OlBody::Author(body) => {
            if let Some(name) = open_library::parse_author(body) {
                prop_assert!(!name.is_empty() && name.trim() == name, "author {:?}", name);
            }
        }
    }
    for c in &candidates {
        check_candidate(c)?;
    }
    candidates.extend(case.extra);
    check_scoring(&case.input, &candidates)
}

#[test]
fn fuzz_open_library_responses() {
    run_target(
        "open_library_responses",
        provider_case(ol_body()),
        check_open_library,
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Multipart bodies

/// A piece of part data; boundary look-alikes are resolved once the boundary is known.
#[derive(Debug, Clone)]
enum Chunk {
    Bytes(Vec<u8>),
    Literal(&'static str),
    /// `--boundary` followed by this suffix.
    Delimiter(&'static str),
    /// A prefix of `--boundary`, this many bytes long.
    PartialDelimiter(usize),
}

fn chunk() -> BoxedStrategy<Chunk> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..32).prop_map(Chunk::Bytes),
        6 => select(&["\r\n", "\n", "\r", "--", "\r\n--", "\r\n\r\n", " ", "\t"][..]).prop_map(Chunk::Literal),
        2 => select(&["X", "-", " x\r\n", "\r", "\t-"][..]).prop_map(Chunk::Delimiter),
        1 => select(&["--", "\r\n", "\n", " \r\n", "\t\n"][..]).prop_map(Chunk::Delimiter),
        2 => (1usize..40).prop_map(Chunk::PartialDelimiter),
    ]
    .boxed()
}

fn resolve(chunks: &[Chunk], delimiter: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in chunks {
        match chunk {
            Chunk::Bytes(bytes) => out.extend_from_slice(bytes),
            Chunk::Literal(text) => out.extend_from_slice(text.as_bytes()),
            Chunk::Delimiter(suffix) => {
                out.extend_from_slice(delimiter);
                out.extend_from_slice(suffix.as_bytes());
            }
            Chunk::PartialDelimiter(len) => {
                out.extend_from_slice(&delimiter[..(*len).min(delimiter.len())]);
            }
        }
    }
    out
}

/// Whether `data` holds a real delimiter line, by RFC 2046 with bare LF allowed: `--boundary`
/// at a line start (the data's start counts, after the headers' blank line), then `--`, or
/// optional spaces and tabs and a line break. Such data cannot round-trip in any parser; the
/// same goes for data ending in `\r` when lines end in a bare LF, as that `\r` reads as half
/// of a CRLF.
fn holds_delimiter(data: &[u8], delimiter: &[u8], crlf: bool) -> bool {
    if !crlf && data.ends_with(b"\r") {
        return true;
    }
    // What follows the data in the body is a line break and the next delimiter.
    let mut text = b"\n".to_vec();
    text.extend_from_slice(data);
    text.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
    (1..=data.len()).any(|at| {
        if text[at - 1] != b'\n' || !text[at..].starts_with(delimiter) {
            return false;
        }
        let after = &text[at + delimiter.len()..];
        if after.starts_with(b"--") {
            return true;
        }
        let padding = after
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        let rest = &after[padding..];
        rest.starts_with(b"\n") || rest.starts_with(b"\r\n")
    })
}

#[derive(Debug, Clone)]
struct PartSpec {
    name: Option<String>,
    filename: Option<String>,
    content_type: Option<&'static str>,
    data: Vec<Chunk>,
    header_case: &'static str,
    folded: bool,
    extra_header: bool,
}

fn param_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "\\PC{0,12}",
        1 => select(&["image", "file", "a\"b", "C:\\path\\photo.jpg", "x;y=z", "\\\"", "名前", ""][..])
            .prop_map(str::to_string),
    ]
    .boxed()
}

fn part_spec() -> BoxedStrategy<PartSpec> {
    (
        prop::option::weighted(0.9, param_text()),
        prop::option::weighted(0.4, param_text()),
        prop::option::weighted(
            0.4,
            select(
                &[
                    "image/png",
                    "application/octet-stream",
                    "text/plain; charset=utf-8",
                ][..],
            ),
        ),
        prop::collection::vec(chunk(), 0..6),
        select(
            &[
                "Content-Disposition",
                "content-disposition",
                "CONTENT-DISPOSITION",
            ][..],
        ),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(name, filename, content_type, data, header_case, folded, extra_header)| PartSpec {
                name,
                filename,
                content_type,
                data,
                header_case,
                folded,
                extra_header,
            },
        )
        .boxed()
}

/// RFC 2046 boundaries: plain tokens, browser-style dashes, and ones with inner spaces.
fn boundary_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[A-Za-z0-9'()+_,./:=?-]{1,70}",
        2 => "-{4,30}[A-Za-z0-9]{4,30}",
        1 => "[A-Za-z0-9 ]{0,68}[A-Za-z0-9]",
    ]
    .boxed()
}

#[derive(Debug, Clone)]
struct Form {
    content_type: String,
    boundary: String,
    body: Bytes,
    parts: Vec<Part>,
    /// Some part's data holds a delimiter line, so no exact round trip is possible.
    ambiguous: bool,
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn form() -> BoxedStrategy<Form> {
    (
        boundary_text(),
        (any::<bool>(), any::<bool>(), select(&["multipart/form-data", "Multipart/Form-Data"][..])),
        prop_oneof![8 => prop::collection::vec(part_spec(), 0..5), 1 => prop::collection::vec(part_spec(), 15..18)],
        any::<bool>(),
        "[A-Za-z .]{0,20}",
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(boundary, (quote, charset, media), specs, crlf, preamble, epilogue)| {
            let value = if quote || boundary.contains(' ') {
                quoted(&boundary)
            } else {
                boundary.clone()
            };
            let content_type = if charset {
                format!("{media}; charset=utf-8; boundary={value}")
            } else {
                format!("{media}; boundary={value}")
            };
            let nl = if crlf { "\r\n" } else { "\n" };
            let delimiter = format!("--{boundary}").into_bytes();
            let mut body = preamble.clone().into_bytes();
            if !preamble.is_empty() {
                body.extend_from_slice(nl.as_bytes());
            }
            let mut parts = Vec::new();
            let mut ambiguous = false;
            for spec in &specs {
                let data = resolve(&spec.data, &delimiter);
                ambiguous |= holds_delimiter(&data, &delimiter, crlf);
                body.extend_from_slice(&delimiter);
                body.extend_from_slice(nl.as_bytes());
                let mut disposition = String::from("form-data");
                if let Some(name) = &spec.name {
                    disposition.push_str(&format!("; name={}", quoted(name)));
                }
                if let Some(filename) = &spec.filename {
                    // A folded header continues on a line that starts with whitespace.
                    let fold = if spec.folded { format!(";{nl}\t") } else { "; ".into() };
                    disposition.push_str(&format!("{fold}filename={}", quoted(filename)));
                }
                if spec.name.is_some() || spec.filename.is_some() || spec.extra_header {
                    body.extend_from_slice(format!("{}: {disposition}{nl}", spec.header_case).as_bytes());
                }
                if spec.extra_header {
                    body.extend_from_slice(format!("X-Extra:  some value {nl}").as_bytes());
                }
                if let Some(ct) = spec.content_type {
                    body.extend_from_slice(format!("Content-Type: {ct}{nl}").as_bytes());
                }
                body.extend_from_slice(nl.as_bytes());
                body.extend_from_slice(&data);
                body.extend_from_slice(nl.as_bytes());
                parts.push(Part {
                    name: spec.name.clone(),
                    filename: spec.filename.clone(),
                    content_type: spec.content_type.map(str::to_string),
                    data,
                });
            }
            body.extend_from_slice(&delimiter);
            body.extend_from_slice(b"--");
            if !epilogue.is_empty() {
                body.extend_from_slice(nl.as_bytes());
                body.extend_from_slice(&epilogue);
            }
            Form {
                content_type,
                boundary,
                body: Bytes(body),
                parts,
                ambiguous,
            }
        })
        .boxed()
}

#[derive(Debug, Clone)]
enum MultipartInput {
    Raw {
        content_type: String,
        boundary: String,
        body: Bytes,
    },
    Form(Form),
}

fn structural_body() -> BoxedStrategy<Vec<u8>> {
    let piece = select(
        &[
            "--",
            "\r\n",
            "\n",
            "--b",
            "--b--",
            "--b\r\n",
            "b",
            "Content-Disposition: form-data; name=\"x\"",
            "Content-Disposition: form-data; name=image",
            ":",
            "\r\n\r\n",
            " ",
            "\t",
            "x",
            "\u{89}PNG\r\n",
        ][..],
    );
    prop::collection::vec(piece, 0..30)
        .prop_map(|pieces| pieces.concat().into_bytes())
        .boxed()
}

fn multipart_input() -> impl Strategy<Value = MultipartInput> {
    let content_type = prop_oneof![
        1 => any::<String>(),
        2 => (select(&["multipart/form-data; boundary=", "multipart/form-data;boundary=\"", "MULTIPART/FORM-DATA ; Boundary = ", "text/plain; boundary="][..]), "\\PC{0,80}")
            .prop_map(|(head, tail)| format!("{head}{tail}")),
    ];
    let raw = (
        content_type,
        prop_oneof![2 => Just("b".to_string()), 1 => "\\PC{0,12}", 1 => boundary_text()],
        prop_oneof![1 => prop::collection::vec(any::<u8>(), 0..256), 2 => structural_body()],
    )
        .prop_map(|(content_type, boundary, body)| MultipartInput::Raw {
            content_type,
            boundary,
            body: Bytes(body),
        });
    prop_oneof![1 => raw, 2 => form().prop_map(MultipartInput::Form)]
}

fn check_multipart(input: MultipartInput) -> Result<(), TestCaseError> {
    match input {
        MultipartInput::Raw {
            content_type,
            boundary,
            body: Bytes(body),
        } => {
            if let Some(found) = multipart::boundary(&content_type) {
                prop_assert!(
                    (1..=70).contains(&found.len()) && !found.ends_with(' '),
                    "boundary {:?}",
                    found
                );
                prop_assert_ne!(
                    multipart::parse(b"", &found),
                    Err(MultipartError::InvalidBoundary)
                );
            }
            if let Ok(parts) = multipart::parse(&body, &boundary) {
                prop_assert!(parts.len() <= MAX_PARTS);
                for part in &parts {
                    let inside = part.data.is_empty()
                        || body
                            .windows(part.data.len())
                            .any(|w| w == part.data.as_slice());
                    prop_assert!(inside, "part data that is not in the body");
                }
            }
            client_result(
                "parse_single",
                scan_request::parse_single(Some(&content_type), body),
            )?;
            Ok(())
        }
        MultipartInput::Form(form) => {
            prop_assert_eq!(
                multipart::boundary(&form.content_type),
                Some(form.boundary.clone())
            );
            let parsed = multipart::parse(&form.body.0, &form.boundary);
            if form.ambiguous {
                // Data holding a delimiter line has no single right answer; no panic is enough.
            } else if form.parts.len() > MAX_PARTS {
                prop_assert_eq!(parsed, Err(MultipartError::TooManyParts));
            } else {
                prop_assert_eq!(parsed, Ok(form.parts.clone()));
            }
            let single = client_result(
                "parse_single",
                scan_request::parse_single(Some(&form.content_type), form.body.0.clone()),
            )?;
            if let (Some(image), false) = (single, form.ambiguous) {
                let first = form
                    .parts
                    .iter()
                    .find(|p| p.name.as_deref() == Some("image"));
                prop_assert_eq!(Some(&image.bytes), first.map(|p| &p.data));
            }
            Ok(())
        }
    }
}

#[test]
fn fuzz_multipart_bodies() {
    run_target("multipart_bodies", multipart_input(), check_multipart);
}

// ---------------------------------------------------------------------------------------------
// 6. Request bodies

fn uuid_text(bytes: &[u8; 16], upper: bool) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let id = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    if upper {
        id.to_uppercase()
    } else {
        id
    }
}

/// The leading bytes of a JPEG, PNG, WebP and HEIC file.
const IMAGE_MAGIC: &[&[u8]] = &[
    &[0xFF, 0xD8, 0xFF],
    &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A],
    b"RIFF\x10\0\0\0WEBP",
    b"\0\0\0\x18ftypheic\0\0\0\0mif1heic",
];

fn image_bytes() -> BoxedStrategy<Vec<u8>> {
    let magic = select(IMAGE_MAGIC);
    (magic, prop::collection::vec(any::<u8>(), 0..48))
        .prop_map(|(magic, tail)| [magic, tail.as_slice()].concat())
        .boxed()
}

/// Base64 as clients send it: standard or URL-safe, wrapped, or as a data URL.
fn base64_of(bytes: &[u8], style: u8) -> String {
    match style {
        0 => base64::encode(bytes),
        1 => base64::encode_url(bytes),
        2 => {
            let text = base64::encode(bytes);
            let lines: Vec<&str> = text
                .as_bytes()
                .chunks(16)
                .map(|c| std::str::from_utf8(c).unwrap_or_default())
                .collect();
            lines.join("\r\n")
        }
        _ => format!("data:image/png;base64,{}", base64::encode(bytes)),
    }
}

#[derive(Debug, Clone)]
enum RequestInput {
    /// Fed to every body parser.
    Any(Bytes),
    Batch {
        body: String,
        expected_images: Option<usize>,
    },
    Single {
        content_type: Option<String>,
        body: Bytes,
    },
    Enrich {
        body: String,
        expected_books: Option<usize>,
    },
    Synthetic(String),
    Internal {
        create: Box<CreateJob>,
        data: Bytes,
    },
}

/// A body the batch scan route must accept, with the number of images it holds.
fn valid_batch() -> BoxedStrategy<RequestInput> {
    let entry = (
        image_bytes(),
        0u8..4,
        prop::option::weighted(0.2, arb_json()),
    );
    (
        prop::collection::hash_set(any::<u32>(), 1..=scan_request::MAX_IMAGES),
        prop::collection::vec(entry, scan_request::MAX_IMAGES),
        prop::option::of(prop_oneof![
            (any::<[u8; 16]>(), any::<bool>())
                .prop_map(|(b, upper)| json_string(&uuid_text(&b, upper))),
            Just("null".to_string()),
        ]),
    )
        .prop_map(|(indexes, entries, job_id)| {
            let images: Vec<String> = indexes
                .iter()
                .zip(entries)
                .map(|(index, (bytes, style, extra))| {
                    let mut fields = vec![
                        ("index".to_string(), index.to_string()),
                        ("data".to_string(), json_string(&base64_of(&bytes, style))),
                    ];
                    if let Some(extra) = extra {
                        fields.push(("note".to_string(), extra.to_string()));
                    }
                    object_text(&fields)
                })
                .collect();
            let mut fields = vec![("images".to_string(), format!("[{}]", images.join(",")))];
            if let Some(job_id) = job_id {
                fields.push(("jobId".to_string(), job_id));
            }
            RequestInput::Batch {
                body: object_text(&fields),
                expected_images: Some(indexes.len()),
            }
        })
        .boxed()
}

/// A batch body with every kind of wrong value, repeated key and deep nesting.
fn messy_batch() -> BoxedStrategy<RequestInput> {
    let value = prop_oneof![
        3 => number_text(),
        2 => image_bytes().prop_map(|b| json_string(&base64::encode(&b))),
        1 => "[A-Za-z0-9+/=_ -]{0,24}".prop_map(|s| json_string(&s)),
        1 => arb_json().prop_map(|v| v.to_string()),
        1 => deep_value_text(),
    ];
    let key = select(&["index", "data", "jobId", "images", "other"][..]).prop_map(str::to_string);
    let entry = prop::collection::vec((key.clone(), value.clone()), 0..4)
        .prop_map(|fields| object_text(&fields));
    let images = prop_oneof![
        4 => prop::collection::vec(prop_oneof![4 => entry, 1 => value.clone()], 0..8)
            .prop_map(|entries| format!("[{}]", entries.join(","))),
        1 => value.clone(),
    ];
    prop::collection::vec(
        prop_oneof![2 => images.prop_map(|v| ("images".to_string(), v)), 1 => (key, value)],
        0..4,
    )
    .prop_map(|fields| RequestInput::Batch {
        body: object_text(&fields),
        expected_images: None,
    })
    .boxed()
}

fn text_field_ok(value: Option<&Value>, max_chars: usize, required: bool) -> bool {
    match value {
        None | Some(Value::Null) => !required,
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                !required
            } else {
                s.chars().count() <= max_chars
            }
        }
        Some(_) => false,
    }
}

/// An enrichment body and, when every rule it documents holds, the books it must accept.
fn enrich_body() -> BoxedStrategy<RequestInput> {
    let field = || {
        prop_oneof![
            16 => "[A-Za-z][A-Za-z ]{0,30}".prop_map(Value::from),
            1 => book_text().prop_map(Value::from),
            1 => isbn_text().prop_map(Value::from),
            1 => "[a-z]{295,305}".prop_map(Value::from),
            1 => "[a-z]{495,505}".prop_map(Value::from),
            1 => junk_value(),
        ]
    };
    let book = prop_oneof![
        8 => (
            prop::option::weighted(0.95, field()),
            prop::option::weighted(0.6, field()),
            prop::option::weighted(
                0.6,
                prop_oneof![
                    12 => isbn_text().prop_map(Value::from),
                    1 => "[0-9]{18,20}".prop_map(Value::from),
                    1 => junk_value(),
                ],
            ),
        )
            .prop_map(|(title, author, isbn)| {
                let mut book = Map::new();
                maybe(&mut book, "title", title);
                maybe(&mut book, "author", author);
                maybe(&mut book, "isbn", isbn);
                Value::Object(book)
            }),
        1 => junk_value(),
    ];
    let books = prop_oneof![
        8 => prop::collection::vec(book, 1..6).prop_map(Value::Array),
        1 => Just(json!([])),
        1 => Just(Value::Array(vec![json!({ "title": "x" }); enrich::MAX_BOOKS + 1])),
        1 => junk_value(),
    ];
    let job_id = prop_oneof![
        3 => (any::<[u8; 16]>(), any::<bool>()).prop_map(|(b, upper)| Value::from(uuid_text(&b, upper))),
        1 => junk_value(),
    ];
    (
        prop::option::weighted(0.9, books),
        prop::option::weighted(0.3, job_id),
        any::<bool>(),
    )
        .prop_map(|(books, job_id, bom)| {
            let mut root = Map::new();
            maybe(&mut root, "books", books.clone());
            maybe(&mut root, "jobId", job_id.clone());
            let job_id_ok = match &job_id {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => ids::parse_job_id(s).is_some(),
                Some(_) => false,
            };
            let expected_books = match books {
                Some(Value::Array(items))
                    if job_id_ok
                        && (1..=enrich::MAX_BOOKS).contains(&items.len())
                        && items.iter().all(|b| {
                            b.is_object()
                                && text_field_ok(
                                    b.get("title"),
                                    enrich::request::MAX_TITLE_CHARS,
                                    true,
                                )
                                && text_field_ok(
                                    b.get("author"),
                                    enrich::request::MAX_AUTHOR_CHARS,
                                    false,
                                )
                                && text_field_ok(
                                    b.get("isbn"),
                                    enrich::request::MAX_ISBN_CHARS,
                                    false,
                                )
                        }) =>
                {
                    Some(items.len())
                }
                _ => None,
            };
            let bom = if bom { "\u{feff}" } else { "" };
            RequestInput::Enrich {
                body: format!("{bom}{}", Value::Object(root)),
                expected_books,
            }
        })
        .boxed()
}

fn synthetic_body() -> BoxedStrategy<RequestInput> {
    let key = select(
        &[
            "pipeline",
            "items",
            "itemsPerChunk",
            "chunkDelayMs",
            "failFirstAttempts",
            "coalesceMs",
            "throttleMs",
            "jobId",
            "unknown",
        ][..],
    )
    .prop_map(str::to_string);
    let value = prop_oneof![
        4 => "[0-9]{1,6}",
        3 => number_text(),
        1 => select(&["\"csv_import\"", "\"ai_scan\"", "\"batch_enrichment\"", "\"other\"", "null"][..]).prop_map(str::to_string),
        1 => (any::<[u8; 16]>(), any::<bool>()).prop_map(|(b, upper)| json_string(&uuid_text(&b, upper))),
        1 => arb_json().prop_map(|v| v.to_string()),
        1 => deep_value_text(),
    ];
    prop::collection::vec((key, value), 0..4)
        .prop_map(|fields| RequestInput::Synthetic(object_text(&fields)))
        .boxed()
}

fn internal_frame() -> BoxedStrategy<RequestInput> {
    let len = prop_oneof![
        4 => 0usize..64,
        1 => Just(usize::MAX),
        1 => any::<usize>(),
    ];
    (
        prop::collection::vec(len, 0..4),
        prop::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(|(lens, filler, exact)| {
            let declared: u128 = lens.iter().map(|&l| l as u128).sum();
            // Mostly the data the blobs declare, when that is small enough to build.
            let data = match usize::try_from(declared) {
                Ok(n) if exact && n <= 256 => vec![7u8; n],
                _ => filler,
            };
            let create = CreateJob {
                job_id: "0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e".into(),
                pipeline: Pipeline::CsvImport,
                total_count: 1,
                work: Work::Synthetic(SyntheticSpec {
                    pipeline: Pipeline::CsvImport,
                    items: 1,
                    items_per_chunk: 1,
                    chunk_delay_ms: 0,
                    fail_first_attempts: 0,
                    coalesce_ms: None,
                    throttle_ms: None,
                }),
                blobs: lens
                    .into_iter()
                    .enumerate()
                    .map(|(n, len)| Blob {
                        key: format!("in:{n}"),
                        len,
                    })
                    .collect(),
                idempotency: None,
            };
            RequestInput::Internal {
                create: Box::new(create),
                data: Bytes(data),
            }
        })
        .boxed()
}

fn single_body() -> BoxedStrategy<RequestInput> {
    (
        prop::option::weighted(
            0.9,
            prop_oneof![
                3 => select(&["image/jpeg", "image/png", "IMAGE/PNG; x=y", "image/webp", "image/heic", "image/gif", "multipart/form-data; boundary=b", "multipart/form-data", "", " "][..]).prop_map(str::to_string),
                1 => "\\PC{0,30}",
            ],
        ),
        prop_oneof![2 => image_bytes(), 1 => prop::collection::vec(any::<u8>(), 0..64), 1 => structural_body()],
    )
        .prop_map(|(content_type, body)| RequestInput::Single {
            content_type,
            body: Bytes(body),
        })
        .boxed()
}

fn json_ish_bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..256),
        2 => "[\\[\\]{}\":, a-zA-Z0-9.eE+-]{0,120}".prop_map(String::into_bytes),
        1 => deep_value_text().prop_map(String::into_bytes),
        1 => arb_json().prop_map(|v| v.to_string().into_bytes()),
    ]
    .boxed()
}

fn request_input() -> impl Strategy<Value = RequestInput> {
    prop_oneof![
        3 => json_ish_bytes().prop_map(|body| RequestInput::Any(Bytes(body))),
        2 => valid_batch(),
        3 => messy_batch(),
        2 => single_body(),
        3 => enrich_body(),
        2 => synthetic_body(),
        2 => internal_frame(),
    ]
}

fn check_batch(body: &[u8], expected: Option<usize>) -> Result<(), TestCaseError> {
    let batch = client_result("parse_batch", scan_request::parse_batch(body))?;
    if let Some(count) = expected {
        let Some(batch) = &batch else {
            return Err(fail(format!(
                "a valid batch was refused: {:?}",
                scan_request::parse_batch(body)
            )));
        };
        prop_assert_eq!(batch.images.len(), count);
    }
    if let Some(batch) = batch {
        prop_assert!((1..=scan_request::MAX_IMAGES).contains(&batch.images.len()));
        let indexes: HashSet<u32> = batch.images.iter().map(|i| i.index).collect();
        prop_assert_eq!(indexes.len(), batch.images.len(), "repeated index");
        for image in &batch.images {
            prop_assert_eq!(image::detect(&image.bytes), Some(image.kind));
        }
        if let Some(id) = &batch.job_id {
            prop_assert_eq!(ids::parse_job_id(id), Some(id.clone()));
        }
    }
    Ok(())
}

fn check_enrich(body: &[u8], expected: Option<usize>) -> Result<(), TestCaseError> {
    let request = client_result("parse_request", enrich::parse_request(body))?;
    match (request, expected) {
        (Some(request), Some(count)) => prop_assert_eq!(request.books.len(), count),
        (None, Some(count)) => {
            return Err(fail(format!(
                "a valid body of {count} books was refused: {:?}",
                enrich::parse_request(body)
            )))
        }
        (Some(request), None) => {
            return Err(fail(format!("an invalid body was accepted: {request:?}")))
        }
        (None, None) => {}
    }
    Ok(())
}

fn check_synthetic(body: &[u8]) -> Result<(), TestCaseError> {
    if let Some((spec, job_id)) = client_result("parse_spec", synthetic::parse_spec(body))? {
        prop_assert!((1..=synthetic::MAX_ITEMS).contains(&spec.items));
        prop_assert!((1..=synthetic::MAX_ITEMS).contains(&spec.items_per_chunk));
        prop_assert!(spec.chunk_delay_ms <= 60_000);
        prop_assert!(spec.coalesce_ms.is_none_or(|ms| ms <= 10_000));
        prop_assert!(spec
            .throttle_ms
            .is_none_or(|ms| (1..=600_000).contains(&ms)));
        if let Some(id) = job_id {
            prop_assert_eq!(ids::parse_job_id(&id), Some(id.clone()));
        }
    }
    Ok(())
}

fn check_single(content_type: Option<&str>, body: Vec<u8>) -> Result<(), TestCaseError> {
    let result = scan_request::parse_single(content_type, body.clone());
    if let Some(image) = client_result("parse_single", result)? {
        prop_assert_eq!(image::detect(&image.bytes), Some(image.kind));
        prop_assert!(!image.bytes.is_empty());
    }
    Ok(())
}

fn check_internal(body: &[u8]) -> Result<(), TestCaseError> {
    if let Ok((create, data)) = internal::decode(body) {
        let declared: u128 = create.blobs.iter().map(|b| b.len as u128).sum();
        prop_assert_eq!(declared, data.len() as u128);
    }
    Ok(())
}

fn check_request(input: RequestInput) -> Result<(), TestCaseError> {
    match input {
        RequestInput::Any(Bytes(body)) => {
            check_batch(&body, None)?;
            check_single(Some("image/png"), body.clone())?;
            check_single(Some("multipart/form-data; boundary=b"), body.clone())?;
            client_result("parse_request", enrich::parse_request(&body))?;
            check_synthetic(&body)?;
            check_internal(&body)
        }
        RequestInput::Batch {
            body,
            expected_images,
        } => check_batch(body.as_bytes(), expected_images),
        RequestInput::Single { content_type, body } => {
            check_single(content_type.as_deref(), body.0)
        }
        RequestInput::Enrich {
            body,
            expected_books,
        } => check_enrich(body.as_bytes(), expected_books),
        RequestInput::Synthetic(body) => check_synthetic(body.as_bytes()),
        RequestInput::Internal {
            create,
            data: Bytes(data),
        } => {
            let frame = internal::encode(&create, &data);
            let declared: u128 = create.blobs.iter().map(|b| b.len as u128).sum();
            match internal::decode(&frame) {
                Ok((back, back_data)) => {
                    prop_assert_eq!(
                        declared,
                        data.len() as u128,
                        "blobs that do not add up were accepted"
                    );
                    prop_assert_eq!(&back, create.as_ref());
                    prop_assert_eq!(back_data.as_slice(), data.as_slice());
                }
                Err(e) => {
                    prop_assert_ne!(
                        declared,
                        data.len() as u128,
                        "a consistent frame was refused: {}",
                        e
                    )
                }
            }
            Ok(())
        }
    }
}

#[test]
fn fuzz_request_bodies() {
    run_target("request_bodies", request_input(), check_request);
}

// ---------------------------------------------------------------------------------------------
// 7. Small parsers

const SIGNING_KEY: &[u8] = b"fuzz-signing-key-0123456789abcdef";
const B64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// How an issued token is altered before it is presented.
#[derive(Debug, Clone)]
enum TokenEdit {
    None,
    /// One character replaced.
    Replace(Index, char),
    /// The same bytes in the standard alphabet (`+` and `/` for `-` and `_`).
    StandardAlphabet,
    /// The last character's two low bits, which carry no byte of the token, changed.
    UnusedBits(u8),
}

#[derive(Debug, Clone)]
enum SmallInput {
    Base64Text {
        text: String,
        max: usize,
    },
    Base64RoundTrip {
        bytes: Vec<u8>,
        style: u8,
    },
    JobId(String),
    CanonicalId {
        bytes: [u8; 16],
        upper: Vec<bool>,
        edit: Option<(Index, char)>,
    },
    Bearer(Option<String>),
    BearerHeader {
        lead: &'static str,
        scheme: &'static str,
        spaces: &'static str,
        token: String,
        trail: &'static str,
    },
    Token {
        job_id: String,
        token: String,
    },
    Issued {
        job_id: String,
        other_job: String,
        random: [u8; 16],
        edit: TokenEdit,
    },
}

fn small_input() -> impl Strategy<Value = SmallInput> {
    let max = prop_oneof![3 => 0usize..64, 1 => Just(usize::MAX), 1 => any::<usize>()];
    let base64_text = prop_oneof![
        2 => "[A-Za-z0-9+/=_ \\n\\r\\t-]{0,64}",
        1 => any::<String>(),
        1 => (select(&["data:", "data:image/png;base64,", "data:,", "data"][..]), "[A-Za-z0-9+/=]{0,32}")
            .prop_map(|(head, tail)| format!("{head}{tail}")),
    ];
    let id_text = prop_oneof![
        2 => any::<String>(),
        2 => "[0-9a-fA-F-]{30,40}",
        1 => (any::<[u8; 16]>(), select(&["{", "urn:uuid:", " ", ""][..]), select(&["}", "", "\n", " "][..]))
            .prop_map(|(b, head, tail)| format!("{head}{}{tail}", uuid_text(&b, false))),
        1 => any::<[u8; 16]>().prop_map(|b| uuid_text(&b, false).replace('-', "")),
    ];
    let token_edit = prop_oneof![
        1 => Just(TokenEdit::None),
        3 => (any::<Index>(), select(b"ABCab019-_+/=. ".iter().map(|&b| char::from(b)).collect::<Vec<_>>()))
            .prop_map(|(at, c)| TokenEdit::Replace(at, c)),
        1 => Just(TokenEdit::StandardAlphabet),
        1 => (1u8..4).prop_map(TokenEdit::UnusedBits),
    ];
    prop_oneof![
        2 => (base64_text, max).prop_map(|(text, max)| SmallInput::Base64Text { text, max }),
        2 => (prop::collection::vec(any::<u8>(), 0..96), 0u8..4)
            .prop_map(|(bytes, style)| SmallInput::Base64RoundTrip { bytes, style }),
        2 => id_text.prop_map(SmallInput::JobId),
        2 => (any::<[u8; 16]>(), prop::collection::vec(any::<bool>(), 36), prop::option::weighted(0.5, (any::<Index>(), select(&['0', 'a', 'F', 'g', '-', '{', ' ', 'é'][..]))))
            .prop_map(|(bytes, upper, edit)| SmallInput::CanonicalId { bytes, upper, edit }),
        1 => prop::option::of(any::<String>()).prop_map(SmallInput::Bearer),
        2 => (
            select(&["", " ", "\t"][..]),
            select(&["Bearer", "bearer", "BEARER", "Basic", "Token", "Bearer:"][..]),
            select(&[" ", "  ", "\t", ""][..]),
            // Never a leading space, which would stand in for the missing separator.
            "([^ ]\\PC{0,19})?",
            select(&["", " ", "\r\n"][..]),
        )
            .prop_map(|(lead, scheme, spaces, token, trail)| SmallInput::BearerHeader { lead, scheme, spaces, token, trail }),
        2 => ("\\PC{0,40}", prop_oneof![1 => any::<String>(), 2 => "[A-Za-z0-9_-]{43}"])
            .prop_map(|(job_id, token)| SmallInput::Token { job_id, token }),
        3 => ("\\PC{0,40}", "\\PC{0,40}", any::<[u8; 16]>(), token_edit)
            .prop_map(|(job_id, other_job, random, edit)| SmallInput::Issued { job_id, other_job, random, edit }),
    ]
}

fn check_base64_text(text: &str, max: usize) -> Result<(), TestCaseError> {
    if let Ok(bytes) = base64::decode(text, max) {
        prop_assert!(
            bytes.len() <= max,
            "{} bytes past the limit {}",
            bytes.len(),
            max
        );
    }
    Ok(())
}

fn check_base64_round_trip(bytes: &[u8], style: u8) -> Result<(), TestCaseError> {
    let text = base64_of(bytes, style);
    prop_assert_eq!(base64::decode(&text, bytes.len()), Ok(bytes.to_vec()));
    if !bytes.is_empty() {
        let limited = base64::decode(&text, bytes.len() - 1);
        prop_assert!(
            matches!(limited, Err(base64::DecodeError::TooLarge { .. })),
            "decoding past the limit gave {:?}",
            limited
        );
    }
    Ok(())
}

/// The documented rule: exactly 36 characters, hyphens at 8, 13, 18 and 23, hex elsewhere.
fn is_canonical_shape(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        })
}

fn check_job_id(text: &str) -> Result<(), TestCaseError> {
    let parsed = ids::parse_job_id(text);
    if is_canonical_shape(text) {
        prop_assert_eq!(parsed, Some(text.to_ascii_lowercase()));
    } else {
        prop_assert_eq!(parsed, None, "non-canonical id accepted: {:?}", text);
    }
    Ok(())
}

fn respell(token: &str, edit: &TokenEdit) -> String {
    match edit {
        TokenEdit::None => token.to_string(),
        TokenEdit::Replace(at, c) => {
            let mut chars: Vec<char> = token.chars().collect();
            let at = pick(at, chars.len());
            if let Some(slot) = chars.get_mut(at) {
                *slot = *c;
            }
            chars.into_iter().collect()
        }
        TokenEdit::StandardAlphabet => token.replace('-', "+").replace('_', "/"),
        TokenEdit::UnusedBits(bits) => {
            let mut bytes = token.as_bytes().to_vec();
            if let Some(last) = bytes.last_mut() {
                if let Some(value) = B64URL.iter().position(|b| b == last) {
                    *last = B64URL[value ^ usize::from(*bits)];
                }
            }
            String::from_utf8(bytes).unwrap_or_default()
        }
    }
}

fn check_small(input: SmallInput) -> Result<(), TestCaseError> {
    let signer = TokenSigner::new(SIGNING_KEY);
    match input {
        SmallInput::Base64Text { text, max } => check_base64_text(&text, max),
        SmallInput::Base64RoundTrip { bytes, style } => check_base64_round_trip(&bytes, style),
        SmallInput::JobId(text) => check_job_id(&text),
        SmallInput::CanonicalId { bytes, upper, edit } => {
            let mut text: String = uuid_text(&bytes, false)
                .chars()
                .zip(upper)
                .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
                .collect();
            if let Some((at, c)) = edit {
                let at = pick(&at, text.len());
                text.replace_range(at..at + 1, &c.to_string());
            }
            check_job_id(&text)
        }
        SmallInput::Bearer(header) => {
            if let Some(token) = token::bearer(header.as_deref()) {
                let header = header.as_deref().unwrap_or_default();
                prop_assert!(!token.is_empty() && token.trim() == token);
                prop_assert!(header.contains(token));
                let value = header.trim();
                prop_assert!(value
                    .get(..7)
                    .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer ")));
            }
            Ok(())
        }
        SmallInput::BearerHeader {
            lead,
            scheme,
            spaces,
            token,
            trail,
        } => {
            let header = format!("{lead}{scheme}{spaces}{token}{trail}");
            let expected = (scheme.eq_ignore_ascii_case("bearer")
                && spaces.starts_with(' ')
                && !token.trim().is_empty())
            .then(|| token.trim());
            prop_assert_eq!(token::bearer(Some(&header)), expected);
            Ok(())
        }
        SmallInput::Token { job_id, token } => {
            prop_assert!(
                !signer.is_authentic(&job_id, &token),
                "a token that was never issued is authentic"
            );
            Ok(())
        }
        SmallInput::Issued {
            job_id,
            other_job,
            random,
            edit,
        } => {
            let issued = signer.issue(&job_id, random);
            prop_assert_eq!(issued.len(), token::TOKEN_CHARS);
            prop_assert!(signer.is_authentic(&job_id, &issued));
            if other_job != job_id {
                prop_assert!(!signer.is_authentic(&other_job, &issued));
            }
            prop_assert!(!TokenSigner::new(b"another key").is_authentic(&job_id, &issued));
            let presented = respell(&issued, &edit);
            if presented != issued {
                prop_assert!(
                    !signer.is_authentic(&job_id, &presented),
                    "{:?} is authentic, but only {:?} was issued",
                    presented,
                    issued
                );
            }
            Ok(())
        }
    }
}

#[test]
fn fuzz_small_parsers() {
    run_target("small_parsers", small_input(), check_small);
}
