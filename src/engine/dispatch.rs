//! The pipeline a job runs, and [`WorkCtx`]: the engine as a pipeline's step sees it.

use super::{Engine, IoCounters};
use crate::config::Config;
use crate::host::{Answer, Batch, CallError, Host, Outbound, StorageError, Stored, Values};
use crate::job::stream::EventKind;
use crate::job::throttle::PersistPolicy;
use crate::job::{Pipeline as Kind, Status};
use crate::pipeline::{Ctx, Pipeline, Provider};
use crate::pipelines::csv::CsvImport;
use crate::pipelines::enrich::Enrichment;
use crate::pipelines::scan::ShelfScan;
use crate::pipelines::synthetic::SyntheticJob;
use crate::pipelines::work::Work;
use crate::protocol::ServerMessage;
use crate::time::Millis;
use serde_json::{json, Value};

/// One pipeline per kind of work, holding that pipeline's caches.
// One per job object: boxing the larger variants would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Pipelines {
    Synthetic(SyntheticJob),
    Scan(ShelfScan),
    Enrich(Enrichment),
    Csv(CsvImport),
}

/// Runs `$body` with `$p` bound to the job's pipeline and `$ctx` to a context over that
/// pipeline's own progress record.
macro_rules! with_pipeline {
    ($engine:expr, $pipelines:expr, |$p:ident, $ctx:ident| $body:expr) => {{
        use crate::engine::dispatch::{Pipelines, WorkCtx};
        use crate::pipelines::work::Work;
        match $pipelines {
            Pipelines::Synthetic($p) => {
                let $ctx = WorkCtx::new($engine, Work::synthetic);
                $body
            }
            Pipelines::Scan($p) => {
                let $ctx = WorkCtx::new($engine, Work::scan);
                $body
            }
            Pipelines::Enrich($p) => {
                let $ctx = WorkCtx::new($engine, Work::enrich);
                $body
            }
            Pipelines::Csv($p) => {
                let $ctx = WorkCtx::new($engine, Work::csv);
                $body
            }
        }
    }};
}
pub(crate) use with_pipeline;

impl Pipelines {
    pub fn for_work(work: &Work) -> Self {
        match work {
            Work::Synthetic(_) => Self::Synthetic(SyntheticJob),
            Work::Scan(_) => Self::Scan(ShelfScan::default()),
            Work::Enrich(_) => Self::Enrich(Enrichment::default()),
            Work::Csv(_) => Self::Csv(CsvImport::default()),
        }
    }

    /// One of the job's input slices as its creation stores them, in order.
    pub fn input_received(&self, work: &Work, key: &str, bytes: &[u8]) {
        if let (Self::Csv(p), Work::Csv(w)) = (self, work) {
            p.input_received(w, key, bytes);
        }
    }

    /// The pipeline's part of a checkpoint: its buffered results, with `work` updated in
    /// the same write.
    pub fn drain_pending(&self, work: &mut Work, batch: &mut Batch) {
        match (self, work) {
            (Self::Synthetic(p), Work::Synthetic(w)) => p.drain_pending(w, batch),
            (Self::Scan(p), Work::Scan(w)) => p.drain_pending(w, batch),
            (Self::Enrich(p), Work::Enrich(w)) => p.drain_pending(w, batch),
            (Self::Csv(p), Work::Csv(w)) => p.drain_pending(w, batch),
            _ => {}
        }
    }

    pub fn persist_policy(&self, work: &Work, kind: Kind) -> PersistPolicy {
        match (self, work) {
            (Self::Synthetic(p), Work::Synthetic(w)) => p.persist_policy(w, kind),
            (Self::Scan(p), Work::Scan(w)) => p.persist_policy(w, kind),
            (Self::Enrich(p), Work::Enrich(w)) => p.persist_policy(w, kind),
            (Self::Csv(p), Work::Csv(w)) => p.persist_policy(w, kind),
            _ => PersistPolicy::for_pipeline(kind),
        }
    }

