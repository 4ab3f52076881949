//! Progress reports, checkpoints, and the three ways a job ends (complete, failed, cleaned up).

use super::dispatch::with_pipeline;
use super::{Engine, IoCounters};
use crate::host::{Batch, Host, StorageError};
use crate::job::throttle::{PersistDecision, PersistPolicy, SOCKET_MIN_INTERVAL_MS};
use crate::job::JobError;
use crate::keys;
use crate::pipeline::Pipeline;
use crate::protocol::{CloseCode, ServerMessage};
use crate::time::Millis;
use serde_json::{json, Value};

impl<H: Host> Engine<H> {
    pub(super) fn persist_policy(&self) -> Option<PersistPolicy> {
        let pipelines = self.pipelines()?;
        self.with_job(|job| pipelines.persist_policy(&job.work, job.record.state.pipeline))
    }

    pub(super) fn progress_spacing_ms(&self) -> Millis {
        let Some(pipelines) = self.pipelines() else {
            return SOCKET_MIN_INTERVAL_MS;
        };
        self.with_job(|job| pipelines.progress_spacing_ms(&job.work))
            .unwrap_or(SOCKET_MIN_INTERVAL_MS)
    }

    /// Records one progress update: sent to sockets at once (coalesced), and written to
    /// storage, with the pipeline's buffered results, when the throttle policy says so.
    pub(super) async fn progress(
        &self,
        processed: u64,
        current_item: Option<String>,
    ) -> Result<(), StorageError> {
        let now = self.now();
        let spacing = self.progress_spacing_ms();
        let Some(policy) = self.persist_policy() else {
            return Ok(());
        };
        let update = self.with_job(|job| job.record.progress(processed, current_item, policy, now));
        let Some(Ok(Some(decision))) = update else {
            return Ok(());
        };
        let send = self.mem.borrow_mut().coalescer.offer(spacing, now);
        if send {
            if let Some(message) = self.with_job(|job| ServerMessage::progress(&job.record.state)) {
                self.broadcast(&message);
            }
        }
        if decision == PersistDecision::Now {
            self.checkpoint("throttle").await?;
        }
        Ok(())
    }

    /// At a chunk boundary: sends a held progress report when half the spacing has passed.
    /// Returns true when one is still held.
    pub(super) fn flush_progress(&self, now: Millis) -> bool {
        let spacing = self.progress_spacing_ms();
        let send = self.mem.borrow_mut().coalescer.flush(spacing, now);
        self.send_flushed(send)
    }

    /// As [`Engine::flush_progress`], after the last chunk: the held report goes at once
    /// unless the contract's 20 a second forbids it.
    pub(super) fn flush_last_progress(&self, now: Millis) -> bool {
        let spacing = self.progress_spacing_ms();
        let send = self.mem.borrow_mut().coalescer.flush_last(spacing, now);
        self.send_flushed(send)
    }

    /// When a held report can go at a chunk's end (see
    /// [`crate::job::throttle::SocketCoalescer::next_flush_at`]);
    /// never before `now`'s next millisecond, since a flush at `now` has just failed.
    pub(super) fn next_flush_at(&self, now: Millis, last: bool) -> Millis {
        let spacing = self.progress_spacing_ms();
        let due = self.mem.borrow().coalescer.next_flush_at(spacing, last);
        due.max(now + 1)
    }

    fn send_flushed(&self, send: bool) -> bool {
        if send {
            if let Some(message) = self.with_job(|job| ServerMessage::progress(&job.record.state)) {
                self.broadcast(&message);
            }
        }
        self.mem.borrow().coalescer.is_holding()
    }

    /// Writes the core, the pipeline's progress and the results it buffered since the last
    /// checkpoint, in one operation.
    pub(super) async fn checkpoint(&self, reason: &str) -> Result<(), StorageError> {
        self.with_job(|job| job.record.persisted());
        self.write_core(Batch::default()).await?;
        if let Some((processed, version)) =
            self.with_job(|job| (job.record.state.processed_count, job.record.state.version))
        {
            self.log_job(
                "job.persisted",
                json!({ "reason": reason, "processedCount": processed, "version": version }),
            );
        }
        Ok(())
    }

    /// Writes `batch` with the core, the work and the pipeline's buffered results.
    pub(super) async fn write_core(&self, mut batch: Batch) -> Result<(), StorageError> {
        let pipelines = self.pipelines();
        let Some(()) = self.with_job(|job| {
            if let Some(pipelines) = &pipelines {
                pipelines.drain_pending(&mut job.work, &mut batch);
            }
            job.record.stream.reserve();
            self.settle_usage(job);
            batch
                .json(keys::CORE, &job.record)
                .json(keys::WORK, &job.work);
        }) else {
            return Ok(());
        };
        let written = self.write(batch).await;
        if let Err(e) = &written {
            // Memory is now ahead of storage (buffered results went into the failed write):
            // the object must be rebuilt from the last checkpoint. The alarm does that itself
            // once it has re-armed (see `tasks`); any other event resets the object now.
            self.log_job("storage.write_failed", json!({ "error": e.to_string() }));
            if !self.in_alarm.get() {
                self.host.abort("a storage write failed");
            }
        }
        written
    }

    pub(super) async fn complete(&self, summary: Value, now: Millis) -> Result<(), StorageError> {
        let lifetimes = self.lifetimes();
        if self
            .with_job(|job| job.record.complete(summary, lifetimes, now))
            .and_then(Result::ok)
            .is_none()
        {
            return Ok(());
        }
        self.finish().await?;
        self.log_job("job.completed", self.io.snapshot());
        self.log_cost("completed");
        Ok(())
    }

    pub(super) async fn fail(&self, error: JobError, now: Millis) -> Result<(), StorageError> {
        let lifetimes = self.lifetimes();
        let message = error.message.clone();
        if self
            .with_job(|job| job.record.fail(error, lifetimes, now))
            .and_then(Result::ok)
            .is_none()
        {
            return Ok(());
        }
        self.finish().await?;
        self.log_job("job.failed", json!({ "error": message }));
        self.log_cost("failed");
        Ok(())
    }

    /// Persists an ended job, then tells every socket how it ended and closes it, then lets
    /// the pipeline drop the inputs it no longer needs.
    async fn finish(&self) -> Result<(), StorageError> {
        let ending = self.stamp_final();
        self.checkpoint("end").await?;
        self.tell_the_end(ending);
        let Some(pipelines) = self.pipelines() else {
            return Ok(());
        };
        with_pipeline!(self, &*pipelines, |p, ctx| p.after_end(&ctx).await)
    }

    /// Deletes everything of the job: sockets closed, storage emptied, alarm removed.
    pub(super) async fn cleanup(&self) -> Result<(), StorageError> {
        self.close_all(CloseCode::JobCanceled, "job deleted");
        self.log_job("job.cleaned", self.io.snapshot());
        self.host.delete_all().await?;
        self.host.set_alarm(None).await?;
        IoCounters::bump(&self.io.writes);
        self.armed.set(None);
        self.mem.borrow_mut().job = None;
        *self.pipeline.borrow_mut() = None;
        self.release_lingering().await;
        Ok(())
    }
}
