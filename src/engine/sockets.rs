//! The job's sockets: who is admitted, what client messages mean, how sockets are closed.

use super::{Engine, MAX_SOCKETS};
use crate::error::ApiError;
use crate::host::{Host, SocketTag};
use crate::job::stream::EventKind;
use crate::job::Status;
use crate::protocol::{
    self, classify_client_binary, parse_client_text, ClientMessage, CloseCode, ServerMessage,
    UpgradeQuery, Violation,
};
use crate::time::Millis;
use crate::token;
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

/// The part of a token's hash a socket keeps, to tell which token opened it.
const TOKEN_MARK_CHARS: usize = 16;

fn token_mark(token: &str) -> String {
    token::hash(token)[..TOKEN_MARK_CHARS].to_string()
}

impl<H: Host> Engine<H> {
    /// Decides an upgrade (after the Worker's stateless checks): 404/401 as for any request,
    /// else the socket is accepted. With [`MAX_SOCKETS`] open, the one silent the longest is
    /// closed with 4000 to make room when it has been silent for `SOCKET_IDLE_SECS`;
    /// otherwise the new one is refused with 1013.
    pub fn admit(&self, query: &UpgradeQuery) -> Result<Admission, ApiError> {
        let now = self.now();
        self.authorize(query.token.as_deref(), now)?;
        let open = self.host.sockets();
        let mut refusal = None;
        if open.len() >= MAX_SOCKETS {
            let quietest = open
                .iter()
                .map(|socket| (self.last_heard(socket), socket))
                .min_by_key(|(heard, _)| *heard)
                .filter(|(heard, _)| now.saturating_sub(*heard) >= self.config.socket_idle_ms);
            match quietest {
                Some((heard, socket)) => {
                    self.log_job("socket.replaced", json!({ "silentMs": now - heard }));
                    let code = CloseCode::IdleReplaced;
                    self.close(socket, code.code(), code.reason());
                }
                None => refusal = Some(CloseCode::TooManySockets),
            }
        }
        if refusal.is_some() {
            self.log_job("socket.refused", json!({ "open": open.len() }));
        } else {
            self.log_job(
                "socket.accepted",
                json!({ "open": self.host.sockets().len() + 1, "reconnect": query.reconnect, "since": query.since }),
            );
        }
        let token_expires_at = self.with_job(|job| job.record.auth.expires_at).unwrap_or(0);
        Ok(Admission {
            tag: SocketTag {
                reconnect: query.reconnect,
                opened_at: now,
                heard_at: None,
                since: query.since,
                token: query.token.as_deref().map(token_mark).unwrap_or_default(),
                token_expires_at,
            },
            refusal,
        })
    }

    /// When the client was last heard from: a message, a ping the runtime answered, or else
    /// the opening of the socket.
    fn last_heard(&self, socket: &H::Socket) -> Millis {
        let tag = self.host.tag(socket);
        [
            Some(tag.opened_at),
            tag.heard_at,
            self.host.auto_response_at(socket),
        ]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
    }

    pub async fn on_message(&self, socket: &H::Socket, frame: ClientFrame<'_>) {
        self.count(|u| u.messages_in += 1);
        let mut tag = self.host.tag(socket);
        tag.heard_at = Some(self.now());
        self.host.set_tag(socket, &tag);
        let parsed = match frame {
            ClientFrame::Text(text) => parse_client_text(text),
            ClientFrame::Binary(len) => Err(classify_client_binary(len)),
        };
        match parsed {
            Ok(ClientMessage::Ready) => self.on_ready(socket, &tag).await,
            Ok(ClientMessage::Cancel) if !self.holds_current_token(&tag) => {
                // Its token was replaced by a refresh: the socket's rights ended with it.
                self.log_job("cancel.refused", json!({ "reason": "token replaced" }));
                self.close(socket, CloseCode::TokenExpired.code(), "token replaced");
            }
            Ok(ClientMessage::Cancel) => {
                if let Err(err) = self.cancel(self.now()).await {
                    // Nothing to cancel (already ended): tell this client how it ended.
                    self.log_job("cancel.refused", json!({ "reason": err.message }));
                    self.send_final_to(socket);
                }
            }
            Ok(ClientMessage::Ping) => self.send(socket, protocol::PONG_TEXT),
            Err(violation) => self.refuse_message(socket, &violation),
        }
        self.renew_seq().await;
        self.release_lingering().await;
    }

