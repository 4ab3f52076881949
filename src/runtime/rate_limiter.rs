//! The per-client rate limiter: one small Durable Object per client (an IPv4 address, or an
//! IPv6 /48 with all its /64s), exact across the edge.
//!
//! Cloudflare's Rate Limiting binding would be cheaper, but it only answers allowed or not;
//! the contract's `Retry-After` needs to know when the window frees up, which a sliding log
//! kept in one object per client knows exactly. Keying IPv6 objects by /48 lets one round
//! trip check the /64 and the /48 together, and count a request in both or in neither.

use crate::host::{Batch, Stored};
use crate::rate_limit::{self, Bucket, Ledger, Refusal, Scope, Window};
use crate::runtime::http;
use crate::runtime::store;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use worker::{
    durable_object, DurableObject, Env, Error, Request, RequestInit, Response, State, WebSocket,
    WebSocketIncomingMessage,
};

/// Each window is stored under this prefix and its [`Ledger::window_key`].
const WINDOW_PREFIX: &str = "window:";

/// What the Worker asks: count one request in `bucket` against these scopes.
#[derive(Serialize, Deserialize)]
struct Acquire {
    bucket: String,
    scopes: Vec<Scope>,
}

/// What the limiter answers.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    allowed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refused_by: Option<String>,
}

impl Answer {
    const ALLOWED: Answer = Answer {
        allowed: true,
        retry_after: None,
        refused_by: None,
    };
}

#[durable_object]
pub struct RateLimiter {
    state: State,
    ledger: Rc<RefCell<Ledger>>,
    /// When the alarm that prunes the stored windows is set for, as far as this instance
    /// knows.
    alarm_at: Cell<Option<Millis>>,
    /// When the windows kept in memory only are next swept of the empty ones.
    sweep_at: Cell<Millis>,
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        let ledger = Rc::new(RefCell::new(Ledger::default()));
        let (memory, storage) = (ledger.clone(), state.storage());
        let _loading = state.block_concurrency_while(async move {
            let stored = store::list(&storage, WINDOW_PREFIX, None, None)
                .await
                .map_err(to_worker)?;
            let mut ledger = memory.borrow_mut();
            for (key, value) in stored {
                let (Some(name), Stored::Text(text)) = (key.strip_prefix(WINDOW_PREFIX), value)
                else {
                    continue;
                };
                if let Ok(window) = serde_json::from_str::<Window>(&text) {
                    ledger.restore(name.to_string(), window);
                }
            }
            Ok(())
        });
        Self {
            state,
            ledger,
            alarm_at: Cell::new(None),
            sweep_at: Cell::new(0),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let Ok(body) = req.json::<Acquire>().await else {
            return Response::error("expected {\"bucket\": ..., \"scopes\": [...]}", 400);
        };
        let Some(bucket) = Bucket::parse(&body.bucket) else {
            return Response::error("unknown bucket", 400);
        };
        let now = http::now();
        if now >= self.sweep_at.get() {
            // At most once a window, so a /48 with many /64s is not scanned per request.
            self.ledger.borrow_mut().prune(now, |b| !b.stored());
            self.sweep_at.set(now + rate_limit::WINDOW_MS);
        }
        // Checked and recorded in one synchronous step: no other request of this client
        // interleaves.
        let outcome = self
            .ledger
            .borrow_mut()
            .try_acquire(bucket, &body.scopes, now);
        let changed = match outcome {
            Ok(changed) => changed,
            Err(Refusal {
                retry_after_secs,
                scope,
            }) => {
                return Response::from_json(&Answer {
                    allowed: false,
                    retry_after: Some(retry_after_secs),
                    refused_by: Some(scope),
                })
            }
        };
        if !bucket.stored() {
            return Response::from_json(&Answer::ALLOWED);
        }
        // Stored so that an eviction does not forget what this client used: only the windows
        // this request changed, so the write stays small however many /64s a /48 holds.
        let mut batch = Batch::default();
        {
            let ledger = self.ledger.borrow();
            for key in &changed {
                if let Some(window) = ledger.window(key) {
                    batch.json(&format!("{WINDOW_PREFIX}{key}"), window);
                }
            }
        }
        let storage = self.state.storage();
        store::put(&storage, batch).await.map_err(to_worker)?;
        // One alarm prunes the stored windows; it is set when none is, not on every request.
        if self.alarm_at.get().is_none() {
            let at = now + rate_limit::WINDOW_MS;
            store::set_alarm(&storage, Some(at))
                .await
                .map_err(to_worker)?;
            self.alarm_at.set(Some(at));
        }
        Response::from_json(&Answer::ALLOWED)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let now = http::now();
        let (gone, next) = {
            let mut ledger = self.ledger.borrow_mut();
            let gone = ledger.prune(now, Bucket::stored);
            (gone, ledger.empty_at(Bucket::stored))
        };
        let storage = self.state.storage();
        match next {
            Some(at) => {
                let keys: Vec<String> = gone
                    .iter()
                    .map(|key| format!("{WINDOW_PREFIX}{key}"))
                    .collect();
                store::delete(&storage, &keys).await.map_err(to_worker)?;
                store::set_alarm(&storage, Some(at))
                    .await
                    .map_err(to_worker)?;
                self.alarm_at.set(Some(at));
            }
            None => {
                // Every stored window is empty: delete everything, including what an earlier
                // version of this object stored.
                storage.delete_all().await?;
                self.alarm_at.set(None);
            }
        }
        Response::empty()
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        _message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        // This object never accepts sockets; close anything that reaches it.
        let _ = ws.close(Some(1008), Some("not a socket endpoint"));
        Ok(())
    }

