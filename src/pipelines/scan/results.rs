//! The scan result model: books found on the photos, their summary, and per-photo progress.

use crate::time::Millis;
use serde::{Deserialize, Serialize};

/// The contract's default for `SCAN_CONFIDENCE_THRESHOLD`.
pub const DEFAULT_CONFIDENCE_THRESHOLD: f64 = 0.7;

/// A box as fractions of the image: `x`,`y` is the top-left corner.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct BoundingBox {
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 0.0, max = 1.0)))]
    pub x: f64,
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 0.0, max = 1.0)))]
    pub y: f64,
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 0.0, max = 1.0)))]
    pub width: f64,
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 0.0, max = 1.0)))]
    pub height: f64,
}

/// One book seen on one photo, already normalised (see `gemini::normalize`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ScanBook {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Always a checksum-valid ISBN-13.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isbn: Option<String>,
    /// In 0..=1.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 0.0, max = 1.0)))]
    pub confidence: f64,
    pub bounding_box: BoundingBox,
    /// The `index` the client gave the photo, or 0 for a single-image scan.
    pub photo_index: u32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ScanResults {
    pub total_detected: usize,
    pub approved: usize,
    pub needs_review: usize,
    pub books: Vec<ScanBook>,
}

/// The summary of a complete scan (docs/PROTOCOL.md section 8.2). Counts are photos.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ScanSummary {
    pub total_processed: usize,
    pub success_count: usize,
    pub failure_count: usize,
    pub duration: Millis,
    pub total_detected: usize,
    pub approved: usize,
    pub needs_review: usize,
    /// Every photo in request order.
    pub photos: Vec<PhotoSummary>,
}

/// One photo in [`ScanSummary::photos`]: the client's `index`, and how its scan ended.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct PhotoSummary {
    pub index: u32,
    pub status: PhotoStatus,
    pub books_found: usize,
}

impl From<&PhotoRecord> for PhotoSummary {
    fn from(record: &PhotoRecord) -> Self {
        Self {
            index: record.index,
            status: record.status,
            books_found: record.books_found,
        }
    }
}

/// A page of `GET /v1/scan/results/{jobId}`: the counts over every book, and the page's books.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct ScanResultsPage {
    pub total_detected: usize,
    pub approved: usize,
    pub needs_review: usize,
    pub books: Vec<ScanBook>,
}

/// Counts approved books (`confidence >= threshold`) and those needing review. Books are
/// ordered by photo and, within a photo, kept in the model's order; photos may finish in any
/// order, and a stable order makes a job's results reproducible. A non-finite threshold
/// (impossible through `Config`, which validates it) falls back to the default rather than
/// approving or rejecting everything.
pub fn summarize(mut books: Vec<ScanBook>, threshold: f64) -> ScanResults {
    let threshold = if threshold.is_finite() {
        threshold
    } else {
        DEFAULT_CONFIDENCE_THRESHOLD
    };
    books.sort_by_key(|b| b.photo_index);
    let approved = books.iter().filter(|b| b.confidence >= threshold).count();
    ScanResults {
        total_detected: books.len(),
        approved,
        needs_review: books.len() - approved,
        books,
    }
}

/// Where one photo of a scan job stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PhotoStatus {
    Queued,
    Processing,
    Done,
    Failed,
}

impl PhotoStatus {
    /// Done and failed photos are never picked up again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }
}

/// The persisted state of one photo. `error` is a human message safe to show the client.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PhotoRecord {
    pub index: u32,
    pub status: PhotoStatus,
    #[serde(default)]
    pub books_found: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub attempts: u32,
}

