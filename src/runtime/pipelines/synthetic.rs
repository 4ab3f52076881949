//! The synthetic pipeline's glue: reports N items through the same machinery as real work.

use super::{StepFailure, StepOutcome};
use crate::pipelines::synthetic::{self, SyntheticSpec};
use crate::runtime::job_object::JobObject;
use serde_json::{json, Value};

pub async fn step(
    obj: &JobObject,
    spec: &SyntheticSpec,
    attempt: u32,
) -> worker::Result<Result<StepOutcome, StepFailure>> {
    let processed = obj
        .with_job(|job| job.record.state.processed_count)
        .unwrap_or(0);
    // Failures are injected only into runs that have items to process; a run that merely
    // confirms the end (after a held progress report) always succeeds.
    if processed < spec.items && attempt < spec.fail_first_attempts {
        return Ok(Err(StepFailure::provider(format!(
            "synthetic failure on attempt {}",
            attempt + 1
        ))));
    }
    for item in synthetic::chunk(spec, processed) {
        obj.progress(item, Some(synthetic::item_label(item, spec.items)))
            .await?;
    }
    let processed = obj
        .with_job(|job| job.record.state.processed_count)
        .unwrap_or(0);
    if processed >= spec.items {
        return Ok(Ok(StepOutcome::Done {
            summary: synthetic::summary(spec, obj.processing_ms()),
        }));
    }
    Ok(Ok(StepOutcome::Continue {
        delay_ms: spec.chunk_delay_ms,
    }))
}

pub fn results(spec: &SyntheticSpec) -> Value {
    json!({ "items": spec.items })
}
