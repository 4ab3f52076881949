//! When progress is written to storage (per-pipeline policy) and how often it is sent to sockets.

use crate::job::Pipeline;
use crate::time::Millis;
use serde::{Deserialize, Serialize};

/// Persist after this many unpersisted progress updates, or once the oldest of them is this
/// old, whichever comes first (contract section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersistPolicy {
    pub every_updates: u32,
    pub every_ms: Millis,
}

impl PersistPolicy {
    pub fn for_pipeline(pipeline: Pipeline) -> Self {
        match pipeline {
            Pipeline::BatchEnrichment => Self {
                every_updates: 5,
                every_ms: 10_000,
            },
            Pipeline::CsvImport | Pipeline::AiScan => Self {
                every_updates: 20,
                every_ms: 30_000,
            },
        }
    }
}

/// What to do with a progress update that was just recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistDecision {
    Now,
    /// Keep it in memory; a flush must run at this instant if nothing persists before.
    FlushAt(Millis),
}

/// The throttle's counters. They are stored with the job state, in the same write, so an
/// evicted object resumes with the same window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PersistThrottle {
    /// Updates recorded since the last write.
    pub pending: u32,
    /// When the oldest pending update was recorded.
    pub pending_since: Option<Millis>,
    /// Progress writes made over the job's life; reported in logs and benchmarks.
    pub writes: u64,
}

impl PersistThrottle {
    pub fn record(&mut self, policy: PersistPolicy, now: Millis) -> PersistDecision {
        self.pending += 1;
        let since = *self.pending_since.get_or_insert(now);
        let due = since + policy.every_ms;
        if self.pending >= policy.every_updates || now >= due {
            PersistDecision::Now
        } else {
            PersistDecision::FlushAt(due)
        }
    }

    /// Call in the same write that persists the state: the window starts again.
    pub fn persisted(&mut self) {
        self.pending = 0;
        self.pending_since = None;
        self.writes += 1;
    }

    pub fn is_dirty(&self) -> bool {
        self.pending > 0
    }

    /// When the pending updates must be flushed at the latest.
    pub fn flush_due(&self, policy: PersistPolicy) -> Option<Millis> {
        self.pending_since.map(|since| since + policy.every_ms)
    }
}

/// Default spacing of `job_progress` messages: at most 10 a second, inside the contract's 20.
pub const SOCKET_MIN_INTERVAL_MS: Millis = 100;

/// The contract's bound on `job_progress`: at most this many in any one second.
pub const MAX_PROGRESS_PER_SECOND: usize = 20;

/// Coalesces progress for sockets. An update goes out when `min_interval_ms` has passed since
/// the last one; otherwise it is held. At the end of a chunk a held update is sent once half
/// the interval has passed, so every chunk is reported while any two messages stay at least
/// `min_interval_ms / 2` apart: with the default, never more than 20 in any second. The last
/// chunk's update goes at once ([`SocketCoalescer::flush_last`]) unless 20 went in the last
/// second: a small job's end does not wait for a spacing meant for a steady stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketCoalescer {
    last_sent: Option<Millis>,
    held: bool,
    /// When the last [`MAX_PROGRESS_PER_SECOND`] updates went, oldest at `next`.
    recent: [Option<Millis>; MAX_PROGRESS_PER_SECOND],
    next: usize,
}

impl SocketCoalescer {
    /// Whether one more update now keeps every one-second window within the bound.
    fn window_allows(&self, now: Millis) -> bool {
        self.recent[self.next].is_none_or(|oldest| now >= oldest + 1_000)
    }

    fn sent(&mut self, now: Millis) {
        self.last_sent = Some(now);
        self.held = false;
        self.recent[self.next] = Some(now);
        self.next = (self.next + 1) % MAX_PROGRESS_PER_SECOND;
    }

    /// Sends when `spacing_ms` has passed since the last update and, while coalescing is on
    /// (`min_interval_ms` > 0; test pipelines turn it off), the one-second bound allows.
    fn send_if(&mut self, min_interval_ms: Millis, spacing_ms: Millis, now: Millis) -> bool {
        let ready = self.last_sent.is_none_or(|t| now >= t + spacing_ms)
            && (min_interval_ms == 0 || self.window_allows(now));
        if ready {
            self.sent(now);
        } else {
            self.held = true;
        }
        ready
    }

