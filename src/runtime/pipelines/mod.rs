//! Dispatch from the job object to the pipeline a job runs: preparing, stepping, results.

mod csv;
mod enrich;
mod scan;
mod synthetic;

pub use csv::INPUT_PREFIX as CSV_INPUT_PREFIX;
pub use enrich::INPUT_KEY as ENRICH_INPUT_KEY;

use crate::error::ApiError;
use crate::job::JobError;
use crate::pipelines::csv::Deduper;
use crate::pipelines::enrich::BookInput;
use crate::pipelines::work::Work;
use crate::runtime::http;
use crate::runtime::job_object::JobObject;
use crate::runtime::store::WriteBatch;
use crate::time::Millis;
use serde_json::Value;
use std::rc::Rc;

/// What one run of the process task achieved.
pub enum StepOutcome {
    /// More to do: run again after this delay.
    Continue { delay_ms: Millis },
    /// Finished: the summary for `job_complete`. Running the step again must give the same.
    Done { summary: Value },
}

/// Why a step (or the preparation before the first one) did not succeed.
pub enum StepFailure {
    /// Worth retrying with backoff; when the retries run out, the job fails with this error
    /// code and a retryable error.
    Transient { code: &'static str, message: String },
    /// Retrying cannot help; the job fails with this error.
    Permanent(JobError),
}

impl StepFailure {
    /// An upstream provider failed in a way that may pass (5xx, timeout, rate limit).
    pub fn provider(message: impl Into<String>) -> Self {
        Self::Transient {
            code: "PROVIDER_ERROR",
            message: message.into(),
        }
    }

    /// Our own side failed (storage, state that should be there); retried like the rest.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Transient {
            code: "INTERNAL_ERROR",
            message: message.into(),
        }
    }
}

/// In-memory pipeline state that is not persisted (it can be rebuilt from storage), and the
/// results buffered until the next checkpoint.
#[derive(Default)]
pub struct Cache {
    /// Result values (key, JSON text) to write with the next checkpoint.
    pub pending: Vec<(String, String)>,
    /// An enrichment batch's books.
    pub books: Option<Rc<Vec<BookInput>>>,
    /// A CSV import's upload, its dedupe memory and its rows not yet stored.
    pub csv_file: Option<Rc<Vec<u8>>>,
    pub csv_deduper: Option<Deduper>,
    pub csv_pending: csv::Pending,
}

/// Drains the results buffered since the last checkpoint into a write batch; a CSV import
/// also advances its slice counter, which the same write stores.
pub fn take_pending(obj: &JobObject) -> WriteBatch {
    let mut batch = WriteBatch::default();
    for (key, text) in obj.with_cache(|cache| std::mem::take(&mut cache.pending)) {
        batch.text(&key, text);
    }
    csv::take_pending(obj, &mut batch);
    batch
}

fn work(obj: &JobObject) -> Option<Work> {
    obj.with_job(|job| job.work.clone())
}

/// Runs when the job starts; returns the total item count.
pub async fn prepare(obj: &JobObject) -> Result<u64, StepFailure> {
    match work(obj) {
        Some(Work::Synthetic(spec)) => Ok(spec.items),
        Some(Work::Scan(w)) => scan::prepare(obj, &w),
        Some(Work::Enrich(w)) => Ok(w.books as u64),
        Some(Work::Csv(w)) => csv::prepare(obj, &w).await,
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
        Some(Work::Synthetic(spec)) => synthetic::step(obj, &spec, attempt).await,
        Some(Work::Scan(_)) => scan::step(obj, attempt, last_attempt).await,
        Some(Work::Enrich(_)) => enrich::step(obj).await,
        Some(Work::Csv(_)) => csv::step(obj).await,
        None => Ok(Err(StepFailure::internal("the job's work is missing"))),
    }
}

/// The full results document of a completed job.
pub async fn results(obj: &JobObject) -> Result<Value, ApiError> {
    let document = match work(obj) {
        Some(Work::Synthetic(spec)) => Ok(synthetic::results(&spec)),
        Some(Work::Scan(_)) => scan::results(obj).await,
        Some(Work::Enrich(_)) => enrich::results(obj).await,
        Some(Work::Csv(_)) => csv::results(obj).await,
        None => return Err(ApiError::not_found("no such job")),
    };
    document.map_err(|e| http::internal("reading results", e))
}

/// Runs once after the job ended in any way: inputs that are no longer needed go.
pub async fn after_end(obj: &JobObject) -> worker::Result<()> {
    match work(obj) {
        Some(Work::Scan(w)) => scan::after_end(obj, &w).await,
        Some(Work::Csv(w)) => csv::after_end(obj, &w).await,
        _ => Ok(()),
    }
}

/// The throttle window a job asks for, if not its pipeline's.
pub fn throttle_override(work: &Work) -> Option<Millis> {
    match work {
        Work::Synthetic(spec) => spec.throttle_ms,
        _ => None,
    }
}

/// The socket coalescing interval a job asks for, if not the default.
pub fn coalesce_override(work: &Work) -> Option<Millis> {
    match work {
        Work::Synthetic(spec) => spec.coalesce_ms,
        _ => None,
    }
}
