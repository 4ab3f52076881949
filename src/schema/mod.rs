//! The machine-readable contract (contract 9.5): docs/schema/protocol.json, generated from the
//! types the worker sends. Native builds only: the wasm never carries a schema.
//!
//! [`protocol_schema`] builds it with `schemars` from the wire types themselves
//! ([`ServerMessage`] in its [`Envelope`], the HTTP [`envelope`](crate::envelope) around each
//! answer's data type, each pipeline's summary and results page), then adds what types cannot
//! say: which summary goes with which pipeline, and which fields a job has in which status.
//! `$defs` holds one entry per server message `type`, one per client message `type` and one
//! per HTTP answer (see [`MESSAGES`], [`CLIENT_MESSAGES`] and [`ANSWERS`]), the unions
//! `ServerMessage` and `ClientMessage`, and the types they use under their own names.
//!
//! Objects are open in the file, as the contract wants clients to ignore members they do not
//! know. The tests check the wire against [`closed`], the same schema with every object
//! closed, so a member the types do not name fails them.
//!
//! The checked-in file must equal the generated one: `cargo test --lib schema` fails when it
//! does not, and `UPDATE_SCHEMA=1 cargo test --lib schema` rewrites it.

use crate::answers::{CancelJobData, CreateJobData, HealthData, TokenRefreshData};
use crate::envelope::{Failure, Success};
use crate::job::{JobState, Pipeline};
use crate::pipelines::csv::CsvResultsPage;
use crate::pipelines::enrich::EnrichmentResultsPage;
use crate::pipelines::scan::ScanResultsPage;
use crate::pipelines::synthetic::{SyntheticResults, SyntheticSummary};
use crate::protocol::{ClientMessage, Envelope, Pong, ServerMessage, PROTOCOL_VERSION};
use crate::results::Paged;
use crate::routes::Route;

pub mod rules;
pub use rules::*;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

/// Where the schema is checked in, relative to the crate root.
pub const SCHEMA_PATH: &str = "docs/schema/protocol.json";

/// The command that rewrites the checked-in schema.
pub const REGENERATE: &str = "UPDATE_SCHEMA=1 cargo test --lib schema";

/// The server's WebSocket messages, by `type`: every [`ServerMessage`] variant in its
/// [`Envelope`], and the runtime's `pong`.
pub const MESSAGES: &[&str] = &[
    "ready_ack",
    "reconnected",
    "job_started",
    "job_progress",
    "item_result",
    "job_complete",
    "error",
    "pong",
];

/// What a client may send over the socket, by `type` ([`ClientMessage`]).
pub const CLIENT_MESSAGES: &[&str] = &["ready", "cancel", "ping"];

/// The unions: any message the server sends over the socket (`pong` included), and any a
/// client may send.
pub const UNIONS: &[&str] = &["ServerMessage", "ClientMessage"];

/// The HTTP answers, each the whole body a client receives: `{data, metadata}` around a
/// route's data, or `Error`, `{data: null, metadata, error}`. `SyntheticResults` is the test
/// route's (`ENABLE_TEST_ROUTES`), outside the contract.
pub const ANSWERS: &[&str] = &[
    "CreateJob",
    "JobState",
    "CsvResults",
    "ScanResults",
    "EnrichmentResults",
    "TokenRefresh",
    "CancelJob",
    "Health",
    "Error",
    "SyntheticResults",
];

/// The entry of a route's successful answers, `None` for routes that answer no JSON (the
/// socket upgrade, the console's files). Every error answer is `Error`. Exhaustive, so a new
/// route must name its entry. A synthetic job's results come from its pipeline's route, with
/// the `SyntheticResults` entry.
pub fn answer_entry(route: &Route) -> Option<&'static str> {
    Some(match route {
        Route::Health => "Health",
        Route::CreateCsvImport
        | Route::CreateScan
        | Route::CreateScanBatch
        | Route::CreateEnrichment
        | Route::CreateSyntheticJob => "CreateJob",
        Route::JobState { .. } => "JobState",
        Route::TokenRefresh => "TokenRefresh",
        Route::CancelById { .. } | Route::CancelByBody => "CancelJob",
        Route::Results { pipeline, .. } => match pipeline {
            Pipeline::CsvImport => "CsvResults",
            Pipeline::AiScan => "ScanResults",
            Pipeline::BatchEnrichment => "EnrichmentResults",
        },
        Route::ProgressSocket | Route::Console(_) => return None,
    })
}

