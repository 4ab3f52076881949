//! A job's persisted core (credential, state, schedule, throttle) and the rules that move it.
//!
//! The Durable Object keeps one [`JobRecord`] in memory and in storage under one key. Every
//! event the object handles is a method here that changes the record and tells the caller
//! what else to do (persist now, which sockets to close); the object only performs the I/O.

use crate::cost::Usage;
use crate::job::schedule::{Schedule, TaskKind};
use crate::job::stream::Stream;
use crate::job::throttle::{PersistDecision, PersistPolicy, PersistThrottle};
use crate::job::{IllegalTransition, JobError, JobState, Pipeline, Status};
use crate::time::Millis;
use crate::token::TokenRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The durations that shape a job's life, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub token_ttl_ms: Millis,
    pub refresh_window_ms: Millis,
    pub ready_timeout_ms: Millis,
    pub results_ttl_ms: Millis,
}

/// Everything about a job that must survive eviction, except pipeline inputs and results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobRecord {
    pub auth: TokenRecord,
    pub state: JobState,
    pub schedule: Schedule,
    pub throttle: PersistThrottle,
    /// When processing began (the state's `startTime` is the creation time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_since: Option<Millis>,
    /// Sequence numbers and the events a reconnecting client can have replayed.
    #[serde(default)]
    pub stream: Stream,
    /// The hash of the request that created the job under an `Idempotency-Key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<String>,
    /// What the job's object did for it, stored with the writes the job makes anyway (so
    /// what was counted after the last write is lost with the object's memory).
    #[serde(default)]
    pub usage: Usage,
}

/// What a refresh attempt needs from its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    Refreshed,
    Refused(crate::token::RefreshError),
}

impl JobRecord {
    /// A queued job: it starts at the ready timeout unless a client says `ready` first, its
    /// token expires after its lifetime, and if it never ends it is deleted a results-TTL
    /// after that.
    pub fn create(
        job_id: &str,
        pipeline: Pipeline,
        total_count: u64,
        auth: TokenRecord,
        lifetimes: Lifetimes,
        now: Millis,
    ) -> Self {
        let mut schedule = Schedule::default();
        schedule.set(TaskKind::Start, now + lifetimes.ready_timeout_ms);
        schedule.set(TaskKind::TokenExpiry, auth.expires_at);
        schedule.set(
            TaskKind::Cleanup,
            auth.expires_at + lifetimes.results_ttl_ms,
        );
        Self {
            state: JobState::new(job_id, pipeline, total_count, now),
            auth,
            schedule,
            throttle: PersistThrottle::default(),
            running_since: None,
            stream: Stream::new(),
            idempotency: None,
            usage: Usage::default(),
        }
    }

    /// Adjusts a record read back after an eviction (see [`JobState::restored`]): progress
    /// that was only in memory is gone, so is its pending-update count. `unpersisted` is the
    /// most updates the job's throttle lets go unwritten.
    pub fn restored(mut self, unpersisted: u64) -> Self {
        self.state = self.state.restored(unpersisted);
        self.stream = self.stream.restored();
        self.throttle.pending = 0;
        self.throttle.pending_since = None;
        self.schedule.remove(TaskKind::Flush);
        self
    }

    /// A client said `ready`: a queued job starts now. Returns true when that moved the
    /// start (the caller persists and re-arms the alarm).
    pub fn on_ready(&mut self, now: Millis) -> bool {
        if self.state.status != Status::Queued {
            return false;
        }
        match self.schedule.get(TaskKind::Start) {
            Some(task) if task.due <= now => false,
            _ => {
                self.schedule.set(TaskKind::Start, now);
                true
            }
        }
    }

    /// queued → running: processing begins at once.
    pub fn begin(&mut self, total_count: u64, now: Millis) -> Result<(), IllegalTransition> {
        self.state.start(total_count, now)?;
        self.running_since = Some(now);
        self.schedule.remove(TaskKind::Start);
        self.schedule.set(TaskKind::Process, now);
        Ok(())
    }

    /// How long the job has been processing: the `duration` of its summary.
    pub fn processing_ms(&self, now: Millis) -> Millis {
        now.saturating_sub(self.running_since.unwrap_or(self.state.start_time))
    }

