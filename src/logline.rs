//! Structured log lines: one JSON object per lifecycle event, never carrying a credential.

use crate::time::Millis;
use serde_json::{Map, Value};

/// How much a line matters. Console output is not free (under `wrangler dev` each line costs
/// about 2.5 ms of the request that writes it, measured), so per-request and per-chunk lines
/// are `Debug` and the default `Info` keeps one line per job lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn parse(text: &str) -> Option<Level> {
        match text.trim().to_ascii_lowercase().as_str() {
            "debug" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warn" | "warning" => Some(Level::Warn),
            "error" => Some(Level::Error),
            _ => None,
        }
    }

    /// The level of an event by name; events not listed are `Info`.
    pub fn of_event(event: &str) -> Level {
        match event {
            "socket.upgrade"
            | "socket.accepted"
            | "socket.closed"
            | "socket.release_lingering"
            | "socket.refused"
            | "step.abandoned"
            | "socket.violation"
            | "object.constructed"
            | "task.run"
            | "job.persisted"
            | "provider.call"
            | "auth.refused"
            | "auth.refused_at_edge"
            | "ratelimit.refused" => Level::Debug,
            "config.invalid"
            | "config.default_signing_key"
            | "ratelimit.unavailable"
            | "socket.error" => Level::Warn,
            "storage.write_failed" | "internal_error" => Level::Error,
            _ => Level::Info,
        }
    }
}

/// Field names that must never reach a log line, whatever a caller passes.
const FORBIDDEN_FIELDS: &[&str] = &[
    "token",
    "oldToken",
    "tokenHash",
    "hash",
    "authorization",
    "apiKey",
];

/// Builds `{"ts":..,"event":..,<fields>}`. Fields that could hold a credential are dropped,
/// so a careless call site cannot leak one.
pub fn line(event: &str, now: Millis, fields: Value) -> String {
    let mut out = Map::new();
    out.insert("ts".into(), Value::from(now));
    out.insert("event".into(), Value::from(event));
    if let Value::Object(map) = fields {
        for (k, v) in map {
            if !FORBIDDEN_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(&k)) {
                out.insert(k, v);
            }
        }
    }
    Value::Object(out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn levels() {
        let table = [
            ("socket.upgrade", Level::Debug),
            ("job.persisted", Level::Debug),
            ("job.created", Level::Info),
            ("job.completed", Level::Info),
            ("job.cost", Level::Info),
            ("task.retry", Level::Info),
            ("ratelimit.unavailable", Level::Warn),
            ("storage.write_failed", Level::Error),
            ("something.new", Level::Info),
        ];
        for (event, level) in table {
            assert_eq!(Level::of_event(event), level, "{event}");
        }
        assert_eq!(Level::parse(" DEBUG "), Some(Level::Debug));
        assert_eq!(Level::parse("loud"), None);
        assert!(Level::Debug < Level::Info && Level::Warn < Level::Error);
    }

    #[test]
    fn builds_one_json_object_and_drops_credentials() {
        let text = line(
            "job.created",
            7,
            json!({"jobId": "j", "token": "secret", "TokenHash": "h", "apiKey": "k", "n": 1}),
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["event"], "job.created");
        assert_eq!(v["ts"], 7);
        assert_eq!(v["jobId"], "j");
        assert_eq!(v["n"], 1);
        assert!(!text.contains("secret") && !text.contains("\"h\"") && !text.contains("\"k\""));
        assert!(!text.contains('\n'));
    }
}
