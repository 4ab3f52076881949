//! Dispatch from the job object to the pipeline a job runs: preparing, stepping, results.

mod synthetic;

use crate::error::ApiError;
use crate::job::JobError;
use crate::runtime::job_object::JobObject;
use crate::runtime::store::WriteBatch;
use crate::time::Millis;
use crate::work::Work;
use serde_json::Value;

/// What one run of the process task achieved.
pub enum StepOutcome {
    /// More to do: run again after this delay.
    Continue { delay_ms: Millis },
    /// Finished: the summary for `job_complete`, and the last results to write with it.
    Done { summary: Value, extra: WriteBatch },
}

/// Why a step (or the preparation before the first one) did not succeed.
pub enum StepFailure {
    /// Worth retrying with backoff (provider 5xx, timeout, rate limit).
    Transient(String),
    /// Retrying cannot help; the job fails with this error.
    Permanent(JobError),
}

/// In-memory pipeline state that is not persisted (it can be rebuilt from storage).
#[derive(Default)]
pub struct Cache {}

fn work(obj: &JobObject) -> Option<Work> {
    obj.with_job(|job| job.work.clone())
}

/// Runs when the job starts; returns the total item count.
pub async fn prepare(obj: &JobObject) -> Result<u64, StepFailure> {
    match work(obj) {
        Some(Work::Synthetic(spec)) => Ok(spec.items),
        None => Ok(0),
    }
}

/// Runs one chunk. The outer result is an infrastructure failure (storage), which fails the
/// alarm so the platform retries it; the inner one is the pipeline's own outcome.
pub async fn step(
    obj: &JobObject,
    attempt: u32,
    last_attempt: bool,
) -> worker::Result<Result<StepOutcome, StepFailure>> {
    match work(obj) {
        Some(Work::Synthetic(spec)) => synthetic::step(obj, &spec, attempt, last_attempt).await,
        None => Ok(Err(StepFailure::Transient("job vanished".into()))),
    }
}

/// The full results document of a completed job.
pub async fn results(obj: &JobObject) -> Result<Value, ApiError> {
    match work(obj) {
        Some(Work::Synthetic(spec)) => Ok(synthetic::results(&spec)),
        None => Err(ApiError::not_found("no such job")),
    }
}

/// Runs once after the job ended in any way (inputs that are no longer needed go).
pub async fn after_end(_obj: &JobObject) -> worker::Result<()> {
    Ok(())
}

/// The throttle window a job asks for, if not its pipeline's.
pub fn throttle_override(work: &Work) -> Option<Millis> {
    match work {
        Work::Synthetic(spec) => spec.throttle_ms,
    }
}

/// The socket coalescing interval a job asks for, if not the default.
pub fn coalesce_override(work: &Work) -> Option<Millis> {
    match work {
        Work::Synthetic(spec) => spec.coalesce_ms,
    }
}
