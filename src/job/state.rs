//! The job state machine: queued → running → complete | failed | canceled, with a version per change.

use crate::error::ErrorCode;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// The three kinds of work the service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Pipeline {
    CsvImport,
    AiScan,
    BatchEnrichment,
}

impl Pipeline {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CsvImport => "csv_import",
            Self::AiScan => "ai_scan",
            Self::BatchEnrichment => "batch_enrichment",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "csv_import" => Some(Self::CsvImport),
            "ai_scan" => Some(Self::AiScan),
            "batch_enrichment" => Some(Self::BatchEnrichment),
            _ => None,
        }
    }

    /// The path segment of this pipeline's results route (`/v1/{segment}/results/{id}`).
    pub fn results_segment(self) -> &'static str {
        match self {
            Self::CsvImport => "csv",
            Self::AiScan => "scan",
            Self::BatchEnrichment => "enrichment",
        }
    }

    pub fn results_url(self, job_id: &str) -> String {
        format!("/v1/{}/results/{job_id}", self.results_segment())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Queued,
    Running,
    Complete,
    Failed,
    Canceled,
}

impl Status {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Complete | Self::Failed | Self::Canceled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Complete => "complete",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }
}

/// Why a job failed, as the client sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct JobError {
    pub code: ErrorCode,
    pub message: String,
    pub retryable: bool,
}

/// The client-visible job state (contract section 3). Times are epoch milliseconds. In the
/// schema it is `JobStateData`, the `data` of the `JobState` answer; which fields an ended job
/// has is added there (`schema::job_state_rules`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(
    not(target_arch = "wasm32"),
    derive(schemars::JsonSchema),
    schemars(rename = "JobStateData", transform = crate::schema::rules::job_state_rules)
)]
#[serde(rename_all = "camelCase")]
pub struct JobState {
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(crate::schema::rules::JOB_ID_PATTERN))
    )]
    pub job_id: String,
    pub pipeline: Pipeline,
    pub status: Status,
    pub total_count: u64,
    pub processed_count: u64,
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 0.0, max = 1.0)))]
    pub progress: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_item: Option<String>,
    pub start_time: Millis,
    pub last_update: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Millis>,
    pub version: u64,
    /// The pipeline's summary: stored as the pipeline built it, from its own summary type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<crate::schema::rules::JobSummary>")
    )]
    pub summary: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(crate::schema::rules::RESULTS_URL_PATTERN))
    )]
    pub results_url: Option<String>,
}

/// A transition the state machine refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IllegalTransition {
    pub from: Status,
    pub action: &'static str,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot {} a job that is {}",
            self.action,
            self.from.as_str()
        )
    }
}

impl std::error::Error for IllegalTransition {}

impl JobState {
    pub fn new(job_id: &str, pipeline: Pipeline, total_count: u64, now: Millis) -> Self {
        Self {
            job_id: job_id.to_string(),
            pipeline,
            status: Status::Queued,
            total_count,
            processed_count: 0,
            progress: 0.0,
            current_item: None,
            start_time: now,
            last_update: now,
            end_time: None,
            version: 1,
            summary: None,
            error: None,
            results_url: None,
        }
    }

    fn require(&self, allowed: &[Status], action: &'static str) -> Result<(), IllegalTransition> {
        if allowed.contains(&self.status) {
            Ok(())
        } else {
            Err(IllegalTransition {
                from: self.status,
                action,
            })
        }
    }

    fn touch(&mut self, now: Millis) {
        self.version += 1;
        // A clock that steps back must not make lastUpdate run backwards.
        self.last_update = self.last_update.max(now);
    }

    /// queued → running, with the total the pipeline found.
    pub fn start(&mut self, total_count: u64, now: Millis) -> Result<(), IllegalTransition> {
        self.require(&[Status::Queued], "start")?;
        self.status = Status::Running;
        self.total_count = total_count;
        self.recompute_progress();
        self.touch(now);
        Ok(())
    }

