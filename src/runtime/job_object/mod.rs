//! The job's Durable Object: one instance per job id, a thin shell around the step engine.
//!
//! Every entry point does the same thing: the constructor has loaded the job (events wait
//! for it), the handler decodes the event, hands it to the [`Engine`] and encodes what comes
//! back. All decisions are the engine's; all effects go through `host::DoHost`.

mod host;

use crate::engine::{ClientFrame, Engine, Reply};
use crate::error::ApiError;
use crate::ids::parse_job_id;
use crate::protocol::{self, UpgradeQuery};
use crate::results::PageQuery;
use crate::runtime::http;
use host::{DoHost, EventGuard, Events};
use serde_json::json;
use std::rc::Rc;
use worker::{
    durable_object, DurableObject, Env, Error, Method, Request, Response, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair, WebSocketRequestResponsePair,
};

#[durable_object]
pub struct JobObject {
    state: State,
    engine: Rc<Engine<DoHost>>,
    /// Events running now; the host resets the object only when there are none.
    events: Events,
}

impl DurableObject for JobObject {
    fn new(state: State, env: Env) -> Self {
        let events = Events::default();
        let host = DoHost::new(&state, events.clone());
        let engine = Rc::new(Engine::new(host, http::config(&env)));
        let loading = engine.clone();
        // Events wait until the job is in memory, so no handler ever sees a half-loaded job.
        // The load is awake time of its own: the event that constructed the object starts
        // only after it.
        engine.enter();
        let _loading = state.block_concurrency_while(async move {
            let loaded = loading.load().await;
            loading.leave();
            loaded.map_err(|e| Error::RustError(e.to_string()))
        });
        if let Ok(pair) =
            WebSocketRequestResponsePair::new(protocol::PING_TEXT, protocol::PONG_TEXT)
        {
            state.set_websocket_auto_response(&pair);
        }
        // Counted by the hibernation benchmark: a wake from hibernation constructs anew. The
        // name is a call out of wasm, made only when the line is written.
        if http::logs("object.constructed") {
            http::log("object.constructed", json!({ "object": state.id().name() }));
        }
        Self {
            state,
            engine,
            events,
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let _event = self.event();
        self.engine.count_request();
        let path = req.path();
        let reply = match (req.method(), path.as_str()) {
            // Read as a stream, a slice at a time: no second whole copy of the upload (an
            // import keeps one, which its start would otherwise read back from storage).
            (Method::Post, "/internal/create") => {
                match super::body::chunks(&mut req, super::body::MAX_CHUNK_BYTES) {
                    Some(chunks) => self.engine.create_from(chunks).await,
                    None => Err(http::internal("reading a create body", "no body")),
                }
            }
            (Method::Get, "/internal/state") => self.engine.state(http::bearer(&req).as_deref()),
            (Method::Post, "/internal/refresh") => match req.bytes().await {
                Ok(body) => self.engine.refresh(&body).await,
                Err(e) => Err(http::internal("reading a refresh body", e)),
            },
            (Method::Post, "/internal/cancel") => {
                self.engine
                    .cancel_request(http::bearer(&req).as_deref())
                    .await
            }
            (Method::Get, p) if p.starts_with("/internal/results/") => {
                let segment = &p["/internal/results/".len()..];
                match http::query_pairs(&req).and_then(|pairs| PageQuery::from_pairs(&pairs)) {
                    Ok(query) => {
                        self.engine
                            .results(http::bearer(&req).as_deref(), segment, &query)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
            (Method::Get, "/ws/progress") => return Ok(http::result(self.upgrade(&req))),
            _ => Err(ApiError::not_found("no such job operation")),
        };
        Ok(reply_to_response(reply))
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let _event = self.event();
        self.engine
            .alarm()
            .await
            .map_err(|e| Error::RustError(e.to_string()))?;
        Response::empty()
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        let _event = self.event();
        let frame = match &message {
            WebSocketIncomingMessage::String(text) => ClientFrame::Text(text),
            WebSocketIncomingMessage::Binary(bytes) => ClientFrame::Binary(bytes.len()),
        };
        self.engine.on_message(&ws, frame).await;
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> worker::Result<()> {
        let _event = self.event();
        self.engine
            .on_close(&ws, u16::try_from(code).unwrap_or(1000));
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, error: Error) -> worker::Result<()> {
        self.engine.on_socket_error(&error.to_string());
        Ok(())
    }
}

fn reply_to_response(reply: Reply) -> Response {
    match reply {
        Ok((status, data)) => http::ok(status, &data),
        Err(err) => http::error(&err),
    }
}

/// Held for the length of one event: counted as running (the host resets the object only
/// when none is) and as awake time.
struct Event {
    engine: Rc<Engine<DoHost>>,
    _running: EventGuard,
}

impl Drop for Event {
    fn drop(&mut self) {
        self.engine.leave();
    }
}

impl JobObject {
    fn event(&self) -> Event {
        self.engine.enter();
        Event {
            engine: self.engine.clone(),
            _running: self.events.enter(),
        }
    }

    /// Accepts a socket the engine admits, with the hibernation API; one it has no room for
    /// is accepted and closed at once with the code the engine chose.
    fn upgrade(&self, req: &Request) -> Result<Response, ApiError> {
        if !http::is_websocket_upgrade(req) {
            return Err(ApiError::new(
                crate::error::ErrorCode::UpgradeRequired,
                "expected Upgrade: websocket",
            ));
        }
        let query = UpgradeQuery::from_pairs(&http::query_pairs(req)?)?;
        let admission = self.engine.admit(&query)?;
        let pair = WebSocketPair::new().map_err(|e| http::internal("creating a socket pair", e))?;
        match admission.refusal {
            // Accepted without hibernation: the runtime keeps a closed hibernatable socket's
            // connection open until the object is evicted when its client never spoke, and a
            // refused client has had no chance to.
            Some(code) => {
                pair.server
                    .accept()
                    .map_err(|e| http::internal("accepting a refused socket", e))?;
                let _ = pair.server.close(Some(code.code()), Some(code.reason()));
            }
            None => {
                self.state.accept_web_socket(&pair.server);
                let _ = pair.server.serialize_attachment(&admission.tag);
            }
        }
        Response::from_websocket(pair.client).map_err(|e| http::internal("answering an upgrade", e))
    }
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
