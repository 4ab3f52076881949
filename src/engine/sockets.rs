//! The job's sockets: who is admitted, what client messages mean, and what is sent to whom.

use super::{Engine, MAX_SOCKETS};
use crate::error::ApiError;
use crate::host::{Host, SocketTag};
use crate::job::Status;
use crate::protocol::{
    self, classify_client_binary, parse_client_text, ClientMessage, CloseCode, ServerMessage,
    Violation,
};
use serde_json::json;

/// A frame a client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFrame<'a> {
    Text(&'a str),
    /// Binary frames are never valid; only their size matters.
    Binary(usize),
}

/// The engine's answer to an upgrade: accept the socket with this tag, and close it at once
/// with `refusal` when the job has no room for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub tag: SocketTag,
    pub refusal: Option<CloseCode>,
}

/// Codes a server may put in a close frame (RFC 6455 §7.4): never 1005, 1006 or 1015.
fn is_sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

impl<H: Host> Engine<H> {
    /// Decides an upgrade (after the Worker's stateless checks): 404/401 as for any request,
    /// else the socket is accepted, and refused with 1013 beyond [`MAX_SOCKETS`].
    pub fn admit(&self, token: Option<&str>, reconnect: bool) -> Result<Admission, ApiError> {
        self.authorize(token, self.now())?;
        let open = self.host.sockets().len();
        let refusal = (open >= MAX_SOCKETS).then_some(CloseCode::TooManySockets);
        if refusal.is_some() {
            self.log_job("socket.refused", json!({ "open": open }));
        } else {
            self.log_job(
                "socket.accepted",
                json!({ "open": open + 1, "reconnect": reconnect }),
            );
        }
        Ok(Admission {
            tag: SocketTag {
                reconnect,
                opened_at: self.now(),
                heard_at: None,
            },
            refusal,
        })
    }

    pub async fn on_message(&self, socket: &H::Socket, frame: ClientFrame<'_>) {
        let mut tag = self.host.tag(socket);
        tag.heard_at = Some(self.now());
        self.host.set_tag(socket, &tag);
        let parsed = match frame {
            ClientFrame::Text(text) => parse_client_text(text),
            ClientFrame::Binary(len) => Err(classify_client_binary(len)),
        };
        match parsed {
            Ok(ClientMessage::Ready) => self.on_ready(socket).await,
            Ok(ClientMessage::Cancel) => {
                if let Err(err) = self.cancel(self.now()).await {
                    // Nothing to cancel (already ended): tell this client how it ended.
                    self.log_job("cancel.refused", json!({ "reason": err.message }));
                    self.send_final_to(socket);
                }
            }
            Ok(ClientMessage::Ping) => self.host.send(socket, protocol::PONG_TEXT),
            Err(violation) => self.refuse_message(socket, &violation),
        }
        self.release_lingering().await;
    }

    /// Completes the closing handshake a client started, echoing its code unless it is one
    /// that must never be sent on the wire.
    pub fn on_close(&self, socket: &H::Socket, code: u16) {
        self.log_job("socket.closed", json!({ "code": code }));
        let code = Some(code)
            .filter(|c| is_sendable_close_code(*c))
            .unwrap_or(1000);
        self.host.close(socket, code, "closing");
    }

    pub fn on_socket_error(&self, error: &str) {
        self.log_job("socket.error", json!({ "error": error }));
    }

    fn refuse_message(&self, socket: &H::Socket, violation: &Violation) {
        let code = violation.close_code();
        self.log_job(
            "socket.violation",
            json!({ "close": code.code(), "reason": violation.reason() }),
        );
        self.close(socket, code.code(), &violation.reason());
    }

    /// Whether the client has ever been heard from: a message the object saw, or a ping the
    /// runtime answered.
    fn ever_heard(&self, socket: &H::Socket) -> bool {
        self.host.tag(socket).heard_at.is_some() || self.host.auto_response_at(socket).is_some()
    }

