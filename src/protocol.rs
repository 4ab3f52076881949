//! The WebSocket wire protocol: server message envelopes, client message parsing, close codes.

use crate::error::{ApiError, ErrorCode};
use crate::ids::require_job_id;
use crate::job::{JobError, JobState, Pipeline, Status};
use crate::limits::single_query_param;
use crate::time::Millis;
use serde::Serialize;
use serde_json::{json, Value};

/// The protocol version every server message carries.
pub const PROTOCOL_VERSION: &str = "1.0.0";

/// Client messages larger than this close the socket with 1009.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 64 * 1024;

/// The exact text the runtime answers by itself, without waking the object.
pub const PING_TEXT: &str = r#"{"type":"ping"}"#;
pub const PONG_TEXT: &str = r#"{"type":"pong"}"#;

/// Close reasons are capped by RFC 6455 (control frames carry at most 125 bytes, two of
/// which are the code).
pub const MAX_CLOSE_REASON_BYTES: usize = 123;

/// Every close code the server sends. 1005, 1006 and 1015 are reserved for endpoints to
/// report locally and are never sent; the type makes them unrepresentable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    JobComplete,
    JobCanceled,
    ProtocolError,
    TokenExpired,
    MessageTooBig,
    JobFailed,
    TooManySockets,
    /// A socket silent for longer than `SOCKET_IDLE_SECS`, closed to make room for a new one.
    IdleReplaced,
}

impl CloseCode {
    pub fn code(self) -> u16 {
        match self {
            Self::JobComplete => 1000,
            Self::JobCanceled => 1001,
            Self::ProtocolError => 1002,
            Self::TokenExpired => 1008,
            Self::MessageTooBig => 1009,
            Self::JobFailed => 1011,
            Self::TooManySockets => 1013,
            Self::IdleReplaced => 4000,
        }
    }

    /// The default reason sent with the code.
    pub fn reason(self) -> &'static str {
        match self {
            Self::JobComplete => "job complete",
            Self::JobCanceled => "job canceled",
            Self::ProtocolError => "invalid message",
            Self::TokenExpired => "token expired",
            Self::MessageTooBig => "message too big",
            Self::JobFailed => "job failed",
            Self::TooManySockets => "too many sockets for this job",
            Self::IdleReplaced => "silent for too long; replaced by a new socket",
        }
    }
}

/// Cuts a close reason to the protocol's limit without splitting a UTF-8 character.
pub fn close_reason(text: &str) -> &str {
    crate::text::cut(text, MAX_CLOSE_REASON_BYTES)
}

/// The query of `GET /ws/progress?jobId=..&token=..[&reconnect=true]`, read by one function
/// at the edge (which checks it before touching an object) and in the object (which uses it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeQuery {
    pub job_id: String,
    pub token: Option<String>,
    pub reconnect: bool,
    /// The last `seq` the client saw, to have what came after replayed (contract 9.4).
    pub since: Option<u64>,
}

impl UpgradeQuery {
    /// From the decoded query pairs: a missing or non-UUID `jobId` and any repeated
    /// parameter are 400.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let job_id = require_job_id(single_query_param(pairs, "jobId")?.unwrap_or_default())?;
        let token = single_query_param(pairs, "token")?.map(str::to_string);
        let reconnect = matches!(single_query_param(pairs, "reconnect")?, Some("true" | "1"));
        let since = match single_query_param(pairs, "since")? {
            None => None,
            Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
                ApiError::invalid("since must be a whole number: the last seq the client saw")
                    .with_details(json!({ "field": "since" }))
            })?),
        };
        Ok(Self {
            job_id,
            token,
            reconnect,
            since,
        })
    }
}

/// What a client may send. Read by [`parse_client_text`], not by serde; the schema
/// (`ready`, `cancel`, `ping` in docs/schema/protocol.json) gives the shape it accepts: an
/// object whose `type` names the message, other members ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(
    not(target_arch = "wasm32"),
    derive(schemars::JsonSchema),
    schemars(tag = "type", rename_all = "snake_case")
)]
pub enum ClientMessage {
    Ready,
    Cancel,
    /// A ping that the runtime's exact-text auto-response did not catch (other spacing or
    /// extra fields); answered with a pong all the same.
    Ping,
}