    /// True when this update should be sent now.
    pub fn offer(&mut self, min_interval_ms: Millis, now: Millis) -> bool {
        self.send_if(min_interval_ms, min_interval_ms, now)
    }

    /// At the end of a chunk: true when a held update should go now.
    pub fn flush(&mut self, min_interval_ms: Millis, now: Millis) -> bool {
        self.held && self.send_if(min_interval_ms, min_interval_ms / 2, now)
    }

    /// At the end of the last chunk: true when a held update should go now, which it does
    /// unless the one-second bound forbids it.
    pub fn flush_last(&mut self, min_interval_ms: Millis, now: Millis) -> bool {
        self.held && self.send_if(min_interval_ms, 0, now)
    }

    /// True when an update is waiting to be sent.
    pub fn is_holding(&self) -> bool {
        self.held
    }

    /// The earliest time at which a held update can go at a chunk's end: half the spacing
    /// after the last one ([`SocketCoalescer::flush`]), or right after it when `last` (the last
    /// chunk, [`SocketCoalescer::flush_last`]), and once the one-second bound allows one more.
    pub fn next_flush_at(&self, min_interval_ms: Millis, last: bool) -> Millis {
        let spacing_ms = if last { 0 } else { min_interval_ms / 2 };
        let spaced = self.last_sent.map_or(0, |t| t + spacing_ms);
        let window = match self.recent[self.next] {
            Some(oldest) if min_interval_ms > 0 => oldest + 1_000,
            _ => 0,
        };
        spaced.max(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_policies_are_the_contract_ones() {
        let table = [
            (Pipeline::BatchEnrichment, 5, 10_000),
            (Pipeline::CsvImport, 20, 30_000),
            (Pipeline::AiScan, 20, 30_000),
        ];
        for (p, n, ms) in table {
            assert_eq!(
                PersistPolicy::for_pipeline(p),
                PersistPolicy {
                    every_updates: n,
                    every_ms: ms
                }
            );
        }
    }

    #[test]
    fn persists_every_n_updates() {
        let policy = PersistPolicy {
            every_updates: 5,
            every_ms: 10_000,
        };
        let mut t = PersistThrottle::default();
        let mut writes = 0;
        for i in 0..1_000u64 {
            if t.record(policy, i) == PersistDecision::Now {
                t.persisted();
                writes += 1;
            }
        }
        assert_eq!(writes, 200);
        assert_eq!(t.writes, 200);
    }

    #[test]
    fn persists_when_the_window_closes() {
        let policy = PersistPolicy {
            every_updates: 20,
            every_ms: 30_000,
        };
        let mut t = PersistThrottle::default();
        assert_eq!(t.record(policy, 1_000), PersistDecision::FlushAt(31_000));
        assert_eq!(
            t.record(policy, 20_000),
            PersistDecision::FlushAt(31_000),
            "window is anchored at the oldest update"
        );
        assert_eq!(t.flush_due(policy), Some(31_000));
        assert_eq!(t.record(policy, 31_000), PersistDecision::Now);
        t.persisted();
        assert!(!t.is_dirty());
        assert_eq!(t.flush_due(policy), None);
        assert_eq!(t.record(policy, 40_000), PersistDecision::FlushAt(70_000));
    }

    #[test]
    fn write_count_per_thousand_updates_is_the_policy_minimum() {
        // Updates every 10 ms never hit the time bound, so writes = updates / N exactly.
        for pipeline in [
            Pipeline::CsvImport,
            Pipeline::AiScan,
            Pipeline::BatchEnrichment,
        ] {
            let policy = PersistPolicy::for_pipeline(pipeline);
            let mut t = PersistThrottle::default();
            for i in 0..1_000u64 {
                if t.record(policy, i * 10) == PersistDecision::Now {
                    t.persisted();
                }
            }
            assert_eq!(
                t.writes,
                1_000 / u64::from(policy.every_updates),
                "{pipeline:?}"
            );
        }
    }

    #[test]
    fn coalescer_limits_rate_and_flushes_held_updates() {
        let mut c = SocketCoalescer::default();
        assert!(c.offer(100, 0));
        assert!(!c.offer(100, 10));
        assert!(!c.offer(100, 99));
        assert!(c.is_holding());
        assert!(!c.flush(100, 49), "chunk end still keeps half the interval");
        assert!(c.flush(100, 50));
        assert!(!c.is_holding());
        assert!(!c.flush(100, 500), "nothing held");
        assert!(c.offer(100, 500));
        assert!(!c.offer(100, 510));
        assert!(c.flush(100, 560));
    }

    /// `next_flush_at` names exactly the first moment a flush succeeds: never later, so a
    /// chunk waits no longer than it must, and never earlier.
    #[test]
    fn the_next_flush_is_due_exactly_when_a_flush_succeeds() {
        // (interval, sends before, the update held at, last chunk): each is still held at the
        // chunk's end, as the engine asks only then.
        let table: &[(Millis, &[Millis], Millis, bool)] = &[
            (100, &[0], 10, false),
            (100, &[0], 49, false),
            (100, &[0, 100, 200], 230, false),
            // Twenty in one second: the window, not the spacing, decides.
            (
                10,
                &[
                    0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95,
                ],
                96,
                false,
            ),
            (
                10,
                &[
                    0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95,
                ],
                96,
                true,
            ),
        ];
        for &(interval, before, held_at, last) in table {
            let mut c = SocketCoalescer::default();
            for &t in before {
                c.sent(t);
            }
            assert!(!c.offer(interval, held_at), "held by the spacing");
            let due = c.next_flush_at(interval, last);
            assert!(due > held_at, "{before:?}: due at {due}");
            let flush = |c: &mut SocketCoalescer, now| {
                if last {
                    c.flush_last(interval, now)
                } else {
                    c.flush(interval, now)
                }
            };
            for now in held_at..due {
                assert!(
                    !flush(&mut c.clone(), now),
                    "{before:?}: sent at {now}, before {due}"
                );
            }
            assert!(flush(&mut c, due), "{before:?}: not sent at {due}");
        }
    }

    #[test]
    fn coalescer_never_exceeds_its_rate() {
        let mut c = SocketCoalescer::default();
        let mut sent = Vec::new();
        for now in 0..10_000u64 {
            if c.offer(100, now) {
                sent.push(now);
            }
        }
        assert_eq!(sent.len(), 100);
        assert!(sent.windows(2).all(|w| w[1] - w[0] >= 100));
    }

    #[test]
    fn the_last_update_goes_at_once_within_twenty_a_second() {
        // (sends before, at these times; when the last chunk ends; whether it goes)
        let table: &[(&[Millis], Millis, bool)] = &[
            (&[0], 10, true),
            (&[0, 100, 200], 210, true),
            (&[], 5, false), // nothing held: nothing to send
        ];
        for &(before, at, want) in table {
            let mut c = SocketCoalescer::default();
            for &t in before {
                assert!(c.offer(100, t));
            }
            if !before.is_empty() {
                assert!(!c.offer(100, at), "held by the spacing");
            }
            assert_eq!(c.flush_last(100, at), want, "{before:?} then {at}");
        }
        // Twenty in the last second: the last update waits for the window.
        let mut c = SocketCoalescer::default();
        for t in 0..20 {
            assert!(c.flush_last(10, t * 10) || c.offer(10, t * 10));
        }
        assert!(!c.offer(10, 500));
        assert!(!c.flush_last(10, 999), "a 21st within the second");
        assert!(c.flush_last(10, 1_000));
        // Without coalescing (test pipelines), every update goes.
        let mut c = SocketCoalescer::default();
        assert!((0..100).all(|t| c.offer(0, t)));
    }

    #[test]
    fn every_kind_of_send_together_stays_within_twenty_a_second() {
        let mut c = SocketCoalescer::default();
        let mut sent = Vec::new();
        for now in 0..5_000u64 {
            if c.offer(SOCKET_MIN_INTERVAL_MS, now) {
                sent.push(now);
            }
            if now % 7 == 6 && c.flush(SOCKET_MIN_INTERVAL_MS, now) {
                sent.push(now);
            }
            if now % 13 == 12 && c.flush_last(SOCKET_MIN_INTERVAL_MS, now) {
                sent.push(now);
            }
        }
        for (i, &t) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().take_while(|&&u| u < t + 1_000).count();
            assert!(
                in_window <= 20,
                "{in_window} messages in the second from {t}"
            );
        }
        assert!(sent.len() >= 90, "{} sent", sent.len());
    }
}
