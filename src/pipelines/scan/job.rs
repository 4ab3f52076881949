//! The shelf scan as a job: one photo per run of the process task, through Gemini.

use super::gemini::{self, PhotoFailure};
use super::image::ImageKind;
use super::results::{self, PhotoRecord, PhotoStatus, ScanBook, ScanResultsPage, ScanSummary};
use crate::error::ErrorCode;
use crate::host::{Batch, Outbound, StorageError};
use crate::job::JobError;
use crate::keys;
use crate::pipeline::{
    pack_json, read_slices, Attempt, Ctx, Pipeline, Provider, ResultsPage, StepFailure, StepOutcome,
};
use crate::protocol::ServerMessage;
use crate::results::{PageBudget, PageRequest, Position, MAX_PAGE_BYTES};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::cell::RefCell;

/// A shelf scan's progress: one entry per photo, in the order the client sent them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanWork {
    pub photos: Vec<ScanPhoto>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanPhoto {
    pub record: PhotoRecord,
    pub kind: ImageKind,
    pub bytes: usize,
    /// Whether the failure of a failed photo might not recur (it ran out of retries on
    /// timeouts or 5xx), which decides `retryable` when every photo failed.
    #[serde(default)]
    pub retryable: bool,
}

impl ScanPhoto {
    pub fn new(index: u32, kind: ImageKind, bytes: usize) -> Self {
        Self {
            record: PhotoRecord::queued(index),
            kind,
            bytes,
            retryable: false,
        }
    }
}

impl ScanWork {
    /// The photo to work on next: one left mid-call by an eviction, else the first queued.
    pub fn next_photo(&self) -> Option<usize> {
        self.photos
            .iter()
            .position(|p| !p.record.status.is_terminal())
    }

    pub fn finished(&self) -> usize {
        self.photos
            .iter()
            .filter(|p| p.record.status.is_terminal())
            .count()
    }

    pub fn failed(&self) -> usize {
        self.photos
            .iter()
            .filter(|p| p.record.status == PhotoStatus::Failed)
            .count()
    }

    /// The job's verdict once every photo is done or failed: it fails only when all of
    /// them failed, retryably when some failure might not recur.
    pub fn all_failed_error(&self) -> Option<JobError> {
        let total = self.photos.len();
        if total == 0 || self.failed() < total {
            return None;
        }
        let first = self
            .photos
            .iter()
            .find_map(|p| p.record.error.clone())
            .unwrap_or_default();
        Some(JobError {
            code: ErrorCode::ProviderError,
            message: format!("all {total} photos failed; the first because: {first}"),
            retryable: self.photos.iter().any(|p| p.retryable),
        })
    }
}

fn missing_key() -> JobError {
    JobError {
        code: ErrorCode::ProviderError,
        message: "the scan service is not configured: the GEMINI_API_KEY secret is missing".into(),
        retryable: false,
    }
}

fn work(ctx: &impl Ctx<ScanWork>) -> Result<ScanWork, StepFailure> {
    ctx.with_work(|w| w.clone())
        .ok_or_else(|| StepFailure::internal("scan work is missing"))
}

fn update_photo(ctx: &impl Ctx<ScanWork>, position: usize, f: impl FnOnce(&mut ScanPhoto)) {
    ctx.with_work(|w| w.photos.get_mut(position).map(f));
}

#[derive(Debug, Default)]
pub struct ShelfScan {
    /// Books of photos scanned since the last checkpoint, by photo position.
    pending: RefCell<Vec<(usize, Vec<ScanBook>)>>,
}

/// A photo's books as stored: one value, or several parts of at most
/// [`keys::MAX_RESULT_VALUE_BYTES`] (200 books with long titles are more than that).
fn books_of(parts: Vec<(String, crate::host::Stored)>) -> Vec<ScanBook> {
    parts
        .into_iter()
        .filter_map(|(_, value)| value.json::<Vec<ScanBook>>().ok())
        .flatten()
        .collect()
}

impl ShelfScan {
    /// Asks Gemini about one photo.
    async fn scan_photo(
        &self,
        ctx: &impl Ctx<ScanWork>,
        photo: &ScanPhoto,
        image: &[u8],
    ) -> Result<Vec<ScanBook>, PhotoFailure> {
        let config = ctx.config();
        let Some(key) = config.gemini_api_key.clone() else {
            return Err(PhotoFailure {
                message: missing_key().message,
                retryable: false,
                retry_after_ms: None,
            });
        };
        let url = gemini::endpoint(&config.gemini_api_base, &config.gemini_model);
        let budget = gemini::OutputBudget {
            max_output_tokens: config.gemini_max_output_tokens,
            thinking_budget: config.gemini_thinking_budget,
        };
        let body = gemini::build_request(image, photo.kind, budget);
        let request = Outbound::post(url, body)
            .header("content-type", "application/json")
            .header("x-goog-api-key", key);
        let answer = ctx.call(Provider::Gemini, request).await;
        gemini::interpret(answer, photo.record.index, ctx.now())
    }

