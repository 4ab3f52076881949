//! How an import's results are kept: books in byte-bounded slices, merges beside them, errors
//! and warnings capped, and all of it within a budget of twice the upload.
//!
//! Every value written is at most [`MAX_RESULT_VALUE_BYTES`] whatever the rows hold, because
//! books are packed by their JSON size and each book's text is already cut
//! ([`super::MAX_FIELD_BYTES`]). Books never change once stored: a later duplicate's merge
//! ([`BookPatch`]) is stored beside the slice of the book it names and applied when the slice
//! is read, so a results page reads only the slices it serves.
//!
//! Layout (keys in [`crate::keys`]): book slice `n` holds the books from `slice_starts[n]` on;
//! merges into it are under its own prefix; errors and warnings are in numbered parts, read
//! whole for the first page. Imports stored by v1 (one unbounded value per checkpoint) are
//! moved into this layout when they resume ([`StoreLayout::V1`]).

use super::book::{Book, BookPatch, BookRef, RowError, RowWarning};
use crate::host::Batch;
use crate::keys::{self, MAX_RESULT_VALUE_BYTES};
use crate::pipeline::{pack_with, write_json};
use serde::{Deserialize, Serialize};

/// Detailed errors kept (contract 9.2); `summary.errorCount` counts them all.
pub const MAX_KEPT_ERRORS: u64 = 1_000;
/// Warnings kept, for the same reason; `summary.warningCount` counts them all.
pub const MAX_KEPT_WARNINGS: u64 = 1_000;
/// The JSON bytes kept errors may take: with the warnings' share it leaves the first results
/// page room for books within its 1 MiB (errors of 1 KiB titles would otherwise fill it).
pub const MAX_ERRORS_BYTES: u64 = 384 * 1024;
pub const MAX_WARNINGS_BYTES: u64 = 256 * 1024;
/// Stored results may take twice the upload plus this, so a tiny file's one book still fits.
pub const RESULTS_BUDGET_FLOOR: u64 = 64 * 1024;

/// The most bytes of stored results an upload of `upload_bytes` may lead to.
pub fn results_budget(upload_bytes: u64) -> u64 {
    upload_bytes
        .saturating_mul(2)
        .saturating_add(RESULTS_BUDGET_FLOOR)
}

/// Which layout a job's results are stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StoreLayout {
    /// v1: whole checkpoints under `res:csv:`, books, errors, warnings and merges together.
    #[default]
    V1,
    /// This module's layout.
    Bounded,
}

/// What is stored, persisted with the import's progress.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredResults {
    /// The position of the first book of each book slice; the slice count is its length.
    pub slice_starts: Vec<u64>,
    /// Books stored (the next book's position).
    pub books: u64,
    /// Merge parts written, which numbers the next.
    pub patch_parts: u32,
    pub errors_kept: u64,
    pub error_bytes: u64,
    pub error_parts: u32,
    pub warnings_kept: u64,
    pub warning_bytes: u64,
    pub warning_parts: u32,
    /// Every stored result value's bytes (keys included), against [`results_budget`].
    pub bytes: u64,
    /// A checkpoint's results would have gone past the budget and were not stored.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub over_budget: bool,
}

impl StoredResults {
    /// The slice holding the book at `position`, if stored.
    pub fn slice_of(&self, position: u64) -> Option<u32> {
        if position >= self.books {
            return None;
        }
        let after = self
            .slice_starts
            .partition_point(|&start| start <= position);
        after.checked_sub(1).map(|slice| slice as u32)
    }

    /// The positions of the books in `slice`.
    pub fn slice_range(&self, slice: u32) -> std::ops::Range<u64> {
        let index = slice as usize;
        let start = self.slice_starts.get(index).copied().unwrap_or(self.books);
        let end = self
            .slice_starts
            .get(index + 1)
            .copied()
            .unwrap_or(self.books);
        start..end
    }
}

