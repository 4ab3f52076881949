//! CSV import: streaming, resumable parsing of Goodreads/StoryGraph/LibraryThing/plain exports.
//!
//! At upload the Worker reads the header once with [`read_header`]; the job ([`CsvImport`])
//! then calls [`parse_slice`] repeatedly, persisting the returned [`Cursor`] and
//! [`ImportTotals`] between calls. Every call starts a fresh parser at the cursor, so a job can
//! resume after an eviction from nothing but those two values, the stored [`Header`] and a
//! [`Deduper`] rebuilt from the stored books.
//!
//! Decisions the contract leaves open:
//! - A record is blank, and so neither a data record nor an error, when every field is empty or
//!   ASCII whitespace: empty lines, whitespace-only lines and rows of bare commas (as spreadsheets
//!   leave behind) are all skipped.
//! - Line numbers count `\n`, `\r\n` and a lone `\r` as one line break each, inside quoted fields
//!   too, so they match what an editor shows.
//! - Header names match after case folding and dropping everything but letters and digits, so
//!   `Exclusive Shelf`, ` exclusive_shelf ` and `EXCLUSIVE-SHELF` are the same column.
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
//!   title, bad ISBN checksum. An invalid UTF-8 warning is given for any data record whose
//!   bytes were decoded, whatever became of it; a record too long is never decoded.
//! - Every data record becomes exactly one of a book, an error or a duplicate, so
//!   `data_records == books + errors + duplicates`.

mod book;
mod cells;
// Test and benchmark data only: kept out of the wasm.
#[cfg(not(target_arch = "wasm32"))]
mod generate;
mod header;
mod job;
mod reader;
mod slice;

pub use book::{Book, Deduper, ImportResults, ImportTotals, RowError, RowWarning};
#[cfg(not(target_arch = "wasm32"))]
pub use generate::generate_goodreads;
pub use header::{read_header, Format, Header, HeaderError, MAX_HEADER_COLUMNS};
pub use job::{CsvImport, CsvWork, ResultSlice};
pub use reader::{RawRecord, RecordReader, Step, MAX_RECORD_BYTES};
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
    use super::slice::tests::{import_in_chunks, import_whole, Import};
    use super::*;
    use serde_json::Value;

    macro_rules! fixture {
        ($name:literal) => {
            (
                $name,
                include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/csv/",
                    $name,
                    ".csv"
                ))
                .as_slice(),
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/csv/",
                    $name,
                    ".expected.json"
                )),
            )
        };
    }

    /// The results document the e2e suite compares against, plus the totals.
    #[derive(Serialize)]
    struct FixtureDocument {
        #[serde(flatten)]
        results: ImportResults,
        totals: ImportTotals,
    }

    fn document(import: &Import) -> FixtureDocument {
        FixtureDocument {
            results: ImportResults {
                books: import.books.clone(),
                errors: import.errors.clone(),
                success_rate: success_rate(&import.totals),
            },
            totals: import.totals,
        }
    }

    #[test]
    fn fixtures_produce_their_expected_documents() {
        let fixtures = [
            fixture!("goodreads"),
            fixture!("goodreads_old"),
            fixture!("storygraph"),
            fixture!("librarything"),
            fixture!("plain"),
        ];
        for (name, csv, expected) in fixtures {
            let import = import_whole(csv);
            let document = document(&import);
            let got = serde_json::to_value(&document).unwrap();
            let want: Value = serde_json::from_str(expected).unwrap();
            // On a mismatch, the whole actual document is printed so it can be reviewed.
            let pretty = serde_json::to_string_pretty(&document).unwrap();
            assert!(
                got == want,
                "{name}.expected.json differs; actual:\n{pretty}"
            );
            for chunk in [1, 7, 64] {
                assert_eq!(
                    import_in_chunks(csv, chunk),
                    import,
                    "{name} in chunks of {chunk}"
                );
            }
        }
    }
}
