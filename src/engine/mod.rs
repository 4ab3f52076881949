//! The step engine: one job's life (requests, sockets, timed tasks, pipeline steps) over a [`Host`].
//!
//! The engine is what the job's Durable Object does, with every effect going through the
//! [`Host`] the object implements; tests run it in memory with a virtual clock
//! (`testing`). Its parts, one concern each:
//! - `requests`: creation, state, token refresh, cancel, results;
//! - `sockets`: admitting sockets, client messages, closes;
//! - `stream`: numbered messages out, the kept events and their replay;
//! - `tasks`: the alarm, which runs the schedule's due tasks and races a step against them;
//! - `progress`: progress reports, checkpoints and endings;
//! - `dispatch`: the pipeline a job runs, and the context its steps see.
//!
//! Every method takes `&self` and keeps state in cells: events interleave at `.await` points
//! (a cancel arrives while a step awaits a provider), and no borrow is held across one.

mod dispatch;
mod progress;
mod requests;
mod sockets;
mod stream;
mod tasks;

// The engine's tests run natively, with an in-memory host and a virtual clock.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod bounds_tests;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod compat_tests;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod schema_tests;
#[cfg(all(test, not(target_arch = "wasm32")))]
pub mod testing;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod usage_tests;

pub use sockets::{Admission, ClientFrame};

use crate::config::Config;
use crate::cost::{AwakeClock, Usage, PRICES};
use crate::error::ApiError;
use crate::host::{Host, StorageError, Values};
use crate::job::record::{JobRecord, Lifetimes};
use crate::job::schedule::RetryPolicy;
use crate::job::throttle::SocketCoalescer;
use crate::keys;
use crate::pipelines::work::Work;
use crate::time::Millis;
use crate::token::TokenSigner;
use dispatch::Pipelines;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::future::Future;

use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Sockets a job accepts at once; the next one is accepted and closed with 1013.
pub const MAX_SOCKETS: usize = 8;

/// An answer to a request: a status and the payload of the success envelope, or an error.
pub type Reply = Result<(u16, Value), ApiError>;

/// A job as the engine holds it: the core and the pipeline's progress, stored under two keys
/// and written together.
#[derive(Debug, Clone)]
pub struct Job {
    pub record: JobRecord,
    pub work: Work,
}

/// What the engine remembers between events; rebuilt from storage by [`Engine::load`].
#[derive(Default)]
struct Memory {
    job: Option<Job>,
    /// Set when stored data could not be read back; every request answers 500 rather than
    /// pretending the job does not exist.
    corrupt: Option<String>,
    coalescer: SocketCoalescer,
    /// The number of the last `job_progress` broadcast, replayed as the latest progress.
    last_progress_seq: Option<u64>,
}

/// Storage operations made by this engine since it was built, for logs and benchmarks.
#[derive(Debug, Default)]
pub struct IoCounters {
    pub reads: Cell<u64>,
    pub writes: Cell<u64>,
    pub alarm_sets: Cell<u64>,
}

impl IoCounters {
    fn bump(cell: &Cell<u64>) {
        cell.set(cell.get() + 1);
    }

    pub fn snapshot(&self) -> Value {
        json!({
            "storageReads": self.reads.get(),
            "storageWrites": self.writes.get(),
            "alarmSets": self.alarm_sets.get(),
        })
    }
}

/// Wakes the alarm's wait on a step when a request changed the job under it (a cancel, a
/// refresh that moved the token's expiry), so the wait's deadline is worked out again.
#[derive(Default)]
struct Nudge {
    generation: Cell<u64>,
    waiter: RefCell<Option<Waker>>,
}

