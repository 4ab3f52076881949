//! The job's Durable Object: one instance per job id, driving the job through one alarm.
//!
//! Every entry point does the same thing: the constructor has loaded the job (events wait
//! for it), the handler asks [`JobRecord`] what an event means, performs the storage and
//! socket I/O that follows, and re-arms the alarm from the schedule.

use crate::config::Config;
use crate::error::ApiError;
use crate::ids::parse_job_id;
use crate::internal::{self, CreateJob};
use crate::job::record::{JobRecord, Lifetimes, RefreshOutcome};
use crate::job::schedule::{RetryOutcome, RetryPolicy, TaskKind};
use crate::job::throttle::{PersistDecision, SOCKET_MIN_INTERVAL_MS};
use crate::job::{JobError, Status};
use crate::pipelines::work::Work;
use crate::protocol::{
    self, classify_client_binary, parse_client_text, ClientMessage, CloseCode, ServerMessage,
    Violation,
};
use crate::runtime::http;
use crate::runtime::pipelines::{self, StepFailure, StepOutcome};
use crate::runtime::store::{self, IoCounters, WriteBatch};
use crate::time::Millis;
use crate::token::{self, RefreshError, TokenRecord, TokenSigner};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use worker::{
    durable_object, DurableObject, Env, Error, Method, Request, Response, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair, WebSocketRequestResponsePair,
};

/// Storage keys of the job's core and of its pipeline progress.
pub const CORE_KEY: &str = "core";
pub const WORK_KEY: &str = "work";

/// Sockets a job accepts at once; the next one is accepted and closed with 1013.
pub const MAX_SOCKETS: usize = 8;

const WS_OPEN: u16 = 1;

/// What the object remembers between events. Rebuilt from storage by the constructor after
/// every eviction.
#[derive(Default)]
struct Memory {
    job: Option<Job>,
    /// Set when stored data could not be read back; every request answers 500 rather than
    /// pretending the job does not exist.
    corrupt: Option<String>,
    coalescer: crate::job::throttle::SocketCoalescer,
    pipeline: pipelines::Cache,
}

#[derive(Clone)]
pub struct Job {
    pub record: JobRecord,
    pub work: Work,
}

/// The small per-socket attachment, kept across hibernation.
#[derive(Serialize, Deserialize, Default)]
struct SocketTag {
    #[serde(default)]
    reconnect: bool,
}

#[durable_object]
pub struct JobObject {
    state: State,
    config: Config,
    signer: TokenSigner,
    io: Rc<IoCounters>,
    mem: Rc<RefCell<Memory>>,
    /// The alarm time last set by this instance, to avoid redundant `setAlarm` calls.
    armed: Cell<Option<Millis>>,
}

