//! AI bookshelf scan: image type detection, Gemini request building and response parsing.
//!
//! - [`image`]: which image kinds are accepted, by magic bytes and by declared media type.
//! - [`request`]: validation of the single-image and batch request bodies.
//! - [`gemini`]: the `generateContent` request, answer parsing, normalisation into books,
//!   and the classes of provider failure.
//! - [`results`]: scan books, the results summary and per-photo progress records.
//! - [`job`]: the scan as a job: one photo per step, the all-failed verdict, the summary.

pub mod gemini;
pub mod image;
pub mod job;
pub mod request;
pub mod results;

pub use image::ImageKind;
pub use job::{ScanPhoto, ScanWork, ShelfScan};
pub use request::{BatchScanRequest, ScanImage};
pub use results::{
    BoundingBox, PhotoRecord, PhotoStatus, PhotoSummary, ScanBook, ScanResults, ScanResultsPage,
    ScanSummary,
};
