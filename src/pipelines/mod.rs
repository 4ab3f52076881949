//! The three pipelines (CSV import, shelf scan, batch enrichment) and the synthetic test
//! pipeline: each folder holds its input parsing, its provider formats and its step logic.

pub mod csv;
pub mod enrich;
pub mod provider_body;
pub mod scan;
pub mod synthetic;
pub mod work;