    pub fn progress_spacing_ms(&self, work: &Work) -> Millis {
        match (self, work) {
            (Self::Synthetic(p), Work::Synthetic(w)) => p.progress_spacing_ms(w),
            (Self::Scan(p), Work::Scan(w)) => p.progress_spacing_ms(w),
            (Self::Enrich(p), Work::Enrich(w)) => p.progress_spacing_ms(w),
            (Self::Csv(p), Work::Csv(w)) => p.progress_spacing_ms(w),
            _ => crate::job::throttle::SOCKET_MIN_INTERVAL_MS,
        }
    }
}

/// The engine seen through one pipeline's progress record `W`.
pub struct WorkCtx<'e, H: Host, W> {
    engine: &'e Engine<H>,
    project: fn(&mut Work) -> Option<&mut W>,
}

impl<'e, H: Host, W> WorkCtx<'e, H, W> {
    pub fn new(engine: &'e Engine<H>, project: fn(&mut Work) -> Option<&mut W>) -> Self {
        Self { engine, project }
    }
}

impl<H: Host, W> Ctx<W> for WorkCtx<'_, H, W> {
    fn now(&self) -> Millis {
        self.engine.now()
    }

    fn config(&self) -> &Config {
        &self.engine.config
    }

    fn with_work<R>(&self, f: impl FnOnce(&mut W) -> R) -> Option<R> {
        let project = self.project;
        self.engine
            .with_job(|job| project(&mut job.work).map(f))
            .flatten()
    }

    fn total_count(&self) -> u64 {
        self.engine
            .with_job(|job| job.record.state.total_count)
            .unwrap_or(0)
    }

    fn processed_count(&self) -> u64 {
        self.engine
            .with_job(|job| job.record.state.processed_count)
            .unwrap_or(0)
    }

    fn processing_ms(&self) -> Millis {
        let now = self.now();
        self.engine
            .with_job(|job| job.record.processing_ms(now))
            .unwrap_or(0)
    }

    fn is_running(&self) -> bool {
        self.engine.with_job(|job| job.record.state.status) == Some(Status::Running)
    }

    fn log(&self, event: &str, fields: Value) {
        self.engine.log_job(event, fields);
    }

    async fn read(&self, keys: &[String]) -> Result<Values, StorageError> {
        self.engine.read(keys).await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<(String, Stored)>, StorageError> {
        IoCounters::bump(&self.engine.io.reads);
        let listed = self.engine.host.list(prefix, start_after, limit).await?;
        self.engine.count(|u| u.rows_read += listed.len() as u64);
        Ok(listed)
    }

    async fn delete(&self, keys: Vec<String>) -> Result<(), StorageError> {
        if keys.is_empty() {
            return Ok(());
        }
        IoCounters::bump(&self.engine.io.writes);
        self.engine.count(|u| u.rows_written += keys.len() as u64);
        self.engine.host.delete(&keys).await
    }

    async fn call(&self, provider: Provider, request: Outbound) -> Result<Answer, CallError> {
        let started = self.now();
        let path = request.path_for_logs().to_string();
        let timeout = provider.timeout_ms(&self.engine.config);
        let answer = self.engine.host.fetch(request, timeout).await;
        let (status, error) = match &answer {
            Ok(answer) => (Some(answer.status), None),
            Err(e) => (None, Some(e.to_string())),
        };
        self.engine.host.log(
            "provider.call",
            json!({
                "provider": provider.as_str(),
                "path": path,
                "status": status,
                "error": error,
                "ms": self.now().saturating_sub(started),
            }),
        );
        answer
    }

    async fn progress(&self, processed: u64, item: Option<String>) -> Result<(), StorageError> {
        self.engine.progress(processed, item).await
    }

    async fn checkpoint(&self, reason: &str) -> Result<(), StorageError> {
        self.engine.checkpoint(reason).await
    }

    fn item_result(&self, position: u64, message: ServerMessage) {
        if let Some(text) = self
            .engine
            .stamp_kept(&message, EventKind::Item { index: position })
        {
            self.engine.send_all(&text);
        }
    }
}