    /// Records progress and decides whether it must be written now; `None` when nothing
    /// changed. When it may wait, a flush is scheduled for the end of the throttle window, so
    /// it is written even if no further update comes.
    pub fn progress(
        &mut self,
        processed_count: u64,
        current_item: Option<String>,
        policy: PersistPolicy,
        now: Millis,
    ) -> Result<Option<PersistDecision>, IllegalTransition> {
        if !self.state.advance(processed_count, current_item, now)? {
            return Ok(None);
        }
        let decision = self.throttle.record(policy, now);
        if let PersistDecision::FlushAt(due) = decision {
            self.schedule.set_no_later_than(TaskKind::Flush, due);
        }
        Ok(Some(decision))
    }

    /// Call when the record is written: the throttle window starts again and no flush is
    /// owed.
    pub fn persisted(&mut self) {
        if self.throttle.is_dirty() {
            self.throttle.persisted();
        }
        self.schedule.remove(TaskKind::Flush);
    }

    fn ended(&mut self, now: Millis, results_ttl_ms: Millis) {
        for kind in [TaskKind::Start, TaskKind::Process, TaskKind::Flush] {
            self.schedule.remove(kind);
        }
        self.schedule.set(TaskKind::Cleanup, now + results_ttl_ms);
        self.throttle.pending = 0;
        self.throttle.pending_since = None;
    }

    pub fn complete(
        &mut self,
        summary: Value,
        lifetimes: Lifetimes,
        now: Millis,
    ) -> Result<(), IllegalTransition> {
        self.state.complete(summary, now)?;
        self.ended(now, lifetimes.results_ttl_ms);
        Ok(())
    }

    pub fn fail(
        &mut self,
        error: JobError,
        lifetimes: Lifetimes,
        now: Millis,
    ) -> Result<(), IllegalTransition> {
        self.state.fail(error, now)?;
        self.ended(now, lifetimes.results_ttl_ms);
        Ok(())
    }

    pub fn cancel(&mut self, lifetimes: Lifetimes, now: Millis) -> Result<(), IllegalTransition> {
        self.state.cancel(now)?;
        self.ended(now, lifetimes.results_ttl_ms);
        Ok(())
    }

    /// Swaps the credential when `old_token` may be refreshed now. The check and the swap
    /// happen together, so of several refreshes with the same old token only the first can
    /// succeed. A job that has not ended keeps its "never ends" deletion tied to the new
    /// expiry.
    pub fn refresh(
        &mut self,
        old_token: Option<&str>,
        new_token: &str,
        lifetimes: Lifetimes,
        now: Millis,
    ) -> RefreshOutcome {
        if let Err(refused) = self
            .auth
            .check_refresh(old_token, now, lifetimes.refresh_window_ms)
        {
            return RefreshOutcome::Refused(refused);
        }
        let old_expiry = self.auth.expires_at;
        self.auth = TokenRecord::new(new_token, now, lifetimes.token_ttl_ms);
        // Sockets opened with the old token are closed when it would have expired; the task
        // then moves on to the new token's expiry.
        self.schedule
            .set(TaskKind::TokenExpiry, self.auth.expires_at);
        self.schedule
            .set_no_later_than(TaskKind::TokenExpiry, old_expiry);
        if !self.state.status.is_terminal() {
            self.schedule.set(
                TaskKind::Cleanup,
                self.auth.expires_at + lifetimes.results_ttl_ms,
            );
        }
        RefreshOutcome::Refreshed
    }

    /// Gives the job a new token at once, outside the refresh window (a repeated idempotent
    /// creation whose first token a refresh replaced). Sockets of the replaced token keep it
    /// until it would have expired.
    pub fn replace_token(&mut self, new_token: &str, lifetimes: Lifetimes, now: Millis) {
        let old_expiry = self.auth.expires_at;
        self.auth = TokenRecord::new(new_token, now, lifetimes.token_ttl_ms);
        self.schedule
            .set(TaskKind::TokenExpiry, self.auth.expires_at);
        self.schedule
            .set_no_later_than(TaskKind::TokenExpiry, old_expiry);
        if !self.state.status.is_terminal() {
            self.schedule.set(
                TaskKind::Cleanup,
                self.auth.expires_at + lifetimes.results_ttl_ms,
            );
        }
    }

