//! The CSV import as a job: the upload parsed in bounded runs, its results kept bounded
//! (see [`super::store`]) and read back a page at a time.

use super::store::{
    json_len, read_slice, results_budget, Pending, StoreLayout, StoredResults, MAX_KEPT_ERRORS,
};
use super::{
    apply_patches, count_data_records, parse_slice, Book, BookPatch, BookRef, CsvResultsPage,
    CsvSummary, Cursor, Deduper, Header, ImportTotals, RowError, RowWarning,
};
use crate::error::ErrorCode;
use crate::host::{Batch, StorageError, Stored};
use crate::job::JobError;
use crate::keys;
use crate::pipeline::{read_slices, Attempt, Ctx, Pipeline, ResultsPage, StepFailure, StepOutcome};
use crate::results::{PageBudget, PageRequest, Position, MAX_PAGE_BYTES};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Records per progress update: one update every few milliseconds of parsing.
const RECORDS_PER_UPDATE: usize = 500;
/// Records per run of the process task: a few hundred milliseconds of parsing, far under an
/// alarm's CPU limit. Each run pays for an alarm set and delivery, its set-up, and often a
/// wait for the socket's progress spacing: a 50,000-row import took about 1,030 ms from
/// upload to close in runs of 5,000 and 690 ms in runs of 20,000 (alternating imports on
/// loopback). Sockets and requests are served at the run's awaits (a checkpoint at least every
/// [`INPUT_BYTES_PER_CHECKPOINT`]), and a cancel seen there ends the run at the next update.
const RECORDS_PER_RUN: usize = 20_000;
/// Input parsed between checkpoints at most: what is buffered for the next one stays a few
/// MiB whatever the rows hold, and so does a checkpoint's write.
const INPUT_BYTES_PER_CHECKPOINT: u64 = 1024 * 1024;
/// The most books a deduper is sized for up front (some 4 MiB of tables); beyond it, the
/// tables grow as they fill.
const DEDUPER_ROOM: usize = 1 << 16;
/// Stored values listed at once when the whole set must be walked (rebuilding the deduper).
const VALUES_PER_LIST: usize = 16;

/// A CSV import's progress: the header read at upload, how far the parser got, and what of
/// the results is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsvWork {
    pub header: Header,
    /// Where the next slice starts; always a record boundary.
    pub cursor: Cursor,
    pub totals: ImportTotals,
    /// The upload's size, which names its storage slices.
    pub bytes: usize,
    /// How many v1 result slices are stored (v1 layout only).
    pub result_slices: u32,
    /// Imports stored by v1 read as [`StoreLayout::V1`].
    #[serde(default)]
    pub layout: StoreLayout,
    /// v1 slices moved into the bounded layout so far, while a v1 import resumes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub migrated_slices: u32,
    #[serde(default)]
    pub store: StoredResults,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl CsvWork {
    /// A new import of an upload of `bytes` whose data starts at `cursor`.
    pub fn new(header: Header, cursor: Cursor, bytes: usize) -> Self {
        Self {
            header,
            cursor,
            totals: ImportTotals::default(),
            bytes,
            result_slices: 0,
            layout: StoreLayout::Bounded,
            migrated_slices: 0,
            store: StoredResults::default(),
        }
    }
}

/// A v1 result slice: books, errors, warnings and merges of one checkpoint together.
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

/// The import's caches: all can be rebuilt from storage after an eviction.
#[derive(Debug, Default)]
pub struct CsvImport {
    /// The upload, read from its slices once per wake, or kept from the creation.
    file: RefCell<Option<Rc<Vec<u8>>>>,
    /// The upload's slices so far, while the creation stores them.
    received: RefCell<Vec<u8>>,
    /// Dedupe memory: kept across runs, rebuilt from the stored books after an eviction (the
    /// rows parsed but not yet stored are parsed again from the cursor, so they are not in it).
    deduper: RefCell<Option<Deduper>>,
    /// Results parsed since the last checkpoint.
    pending: RefCell<Pending>,
    /// The input offset of the last checkpoint's cursor.
    checkpointed_at: Cell<Option<u64>>,
}

fn work(ctx: &impl Ctx<CsvWork>) -> Result<CsvWork, StepFailure> {
    ctx.with_work(|w| w.clone())
        .ok_or_else(|| StepFailure::internal("import work is missing"))
}

