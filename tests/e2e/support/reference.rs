//! What an undisturbed import gives, computed natively, to compare the worker's results with.

use bookstrack_jobs::pipelines::csv::{
    apply_patches, parse_slice, read_header, success_rate, BookRef, Deduper, ImportTotals,
};
use serde_json::{json, Value};

/// The contract's CSV results document (books, errors, successRate) for `file`, and its
/// totals, from the library's parser in one uninterrupted pass, duplicates merged.
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
        errors.extend(out.errors);
        cursor = out.cursor;
        if out.done {
            break;
        }
    }
    let document =
        json!({ "books": books, "errors": errors, "successRate": success_rate(&totals) });
    (document, totals)
}

/// The part of a worker's CSV results document that [`csv_results`] computes.
pub fn csv_core(results: &Value) -> Value {
    json!({ "books": results["books"], "errors": results["errors"], "successRate": results["successRate"] })
}
