//! Structured log lines: one JSON object per lifecycle event, never carrying a credential.

use crate::time::Millis;
use serde_json::{Map, Value};

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