/// Why a client message was refused; each maps to one close code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    TooBig { bytes: usize },
    InvalidJson,
    NotAnObject,
    MissingType,
    TypeNotString,
    UnknownType(String),
    Binary,
}

impl Violation {
    pub fn close_code(&self) -> CloseCode {
        match self {
            Self::TooBig { .. } => CloseCode::MessageTooBig,
            _ => CloseCode::ProtocolError,
        }
    }

    /// A reason for the close frame, within 123 bytes.
    pub fn reason(&self) -> String {
        let text = match self {
            Self::TooBig { bytes } => {
                format!("message of {bytes} bytes exceeds {MAX_CLIENT_MESSAGE_BYTES}")
            }
            Self::InvalidJson => "invalid JSON".to_string(),
            Self::NotAnObject => "message is not a JSON object".to_string(),
            Self::MissingType => "message has no type".to_string(),
            Self::TypeNotString => "message type is not a string".to_string(),
            Self::UnknownType(t) => format!("unknown message type: {t}"),
            Self::Binary => "binary messages are not accepted".to_string(),
        };
        close_reason(&text).to_string()
    }
}

/// Parses a text frame from a client.
pub fn parse_client_text(text: &str) -> Result<ClientMessage, Violation> {
    if text.len() > MAX_CLIENT_MESSAGE_BYTES {
        return Err(Violation::TooBig { bytes: text.len() });
    }
    let value: Value = serde_json::from_str(text).map_err(|_| Violation::InvalidJson)?;
    let object = value.as_object().ok_or(Violation::NotAnObject)?;
    match object.get("type") {
        None => Err(Violation::MissingType),
        Some(Value::String(t)) => match t.as_str() {
            "ready" => Ok(ClientMessage::Ready),
            "cancel" => Ok(ClientMessage::Cancel),
            "ping" => Ok(ClientMessage::Ping),
            other => Err(Violation::UnknownType(other.chars().take(64).collect())),
        },
        Some(_) => Err(Violation::TypeNotString),
    }
}

/// Binary frames are never valid; only their size decides between 1009 and 1002.
pub fn classify_client_binary(len: usize) -> Violation {
    if len > MAX_CLIENT_MESSAGE_BYTES {
        Violation::TooBig { bytes: len }
    } else {
        Violation::Binary
    }
}

/// The payloads the server sends (contract sections 5 and 9.4). Serialized with the `type`
/// tag inside, as the contract's payloads carry it. Each variant is one `$defs` entry of
/// docs/schema/protocol.json, inside its [`Envelope`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ServerMessage {
    ReadyAck {},
    Reconnected {
        status: Status,
        #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 0.0, max = 1.0)))]
        progress: f64,
        processed_count: u64,
        total_count: u64,
        last_update: Millis,
        version: u64,
        /// The events the client missed can no longer be replayed: it should read the job's
        /// state and results instead.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("const" = true)))]
        resync: bool,
    },
    JobStarted {
        total_count: u64,
        #[serde(rename = "estimatedDuration", skip_serializing_if = "Option::is_none")]
        estimated_duration_ms: Option<u64>,
    },
    JobProgress {
        #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 0.0, max = 1.0)))]
        progress: f64,
        status: Status,
        processed_count: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        current_item: Option<String>,
    },
    /// One finished item: an enrichment input (`book`, its results entry) or a scanned photo
    /// (`books` found on it, or `error`).
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(transform = crate::schema::rules::item_result_rules)
    )]
    ItemResult {
        index: u64,
        success: bool,
        // Built by the pipelines from their own types, named here for the schema only.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(
            not(target_arch = "wasm32"),
            schemars(with = "Option<crate::pipelines::enrich::BookOutcome>")
        )]
        book: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(
            not(target_arch = "wasm32"),
            schemars(with = "Option<Vec<crate::pipelines::scan::results::ScanBook>>")
        )]
        books: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(transform = crate::schema::rules::job_complete_rules)
    )]
    JobComplete {
        pipeline: Pipeline,
        /// The pipeline's summary, as it was stored when the job completed.
        #[cfg_attr(
            not(target_arch = "wasm32"),
            schemars(with = "crate::schema::rules::JobSummary")
        )]
        summary: Value,
        #[cfg_attr(
            not(target_arch = "wasm32"),
            schemars(pattern(crate::schema::rules::RESULTS_URL_PATTERN))
        )]
        results_url: String,
    },
    Error {
        code: ErrorCode,
        message: String,
        retryable: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[cfg_attr(
            not(target_arch = "wasm32"),
            schemars(with = "Option<serde_json::Map<String, Value>>")
        )]
        details: Option<Value>,
    },
}

