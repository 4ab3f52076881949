//! CSV import: streaming, resumable parsing of reading-history exports as people upload them.
//!
//! At upload the Worker reads the header once with [`read_header_with`] (the client's `format`
//! hint) or [`read_header`]; the job ([`CsvImport`]) then calls [`parse_slice`] repeatedly,
//! persisting the returned [`Cursor`] and [`ImportTotals`] between calls and storing each
//! call's books, errors, warnings and patches. Every call starts a fresh parser at the cursor,
//! so a job can resume after an eviction from nothing but those values, the stored [`Header`]
//! and a [`Deduper`] rebuilt from the stored books and patches. docs/IMPORT.md lists the
//! layouts and every repair.
//!
//! Decisions the contract leaves open:
//! - A record is blank, and so neither a data record nor an error, when every field is empty or
//!   ASCII whitespace: empty lines, whitespace-only lines and rows of bare separators (as
//!   spreadsheets leave behind) are all skipped.
//! - Line numbers count `\n`, `\r\n` and a lone `\r` as one line break each, inside quoted fields
//!   too, so they match what an editor shows. A file without a header row has its first data
//!   record on line 1.
//! - The delimiter (comma, tab or semicolon) and the encoding are decided once from the header
//!   window and stored in the [`Header`]; text is decoded record by record (see [`dialect`]).
//! - Header names match after trimming blanks and one pair of surrounding quotes, case folding
//!   and dropping everything but letters and digits, so `Exclusive Shelf`, ` exclusive_shelf `,
//!   `'EXCLUSIVE-SHELF'` are the same column.
//! - One column table serves every format (the [`Format`] is detected for reporting): unknown
//!   layouts get the same best-effort mapping, which is why a generic file works at all.
//! - Among identifier columns (`ISBN13`, `ISBN`, `ISBN/UID`, `ISBNs`, ...) the first valid ISBN
//!   wins; a checksum failure is an error only when no column holds a valid ISBN.
//! - Among date columns the first that parses wins (`Last Date Read` before `Dates Read`); within
//!   a cell the last date counts, which is the end of the last range for StoryGraph, and an
//!   impossible one (`2023/02/30`) leaves the column unparsed.
//! - LibraryThing has no shelf column; its `Collections` (`Your library`, `Wishlist`, ...) is
//!   taken as the shelf text.
//! - Every cell is trimmed of surrounding whitespace; otherwise the title is kept as written.
//! - A row gets one error, checked in this order: record too long, too many fields, missing
//!   title, bad ISBN checksum. Warnings (repairs, dropped values) are kept only for rows that
//!   gave a book, new or merged into an earlier one: an error row is reported as an error.
//! - Every data record becomes exactly one of a book, an error or a duplicate, so
//!   `data_records == books + errors + duplicates`.
//! - A duplicate is merged into its first occurrence (contract 9.1) through a [`BookPatch`];
//!   see [`Deduper`] for how that stays bounded and survives an eviction.

mod book;
mod cells;
mod count;
pub mod dialect;
mod document;
// Test and benchmark data only: kept out of the wasm.
#[cfg(not(target_arch = "wasm32"))]
mod generate;
mod header;
mod job;
pub mod layouts;
mod padded;
mod reader;
mod repair;
mod slice;
pub mod store;

pub use book::{
    apply_patches, Admission, Book, BookPatch, BookRef, Deduper, ImportResults, ImportTotals,
    MergeField, RowError, RowWarning, MAX_FIELD_BYTES,
};
pub use dialect::{Delimiter, Encoding};
pub use document::{CsvResultsPage, CsvSummary};
#[cfg(not(target_arch = "wasm32"))]
pub use generate::generate_goodreads;
pub use header::{
    format_hint, looks_like_goodreads_record, read_header, read_header_with, Format, FormatHint,
    Header, HeaderError, MAX_HEADER_COLUMNS,
};
pub use job::{CsvImport, CsvWork, ResultSlice};
pub use reader::{Dialect, FieldView, RawRecord, RecordReader, Step, MAX_RECORD_BYTES};
pub use slice::{count_data_records, parse_slice, success_rate, SliceOutput};

use serde::{Deserialize, Serialize};

/// A safe point to resume parsing, with `line` the 1-based physical line of the byte at
/// `offset`. It is normally the first byte of the next record; when the input handed over
/// ended right after a `\r`, it is that `\r`, because only the next byte tells whether the
/// line break is `\r\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cursor {
    pub offset: u64,
    pub line: u64,
}

