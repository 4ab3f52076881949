//! The shelf-scan pipeline's glue: one photo per run of the process task, through Gemini.

use super::{StepFailure, StepOutcome};
use crate::internal;
use crate::job::JobError;
use crate::pipelines::scan::gemini;
use crate::pipelines::scan::results::{self, PhotoStatus, ScanBook};
use crate::pipelines::work::{ScanPhoto, ScanWork, Work};
use crate::runtime::http;
use crate::runtime::job_object::JobObject;
use crate::runtime::provider;
use crate::runtime::store;
use serde_json::{json, Value};
use worker::Method;

const RESULT_PREFIX: &str = "res:scan:";

fn result_key(position: usize) -> String {
    format!("{RESULT_PREFIX}{position:02}")
}

fn work(obj: &JobObject) -> Option<ScanWork> {
    obj.with_job(|job| match &job.work {
        Work::Scan(w) => Some(w.clone()),
        _ => None,
    })
    .flatten()
}

fn update_photo(obj: &JobObject, position: usize, f: impl FnOnce(&mut ScanPhoto)) {
    obj.with_job(|job| {
        if let Work::Scan(w) = &mut job.work {
            if let Some(photo) = w.photos.get_mut(position) {
                f(photo);
            }
        }
    });
}

fn missing_key() -> JobError {
    JobError {
        code: "PROVIDER_ERROR".into(),
        message: "the scan service is not configured: the GEMINI_API_KEY secret is missing".into(),
        retryable: false,
    }
}

pub fn prepare(obj: &JobObject, work: &ScanWork) -> Result<u64, StepFailure> {
    if obj.config().gemini_api_key.is_none() {
        return Err(StepFailure::Permanent(missing_key()));
    }
    Ok(work.photos.len() as u64)
}

async fn load_image(
    obj: &JobObject,
    position: usize,
    photo: &ScanPhoto,
) -> worker::Result<Vec<u8>> {
    let keys: Vec<String> = internal::slices(&ScanPhoto::slice_prefix(position), photo.bytes)
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let batch = store::read(&obj.storage(), obj.io(), &refs).await?;
    let mut bytes = Vec::with_capacity(photo.bytes);
    for key in &keys {
        bytes.extend(
            batch
                .bytes(key)
                .ok_or_else(|| worker::Error::RustError(format!("{key} is missing")))?,
        );
    }
    Ok(bytes)
}

/// Asks Gemini about one photo: the books, or why not and whether trying again could help.
async fn scan_photo(
    obj: &JobObject,
    photo: &ScanPhoto,
    image: &[u8],
) -> Result<Vec<ScanBook>, (String, bool)> {
    let config = obj.config();
    let key = config
        .gemini_api_key
        .clone()
        .ok_or_else(|| (missing_key().message, false))?;
    let url = gemini::endpoint(&config.gemini_api_base, &config.gemini_model);
    let body = gemini::build_request(image, photo.kind).to_string();
    let started = http::now();
    let answer = provider::send(
        Method::Post,
        &url,
        &[
            ("content-type", "application/json"),
            ("x-goog-api-key", &key),
        ],
        Some(body),
        config.provider_timeout_ms,
    )
    .await;
    provider::log_call("gemini", &url, &answer, started);
    match answer {
        Ok((status, bytes)) => gemini::read_answer(status, &bytes, None)
            .map(|detections| gemini::normalize(detections, photo.record.index))
            .map_err(|e| (e.message(), e.retryable())),
        Err(e) => Err((format!("Gemini request failed: {e}"), true)),
    }
}