impl PhotoRecord {
    pub fn queued(index: u32) -> Self {
        Self {
            index,
            status: PhotoStatus::Queued,
            books_found: 0,
            error: None,
            attempts: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn book(title: &str, confidence: f64, photo_index: u32) -> ScanBook {
        ScanBook {
            title: title.into(),
            author: None,
            isbn: None,
            confidence,
            bounding_box: BoundingBox::default(),
            photo_index,
        }
    }

    #[test]
    fn summarizes_against_the_threshold() {
        let books = || {
            vec![
                book("a", 0.95, 0),
                book("b", 0.7, 0),
                book("c", 0.69, 0),
                book("d", 0.0, 0),
            ]
        };
        let table: &[(f64, usize, usize)] = &[
            (0.7, 2, 2),
            (0.0, 4, 0),
            (1.0, 0, 4),
            (0.5, 3, 1),
            (f64::NAN, 2, 2),
            (f64::INFINITY, 2, 2),
        ];
        for &(threshold, approved, needs_review) in table {
            let r = summarize(books(), threshold);
            assert_eq!(r.total_detected, 4, "{threshold}");
            assert_eq!(r.approved, approved, "{threshold}");
            assert_eq!(r.needs_review, needs_review, "{threshold}");
        }
        assert_eq!(summarize(Vec::new(), 0.7), ScanResults::default());
    }

    #[test]
    fn orders_by_photo_keeping_model_order() {
        let r = summarize(
            vec![
                book("p2-a", 0.9, 2),
                book("p0-a", 0.9, 0),
                book("p2-b", 0.9, 2),
                book("p0-b", 0.9, 0),
            ],
            0.7,
        );
        let titles: Vec<&str> = r.books.iter().map(|b| b.title.as_str()).collect();
        assert_eq!(titles, ["p0-a", "p0-b", "p2-a", "p2-b"]);
    }

    #[test]
    fn serializes_in_contract_shape() {
        let mut with_all = book("Dune", 0.9, 3);
        with_all.author = Some("Frank Herbert".into());
        with_all.isbn = Some("9780441013593".into());
        with_all.bounding_box = BoundingBox {
            x: 0.1,
            y: 0.2,
            width: 0.05,
            height: 0.6,
        };
        let results = summarize(vec![with_all, book("Untitled", 0.4, 3)], 0.7);
        let want = json!({
            "totalDetected": 2,
            "approved": 1,
            "needsReview": 1,
            "books": [
                {
                    "title": "Dune",
                    "author": "Frank Herbert",
                    "isbn": "9780441013593",
                    "confidence": 0.9,
                    "boundingBox": {"x": 0.1, "y": 0.2, "width": 0.05, "height": 0.6},
                    "photoIndex": 3
                },
                {
                    "title": "Untitled",
                    "confidence": 0.4,
                    "boundingBox": {"x": 0.0, "y": 0.0, "width": 0.0, "height": 0.0},
                    "photoIndex": 3
                }
            ]
        });
        assert_eq!(serde_json::to_value(&results).unwrap(), want);
        let back: ScanResults = serde_json::from_value(want).unwrap();
        assert_eq!(back, results);
    }

    #[test]
    fn photo_records_round_trip() {
        let table: Vec<(PhotoRecord, serde_json::Value)> = vec![
            (
                PhotoRecord::queued(4),
                json!({"index": 4, "status": "queued", "booksFound": 0, "attempts": 0}),
            ),
            (
                PhotoRecord {
                    index: 1,
                    status: PhotoStatus::Processing,
                    books_found: 0,
                    error: None,
                    attempts: 2,
                },
                json!({"index": 1, "status": "processing", "booksFound": 0, "attempts": 2}),
            ),
            (
                PhotoRecord {
                    index: 0,
                    status: PhotoStatus::Done,
                    books_found: 12,
                    error: None,
                    attempts: 1,
                },
                json!({"index": 0, "status": "done", "booksFound": 12, "attempts": 1}),
            ),
            (
                PhotoRecord {
                    index: 2,
                    status: PhotoStatus::Failed,
                    books_found: 0,
                    error: Some("the model refused the image".into()),
                    attempts: 3,
                },
                json!({"index": 2, "status": "failed", "booksFound": 0,
                       "error": "the model refused the image", "attempts": 3}),
            ),
        ];
        for (record, want) in table {
            assert_eq!(serde_json::to_value(&record).unwrap(), want);
            assert_eq!(serde_json::from_value::<PhotoRecord>(want).unwrap(), record);
        }
        let terminal: Vec<bool> = [
            PhotoStatus::Queued,
            PhotoStatus::Processing,
            PhotoStatus::Done,
            PhotoStatus::Failed,
        ]
        .iter()
        .map(|s| s.is_terminal())
        .collect();
        assert_eq!(terminal, [false, false, true, true]);
    }
}
