//! What an import sends: its summary (`job_complete`, job state) and its results document.

use super::book::{Book, ImportTotals, RowError, RowWarning};
use super::header::Format;
use super::slice::success_rate;
use crate::time::Millis;
use serde::Serialize;

/// The summary of a complete import (docs/PROTOCOL.md section 8.1).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
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
    pub format: Format,
    /// `"<books>/<data records>"`.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(crate::schema::SUCCESS_RATE_PATTERN))
    )]
    pub success_rate: String,
    pub duration: Millis,
    // Contract 9.2, bounded results: every row error and warning counted, and whether the
    // results left some out. Absent until the import fills them, and in the summaries of
    // imports that completed before they existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors_truncated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings_truncated: Option<bool>,
}

impl CsvSummary {
    pub fn new(totals: &ImportTotals, format: Format, duration: Millis) -> Self {
        Self {
            total_processed: totals.data_records,
            success_count: totals.books,
            failure_count: totals.errors,
            duplicates: totals.duplicates,
            invalid_utf8_rows: totals.invalid_utf8_rows,
            format,
            success_rate: success_rate(totals),
            duration,
            error_count: None,
            errors_truncated: None,
            warning_count: None,
            warnings_truncated: None,
        }
    }
}

/// A page of `GET /v1/csv/results/{jobId}`: books in file order, the row errors and, when
/// there are any, the warnings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CsvResultsPage {
    pub books: Vec<Book>,
    pub errors: Vec<RowError>,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(crate::schema::SUCCESS_RATE_PATTERN))
    )]
    pub success_rate: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<RowWarning>,
}

impl CsvResultsPage {
    pub fn new(
        books: Vec<Book>,
        errors: Vec<RowError>,
        warnings: Vec<RowWarning>,
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
        }
    }

    #[test]
    fn summary_has_the_documented_fields() {
        let summary = CsvSummary::new(&totals(), Format::StoryGraph, 412);
        assert_eq!(
            serde_json::to_value(&summary).unwrap(),
            json!({
                "totalProcessed": 10, "successCount": 6, "failureCount": 3, "duplicates": 1,
                "invalidUtf8Rows": 2, "format": "story_graph", "successRate": "6/10",
                "duration": 412,
            })
        );
        let counted = CsvSummary {
            error_count: Some(3),
            errors_truncated: Some(false),
            warning_count: Some(0),
            warnings_truncated: Some(false),
            ..summary
        };
        let v = serde_json::to_value(&counted).unwrap();
        assert_eq!(
            (&v["errorCount"], &v["errorsTruncated"]),
            (&json!(3), &json!(false))
        );
        assert_eq!(
            (&v["warningCount"], &v["warningsTruncated"]),
            (&json!(0), &json!(false))
        );
    }

    #[test]
    fn results_page_has_warnings_only_when_there_are_some() {
        let error = RowError {
            line: 3,
            title: None,
            error: "missing title".into(),
        };
        let page = CsvResultsPage::new(Vec::new(), vec![error], Vec::new(), &totals());
        assert_eq!(
            serde_json::to_value(&page).unwrap(),
            json!({"books": [], "errors": [{"line": 3, "error": "missing title"}], "successRate": "6/10"})
        );
        let warning = RowWarning {
            line: 4,
            field: "isbn".into(),
            warning: "w".into(),
        };
        let page = CsvResultsPage::new(Vec::new(), Vec::new(), vec![warning], &totals());
        assert_eq!(
            serde_json::to_value(&page).unwrap()["warnings"],
            json!([{"line": 4, "field": "isbn", "warning": "w"}])
        );
    }
}
