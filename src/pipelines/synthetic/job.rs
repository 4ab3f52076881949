//! The synthetic pipeline as a job: it reports N items through the same machinery as real work.

use super::{chunk, item_label, summary, SyntheticResults, SyntheticSpec};
use crate::host::{Batch, StorageError};
use crate::job::throttle::PersistPolicy;
use crate::job::Pipeline as Kind;
use crate::pipeline::{Attempt, Ctx, Pipeline, ResultsPage, StepFailure, StepOutcome};
use crate::results::PageRequest;
use crate::time::Millis;
use serde_json::Value;

#[derive(Debug, Default)]
pub struct SyntheticJob;

fn spec(ctx: &impl Ctx<SyntheticSpec>) -> Result<SyntheticSpec, StepFailure> {
    ctx.with_work(|spec| spec.clone())
        .ok_or_else(|| StepFailure::internal("the synthetic spec is missing"))
}

impl Pipeline for SyntheticJob {
    type Work = SyntheticSpec;

    async fn prepare(&self, ctx: &impl Ctx<SyntheticSpec>) -> Result<u64, StepFailure> {
        Ok(spec(ctx)?.items)
    }

    async fn step(
        &self,
        ctx: &impl Ctx<SyntheticSpec>,
        attempt: Attempt,
    ) -> Result<StepOutcome, StepFailure> {
        let spec = spec(ctx)?;
        // Failures are injected only into runs that have items to process; a run that merely
        // confirms the end (after a held progress report) always succeeds.
        if ctx.processed_count() < spec.items && attempt.failed_before < spec.fail_first_attempts {
            return Err(StepFailure::provider(
                format!("synthetic failure on attempt {}", attempt.failed_before + 1),
                None,
            ));
        }
        for item in chunk(&spec, ctx.processed_count()) {
            ctx.progress(item, Some(item_label(item, spec.items)))
                .await?;
        }
        if ctx.processed_count() >= spec.items {
            return Ok(StepOutcome::Done);
        }
        Ok(StepOutcome::Continue {
            delay_ms: spec.chunk_delay_ms,
        })
    }

    async fn summary(&self, ctx: &impl Ctx<SyntheticSpec>) -> Result<Value, StepFailure> {
        Ok(summary(&spec(ctx)?, ctx.processing_ms()))
    }

    async fn results(
        &self,
        ctx: &impl Ctx<SyntheticSpec>,
        _page: PageRequest,
    ) -> Result<ResultsPage, StorageError> {
        let items = ctx.with_work(|spec| spec.items).unwrap_or(0);
        Ok(ResultsPage::whole(
            serde_json::to_value(SyntheticResults { items }).unwrap_or_default(),
        ))
    }

    async fn after_end(&self, _ctx: &impl Ctx<SyntheticSpec>) -> Result<(), StorageError> {
        Ok(())
    }

    fn drain_pending(&self, _work: &mut SyntheticSpec, _batch: &mut Batch) {}

    /// Tests shorten the time window to watch a flush happen.
    fn persist_policy(&self, spec: &SyntheticSpec, kind: Kind) -> PersistPolicy {
        let policy = PersistPolicy::for_pipeline(kind);
        match spec.throttle_ms {
            Some(every_ms) => PersistPolicy { every_ms, ..policy },
            None => policy,
        }
    }

    /// The fan-out benchmark sends every update (0) to measure delivery.
    fn progress_spacing_ms(&self, spec: &SyntheticSpec) -> Millis {
        spec.coalesce_ms
            .unwrap_or(crate::job::throttle::SOCKET_MIN_INTERVAL_MS)
    }
}