/// The envelope every server message wears on the wire.
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub(crate) struct Envelope<'a> {
    /// The payload's `type`; the schema pins it per message.
    #[serde(rename = "type")]
    kind: &'static str,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(crate::schema::rules::JOB_ID_PATTERN))
    )]
    job_id: &'a str,
    pipeline: Pipeline,
    timestamp: Millis,
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("const" = PROTOCOL_VERSION)))]
    version: &'static str,
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 1)))]
    seq: u64,
    payload: &'a ServerMessage,
}

/// The answer to a client's ping, [`PONG_TEXT`], which the runtime sends by itself and the
/// object as that same text; this type is its shape for the schema (`pong`).
#[derive(Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct Pong {
    #[serde(rename = "type")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("const" = "pong")))]
    pub kind: &'static str,
}

impl Pong {
    pub const MESSAGE: Self = Self { kind: "pong" };
}

impl ServerMessage {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ReadyAck {} => "ready_ack",
            Self::Reconnected { .. } => "reconnected",
            Self::JobStarted { .. } => "job_started",
            Self::JobProgress { .. } => "job_progress",
            Self::ItemResult { .. } => "item_result",
            Self::JobComplete { .. } => "job_complete",
            Self::Error { .. } => "error",
        }
    }

    pub fn reconnected(state: &JobState, resync: bool) -> Self {
        Self::Reconnected {
            status: state.status,
            progress: state.progress,
            processed_count: state.processed_count,
            total_count: state.total_count,
            last_update: state.last_update,
            version: state.version,
            resync,
        }
    }

    pub fn progress(state: &JobState) -> Self {
        Self::JobProgress {
            progress: state.progress,
            status: state.status,
            processed_count: state.processed_count,
            current_item: state.current_item.clone(),
        }
    }

    pub fn failure(error: &JobError) -> Self {
        Self::Error {
            code: error.code,
            message: error.message.clone(),
            retryable: error.retryable,
            details: None,
        }
    }

    /// The message that tells a client how an ended job ended, with the close that follows
    /// it; `None` while the job is still live. A canceled job has no final message, only the
    /// close.
    pub fn final_for(state: &JobState) -> Option<(Option<Self>, CloseCode)> {
        match state.status {
            Status::Complete => Some((
                Some(Self::JobComplete {
                    pipeline: state.pipeline,
                    summary: state.summary.clone().unwrap_or_else(|| json!({})),
                    results_url: state
                        .results_url
                        .clone()
                        .unwrap_or_else(|| state.pipeline.results_url(&state.job_id)),
                }),
                CloseCode::JobComplete,
            )),
            Status::Failed => {
                let error = state.error.clone().unwrap_or(JobError {
                    code: ErrorCode::InternalError,
                    message: "job failed".into(),
                    retryable: false,
                });
                Some((Some(Self::failure(&error)), CloseCode::JobFailed))
            }
            Status::Canceled => Some((None, CloseCode::JobCanceled)),
            Status::Queued | Status::Running => None,
        }
    }

    /// The full envelope as sent on the wire, with the message's place in the job's stream.
    pub fn encode(&self, job_id: &str, pipeline: Pipeline, now: Millis, seq: u64) -> String {
        serde_json::to_string(&Envelope {
            kind: self.kind(),
            job_id,
            pipeline,
            timestamp: now,
            version: PROTOCOL_VERSION,
            seq,
            payload: self,
        })
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_messages() {
        let big = format!(r#"{{"type":"ready","pad":"{}"}}"#, "x".repeat(70_000));
        let table: &[(&str, Result<ClientMessage, Violation>)] = &[
            (r#"{"type":"ready"}"#, Ok(ClientMessage::Ready)),
            (
                r#"{ "type" : "cancel", "extra": 1 }"#,
                Ok(ClientMessage::Cancel),
            ),
            (r#"{"type": "ping"}"#, Ok(ClientMessage::Ping)),
            ("not json", Err(Violation::InvalidJson)),
            ("", Err(Violation::InvalidJson)),
            (r#"{"type":"ready""#, Err(Violation::InvalidJson)),
            ("[1,2]", Err(Violation::NotAnObject)),
            ("\"ready\"", Err(Violation::NotAnObject)),
            ("null", Err(Violation::NotAnObject)),
            (r#"{"kind":"ready"}"#, Err(Violation::MissingType)),
            (r#"{"type":7}"#, Err(Violation::TypeNotString)),
            (r#"{"type":null}"#, Err(Violation::TypeNotString)),
            (
                r#"{"type":"dance"}"#,
                Err(Violation::UnknownType("dance".into())),
            ),
            (
                r#"{"type":"READY"}"#,
                Err(Violation::UnknownType("READY".into())),
            ),
            (&big, Err(Violation::TooBig { bytes: big.len() })),
        ];
        for (text, want) in table {
            assert_eq!(
                &parse_client_text(text),
                want,
                "{}",
                &text[..text.len().min(40)]
            );
        }
    }

    #[test]
    fn upgrade_queries() {
        let id = "0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e";
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        type Want<'a> = Option<(Option<&'a str>, bool, Option<u64>)>;
        let table: &[(&[(&str, &str)], Want)] = &[
            (
                &[("jobId", id), ("token", "t")],
                Some((Some("t"), false, None)),
            ),
            (
                &[("jobId", id), ("reconnect", "true")],
                Some((None, true, None)),
            ),
            (
                &[("jobId", id), ("reconnect", "1")],
                Some((None, true, None)),
            ),
            (
                &[("jobId", id), ("reconnect", "yes")],
                Some((None, false, None)),
            ),
            (
                &[("jobId", id), ("since", "42")],
                Some((None, false, Some(42))),
            ),
            (&[("jobId", id), ("since", "-1")], None),
            (&[("jobId", id), ("since", "x")], None),
            (&[("token", "t")], None),
            (&[("jobId", "nope")], None),
            (&[("jobId", id), ("token", "a"), ("token", "b")], None),
            (
                &[("jobId", id), ("reconnect", "1"), ("reconnect", "1")],
                None,
            ),
        ];
        for (query, want) in table {
            let got = UpgradeQuery::from_pairs(&pairs(query));
            match want {
                Some((token, reconnect, since)) => {
                    let got = got.unwrap();
                    assert_eq!(got.job_id, id);
                    assert_eq!(
                        (got.token.as_deref(), got.reconnect, got.since),
                        (*token, *reconnect, *since)
                    );
                }
                None => assert_eq!(got.unwrap_err().status(), 400, "{query:?}"),
            }
        }
    }

    #[test]
    fn violations_map_to_close_codes() {
        assert_eq!(Violation::TooBig { bytes: 1 }.close_code().code(), 1009);
        for v in [
            Violation::InvalidJson,
            Violation::NotAnObject,
            Violation::MissingType,
            Violation::TypeNotString,
            Violation::UnknownType("x".into()),
            Violation::Binary,
        ] {
            assert_eq!(v.close_code().code(), 1002, "{v:?}");
        }
        assert_eq!(
            classify_client_binary(65_537),
            Violation::TooBig { bytes: 65_537 }
        );
        assert_eq!(classify_client_binary(10), Violation::Binary);
    }

    #[test]
    fn close_codes_are_the_contract_ones_and_never_reserved() {
        let all = [
            (CloseCode::JobComplete, 1000),
            (CloseCode::JobCanceled, 1001),
            (CloseCode::ProtocolError, 1002),
            (CloseCode::TokenExpired, 1008),
            (CloseCode::MessageTooBig, 1009),
            (CloseCode::JobFailed, 1011),
            (CloseCode::TooManySockets, 1013),
            (CloseCode::IdleReplaced, 4000),
        ];
        for (c, n) in all {
            assert_eq!(c.code(), n);
            assert!(![1005, 1006, 1015].contains(&c.code()));
            assert!(c.reason().len() <= MAX_CLOSE_REASON_BYTES);
        }
    }

    #[test]
    fn close_reasons_are_cut_at_char_boundaries() {
        let long_ascii = "a".repeat(500);
        assert_eq!(close_reason(&long_ascii).len(), 123);
        let long_multibyte = "é".repeat(100); // 200 bytes, 2 per char
        let cut = close_reason(&long_multibyte);
        assert_eq!(cut.len(), 122);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(close_reason("short"), "short");
        let reason = Violation::UnknownType("€".repeat(200)).reason();
        assert!(reason.len() <= 123);
    }

    #[test]
    fn envelope_has_contract_fields() {
        let msg = ServerMessage::JobStarted {
            total_count: 3,
            estimated_duration_ms: None,
        };
        let v: Value = serde_json::from_str(&msg.encode("id", Pipeline::AiScan, 42, 7)).unwrap();
        assert_eq!(v["type"], "job_started");
        assert_eq!(v["jobId"], "id");
        assert_eq!(v["pipeline"], "ai_scan");
        assert_eq!(v["timestamp"], 42);
        assert_eq!(v["version"], "1.0.0");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["payload"]["type"], "job_started");
        assert_eq!(v["payload"]["totalCount"], 3);
        assert!(v["payload"].get("estimatedDuration").is_none());
    }

    #[test]
    fn final_message_follows_the_ending() {
        let mut state = JobState::new("j", Pipeline::CsvImport, 0, 0);
        assert!(ServerMessage::final_for(&state).is_none());
        state.start(1, 1).unwrap();
        assert!(ServerMessage::final_for(&state).is_none());
        let mut done = state.clone();
        done.complete(json!({"totalProcessed": 1}), 2).unwrap();
        let (msg, code) = ServerMessage::final_for(&done).unwrap();
        assert_eq!(code, CloseCode::JobComplete);
        assert_eq!(msg.unwrap().kind(), "job_complete");
        let mut failed = state.clone();
        failed
            .fail(
                JobError {
                    code: ErrorCode::ProviderError,
                    message: "m".into(),
                    retryable: true,
                },
                2,
            )
            .unwrap();
        let (msg, code) = ServerMessage::final_for(&failed).unwrap();
        assert_eq!(code, CloseCode::JobFailed);
        let v: Value =
            serde_json::from_str(&msg.unwrap().encode("j", Pipeline::CsvImport, 3, 1)).unwrap();
        assert_eq!(v["payload"]["retryable"], true);
        let mut canceled = state;
        canceled.cancel(2).unwrap();
        assert_eq!(
            ServerMessage::final_for(&canceled),
            Some((None, CloseCode::JobCanceled))
        );
    }

    #[test]
    fn progress_and_reconnected_mirror_state() {
        let mut s = JobState::new("j", Pipeline::BatchEnrichment, 0, 0);
        s.start(4, 1).unwrap();
        s.advance(1, Some("Dune".into()), 2).unwrap();
        let v: Value =
            serde_json::from_str(&ServerMessage::progress(&s).encode("j", s.pipeline, 3, 1))
                .unwrap();
        assert_eq!(v["payload"]["progress"], 0.25);
        assert_eq!(v["payload"]["currentItem"], "Dune");
        assert_eq!(v["payload"]["status"], "running");
        let v: Value = serde_json::from_str(
            &ServerMessage::reconnected(&s, false).encode("j", s.pipeline, 3, 1),
        )
        .unwrap();
        assert_eq!(v["payload"]["processedCount"], 1);
        assert_eq!(v["payload"]["totalCount"], 4);
        assert_eq!(v["payload"]["version"], s.version);
        assert_eq!(v["payload"]["lastUpdate"], 2);
        assert!(v["payload"].get("resync").is_none(), "only when set");
        let v: Value = serde_json::from_str(
            &ServerMessage::reconnected(&s, true).encode("j", s.pipeline, 3, 1),
        )
        .unwrap();
        assert_eq!(v["payload"]["resync"], true);
    }

    #[test]
    fn item_results_carry_only_what_they_have() {
        let msg = ServerMessage::ItemResult {
            index: 3,
            success: false,
            book: None,
            books: None,
            error: Some("no matching book found".into()),
        };
        let v: Value = serde_json::from_str(&msg.encode("j", Pipeline::AiScan, 1, 9)).unwrap();
        assert_eq!(v["type"], "item_result");
        assert_eq!(
            v["payload"],
            json!({"type": "item_result", "index": 3, "success": false, "error": "no matching book found"})
        );
        let ack: Value =
            serde_json::from_str(&ServerMessage::ReadyAck {}.encode("j", Pipeline::AiScan, 1, 2))
                .unwrap();
        assert_eq!(ack["payload"], json!({"type": "ready_ack"}));
    }
}
