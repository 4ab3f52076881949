//! What an undisturbed import gives, computed natively, to compare the worker's results with.

use bookstrack_jobs::pipelines::csv::store::{json_len, MAX_ERRORS_BYTES, MAX_KEPT_ERRORS};
use bookstrack_jobs::pipelines::csv::{
    apply_patches, parse_slice, read_header, success_rate, BookRef, Deduper, ImportTotals, RowError,
};
use serde_json::{json, Value};

/// The contract's CSV results document (books, errors, successRate) for `file`, and its
/// totals, from the library's parser in one uninterrupted pass, duplicates merged, and the
/// errors kept as the contract bounds them: in file order, at most 1,000 of them and 384 KiB
/// of their JSON (an error that would pass the bytes is not kept; a smaller later one may be).
pub fn csv_results(file: &[u8]) -> (Value, ImportTotals) {
    let (header, mut cursor) = read_header(file, true).expect("a valid header");
    let (mut totals, mut deduper) = (ImportTotals::default(), Deduper::default());
    let (mut books, mut errors) = (Vec::new(), Vec::new());
    loop {
        let rest = &file[cursor.offset as usize..];
        let out = parse_slice(
            &header,
            rest,
            cursor,
            true,
            10_000,
            &mut totals,
            &mut deduper,
        );
        books.extend(out.books);
        apply_patches(&mut books, BookRef(0), &out.patches);
        keep_errors(&mut errors, out.errors);
        cursor = out.cursor;
        if out.done {
            break;
        }
    }
    let document =
        json!({ "books": books, "errors": errors, "successRate": success_rate(&totals) });
    (document, totals)
}

fn keep_errors(kept: &mut Vec<RowError>, more: Vec<RowError>) {
    let mut bytes: u64 = kept.iter().map(|e| json_len(e) + 1).sum();
    for error in more {
        let size = json_len(&error) + 1;
        if (kept.len() as u64) < MAX_KEPT_ERRORS && bytes + size <= MAX_ERRORS_BYTES {
            bytes += size;
            kept.push(error);
        }
    }
}

/// The part of a worker's CSV results document that [`csv_results`] computes.
pub fn csv_core(results: &Value) -> Value {
    json!({ "books": results["books"], "errors": results["errors"], "successRate": results["successRate"] })
}