/// Why an import whose results would outgrow their budget fails: such a file (rows of a byte
/// or two, or text that JSON must escape) is not a reading history.
fn over_budget(work: &CsvWork) -> StepFailure {
    StepFailure::Permanent(JobError {
        code: ErrorCode::InvalidRequest,
        message: format!(
            "this file's results would take more than twice its {} bytes to store; \
             it does not look like a reading-history export",
            work.bytes
        ),
        retryable: false,
    })
}

/// Calls `f` with every value stored under `prefix`, in key order, a few at a time.
async fn for_each_value(
    ctx: &impl Ctx<CsvWork>,
    prefix: &str,
    mut f: impl FnMut(&str, &Stored),
) -> Result<(), StorageError> {
    let mut after: Option<String> = None;
    loop {
        let values = ctx
            .list(prefix, after.as_deref(), Some(VALUES_PER_LIST))
            .await?;
        for (key, value) in &values {
            f(key, value);
        }
        match values.last() {
            Some((key, _)) if values.len() == VALUES_PER_LIST => after = Some(key.clone()),
            _ => return Ok(()),
        }
    }
}

/// The JSON arrays stored under `prefix` (errors or warnings), joined.
async fn read_list(ctx: &impl Ctx<CsvWork>, prefix: &str) -> Result<Vec<Value>, StorageError> {
    let mut items = Vec::new();
    for_each_value(ctx, prefix, |_, value| {
        if let Ok(Value::Array(part)) = value.json::<Value>() {
            items.extend(part);
        }
    })
    .await?;
    Ok(items)
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

    /// Keeps a slice of the upload as the creation stores it. Once the whole file is here,
    /// the start needs no read back: the count and the first runs begin at once, instead of
    /// after reading 10 MiB back from storage.
    pub fn input_received(&self, work: &CsvWork, key: &str, bytes: &[u8]) {
        if !key.starts_with(keys::CSV_INPUT_PREFIX) {
            return;
        }
        let mut received = self.received.borrow_mut();
        let missing = work.bytes.saturating_sub(received.len());
        received.reserve_exact(missing);
        received.extend_from_slice(bytes);
        if received.len() == work.bytes {
            *self.file.borrow_mut() = Some(Rc::new(std::mem::take(&mut *received)));
        }
    }

    /// The deduper, rebuilt after an eviction from the stored books and then their merges,
    /// read a few values at a time.
    async fn deduper(&self, ctx: &impl Ctx<CsvWork>) -> Result<Deduper, StorageError> {
        if let Some(deduper) = self.deduper.borrow_mut().take() {
            return Ok(deduper);
        }
        // Sized for every row to be a book, which the maps would grow to anyway, up to a cap
        // for files of tiny rows.
        let rows = usize::try_from(ctx.total_count()).unwrap_or(usize::MAX);
        let mut deduper = Deduper::with_capacity(rows.min(DEDUPER_ROOM));
        for_each_value(ctx, keys::CSV_BOOKS_PREFIX, |_, value| {
            if let Ok(books) = value.json::<Vec<Book>>() {
                books.iter().for_each(|book| deduper.remember(book));
            }
        })
        .await?;
        for_each_value(ctx, keys::CSV_PATCHES_PREFIX, |_, value| {
            if let Ok(patches) = value.json::<Vec<BookPatch>>() {
                patches
                    .iter()
                    .for_each(|patch| deduper.remember_patch(patch));
            }
        })
        .await?;
        Ok(deduper)
    }

    /// Moves one v1 result slice into the bounded layout, in order, and checkpoints; the
    /// import parses on once all are moved. The v1 values go when the import ends.
    async fn migrate_one(
        &self,
        ctx: &impl Ctx<CsvWork>,
        work: &CsvWork,
    ) -> Result<(), StepFailure> {
        if work.migrated_slices < work.result_slices {
            let key = keys::csv_result(work.migrated_slices);
            let stored = ctx.read(std::slice::from_ref(&key)).await?;
            let slice = match stored.json::<ResultSlice>(&key) {
                Some(Ok(slice)) => slice,
                Some(Err(e)) => return Err(StepFailure::internal(format!("{key}: {e}"))),
                None => ResultSlice::default(),
            };
            ctx.with_work(|w| {
                let mut pending = self.pending.borrow_mut();
                pending.add_books(&w.store, slice.books, slice.patches);
                pending.add_errors(&w.store, slice.errors);
                // v1 counted no warnings; the ones it stored are counted as they move.
                w.totals.warnings += slice.warnings.len() as u64;
                pending.add_warnings(&w.store, slice.warnings);
                w.migrated_slices += 1;
            });
        }
        ctx.with_work(|w| {
            if w.migrated_slices >= w.result_slices {
                w.layout = StoreLayout::Bounded;
            }
        });
        ctx.checkpoint("results.migrated").await?;
        Ok(())
    }

    /// A stored book slice with the merges into it applied.
    async fn book_slice(
        &self,
        ctx: &impl Ctx<CsvWork>,
        store: &StoredResults,
        slice: u32,
    ) -> Result<Vec<Book>, StorageError> {
        let key = keys::csv_books(slice);
        let stored = ctx.read(std::slice::from_ref(&key)).await?;
        let books = stored.require_bytes(&key)?;
        let patches = if store.patch_parts > 0 {
            ctx.list(&keys::csv_patches_prefix(slice), None, None)
                .await?
        } else {
            Vec::new()
        };
        let texts: Vec<&str> = patches
            .iter()
            .filter_map(|(_, value)| std::str::from_utf8(value.as_bytes()).ok())
            .collect();
        let first = BookRef(store.slice_range(slice).start);
        std::str::from_utf8(books)
            .ok()
            .and_then(|text| read_slice(first, text, &texts))
            .ok_or_else(|| StorageError(format!("{key} is not a book slice")))
    }

    /// Results of an import that v1 stored and finished: its slices read whole, as v1 did.
    async fn v1_results(
        &self,
        ctx: &impl Ctx<CsvWork>,
        page: PageRequest,
        totals: ImportTotals,
    ) -> Result<ResultsPage, StorageError> {
        let mut all = ResultSlice::default();
        for (_, value) in ctx.list(keys::CSV_RESULT_PREFIX, None, None).await? {
            if let Ok(mut slice) = value.json::<ResultSlice>() {
                all.books.append(&mut slice.books);
                all.errors.append(&mut slice.errors);
                all.warnings.append(&mut slice.warnings);
                all.patches.append(&mut slice.patches);
            }
        }
        apply_patches(&mut all.books, BookRef(0), &all.patches);
        let first_page = page.is_first();
        all.errors.truncate(MAX_KEPT_ERRORS as usize);
        let (errors, warnings) = if first_page {
            (to_values(&all.errors), to_values(&all.warnings))
        } else {
            (Vec::new(), Vec::new())
        };
        let start = page.after.map_or(0, |at| at.major);
        let mut position = start;
        let mut next_books = all.books.into_iter().skip(start as usize);
        page_of_books(page, totals, errors, warnings, |budget, books| {
            for book in next_books.by_ref() {
                if !budget.take(json_len(&book) as usize, books.is_empty()) {
                    return Some(position);
                }
                books.push(book);
                position += 1;
            }
            None
        })
    }
}

