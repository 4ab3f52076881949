//! Messages out: each numbered in the job's stream, broadcast or sent to one socket; the
//! events a client must not miss, kept and replayed to a client that comes back with `since`.

use super::dispatch::with_pipeline;
use super::Engine;
use crate::host::{Host, StorageError};
use crate::job::stream::{Event, EventKind, Replay};
use crate::pipeline::Pipeline;
use crate::protocol::ServerMessage;
use crate::time::Millis;

impl<H: Host> Engine<H> {
    /// Gives `message` the job's next number and encodes it; `None` when there is no job.
    fn stamp(&self, message: &ServerMessage) -> Option<(u64, String)> {
        let now = self.now();
        self.with_job(|job| {
            let seq = job.record.stream.next_seq();
            let text = message.encode(
                &job.record.state.job_id,
                job.record.state.pipeline,
                now,
                seq,
            );
            (seq, text)
        })
    }

    /// Encodes `message` with a number and time it already had (a replay).
    fn restamp(&self, message: &ServerMessage, seq: u64, at: Millis) -> Option<String> {
        self.with_job(|job| {
            message.encode(&job.record.state.job_id, job.record.state.pipeline, at, seq)
        })
    }

    /// Sends `message` to every open socket; returns its number.
    pub(super) fn broadcast(&self, message: &ServerMessage) -> Option<u64> {
        let (seq, text) = self.stamp(message)?;
        self.send_all(&text);
        if matches!(message, ServerMessage::JobProgress { .. }) {
            self.mem.borrow_mut().last_progress_seq = Some(seq);
        }
        Some(seq)
    }

    pub(super) fn send_all(&self, text: &str) {
        for socket in self.host.sockets() {
            self.send(&socket, text);
        }
    }

    /// Sends one message to one socket, counted.
    pub(super) fn send(&self, socket: &H::Socket, text: &str) {
        self.count(|u| u.messages_out += 1);
        self.host.send(socket, text);
    }

    pub(super) fn send_to(&self, socket: &H::Socket, message: &ServerMessage) {
        if let Some((_, text)) = self.stamp(message) {
            self.send(socket, &text);
        }
    }

    /// Numbers an event a reconnecting client must not miss and keeps it, to be stored with
    /// the next write together with what it reports; returns the text to send.
    pub(super) fn stamp_kept(&self, message: &ServerMessage, kind: EventKind) -> Option<String> {
        let at = self.now();
        let (seq, text) = self.stamp(message)?;
        self.with_job(|job| job.record.stream.keep(seq, at, kind));
        Some(text)
    }

    /// The message a kept event stood for, rebuilt from the job's state and stored results.
    async fn rebuild(&self, event: &Event) -> Result<Option<ServerMessage>, StorageError> {
        match event.kind {
            EventKind::Started => Ok(self.with_job(|job| ServerMessage::JobStarted {
                total_count: job.record.state.total_count,
                estimated_duration_ms: None,
            })),
            EventKind::Final => Ok(self
                .with_job(|job| ServerMessage::final_for(&job.record.state))
                .flatten()
                .and_then(|(message, _)| message)),
            EventKind::Item { index } => {
                let Some(pipelines) = self.pipelines() else {
                    return Ok(None);
                };
                with_pipeline!(self, &*pipelines, |p, ctx| p
                    .item_message(&ctx, index)
                    .await)
            }
        }
    }

    /// After `ready_ack` on a socket opened with `since`: what the client missed, in order,
    /// each with the number and time it first had, and the latest progress; or a snapshot
    /// marked `resync` when that can no longer be told.
    pub(super) async fn replay(&self, socket: &H::Socket, since: u64) {
        let Some(plan) = self.with_job(|job| job.record.stream.replay(since)) else {
            return;
        };
        let events = match plan {
            Replay::Events(events) => events,
            Replay::Resync => {
                self.log_job("socket.resync", serde_json::json!({ "since": since }));
                if let Some(message) =
                    self.with_job(|job| ServerMessage::reconnected(&job.record.state, true))
                {
                    self.send_to(socket, &message);
                }
                return;
            }
        };
        let progress = self
            .mem
            .borrow()
            .last_progress_seq
            .filter(|seq| *seq > since);
        let mut progress_sent = false;
        for event in &events {
            if let Some(seq) = progress.filter(|seq| *seq < event.seq && !progress_sent) {
                self.send_progress_as(socket, seq);
                progress_sent = true;
            }
            match self.rebuild(event).await {
                Ok(Some(message)) => {
                    if let Some(text) = self.restamp(&message, event.seq, event.at) {
                        self.send(socket, &text);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    self.log_job(
                        "socket.replay_failed",
                        serde_json::json!({ "error": e.to_string() }),
                    );
                    if let Some(message) =
                        self.with_job(|job| ServerMessage::reconnected(&job.record.state, true))
                    {
                        self.send_to(socket, &message);
                    }
                    return;
                }
            }
        }
        if let Some(seq) = progress.filter(|_| !progress_sent) {
            self.send_progress_as(socket, seq);
        }
    }

    /// The latest progress of a live job, under the number of the last progress message.
    fn send_progress_as(&self, socket: &H::Socket, seq: u64) {
        let now = self.now();
        let text = self.with_job(|job| {
            (!job.record.state.status.is_terminal()).then(|| {
                ServerMessage::progress(&job.record.state).encode(
                    &job.record.state.job_id,
                    job.record.state.pipeline,
                    now,
                    seq,
                )
            })
        });
        if let Some(Some(text)) = text {
            self.send(socket, &text);
        }
    }

    /// Writes the reservation of sequence numbers again once half of it is used, so numbers
    /// handed out are always below what is stored. Writes of the core renew it anyway; this
    /// only writes when many messages went out without one.
    pub(super) async fn renew_seq(&self) {
        let due = self
            .with_job(|job| job.record.stream.needs_reservation())
            .unwrap_or(false);
        if due {
            if let Err(e) = self.write_core(Default::default()).await {
                self.log_job(
                    "storage.write_failed",
                    serde_json::json!({ "error": e.to_string() }),
                );
            }
        }
    }
}
