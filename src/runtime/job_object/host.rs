//! The job object's [`Host`]: workerd's clock, storage, fetch, timers and hibernatable sockets.

use crate::host::{
    Answer, Batch, CallError, Expect, Host, Outbound, SocketTag, StorageError, Stored, Values,
};
use crate::runtime::{http, provider, store};
use crate::time::Millis;
use std::cell::Cell;
use std::rc::Rc;
use worker::{State, WebSocket};

const WS_OPEN: u16 = 1;

pub struct DoHost {
    state: State,
}

impl DoHost {
    /// A second handle on the object's state (a JS reference, so nothing is copied).
    pub fn new(state: &State) -> Self {
        use worker::wasm_bindgen::{JsCast, JsValue};
        let raw: &JsValue = state.as_raw().as_ref();
        Self {
            state: State::from(
                raw.clone()
                    .unchecked_into::<worker::worker_sys::DurableObjectState>(),
            ),
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
        self.state
            .get_websockets()
            .into_iter()
            .filter(|ws| AsRef::<worker::web_sys::WebSocket>::as_ref(ws).ready_state() == WS_OPEN)
            .collect()
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

    /// The runtime's `ctx.abort()`, which workers-rs does not wrap.
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
}
