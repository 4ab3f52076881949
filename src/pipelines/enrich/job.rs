//! The batch enrichment as a job: chunks of books looked up concurrently, one outcome per book.

use super::model::{EnrichmentResultsPage, EnrichmentSummary};
use super::plan::{Bases, Lookup, Step, Verdict};
use super::{BookInput, BookOutcome, Provider as BookProvider};
use crate::error::ErrorCode;
use crate::host::{Batch, Outbound, StorageError};
use crate::job::JobError;
use crate::keys;
use crate::pipeline::{Attempt, Ctx, Pipeline, Provider, ResultsPage, StepFailure, StepOutcome};
use crate::protocol::ServerMessage;
use crate::results::{PageBudget, PageRequest, Position, MAX_PAGE_BYTES};
use crate::time::{retry_after_ms, Millis};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cell::RefCell;
use std::rc::Rc;

/// Books per run of the process task, all looked up at once.
pub const CHUNK: usize = 10;
const USER_AGENT: &str = concat!("bookstrack-jobs/", env!("CARGO_PKG_VERSION"));

/// A batch enrichment's progress: which books have their outcome stored, and the counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrichWork {
    pub books: usize,
    pub done: Vec<bool>,
    pub found: usize,
    pub not_found: usize,
    pub provider_errors: usize,
    /// Provider errors where some provider failed transiently (5xx, 429, timeout).
    #[serde(default)]
    pub retryable_errors: usize,
    /// The part of `provider_errors` that were unreadable answers (`errorKind: parse_error`).
    #[serde(default)]
    pub parse_errors: usize,
}

impl EnrichWork {
    pub fn new(books: usize) -> Self {
        Self {
            books,
            done: vec![false; books],
            found: 0,
            not_found: 0,
            provider_errors: 0,
            retryable_errors: 0,
            parse_errors: 0,
        }
    }

    pub fn finished(&self) -> usize {
        self.done.iter().filter(|d| **d).count()
    }

    /// The next books to look up, at most `chunk`, in input order.
    pub fn next_chunk(&self, chunk: usize) -> Vec<usize> {
        self.done
            .iter()
            .enumerate()
            .filter(|(_, d)| !**d)
            .map(|(i, _)| i)
            .take(chunk)
            .collect()
    }

    /// Marks book `index` done with its verdict; returns how many are done.
    pub fn record(&mut self, index: usize, verdict: Verdict) -> usize {
        if let Some(done) = self.done.get_mut(index) {
            if !*done {
                *done = true;
                match verdict {
                    Verdict::Found => self.found += 1,
                    Verdict::NotFound => self.not_found += 1,
                    Verdict::ProviderError { transient } => {
                        self.provider_errors += 1;
                        self.retryable_errors += usize::from(transient);
                    }
                    Verdict::Unreadable => {
                        self.provider_errors += 1;
                        self.parse_errors += 1;
                    }
                }
            }
        }
        self.finished()
    }

    /// The job fails only when every lookup failed for an infrastructure reason; worth
    /// trying later only if some provider failed in a way that may pass (a rejected key or
    /// request would fail again).
    pub fn all_failed_error(&self) -> Option<JobError> {
        (self.books > 0 && self.provider_errors == self.books).then(|| JobError {
            code: ErrorCode::ProviderError,
            message: format!(
                "every one of the {} lookups failed: the book providers are unreachable",
                self.books
            ),
            retryable: self.retryable_errors > 0,
        })
    }
}

/// How one book's lookup ended, with the longest `Retry-After` a provider sent on the way.
struct Looked {
    outcome: BookOutcome,
    verdict: Verdict,
    retry_after_ms: Option<Millis>,
}

#[derive(Debug, Default)]
pub struct Enrichment {
    /// The batch's books, read from storage once per wake.
    books: RefCell<Option<Rc<Vec<BookInput>>>>,
    /// Outcomes recorded since the last checkpoint.
    pending: RefCell<Batch>,
}

fn work(ctx: &impl Ctx<EnrichWork>) -> Result<EnrichWork, StepFailure> {
    ctx.with_work(|w| w.clone())
        .ok_or_else(|| StepFailure::internal("enrichment work is missing"))
}