/// The schema of the wire, as checked in at [`SCHEMA_PATH`].
pub fn protocol_schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    let mut defs = Map::new();

    // Messages: the envelope once per payload variant, with the variant's `type` pinned.
    let envelope = Envelope::json_schema(&mut generator).to_value();
    let name = ServerMessage::schema_name();
    let payloads = generator
        .definitions_mut()
        .remove(name.as_ref())
        .expect("ServerMessage is defined by the envelope");
    for payload in payloads["oneOf"]
        .as_array()
        .expect("one schema per variant")
    {
        let kind = payload["properties"]["type"]["const"]
            .as_str()
            .expect("each variant pins its type")
            .to_string();
        let mut message = envelope.clone();
        message["properties"]["type"] = json!({ "type": "string", "const": kind });
        message["properties"]["payload"] = payload.clone();
        defs.insert(kind, message);
    }
    defs.insert("pong".into(), Pong::json_schema(&mut generator).to_value());
    defs.insert("ServerMessage".into(), one_of(MESSAGES));

    // Client messages: one entry per variant, as they are.
    let client = ClientMessage::json_schema(&mut generator).to_value();
    for message in client["oneOf"].as_array().expect("one schema per variant") {
        let kind = message["properties"]["type"]["const"]
            .as_str()
            .expect("each variant pins its type");
        defs.insert(kind.to_string(), message.clone());
    }
    defs.insert("ClientMessage".into(), one_of(CLIENT_MESSAGES));

    // HTTP answers: the whole body.
    let answers = [
        ("CreateJob", body::<CreateJobData>(&mut generator)),
        ("JobState", body::<JobState>(&mut generator)),
        ("CsvResults", body::<Paged<CsvResultsPage>>(&mut generator)),
        (
            "ScanResults",
            body::<Paged<ScanResultsPage>>(&mut generator),
        ),
        (
            "EnrichmentResults",
            body::<Paged<EnrichmentResultsPage>>(&mut generator),
        ),
        ("TokenRefresh", body::<TokenRefreshData>(&mut generator)),
        ("CancelJob", body::<CancelJobData>(&mut generator)),
        ("Health", body::<HealthData>(&mut generator)),
        ("Error", Failure::json_schema(&mut generator).to_value()),
        (
            "SyntheticResults",
            body::<Paged<SyntheticResults>>(&mut generator),
        ),
    ];
    for (name, schema) in answers {
        defs.insert(name.into(), schema);
    }
    // Not reached from any answer: the synthetic jobs' summary, for the harness.
    generator.subschema_for::<SyntheticSummary>();

    for (name, schema) in std::mem::take(generator.definitions_mut()) {
        assert!(
            !defs.contains_key(&name),
            "the type {name} is named like a message or an answer"
        );
        defs.insert(name, schema);
    }
    for def in defs.values_mut() {
        tidy(def);
    }
    for (name, def) in &mut defs {
        if let Some(object) = def.as_object_mut() {
            object.insert("description".into(), describe(name).into());
        }
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": format!("bookstrack-jobs wire protocol (messages version {PROTOCOL_VERSION})"),
        "description": format!(
            "Every WebSocket message and HTTP JSON answer of the worker, generated from its Rust types \
             (docs/PROTOCOL.md section 11). Messages are under their `type`, HTTP answers under \
             CamelCase names, `ServerMessage` and `ClientMessage` are the unions of the messages; \
             the rest are the types they use. Objects are open: ignore members you do not know. \
             Regenerate with `{REGENERATE}`."
        ),
        "$defs": defs,
    })
}

/// Exactly one of the entries `names`.
fn one_of(names: &[&str]) -> Value {
    let refs: Vec<Value> = names
        .iter()
        .map(|name| json!({ "$ref": format!("#/$defs/{name}") }))
        .collect();
    json!({ "oneOf": refs })
}

/// The whole body of a successful answer carrying `T`.
fn body<T: JsonSchema>(generator: &mut SchemaGenerator) -> Value {
    Success::<T>::json_schema(generator).to_value()
}