    /// Records progress while running. The count never goes backwards and never passes the
    /// total; an unchanged count with an unchanged item is not a change.
    pub fn advance(
        &mut self,
        processed_count: u64,
        current_item: Option<String>,
        now: Millis,
    ) -> Result<bool, IllegalTransition> {
        self.require(&[Status::Running], "advance")?;
        let processed = processed_count.clamp(self.processed_count, self.total_count);
        if processed == self.processed_count && current_item == self.current_item {
            return Ok(false);
        }
        self.processed_count = processed;
        self.current_item = current_item;
        self.recompute_progress();
        self.touch(now);
        Ok(true)
    }

    /// running → complete.
    pub fn complete(&mut self, summary: Value, now: Millis) -> Result<(), IllegalTransition> {
        self.require(&[Status::Running], "complete")?;
        self.status = Status::Complete;
        self.processed_count = self.total_count;
        self.progress = 1.0;
        self.current_item = None;
        self.summary = Some(summary);
        self.results_url = Some(self.pipeline.results_url(&self.job_id));
        self.end(now);
        Ok(())
    }

    /// queued | running → failed.
    pub fn fail(&mut self, error: JobError, now: Millis) -> Result<(), IllegalTransition> {
        self.require(&[Status::Queued, Status::Running], "fail")?;
        self.status = Status::Failed;
        self.error = Some(error);
        self.current_item = None;
        self.end(now);
        Ok(())
    }

    /// queued | running → canceled.
    pub fn cancel(&mut self, now: Millis) -> Result<(), IllegalTransition> {
        self.require(&[Status::Queued, Status::Running], "cancel")?;
        self.status = Status::Canceled;
        self.current_item = None;
        self.end(now);
        Ok(())
    }

    fn end(&mut self, now: Millis) {
        self.touch(now);
        self.end_time = Some(self.last_update);
    }

    fn recompute_progress(&mut self) {
        self.progress = if self.total_count == 0 {
            0.0
        } else {
            self.processed_count as f64 / self.total_count as f64
        };
    }

