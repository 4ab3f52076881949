//! The alarm: the schedule's due tasks, and a pipeline step raced against the ones that come due.
//!
//! A step may await a provider for up to that provider's deadline. While it does, no other
//! alarm can run for the object, so the alarm itself waits on the step *and* on the next due
//! task (token expiry, flush, cleanup), or a request that changed the job (a cancel, a
//! refresh), whichever comes first. A task that comes due runs on time; then the engine
//! **keeps awaiting the call**. It does not abandon it, because a provider that is slow but
//! sure (Gemini on five large photos) would otherwise never finish, and because every call is
//! billed: abandoning and repeating it pays twice. The wait stays bounded by the provider's own
//! deadline. Only a cancel or a cleanup abandons the step: the job is over, nothing it would
//! produce is wanted.

use super::dispatch::with_pipeline;
use super::Engine;
use crate::host::{Host, StorageError};
use crate::job::schedule::{RetryOutcome, TaskKind};
use crate::job::stream::EventKind;
use crate::job::{JobError, Status};
use crate::keys;
use crate::pipeline::{Attempt, Pipeline, StepFailure, StepOutcome};
use crate::protocol::ServerMessage;
use crate::time::Millis;
use futures::future::{select, Either, LocalBoxFuture};
use serde_json::json;

/// Storage failures in a row after which a job fails rather than trying again.
pub const MAX_STORAGE_FAILURES: u32 = 5;

/// The tasks that may run while a step is in flight: none of them touches the pipeline.
const DURING_A_STEP: [TaskKind; 3] = [TaskKind::Cleanup, TaskKind::TokenExpiry, TaskKind::Flush];

type StepResult = Result<StepOutcome, StepFailure>;

impl<H: Host> Engine<H> {
    /// Runs every due task, in the schedule's order, then arms the alarm for the next one. A
    /// storage failure never strands the job: see [`Self::after_storage_failure`].
    pub async fn alarm(&self) -> Result<(), StorageError> {
        self.count(|u| u.alarms += 1);
        self.in_alarm.set(true);
        let ran = self.run_alarm().await;
        self.in_alarm.set(false);
        match ran {
            Ok(()) => {
                self.forget_storage_failures().await;
                Ok(())
            }
            Err(e) => self.after_storage_failure(e).await,
        }
    }

    /// A storage operation of the alarm failed, so memory may be ahead of storage. The failure
    /// is counted in storage (apart from the core, which may be what cannot be written). Below
    /// [`MAX_STORAGE_FAILURES`] the alarm is re-armed with backoff and the object resets, to go
    /// on from its last checkpoint; at it the job fails with INTERNAL_ERROR (sockets closed
    /// 1011, cleanup scheduled).
    async fn after_storage_failure(&self, error: StorageError) -> Result<(), StorageError> {
        let faults = self.faults.get();
        let faults = crate::engine::Faults {
            in_a_row: faults.in_a_row + 1,
            total: faults.total + 1,
        };
        self.faults.set(faults);
        let failures = faults.in_a_row;
        let mut batch = crate::host::Batch::default();
        batch.json(crate::keys::FAULTS, &faults);
        crate::engine::IoCounters::bump(&self.io.writes);
        self.count(|u| u.rows_written += 1);
        let counted = self.host.put(batch).await.is_ok();
        self.log_job(
            "storage.failed",
            json!({ "failures": failures, "counted": counted, "error": error.to_string() }),
        );
        let now = self.now();
        if failures >= MAX_STORAGE_FAILURES {
            return self.fail_after_storage_failures(failures, now).await;
        }
        let due = now + self.retry_policy().delay_after(failures);
        self.armed.set(None);
        self.count(|u| u.alarm_sets += 1);
        self.host.set_alarm(Some(due)).await?;
        self.host
            .abort("a storage write failed; going on from the last checkpoint");
        Ok(())
    }

    async fn fail_after_storage_failures(
        &self,
        failures: u32,
        now: Millis,
    ) -> Result<(), StorageError> {
        let error = JobError {
            code: crate::error::ErrorCode::InternalError,
            message: format!("storage failed {failures} times in a row; the job cannot go on"),
            retryable: true,
        };
        let lifetimes = self.lifetimes();
        if self
            .with_job(|job| job.record.fail(error, lifetimes, now))
            .and_then(Result::ok)
            .is_none()
        {
            return Ok(());
        }
        // Clients are told even if the failure cannot be stored: they must not wait on a job
        // that cannot go on.
        let ending = self.stamp_final();
        let stored = self.checkpoint("end").await;
        self.tell_the_end(ending);
        self.log_job(
            "job.failed",
            json!({ "error": "storage kept failing", "stored": stored.is_ok() }),
        );
        self.log_cost("failed");
        self.sync_alarm().await?;
        self.release_lingering().await;
        Ok(())
    }