impl DurableObject for JobObject {
    fn new(state: State, env: Env) -> Self {
        let config = http::config(&env);
        let mem = Rc::new(RefCell::new(Memory::default()));
        let io = Rc::new(IoCounters::default());
        let (memory, storage, counters) = (mem.clone(), state.storage(), io.clone());
        // Events wait until the job is in memory, so no handler ever sees a half-loaded job.
        let _loading = state.block_concurrency_while(async move {
            let batch = store::read(&storage, &counters, &[CORE_KEY, WORK_KEY]).await?;
            let loaded = match (
                batch.json::<JobRecord>(CORE_KEY),
                batch.json::<Work>(WORK_KEY),
            ) {
                (None, _) => Ok(None),
                (Some(Ok(record)), Some(Ok(work))) => Ok(Some(Job {
                    record: record.restored(),
                    work,
                })),
                (Some(Err(e)), _) | (_, Some(Err(e))) => Err(e),
                (Some(Ok(_)), None) => Err("work is missing".to_string()),
            };
            if let Ok(Some(job)) = &loaded {
                if !job.record.state.status.is_terminal() {
                    // The version skipped past what may have been sent unpersisted; store the
                    // new floor at once, so a second restart cannot hand out the same versions.
                    let mut batch = WriteBatch::default();
                    batch.json(CORE_KEY, &job.record);
                    store::write(&storage, &counters, batch).await?;
                }
            }
            let mut memory = memory.borrow_mut();
            match loaded {
                Ok(job) => memory.job = job,
                Err(e) => memory.corrupt = Some(e),
            }
            Ok(())
        });
        if let Ok(pair) =
            WebSocketRequestResponsePair::new(protocol::PING_TEXT, protocol::PONG_TEXT)
        {
            state.set_websocket_auto_response(&pair);
        }
        // Counted by the hibernation benchmark: a wake from hibernation constructs anew.
        http::log("object.constructed", json!({ "object": state.id().name() }));
        let signer = TokenSigner::new(config.token_signing_key.as_bytes());
        Self {
            state,
            config,
            signer,
            io,
            mem,
            armed: Cell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let path = req.path();
        let outcome = match (req.method(), path.as_str()) {
            (Method::Post, "/internal/create") => self.create(&mut req).await,
            (Method::Get, "/internal/state") => self.job_state(&req),
            (Method::Post, "/internal/refresh") => self.refresh(&mut req).await,
            (Method::Post, "/internal/cancel") => self.cancel_request(&req).await,
            (Method::Get, p) if p.starts_with("/internal/results/") => {
                self.results(&req, &p["/internal/results/".len()..]).await
            }
            (Method::Get, "/ws/progress") => self.upgrade(&req).await,
            _ => Err(ApiError::not_found("no such job operation")),
        };
        Ok(http::result(outcome))
    }

    async fn alarm(&self) -> worker::Result<Response> {
        self.armed.set(None);
        let now = http::now();
        let Some(due) = self.with_job(|job| job.record.schedule.due(now)) else {
            return Response::empty();
        };
        for kind in due {
            let still_due = self
                .with_job(|job| job.record.schedule.get(kind).is_some_and(|t| t.due <= now))
                .unwrap_or(false);
            if !still_due {
                continue;
            }
            self.log_job("task.run", json!({ "task": kind.as_str() }));
            match kind {
                TaskKind::Cleanup => {
                    self.cleanup().await?;
                    return Response::empty();
                }
                TaskKind::TokenExpiry => self.run_token_expiry(now),
                TaskKind::Start => self.run_start(now).await?,
                TaskKind::Process => self.run_process(now).await?,
                TaskKind::Flush => self.run_flush().await?,
            }
        }
        // Last, so that a failure above leaves the alarm to the platform's retries.
        self.sync_alarm().await?;
        Response::empty()
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let parsed = match message {
            WebSocketIncomingMessage::String(text) => parse_client_text(&text),
            WebSocketIncomingMessage::Binary(bytes) => Err(classify_client_binary(bytes.len())),
        };
        match parsed {
            Ok(ClientMessage::Ready) => self.on_ready(&ws).await,
            Ok(ClientMessage::Cancel) => {
                if let Err(err) = self.cancel(http::now()).await {
                    // Nothing to cancel (already ended): tell this client how it ended.
                    self.log_job("cancel.refused", json!({ "reason": err.message }));
                    self.send_final_to(&ws);
                }
                Ok(())
            }
            Ok(ClientMessage::Ping) => {
                let _ = ws.send_with_str(protocol::PONG_TEXT);
                Ok(())
            }
            Err(violation) => {
                self.refuse_message(&ws, &violation);
                Ok(())
            }
        }
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> worker::Result<()> {
        // Complete the closing handshake; echo the client's code unless it is one that must
        // never be sent on the wire.
        let code = u16::try_from(code)
            .ok()
            .filter(|c| is_sendable_close_code(*c))
            .unwrap_or(1000);
        let _ = ws.close(Some(code), Some("closing"));
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, error: Error) -> worker::Result<()> {
        self.log_job("socket.error", json!({ "error": error.to_string() }));
        Ok(())
    }
}

/// Codes a server may put in a close frame (RFC 6455 §7.4): never 1005, 1006 or 1015.
fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

impl JobObject {
    pub fn lifetimes(&self) -> Lifetimes {
        Lifetimes {
            token_ttl_ms: self.config.token_ttl_ms,
            refresh_window_ms: self.config.token_refresh_window_ms,
            ready_timeout_ms: self.config.ready_timeout_ms,
            results_ttl_ms: self.config.results_ttl_ms,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn storage(&self) -> worker::Storage {
        self.state.storage()
    }

    pub fn io(&self) -> &IoCounters {
        &self.io
    }

    /// Runs `f` on the loaded job, if there is one. The borrow ends before any await.
    pub fn with_job<R>(&self, f: impl FnOnce(&mut Job) -> R) -> Option<R> {
        self.mem.borrow_mut().job.as_mut().map(f)
    }

    /// Milliseconds since processing began, for a summary's `duration`.
    pub fn processing_ms(&self) -> Millis {
        let now = http::now();
        self.with_job(|job| job.record.processing_ms(now))
            .unwrap_or(0)
    }

    pub fn is_running(&self) -> bool {
        self.with_job(|job| job.record.state.status) == Some(Status::Running)
    }

    pub fn with_cache<R>(&self, f: impl FnOnce(&mut pipelines::Cache) -> R) -> R {
        f(&mut self.mem.borrow_mut().pipeline)
    }

    pub fn log_job(&self, event: &str, mut fields: Value) {
        if let (Some((id, pipeline)), Value::Object(map)) = (
            self.with_job(|j| (j.record.state.job_id.clone(), j.record.state.pipeline)),
            &mut fields,
        ) {
            map.insert("jobId".into(), json!(id));
            map.insert("pipeline".into(), json!(pipeline.as_str()));
        }
        http::log(event, fields);
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
        if let Err(refused) = &checked {
            // Counted by the security tests: every refusal that reached an object.
            let object = self.state.id().name();
            self.log_job(
                "auth.refused",
                json!({ "status": refused.status(), "object": object }),
            );
        }
        checked
    }

    // ---- creation -------------------------------------------------------------------------

    async fn create(&self, req: &mut Request) -> Result<Response, ApiError> {
        let body = req
            .bytes()
            .await
            .map_err(|e| http::internal("reading a create body", e))?;
        let (create, data) =
            internal::decode(&body).map_err(|e| http::internal("decoding a create body", e))?;
        if self.mem.borrow().job.is_some() {
            return Err(ApiError::conflict(format!(
                "job id {} is already taken",
                create.job_id
            )));
        }
        let now = http::now();
        let mut random = [0u8; token::RANDOM_BYTES];
        getrandom::fill(&mut random).map_err(|e| http::internal("drawing token randomness", e))?;
        let token = self.signer.issue(&create.job_id, random);
        let auth = TokenRecord::new(&token, now, self.config.token_ttl_ms);
        let mut record = JobRecord::create(
            &create.job_id,
            create.pipeline,
            create.total_count,
            auth,
            self.lifetimes(),
            now,
        );
        record.throttle_window_ms = pipelines::throttle_override(&create.work);

        let mut batch = WriteBatch::default();
        batch.json(CORE_KEY, &record).json(WORK_KEY, &create.work);
        let mut offset = 0;
        for blob in &create.blobs {
            batch.bytes(&blob.key, &data[offset..offset + blob.len]);
            offset += blob.len;
        }
        // Claimed before the write, so a concurrent create of the same id sees it at once.
        self.mem.borrow_mut().job = Some(Job {
            record,
            work: create.work.clone(),
        });
        if let Err(e) = store::write(&self.storage(), &self.io, batch).await {
            self.mem.borrow_mut().job = None;
            return Err(http::internal("storing a new job", e));
        }
        self.sync_alarm()
            .await
            .map_err(|e| http::internal("arming the alarm", e))?;
        self.log_job(
            "job.created",
            json!({ "bytes": data.len(), "totalCount": create.total_count }),
        );
        Ok(http::ok(
            202,
            &creation_answer(&create, &token, &self.config),
        ))
    }

    // ---- state, refresh, cancel, results ----------------------------------------------------

    fn job_state(&self, req: &Request) -> Result<Response, ApiError> {
        self.authorize(http::bearer(req).as_deref(), http::now())?;
        let state = self
            .with_job(|job| job.record.state.clone())
            .ok_or_else(|| ApiError::not_found("no such job"))?;
        Ok(http::ok(200, &state))
    }

    async fn refresh(&self, req: &mut Request) -> Result<Response, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Body {
            old_token: Option<String>,
        }
        let body: Body = req
            .json()
            .await
            .map_err(|_| ApiError::invalid("body must be JSON with oldToken"))?;
        self.require_job()?;
        let now = http::now();
        let mut random = [0u8; token::RANDOM_BYTES];
        getrandom::fill(&mut random).map_err(|e| http::internal("drawing token randomness", e))?;
        let (job_id, new_token, before) = self
            .with_job(|job| {
                let id = job.record.state.job_id.clone();
                let new_token = self.signer.issue(&id, random);
                (
                    id,
                    new_token,
                    (job.record.auth.clone(), job.record.schedule.clone()),
                )
            })
            .ok_or_else(|| ApiError::not_found("no such job"))?;
        let expected_old_hash = before.0.hash.clone();
        // The check and the swap happen in one synchronous step, so of N concurrent refreshes
        // exactly one wins; the others see the new hash and get 401.
        let outcome = self
            .with_job(|job| {
                job.record
                    .refresh(body.old_token.as_deref(), &new_token, self.lifetimes(), now)
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
        // Written as a storage transaction that re-checks the stored hash, so the swap is
        // compare-and-set on disk too, also across an eviction between events.
        let record = self
            .with_job(|job| job.record.clone())
            .ok_or_else(|| ApiError::not_found("no such job"))?;
        let stored =
            serde_json::to_string(&record).map_err(|e| http::internal("encoding the job", e))?;
        let swapped = Rc::new(Cell::new(false));
        let swapped_in_txn = swapped.clone();
        let result = self
            .storage()
            .transaction(move |txn| async move {
                let current: String = txn.get(CORE_KEY).await?;
                let current: JobRecord =
                    serde_json::from_str(&current).map_err(|e| Error::RustError(e.to_string()))?;
                if current.auth.hash != expected_old_hash {
                    txn.rollback()?;
                    return Ok(());
                }
                txn.put(CORE_KEY, stored).await?;
                swapped_in_txn.set(true);
                Ok(())
            })
            .await;
        self.io.writes.set(self.io.writes.get() + 1);
        if result.is_err() || !swapped.get() {
            // The new token was never handed out: put the old credential back, so the client
            // can try again with it.
            let new_hash = token::hash(&new_token);
            self.with_job(|job| {
                if job.record.auth.hash == new_hash {
                    (job.record.auth, job.record.schedule) = before;
                }
            });
        }
        if let Err(e) = result {
            return Err(http::internal("storing a refreshed token", e));
        }
        if !swapped.get() {
            return Err(ApiError::auth("invalid token"));
        }
        self.sync_alarm()
            .await
            .map_err(|e| http::internal("arming the alarm", e))?;
        self.log_job("token.refreshed", json!({}));
        Ok(http::ok(
            200,
            &json!({ "jobId": job_id, "token": new_token, "expiresIn": self.config.token_ttl_ms / 1_000 }),
        ))
    }

    async fn cancel_request(&self, req: &Request) -> Result<Response, ApiError> {
        let now = http::now();
        self.authorize(http::bearer(req).as_deref(), now)?;
        self.cancel(now).await?;
        let job_id = self
            .with_job(|job| job.record.state.job_id.clone())
            .unwrap_or_default();
        Ok(http::ok(
            200,
            &json!({ "jobId": job_id, "status": "canceled" }),
        ))
    }

    /// Cancels a queued or running job: persisted at once, sockets closed 1001, and no work
    /// beyond a chunk already in flight (its results are discarded when it returns).
    async fn cancel(&self, now: Millis) -> Result<(), ApiError> {
        let lifetimes = self.lifetimes();
        self.with_job(|job| job.record.cancel(lifetimes, now))
            .ok_or_else(|| ApiError::not_found("no such job"))?
            .map_err(|e| ApiError::conflict(e.to_string()))?;
        self.checkpoint("cancel")
            .await
            .map_err(|e| http::internal("storing a cancel", e))?;
        self.close_all(CloseCode::JobCanceled, CloseCode::JobCanceled.reason());
        self.sync_alarm()
            .await
            .map_err(|e| http::internal("arming the alarm", e))?;
        self.log_job("job.canceled", self.io.snapshot());
        Ok(())
    }

    async fn results(&self, req: &Request, segment: &str) -> Result<Response, ApiError> {
        self.authorize(http::bearer(req).as_deref(), http::now())?;
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
        let results = pipelines::results(self).await?;
        Ok(http::ok(200, &results))
    }

    // ---- sockets ------------------------------------------------------------------------------

    async fn upgrade(&self, req: &Request) -> Result<Response, ApiError> {
        if !http::header(req, "upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
            return Err(ApiError::new(
                crate::error::ErrorCode::UpgradeRequired,
                "expected Upgrade: websocket",
            ));
        }
        let url = req
            .url()
            .map_err(|e| http::internal("reading the upgrade URL", e))?;
        let mut token = None;
        let mut reconnect = false;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "token" => token = Some(value.into_owned()),
                "reconnect" => reconnect = value == "true" || value == "1",
                _ => {}
            }
        }
        self.authorize(token.as_deref(), http::now())?;
        let open_before = self.open_sockets().len();
        let pair = WebSocketPair::new().map_err(|e| http::internal("creating a socket pair", e))?;
        self.state.accept_web_socket(&pair.server);
        let _ = pair.server.serialize_attachment(SocketTag { reconnect });
        if open_before >= MAX_SOCKETS {
            let code = CloseCode::TooManySockets;
            let _ = pair.server.close(Some(code.code()), Some(code.reason()));
            self.log_job("socket.refused", json!({ "open": open_before }));
        } else {
            self.log_job(
                "socket.accepted",
                json!({ "open": open_before + 1, "reconnect": reconnect }),
            );
        }
        Response::from_websocket(pair.client).map_err(|e| http::internal("answering an upgrade", e))
    }

    pub fn open_sockets(&self) -> Vec<WebSocket> {
        self.state
            .get_websockets()
            .into_iter()
            .filter(|ws| AsRef::<worker::web_sys::WebSocket>::as_ref(ws).ready_state() == WS_OPEN)
            .collect()
    }

    fn encode(&self, message: &ServerMessage) -> Option<String> {
        let now = http::now();
        self.with_job(|job| {
            message.encode(&job.record.state.job_id, job.record.state.pipeline, now)
        })
    }

    pub fn broadcast(&self, message: &ServerMessage) {
        if let Some(text) = self.encode(message) {
            for ws in self.open_sockets() {
                // A socket that is going away is not an error for the job.
                let _ = ws.send_with_str(&text);
            }
        }
    }

    fn send_to(&self, ws: &WebSocket, message: &ServerMessage) {
        if let Some(text) = self.encode(message) {
            let _ = ws.send_with_str(&text);
        }
    }

    fn close_all(&self, code: CloseCode, reason: &str) {
        for ws in self.open_sockets() {
            let _ = ws.close(Some(code.code()), Some(protocol::close_reason(reason)));
        }
    }

    fn refuse_message(&self, ws: &WebSocket, violation: &Violation) {
        let code = violation.close_code();
        self.log_job(
            "socket.violation",
            json!({ "close": code.code(), "reason": violation.reason() }),
        );
        let _ = ws.close(Some(code.code()), Some(violation.reason()));
    }

    /// Sends an ended job's last word to one socket and closes it as the job ended.
    fn send_final_to(&self, ws: &WebSocket) {
        let Some(ending) = self
            .with_job(|job| ServerMessage::final_for(&job.record.state))
            .flatten()
        else {
            return;
        };
        let (message, code) = ending;
        if let Some(message) = message {
            self.send_to(ws, &message);
        }
        let _ = ws.close(Some(code.code()), Some(code.reason()));
    }

    async fn on_ready(&self, ws: &WebSocket) -> worker::Result<()> {
        let now = http::now();
        let reconnect = ws
            .deserialize_attachment::<SocketTag>()
            .ok()
            .flatten()
            .unwrap_or_default()
            .reconnect;
        let Some((status, snapshot)) = self.with_job(|job| {
            (
                job.record.state.status,
                ServerMessage::reconnected(&job.record.state),
            )
        }) else {
            // The job was cleaned up under this socket.
            let _ = ws.close(
                Some(CloseCode::JobCanceled.code()),
                Some("job no longer exists"),
            );
            return Ok(());
        };
        self.send_to(ws, &ServerMessage::ReadyAck);
        if status != Status::Queued || reconnect {
            self.send_to(ws, &snapshot);
        }
        if status.is_terminal() {
            self.send_final_to(ws);
            return Ok(());
        }
        if self
            .with_job(|job| job.record.on_ready(now))
            .unwrap_or(false)
        {
            // Stored, so that an eviction before the alarm fires still starts the job now.
            self.write_core(WriteBatch::default()).await?;
            self.sync_alarm().await?;
        }
        Ok(())
    }

    // ---- timed work ---------------------------------------------------------------------------

    /// Arms the single alarm at the schedule's earliest task, or removes it when none remain.
    pub async fn sync_alarm(&self) -> worker::Result<()> {
        let next = self
            .with_job(|job| job.record.schedule.next_alarm())
            .flatten();
        if next == self.armed.get() {
            return Ok(());
        }
        match next {
            Some(at) => store::set_alarm(&self.storage(), &self.io, at).await?,
            None => self.storage().delete_alarm().await?,
        }
        self.armed.set(next);
        Ok(())
    }

    fn run_token_expiry(&self, now: Millis) {
        if self
            .with_job(|job| job.record.token_expired(now))
            .unwrap_or(false)
        {
            self.close_all(CloseCode::TokenExpired, CloseCode::TokenExpired.reason());
            self.log_job("token.expired", json!({}));
        }
    }

    async fn run_start(&self, now: Millis) -> worker::Result<()> {
        if self.with_job(|job| job.record.state.status) != Some(Status::Queued) {
            self.with_job(|job| job.record.schedule.remove(TaskKind::Start));
            return Ok(());
        }
        let total = match pipelines::prepare(self).await {
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
        self.checkpoint("start").await?;
        self.broadcast(&ServerMessage::JobStarted {
            total_count: total,
            estimated_duration_ms: None,
        });
        self.log_job("job.started", json!({ "totalCount": total }));
        Ok(())
    }

    async fn run_process(&self, now: Millis) -> worker::Result<()> {
        // Held progress from the previous chunk goes out before new work begins.
        self.flush_progress(now);
        let attempt = self
            .with_job(|job| {
                job.record
                    .schedule
                    .get(TaskKind::Process)
                    .map_or(0, |t| t.attempts)
            })
            .unwrap_or(0);
        let last_attempt = attempt + 1 >= self.retry_policy().max_attempts;
        let outcome = pipelines::step(self, attempt, last_attempt).await?;
        let now = http::now();
        if self.with_job(|job| job.record.state.status) != Some(Status::Running) {
            // Canceled (or ended) while the chunk was in flight: its results are dropped.
            return Ok(());
        }
        match outcome {
            Ok(StepOutcome::Continue { delay_ms }) => {
                let held = self.flush_progress(now);
                // A report that had to wait for the socket spacing goes out first thing in
                // the next chunk, so the next chunk waits no longer than that spacing.
                let wait = if held {
                    self.progress_spacing_ms() / 2
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
            Ok(StepOutcome::Done { summary }) => {
                if self.flush_progress(now) {
                    // The last chunk's report is still held: come back once the spacing
                    // allows it, so no chunk goes unreported (the step is idempotent when done).
                    let wait = self.progress_spacing_ms() / 2;
                    self.with_job(|job| job.record.schedule.set(TaskKind::Process, now + wait));
                    return Ok(());
                }
                self.complete(summary, now).await
            }
            Err(failure) => self.handle_failure(TaskKind::Process, failure, now).await,
        }
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            base_ms: self.config.task_retry_base_ms,
            ..RetryPolicy::DEFAULT
        }
    }

    /// A task failed: retried with backoff while attempts remain (counted in storage), else
    /// the job fails.
    async fn handle_failure(
        &self,
        kind: TaskKind,
        failure: StepFailure,
        now: Millis,
    ) -> worker::Result<()> {
        let error = match failure {
            StepFailure::Permanent(error) => error,
            StepFailure::Transient { code, message } => {
                let policy = self.retry_policy();
                let outcome = self.with_job(|job| job.record.schedule.retry(kind, now, policy));
                match outcome {
                    Some(RetryOutcome::RetryAt { due, attempts }) => {
                        self.log_job("task.retry", json!({ "task": kind.as_str(), "attempts": attempts, "due": due, "error": message }));
                        // The attempt count must survive an eviction.
                        return self.write_core(WriteBatch::default()).await;
                    }
                    Some(RetryOutcome::Exhausted { attempts }) => JobError {
                        code: code.into(),
                        message: format!("{message} (gave up after {attempts} attempts)"),
                        retryable: true,
                    },
                    None => return Ok(()),
                }
            }
        };
        self.fail(error, now).await
    }

    async fn run_flush(&self) -> worker::Result<()> {
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

    async fn cleanup(&self) -> worker::Result<()> {
        self.close_all(CloseCode::JobCanceled, "job deleted");
        self.log_job("job.cleaned", self.io.snapshot());
        let storage = self.storage();
        storage.delete_all().await?;
        storage.delete_alarm().await?;
        self.io.writes.set(self.io.writes.get() + 1);
        self.armed.set(None);
        let mut memory = self.mem.borrow_mut();
        memory.job = None;
        memory.pipeline = pipelines::Cache::default();
        Ok(())
    }

    // ---- progress and endings -------------------------------------------------------------

    fn progress_spacing_ms(&self) -> Millis {
        self.with_job(|job| pipelines::coalesce_override(&job.work))
            .flatten()
            .unwrap_or(SOCKET_MIN_INTERVAL_MS)
    }

    /// Records one progress update: sent to sockets at once (coalesced), and written to
    /// storage, with the pipeline's buffered results, when the throttle policy says so.
    pub async fn progress(
        &self,
        processed: u64,
        current_item: Option<String>,
    ) -> worker::Result<()> {
        let now = http::now();
        let spacing = self.progress_spacing_ms();
        let update = self.with_job(|job| job.record.progress(processed, current_item, now));
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
    fn flush_progress(&self, now: Millis) -> bool {
        let spacing = self.progress_spacing_ms();
        let send = self.mem.borrow_mut().coalescer.flush(spacing, now);
        if send {
            if let Some(message) = self.with_job(|job| ServerMessage::progress(&job.record.state)) {
                self.broadcast(&message);
            }
        }
        self.mem.borrow().coalescer.is_holding()
    }

    /// Writes the core, the pipeline's progress and the results it buffered since the last
    /// checkpoint, in one operation.
    pub async fn checkpoint(&self, reason: &str) -> worker::Result<()> {
        self.with_job(|job| job.record.persisted());
        let pending = pipelines::take_pending(self);
        self.write_core(pending).await?;
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

    async fn write_core(&self, mut batch: WriteBatch) -> worker::Result<()> {
        let Some((record, work)) = self.with_job(|job| (job.record.clone(), job.work.clone()))
        else {
            return Ok(());
        };
        batch.json(CORE_KEY, &record).json(WORK_KEY, &work);
        let written = store::write(&self.storage(), &self.io, batch).await;
        if let Err(e) = &written {
            // Memory is now ahead of storage (buffered results went into the failed write):
            // reset the object so that the next event rebuilds it from the last checkpoint.
            self.log_job("storage.write_failed", json!({ "error": e.to_string() }));
            self.abort("a storage write failed");
        }
        written
    }

    /// Resets this object instance with the runtime's `ctx.abort()`, which workers-rs does
    /// not wrap.
    fn abort(&self, reason: &str) {
        use worker::js_sys::{Function, Reflect};
        use worker::wasm_bindgen::{JsCast, JsValue};
        let raw = self.state.as_raw();
        if let Ok(abort) = Reflect::get(raw, &JsValue::from_str("abort")) {
            if let Some(abort) = abort.dyn_ref::<Function>() {
                let _ = abort.call1(raw, &JsValue::from_str(reason));
            }
        }
    }

    async fn complete(&self, summary: Value, now: Millis) -> worker::Result<()> {
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
        Ok(())
    }

    pub async fn fail(&self, error: JobError, now: Millis) -> worker::Result<()> {
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
        Ok(())
    }

    /// Persists an ended job, then tells every socket how it ended and closes it.
    async fn finish(&self) -> worker::Result<()> {
        self.checkpoint("end").await?;
        if let Some((message, code)) = self
            .with_job(|job| ServerMessage::final_for(&job.record.state))
            .flatten()
        {
            if let Some(message) = message {
                self.broadcast(&message);
            }
            self.close_all(code, code.reason());
        }
        pipelines::after_end(self).await
    }
}

/// The 202 body of every creation route.
fn creation_answer(create: &CreateJob, token: &str, config: &Config) -> Value {
    json!({
        "jobId": create.job_id,
        "token": token,
        "expiresIn": config.token_ttl_ms / 1_000,
        "pipeline": create.pipeline.as_str(),
        "websocketUrl": format!("/ws/progress?jobId={}&token={}", create.job_id, token),
    })
}

/// Addresses the object of a job id that the caller has already validated.
pub fn stub_for(env: &Env, job_id: &str) -> Result<worker::Stub, ApiError> {
    debug_assert!(parse_job_id(job_id).is_some());
    let namespace = env
        .durable_object("JOBS")
        .map_err(|e| http::internal("binding JOBS", e))?;
    namespace
        .id_from_name(job_id)
        .and_then(|id| id.get_stub())
        .map_err(|e| http::internal("addressing the job object", e))
}