/// The description of a top-level entry; the types' own doc comments are for Rust readers and
/// are left out.
fn describe(name: &str) -> String {
    let answer = |what: &str| format!("HTTP answer: {what}, the whole body.");
    match name {
        "pong" => {
            "WebSocket: the answer to a client's {\"type\":\"ping\"}, without an envelope.".into()
        }
        _ if MESSAGES.contains(&name) => {
            format!("WebSocket: the server message `{name}`, the whole envelope.")
        }
        _ if CLIENT_MESSAGES.contains(&name) => format!(
            "WebSocket: the client message `{name}`; members other than `type` are ignored."
        ),
        "ServerMessage" => "WebSocket: any message the server sends, `pong` included.".into(),
        "ClientMessage" => "WebSocket: any message a client may send.".into(),
        "CreateJob" => answer("202 of every creation route"),
        "JobState" => answer("200 of GET /api/job-state/{jobId}"),
        "CsvResults" => answer("200 of GET /v1/csv/results/{jobId}, one page"),
        "ScanResults" => answer("200 of GET /v1/scan/results/{jobId}, one page"),
        "EnrichmentResults" => answer("200 of GET /v1/enrichment/results/{jobId}, one page"),
        "TokenRefresh" => answer("200 of POST /api/token/refresh"),
        "CancelJob" => answer("200 of every cancel route"),
        "Health" => answer("200 of GET /health"),
        "Error" => answer("every 4xx and 5xx"),
        "SyntheticResults" => {
            answer("200 of a synthetic job's results route; test deployments only")
        }
        "SyntheticSummary" => "The summary of a synthetic job; test deployments only.".into(),
        _ => format!("{name}, as used by the entries above."),
    }
}

/// Applies what holds for every type of the wire, below the top level:
/// - doc comments are not descriptions (they speak of Rust, and change with it);
/// - a field that may be absent is absent, never `null`: every optional field of the wire is
///   skipped when it has no value, so its schema drops the `null` that `Option` brings.
fn tidy(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    object.remove("description");
    object.remove("title");
    let required: Vec<String> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        for (name, property) in properties.iter_mut() {
            if !required.contains(name) {
                drop_null(property);
            }
        }
    }
    // Only keywords that hold schemas: `properties` maps names (one may be "title") to
    // schemas, and `const` or `enum` hold values.
    for (keyword, value) in object.iter_mut() {
        match (keyword.as_str(), value) {
            ("properties" | "$defs" | "patternProperties", Value::Object(schemas)) => {
                schemas.values_mut().for_each(tidy)
            }
            ("allOf" | "anyOf" | "oneOf" | "prefixItems", Value::Array(schemas)) => {
                schemas.iter_mut().for_each(tidy)
            }
            (
                "items" | "additionalProperties" | "if" | "then" | "else" | "not" | "contains",
                schema,
            ) => tidy(schema),
            _ => {}
        }
    }
}

/// `{"type": [T, "null"]}` becomes `{"type": T}`; `{"anyOf": [S, {"type": "null"}]}` becomes S.
fn drop_null(schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(types)) = object.get("type") {
        let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        if kept.len() < types.len() {
            let kept = match kept.as_slice() {
                [one] => one.clone(),
                _ => Value::Array(kept),
            };
            object.insert("type".into(), kept);
        }
    }
    let null = json!({ "type": "null" });
    if let Some(Value::Array(any)) = object.get("anyOf") {
        if any.len() == 2 && any.contains(&null) {
            let other = any.iter().find(|s| **s != null).cloned();
            object.remove("anyOf");
            if let Some(Value::Object(other)) = other {
                for (key, value) in other {
                    object.entry(key).or_insert(value);
                }
            }
        }
    }
}

/// `schema` with every object closed: `unevaluatedProperties: false` on each object type that
/// names its properties (not on the `if`/`then` parts, which constrain an object defined
/// elsewhere, nor on free-form maps). A member the schema does not name then fails; the tests
/// check the wire against this form.
pub fn closed(schema: &Value) -> Value {
    let mut schema = schema.clone();
    close(&mut schema);
    schema
}

fn close(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            let is_object_type = object.get("type") == Some(&json!("object"));
            if is_object_type
                && object.contains_key("properties")
                && !object.contains_key("additionalProperties")
            {
                object.insert("unevaluatedProperties".into(), Value::Bool(false));
            }
            for (keyword, value) in object.iter_mut() {
                // `const` and `enum` hold values, not schemas.
                if keyword != "const" && keyword != "enum" {
                    close(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(close),
        _ => {}
    }
}

/// The schema as the file holds it: pretty, with a final newline.
pub fn protocol_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&protocol_schema()).expect("JSON");
    text.push('\n');
    text
}

#[cfg(test)]
pub(crate) mod tests;
