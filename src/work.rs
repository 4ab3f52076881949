//! The per-pipeline progress a job persists beside its core, so processing resumes after eviction.

use crate::synthetic::SyntheticSpec;
use serde::{Deserialize, Serialize};

/// What a job is working through and how far it got. Stored under its own key and written
/// in the same operation as the job's core at every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Work {
    /// Test and benchmark jobs; their cursor is the state's processed count.
    Synthetic(SyntheticSpec),
}
