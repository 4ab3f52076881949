//! The job object's [`Host`]: workerd's clock, storage, fetch, timers and hibernatable sockets.

use crate::host::{
    Answer, Batch, CallError, Expect, Host, Outbound, SocketTag, StorageError, Stored, Values,
};
use crate::runtime::{http, provider, store};
use crate::time::Millis;
use std::cell::Cell;
use std::rc::Rc;
use worker::js_sys::{Function, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::{State, WebSocket};

const WS_OPEN: u16 = 1;

/// How long after the last event a reset waits, so the close frames queued by that event are
/// on the wire first.
const RESET_DELAY_MS: u64 = 200;

/// Events (requests, alarms, socket events) running in the object now; the shell counts them.
#[derive(Clone, Default)]
pub struct Events(Rc<Cell<u32>>);

/// Held for the length of one event.
pub struct EventGuard(Rc<Cell<u32>>);

impl Events {
    pub fn enter(&self) -> EventGuard {
        self.0.set(self.0.get() + 1);
        EventGuard(self.0.clone())
    }

    fn idle(&self) -> bool {
        self.0.get() == 0
    }
}

impl Drop for EventGuard {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

pub struct DoHost {
    state: Rc<State>,
    events: Events,
    reset_pending: Rc<Cell<bool>>,
}

/// A second handle on the object's state (a JS reference, so nothing is copied).
fn state_handle(state: &State) -> State {
    let raw: &JsValue = state.as_raw().as_ref();
    State::from(
        raw.clone()
            .unchecked_into::<worker::worker_sys::DurableObjectState>(),
    )
}

fn open_sockets(state: &State) -> Vec<WebSocket> {
    state
        .get_websockets()
        .into_iter()
        .filter(|ws| AsRef::<worker::web_sys::WebSocket>::as_ref(ws).ready_state() == WS_OPEN)
        .collect()
}

/// The runtime's `ctx.abort()`, which workers-rs does not wrap, run from a JS timer as soon
/// as the current event yields. It must not be called from wasm: abort ends the running code
/// with an exception that cannot be caught, and unwinding through wasm-bindgen's frames leaves
/// the module unusable for every object and request of the isolate. So the timer gets
/// `ctx.abort` bound to its reason, a plain JS function.
fn abort(state: &State, reason: &str) {
    let raw = state.as_raw();
    let Some(abort) = Reflect::get(raw, &JsValue::from_str("abort"))
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
    else {
        return;
    };
    let bound = abort.bind1(raw, &JsValue::from_str(reason));
    let global = worker::js_sys::global();
    if let Some(set_timeout) = Reflect::get(&global, &JsValue::from_str("setTimeout"))
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
    {
        let _ = set_timeout.call2(&global, &bound, &JsValue::from_f64(0.0));
    }
}

impl DoHost {
    pub fn new(state: &State, events: Events) -> Self {
        Self {
            state: Rc::new(state_handle(state)),
            events,
            reset_pending: Rc::new(Cell::new(false)),
        }
    }
}

impl Host for DoHost {
    type Socket = WebSocket;

    fn now(&self) -> Millis {
        http::now()
    }

    fn name(&self) -> Option<String> {
        self.state.id().name()
    }

    fn fill_random(&self, buf: &mut [u8]) -> Result<(), String> {
        getrandom::fill(buf).map_err(|e| e.to_string())
    }

    fn log(&self, event: &str, fields: serde_json::Value) {
        http::log(event, fields);
    }

    fn logs(&self, event: &str) -> bool {
        http::logs(event)
    }

    async fn get(&self, keys: &[String]) -> Result<Values, StorageError> {
        store::get(&self.state.storage(), keys).await
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<(String, Stored)>, StorageError> {
        store::list(&self.state.storage(), prefix, start_after, limit).await
    }

    async fn put(&self, batch: Batch) -> Result<(), StorageError> {
        store::put(&self.state.storage(), batch).await
    }

    async fn put_if(&self, key: &str, expect: Expect, value: Stored) -> Result<bool, StorageError> {
        let Stored::Text(text) = value else {
            return Err(StorageError("put_if stores text only".into()));
        };
        let key = key.to_string();
        let wrote = Rc::new(Cell::new(false));
        let wrote_in_txn = wrote.clone();
        self.state
            .storage()
            .transaction(move |txn| async move {
                // A missing key reads as an error here, which `expect` sees as `None`.
                let current = txn.get::<String>(&key).await.ok().map(Stored::Text);
                if !expect(current.as_ref()) {
                    txn.rollback()?;
                    return Ok(());
                }
                txn.put(&key, text).await?;
                wrote_in_txn.set(true);
                Ok(())
            })
            .await
            .map_err(store::storage_error)?;
        Ok(wrote.get())
    }

    async fn delete(&self, keys: &[String]) -> Result<(), StorageError> {
        store::delete(&self.state.storage(), keys).await
    }

    async fn delete_all(&self) -> Result<(), StorageError> {
        self.state
            .storage()
            .delete_all()
            .await
            .map_err(store::storage_error)
    }

    async fn set_alarm(&self, at: Option<Millis>) -> Result<(), StorageError> {
        store::set_alarm(&self.state.storage(), at).await
    }

    async fn fetch(&self, request: Outbound, timeout_ms: Millis) -> Result<Answer, CallError> {
        provider::send(request, timeout_ms).await
    }

    async fn sleep_until(&self, at: Millis) {
        let wait = at.saturating_sub(http::now());
        if wait > 0 {
            worker::Delay::from(std::time::Duration::from_millis(wait)).await;
        }
    }

    fn sockets(&self) -> Vec<WebSocket> {
        open_sockets(&self.state)
    }

    fn send(&self, socket: &WebSocket, text: &str) {
        // A socket that is going away is not an error for the job.
        let _ = socket.send_with_str(text);
    }

    fn close(&self, socket: &WebSocket, code: u16, reason: &str) {
        let _ = socket.close(Some(code), Some(reason));
    }

    fn tag(&self, socket: &WebSocket) -> SocketTag {
        socket
            .deserialize_attachment::<SocketTag>()
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn set_tag(&self, socket: &WebSocket, tag: &SocketTag) {
        let _ = socket.serialize_attachment(tag);
    }

    /// `ctx.getWebSocketAutoResponseTimestamp(ws)`, which workers-rs does not wrap: a `Date`,
    /// or null when the runtime never answered this socket's ping.
    fn auto_response_at(&self, socket: &WebSocket) -> Option<Millis> {
        let raw = self.state.as_raw();
        let method =
            Reflect::get(raw, &JsValue::from_str("getWebSocketAutoResponseTimestamp")).ok()?;
        let method = method.dyn_ref::<Function>()?;
        let ws: &JsValue = socket.as_ref().as_ref();
        let stamp = method.call1(raw, ws).ok()?;
        let date = stamp.dyn_ref::<worker::js_sys::Date>()?;
        let ms = date.get_time();
        (ms.is_finite() && ms > 0.0).then_some(ms as Millis)
    }

    /// Once every event has finished and no socket is open, after a short delay so queued
    /// close frames are out, the object aborts itself; the runtime then drops the connections
    /// it kept for closed sockets, and the next event builds the object anew from storage.
    fn reset_when_idle(&self) {
        if self.reset_pending.replace(true) {
            return;
        }
        let (state, events, pending) = (
            self.state.clone(),
            self.events.clone(),
            self.reset_pending.clone(),
        );
        self.state.wait_until(async move {
            worker::Delay::from(std::time::Duration::from_millis(RESET_DELAY_MS)).await;
            pending.set(false);
            if events.idle() && open_sockets(&state).is_empty() {
                http::log(
                    "object.reset",
                    serde_json::json!({ "reason": "closed sockets" }),
                );
                abort(&state, "released the connections of closed sockets");
            }
        });
    }

    fn abort(&self, reason: &str) {
        abort(&self.state, reason);
    }
}
