//! The requests a job's object answers: creation, state, token refresh, cancel and results.

use super::dispatch::{with_pipeline, Pipelines};
use super::{Engine, Job, Reply};
use crate::answers::{CancelJobData, CreateJobData, TokenRefreshData};
use crate::error::ApiError;
use crate::host::{Batch, Host, Stored};
use crate::internal::{CreateJob, FrameReader};
use crate::job::record::{JobRecord, RefreshOutcome};
use crate::job::Status;
use crate::keys;
use crate::pipeline::Pipeline;
use crate::protocol::CloseCode;
use crate::results::{CursorSigner, PageQuery, Paged};
use crate::time::Millis;
use crate::token::{self, RefreshError, TokenRecord};
use serde::Deserialize;
use serde_json::{json, Value};
use std::rc::Rc;

/// How long inputs stored ahead of a creation's last write may wait for it: past this, an
/// object that never became a job (it died mid-upload) deletes them.
pub const ORPHAN_INPUTS_GRACE_MS: Millis = 10 * 60 * 1_000;

/// The 202 body of every creation route, with the token's remaining lifetime.
fn creation_answer(create: &CreateJob, token: &str, expires_in_ms: Millis) -> Value {
    to_data(CreateJobData::new(
        &create.job_id,
        create.pipeline,
        token,
        expires_in_ms,
    ))
}

/// An answer's `data` as the engine replies it; our answer types always serialize.
fn to_data(data: impl serde::Serialize) -> Value {
    serde_json::to_value(data).unwrap_or(Value::Null)
}

impl<H: Host> Engine<H> {
    fn new_token(&self, job_id: &str) -> Result<String, ApiError> {
        let mut random = [0u8; token::RANDOM_BYTES];
        self.host
            .fill_random(&mut random)
            .map_err(|e| self.internal("drawing token randomness", e))?;
        Ok(self.signer.issue(job_id, random))
    }

    /// Creates the job from a whole creation message (see [`Engine::create_from`]).
    pub async fn create(&self, body: &[u8]) -> Reply {
        let chunks = futures::stream::iter([Ok::<_, String>(body.to_vec())]);
        self.create_from(chunks).await
    }

    /// Creates the job from the Worker's creation message, read as it arrives: the header,
    /// then each input blob. Every blob but the last is stored as soon as it is complete, so
    /// the object holds one blob (at most 1 MiB) of a 33 MiB batch at a time, not the whole;
    /// the last goes with the job's core and work in one write, which is what makes the job
    /// exist. Inputs stored before a creation that then fails are deleted; if the object dies
    /// first, the alarm armed before the first of them deletes them
    /// ([`ORPHAN_INPUTS_GRACE_MS`]).
    pub async fn create_from<S>(&self, body: S) -> Reply
    where
        S: futures::Stream<Item = Result<Vec<u8>, String>> + Unpin,
    {
        let mut frame = FrameReader::new(body);
        let create = frame
            .header()
            .await
            .map_err(|e| self.internal("decoding a create body", e))?;
        if self.mem.borrow().job.is_some() {
            return self.repeat(&create).await;
        }
        let now = self.now();
        let token = match &create.idempotency {
            Some(request) => self.signer.issue_for_request(&create.job_id, request),
            None => self.new_token(&create.job_id)?,
        };
        let auth = TokenRecord::new(&token, now, self.config.token_ttl_ms);
        let mut record = JobRecord::create(
            &create.job_id,
            create.pipeline,
            create.total_count,
            auth,
            self.lifetimes(),
            now,
        );
        record.idempotency = create.idempotency.clone();
        record.usage = self.usage.take();
        // Claimed before the first await on the body, so a concurrent create of the same id
        // sees it at once.
        *self.pipeline.borrow_mut() = Some(Rc::new(Pipelines::for_work(&create.work)));
        self.mem.borrow_mut().job = Some(Job {
            record: record.clone(),
            work: create.work.clone(),
        });
        let mut stored_early = Vec::new();
        let outcome = self
            .store_new_job(&create, &record, &mut frame, &mut stored_early)
            .await;
        if let Err(e) = outcome {
            self.mem.borrow_mut().job = None;
            *self.pipeline.borrow_mut() = None;
            // Best effort: what stays is deleted by the alarm armed before it was stored.
            let _ = self.host.delete(&stored_early).await;
            return Err(e);
        }
        self.sync_alarm()
            .await
            .map_err(|e| self.internal("arming the alarm", e))?;
        let bytes: usize = create.blobs.iter().map(|b| b.len).sum();
        self.log_job(
            "job.created",
            json!({ "bytes": bytes, "totalCount": create.total_count }),
        );
        Ok((
            202,
            creation_answer(&create, &token, self.config.token_ttl_ms),
        ))
    }