/// Results parsed since the last checkpoint.
#[derive(Debug, Default)]
pub struct Pending {
    /// New books, the first at position [`StoredResults::books`].
    pub books: Vec<Book>,
    /// Merges into books already stored.
    pub patches: Vec<BookPatch>,
    /// Errors and warnings still within the caps.
    pub errors: Vec<RowError>,
    pub warnings: Vec<RowWarning>,
    /// Bytes of JSON the kept `errors` and `warnings` take.
    error_bytes: u64,
    warning_bytes: u64,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.books.is_empty()
            && self.patches.is_empty()
            && self.errors.is_empty()
            && self.warnings.is_empty()
    }

    /// Takes a slice's new books, and its merges: applied here when they name a book not yet
    /// stored, kept for the stored book's slice otherwise.
    pub fn add_books(&mut self, stored: &StoredResults, books: Vec<Book>, patches: Vec<BookPatch>) {
        self.books.extend(books);
        for patch in patches {
            let unstored = patch
                .book
                .0
                .checked_sub(stored.books)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| self.books.get_mut(i));
            match unstored {
                Some(book) => patch.apply(book),
                None => self.patches.push(patch),
            }
        }
    }

    /// Keeps errors while fewer than [`MAX_KEPT_ERRORS`] are kept in all and their JSON fits
    /// [`MAX_ERRORS_BYTES`]; the rest are counted by the totals only.
    pub fn add_errors(&mut self, stored: &StoredResults, errors: Vec<RowError>) {
        for error in errors {
            let kept = stored.errors_kept + self.errors.len() as u64;
            let size = json_len(&error) + 1;
            if kept < MAX_KEPT_ERRORS
                && stored.error_bytes + self.error_bytes + size <= MAX_ERRORS_BYTES
            {
                self.error_bytes += size;
                self.errors.push(error);
            }
        }
    }

    /// As [`Pending::add_errors`], for warnings.
    pub fn add_warnings(&mut self, stored: &StoredResults, warnings: Vec<RowWarning>) {
        for warning in warnings {
            let kept = stored.warnings_kept + self.warnings.len() as u64;
            let size = json_len(&warning) + 1;
            if kept < MAX_KEPT_WARNINGS
                && stored.warning_bytes + self.warning_bytes + size <= MAX_WARNINGS_BYTES
            {
                self.warning_bytes += size;
                self.warnings.push(warning);
            }
        }
    }

    /// Moves everything into `batch` as new values, counting them in `stored`. When the new
    /// values would take `stored` past `budget` bytes, nothing is written and
    /// [`StoredResults::over_budget`] is set: the import then fails, as its file is not one
    /// whose results can be kept.
    pub fn drain_into(&mut self, stored: &mut StoredResults, budget: u64, batch: &mut Batch) {
        let pending = std::mem::take(self);
        let mut values: Vec<(String, Vec<u8>)> = Vec::new();
        let mut next = stored.clone();
        // Books: as many slices as their JSON needs.
        for (part, count) in pack_with(&pending.books, MAX_RESULT_VALUE_BYTES, Book::write_json) {
            if count == 0 {
                continue;
            }
            next.slice_starts.push(next.books);
            let slice = next.slice_starts.len() as u32 - 1;
            values.push((keys::csv_books(slice), part));
            next.books += count as u64;
        }
        // Merges: grouped by the slice of the book they name, in file order within each.
        let mut by_slice: Vec<(u32, Vec<&BookPatch>)> = Vec::new();
        for patch in &pending.patches {
            let Some(slice) = next.slice_of(patch.book.0) else {
                continue;
            };
            match by_slice.iter_mut().find(|(s, _)| *s == slice) {
                Some((_, list)) => list.push(patch),
                None => by_slice.push((slice, vec![patch])),
            }
        }
        for (slice, patches) in by_slice {
            for (part, _) in pack_with(&patches, MAX_RESULT_VALUE_BYTES, write_json) {
                values.push((keys::csv_patches(slice, next.patch_parts), part));
                next.patch_parts += 1;
            }
        }
        if !pending.errors.is_empty() {
            for (part, _) in pack_with(&pending.errors, MAX_RESULT_VALUE_BYTES, write_json) {
                values.push((keys::csv_errors(next.error_parts), part));
                next.error_parts += 1;
            }
            next.errors_kept += pending.errors.len() as u64;
            next.error_bytes += pending.error_bytes;
        }
        if !pending.warnings.is_empty() {
            for (part, _) in pack_with(&pending.warnings, MAX_RESULT_VALUE_BYTES, write_json) {
                values.push((keys::csv_warnings(next.warning_parts), part));
                next.warning_parts += 1;
            }
            next.warnings_kept += pending.warnings.len() as u64;
            next.warning_bytes += pending.warning_bytes;
        }
        next.bytes += values
            .iter()
            .map(|(key, value)| (key.len() + value.len()) as u64)
            .sum::<u64>();
        if next.bytes > budget {
            stored.over_budget = true;
            return;
        }
        *stored = next;
        // Stored as the bytes they were written to: no UTF-8 check, and no string for the
        // runtime to decode. Readers take bytes or text, as earlier builds stored text.
        for (key, value) in values {
            batch.bytes(&key, value);
        }
    }
}

