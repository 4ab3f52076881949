//! The CSV import as a job: the upload parsed in bounded runs, rows stored in result slices.

use super::{
    apply_patches, count_data_records, parse_slice, Book, BookPatch, BookRef, CsvResultsPage,
    CsvSummary, Cursor, Deduper, Header, ImportTotals, RowError, RowWarning,
};
use crate::host::{Batch, StorageError};
use crate::keys;
use crate::pipeline::{read_slices, Attempt, Ctx, Pipeline, ResultsPage, StepFailure, StepOutcome};
use crate::results::PageRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cell::RefCell;
use std::rc::Rc;

/// Records per progress update: one update every few milliseconds of parsing.
const RECORDS_PER_UPDATE: usize = 500;
/// Records per run of the process task, sized well under the CPU limit (about 50 ms in
/// workerd) so that a cancel or a socket never waits long for the object.
const RECORDS_PER_RUN: usize = 5_000;
/// Books per stored result slice: about 400 KB of JSON, far under the 2 MB value limit.
const BOOKS_PER_SLICE: usize = 2_000;

/// A CSV import's progress: the header read at upload, and how far the parser got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsvWork {
    pub header: Header,
    /// Where the next slice starts; always a record boundary.
    pub cursor: Cursor,
    pub totals: ImportTotals,
    /// The upload's size, which names its storage slices.
    pub bytes: usize,
    /// How many result slices are stored; the next one gets this number.
    pub result_slices: u32,
}

/// Parsed rows; the unit of a stored result slice, and the buffer of rows not yet stored.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ResultSlice {
    pub books: Vec<Book>,
    pub errors: Vec<RowError>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<RowWarning>,
    /// Merges of duplicates into books of earlier slices, applied when results are read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<BookPatch>,
}

impl ResultSlice {
    fn is_empty(&self) -> bool {
        self.books.is_empty()
            && self.errors.is_empty()
            && self.warnings.is_empty()
            && self.patches.is_empty()
    }
}

/// The import's caches: all can be rebuilt from storage after an eviction.
#[derive(Debug, Default)]
pub struct CsvImport {
    /// The upload, read from its slices once per wake.
    file: RefCell<Option<Rc<Vec<u8>>>>,
    /// Dedupe memory: kept across runs, rebuilt from the stored books after an eviction (the
    /// rows parsed but not yet stored are parsed again from the cursor, so they are not in it).
    deduper: RefCell<Option<Deduper>>,
    /// Rows parsed since the last checkpoint.
    pending: RefCell<ResultSlice>,
}

fn work(ctx: &impl Ctx<CsvWork>) -> Result<CsvWork, StepFailure> {
    ctx.with_work(|w| w.clone())
        .ok_or_else(|| StepFailure::internal("import work is missing"))
}

impl CsvImport {
    async fn file(
        &self,
        ctx: &impl Ctx<CsvWork>,
        work: &CsvWork,
    ) -> Result<Rc<Vec<u8>>, StorageError> {
        if let Some(file) = self.file.borrow().clone() {
            return Ok(file);
        }
        let file = Rc::new(read_slices(ctx, keys::CSV_INPUT_PREFIX, work.bytes).await?);
        *self.file.borrow_mut() = Some(file.clone());
        Ok(file)
    }

    async fn stored_slices(
        &self,
        ctx: &impl Ctx<CsvWork>,
    ) -> Result<Vec<ResultSlice>, StorageError> {
        let stored = ctx.list(keys::CSV_RESULT_PREFIX, None, None).await?;
        Ok(stored
            .iter()
            .filter_map(|(_, value)| value.json::<ResultSlice>().ok())
            .collect())
    }

    async fn deduper(&self, ctx: &impl Ctx<CsvWork>) -> Result<Deduper, StorageError> {
        if let Some(deduper) = self.deduper.borrow_mut().take() {
            return Ok(deduper);
        }
        let mut deduper = Deduper::default();
        let slices = self.stored_slices(ctx).await?;
        for slice in &slices {
            slice.books.iter().for_each(|book| deduper.remember(book));
        }
        for slice in &slices {
            slice
                .patches
                .iter()
                .for_each(|patch| deduper.remember_patch(patch));
        }
        Ok(deduper)
    }
}

