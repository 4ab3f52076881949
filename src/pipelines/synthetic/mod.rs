//! A synthetic job kind for tests and benchmarks: N items processed at a chosen pace.
//!
//! It exercises the whole job machinery (sockets, throttle, schedule, retries, cancel,
//! restart) before any real pipeline exists and without a provider. It is only reachable
//! when `ENABLE_TEST_ROUTES` is on.

mod job;

pub use job::SyntheticJob;

use crate::error::ApiError;
use crate::ids::parse_job_id;
use crate::job::Pipeline;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const MAX_ITEMS: u64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyntheticSpec {
    /// Whose throttle policy the job follows and what it reports as its pipeline.
    pub pipeline: Pipeline,
    pub items: u64,
    pub items_per_chunk: u64,
    /// Delay between chunks, so tests can act while the job runs.
    pub chunk_delay_ms: u64,
    /// The process task fails (transiently) on its first this-many attempts.
    pub fail_first_attempts: u32,
    /// Overrides the socket coalescing interval (0 sends every update), for fan-out benches.
    pub coalesce_ms: Option<u64>,
    /// Shortens the throttle's time window, so a flush can be observed in a test.
    #[serde(default)]
    pub throttle_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SpecBody {
    pipeline: Option<String>,
    items: Option<u64>,
    items_per_chunk: Option<u64>,
    chunk_delay_ms: Option<u64>,
    fail_first_attempts: Option<u32>,
    coalesce_ms: Option<u64>,
    throttle_ms: Option<u64>,
    job_id: Option<String>,
}

/// Parses `POST /api/test/jobs`; returns the spec and a proposed job id.
pub fn parse_spec(body: &[u8]) -> Result<(SyntheticSpec, Option<String>), ApiError> {
    let raw: SpecBody = crate::json_body::parse(body)?;
    let pipeline = match raw.pipeline.as_deref() {
        None => Pipeline::CsvImport,
        Some(p) => Pipeline::parse(p)
            .ok_or_else(|| ApiError::invalid(format!("unknown pipeline {p:?}")))?,
    };
    let items = raw.items.unwrap_or(10);
    if !(1..=MAX_ITEMS).contains(&items) {
        return Err(ApiError::invalid(format!(
            "items must be in 1..={MAX_ITEMS}"
        )));
    }
    let job_id = match raw.job_id {
        None => None,
        Some(id) => {
            Some(parse_job_id(&id).ok_or_else(|| ApiError::invalid("jobId must be a UUID"))?)
        }
    };
    let spec = SyntheticSpec {
        pipeline,
        items,
        items_per_chunk: raw.items_per_chunk.unwrap_or(1).clamp(1, MAX_ITEMS),
        chunk_delay_ms: raw.chunk_delay_ms.unwrap_or(0).min(60_000),
        fail_first_attempts: raw.fail_first_attempts.unwrap_or(0),
        coalesce_ms: raw.coalesce_ms.map(|ms| ms.min(10_000)),
        throttle_ms: raw.throttle_ms.map(|ms| ms.clamp(1, 600_000)),
    };
    Ok((spec, job_id))
}

/// What one run of the process task does: the item numbers to report, in order.
pub fn chunk(spec: &SyntheticSpec, processed: u64) -> std::ops::RangeInclusive<u64> {
    let last = (processed + spec.items_per_chunk).min(spec.items);
    (processed + 1)..=last
}

pub fn item_label(item: u64, total: u64) -> String {
    format!("Item {item} of {total}")
}

/// A synthetic job's summary: only the fields every summary has. Test-only, so outside the
/// contract; the schema has it so the end-to-end harness can check synthetic jobs too.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct SyntheticSummary {
    pub total_processed: u64,
    pub success_count: u64,
    pub failure_count: u64,
    pub duration: u64,
}

/// A synthetic job's results, on its pipeline's results route: `{ "items": N }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct SyntheticResults {
    pub items: u64,
}

pub fn summary(spec: &SyntheticSpec, duration_ms: u64) -> Value {
    let summary = SyntheticSummary {
        total_processed: spec.items,
        success_count: spec.items,
        failure_count: 0,
        duration: duration_ms,
    };
    serde_json::to_value(summary).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs_with_defaults_and_limits() {
        let (spec, id) = parse_spec(br#"{"items":5}"#).unwrap();
        assert_eq!(spec.pipeline, Pipeline::CsvImport);
        assert_eq!(
            (spec.items, spec.items_per_chunk, spec.chunk_delay_ms),
            (5, 1, 0)
        );
        assert_eq!(id, None);
        let table: &[&[u8]] = &[
            b"",
            b"[]",
            br#"["csv_import", 3]"#,
            br#"{"items":0}"#,
            br#"{"items":100001}"#,
            br#"{"pipeline":"nope"}"#,
            br#"{"jobId":"x"}"#,
            br#"{"surprise":1}"#,
        ];
        for body in table {
            assert!(
                parse_spec(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let (_, id) = parse_spec(br#"{"jobId":"0B7C8F0E-4D3B-4E44-9A4E-1F2A3B4C5D6E"}"#).unwrap();
        assert_eq!(id.as_deref(), Some("0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e"));
    }

    #[test]
    fn chunks_cover_every_item_once() {
        let (spec, _) = parse_spec(br#"{"items":10,"itemsPerChunk":4}"#).unwrap();
        let mut processed = 0;
        let mut seen = Vec::new();
        while processed < spec.items {
            let range = chunk(&spec, processed);
            seen.extend(range.clone());
            processed = *range.end();
        }
        assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    }
}