/// Entries as they go into a results page.
fn to_values<T: Serialize>(entries: &[T]) -> Vec<Value> {
    entries
        .iter()
        .filter_map(|entry| serde_json::to_value(entry).ok())
        .collect()
}

/// A results page: `books` filled by `fill` within the page's budget (it returns where the
/// next page starts when books remain), errors and warnings first when given.
fn page_of_books(
    page: PageRequest,
    totals: ImportTotals,
    errors: Vec<Value>,
    warnings: Vec<Value>,
    fill: impl FnOnce(&mut PageBudget, &mut Vec<Book>) -> Option<u64>,
) -> Result<ResultsPage, StorageError> {
    let mut budget = PageBudget::new(page.limit, MAX_PAGE_BYTES);
    budget.spend(json_len(&errors) as usize + json_len(&warnings) as usize);
    let mut books = Vec::new();
    let next = fill(&mut budget, &mut books);
    let document = CsvResultsPage::new(books, errors, warnings, &totals);
    Ok(ResultsPage {
        document: serde_json::to_value(document).unwrap_or_default(),
        next: next.map(|major| Position { major, minor: 0 }),
    })
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
        if work.store.over_budget {
            return Err(over_budget(&work));
        }
        if work.layout == StoreLayout::V1 {
            self.migrate_one(ctx, &work).await?;
            return Ok(StepOutcome::Continue { delay_ms: 0 });
        }
        let file = self.file(ctx, &work).await?;
        let mut deduper = self.deduper(ctx).await?;
        let total = ctx.total_count();
        let checkpointed_at = self.checkpointed_at.get().unwrap_or(work.cursor.offset);
        self.checkpointed_at.set(Some(checkpointed_at));
        let mut parsed_this_run = 0;
        let mut done = false;
        while parsed_this_run < RECORDS_PER_RUN && !done && ctx.is_running() {
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
            work.cursor = out.cursor;
            let (cursor, totals) = (work.cursor, work.totals);
            ctx.with_work(|w| {
                w.cursor = cursor;
                w.totals = totals;
                let mut pending = self.pending.borrow_mut();
                pending.add_books(&w.store, out.books, out.patches);
                pending.add_errors(&w.store, out.errors);
                pending.add_warnings(&w.store, out.warnings);
            });
            let item = format!("Imported {} of {total} rows", totals.data_records);
            ctx.progress(totals.data_records, Some(item)).await?;
            let since = cursor.offset - self.checkpointed_at.get().unwrap_or(0);
            if since >= INPUT_BYTES_PER_CHECKPOINT {
                ctx.checkpoint("results").await?;
            }
            if ctx.with_work(|w| w.store.over_budget).unwrap_or(false) {
                *self.deduper.borrow_mut() = None;
                return Err(over_budget(&work));
            }
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
        // The last checkpoint comes after the summary: what it will store counts too.
        let (errors_kept, warnings_kept) = {
            let pending = self.pending.borrow();
            (
                work.store.errors_kept + pending.errors.len() as u64,
                work.store.warnings_kept + pending.warnings.len() as u64,
            )
        };
        let summary = CsvSummary::new(
            &work.totals,
            work.header.format,
            ctx.processing_ms(),
            errors_kept,
            warnings_kept,
        );
        Ok(serde_json::to_value(summary).unwrap_or_default())
    }

    async fn results(
        &self,
        ctx: &impl Ctx<CsvWork>,
        page: PageRequest,
    ) -> Result<ResultsPage, StorageError> {
        let Some(work) = ctx.with_work(|w| w.clone()) else {
            return Err(StorageError("import work is missing".into()));
        };
        if work.layout == StoreLayout::V1 {
            return self.v1_results(ctx, page, work.totals).await;
        }
        let (errors, warnings) = if page.is_first() {
            (
                read_list(ctx, keys::CSV_ERRORS_PREFIX).await?,
                read_list(ctx, keys::CSV_WARNINGS_PREFIX).await?,
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let store = &work.store;
        let mut position = page.after.map_or(0, |at| at.major);
        // The slices this page needs, read one at a time before filling it.
        let mut slices: Vec<Vec<Book>> = Vec::new();
        let mut estimate = 0usize;
        let mut at = position;
        while let Some(slice) = store.slice_of(at) {
            if estimate >= MAX_PAGE_BYTES || at - position >= page.limit as u64 {
                break;
            }
            let books = self.book_slice(ctx, store, slice).await?;
            let range = store.slice_range(slice);
            let skip = (at - range.start) as usize;
            estimate += books
                .iter()
                .skip(skip)
                .map(|b| json_len(b) as usize)
                .sum::<usize>();
            slices.push(books.into_iter().skip(skip).collect());
            at = range.end;
        }
        let total_books = store.books;
        page_of_books(page, work.totals, errors, warnings, |budget, books| {
            for book in slices.into_iter().flatten() {
                if !budget.take(json_len(&book) as usize, books.is_empty()) {
                    return Some(position);
                }
                books.push(book);
                position += 1;
            }
            (position < total_books).then_some(position)
        })
    }

    /// The upload is deleted once the import has ended, and so are the v1 slices it was
    /// moved from; the results stay until cleanup.
    async fn after_end(&self, ctx: &impl Ctx<CsvWork>) -> Result<(), StorageError> {
        *self.file.borrow_mut() = None;
        *self.deduper.borrow_mut() = None;
        let Some(work) = ctx.with_work(|w| w.clone()) else {
            return Ok(());
        };
        let mut gone = keys::slice_keys(keys::CSV_INPUT_PREFIX, work.bytes);
        if work.layout == StoreLayout::Bounded {
            gone.extend((0..work.result_slices).map(keys::csv_result));
        }
        ctx.delete(gone).await
    }

    /// Moves the buffered results into the checkpoint's write, within the upload's budget.
    fn drain_pending(&self, work: &mut CsvWork, batch: &mut Batch) {
        let budget = results_budget(work.bytes as u64);
        self.pending
            .borrow_mut()
            .drain_into(&mut work.store, budget, batch);
        self.checkpointed_at.set(Some(work.cursor.offset));
    }
}
