//! What an import sends: its summary (`job_complete`, job state) and its results document.

use super::book::{Book, ImportTotals};
use super::header::Format;
use super::slice::success_rate;
use crate::time::Millis;
use serde::Serialize;
use serde_json::Value;

/// The summary of a complete import (docs/PROTOCOL.md section 8.1).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(
    not(target_arch = "wasm32"),
    derive(schemars::JsonSchema),
    schemars(transform = crate::schema::rules::NotRequired(&[
        "errorCount",
        "errorsTruncated",
        "warningCount",
        "warningsTruncated",
    ]))
)]
#[serde(rename_all = "camelCase")]
pub struct CsvSummary {
    /// Data records.
    pub total_processed: u64,
    /// Books.
    pub success_count: u64,
    /// Row errors.
    pub failure_count: u64,
    pub duplicates: u64,
    pub invalid_utf8_rows: u64,
    // Contract 9.2, bounded results: every row error and warning counted, and whether the
    // results left some out. Absent from the summaries of imports that completed before they
    // existed (a summary is sent as it was stored).
    pub error_count: u64,
    pub errors_truncated: bool,
    pub warning_count: u64,
    pub warnings_truncated: bool,
    pub format: Format,
    /// `"<books>/<data records>"`.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(crate::schema::rules::SUCCESS_RATE_PATTERN))
    )]
    pub success_rate: String,
    pub duration: Millis,
}

impl CsvSummary {
    /// The summary of an import with these totals, of which the results keep `errors_kept`
    /// errors and `warnings_kept` warnings.
    pub fn new(
        totals: &ImportTotals,
        format: Format,
        duration: Millis,
        errors_kept: u64,
        warnings_kept: u64,
    ) -> Self {
        Self {
            total_processed: totals.data_records,
            success_count: totals.books,
            failure_count: totals.errors,
            duplicates: totals.duplicates,
            invalid_utf8_rows: totals.invalid_utf8_rows,
            error_count: totals.errors,
            errors_truncated: totals.errors > errors_kept,
            warning_count: totals.warnings,
            warnings_truncated: totals.warnings > warnings_kept,
            format,
            success_rate: success_rate(totals),
            duration,
        }
    }
}

/// A page of `GET /v1/csv/results/{jobId}`: books in file order; on the first page the row
/// errors and, when there are any, the warnings, passed on as stored (`errors: []` on later
/// pages).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CsvResultsPage {
    pub books: Vec<Book>,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Vec<crate::pipelines::csv::RowError>")
    )]
    pub errors: Vec<Value>,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(crate::schema::rules::SUCCESS_RATE_PATTERN))
    )]
    pub success_rate: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Vec<crate::pipelines::csv::RowWarning>")
    )]
    pub warnings: Vec<Value>,
}

impl CsvResultsPage {
    pub fn new(
        books: Vec<Book>,
        errors: Vec<Value>,
        warnings: Vec<Value>,
        totals: &ImportTotals,
    ) -> Self {
        Self {
            books,
            errors,
            success_rate: success_rate(totals),
            warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn totals() -> ImportTotals {
        ImportTotals {
            data_records: 10,
            books: 6,
            errors: 3,
            duplicates: 1,
            invalid_utf8_rows: 2,
            warnings: 4,
        }
    }

    #[test]
    fn summary_has_the_documented_fields() {
        let summary = CsvSummary::new(&totals(), Format::StoryGraph, 412, 3, 2);
        assert_eq!(
            serde_json::to_value(&summary).unwrap(),
            json!({
                "totalProcessed": 10, "successCount": 6, "failureCount": 3, "duplicates": 1,
                "invalidUtf8Rows": 2, "format": "story_graph", "successRate": "6/10",
                "duration": 412, "errorCount": 3, "errorsTruncated": false,
                "warningCount": 4, "warningsTruncated": true,
            })
        );
        let v = serde_json::to_value(CsvSummary::new(&totals(), Format::Plain, 0, 1, 4)).unwrap();
        assert_eq!(
            (&v["errorsTruncated"], &v["warningsTruncated"]),
            (&json!(true), &json!(false))
        );
    }

    #[test]
    fn results_page_has_warnings_only_when_there_are_some() {
        let error = json!({"line": 3, "error": "missing title"});
        let page = CsvResultsPage::new(Vec::new(), vec![error], Vec::new(), &totals());
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            json!({"books": [], "errors": [{"line": 3, "error": "missing title"}], "successRate": "6/10"})
        );
        let warning = json!({"line": 4, "field": "isbn", "warning": "w"});
        let page = CsvResultsPage::new(Vec::new(), Vec::new(), vec![warning], &totals());
        assert_eq!(
            serde_json::to_value(&page).unwrap()["warnings"],
            json!([{"line": 4, "field": "isbn", "warning": "w"}])
        );
    }
}