    async fn stored_books(&self, ctx: &impl Ctx<ScanWork>) -> Result<Vec<ScanBook>, StorageError> {
        Ok(books_of(
            ctx.list(keys::SCAN_RESULT_PREFIX, None, None).await?,
        ))
    }
}

impl Pipeline for ShelfScan {
    type Work = ScanWork;

    async fn prepare(&self, ctx: &impl Ctx<ScanWork>) -> Result<u64, StepFailure> {
        if ctx.config().gemini_api_key.is_none() {
            return Err(StepFailure::Permanent(missing_key()));
        }
        Ok(work(ctx)?.photos.len() as u64)
    }

    async fn step(
        &self,
        ctx: &impl Ctx<ScanWork>,
        attempt: Attempt,
    ) -> Result<StepOutcome, StepFailure> {
        let work = work(ctx)?;
        let Some(position) = work.next_photo() else {
            return Ok(StepOutcome::Done);
        };
        let total = work.photos.len();
        let photo = work.photos[position].clone();
        update_photo(ctx, position, |p| {
            p.record.status = PhotoStatus::Processing;
            p.record.attempts = attempt.failed_before + 1;
        });
        let scanning = format!("Scanning photo {} of {total}", position + 1);
        ctx.progress(work.finished() as u64, Some(scanning)).await?;
        // The photo is marked in storage as being scanned before the (billed) call is made.
        ctx.checkpoint("photo.start").await?;
        let image = read_slices(ctx, &keys::scan_image_prefix(position), photo.bytes).await?;
        let label = match self.scan_photo(ctx, &photo, &image).await {
            Ok(books) => {
                let found = books.len();
                update_photo(ctx, position, |p| {
                    p.record.status = PhotoStatus::Done;
                    p.record.books_found = found;
                    p.record.error = None;
                });
                ctx.item_result(position as u64, item_message(&photo.record, Ok(&books)));
                self.pending.borrow_mut().push((position, books));
                format!("Scanned photo {} of {total}: {found} books", position + 1)
            }
            Err(failure) if failure.retryable && !attempt.last => {
                update_photo(ctx, position, |p| p.record.status = PhotoStatus::Queued);
                return Err(StepFailure::provider(
                    failure.message,
                    failure.retry_after_ms,
                ));
            }
            Err(failure) => {
                ctx.log(
                    "photo.failed",
                    json!({ "photo": position, "error": failure.message }),
                );
                ctx.item_result(
                    position as u64,
                    item_message(&photo.record, Err(&failure.message)),
                );
                update_photo(ctx, position, |p| {
                    p.record.status = PhotoStatus::Failed;
                    p.record.error = Some(failure.message);
                    p.retryable = failure.retryable;
                });
                format!("Photo {} of {total} could not be scanned", position + 1)
            }
        };
        ctx.progress(work.finished() as u64 + 1, Some(label))
            .await?;
        ctx.checkpoint("photo").await?;
        let more = ctx.with_work(|w| w.next_photo().is_some()).unwrap_or(false);
        Ok(if more {
            StepOutcome::Continue { delay_ms: 0 }
        } else {
            StepOutcome::Done
        })
    }

    async fn summary(&self, ctx: &impl Ctx<ScanWork>) -> Result<Value, StepFailure> {
        let work = work(ctx)?;
        if let Some(error) = work.all_failed_error() {
            return Err(StepFailure::Permanent(error));
        }
        let scan = results::summarize(
            self.stored_books(ctx).await?,
            ctx.config().scan_confidence_threshold,
        );
        let total = work.photos.len();
        let summary = ScanSummary {
            total_processed: total,
            success_count: total - work.failed(),
            failure_count: work.failed(),
            duration: ctx.processing_ms(),
            total_detected: scan.total_detected,
            approved: scan.approved,
            needs_review: scan.needs_review,
            photos: work.photos.iter().map(|p| (&p.record).into()).collect(),
        };
        Ok(serde_json::to_value(summary).unwrap_or_default())
    }