    /// Reads a creation's blobs and stores them with the job's core and work (see
    /// [`Engine::create_from`]); `stored_early` names what was stored before the last write.
    async fn store_new_job<S>(
        &self,
        create: &CreateJob,
        record: &JobRecord,
        frame: &mut FrameReader<S>,
        stored_early: &mut Vec<String>,
    ) -> Result<(), ApiError>
    where
        S: futures::Stream<Item = Result<Vec<u8>, String>> + Unpin,
    {
        let mut batch = Batch::default();
        batch
            .json(keys::CORE, record)
            .json(keys::WORK, &create.work);
        let last = create.blobs.len().saturating_sub(1);
        for (n, blob) in create.blobs.iter().enumerate() {
            let bytes = frame
                .take(blob.len)
                .await
                .map_err(|e| self.internal("reading a create body", e))?;
            if let Some(pipeline) = self.pipeline.borrow().as_ref() {
                pipeline.input_received(&create.work, &blob.key, &bytes);
            }
            if n == last {
                batch.bytes(&blob.key, bytes);
                continue;
            }
            if stored_early.is_empty() {
                let at = self.now() + ORPHAN_INPUTS_GRACE_MS;
                self.count(|u| u.alarm_sets += 1);
                self.host
                    .set_alarm(Some(at))
                    .await
                    .map_err(|e| self.internal("arming the orphan alarm", e))?;
                self.armed.set(Some(at));
            }
            let mut one = Batch::default();
            one.bytes(&blob.key, bytes);
            stored_early.push(blob.key.clone());
            self.write(one)
                .await
                .map_err(|e| self.internal("storing a job's input", e))?;
        }
        frame
            .end()
            .await
            .map_err(|e| self.internal("reading a create body", e))?;
        self.write(batch)
            .await
            .map_err(|e| self.internal("storing a new job", e))
    }

    /// A creation for a job id that is taken: the repeat of the request that created it (the
    /// same `Idempotency-Key` and request) answers as the first did, with its token, or with a
    /// new one replacing it when a refresh has replaced that; anything else is 409. A repeat
    /// stores nothing of its own.
    async fn repeat(&self, create: &CreateJob) -> Reply {
        let Some((stored, pipeline, expires_at)) = self.with_job(|job| {
            (
                job.record.idempotency.clone(),
                job.record.state.pipeline,
                job.record.auth.expires_at,
            )
        }) else {
            return Err(ApiError::not_found("no such job"));
        };
        let request = match (&stored, &create.idempotency) {
            (Some(stored), Some(request)) if stored == request && pipeline == create.pipeline => {
                request
            }
            (_, Some(_)) => {
                return Err(ApiError::conflict(
                    "this Idempotency-Key was already used for a different request",
                ))
            }
            (_, None) => {
                return Err(ApiError::conflict(format!(
                    "job id {} is already taken",
                    create.job_id
                )))
            }
        };
        let now = self.now();
        let mut token = self.signer.issue_for_request(&create.job_id, request);
        let mut expires_at = expires_at;
        let current = self
            .with_job(|job| job.record.auth.hash == token::hash(&token))
            .unwrap_or(false);
        if !current {
            // A refresh replaced the first token; the repeat gets a new one in its place.
            token = self.new_token(&create.job_id)?;
            let lifetimes = self.lifetimes();
            self.with_job(|job| job.record.replace_token(&token, lifetimes, now));
            self.write_core(Batch::default())
                .await
                .map_err(|e| self.internal("storing a replaced token", e))?;
            self.sync_alarm()
                .await
                .map_err(|e| self.internal("arming the alarm", e))?;
            expires_at = now + self.config.token_ttl_ms;
        }
        self.log_job("job.repeated", json!({ "newToken": !current }));
        let answer = creation_answer(create, &token, expires_at.saturating_sub(now));
        Ok((202, answer))
    }

    pub fn state(&self, token: Option<&str>) -> Reply {
        self.authorize(token, self.now())?;
        let state = self
            .with_job(|job| job.record.state.clone())
            .ok_or_else(|| ApiError::not_found("no such job"))?;
        Ok((200, serde_json::to_value(state).unwrap_or(Value::Null)))
    }