/// The length of `value`'s JSON, without building it.
pub fn json_len<T: Serialize + ?Sized>(value: &T) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => 0,
    }
}

/// A book slice read back with the merges stored for it, applied in file order.
pub fn read_slice(first: BookRef, slice: &str, patch_parts: &[&str]) -> Option<Vec<Book>> {
    let mut books: Vec<Book> = serde_json::from_str(slice).ok()?;
    for part in patch_parts {
        let patches: Vec<BookPatch> = serde_json::from_str(part).ok()?;
        super::apply_patches(&mut books, first, &patches);
    }
    Some(books)
}

// Native only, as proptest is.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::host::Stored;
    use crate::pipelines::csv::book::tests::book;
    use crate::pipelines::csv::{parse_slice, read_header, Deduper, ImportTotals, MAX_FIELD_BYTES};
    use proptest::prelude::*;

    fn stored(starts: &[u64], books: u64) -> StoredResults {
        StoredResults {
            slice_starts: starts.to_vec(),
            books,
            ..StoredResults::default()
        }
    }

    #[test]
    fn positions_find_their_slice() {
        let store = stored(&[0, 3, 10], 12);
        // (position, slice)
        let table = [
            (0, Some(0)),
            (2, Some(0)),
            (3, Some(1)),
            (9, Some(1)),
            (10, Some(2)),
            (11, Some(2)),
            (12, None),
        ];
        for (position, slice) in table {
            assert_eq!(store.slice_of(position), slice, "{position}");
        }
        assert_eq!(store.slice_range(0), 0..3);
        assert_eq!(store.slice_range(2), 10..12);
        assert_eq!(stored(&[], 0).slice_of(0), None);
    }

    fn error(line: u64, title_bytes: usize) -> RowError {
        RowError::new(line, Some("t".repeat(title_bytes)), "missing author".into())
    }

    #[test]
    fn errors_and_warnings_are_capped_by_count_and_bytes() {
        // (errors offered, title bytes each, kept)
        let table = [
            (10, 10, 10),
            (1_500, 10, MAX_KEPT_ERRORS as usize),
            (
                1_500,
                1_024,
                (MAX_ERRORS_BYTES / json_len(&error(1_000, 1_024))) as usize,
            ),
        ];
        for (offered, title_bytes, kept) in table {
            let mut pending = Pending::default();
            let store = StoredResults::default();
            let errors = (0..offered)
                .map(|n| error(1_000 + n, title_bytes))
                .collect();
            pending.add_errors(&store, errors);
            assert_eq!(pending.errors.len(), kept, "{offered} of {title_bytes}");
            // Across checkpoints the stored ones count too.
            let mut store = StoredResults::default();
            pending.drain_into(&mut store, u64::MAX, &mut Batch::default());
            let mut more = Pending::default();
            more.add_errors(&store, vec![error(1, title_bytes)]);
            assert_eq!(more.errors.len(), usize::from(kept == 10), "{offered}");
        }
        let mut pending = Pending::default();
        let warning = |line| RowWarning {
            line,
            field: "isbn".into(),
            warning: "w".repeat(1_024),
        };
        pending.add_warnings(&StoredResults::default(), (0..2_000).map(warning).collect());
        let bytes: u64 = pending.warnings.iter().map(|w| json_len(w) + 1).sum();
        assert!(bytes <= MAX_WARNINGS_BYTES);
        assert!(bytes + json_len(&warning(0)) > MAX_WARNINGS_BYTES);
    }

    #[test]
    fn books_are_packed_by_bytes_and_merges_stored_beside_their_slice() {
        let mut store = StoredResults::default();
        let mut pending = Pending::default();
        let books: Vec<Book> = (0..400)
            .map(|n| book(&format!("{n} {}", "x".repeat(1_000)), "A", None))
            .collect();
        pending.add_books(&store, books.clone(), vec![]);
        let mut batch = Batch::default();
        pending.drain_into(&mut store, u64::MAX, &mut batch);
        assert_eq!(store.books, 400);
        assert!(store.slice_starts.len() >= 4, "{:?}", store.slice_starts);
        for (key, value) in batch.entries() {
            assert!(value.len() <= MAX_RESULT_VALUE_BYTES, "{key}");
        }
        // A merge into book 250 (stored) and one into a book of the same checkpoint.
        let mut patch = BookPatch::new(BookRef(250), &[], &books[0]);
        patch.isbn = Some("9780441013593".into());
        let mut own = patch.clone();
        own.book = BookRef(400);
        own.rating = Some(4.0);
        pending.add_books(&store, vec![book("New", "B", None)], vec![patch, own]);
        assert_eq!(pending.books[0].rating, Some(4.0), "applied where it is");
        assert_eq!(pending.patches.len(), 1, "kept for the stored slice");
        let slice = store.slice_of(250).unwrap();
        let mut batch = Batch::default();
        pending.drain_into(&mut store, u64::MAX, &mut batch);
        let patches = batch
            .entries()
            .iter()
            .find(|(key, _)| key.starts_with(&keys::csv_patches_prefix(slice)))
            .map(|(_, value)| String::from_utf8(value.as_bytes().to_vec()).unwrap())
            .expect("the merge is stored under its slice");
        let first = BookRef(store.slice_range(slice).start);
        let range = store.slice_range(slice);
        let slice_books: Vec<Book> = books[range.start as usize..range.end as usize].to_vec();
        let text = serde_json::to_string(&slice_books).unwrap();
        let read = read_slice(first, &text, &[&patches]).unwrap();
        let at = (250 - range.start) as usize;
        assert_eq!(read[at].isbn.as_deref(), Some("9780441013593"));
        assert_eq!(read[at - 1], slice_books[at - 1]);
    }

    #[test]
    fn a_checkpoint_over_the_budget_writes_nothing() {
        let mut store = StoredResults::default();
        let mut pending = Pending::default();
        pending.add_books(&store, vec![book("A", "B", None); 100], vec![]);
        let mut batch = Batch::default();
        pending.drain_into(&mut store, 500, &mut batch);
        assert!(batch.is_empty());
        assert!(store.over_budget);
        assert_eq!(store.books, 0);
        assert_eq!(results_budget(1_000), 2_000 + RESULTS_BUDGET_FLOOR);
    }

    /// Cells people never meant: control characters, quotes, backslashes, line breaks,
    /// characters of every width, and runs long enough to fill a stored value alone.
    fn hostile_cell() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[a-z ]{0,12}",
            "[\\x00-\\x1f\\x7f]{1,8}",
            Just("\"\"".to_string()),
            Just("\\".to_string()),
            Just("\n".to_string()),
            "[é😀中]{1,4}",
            (1usize..150_000, "[a\\x01\"\\\\]").prop_map(|(n, c)| c.repeat(n)),
        ];
        prop::collection::vec(piece, 0..4).prop_map(|pieces| pieces.concat())
    }

    fn hostile_file() -> impl Strategy<Value = Vec<u8>> {
        let row = (
            hostile_cell(),
            hostile_cell(),
            "[0-9X-]{0,14}",
            hostile_cell(),
        );
        prop::collection::vec(row, 1..40).prop_map(|rows| {
            let mut file = String::from("Title,Author,ISBN,Exclusive Shelf\n");
            for (title, author, isbn, shelf) in rows {
                let quote = |cell: &str| format!("\"{}\"", cell.replace('"', "\"\""));
                file.push_str(&format!(
                    "{},{},{isbn},{}\n",
                    quote(&title),
                    quote(&author),
                    quote(&shelf)
                ));
            }
            file.into_bytes()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Whatever the rows hold, imported as the job does (checkpoint after checkpoint):
        /// every value written is at most 128 KiB, a write is at most 128 keys, kept errors
        /// and every text are bounded, and the stored books read back are the import's books.
        #[test]
        fn hostile_rows_are_stored_bounded_and_read_back_whole(
            file in hostile_file(),
            records_per_checkpoint in 1usize..12,
        ) {
            let (header, mut cursor) = read_header(&file, true).unwrap();
            let mut totals = ImportTotals::default();
            let mut deduper = Deduper::default();
            let mut store = StoredResults::default();
            let mut written: Vec<(String, Stored)> = Vec::new();
            let mut all_books = Vec::new();
            loop {
                let input = &file[cursor.offset as usize..];
                let out = parse_slice(&header, input, cursor, true, records_per_checkpoint,
                    &mut totals, &mut deduper);
                all_books.extend(out.books.iter().cloned());
                crate::pipelines::csv::apply_patches(&mut all_books, BookRef(0), &out.patches);
                let mut pending = Pending::default();
                pending.add_books(&store, out.books, out.patches);
                pending.add_errors(&store, out.errors);
                pending.add_warnings(&store, out.warnings);
                let mut batch = Batch::default();
                pending.drain_into(&mut store, u64::MAX, &mut batch);
                prop_assert!(batch.len() <= crate::host::MAX_KEYS_PER_WRITE);
                for (key, value) in batch.into_entries() {
                    prop_assert!(value.len() <= MAX_RESULT_VALUE_BYTES, "{} {}", key, value.len());
                    written.push((key, value));
                }
                cursor = out.cursor;
                if out.done {
                    break;
                }
            }
            prop_assert!(store.errors_kept <= MAX_KEPT_ERRORS);
            prop_assert!(store.error_bytes <= MAX_ERRORS_BYTES);
            // Read back slice by slice, merges applied, as a results page does.
            let text = |key: &str| -> Vec<String> {
                written.iter().filter(|(k, _)| k.starts_with(key))
                    .map(|(_, v)| String::from_utf8(v.as_bytes().to_vec()).unwrap()).collect()
            };
            let mut read = Vec::new();
            for slice in 0..store.slice_starts.len() as u32 {
                let books = text(&keys::csv_books(slice)).pop().unwrap();
                let patches = text(&keys::csv_patches_prefix(slice));
                let patches: Vec<&str> = patches.iter().map(String::as_str).collect();
                let first = BookRef(store.slice_range(slice).start);
                read.extend(read_slice(first, &books, &patches).unwrap());
            }
            prop_assert_eq!(&read, &all_books);
            for book in &read {
                for field in [&book.title, &book.author] {
                    prop_assert!(field.len() <= MAX_FIELD_BYTES);
                    prop_assert!(!field.contains(char::from(1)), "a control character was kept");
                }
            }
        }
    }
}
