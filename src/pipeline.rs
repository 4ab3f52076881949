//! The contract between the step engine and a pipeline: what a step may ask of its job
//! ([`Ctx`]) and what every pipeline provides ([`Pipeline`]).
//!
//! A pipeline never sees the Durable Object, the engine or another pipeline's work: it gets
//! its own progress record (`W`), its own storage keys, provider calls with deadlines, the
//! clock and a progress report, all through [`Ctx`].

use crate::config::Config;
use crate::error::ErrorCode;
use crate::host::{Answer, Batch, CallError, Outbound, StorageError, Stored, Values};
use crate::job::throttle::{PersistPolicy, SOCKET_MIN_INTERVAL_MS};
use crate::job::{JobError, Pipeline as Kind};
use crate::protocol::ServerMessage;
use crate::results::{PageRequest, Position};
use crate::time::Millis;
use serde_json::Value;

/// What one run of the process task achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    /// More to do: run again after this delay.
    Continue { delay_ms: Millis },
    /// Every item is done; the engine asks for the [`Pipeline::summary`] next. Running the
    /// step again must say `Done` again.
    Done,
}

/// Why a step (or the preparation before the first one) did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub enum StepFailure {
    /// Worth retrying with backoff (counted in storage); when the retries run out, the job
    /// fails with this code and a retryable error. `retry_after_ms` is the provider's own
    /// `Retry-After`, which the next attempt honours.
    Transient {
        code: ErrorCode,
        message: String,
        retry_after_ms: Option<Millis>,
    },
    /// Retrying cannot help; the job fails with this error.
    Permanent(JobError),
}

impl StepFailure {
    /// An upstream provider failed in a way that may pass (5xx, 429, timeout).
    pub fn provider(message: impl Into<String>, retry_after_ms: Option<Millis>) -> Self {
        Self::Transient {
            code: ErrorCode::ProviderError,
            message: message.into(),
            retry_after_ms,
        }
    }

    /// Our own side failed (storage, state that should be there); retried like the rest.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Transient {
            code: ErrorCode::InternalError,
            message: message.into(),
            retry_after_ms: None,
        }
    }
}

impl From<StorageError> for StepFailure {
    fn from(e: StorageError) -> Self {
        Self::internal(format!("storage: {e}"))
    }
}

/// Which run of a task this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Failed runs before this one.
    pub failed_before: u32,
    /// No retry follows if this run fails transiently: record the failure instead.
    pub last: bool,
}

/// One page of results: the document in the contract's shape, and where the next page starts
/// when entries remain.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultsPage {
    pub document: Value,
    pub next: Option<Position>,
}

impl ResultsPage {
    /// A document that is always one page.
    pub fn whole(document: Value) -> Self {
        Self {
            document,
            next: None,
        }
    }
}

/// The upstream services, each with its own deadline (contract 9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Gemini,
    GoogleBooks,
    OpenLibrary,
}

impl Provider {
    /// The name in log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gemini => "gemini",
            Self::GoogleBooks => "google_books",
            Self::OpenLibrary => "open_library",
        }
    }

    /// The name in messages to clients.
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Gemini => "Gemini",
            Self::GoogleBooks => "Google Books",
            Self::OpenLibrary => "Open Library",
        }
    }

    /// How long one call may take before it counts as a retryable failure.
    pub fn timeout_ms(self, config: &Config) -> Millis {
        match self {
            Self::Gemini => config.gemini_timeout_ms,
            Self::GoogleBooks | Self::OpenLibrary => config.books_api_timeout_ms,
        }
    }
}

/// What a pipeline's step may ask of its job. `W` is the pipeline's own progress record,
/// persisted with the job's core at every checkpoint.
// Single-threaded: no `Send` bound is wanted on the futures.
#[allow(async_fn_in_trait)]
pub trait Ctx<W> {
    fn now(&self) -> Millis;
    fn config(&self) -> &Config;
    /// Runs `f` on the pipeline's progress record; `None` when the job is gone (cleaned up
    /// under the step). The borrow ends with `f`, before any `.await`.
    fn with_work<R>(&self, f: impl FnOnce(&mut W) -> R) -> Option<R>;
    /// The total the job announced when it started.
    fn total_count(&self) -> u64;
    fn processed_count(&self) -> u64;
    /// Milliseconds since processing began: a summary's `duration`.
    fn processing_ms(&self) -> Millis;
    /// False once the job was canceled or ended under the step.
    fn is_running(&self) -> bool;
    fn log(&self, event: &str, fields: Value);