impl Nudge {
    fn nudge(&self) {
        self.generation.set(self.generation.get() + 1);
        if let Some(waker) = self.waiter.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Completes at the first nudge after `seen` (the generation read before waiting).
    fn after(&self, seen: u64) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx: &mut Context<'_>| {
            if self.generation.get() != seen {
                Poll::Ready(())
            } else {
                *self.waiter.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

pub struct Engine<H: Host> {
    host: H,
    config: Config,
    signer: TokenSigner,
    mem: RefCell<Memory>,
    /// The job's pipeline with its caches; shared out (never borrowed) across `.await`s.
    pipeline: RefCell<Option<Rc<Pipelines>>>,
    io: IoCounters,
    /// The alarm time last set by this engine, to skip redundant `set_alarm` calls.
    armed: Cell<Option<Millis>>,
    nudge: Nudge,
    /// A socket that never delivered a message was closed: its connection lingers until the
    /// object resets.
    lingering: Cell<bool>,
    /// The alarm is awaiting a pipeline step.
    in_step: Cell<bool>,
    /// The alarm is running: a failed write is then recovered by the alarm itself.
    in_alarm: Cell<bool>,
    /// Storage failures of the alarm, as stored under `keys::FAULTS`.
    faults: Cell<Faults>,
    /// What this object counted for its job since the job's record last took it in (see
    /// [`Self::settle_usage`]); counted before a job exists too (the load, the creation).
    usage: Cell<Usage>,
    /// The events running now, for the awake time.
    awake: Cell<AwakeClock>,
}

/// Storage failures of a job's alarm: how many in a row (a good alarm forgets them) and in all
/// (which development mode's fault injection counts against).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    pub in_a_row: u32,
    pub total: u32,
}

impl<H: Host> Engine<H> {
    pub fn new(host: H, config: Config) -> Self {
        let signer = TokenSigner::new(config.token_signing_key.as_bytes());
        Self {
            host,
            config,
            signer,
            mem: RefCell::new(Memory::default()),
            pipeline: RefCell::new(None),
            io: IoCounters::default(),
            armed: Cell::new(None),
            nudge: Nudge::default(),
            lingering: Cell::new(false),
            in_step: Cell::new(false),
            in_alarm: Cell::new(false),
            faults: Cell::new(Faults::default()),
            usage: Cell::new(Usage::default()),
            awake: Cell::new(AwakeClock::default()),
        }
    }

    pub fn host(&self) -> &H {
        &self.host
    }

    pub fn io(&self) -> &IoCounters {
        &self.io
    }

    /// Reads the job back from storage, as after an eviction. Run before any event.
    pub async fn load(&self) -> Result<(), StorageError> {
        let stored = self
            .read(&[keys::CORE.into(), keys::WORK.into(), keys::FAULTS.into()])
            .await?;
        let faults = stored.json::<Faults>(keys::FAULTS).and_then(Result::ok);
        self.faults.set(faults.unwrap_or_default());
        let loaded = match (
            stored.json::<JobRecord>(keys::CORE),
            stored.json::<Work>(keys::WORK),
        ) {
            (None, _) => Ok(None),
            (Some(Ok(record)), Some(Ok(work))) => Ok(Some((record, work))),
            (Some(Err(e)), _) | (_, Some(Err(e))) => Err(e),
            (Some(Ok(_)), None) => Err("work is missing".to_string()),
        };
        let job = match loaded {
            Ok(Some((record, work))) => {
                let pipelines = Pipelines::for_work(&work);
                let unpersisted = pipelines
                    .persist_policy(&work, record.state.pipeline)
                    .every_updates;
                let mut record = record.restored(u64::from(unpersisted));
                if !record.state.status.is_terminal() {
                    record.usage = record.usage.plus(self.usage.take());
                    // The version skipped past what may have been sent unpersisted; store the
                    // new floor at once, so a second restart cannot hand out the same versions.
                    let mut batch = crate::host::Batch::default();
                    batch.json(keys::CORE, &record);
                    self.write(batch).await?;
                }
                *self.pipeline.borrow_mut() = Some(Rc::new(pipelines));
                Some(Job { record, work })
            }
            Ok(None) => None,
            Err(e) => {
                self.mem.borrow_mut().corrupt = Some(e);
                None
            }
        };
        self.mem.borrow_mut().job = job;
        Ok(())
    }

    fn now(&self) -> Millis {
        self.host.now()
    }

    pub fn lifetimes(&self) -> Lifetimes {
        Lifetimes {
            token_ttl_ms: self.config.token_ttl_ms,
            refresh_window_ms: self.config.token_refresh_window_ms,
            ready_timeout_ms: self.config.ready_timeout_ms,
            results_ttl_ms: self.config.results_ttl_ms,
        }
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            base_ms: self.config.task_retry_base_ms,
            ..RetryPolicy::DEFAULT
        }
    }

    /// Runs `f` on the loaded job, if there is one. The borrow ends before any await.
    pub fn with_job<R>(&self, f: impl FnOnce(&mut Job) -> R) -> Option<R> {
        self.mem.borrow_mut().job.as_mut().map(f)
    }

    fn pipelines(&self) -> Option<Rc<Pipelines>> {
        self.pipeline.borrow().clone()
    }

    fn log_job(&self, event: &str, mut fields: Value) {
        if let (Some((id, pipeline)), Value::Object(map)) = (
            self.with_job(|j| (j.record.state.job_id.clone(), j.record.state.pipeline)),
            &mut fields,
        ) {
            map.insert("jobId".into(), json!(id));
            map.insert("pipeline".into(), json!(pipeline.as_str()));
        }
        self.host.log(event, fields);
    }

    /// A 500 for the client, with the cause in the log only.
    fn internal(&self, context: &str, err: impl std::fmt::Display) -> ApiError {
        self.log_job(
            "internal_error",
            json!({ "context": context, "error": err.to_string() }),
        );
        ApiError::internal(format!("internal error while {context}"))
    }

    /// The job, or the error a request about it gets: 404 when there is none, 500 when its
    /// stored data could not be read.
    fn require_job(&self) -> Result<(), ApiError> {
        let memory = self.mem.borrow();
        if let Some(reason) = &memory.corrupt {
            return Err(ApiError::internal(format!(
                "stored job data is unreadable: {reason}"
            )));
        }
        memory
            .job
            .as_ref()
            .map(|_| ())
            .ok_or_else(|| ApiError::not_found("no such job"))
    }

    fn authorize(&self, token: Option<&str>, now: Millis) -> Result<(), ApiError> {
        let checked = self.require_job().and_then(|()| {
            self.with_job(|job| job.record.auth.check(token, now))
                .unwrap_or(Ok(()))
                .map_err(|e| ApiError::auth(e.message()))
        });
        if let (Err(refused), true) = (&checked, self.host.logs("auth.refused")) {
            // Counted by the security tests: every refusal that reached an object.
            self.log_job(
                "auth.refused",
                json!({ "status": refused.status(), "object": self.host.name() }),
            );
        }
        checked
    }

    // ---- storage, counted -------------------------------------------------------------------

    async fn read(&self, keys: &[String]) -> Result<Values, StorageError> {
        IoCounters::bump(&self.io.reads);
        let values = self.host.get(keys).await?;
        self.count(|u| u.rows_read += values.0.len() as u64);
        Ok(values)
    }

    async fn write(&self, batch: crate::host::Batch) -> Result<(), StorageError> {
        if batch.is_empty() {
            return Ok(());
        }
        IoCounters::bump(&self.io.writes);
        self.count(|u| u.rows_written += batch.len() as u64);
        if self.injects_write_failure(&batch) {
            return Err(StorageError("injected by FAULT_FAIL_WRITES".into()));
        }
        self.host.put(batch).await
    }

    /// Development mode's fault injection: a running job's checkpoints fail until the job
    /// has counted `FAULT_FAIL_WRITES` failures in storage.
    fn injects_write_failure(&self, batch: &crate::host::Batch) -> bool {
        let running = self.with_job(|job| job.record.state.status == crate::job::Status::Running);
        self.config.fault_fail_writes > self.faults.get().total
            && running == Some(true)
            && batch.entries().iter().any(|(key, _)| key == keys::WORK)
    }

    /// Arms the single alarm at the schedule's earliest task, or removes it when none remain.
    /// Every schedule change ends here, which also wakes an alarm waiting on a step, so it
    /// works out its deadline again.
    async fn sync_alarm(&self) -> Result<(), StorageError> {
        self.nudge.nudge();
        let next = self
            .with_job(|job| job.record.schedule.next_alarm())
            .flatten();
        if next == self.armed.get() {
            return Ok(());
        }
        if next.is_some() {
            IoCounters::bump(&self.io.alarm_sets);
            self.count(|u| u.alarm_sets += 1);
        }
        self.host.set_alarm(next).await?;
        self.armed.set(next);
        Ok(())
    }

    // ---- usage, counted ---------------------------------------------------------------------

    /// Adds to what the object counted for its job.
    fn count(&self, f: impl FnOnce(&mut Usage)) {
        let mut usage = self.usage.get();
        f(&mut usage);
        self.usage.set(usage);
    }

    /// The object answered a request (an upgrade included).
    pub fn count_request(&self) {
        self.count(|u| u.requests += 1);
    }

    /// An event starts (a request, the alarm, a socket event, the constructor's load): the
    /// object is awake until the last one in flight ends.
    pub fn enter(&self) {
        let mut clock = self.awake.get();
        clock.enter(self.now());
        self.awake.set(clock);
    }

    /// An event ends; see [`Self::enter`].
    pub fn leave(&self) {
        let mut clock = self.awake.get();
        let awake = clock.leave(self.now());
        self.awake.set(clock);
        if awake > 0 {
            self.count(|u| u.awake_ms += awake);
        }
    }

    /// Hands what was counted to the job's record, to be stored with it: called just before
    /// the record is encoded for a write, so counting never costs a write of its own.
    fn settle_usage(&self, job: &mut Job) {
        job.record.usage = job.record.usage.plus(self.usage.take());
    }

    /// Everything the job's object counted for it, the events still running included.
    pub fn usage(&self) -> Option<Usage> {
        let running = self.awake.get().running(self.now());
        let pending = self.usage.get();
        self.with_job(|job| job.record.usage.plus(pending))
            .map(|usage| Usage {
                awake_ms: usage.awake_ms + running,
                ..usage
            })
    }

    /// The `job.cost` line at a job's end: its counts, and their price at [`PRICES`].
    fn log_cost(&self, ended: &str) {
        let Some(usage) = self.usage() else {
            return;
        };
        let mut fields = serde_json::to_value(usage).unwrap_or_else(|_| json!({}));
        if let Value::Object(map) = &mut fields {
            map.insert("ended".into(), json!(ended));
            map.insert("dollars".into(), json!(PRICES.cost(&usage).total()));
            map.insert("pricesAsOf".into(), json!(PRICES.as_of));
        }
        self.log_job("job.cost", fields);
    }
}
