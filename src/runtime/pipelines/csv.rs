//! The CSV import's glue: the upload parsed in bounded slices on the alarm, results stored in slices.

use super::{Cache, StepFailure, StepOutcome};
use crate::internal;
use crate::pipelines::csv::{
    apply_patches, count_data_records, parse_slice, success_rate, Book, BookPatch, BookRef,
    Deduper, RowError, RowWarning,
};
use crate::pipelines::work::{CsvWork, Work};
use crate::runtime::job_object::JobObject;
use crate::runtime::store::{self, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::rc::Rc;

pub const INPUT_PREFIX: &str = "in:";
const RESULT_PREFIX: &str = "res:csv:";
/// Records per progress update: one update every few milliseconds of parsing.
const RECORDS_PER_UPDATE: usize = 500;
/// Records per run of the process task, sized well under the CPU limit (about 50 ms in
/// workerd) so that a cancel or a socket never waits long for the object.
const RECORDS_PER_RUN: usize = 5_000;
/// Books per stored result slice: about 400 KB of JSON, far under the 2 MB value limit.
const BOOKS_PER_SLICE: usize = 2_000;

/// Parsed rows not yet written; they go into result slices at the next checkpoint.
#[derive(Default, Serialize, Deserialize)]
pub struct Pending {
    pub books: Vec<Book>,
    pub errors: Vec<RowError>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<RowWarning>,
    /// Merges of duplicates into books of earlier slices, applied when results are read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<BookPatch>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.books.is_empty()
            && self.errors.is_empty()
            && self.warnings.is_empty()
            && self.patches.is_empty()
    }
}

fn work(obj: &JobObject) -> Option<CsvWork> {
    obj.with_job(|job| match &job.work {
        Work::Csv(w) => Some(w.clone()),
        _ => None,
    })
    .flatten()
}

fn result_key(n: u32) -> String {
    format!("{RESULT_PREFIX}{n:05}")
}

/// Moves the buffered rows into numbered result slices, advancing the slice counter in the
/// work that is written in the same operation.
pub fn take_pending(obj: &JobObject, batch: &mut WriteBatch) {
    let pending = obj.with_cache(|cache: &mut Cache| std::mem::take(&mut cache.csv_pending));
    if pending.is_empty() {
        return;
    }
    let mut books = pending.books.into_iter().peekable();
    let (mut errors, mut warnings) = (Some(pending.errors), Some(pending.warnings));
    let mut patches = Some(pending.patches);
    loop {
        let slice = Pending {
            books: books.by_ref().take(BOOKS_PER_SLICE).collect(),
            errors: errors.take().unwrap_or_default(),
            warnings: warnings.take().unwrap_or_default(),
            patches: patches.take().unwrap_or_default(),
        };
        let n = obj
            .with_job(|job| match &mut job.work {
                Work::Csv(w) => {
                    w.result_slices += 1;
                    w.result_slices - 1
                }
                _ => 0,
            })
            .unwrap_or(0);
        batch.json(&result_key(n), &slice);
        if books.peek().is_none() {
            return;
        }
    }
}

/// The upload, read from its slices once per wake.
async fn file(obj: &JobObject, work: &CsvWork) -> worker::Result<Rc<Vec<u8>>> {
    if let Some(file) = obj.with_cache(|cache| cache.csv_file.clone()) {
        return Ok(file);
    }
    let keys: Vec<String> = internal::slices(INPUT_PREFIX, work.bytes)
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let batch = store::read(&obj.storage(), obj.io(), &refs).await?;
    let mut bytes = Vec::with_capacity(work.bytes);
    for key in &keys {
        let slice = batch.bytes(key);
        bytes.extend(slice.ok_or_else(|| worker::Error::RustError(format!("{key} is missing")))?);
    }
    let file = Rc::new(bytes);
    obj.with_cache(|cache| cache.csv_file = Some(file.clone()));
    Ok(file)
}

async fn stored_slices(obj: &JobObject) -> worker::Result<Vec<Pending>> {
    let batch = store::read_prefix(&obj.storage(), obj.io(), RESULT_PREFIX).await?;
    Ok(batch
        .keys()
        .iter()
        .filter_map(|key| batch.json::<Pending>(key)?.ok())
        .collect())
}