    async fn websocket_close(
        &self,
        _ws: WebSocket,
        _code: usize,
        _reason: String,
        _clean: bool,
    ) -> worker::Result<()> {
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, _error: Error) -> worker::Result<()> {
        Ok(())
    }
}

fn to_worker(e: crate::host::StorageError) -> Error {
    Error::RustError(e.to_string())
}

/// What the limiter decided for one request.
pub enum Decision {
    Allowed,
    Refused {
        retry_after_secs: u64,
        /// The scope whose window was full: an address, a /64 or a /48.
        scope: String,
    },
}

/// Requests this isolate let through because the limiter could not answer.
static FAILED_OPEN: AtomicU64 = AtomicU64::new(0);

/// Asks the client's limiter whether a request in `bucket` may proceed. A limiter that cannot
/// be reached lets the request through, and the `ratelimit.unavailable` line counts these
/// (`failedOpen`, per isolate): an outage of the limiter must not become an outage of the
/// service.
pub async fn acquire(env: &Env, connecting_ip: Option<&str>, bucket: Bucket) -> Decision {
    let client = rate_limit::client(connecting_ip);
    match ask(env, &client.object, bucket, client.scopes).await {
        Ok(decision) => decision,
        Err(e) => {
            let failed_open = FAILED_OPEN.fetch_add(1, Ordering::Relaxed) + 1;
            http::log(
                "ratelimit.unavailable",
                json!({ "bucket": bucket.as_str(), "error": e.to_string(), "failedOpen": failed_open }),
            );
            Decision::Allowed
        }
    }
}

async fn ask(
    env: &Env,
    object: &str,
    bucket: Bucket,
    scopes: Vec<Scope>,
) -> worker::Result<Decision> {
    let stub = env
        .durable_object("RATE_LIMITER")?
        .id_from_name(object)?
        .get_stub()?;
    let body = serde_json::to_string(&Acquire {
        bucket: bucket.as_str().to_string(),
        scopes,
    })?;
    let mut init = RequestInit::new();
    init.with_method(worker::Method::Post)
        .with_body(Some(body.into()));
    let request = Request::new_with_init("https://limiter.internal/acquire", &init)?;
    let answer: Answer = stub.fetch_with_request(request).await?.json().await?;
    Ok(if answer.allowed {
        Decision::Allowed
    } else {
        Decision::Refused {
            retry_after_secs: answer.retry_after.unwrap_or(1).max(1),
            scope: answer.refused_by.unwrap_or_default(),
        }
    })
}