    /// Whether the socket was opened with the job's current token (sockets older than the
    /// token marks count as current).
    fn holds_current_token(&self, tag: &SocketTag) -> bool {
        tag.token.is_empty()
            || self
                .with_job(|job| job.record.auth.hash.starts_with(&tag.token))
                .unwrap_or(false)
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
    pub(super) fn close(&self, socket: &H::Socket, code: u16, reason: &str) {
        if !self.ever_heard(socket) {
            self.lingering.set(true);
        }
        self.host
            .close(socket, code, protocol::close_reason(reason));
    }

    pub(super) fn close_all(&self, code: CloseCode, reason: &str) {
        for socket in self.host.sockets() {
            self.close(&socket, code.code(), reason);
        }
    }

    /// Closes 1008 the sockets whose token has expired (a socket keeps the token it was
    /// opened with, even after a refresh); returns how many.
    pub(super) fn close_expired_sockets(&self, now: Millis) -> usize {
        let current_expiry = self.with_job(|job| job.record.auth.expires_at).unwrap_or(0);
        let mut closed = 0;
        for socket in self.host.sockets() {
            let tag = self.host.tag(&socket);
            let expires_at = if tag.token_expires_at == 0 || self.holds_current_token(&tag) {
                current_expiry
            } else {
                tag.token_expires_at
            };
            if now >= expires_at {
                let code = CloseCode::TokenExpired;
                self.close(&socket, code.code(), code.reason());
                closed += 1;
            }
        }
        closed
    }

    /// The earliest expiry, after `now`, of a token an open socket still holds.
    pub(super) fn next_socket_expiry(&self, now: Millis) -> Option<Millis> {
        self.host
            .sockets()
            .iter()
            .map(|socket| self.host.tag(socket))
            .filter(|tag| !self.holds_current_token(tag))
            .map(|tag| tag.token_expires_at)
            .filter(|at| *at > now)
            .min()
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

    async fn on_ready(&self, socket: &H::Socket, tag: &SocketTag) {
        let Some(status) = self.with_job(|job| job.record.state.status) else {
            // The job was cleaned up under this socket.
            self.close(
                socket,
                CloseCode::JobCanceled.code(),
                "job no longer exists",
            );
            return;
        };
        self.send_to(socket, &ServerMessage::ReadyAck {});
        // A snapshot when asked for (`reconnect=true`), and for a v1 client on a job that
        // has started; a client with `since` gets what it missed instead.
        if tag.reconnect || (tag.since.is_none() && status != Status::Queued) {
            if let Some(snapshot) =
                self.with_job(|job| ServerMessage::reconnected(&job.record.state, false))
            {
                self.send_to(socket, &snapshot);
            }
        }
        if let Some(since) = tag.since {
            self.replay(socket, since).await;
        }
        if status.is_terminal() {
            let already_told = tag.since.is_some();
            self.close_as_ended(socket, !already_told);
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

    /// Closes one socket of an ended job as the job ended, first sending its last word when
    /// the client has not had it.
    fn close_as_ended(&self, socket: &H::Socket, send_final: bool) {
        let Some((message, code)) = self
            .with_job(|job| ServerMessage::final_for(&job.record.state))
            .flatten()
        else {
            return;
        };
        if let Some(message) = message.filter(|_| send_final) {
            self.send_to(socket, &message);
        }
        self.close(socket, code.code(), code.reason());
    }

    /// Sends an ended job's last word to one socket and closes it as the job ended.
    fn send_final_to(&self, socket: &H::Socket) {
        self.close_as_ended(socket, true);
    }

    /// The ended job's last word, numbered and kept (to be stored with the end), and the close
    /// that follows it; send them with [`Self::tell_the_end`] once the end is stored.
    pub(super) fn stamp_final(&self) -> Option<(Option<String>, CloseCode)> {
        let (message, code) = self
            .with_job(|job| ServerMessage::final_for(&job.record.state))
            .flatten()?;
        let text = message.and_then(|m| self.stamp_kept(&m, EventKind::Final));
        Some((text, code))
    }

    /// Tells every socket how the job ended and closes them.
    pub(super) fn tell_the_end(&self, ending: Option<(Option<String>, CloseCode)>) {
        if let Some((text, code)) = ending {
            if let Some(text) = text {
                self.send_all(&text);
            }
            self.close_all(code, code.reason());
        }
    }
}