impl Pipeline for CsvImport {
    type Work = CsvWork;

    async fn prepare(&self, ctx: &impl Ctx<CsvWork>) -> Result<u64, StepFailure> {
        let work = work(ctx)?;
        let file = self
            .file(ctx, &work)
            .await
            .map_err(|e| StepFailure::internal(format!("the upload could not be read: {e}")))?;
        let rest = file.get(work.cursor.offset as usize..).unwrap_or_default();
        Ok(count_data_records(&work.header, rest, work.cursor))
    }

    async fn step(
        &self,
        ctx: &impl Ctx<CsvWork>,
        _attempt: Attempt,
    ) -> Result<StepOutcome, StepFailure> {
        let mut work = work(ctx)?;
        let file = self.file(ctx, &work).await?;
        let mut deduper = self.deduper(ctx).await?;
        let total = ctx.total_count();
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
            {
                let mut pending = self.pending.borrow_mut();
                pending.books.extend(out.books);
                pending.errors.extend(out.errors);
                pending.warnings.extend(out.warnings);
                pending.patches.extend(out.patches);
            }
            work.cursor = out.cursor;
            let (cursor, totals) = (work.cursor, work.totals);
            ctx.with_work(|w| {
                w.cursor = cursor;
                w.totals = totals;
            });
            let item = format!("Imported {} of {total} rows", totals.data_records);
            ctx.progress(totals.data_records, Some(item)).await?;
        }
        *self.deduper.borrow_mut() = Some(deduper);
        Ok(if done {
            StepOutcome::Done
        } else {
            StepOutcome::Continue { delay_ms: 0 }
        })
    }

    async fn summary(&self, ctx: &impl Ctx<CsvWork>) -> Result<Value, StepFailure> {
        let work = work(ctx)?;
        let summary = CsvSummary::new(&work.totals, work.header.format, ctx.processing_ms());
        Ok(serde_json::to_value(summary).unwrap_or_default())
    }

    async fn results(
        &self,
        ctx: &impl Ctx<CsvWork>,
        _page: PageRequest,
    ) -> Result<ResultsPage, StorageError> {
        let totals = ctx.with_work(|w| w.totals).unwrap_or_default();
        let mut all = ResultSlice::default();
        for mut slice in self.stored_slices(ctx).await? {
            all.books.append(&mut slice.books);
            all.errors.append(&mut slice.errors);
            all.warnings.append(&mut slice.warnings);
            all.patches.append(&mut slice.patches);
        }
        apply_patches(&mut all.books, BookRef(0), &all.patches);
        let page = CsvResultsPage::new(all.books, all.errors, all.warnings, &totals);
        Ok(ResultsPage::whole(
            serde_json::to_value(page).unwrap_or_default(),
        ))
    }

    /// The upload is deleted once the import has ended; the results stay until cleanup.
    async fn after_end(&self, ctx: &impl Ctx<CsvWork>) -> Result<(), StorageError> {
        *self.file.borrow_mut() = None;
        *self.deduper.borrow_mut() = None;
        let Some(bytes) = ctx.with_work(|w| w.bytes) else {
            return Ok(());
        };
        ctx.delete(keys::slice_keys(keys::CSV_INPUT_PREFIX, bytes))
            .await
    }

    /// Moves the buffered rows into numbered result slices, advancing the slice counter in
    /// the work that is written in the same operation.
    fn drain_pending(&self, work: &mut CsvWork, batch: &mut Batch) {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        if pending.is_empty() {
            return;
        }
        let mut books = pending.books.into_iter().peekable();
        let (mut errors, mut warnings, mut patches) = (
            Some(pending.errors),
            Some(pending.warnings),
            Some(pending.patches),
        );
        loop {
            let slice = ResultSlice {
                books: books.by_ref().take(BOOKS_PER_SLICE).collect(),
                errors: errors.take().unwrap_or_default(),
                warnings: warnings.take().unwrap_or_default(),
                patches: patches.take().unwrap_or_default(),
            };
            batch.json(&keys::csv_result(work.result_slices), &slice);
            work.result_slices += 1;
            if books.peek().is_none() {
                return;
            }
        }
    }
}
