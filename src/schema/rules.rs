//! What the types alone cannot say in the schema: the patterns of ids, URLs and times, and
//! the rules that tie a summary to its pipeline and fields to a status. The wire types name
//! these in their `schemars` attributes; they depend on nothing of the wire themselves.

use crate::job::Pipeline;
use crate::pipelines::csv::CsvSummary;
use crate::pipelines::enrich::EnrichmentSummary;
use crate::pipelines::scan::ScanSummary;
use schemars::transform::Transform;
use schemars::{JsonSchema, Schema};
use serde_json::{json, Map, Value};

/// A job id as the server writes it: a UUID, lowercase, hyphenated.
pub const JOB_ID_PATTERN: &str = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
/// `resultsUrl`: the job's results route.
pub const RESULTS_URL_PATTERN: &str =
    "^/v1/(csv|scan|enrichment)/results/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
/// `websocketUrl`: relative, with the job id and a URL-safe token.
pub const WEBSOCKET_URL_PATTERN: &str =
    "^/ws/progress\\?jobId=[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}&token=[A-Za-z0-9_-]+$";
/// `metadata.timestamp`: RFC 3339 in UTC with milliseconds.
pub const TIMESTAMP_PATTERN: &str =
    "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$";
/// `successRate`: `"<books>/<data records>"`.
pub const SUCCESS_RATE_PATTERN: &str = "^[0-9]+/[0-9]+$";

/// Any pipeline's summary; which one a job carries follows from its pipeline, which
/// [`summary_rules`] adds to the schemas that hold a summary.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)] // a shape for the schema, never built
pub enum JobSummary {
    Csv(CsvSummary),
    Scan(ScanSummary),
    Enrichment(EnrichmentSummary),
}

/// The summary type of each pipeline's jobs. Exhaustive, so a new pipeline must name one.
fn summary_def(pipeline: Pipeline) -> String {
    match pipeline {
        Pipeline::CsvImport => CsvSummary::schema_name(),
        Pipeline::AiScan => ScanSummary::schema_name(),
        Pipeline::BatchEnrichment => EnrichmentSummary::schema_name(),
    }
    .into_owned()
}

const PIPELINES: [Pipeline; 3] = [
    Pipeline::CsvImport,
    Pipeline::AiScan,
    Pipeline::BatchEnrichment,
];

/// `if pipeline is P then summary is P's summary`, for every pipeline.
fn summary_rules() -> Vec<Value> {
    PIPELINES
        .iter()
        .map(|&p| {
            let summary = json!({ "$ref": format!("#/$defs/{}", summary_def(p)) });
            when(
                "pipeline",
                json!(p.as_str()),
                json!({ "properties": { "summary": summary } }),
            )
        })
        .collect()
}

/// Adds `rules` to an object schema's `allOf`.
fn add_rules(schema: &mut Map<String, Value>, rules: Vec<Value>) {
    let all = schema
        .entry("allOf")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(all) = all {
        all.extend(rules);
    }
}

/// What [`JobState`] holds in each status (docs/PROTOCOL.md section 5.1): an ended job has
/// `endTime` and no `currentItem`; only a complete one has `summary` and `resultsUrl`, only a
/// failed one `error`. And the summary is its pipeline's.
pub fn job_state_rules(schema: &mut Schema) {
    let by_status = [
        (
            "queued",
            &[][..],
            &["endTime", "summary", "error", "resultsUrl"][..],
        ),
        (
            "running",
            &[],
            &["endTime", "summary", "error", "resultsUrl"],
        ),
        (
            "complete",
            &["endTime", "summary", "resultsUrl"],
            &["error", "currentItem"],
        ),
        (
            "failed",
            &["endTime", "error"],
            &["summary", "resultsUrl", "currentItem"],
        ),
        (
            "canceled",
            &["endTime"],
            &["summary", "error", "resultsUrl", "currentItem"],
        ),
    ];
    let mut rules: Vec<Value> = by_status
        .iter()
        .map(|(status, required, absent)| {
            let absent: Map<String, Value> = absent
                .iter()
                .map(|field| (field.to_string(), Value::Bool(false)))
                .collect();
            when(
                "status",
                json!(status),
                json!({ "required": required, "properties": absent }),
            )
        })
        .collect();
    rules.extend(summary_rules());
    if let Some(object) = schema.as_object_mut() {
        add_rules(object, rules);
    }
}

/// `job_complete`'s payload: the summary is its pipeline's.
pub fn job_complete_rules(schema: &mut Schema) {
    if let Some(object) = schema.as_object_mut() {
        add_rules(object, summary_rules());
    }
}

/// `if` field `name` is `value`, `then` the schema `then`.
fn when(name: &str, value: Value, then: Value) -> Value {
    json!({
        "if": { "properties": { name: { "const": value } }, "required": [name] },
        "then": then,
    })
}

/// An `item_result` payload: a failed item says why; a finished one has its results entry
/// (`book`) or the books found (`books`), and no error.
pub fn item_result_rules(schema: &mut Schema) {
    if let Some(object) = schema.as_object_mut() {
        add_rules(
            object,
            vec![
                when("success", json!(false), json!({ "required": ["error"] })),
                when(
                    "success",
                    json!(true),
                    json!({
                        "properties": { "error": false },
                        "anyOf": [{ "required": ["book"] }, { "required": ["books"] }],
                    }),
                ),
            ],
        );
    }
}

/// An enrichment results line: `enriched` exactly when found, `error` exactly when not.
pub fn outcome_rules(schema: &mut Schema) {
    if let Some(object) = schema.as_object_mut() {
        add_rules(
            object,
            vec![
                when(
                    "success",
                    json!(false),
                    json!({ "required": ["error"], "properties": { "enriched": false } }),
                ),
                when(
                    "success",
                    json!(true),
                    json!({ "required": ["enriched"], "properties": { "error": false, "errorKind": false } }),
                ),
            ],
        );
    }
}

/// Takes fields out of `required`: fields a type always sends today but that stored data
/// written by an earlier version may lack (a summary is sent as it was stored).
pub struct NotRequired(pub &'static [&'static str]);

impl Transform for NotRequired {
    fn transform(&mut self, schema: &mut Schema) {
        if let Some(Value::Array(required)) = schema.get_mut("required") {
            required.retain(|name| !self.0.iter().any(|field| name == field));
        }
    }
}