    /// After a good alarm, the failures in a row are forgiven (the total stays).
    async fn forget_storage_failures(&self) {
        let faults = self.faults.get();
        if faults.in_a_row > 0 && self.with_job(|_| ()).is_some() {
            let faults = crate::engine::Faults {
                in_a_row: 0,
                ..faults
            };
            self.faults.set(faults);
            let mut batch = crate::host::Batch::default();
            batch.json(crate::keys::FAULTS, &faults);
            crate::engine::IoCounters::bump(&self.io.writes);
            self.count(|u| u.rows_written += 1);
            let _ = self.host.put(batch).await;
        }
    }

    async fn run_alarm(&self) -> Result<(), StorageError> {
        self.armed.set(None);
        let now = self.now();
        let Some(due) = self.with_job(|job| job.record.schedule.due(now)) else {
            // No job, yet an alarm: a creation stored inputs and died before its last write
            // (`ORPHAN_INPUTS_GRACE_MS`). Read again first: a job that failed to load is not
            // an absent one, and must not be deleted.
            let stored = self.read(&[keys::CORE.into()]).await?;
            if stored.json::<serde_json::Value>(keys::CORE).is_none() {
                self.host.log("job.orphan_inputs_deleted", json!({}));
                self.host.delete_all().await?;
            }
            return Ok(());
        };
        for kind in due {
            // Alarms are at-least-once, and an earlier task may have moved this one.
            let still_due = self
                .with_job(|job| job.record.schedule.get(kind).is_some_and(|t| t.due <= now))
                .unwrap_or(false);
            if !still_due {
                continue;
            }
            self.log_job("task.run", json!({ "task": kind.as_str() }));
            match kind {
                TaskKind::Cleanup => return self.cleanup().await,
                TaskKind::TokenExpiry => self.run_token_expiry(now),
                TaskKind::Start => self.run_start(now).await?,
                TaskKind::Process => self.run_process().await?,
                TaskKind::Flush => self.run_flush().await?,
            }
            if self.with_job(|_| ()).is_none() {
                // Cleaned up while a step was in flight.
                return Ok(());
            }
        }
        // Last, so that a failure above leaves the alarm to the platform's retries.
        self.sync_alarm().await?;
        self.release_lingering().await;
        Ok(())
    }

    /// Closes 1008 every socket whose token has expired: the job's token, or an older one a
    /// socket was opened with before a refresh; then waits for the next expiry.
    fn run_token_expiry(&self, now: Millis) {
        let closed = self.close_expired_sockets(now);
        let expired = self
            .with_job(|job| job.record.token_expired(now))
            .unwrap_or(false);
        if let Some(at) = self.next_socket_expiry(now) {
            self.with_job(|job| {
                job.record
                    .schedule
                    .set_no_later_than(TaskKind::TokenExpiry, at)
            });
        }
        if expired || closed > 0 {
            self.log_job(
                "token.expired",
                json!({ "current": expired, "socketsClosed": closed }),
            );
        }
    }

    async fn run_flush(&self) -> Result<(), StorageError> {
        let dirty = self
            .with_job(|job| job.record.throttle.is_dirty())
            .unwrap_or(false);
        if dirty {
            self.checkpoint("flush").await
        } else {
            self.with_job(|job| job.record.schedule.remove(TaskKind::Flush));
            Ok(())
        }
    }

    async fn run_start(&self, now: Millis) -> Result<(), StorageError> {
        if self.with_job(|job| job.record.state.status) != Some(Status::Queued) {
            self.with_job(|job| job.record.schedule.remove(TaskKind::Start));
            return Ok(());
        }
        let Some(pipelines) = self.pipelines() else {
            return Ok(());
        };
        let prepared = with_pipeline!(self, &*pipelines, |p, ctx| p.prepare(&ctx).await);
        let total = match prepared {
            Ok(total) => total,
            Err(failure) => return self.handle_failure(TaskKind::Start, failure, now).await,
        };
        if self
            .with_job(|job| job.record.begin(total, now))
            .and_then(Result::ok)
            .is_none()
        {
            return Ok(());
        }
        let started = self.stamp_kept(
            &ServerMessage::JobStarted {
                total_count: total,
                estimated_duration_ms: None,
            },
            EventKind::Started,
        );
        self.checkpoint("start").await?;
        if let Some(text) = started {
            self.send_all(&text);
        }
        self.log_job("job.started", json!({ "totalCount": total }));
        Ok(())
    }

