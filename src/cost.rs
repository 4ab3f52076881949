//! What a job costs on Durable Objects: the usage its object counts, and the prices that turn it into dollars.
//!
//! Cloudflare bills a Durable Object for requests (HTTP requests, alarm invocations, and
//! incoming WebSocket messages at 20 to 1), for duration (wall-clock time while it is awake
//! and cannot hibernate, at 128 MB) and for the SQLite rows it reads and writes. The object
//! counts each in a [`Usage`], in memory, and stores it inside the job record with the writes
//! the job makes anyway; [`PRICES`] turns it into dollars. Storage held over time (GB-month)
//! is not counted: a job's rows live for the results' lifetime whatever the job did.

use crate::time::Millis;
use serde::{Deserialize, Serialize};

/// Cloudflare's published Durable Objects prices beyond the Workers Paid plan's included
/// usage, in dollars, as read on [`Prices::as_of`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prices {
    /// When these prices were read from Cloudflare's pricing page.
    pub as_of: &'static str,
    pub per_million_requests: f64,
    /// Per million GB-seconds of duration.
    pub per_million_gb_s: f64,
    /// The memory every object is billed for, whatever it uses.
    pub billed_memory_gb: f64,
    pub per_million_rows_read: f64,
    pub per_million_rows_written: f64,
    /// Incoming WebSocket messages billed as one request.
    pub messages_per_request: f64,
}

/// The one place the prices live.
pub const PRICES: Prices = Prices {
    as_of: "2026-12-03",
    per_million_requests: 0.15,
    per_million_gb_s: 12.50,
    billed_memory_gb: 0.128,
    per_million_rows_read: 0.001,
    per_million_rows_written: 1.00,
    messages_per_request: 20.0,
};

/// What one job's object did, as it counts it.
///
/// Requests are the HTTP requests the object answered for the job (creation, state, results,
/// refresh, cancel, each socket upgrade). Messages in are those the object received: the
/// pings the runtime answers by itself never reach it and are not counted (nor, as far as
/// Cloudflare says, billed). Messages out are counted once per socket they went to; they are
/// not billed. Awake time is the time during which at least one event (request, alarm,
/// socket event, or the constructor's load) was running: it stands for billed duration,
/// since an object whose events are done can hibernate and is not billed while idle. Rows
/// are keys: a key read or listed is a row read, a key put or deleted is a row written, and
/// each alarm set is counted as one row written too (the alarm is stored with the object).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Usage {
    pub requests: u64,
    pub alarms: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub awake_ms: u64,
    pub rows_read: u64,
    pub rows_written: u64,
    pub alarm_sets: u64,
}

impl Usage {
    /// `self` and `other` added up.
    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            requests: self.requests + other.requests,
            alarms: self.alarms + other.alarms,
            messages_in: self.messages_in + other.messages_in,
            messages_out: self.messages_out + other.messages_out,
            awake_ms: self.awake_ms + other.awake_ms,
            rows_read: self.rows_read + other.rows_read,
            rows_written: self.rows_written + other.rows_written,
            alarm_sets: self.alarm_sets + other.alarm_sets,
        }
    }

    /// Requests as Cloudflare bills them: requests and alarm invocations, and one for every
    /// [`Prices::messages_per_request`] incoming messages.
    pub fn billed_requests(&self, prices: &Prices) -> f64 {
        (self.requests + self.alarms) as f64 + self.messages_in as f64 / prices.messages_per_request
    }

    pub fn gb_seconds(&self, prices: &Prices) -> f64 {
        self.awake_ms as f64 / 1_000.0 * prices.billed_memory_gb
    }

    /// Rows written as billed here: the keys written and deleted, and one per alarm set.
    pub fn billed_rows_written(&self) -> u64 {
        self.rows_written + self.alarm_sets
    }
}

/// A job's cost in dollars, by what it pays for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dollars {
    pub requests: f64,
    pub duration: f64,
    pub rows_read: f64,
    pub rows_written: f64,
}

impl Dollars {
    pub fn total(&self) -> f64 {
        self.requests + self.duration + self.rows_read + self.rows_written
    }

    /// The same cost `n` times over (a thousand jobs, say).
    pub fn times(&self, n: f64) -> Dollars {
        Dollars {
            requests: self.requests * n,
            duration: self.duration * n,
            rows_read: self.rows_read * n,
            rows_written: self.rows_written * n,
        }
    }
}

impl Prices {
    /// What `usage` costs beyond the plan's included usage.
    pub fn cost(&self, usage: &Usage) -> Dollars {
        let per_million = |count: f64, price: f64| count * price / 1_000_000.0;
        Dollars {
            requests: per_million(usage.billed_requests(self), self.per_million_requests),
            duration: per_million(usage.gb_seconds(self), self.per_million_gb_s),
            rows_read: per_million(usage.rows_read as f64, self.per_million_rows_read),
            rows_written: per_million(
                usage.billed_rows_written() as f64,
                self.per_million_rows_written,
            ),
        }
    }
}