    async fn read(&self, keys: &[String]) -> Result<Values, StorageError>;
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<(String, Stored)>, StorageError>;
    async fn delete(&self, keys: Vec<String>) -> Result<(), StorageError>;
    /// Calls a provider with its deadline ([`Provider::timeout_ms`]); logged without the
    /// query or headers.
    async fn call(&self, provider: Provider, request: Outbound) -> Result<Answer, CallError>;
    /// Records progress: sent to sockets (coalesced) and persisted per the throttle policy,
    /// with the results the pipeline has buffered (see [`Pipeline::drain_pending`]).
    async fn progress(&self, processed: u64, item: Option<String>) -> Result<(), StorageError>;
    /// Persists the core, the progress record and the buffered results now.
    async fn checkpoint(&self, reason: &str) -> Result<(), StorageError>;
    /// Reports one finished item (`item_result`) at once, and keeps it for replay; it is
    /// stored with the next checkpoint, which must also store the item's result. `position`
    /// is the item's place in the job's input, as [`Pipeline::item_message`] takes it.
    fn item_result(&self, position: u64, message: ServerMessage);
}

/// One kind of job. Implementations hold only caches that can be rebuilt from storage; what
/// must survive an eviction is in `Work`.
#[allow(async_fn_in_trait)]
pub trait Pipeline {
    type Work;

    /// Runs when the job starts: the number of items, which progress counts towards.
    async fn prepare(&self, ctx: &impl Ctx<Self::Work>) -> Result<u64, StepFailure>;
    /// One bounded run of work.
    async fn step(
        &self,
        ctx: &impl Ctx<Self::Work>,
        attempt: Attempt,
    ) -> Result<StepOutcome, StepFailure>;
    /// After the last step: the summary for `job_complete`, or why the job failed as a whole
    /// (every item failed).
    async fn summary(&self, ctx: &impl Ctx<Self::Work>) -> Result<Value, StepFailure>;
    /// A page of the results of a complete job: at most `page.limit` entries and
    /// [`crate::results::MAX_PAGE_BYTES`] of JSON, read without loading the whole result set.
    async fn results(
        &self,
        ctx: &impl Ctx<Self::Work>,
        page: PageRequest,
    ) -> Result<ResultsPage, StorageError>;
    /// Runs once after the job ended in any way: inputs that are no longer needed go.
    async fn after_end(&self, ctx: &impl Ctx<Self::Work>) -> Result<(), StorageError>;
    /// Moves the results buffered since the last checkpoint into the checkpoint's write,
    /// updating `work` (e.g. a slice counter) in the same write.
    fn drain_pending(&self, work: &mut Self::Work, batch: &mut Batch);

    /// The `item_result` of the item at `position`, rebuilt from stored results to replay it
    /// to a client that missed it; `None` for pipelines without items.
    async fn item_message(
        &self,
        ctx: &impl Ctx<Self::Work>,
        position: u64,
    ) -> Result<Option<ServerMessage>, StorageError> {
        let _ = (ctx, position);
        Ok(None)
    }

    /// When progress is persisted.
    fn persist_policy(&self, work: &Self::Work, kind: Kind) -> PersistPolicy {
        let _ = work;
        PersistPolicy::for_pipeline(kind)
    }

    /// The least spacing of `job_progress` messages.
    fn progress_spacing_ms(&self, work: &Self::Work) -> Millis {
        let _ = work;
        SOCKET_MIN_INTERVAL_MS
    }
}

/// Reads a value stored in slices (see [`crate::keys::slices`]) back into one buffer.
pub async fn read_slices<W>(
    ctx: &impl Ctx<W>,
    prefix: &str,
    len: usize,
) -> Result<Vec<u8>, StorageError> {
    let keys = crate::keys::slice_keys(prefix, len);
    let mut values = ctx.read(&keys).await?;
    let mut bytes = Vec::with_capacity(len);
    for key in &keys {
        let slice = values
            .0
            .remove(key)
            .ok_or_else(|| StorageError(format!("{key} is missing")))?;
        bytes.extend_from_slice(slice.as_bytes());
    }
    Ok(bytes)
}

