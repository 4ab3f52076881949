//! The job's Durable Object: one instance per job id.

use crate::error::ApiError;
use crate::runtime::http;
use worker::{
    durable_object, DurableObject, Env, Error, Request, Response, State, WebSocket,
    WebSocketIncomingMessage,
};

#[durable_object]
pub struct JobObject {
    state: State,
    env: Env,
}

impl DurableObject for JobObject {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, _req: Request) -> worker::Result<Response> {
        let _ = (&self.state, &self.env);
        Ok(http::error(&ApiError::not_found("no such job")))
    }

    async fn alarm(&self) -> worker::Result<Response> {
        Response::empty()
    }

    async fn websocket_message(
        &self,
        _ws: WebSocket,
        _msg: WebSocketIncomingMessage,
    ) -> worker::Result<()> {
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        reason: String,
        _clean: bool,
    ) -> worker::Result<()> {
        let _ = ws.close(Some(code as u16), Some(reason));
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, _error: Error) -> worker::Result<()> {
        Ok(())
    }
}