    /// The token-expiry task ran: true when the current token has really expired (a refresh
    /// may have moved it), in which case every socket is closed with 1008.
    pub fn token_expired(&mut self, now: Millis) -> bool {
        if now >= self.auth.expires_at {
            self.schedule.remove(TaskKind::TokenExpiry);
            true
        } else {
            self.schedule
                .set(TaskKind::TokenExpiry, self.auth.expires_at);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::RefreshError;
    use serde_json::json;

    const CSV: PersistPolicy = PersistPolicy {
        every_updates: 20,
        every_ms: 30_000,
    };
    const ENRICH: PersistPolicy = PersistPolicy {
        every_updates: 5,
        every_ms: 10_000,
    };

    const LIFE: Lifetimes = Lifetimes {
        token_ttl_ms: 7_200_000,
        refresh_window_ms: 1_800_000,
        ready_timeout_ms: 30_000,
        results_ttl_ms: 86_400_000,
    };

    fn record(pipeline: Pipeline) -> JobRecord {
        JobRecord::create(
            "j",
            pipeline,
            0,
            TokenRecord::new("t", 1_000, LIFE.token_ttl_ms),
            LIFE,
            1_000,
        )
    }

    #[test]
    fn creation_schedules_start_expiry_and_cleanup() {
        let r = record(Pipeline::CsvImport);
        assert_eq!(r.state.status, Status::Queued);
        assert_eq!(r.schedule.get(TaskKind::Start).unwrap().due, 31_000);
        assert_eq!(
            r.schedule.get(TaskKind::TokenExpiry).unwrap().due,
            7_201_000
        );
        assert_eq!(
            r.schedule.get(TaskKind::Cleanup).unwrap().due,
            7_201_000 + 86_400_000
        );
        assert_eq!(r.schedule.next_alarm(), Some(31_000));
    }

    #[test]
    fn ready_moves_the_start_forward_once() {
        let mut r = record(Pipeline::CsvImport);
        assert!(r.on_ready(5_000));
        assert_eq!(r.schedule.get(TaskKind::Start).unwrap().due, 5_000);
        assert!(!r.on_ready(6_000), "already due");
        r.begin(10, 6_000).unwrap();
        assert!(!r.on_ready(7_000), "running jobs do not restart");
        assert!(!r.schedule.contains(TaskKind::Start));
        assert_eq!(r.schedule.get(TaskKind::Process).unwrap().due, 6_000);
        assert_eq!(
            r.processing_ms(9_500),
            3_500,
            "duration counts from the start, not creation"
        );
    }

    #[test]
    fn progress_persists_per_policy_and_schedules_a_flush() {
        let mut r = record(Pipeline::BatchEnrichment); // 5 updates or 10 s
        r.begin(100, 2_000).unwrap();
        for i in 1..5 {
            assert_eq!(
                r.progress(i, None, ENRICH, 2_000 + i).unwrap(),
                Some(PersistDecision::FlushAt(12_001))
            );
        }
        assert_eq!(r.schedule.get(TaskKind::Flush).unwrap().due, 12_001);
        assert_eq!(
            r.progress(5, None, ENRICH, 2_010).unwrap(),
            Some(PersistDecision::Now)
        );
        r.persisted();
        assert!(!r.schedule.contains(TaskKind::Flush));
        assert!(!r.throttle.is_dirty());
        assert_eq!(r.throttle.writes, 1);
    }

    #[test]
    fn unchanged_progress_is_not_an_update() {
        let mut r = record(Pipeline::CsvImport);
        r.begin(10, 2_000).unwrap();
        r.progress(1, None, CSV, 2_001).unwrap();
        let version = r.state.version;
        assert_eq!(r.progress(1, None, CSV, 2_002).unwrap(), None);
        assert_eq!(r.state.version, version);
        assert_eq!(r.throttle.pending, 1);
    }

    #[test]
    fn ending_clears_work_and_schedules_cleanup_after_the_ttl() {
        type End = fn(&mut JobRecord) -> Result<(), IllegalTransition>;
        let ends: [(&str, End, Status); 3] = [
            (
                "complete",
                |r| r.complete(json!({}), LIFE, 50_000),
                Status::Complete,
            ),
            (
                "fail",
                |r| {
                    r.fail(
                        JobError {
                            code: crate::error::ErrorCode::InvalidRequest,
                            message: "m".into(),
                            retryable: false,
                        },
                        LIFE,
                        50_000,
                    )
                },
                Status::Failed,
            ),
            ("cancel", |r| r.cancel(LIFE, 50_000), Status::Canceled),
        ];
        for (name, end, status) in ends {
            let mut r = record(Pipeline::AiScan);
            r.begin(3, 2_000).unwrap();
            r.progress(1, None, CSV, 3_000).unwrap();
            end(&mut r).unwrap();
            assert_eq!(r.state.status, status, "{name}");
            for kind in [TaskKind::Start, TaskKind::Process, TaskKind::Flush] {
                assert!(!r.schedule.contains(kind), "{name} leaves no {kind:?}");
            }
            assert_eq!(
                r.schedule.get(TaskKind::Cleanup).unwrap().due,
                50_000 + LIFE.results_ttl_ms,
                "{name}"
            );
            assert!(
                r.cancel(LIFE, 60_000).is_err(),
                "{name}: an ended job cannot be canceled"
            );
        }
    }

    #[test]
    fn a_queued_job_that_is_canceled_never_starts() {
        let mut r = record(Pipeline::CsvImport);
        r.cancel(LIFE, 2_000).unwrap();
        assert!(!r.schedule.contains(TaskKind::Start));
        assert!(r.begin(1, 40_000).is_err());
    }

    #[test]
    fn refresh_rules_and_single_winner() {
        let mut r = record(Pipeline::CsvImport); // token "t" from 1_000 to 7_201_000
        let too_early = r.refresh(Some("t"), "u", LIFE, 2_000);
        assert!(matches!(
            too_early,
            RefreshOutcome::Refused(RefreshError::TooEarly { .. })
        ));
        let inside = 7_201_000 - 1_000_000;
        assert_eq!(
            r.refresh(Some("t"), "u", LIFE, inside),
            RefreshOutcome::Refreshed
        );
        assert_eq!(
            r.refresh(Some("t"), "v", LIFE, inside),
            RefreshOutcome::Refused(RefreshError::Auth(crate::token::TokenError::Wrong)),
            "the old token stops working at once"
        );
        assert_eq!(r.auth.expires_at, inside + LIFE.token_ttl_ms);
        assert_eq!(
            r.schedule.get(TaskKind::TokenExpiry).unwrap().due,
            7_201_000,
            "sockets of the old token close when it would have expired"
        );
        assert!(!r.token_expired(7_201_000), "the new token lives on");
        assert_eq!(
            r.schedule.get(TaskKind::TokenExpiry).unwrap().due,
            r.auth.expires_at
        );
        assert_eq!(
            r.schedule.get(TaskKind::Cleanup).unwrap().due,
            r.auth.expires_at + LIFE.results_ttl_ms
        );
    }

    #[test]
    fn refresh_after_the_end_keeps_the_cleanup_of_the_end() {
        let mut r = record(Pipeline::CsvImport);
        r.cancel(LIFE, 10_000).unwrap();
        let inside = 7_201_000 - 1_000;
        assert_eq!(
            r.refresh(Some("t"), "u", LIFE, inside),
            RefreshOutcome::Refreshed
        );
        assert_eq!(
            r.schedule.get(TaskKind::Cleanup).unwrap().due,
            10_000 + LIFE.results_ttl_ms
        );
    }

    #[test]
    fn token_expiry_follows_refreshes() {
        let mut r = record(Pipeline::CsvImport);
        assert!(!r.token_expired(7_200_999));
        assert!(r.schedule.contains(TaskKind::TokenExpiry));
        assert!(r.token_expired(7_201_000));
        assert!(!r.schedule.contains(TaskKind::TokenExpiry));
    }

    #[test]
    fn restoring_drops_in_memory_only_throttle_state() {
        let mut r = record(Pipeline::CsvImport);
        r.begin(100, 2_000).unwrap();
        r.progress(3, None, CSV, 2_100).unwrap();
        let text = serde_json::to_string(&r).unwrap();
        let back: JobRecord = serde_json::from_str(&text).unwrap();
        let restored = back.restored(20);
        assert_eq!(restored.throttle.pending, 0);
        assert!(!restored.schedule.contains(TaskKind::Flush));
        assert_eq!(restored.state.version, r.state.version + 20);
    }
}