    /// The counts over every book, and the books from the position (an index into them) on.
    /// A scan holds at most 5 photos of 200 books, so they are all read for each page.
    async fn results(
        &self,
        ctx: &impl Ctx<ScanWork>,
        page: PageRequest,
    ) -> Result<ResultsPage, StorageError> {
        let scan = results::summarize(
            self.stored_books(ctx).await?,
            ctx.config().scan_confidence_threshold,
        );
        let from = page.after.map_or(0, |at| at.major as usize);
        let mut budget = PageBudget::new(page.limit, MAX_PAGE_BYTES);
        let mut books = Vec::new();
        let mut next = None;
        for (index, book) in scan.books.iter().enumerate().skip(from) {
            let bytes = serde_json::to_string(book).map_or(0, |text| text.len());
            if !budget.take(bytes, books.is_empty()) {
                next = Some(Position {
                    major: index as u64,
                    minor: 0,
                });
                break;
            }
            books.push(book.clone());
        }
        let page = ScanResultsPage {
            total_detected: scan.total_detected,
            approved: scan.approved,
            needs_review: scan.needs_review,
            books,
        };
        Ok(ResultsPage {
            document: serde_json::to_value(page).unwrap_or_default(),
            next,
        })
    }

    /// The photos are deleted once the scan has ended, whichever way.
    async fn after_end(&self, ctx: &impl Ctx<ScanWork>) -> Result<(), StorageError> {
        let photos = ctx
            .with_work(|w| w.photos.iter().map(|p| p.bytes).collect::<Vec<_>>())
            .unwrap_or_default();
        let keys = photos
            .into_iter()
            .enumerate()
            .flat_map(|(position, bytes)| {
                keys::slice_keys(&keys::scan_image_prefix(position), bytes)
            })
            .collect();
        ctx.delete(keys).await
    }

    fn drain_pending(&self, _work: &mut ScanWork, batch: &mut Batch) {
        for (position, books) in std::mem::take(&mut *self.pending.borrow_mut()) {
            for (part, text) in pack_json(&books, keys::MAX_RESULT_VALUE_BYTES)
                .into_iter()
                .enumerate()
            {
                batch.text(&keys::scan_result_part(position, part), text);
            }
        }
    }

    async fn item_message(
        &self,
        ctx: &impl Ctx<ScanWork>,
        position: u64,
    ) -> Result<Option<ServerMessage>, StorageError> {
        let position = position as usize;
        let Some(Some(photo)) = ctx.with_work(|w| w.photos.get(position).cloned()) else {
            return Ok(None);
        };
        match (photo.record.status, &photo.record.error) {
            (PhotoStatus::Failed, Some(error)) => Ok(Some(item_message(&photo.record, Err(error)))),
            (PhotoStatus::Done, _) => {
                let parts = ctx.list(&keys::scan_result(position), None, None).await?;
                let books = books_of(parts);
                Ok(Some(item_message(&photo.record, Ok(&books))))
            }
            _ => Ok(None),
        }
    }
}

/// The `item_result` of one photo: the books found on it, or why none could be.
fn item_message(photo: &PhotoRecord, outcome: Result<&[ScanBook], &str>) -> ServerMessage {
    let (success, books, error) = match outcome {
        Ok(books) => (true, serde_json::to_value(books).ok(), None),
        Err(error) => (false, None, Some(error.to_string())),
    };
    ServerMessage::ItemResult {
        index: u64::from(photo.index),
        success,
        book: None,
        books,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(status: PhotoStatus) -> ScanPhoto {
        ScanPhoto {
            record: PhotoRecord {
                status,
                ..PhotoRecord::queued(0)
            },
            ..ScanPhoto::new(0, ImageKind::Jpeg, 1)
        }
    }

    #[test]
    fn scans_resume_at_the_first_unfinished_photo() {
        let work = ScanWork {
            photos: vec![
                photo(PhotoStatus::Done),
                photo(PhotoStatus::Processing),
                photo(PhotoStatus::Queued),
            ],
        };
        assert_eq!(work.next_photo(), Some(1));
        assert_eq!((work.finished(), work.failed()), (1, 0));
    }

    #[test]
    fn the_job_fails_only_when_every_photo_failed() {
        let failed = |retryable| ScanPhoto {
            retryable,
            ..photo(PhotoStatus::Failed)
        };
        let table: &[(Vec<ScanPhoto>, Option<bool>)] = &[
            (vec![], None),
            (vec![photo(PhotoStatus::Done), failed(true)], None),
            (vec![failed(false), failed(false)], Some(false)),
            (vec![failed(false), failed(true)], Some(true)),
        ];
        for (photos, want) in table {
            let work = ScanWork {
                photos: photos.clone(),
            };
            assert_eq!(
                work.all_failed_error().map(|e| e.retryable),
                *want,
                "{photos:?}"
            );
        }
    }
}
