//! A job's pipeline progress, persisted beside its core so processing resumes after eviction.

use super::csv::CsvWork;
use super::enrich::EnrichWork;
use super::scan::ScanWork;
use super::synthetic::SyntheticSpec;
use serde::{Deserialize, Serialize};

/// What a job is working through and how far it got, one variant per pipeline. Stored under
/// its own key and written in the same operation as the job's core at every checkpoint. The
/// `kind` tags are a storage format (see `crate::keys`).
// One per job object, cloned at checkpoints: boxing the larger variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Work {
    /// Test and benchmark jobs; their cursor is the state's processed count.
    Synthetic(SyntheticSpec),
    Scan(ScanWork),
    Enrich(EnrichWork),
    Csv(CsvWork),
}

impl Work {
    pub fn synthetic(&mut self) -> Option<&mut SyntheticSpec> {
        match self {
            Self::Synthetic(w) => Some(w),
            _ => None,
        }
    }

    pub fn scan(&mut self) -> Option<&mut ScanWork> {
        match self {
            Self::Scan(w) => Some(w),
            _ => None,
        }
    }

    pub fn enrich(&mut self) -> Option<&mut EnrichWork> {
        match self {
            Self::Enrich(w) => Some(w),
            _ => None,
        }
    }

    pub fn csv(&mut self) -> Option<&mut CsvWork> {
        match self {
            Self::Csv(w) => Some(w),
            _ => None,
        }
    }
}