impl Enrichment {
    async fn books(&self, ctx: &impl Ctx<EnrichWork>) -> Result<Rc<Vec<BookInput>>, StorageError> {
        if let Some(books) = self.books.borrow().clone() {
            return Ok(books);
        }
        let stored = ctx.read(&[keys::ENRICH_INPUT.to_string()]).await?;
        let books: Vec<BookInput> = stored
            .json(keys::ENRICH_INPUT)
            .ok_or_else(|| StorageError("the books are missing".into()))?
            .map_err(StorageError)?;
        let books = Rc::new(books);
        *self.books.borrow_mut() = Some(books.clone());
        Ok(books)
    }
}

/// Runs one book's lookup plan, performing each request it asks for.
async fn look_up(ctx: &impl Ctx<EnrichWork>, input: BookInput, bases: Bases) -> Looked {
    let (mut lookup, mut step) = Lookup::start(input, bases);
    let mut retry_after = None;
    loop {
        match step {
            Step::Done(outcome) => {
                return Looked {
                    outcome: *outcome,
                    verdict: lookup.verdict().unwrap_or(Verdict::NotFound),
                    retry_after_ms: retry_after,
                }
            }
            Step::Fetch(provider, url) => {
                let provider = match provider {
                    BookProvider::GoogleBooks => Provider::GoogleBooks,
                    BookProvider::OpenLibrary => Provider::OpenLibrary,
                };
                let request = Outbound::get(url)
                    .header("accept", "application/json")
                    .header("user-agent", USER_AGENT);
                let answer = ctx.call(provider, request).await;
                if let Ok(answer) = &answer {
                    let wait = answer
                        .retry_after
                        .as_deref()
                        .and_then(|v| retry_after_ms(v, ctx.now()));
                    retry_after = retry_after.max(wait);
                }
                step = lookup.answer(
                    answer
                        .map(|a| (a.status, a.body))
                        .map_err(|e| e.to_string()),
                );
            }
        }
    }
}

impl Pipeline for Enrichment {
    type Work = EnrichWork;

    async fn prepare(&self, ctx: &impl Ctx<EnrichWork>) -> Result<u64, StepFailure> {
        Ok(work(ctx)?.books as u64)
    }

    /// Looks up the next chunk. A book whose providers all failed transiently is left for a
    /// retry of the whole step with backoff (the others are kept), until the last attempt,
    /// which records it as a provider error.
    async fn step(
        &self,
        ctx: &impl Ctx<EnrichWork>,
        attempt: Attempt,
    ) -> Result<StepOutcome, StepFailure> {
        let work = work(ctx)?;
        let chunk = work.next_chunk(CHUNK);
        if chunk.is_empty() {
            return Ok(StepOutcome::Done);
        }
        let books = self.books(ctx).await?;
        let config = ctx.config();
        let bases = Bases {
            google_books: config.google_books_api_base.clone(),
            google_books_key: config.google_books_api_key.clone(),
            open_library: config.openlibrary_api_base.clone(),
        };
        let lookups = chunk.into_iter().map(|index| {
            let (input, bases) = (books[index].clone(), bases.clone());
            async move { (index, look_up(ctx, input, bases).await) }
        });
        let mut outcomes = futures::stream::iter(lookups).buffer_unordered(CHUNK);
        let mut deferred: Option<(usize, Option<Millis>)> = None;
        while let Some((index, looked)) = outcomes.next().await {
            if let (Verdict::ProviderError { transient: true }, false) =
                (looked.verdict, attempt.last)
            {
                let (count, wait) = deferred.unwrap_or((0, None));
                deferred = Some((count + 1, wait.max(looked.retry_after_ms)));
                continue;
            }
            self.pending
                .borrow_mut()
                .json(&keys::enrich_result(index), &looked.outcome);
            let finished = ctx
                .with_work(|w| w.record(index, looked.verdict))
                .unwrap_or(0);
            ctx.item_result(index as u64, item_message(index, &looked.outcome));
            ctx.progress(
                finished as u64,
                Some(format!("Enriched {finished} of {}", work.books)),
            )
            .await?;
        }
        // Lookups cost provider quota: what this chunk found is stored before the next begins.
        ctx.checkpoint("chunk").await?;
        if let Some((count, retry_after_ms)) = deferred {
            return Err(StepFailure::provider(
                format!("{count} lookups failed at every provider; they will be retried"),
                retry_after_ms,
            ));
        }
        let more = ctx
            .with_work(|w| !w.next_chunk(1).is_empty())
            .unwrap_or(false);
        Ok(if more {
            StepOutcome::Continue { delay_ms: 0 }
        } else {
            StepOutcome::Done
        })
    }

