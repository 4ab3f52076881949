//! The enrichment pipeline's glue: chunks of books looked up concurrently, outcomes stored per book.

use super::{StepFailure, StepOutcome};
use crate::job::JobError;
use crate::pipelines::enrich::plan::{Bases, Lookup, Step};
use crate::pipelines::enrich::{BookInput, BookOutcome};
use crate::pipelines::work::{EnrichWork, Work};
use crate::runtime::http;
use crate::runtime::job_object::JobObject;
use crate::runtime::provider;
use crate::runtime::store;
use futures::StreamExt;
use serde_json::{json, Value};
use std::rc::Rc;
use worker::Method;

/// Books per run of the process task, all looked up at once.
pub const CHUNK: usize = 10;
pub const INPUT_KEY: &str = "in:books";
const RESULT_PREFIX: &str = "res:enr:";
const USER_AGENT: &str = concat!("bookstrack-jobs/", env!("CARGO_PKG_VERSION"));

fn result_key(index: usize) -> String {
    format!("{RESULT_PREFIX}{index:03}")
}

fn work(obj: &JobObject) -> Option<EnrichWork> {
    obj.with_job(|job| match &job.work {
        Work::Enrich(w) => Some(w.clone()),
        _ => None,
    })
    .flatten()
}

/// The batch's books, read from storage once per wake.
async fn books(obj: &JobObject) -> worker::Result<Rc<Vec<BookInput>>> {
    if let Some(books) = obj.with_cache(|cache| cache.books.clone()) {
        return Ok(books);
    }
    let batch = store::read(&obj.storage(), obj.io(), &[INPUT_KEY]).await?;
    let raw = batch
        .bytes(INPUT_KEY)
        .ok_or_else(|| worker::Error::RustError("the books are missing".into()))?;
    let books: Vec<BookInput> =
        serde_json::from_slice(&raw).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let books = Rc::new(books);
    obj.with_cache(|cache| cache.books = Some(books.clone()));
    Ok(books)
}

/// Runs one book's lookup plan, performing each request it asks for. Also says whether a
/// provider error might pass (some provider failed transiently).
async fn look_up(input: BookInput, bases: Bases, timeout_ms: u64) -> (BookOutcome, bool) {
    let (mut lookup, mut step) = Lookup::start(input, bases);
    loop {
        match step {
            Step::Done(outcome) => return (*outcome, lookup.failed_transiently()),
            Step::Fetch(url) => {
                let started = http::now();
                let answer = provider::send(
                    Method::Get,
                    &url,
                    &[("accept", "application/json"), ("user-agent", USER_AGENT)],
                    None,
                    timeout_ms,
                )
                .await;
                let name = if url.contains("/volumes?") {
                    "google_books"
                } else {
                    "open_library"
                };
                provider::log_call(name, &url, &answer, started);
                step = lookup.answer(answer);
            }
        }
    }
}

fn record(obj: &JobObject, index: usize, outcome: &BookOutcome, transient: bool) -> usize {
    let text = serde_json::to_string(outcome).unwrap_or_default();
    obj.with_cache(|cache| cache.pending.push((result_key(index), text)));
    obj.with_job(|job| match &mut job.work {
        Work::Enrich(w) => w.record(index, outcome, transient),
        _ => 0,
    })
    .unwrap_or(0)
}

pub async fn step(obj: &JobObject) -> worker::Result<Result<StepOutcome, StepFailure>> {
    let Some(work) = work(obj) else {
        return Ok(Err(StepFailure::internal("enrichment work is missing")));
    };
    let chunk = work.next_chunk(CHUNK);
    if chunk.is_empty() {
        return Ok(finish(obj, &work));
    }
    let books = books(obj).await?;
    let config = obj.config();
    let bases = Bases {
        google_books: config.google_books_api_base.clone(),
        google_books_key: config.google_books_api_key.clone(),
        open_library: config.openlibrary_api_base.clone(),
    };
    let timeout = config.provider_timeout_ms;
    let lookups = chunk.into_iter().map(|index| {
        let (input, bases) = (books[index].clone(), bases.clone());
        async move { (index, look_up(input, bases, timeout).await) }
    });
    let mut outcomes = futures::stream::iter(lookups).buffer_unordered(CHUNK);
    while let Some((index, (outcome, transient))) = outcomes.next().await {
        if !obj.is_running() {
            // Canceled mid-chunk: what is still in flight is dropped with the stream.
            return Ok(Ok(StepOutcome::Continue { delay_ms: 0 }));
        }
        let finished = record(obj, index, &outcome, transient);
        obj.progress(
            finished as u64,
            Some(format!("Enriched {finished} of {}", work.books)),
        )
        .await?;
    }
    // Lookups cost provider quota: what this chunk found is stored before the next begins.
    obj.checkpoint("chunk").await?;
    match self::work(obj) {
        Some(w) if w.next_chunk(1).is_empty() => Ok(finish(obj, &w)),
        _ => Ok(Ok(StepOutcome::Continue { delay_ms: 0 })),
    }
}

/// The job fails only when every lookup failed for an infrastructure reason.
fn finish(obj: &JobObject, work: &EnrichWork) -> Result<StepOutcome, StepFailure> {
    if work.books > 0 && work.provider_errors == work.books {
        return Err(StepFailure::Permanent(JobError {
            code: "PROVIDER_ERROR".into(),
            message: format!(
                "every one of the {} lookups failed: the book providers are unreachable",
                work.books
            ),
            // Worth trying later only if some provider failed in a way that may pass; a
            // rejected key or request would fail again.
            retryable: work.retryable_errors > 0,
        }));
    }
    let duration = obj.processing_ms();
    Ok(StepOutcome::Done {
        summary: json!({
            "totalProcessed": work.books,
            "successCount": work.found,
            "failureCount": work.not_found + work.provider_errors,
            "notFound": work.not_found,
            "providerErrors": work.provider_errors,
            "parseErrors": work.parse_errors,
            "duration": duration,
        }),
    })
}

pub async fn results(obj: &JobObject) -> worker::Result<Value> {
    let batch = store::read_prefix(&obj.storage(), obj.io(), RESULT_PREFIX).await?;
    let books: Vec<BookOutcome> = batch
        .keys()
        .iter()
        .filter_map(|key| batch.json(key)?.ok())
        .collect();
    Ok(json!({ "books": books }))
}