pub async fn step(
    obj: &JobObject,
    attempt: u32,
    last_attempt: bool,
) -> worker::Result<Result<StepOutcome, StepFailure>> {
    let Some(work) = work(obj) else {
        return Ok(Err(StepFailure::internal("scan work is missing")));
    };
    let Some(position) = work.next_photo() else {
        return finish(obj, &work).await;
    };
    let total = work.photos.len();
    let photo = work.photos[position].clone();
    update_photo(obj, position, |p| {
        p.record.status = PhotoStatus::Processing;
        p.record.attempts = attempt + 1;
    });
    obj.progress(
        work.finished() as u64,
        Some(format!("Scanning photo {} of {total}", position + 1)),
    )
    .await?;
    // The photo is marked in storage as being scanned before the (billed) call is made.
    obj.checkpoint("photo.start").await?;
    let image = load_image(obj, position, &photo).await?;
    let scanned = scan_photo(obj, &photo, &image).await;
    let outcome_label = match scanned {
        Ok(books) => {
            let found = books.len();
            update_photo(obj, position, |p| {
                p.record.status = PhotoStatus::Done;
                p.record.books_found = found;
                p.record.error = None;
            });
            let text = serde_json::to_string(&books).unwrap_or_else(|_| "[]".into());
            obj.with_cache(|cache| cache.pending.push((result_key(position), text)));
            format!("Scanned photo {} of {total}: {found} books", position + 1)
        }
        Err((message, true)) if !last_attempt => {
            update_photo(obj, position, |p| p.record.status = PhotoStatus::Queued);
            return Ok(Err(StepFailure::provider(message)));
        }
        Err((message, retryable)) => {
            obj.log_job(
                "photo.failed",
                json!({ "photo": position, "error": message }),
            );
            update_photo(obj, position, |p| {
                p.record.status = PhotoStatus::Failed;
                p.record.error = Some(message);
                p.retryable = retryable;
            });
            format!("Photo {} of {total} could not be scanned", position + 1)
        }
    };
    obj.progress(work.finished() as u64 + 1, Some(outcome_label))
        .await?;
    obj.checkpoint("photo").await?;
    match self::work(obj) {
        Some(w) if w.next_photo().is_none() => finish(obj, &w).await,
        _ => Ok(Ok(StepOutcome::Continue { delay_ms: 0 })),
    }
}

async fn stored_books(obj: &JobObject) -> worker::Result<Vec<ScanBook>> {
    let batch = store::read_prefix(&obj.storage(), obj.io(), RESULT_PREFIX).await?;
    let mut books = Vec::new();
    for key in batch.keys() {
        if let Some(Ok(mut photo_books)) = batch.json::<Vec<ScanBook>>(&key) {
            books.append(&mut photo_books);
        }
    }
    Ok(books)
}

/// Every photo is done or failed: the job fails only when all of them failed.
async fn finish(
    obj: &JobObject,
    work: &ScanWork,
) -> worker::Result<Result<StepOutcome, StepFailure>> {
    let total = work.photos.len();
    if work.failed() == total {
        let first = work
            .photos
            .iter()
            .find_map(|p| p.record.error.clone())
            .unwrap_or_default();
        return Ok(Err(StepFailure::Permanent(JobError {
            code: "PROVIDER_ERROR".into(),
            message: format!("all {total} photos failed; the first because: {first}"),
            retryable: work.photos.iter().any(|p| p.retryable),
        })));
    }
    let scan = results::summarize(
        stored_books(obj).await?,
        obj.config().scan_confidence_threshold,
    );
    let duration = obj.processing_ms();
    let photos: Vec<Value> = work
        .photos
        .iter()
        .map(|p| json!({ "index": p.record.index, "status": p.record.status, "booksFound": p.record.books_found }))
        .collect();
    Ok(Ok(StepOutcome::Done {
        summary: json!({
            "totalProcessed": total,
            "successCount": total - work.failed(),
            "failureCount": work.failed(),
            "duration": duration,
            "totalDetected": scan.total_detected,
            "approved": scan.approved,
            "needsReview": scan.needs_review,
            "photos": photos,
        }),
    }))
}

pub async fn results(obj: &JobObject) -> worker::Result<Value> {
    let scan = results::summarize(
        stored_books(obj).await?,
        obj.config().scan_confidence_threshold,
    );
    Ok(serde_json::to_value(scan).unwrap_or(Value::Null))
}

/// The photos are deleted once the scan has ended, whichever way.
pub async fn after_end(obj: &JobObject, work: &ScanWork) -> worker::Result<()> {
    let keys: Vec<String> = work
        .photos
        .iter()
        .enumerate()
        .flat_map(|(position, photo)| {
            internal::slices(&ScanPhoto::slice_prefix(position), photo.bytes)
        })
        .map(|(key, _)| key)
        .collect();
    store::delete(&obj.storage(), obj.io(), keys).await
}