    /// Closes one socket. A socket that never delivered a message keeps its connection after
    /// the closing handshake until the object resets (see [`Host::reset_when_idle`]), which
    /// [`Self::release_lingering`] asks for once the job no longer needs the object's memory.
    fn close(&self, socket: &H::Socket, code: u16, reason: &str) {
        if !self.ever_heard(socket) {
            self.lingering.set(true);
        }
        self.host
            .close(socket, code, protocol::close_reason(reason));
    }

    /// At the end of an event that closed sockets: if a silent socket's connection lingers,
    /// let the object reset once idle, so the runtime ends those connections at once. Nothing
    /// may be lost by the reset: a running job first stores its held progress, and while a
    /// step is in flight this waits for the end of the alarm.
    pub(super) async fn release_lingering(&self) {
        if !self.lingering.get() {
            return;
        }
        let (running, dirty) = self
            .with_job(|job| {
                (
                    job.record.state.status == Status::Running,
                    job.record.throttle.is_dirty(),
                )
            })
            .unwrap_or((false, false));
        if running && self.in_step.get() {
            return;
        }
        if running && dirty && self.checkpoint("release").await.is_err() {
            return;
        }
        self.lingering.set(false);
        self.log_job("socket.release_lingering", json!({}));
        self.host.reset_when_idle();
    }

    async fn on_ready(&self, socket: &H::Socket) {
        let reconnect = self.host.tag(socket).reconnect;
        let Some((status, snapshot)) = self.with_job(|job| {
            (
                job.record.state.status,
                ServerMessage::reconnected(&job.record.state),
            )
        }) else {
            // The job was cleaned up under this socket.
            self.host.close(
                socket,
                CloseCode::JobCanceled.code(),
                "job no longer exists",
            );
            return;
        };
        self.send_to(socket, &ServerMessage::ReadyAck);
        if status != Status::Queued || reconnect {
            self.send_to(socket, &snapshot);
        }
        if status.is_terminal() {
            self.send_final_to(socket);
            return;
        }
        let now = self.now();
        if self
            .with_job(|job| job.record.on_ready(now))
            .unwrap_or(false)
        {
            // Stored, so that an eviction before the alarm fires still starts the job now.
            let stored = match self.write_core(Default::default()).await {
                Ok(()) => self.sync_alarm().await,
                Err(e) => Err(e),
            };
            if let Err(e) = stored {
                self.log_job("storage.write_failed", json!({ "error": e.to_string() }));
            }
        }
    }

    fn encode(&self, message: &ServerMessage) -> Option<String> {
        let now = self.now();
        self.with_job(|job| {
            message.encode(&job.record.state.job_id, job.record.state.pipeline, now)
        })
    }

    pub(super) fn broadcast(&self, message: &ServerMessage) {
        if let Some(text) = self.encode(message) {
            for socket in self.host.sockets() {
                self.host.send(&socket, &text);
            }
        }
    }

    fn send_to(&self, socket: &H::Socket, message: &ServerMessage) {
        if let Some(text) = self.encode(message) {
            self.host.send(socket, &text);
        }
    }

    pub(super) fn close_all(&self, code: CloseCode, reason: &str) {
        for socket in self.host.sockets() {
            self.close(&socket, code.code(), reason);
        }
    }

    /// Sends an ended job's last word to one socket and closes it as the job ended.
    fn send_final_to(&self, socket: &H::Socket) {
        let Some((message, code)) = self
            .with_job(|job| ServerMessage::final_for(&job.record.state))
            .flatten()
        else {
            return;
        };
        if let Some(message) = message {
            self.send_to(socket, &message);
        }
        self.close(socket, code.code(), code.reason());
    }

    /// Tells every socket how the job ended and closes it.
    pub(super) fn broadcast_final(&self) {
        if let Some((message, code)) = self
            .with_job(|job| ServerMessage::final_for(&job.record.state))
            .flatten()
        {
            if let Some(message) = message {
                self.broadcast(&message);
            }
            self.close_all(code, code.reason());
        }
    }
}
