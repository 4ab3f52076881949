//! A job's message stream: sequence numbers that never repeat, and the events a client can
//! have replayed after it lost its socket (contract 9.4).
//!
//! Numbers are handed out from a reservation stored with the job's core: every write of the
//! core reserves the next [`SEQ_BLOCK`] numbers, and a job read back after an eviction starts
//! after its reservation. So no write is added per message, and a restart skips numbers but
//! never hands one out twice.
//!
//! The events kept are the ones a client must not miss: `job_started`, one `item_result` per
//! item and the final message. Each is recorded in the same write that stores what it
//! reports (the start, the item's result, the end), so the log and the stored results always
//! agree: an event lost with an eviction reports work that is lost too, and done again, and
//! reported again. Only which item an event was about is kept; the message is rebuilt from
//! the stored results when it is replayed.

use crate::time::Millis;
use serde::{Deserialize, Serialize};

/// Sequence numbers reserved by each write of the core.
pub const SEQ_BLOCK: u64 = 10_000;

/// What a kept event reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    Started,
    Item { index: u64 },
    Final,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    /// The original message's timestamp, sent again with it.
    pub at: Millis,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// How to answer a client that asks for what came after `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// These kept events, in order (maybe none).
    Events(Vec<Event>),
    /// The events cannot be told: the client must resync from the job's state.
    Resync,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stream {
    /// The last number handed out.
    #[serde(default)]
    pub seq: u64,
    /// Numbers up to here may have been handed out before the last write.
    #[serde(default)]
    pub reserved: u64,
    /// Every kept event since the job's creation is in `events`; false for jobs stored by a
    /// build that kept none.
    #[serde(default)]
    pub complete: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
}

impl Stream {
    /// The stream of a new job.
    pub fn new() -> Self {
        Self {
            complete: true,
            ..Self::default()
        }
    }

    /// The next number, strictly above every earlier one.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Called for every write of the core: the reservation covers the next block.
    pub fn reserve(&mut self) {
        self.reserved = self.seq + SEQ_BLOCK;
    }

    /// True when half the reservation is used: time to write it again before the numbers run
    /// past what is stored.
    pub fn needs_reservation(&self) -> bool {
        self.seq + SEQ_BLOCK / 2 >= self.reserved
    }

    /// A stream read back after an eviction: numbers may have been handed out up to the
    /// reservation, so counting goes on from there.
    pub fn restored(mut self) -> Self {
        self.seq = self.seq.max(self.reserved);
        self
    }

    pub fn keep(&mut self, seq: u64, at: Millis, kind: EventKind) {
        self.events.push(Event { seq, at, kind });
    }

    /// What a client that saw everything up to `since` missed of the kept events.
    pub fn replay(&self, since: u64) -> Replay {
        if !self.complete || since > self.seq {
            return Replay::Resync;
        }
        Replay::Events(
            self.events
                .iter()
                .filter(|event| event.seq > since)
                .copied()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_never_repeat_across_restarts() {
        let mut stream = Stream::new();
        stream.reserve();
        let mut seen = Vec::new();
        for restart in 0..3 {
            for _ in 0..(restart * 700 + 5) {
                seen.push(stream.next_seq());
                if stream.needs_reservation() {
                    stream.reserve();
                }
            }
            // A restart reads back what the last write stored.
            let stored: Stream =
                serde_json::from_str(&serde_json::to_string(&stream).unwrap()).unwrap();
            stream = stored.restored();
        }
        seen.push(stream.next_seq());
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    }

    #[test]
    fn a_reservation_is_renewed_at_half_a_block() {
        let mut stream = Stream::new();
        stream.reserve();
        let mut renewals = 0;
        for _ in 0..(3 * SEQ_BLOCK) {
            stream.next_seq();
            if stream.needs_reservation() {
                stream.reserve();
                renewals += 1;
            }
        }
        assert_eq!(renewals, 6, "one write per half block of messages");
    }

    #[test]
    fn replays_what_came_after_since() {
        let mut stream = Stream::new();
        for (kind, seq) in [
            (EventKind::Started, 2),
            (EventKind::Item { index: 0 }, 5),
            (EventKind::Item { index: 1 }, 9),
            (EventKind::Final, 12),
        ] {
            while stream.seq < seq - 1 {
                stream.next_seq();
            }
            let seq = stream.next_seq();
            stream.keep(seq, 100 + seq, kind);
        }
        let kinds = |since| match stream.replay(since) {
            Replay::Events(events) => events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            Replay::Resync => vec![u64::MAX],
        };
        let table: &[(u64, &[u64])] = &[
            (0, &[2, 5, 9, 12]),
            (5, &[9, 12]),
            (11, &[12]),
            (12, &[]),
            (13, &[u64::MAX]),
        ];
        for (since, want) in table {
            assert_eq!(kinds(*since), *want, "since {since}");
        }
    }

    #[test]
    fn jobs_stored_without_a_log_resync() {
        let old: Stream = serde_json::from_str("{}").unwrap();
        assert_eq!(old.replay(0), Replay::Resync);
        assert_eq!(old.restored().next_seq(), 1);
    }
}