    /// Swaps the token for a new one inside the refresh window. The check and the swap happen
    /// in one synchronous step, so of N concurrent refreshes exactly one wins, and the write
    /// re-checks the stored hash, so that holds across an eviction too.
    pub async fn refresh(&self, body: &[u8]) -> Reply {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Body {
            old_token: Option<String>,
        }
        let body: Body = serde_json::from_slice(body)
            .map_err(|_| ApiError::invalid("body must be JSON with oldToken"))?;
        self.require_job()?;
        let now = self.now();
        let (job_id, before) = self
            .with_job(|job| {
                let id = job.record.state.job_id.clone();
                (id, (job.record.auth.clone(), job.record.schedule.clone()))
            })
            .ok_or_else(|| ApiError::not_found("no such job"))?;
        let new_token = self.new_token(&job_id)?;
        let expected_old_hash = before.0.hash.clone();
        let lifetimes = self.lifetimes();
        let outcome = self
            .with_job(|job| {
                job.record
                    .refresh(body.old_token.as_deref(), &new_token, lifetimes, now)
            })
            .ok_or_else(|| ApiError::not_found("no such job"))?;
        match outcome {
            RefreshOutcome::Refused(RefreshError::Auth(e)) => {
                return Err(ApiError::auth(e.message()))
            }
            RefreshOutcome::Refused(RefreshError::TooEarly { retry_after_secs }) => {
                return Err(ApiError::conflict(format!(
                    "token refresh opens in the last {} s of its lifetime",
                    self.config.token_refresh_window_ms / 1_000
                ))
                .with_details(json!({ "retryAfterSecs": retry_after_secs })));
            }
            RefreshOutcome::Refreshed => {}
        }
        // The swap reads the stored core and writes the new one.
        self.count(|u| {
            u.rows_read += 1;
            u.rows_written += 1;
        });
        let record = self
            .with_job(|job| {
                self.settle_usage(job);
                job.record.clone()
            })
            .ok_or_else(|| ApiError::not_found("no such job"))?;
        let stored =
            serde_json::to_string(&record).map_err(|e| self.internal("encoding the job", e))?;
        let still_old = Box::new(move |current: Option<&Stored>| {
            current
                .and_then(|v| v.json::<JobRecord>().ok())
                .is_some_and(|current| current.auth.hash == expected_old_hash)
        });
        super::IoCounters::bump(&self.io.writes);
        let swapped = self
            .host
            .put_if(keys::CORE, still_old, Stored::Text(stored))
            .await;
        if !matches!(swapped, Ok(true)) {
            // The new token was never handed out: put the old credential back, so the client
            // can try again with it.
            let new_hash = token::hash(&new_token);
            self.with_job(|job| {
                if job.record.auth.hash == new_hash {
                    (job.record.auth, job.record.schedule) = before;
                }
            });
        }
        match swapped {
            Err(e) => return Err(self.internal("storing a refreshed token", e)),
            Ok(false) => return Err(ApiError::auth("invalid token")),
            Ok(true) => {}
        }
        self.sync_alarm()
            .await
            .map_err(|e| self.internal("arming the alarm", e))?;
        self.log_job("token.refreshed", json!({}));
        Ok((
            200,
            to_data(TokenRefreshData {
                job_id,
                token: new_token,
                expires_in: self.config.token_ttl_ms / 1_000,
            }),
        ))
    }

    pub async fn cancel_request(&self, token: Option<&str>) -> Reply {
        let now = self.now();
        self.authorize(token, now)?;
        self.cancel(now).await?;
        let job_id = self
            .with_job(|job| job.record.state.job_id.clone())
            .unwrap_or_default();
        Ok((200, to_data(CancelJobData::new(job_id))))
    }

    /// Cancels a queued or running job: persisted at once, sockets closed 1001, and no work
    /// beyond a step already in flight, which the alarm abandons when it sees the cancel.
    pub(super) async fn cancel(&self, now: Millis) -> Result<(), ApiError> {
        let lifetimes = self.lifetimes();
        self.with_job(|job| job.record.cancel(lifetimes, now))
            .ok_or_else(|| ApiError::not_found("no such job"))?
            .map_err(|e| ApiError::conflict(e.to_string()))?;
        self.checkpoint("cancel")
            .await
            .map_err(|e| self.internal("storing a cancel", e))?;
        self.close_all(CloseCode::JobCanceled, CloseCode::JobCanceled.reason());
        self.sync_alarm()
            .await
            .map_err(|e| self.internal("arming the alarm", e))?;
        self.release_lingering().await;
        self.log_job("job.canceled", self.io.snapshot());
        self.log_cost("canceled");
        Ok(())
    }

    /// A page of the results of a complete job, from the pipeline named by `segment`, with a
    /// `nextCursor` when entries remain (contract 9.2).
    pub async fn results(&self, token: Option<&str>, segment: &str, query: &PageQuery) -> Reply {
        self.authorize(token, self.now())?;
        let (status, pipeline) = self
            .with_job(|job| (job.record.state.status, job.record.state.pipeline))
            .ok_or_else(|| ApiError::not_found("no such job"))?;
        if pipeline.results_segment() != segment {
            return Err(ApiError::not_found(format!(
                "this job is a {} job",
                pipeline.as_str()
            )));
        }
        if status != Status::Complete {
            return Err(ApiError::not_found(format!(
                "results are not ready: the job is {}",
                status.as_str()
            )));
        }
        let job_id = self
            .with_job(|job| job.record.state.job_id.clone())
            .unwrap_or_default();
        let cursors = CursorSigner::new(
            self.config.token_signing_key.as_bytes(),
            pipeline.results_segment(),
        );
        let page = query.page(&cursors, &job_id)?;
        let pipelines = self
            .pipelines()
            .ok_or_else(|| ApiError::not_found("no such job"))?;
        let page = with_pipeline!(self, &*pipelines, |p, ctx| p.results(&ctx, page).await)
            .map_err(|e| self.internal("reading results", e))?;
        let paged = Paged {
            page: page.document,
            next_cursor: page.next.map(|next| cursors.seal(&job_id, next)),
        };
        Ok((200, to_data(paged)))
    }
}
