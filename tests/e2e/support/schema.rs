//! Every WebSocket message and JSON body the tests receive from the worker, checked against
//! docs/schema/protocol.json in its closed form (`schema::closed`): a message or body the schema
//! does not describe, or with a member it does not name, panics in the test that got it.
//!
//! The schema is read and compiled once per test process. Synthetic jobs (test routes) have
//! their own summary and results, so messages and answers of the jobs created on
//! `/api/test/jobs` are checked against the schema with those in place of the pipelines'.

use bookstrack_jobs::routes::{resolve, Resolved, Route};
use bookstrack_jobs::schema::{answer_entry, closed, MESSAGES, SCHEMA_PATH};
use jsonschema::ValidatorMap;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// Off for the benchmark, which times the worker, not this client's validation (16,000
/// validated messages made the fan-out figure half of what the worker delivers).
static CHECKING: AtomicBool = AtomicBool::new(true);

/// Stops checking messages and answers in this process. Only the benchmark, which shares
/// this harness, calls it.
#[allow(dead_code)]
pub fn stop_checking() {
    CHECKING.store(false, Ordering::Relaxed);
}

fn checking() -> bool {
    CHECKING.load(Ordering::Relaxed)
}

struct Validators {
    /// The schema's entries, for real jobs and everything else.
    jobs: ValidatorMap,
    /// The same, with the synthetic jobs' summary and results in place of the pipelines'.
    synthetic: ValidatorMap,
}

fn validators() -> &'static Validators {
    static VALIDATORS: OnceLock<Validators> = OnceLock::new();
    VALIDATORS.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(SCHEMA_PATH);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let schema = closed(&serde_json::from_str(&text).expect("the schema is JSON"));
        let compile =
            |schema: &Value| jsonschema::validator_map_for(schema).expect("the schema compiles");
        Validators {
            jobs: compile(&schema),
            synthetic: compile(&for_synthetic_jobs(schema.clone())),
        }
    })
}

/// The schema as it applies to synthetic jobs: whatever their pipeline, their summary is a
/// `SyntheticSummary` and their results page a `SyntheticResults`.
fn for_synthetic_jobs(mut schema: Value) -> Value {
    let defs = schema["$defs"].as_object_mut().expect("$defs");
    for name in ["CsvSummary", "ScanSummary", "EnrichmentSummary"] {
        defs.insert(name.into(), json!({ "$ref": "#/$defs/SyntheticSummary" }));
    }
    for name in ["CsvResults", "ScanResults", "EnrichmentResults"] {
        defs.insert(name.into(), json!({ "$ref": "#/$defs/SyntheticResults" }));
    }
    schema
}

/// The ids of the synthetic jobs created so far in this process.
fn synthetic_jobs() -> &'static Mutex<HashSet<String>> {
    static IDS: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    IDS.get_or_init(Default::default)
}

/// Marks a job as synthetic, for jobs the harness did not see created (stored by an older
/// worker); those created on `/api/test/jobs` are noted by [`check_answer`].
pub fn note_synthetic_job(job_id: &str) {
    synthetic_jobs()
        .lock()
        .unwrap()
        .insert(job_id.to_ascii_lowercase());
}

fn is_synthetic(job_id: Option<&str>) -> bool {
    job_id.is_some_and(|id| {
        synthetic_jobs()
            .lock()
            .unwrap()
            .contains(&id.to_ascii_lowercase())
    })
}

/// Validates `value` against the entry `def`; panics with what was received and why it is
/// not what the schema describes.
fn validate(def: &str, job_id: Option<&str>, value: &Value, what: &str, text: &str) {
    let validators = validators();
    let map = if is_synthetic(job_id) {
        &validators.synthetic
    } else {
        &validators.jobs
    };
    let validator = map
        .get(&format!("#/$defs/{def}"))
        .unwrap_or_else(|| panic!("{SCHEMA_PATH} has no entry {def} (for {what}: {text})"));
    let errors: Vec<String> = validator
        .iter_errors(value)
        .take(5)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} is not what {SCHEMA_PATH} describes as {def}:\n  {}\nreceived: {text}",
        errors.join("\n  ")
    );
}

/// A text frame from the server: JSON, of a known `type`, valid against that type's entry.
pub fn check_message(text: &str) -> Value {
    let message: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("a socket message that is not JSON ({e}): {text}"));
    if !checking() {
        return message;
    }
    let kind = message["type"].as_str().unwrap_or_default();
    assert!(
        MESSAGES.contains(&kind),
        "a socket message of a type {SCHEMA_PATH} does not list: {text}"
    );
    let job_id = message["jobId"].as_str();
    validate(kind, job_id, &message, "a socket message", text);
    message
}

/// An HTTP answer of the worker to a request for `path`: a JSON body is validated against its
/// route's entry (`Error` for every 4xx and 5xx). Bodies that are not JSON (the console's
/// files) and empty ones (preflights) are left alone.
pub fn check_answer(path: &str, status: u16, content_type: Option<&str>, text: &str) {
    let json = content_type.is_some_and(|ct| ct.starts_with("application/json"));
    if !json || !checking() {
        return;
    }
    let body: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("a JSON answer that is not JSON ({e}): {status} {text}"));
    let route =
        ["GET", "POST"]
            .into_iter()
            .find_map(|method| match resolve(method, path, true, true) {
                Ok(Resolved::Route(route)) => Some(route),
                _ => None,
            });
    let what = format!("the answer {status} to {path}");
    if status >= 400 {
        return validate("Error", None, &body, &what, text);
    }
    let entry = route
        .as_ref()
        .and_then(answer_entry)
        .unwrap_or_else(|| panic!("{what} is JSON, but its route has no entry: {text}"));
    let job_id = match &route {
        Some(Route::JobState { job_id })
        | Some(Route::Results { job_id, .. })
        | Some(Route::CancelById { job_id }) => Some(job_id.as_str()),
        Some(Route::CreateSyntheticJob) => {
            if let Some(id) = body["data"]["jobId"].as_str() {
                note_synthetic_job(id);
            }
            None
        }
        _ => body["data"]["jobId"].as_str(),
    };
    validate(entry, job_id, &body, &what, text);
}