/// The dedupe memory: kept across runs, rebuilt from the stored books after an eviction (the
/// rows parsed but not yet stored are parsed again from the cursor, so they are not in it).
async fn deduper(obj: &JobObject) -> worker::Result<Deduper> {
    if let Some(deduper) = obj.with_cache(|cache| cache.csv_deduper.take()) {
        return Ok(deduper);
    }
    let mut deduper = Deduper::default();
    let slices = stored_slices(obj).await?;
    for slice in &slices {
        slice.books.iter().for_each(|book| deduper.remember(book));
    }
    for slice in &slices {
        slice.patches.iter().for_each(|p| deduper.remember_patch(p));
    }
    Ok(deduper)
}

pub async fn prepare(obj: &JobObject, work: &CsvWork) -> Result<u64, StepFailure> {
    let file = file(obj, work)
        .await
        .map_err(|e| StepFailure::internal(format!("the upload could not be read: {e}")))?;
    let rest = file.get(work.cursor.offset as usize..).unwrap_or_default();
    Ok(count_data_records(&work.header, rest, work.cursor))
}

pub async fn step(obj: &JobObject) -> worker::Result<Result<StepOutcome, StepFailure>> {
    let Some(mut work) = work(obj) else {
        return Ok(Err(StepFailure::internal("import work is missing")));
    };
    let file = file(obj, &work).await?;
    let mut deduper = deduper(obj).await?;
    let total = obj
        .with_job(|job| job.record.state.total_count)
        .unwrap_or(0);
    let mut parsed_this_run = 0;
    let mut done = false;
    while parsed_this_run < RECORDS_PER_RUN && !done {
        let input = file.get(work.cursor.offset as usize..).unwrap_or_default();
        let before = work.totals.data_records;
        let out = parse_slice(
            &work.header,
            input,
            work.cursor,
            true,
            RECORDS_PER_UPDATE,
            &mut work.totals,
            &mut deduper,
        );
        parsed_this_run += (work.totals.data_records - before) as usize;
        done = out.done;
        obj.with_cache(|cache| {
            cache.csv_pending.books.extend(out.books);
            cache.csv_pending.errors.extend(out.errors);
            cache.csv_pending.warnings.extend(out.warnings);
            cache.csv_pending.patches.extend(out.patches);
        });
        let (cursor, totals) = (out.cursor, work.totals);
        obj.with_job(|job| {
            if let Work::Csv(w) = &mut job.work {
                w.cursor = cursor;
                w.totals = totals;
            }
        });
        work.cursor = cursor;
        let item = format!("Imported {} of {total} rows", totals.data_records);
        obj.progress(totals.data_records, Some(item)).await?;
    }
    obj.with_cache(|cache| cache.csv_deduper = Some(deduper));
    if !done {
        return Ok(Ok(StepOutcome::Continue { delay_ms: 0 }));
    }
    let duration = obj.processing_ms();
    let t = work.totals;
    Ok(Ok(StepOutcome::Done {
        summary: json!({
            "totalProcessed": t.data_records,
            "successCount": t.books,
            "failureCount": t.errors,
            "duplicates": t.duplicates,
            "invalidUtf8Rows": t.invalid_utf8_rows,
            "format": work.header.format.as_str(),
            "successRate": success_rate(&t),
            "duration": duration,
        }),
    }))
}

pub async fn results(obj: &JobObject) -> worker::Result<Value> {
    let totals = work(obj).map(|w| w.totals).unwrap_or_default();
    let mut all = Pending::default();
    for mut slice in stored_slices(obj).await? {
        all.books.append(&mut slice.books);
        all.errors.append(&mut slice.errors);
        all.warnings.append(&mut slice.warnings);
        all.patches.append(&mut slice.patches);
    }
    apply_patches(&mut all.books, BookRef(0), &all.patches);
    let mut document = json!({
        "books": all.books,
        "errors": all.errors,
        "successRate": success_rate(&totals),
    });
    if !all.warnings.is_empty() {
        document["warnings"] = json!(all.warnings);
    }
    Ok(document)
}

/// The upload is deleted once the import has ended; the results stay until cleanup.
pub async fn after_end(obj: &JobObject, work: &CsvWork) -> worker::Result<()> {
    let keys = internal::slices(INPUT_PREFIX, work.bytes)
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    obj.with_cache(|cache| {
        cache.csv_file = None;
        cache.csv_deduper = None;
    });
    store::delete(&obj.storage(), obj.io(), keys).await
}