    async fn summary(&self, ctx: &impl Ctx<EnrichWork>) -> Result<Value, StepFailure> {
        let work = work(ctx)?;
        if let Some(error) = work.all_failed_error() {
            return Err(StepFailure::Permanent(error));
        }
        let summary = EnrichmentSummary {
            total_processed: work.books,
            success_count: work.found,
            failure_count: work.not_found + work.provider_errors,
            not_found: work.not_found,
            provider_errors: work.provider_errors,
            parse_errors: work.parse_errors,
            duration: ctx.processing_ms(),
        };
        Ok(serde_json::to_value(summary).unwrap_or_default())
    }

    /// Books in input order; a position is the index of the next book.
    async fn results(
        &self,
        ctx: &impl Ctx<EnrichWork>,
        page: PageRequest,
    ) -> Result<ResultsPage, StorageError> {
        let after = page
            .after
            .and_then(|at| at.major.checked_sub(1))
            .map(|last| keys::enrich_result(last as usize));
        let stored = ctx
            .list(
                keys::ENRICH_RESULT_PREFIX,
                after.as_deref(),
                Some(page.limit + 1),
            )
            .await?;
        let mut budget = PageBudget::new(page.limit, MAX_PAGE_BYTES);
        let mut books = Vec::new();
        let mut next = None;
        for (key, value) in stored {
            let Ok(book) = value.json::<Value>() else {
                continue;
            };
            let index = key[keys::ENRICH_RESULT_PREFIX.len()..]
                .parse::<u64>()
                .unwrap_or(0);
            if !budget.take(value.len(), books.is_empty()) {
                next = Some(Position {
                    major: index,
                    minor: 0,
                });
                break;
            }
            books.push(book);
        }
        Ok(ResultsPage {
            document: serde_json::to_value(EnrichmentResultsPage { books }).unwrap_or_default(),
            next,
        })
    }

    async fn after_end(&self, _ctx: &impl Ctx<EnrichWork>) -> Result<(), StorageError> {
        *self.books.borrow_mut() = None;
        Ok(())
    }

    fn drain_pending(&self, _work: &mut EnrichWork, batch: &mut Batch) {
        batch.append(std::mem::take(&mut *self.pending.borrow_mut()));
    }

    async fn item_message(
        &self,
        ctx: &impl Ctx<EnrichWork>,
        position: u64,
    ) -> Result<Option<ServerMessage>, StorageError> {
        let key = keys::enrich_result(position as usize);
        let stored = ctx.read(std::slice::from_ref(&key)).await?;
        Ok(match stored.json::<BookOutcome>(&key) {
            Some(Ok(outcome)) => Some(item_message(position as usize, &outcome)),
            _ => None,
        })
    }
}

/// The `item_result` of one book: its results entry.
fn item_message(index: usize, outcome: &BookOutcome) -> ServerMessage {
    ServerMessage::ItemResult {
        index: index as u64,
        success: outcome.success,
        book: serde_json::to_value(outcome).ok(),
        books: None,
        error: outcome.error.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrichment_chunks_skip_finished_books() {
        let mut work = EnrichWork::new(25);
        assert_eq!(work.next_chunk(10), (0..10).collect::<Vec<_>>());
        for i in [0, 1, 2, 5, 9] {
            work.record(i, Verdict::Found);
        }
        assert_eq!(work.next_chunk(10), vec![3, 4, 6, 7, 8, 10, 11, 12, 13, 14]);
        assert_eq!(work.finished(), 5);
        (0..25).for_each(|i| {
            work.record(i, Verdict::NotFound);
        });
        assert!(work.next_chunk(10).is_empty());
        assert_eq!((work.found, work.not_found), (5, 20), "recorded once each");
    }

    #[test]
    fn the_job_fails_only_when_every_lookup_failed() {
        let table: &[(&[Verdict], Option<bool>)] = &[
            (&[], None),
            (
                &[
                    Verdict::NotFound,
                    Verdict::ProviderError { transient: true },
                ],
                None,
            ),
            (
                &[Verdict::ProviderError { transient: false }; 2],
                Some(false),
            ),
            (
                &[
                    Verdict::ProviderError { transient: false },
                    Verdict::ProviderError { transient: true },
                ],
                Some(true),
            ),
        ];
        for (verdicts, want) in table {
            let mut work = EnrichWork::new(verdicts.len());
            for (i, v) in verdicts.iter().enumerate() {
                work.record(i, *v);
            }
            assert_eq!(
                work.all_failed_error().map(|e| e.retryable),
                *want,
                "{verdicts:?}"
            );
        }
    }
}
