//! The per-client rate limiter: one small Durable Object per client address, exact across the edge.
//!
//! Cloudflare's Rate Limiting binding would be cheaper, but it only answers allowed or not;
//! the contract's `Retry-After` needs to know when the window frees up, which a sliding log
//! kept in one object per client knows exactly.

use crate::host::Batch;
use crate::rate_limit::{client_key, Bucket, Window};
use crate::runtime::http;
use crate::runtime::store;
use crate::time::Millis;
use serde::Deserialize;
use serde_json::json;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use worker::{
    durable_object, DurableObject, Env, Error, Request, RequestInit, Response, State, WebSocket,
    WebSocketIncomingMessage,
};

const WINDOWS_KEY: &str = "windows";

type Windows = BTreeMap<Bucket, Window>;

#[durable_object]
pub struct RateLimiter {
    state: State,
    windows: Rc<RefCell<Windows>>,
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        let windows = Rc::new(RefCell::new(Windows::new()));
        let (memory, storage) = (windows.clone(), state.storage());
        let _loading = state.block_concurrency_while(async move {
            let stored = store::get(&storage, &[WINDOWS_KEY.to_string()])
                .await
                .map_err(|e| Error::RustError(e.to_string()))?;
            if let Some(Ok(stored)) = stored.json::<Windows>(WINDOWS_KEY) {
                *memory.borrow_mut() = stored;
            }
            Ok(())
        });
        Self { state, windows }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        #[derive(Deserialize)]
        struct Acquire {
            bucket: String,
        }
        let Ok(body) = req.json::<Acquire>().await else {
            return Response::error("expected {\"bucket\": ...}", 400);
        };
        let Some(bucket) = Bucket::parse(&body.bucket) else {
            return Response::error("unknown bucket", 400);
        };
        let now = http::now();
        let outcome = self
            .windows
            .borrow_mut()
            .entry(bucket)
            .or_default()
            .try_acquire(bucket.limit(), now);
        match outcome {
            Ok(()) => {
                // Stored so that an eviction does not forget what this client used; the
                // alarm deletes it all once every window has emptied.
                let (text, empty_at) = {
                    let windows = self.windows.borrow();
                    let empty_at = windows.values().filter_map(Window::empty_at).max();
                    (
                        serde_json::to_string(&*windows).unwrap_or_default(),
                        empty_at,
                    )
                };
                let mut batch = Batch::default();
                batch.text(WINDOWS_KEY, text);
                let storage = self.state.storage();
                store::put(&storage, batch).await.map_err(to_worker)?;
                if let Some(at) = empty_at {
                    store::set_alarm(&storage, Some(at))
                        .await
                        .map_err(to_worker)?;
                }
                Response::from_json(&json!({ "allowed": true }))
            }
            Err(retry_after) => {
                Response::from_json(&json!({ "allowed": false, "retryAfter": retry_after }))
            }
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let now = http::now();
        let still_busy = self
            .windows
            .borrow()
            .values()
            .filter_map(Window::empty_at)
            .filter(|at| *at > now)
            .max();
        match still_busy {
            Some(at) => store::set_alarm(&self.state.storage(), Some(at))
                .await
                .map_err(to_worker)?,
            None => {
                self.windows.borrow_mut().clear();
                self.state.storage().delete_all().await?;
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
    Refused { retry_after_secs: u64 },
}

/// Asks the client's limiter whether a request in `bucket` may proceed. A limiter that cannot
/// be reached lets the request through (and logs it): an outage of the limiter must not
/// become an outage of the service.
pub async fn acquire(env: &Env, connecting_ip: Option<&str>, bucket: Bucket) -> Decision {
    let key = client_key(connecting_ip);
    match ask(env, &key, bucket).await {
        Ok(decision) => decision,
        Err(e) => {
            http::log(
                "ratelimit.unavailable",
                json!({ "bucket": bucket.as_str(), "error": e.to_string() }),
            );
            Decision::Allowed
        }
    }
}

async fn ask(env: &Env, key: &str, bucket: Bucket) -> worker::Result<Decision> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        allowed: bool,
        retry_after: Option<Millis>,
    }
    let stub = env
        .durable_object("RATE_LIMITER")?
        .id_from_name(key)?
        .get_stub()?;
    let body = json!({ "bucket": bucket.as_str() }).to_string();
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
        }
    })
}