    async fn run_process(&self) -> Result<(), StorageError> {
        // Held progress from the previous chunk goes out before new work begins.
        self.flush_progress(self.now());
        let failed_before = self
            .with_job(|job| {
                job.record
                    .schedule
                    .get(TaskKind::Process)
                    .map_or(0, |t| t.attempts)
            })
            .unwrap_or(0);
        let attempt = Attempt {
            failed_before,
            last: failed_before + 1 >= self.retry_policy().max_attempts,
        };
        let Some(pipelines) = self.pipelines() else {
            return Ok(());
        };
        let step: LocalBoxFuture<'_, StepResult> = with_pipeline!(self, &*pipelines, |p, ctx| {
            Box::pin(async move { p.step(&ctx, attempt).await })
        });
        let Some(outcome) = self.await_step(step).await? else {
            self.log_job("step.abandoned", json!({}));
            return Ok(());
        };
        let now = self.now();
        if self.with_job(|job| job.record.state.status) != Some(Status::Running) {
            // Ended while the step was in flight: its results are dropped.
            return Ok(());
        }
        match outcome {
            Ok(StepOutcome::Continue { delay_ms }) => {
                let held = self.flush_progress(now);
                // A report that had to wait for the socket spacing goes out first thing in
                // the next chunk, which waits only until the spacing allows it (at most half
                // the spacing): a flat wait of half the spacing left the object idle for
                // tens of milliseconds between runs of an import.
                let wait = if held {
                    self.next_flush_at(now, false) - now
                } else {
                    0
                };
                self.with_job(|job| {
                    job.record
                        .schedule
                        .set(TaskKind::Process, now + delay_ms.max(wait))
                });
                Ok(())
            }
            Ok(StepOutcome::Done) => {
                if self.flush_last_progress(now) {
                    // The last chunk's report is still held: come back once the one-second
                    // bound allows it, so no chunk goes unreported (a step is `Done` again then).
                    let wait = self.next_flush_at(now, true) - now;
                    self.with_job(|job| job.record.schedule.set(TaskKind::Process, now + wait));
                    return Ok(());
                }
                let summary = with_pipeline!(self, &*pipelines, |p, ctx| p.summary(&ctx).await);
                match summary {
                    Ok(summary) => self.complete(summary, now).await,
                    Err(failure) => self.handle_failure(TaskKind::Process, failure, now).await,
                }
            }
            Err(failure) => self.handle_failure(TaskKind::Process, failure, now).await,
        }
    }

    /// Awaits a step while running, on time, the tasks that come due meanwhile. `None` when
    /// the step was abandoned because the job ended (canceled, cleaned up) under it.
    async fn await_step(
        &self,
        mut step: LocalBoxFuture<'_, StepResult>,
    ) -> Result<Option<StepResult>, StorageError> {
        self.in_step.set(true);
        let outcome = self.race_step(&mut step).await;
        self.in_step.set(false);
        outcome
    }

    async fn race_step(
        &self,
        step: &mut LocalBoxFuture<'_, StepResult>,
    ) -> Result<Option<StepResult>, StorageError> {
        loop {
            let seen = self.nudge.generation.get();
            let deadline = self
                .with_job(|job| job.record.schedule.next_due_of(&DURING_A_STEP))
                .flatten();
            let timer = async move {
                match deadline {
                    Some(at) => self.host.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let interrupt = select(Box::pin(timer), Box::pin(self.nudge.after(seen)));
            match select(&mut *step, interrupt).await {
                Either::Left((outcome, _)) => return Ok(Some(outcome)),
                Either::Right(_) => {
                    if !self.run_due_during_step().await? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Runs the tasks that are due while a step is in flight; false when the step must be
    /// abandoned.
    async fn run_due_during_step(&self) -> Result<bool, StorageError> {
        let now = self.now();
        let Some((status, due)) = self.with_job(|job| {
            let due: Vec<TaskKind> = job
                .record
                .schedule
                .due(now)
                .into_iter()
                .filter(|kind| DURING_A_STEP.contains(kind))
                .collect();
            (job.record.state.status, due)
        }) else {
            return Ok(false);
        };
        if status != Status::Running {
            return Ok(false);
        }
        for kind in due {
            self.log_job(
                "task.run",
                json!({ "task": kind.as_str(), "duringStep": true }),
            );
            match kind {
                TaskKind::Cleanup => {
                    self.cleanup().await?;
                    return Ok(false);
                }
                TaskKind::TokenExpiry => self.run_token_expiry(now),
                TaskKind::Flush => self.run_flush().await?,
                TaskKind::Start | TaskKind::Process => {}
            }
        }
        self.sync_alarm().await?;
        Ok(true)
    }

    /// A task failed: retried with backoff (and at least the provider's `Retry-After`) while
    /// attempts remain, counted in storage; else the job fails.
    async fn handle_failure(
        &self,
        kind: TaskKind,
        failure: StepFailure,
        now: Millis,
    ) -> Result<(), StorageError> {
        let error = match failure {
            StepFailure::Permanent(error) => error,
            StepFailure::Transient {
                code,
                message,
                retry_after_ms,
            } => {
                let policy = self.retry_policy();
                let outcome = self
                    .with_job(|job| job.record.schedule.retry(kind, now, policy, retry_after_ms));
                match outcome {
                    Some(RetryOutcome::RetryAt { due, attempts }) => {
                        self.log_job(
                            "task.retry",
                            json!({ "task": kind.as_str(), "attempts": attempts, "due": due, "error": message }),
                        );
                        // The attempt count must survive an eviction.
                        return self.write_core(Default::default()).await;
                    }
                    Some(RetryOutcome::Exhausted { attempts }) => JobError {
                        code,
                        message: format!("{message} (gave up after {attempts} attempts)"),
                        retryable: true,
                    },
                    None => return Ok(()),
                }
            }
        };
        self.fail(error, now).await
    }
}