    /// Prepares a state read back from storage after the object was evicted. Up to
    /// `max_unpersisted_changes` versions may have reached clients without being written, so
    /// the version skips past them: a client never sees a version twice or go backwards.
    pub fn restored(mut self, max_unpersisted_changes: u64) -> Self {
        if !self.status.is_terminal() {
            self.version += max_unpersisted_changes;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn running(total: u64) -> JobState {
        let mut state = JobState::new("j", Pipeline::CsvImport, 0, 1_000);
        state.start(total, 2_000).unwrap();
        state
    }

    fn err() -> JobError {
        JobError {
            code: ErrorCode::InvalidRequest,
            message: "x".into(),
            retryable: false,
        }
    }

    #[test]
    fn legal_and_illegal_transitions() {
        type Step = fn(&mut JobState) -> Result<(), IllegalTransition>;
        let start: Step = |s| s.start(3, 5_000);
        let complete: Step = |s| s.complete(json!({}), 5_000);
        let fail: Step = |s| s.fail(err(), 5_000);
        let cancel: Step = |s| s.cancel(5_000);
        let advance: Step = |s| s.advance(1, None, 5_000).map(|_| ());
        let reach = |status: Status| {
            let mut s = JobState::new("j", Pipeline::AiScan, 0, 1_000);
            match status {
                Status::Queued => {}
                Status::Running => s.start(3, 2_000).unwrap(),
                Status::Complete => {
                    s.start(3, 2_000).unwrap();
                    s.complete(json!({}), 3_000).unwrap();
                }
                Status::Failed => s.fail(err(), 3_000).unwrap(),
                Status::Canceled => s.cancel(3_000).unwrap(),
            }
            s
        };
        use Status::*;
        let table: &[(Status, &str, Step, Option<Status>)] = &[
            (Queued, "start", start, Some(Running)),
            (Queued, "complete", complete, None),
            (Queued, "fail", fail, Some(Failed)),
            (Queued, "cancel", cancel, Some(Canceled)),
            (Queued, "advance", advance, None),
            (Running, "start", start, None),
            (Running, "complete", complete, Some(Complete)),
            (Running, "fail", fail, Some(Failed)),
            (Running, "cancel", cancel, Some(Canceled)),
            (Running, "advance", advance, Some(Running)),
            (Complete, "start", start, None),
            (Complete, "fail", fail, None),
            (Complete, "cancel", cancel, None),
            (Complete, "advance", advance, None),
            (Failed, "start", start, None),
            (Failed, "complete", complete, None),
            (Failed, "cancel", cancel, None),
            (Canceled, "start", start, None),
            (Canceled, "complete", complete, None),
            (Canceled, "fail", fail, None),
            (Canceled, "advance", advance, None),
        ];
        for (from, name, step, to) in table {
            let mut state = reach(*from);
            let before = state.clone();
            let result = step(&mut state);
            match to {
                Some(to) => {
                    assert!(result.is_ok(), "{from:?} {name}");
                    assert_eq!(state.status, *to, "{from:?} {name}");
                    assert!(
                        state.version > before.version,
                        "{from:?} {name} bumps version"
                    );
                }
                None => {
                    assert!(result.is_err(), "{from:?} {name} must be refused");
                    assert_eq!(state, before, "a refused transition changes nothing");
                }
            }
        }
    }

    #[test]
    fn progress_is_monotonic_and_bounded() {
        let mut s = running(10);
        assert!(s.advance(4, Some("a".into()), 3_000).unwrap());
        assert_eq!((s.processed_count, s.progress), (4, 0.4));
        assert!(
            !s.advance(4, Some("a".into()), 3_100).unwrap(),
            "no change, no version"
        );
        let v = s.version;
        assert!(s.advance(2, Some("b".into()), 3_200).unwrap());
        assert_eq!(s.processed_count, 4, "never backwards");
        assert!(s.version > v);
        s.advance(99, None, 3_300).unwrap();
        assert_eq!((s.processed_count, s.progress), (10, 1.0));
    }

    #[test]
    fn completion_sets_end_time_results_url_and_full_progress() {
        let mut s = running(5);
        s.complete(json!({"totalProcessed": 5}), 9_000).unwrap();
        assert_eq!(s.end_time, Some(9_000));
        assert_eq!(s.progress, 1.0);
        assert_eq!(s.results_url.as_deref(), Some("/v1/csv/results/j"));
    }

    #[test]
    fn zero_total_has_zero_progress_not_nan() {
        let s = running(0);
        assert_eq!(s.progress, 0.0);
    }

    #[test]
    fn last_update_never_goes_backwards() {
        let mut s = running(10);
        s.advance(1, None, 10_000).unwrap();
        s.advance(2, None, 9_000).unwrap();
        assert_eq!(s.last_update, 10_000);
    }

    #[test]
    fn restoring_skips_versions_that_may_have_been_seen() {
        let mut s = running(10);
        s.advance(1, None, 3_000).unwrap();
        let persisted = s.version;
        assert_eq!(s.clone().restored(20).version, persisted + 20);
        s.cancel(4_000).unwrap();
        assert_eq!(
            s.clone().restored(20).version,
            s.version,
            "ended jobs never change"
        );
    }

    #[test]
    fn state_serialises_in_contract_shape() {
        let s = running(2);
        let v = serde_json::to_value(&s).unwrap();
        for key in [
            "jobId",
            "pipeline",
            "status",
            "totalCount",
            "processedCount",
            "progress",
            "startTime",
            "lastUpdate",
            "version",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["status"], "running");
        assert_eq!(v["pipeline"], "csv_import");
        assert!(v.get("endTime").is_none() && v.get("error").is_none());
    }
}