/// Serialises `items` as JSON arrays of at most `max_bytes` each, in order; an item that alone
/// is over `max_bytes` gets an array of its own (callers bound their items far below it).
pub fn pack_json<T: serde::Serialize>(items: &[T], max_bytes: usize) -> Vec<String> {
    pack_with(items, max_bytes, write_json)
        .into_iter()
        // serde_json writes UTF-8 only.
        .map(|(part, _)| String::from_utf8(part).unwrap_or_default())
        .collect()
}

/// Appends `item`'s JSON to `out`, as serde_json writes it: the writer [`pack_with`] takes
/// for any serialisable item.
pub fn write_json<T: serde::Serialize>(item: &T, out: &mut Vec<u8>) -> bool {
    serde_json::to_writer(out, item).is_ok()
}

/// [`pack_json`] with the item's JSON written by `write`, which appends it to the buffer and
/// says whether it could (what it wrote is dropped otherwise); the arrays are returned as
/// bytes, with how many of `items` each holds. Every item is counted in its array's share,
/// even one that could not be written, so positions stay aligned. Items are written straight
/// into their array: no string per item.
pub fn pack_with<T>(
    items: &[T],
    max_bytes: usize,
    mut write: impl FnMut(&T, &mut Vec<u8>) -> bool,
) -> Vec<(Vec<u8>, usize)> {
    let mut parts = Vec::new();
    let mut part = vec![b'['];
    let mut count = 0;
    for item in items {
        let before = part.len();
        if before > 1 {
            part.push(b',');
        }
        if !write(item, &mut part) {
            part.truncate(before);
            count += 1;
            continue;
        }
        // With its closing bracket the array would be too long: the item starts the next.
        if before > 1 && part.len() + 1 > max_bytes {
            let item_json = part.split_off(before + 1);
            part.truncate(before);
            part.push(b']');
            parts.push((std::mem::replace(&mut part, vec![b'[']), count));
            part.extend_from_slice(&item_json);
            count = 0;
        }
        count += 1;
    }
    if part.len() > 1 || count > 0 || parts.is_empty() {
        part.push(b']');
        parts.push((part, count));
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_items_into_bounded_arrays() {
        let items: Vec<String> = (0..100).map(|i| "x".repeat(i % 7 * 10)).collect();
        for max in [64, 100, 1_000, 100_000] {
            let parts = pack_json(&items, max);
            let mut back = Vec::new();
            for part in &parts {
                assert!(part.len() <= max.max(72), "{max}: {}", part.len());
                let list: Vec<String> = serde_json::from_str(part).unwrap();
                assert!(!list.is_empty());
                back.extend(list);
            }
            assert_eq!(back, items, "{max}");
        }
        assert_eq!(pack_json::<u8>(&[], 10), ["[]"]);
        for max in [64, 1_000] {
            let counted = pack_with(&items, max, write_json);
            let counts: usize = counted.iter().map(|(_, n)| n).sum();
            assert_eq!(counts, items.len(), "{max}");
            for (part, n) in counted {
                assert_eq!(
                    serde_json::from_slice::<Vec<String>>(&part).unwrap().len(),
                    n
                );
            }
            // An item that cannot be written is counted where it stands and leaves no trace.
            let some_fail = pack_with(&items, max, |item, out| {
                if item.len() % 20 == 0 {
                    return write_json(item, out);
                }
                out.extend_from_slice(b"\"partial");
                false
            });
            let counts: usize = some_fail.iter().map(|(_, n)| n).sum();
            assert_eq!(counts, items.len(), "{max}");
            let written: Vec<String> = some_fail
                .iter()
                .flat_map(|(part, _)| serde_json::from_slice::<Vec<String>>(part).unwrap())
                .collect();
            let expected: Vec<String> = items
                .iter()
                .filter(|i| i.len() % 20 == 0)
                .cloned()
                .collect();
            assert_eq!(written, expected, "{max}");
        }
    }
}