#[cfg(test)]
mod tests {
    use super::slice::tests::{import_from, Import};
    use super::*;
    use serde_json::Value;

    /// A fixture file and its expected document: `(stem, bytes, expected JSON)`.
    macro_rules! fixture {
        ($stem:literal, $ext:literal) => {
            (
                concat!($stem, ".", $ext),
                include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/csv/",
                    $stem,
                    ".",
                    $ext
                ))
                .as_slice(),
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/csv/",
                    $stem,
                    ".expected.json"
                )),
            )
        };
    }

    /// The results document the e2e suite compares against, plus the totals and the
    /// detected format.
    #[derive(Serialize)]
    struct FixtureDocument {
        #[serde(flatten)]
        results: ImportResults,
        warnings: Vec<RowWarning>,
        format: Format,
        totals: ImportTotals,
    }

    fn document(import: &Import, format: Format) -> FixtureDocument {
        FixtureDocument {
            results: ImportResults {
                books: import.books.clone(),
                errors: import.errors.clone(),
                success_rate: success_rate(&import.totals),
            },
            warnings: import.warnings.clone(),
            format,
            totals: import.totals,
        }
    }

    /// Reads the header from the upload's first 64 KiB, as the Worker does at creation, then
    /// imports the whole file in `chunk`-byte deliveries (`usize::MAX`: all at once) with at
    /// most `max_records` per call.
    fn import(file: &[u8], hint: FormatHint, chunk: usize, max_records: usize) -> (Import, Format) {
        let window = &file[..file.len().min(crate::limits::CSV_HEADER_WINDOW_BYTES)];
        let (header, cursor) =
            read_header_with(window, window.len() == file.len(), hint).expect("header");
        let start = cursor.offset as usize;
        let import = import_from(&header, file, cursor, &mut |call| {
            (
                start.saturating_add((call + 1).saturating_mul(chunk)),
                max_records,
            )
        });
        (import, header.format)
    }

    #[test]
    fn fixtures_produce_their_expected_documents() {
        use FormatHint::{Auto, Goodreads};
        let fixtures = [
            (fixture!("goodreads", "csv"), Auto),
            (fixture!("goodreads_old", "csv"), Auto),
            (fixture!("storygraph", "csv"), Auto),
            (fixture!("librarything", "csv"), Auto),
            (fixture!("plain", "csv"), Auto),
            (fixture!("librarything_1252", "tsv"), Auto),
            (fixture!("librarything_old", "csv"), Auto),
            (fixture!("goodreads_wrapped", "csv"), Auto),
            (fixture!("goodreads_padded", "csv"), Auto),
            (fixture!("goodreads_numbers", "csv"), Auto),
            (fixture!("goodreads_headerless", "csv"), Auto),
            (fixture!("goodreads_headerless", "csv"), Goodreads),
            (fixture!("goodreads_duplicates", "csv"), Auto),
            (fixture!("storygraph_quirks", "csv"), Auto),
            (fixture!("bookbuddy", "csv"), Auto),
            (fixture!("calibre", "csv"), Auto),
        ];
        // Set to write the actual documents over the expected ones, for review in the diff.
        let update = std::env::var_os("BOOKSTRACK_UPDATE_FIXTURES").is_some();
        for ((name, csv, expected), hint) in fixtures {
            let (whole, format) = import(csv, hint, usize::MAX, usize::MAX);
            let document = document(&whole, format);
            let got = serde_json::to_value(&document).unwrap();
            let want: Value = serde_json::from_str(expected).unwrap();
            // On a mismatch, the whole actual document is printed so it can be reviewed.
            let pretty = serde_json::to_string_pretty(&document).unwrap();
            if update && got != want {
                let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
                let path = format!(
                    "{}/tests/fixtures/csv/{stem}.expected.json",
                    env!("CARGO_MANIFEST_DIR")
                );
                std::fs::write(path, format!("{pretty}\n")).unwrap();
                continue;
            }
            assert!(
                got == want,
                "{name} ({hint:?}): expected document differs; actual:\n{pretty}"
            );
            // Deliveries and record limits split the work differently but never change it,
            // merges across calls included.
            for (chunk, max_records) in [(1, usize::MAX), (7, 2), (64, 1), (usize::MAX, 1)] {
                assert_eq!(
                    import(csv, hint, chunk, max_records).0,
                    whole,
                    "{name} in chunks of {chunk}, {max_records} records per call"
                );
            }
        }
    }
}