/// When an object is awake: from the start of the first event in flight to the end of the
/// last, so overlapping events (a message while the alarm awaits a provider) count once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AwakeClock {
    in_flight: u32,
    since: Millis,
}

impl AwakeClock {
    /// An event starts at `now`.
    pub fn enter(&mut self, now: Millis) {
        if self.in_flight == 0 {
            self.since = now;
        }
        self.in_flight += 1;
    }

    /// An event ends at `now`; returns the awake time to add, which is nonzero only when it
    /// was the last one in flight.
    pub fn leave(&mut self, now: Millis) -> Millis {
        match self.in_flight {
            0 => 0,
            1 => {
                self.in_flight = 0;
                now.saturating_sub(self.since)
            }
            _ => {
                self.in_flight -= 1;
                0
            }
        }
    }

    /// The awake time of the events still in flight, up to `now`.
    pub fn running(&self, now: Millis) -> Millis {
        if self.in_flight == 0 {
            0
        } else {
            now.saturating_sub(self.since)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(requests: u64, messages_in: u64, awake_ms: u64, read: u64, written: u64) -> Usage {
        Usage {
            requests,
            messages_in,
            awake_ms,
            rows_read: read,
            rows_written: written,
            ..Usage::default()
        }
    }

    #[test]
    fn prices_turn_usage_into_dollars() {
        // (usage, requests $, duration $, rows read $, rows written $)
        let table = [
            (Usage::default(), 0.0, 0.0, 0.0, 0.0),
            // A million requests, or twenty million incoming messages, cost $0.15.
            (usage(1_000_000, 0, 0, 0, 0), 0.15, 0.0, 0.0, 0.0),
            (usage(0, 20_000_000, 0, 0, 0), 0.15, 0.0, 0.0, 0.0),
            (usage(0, 20, 0, 0, 0), 0.15 / 1_000_000.0, 0.0, 0.0, 0.0),
            // 1,000 s awake at 128 MB are 128 GB-s: 128 × $12.50 / 1e6.
            (usage(0, 0, 1_000_000, 0, 0), 0.0, 0.0016, 0.0, 0.0),
            (usage(0, 0, 0, 1_000_000, 0), 0.0, 0.0, 0.001, 0.0),
            (usage(0, 0, 0, 0, 1_000_000), 0.0, 0.0, 0.0, 1.0),
        ];
        for (usage, requests, duration, read, written) in table {
            let cost = PRICES.cost(&usage);
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 + b.abs() * 1e-9;
            assert!(close(cost.requests, requests), "{usage:?}: {cost:?}");
            assert!(close(cost.duration, duration), "{usage:?}: {cost:?}");
            assert!(close(cost.rows_read, read), "{usage:?}: {cost:?}");
            assert!(close(cost.rows_written, written), "{usage:?}: {cost:?}");
            assert!(close(cost.total(), requests + duration + read + written));
        }
    }

    #[test]
    fn alarms_bill_as_requests_and_alarm_sets_as_rows_written() {
        let usage = Usage {
            alarms: 3,
            alarm_sets: 4,
            rows_written: 6,
            ..Usage::default()
        };
        assert_eq!(usage.billed_requests(&PRICES), 3.0);
        assert_eq!(usage.billed_rows_written(), 10);
        let thousand = PRICES.cost(&usage).times(1_000.0);
        assert!((thousand.rows_written - 0.01).abs() < 1e-12);
        assert!((thousand.requests - 0.00045).abs() < 1e-12);
    }

    #[test]
    fn usage_adds_up_and_reads_old_records_as_zero() {
        let a = usage(1, 2, 3, 4, 5);
        assert_eq!(a.plus(Usage::default()), a);
        assert_eq!(a.plus(a), usage(2, 4, 6, 8, 10));
        let stored: Usage = serde_json::from_str(r#"{"requests":7}"#).unwrap();
        assert_eq!(stored, usage(7, 0, 0, 0, 0));
        let round: Usage = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(round, a);
    }

    #[test]
    fn the_awake_clock_counts_overlapping_events_once() {
        // (action, time, awake time added)
        let steps: &[(&str, Millis, Millis)] = &[
            ("enter", 100, 0),
            ("leave", 130, 30),
            ("leave", 140, 0), // an unmatched end adds nothing
            ("enter", 200, 0),
            ("enter", 210, 0), // a message while the alarm runs
            ("leave", 220, 0),
            ("leave", 260, 60),
            ("enter", 300, 0),
            ("leave", 299, 0), // a clock that went back adds nothing
        ];
        let mut clock = AwakeClock::default();
        for (action, at, added) in steps {
            let got = match *action {
                "enter" => {
                    clock.enter(*at);
                    0
                }
                _ => clock.leave(*at),
            };
            assert_eq!(got, *added, "{action} at {at}");
        }
        clock.enter(1_000);
        assert_eq!(clock.running(1_250), 250);
        assert_eq!(clock.leave(1_300), 300);
        assert_eq!(clock.running(1_400), 0);
    }
}
