//! The JSON envelope every HTTP answer wears (contract section 1), built from plain values.

use crate::error::ApiError;
use crate::time::{rfc3339, Millis};
use serde::Serialize;
use serde_json::{json, Value};

/// `{data, metadata:{timestamp}}` around a successful payload.
pub fn success<T: Serialize>(data: &T, now: Millis) -> String {
    let body = json!({
        "data": data,
        "metadata": { "timestamp": rfc3339(now) },
    });
    body.to_string()
}

/// `{data:null, metadata, error:{code,message,details?}}` for an error.
pub fn failure(err: &ApiError, now: Millis) -> String {
    let mut error = json!({ "code": err.code.as_str(), "message": err.message });
    if let Some(details) = &err.details {
        error["details"] = details.clone();
    }
    json!({
        "data": Value::Null,
        "metadata": { "timestamp": rfc3339(now) },
        "error": error,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_has_data_and_timestamp_and_no_error() {
        let body: Value = serde_json::from_str(&success(&json!({"a": 1}), 0)).unwrap();
        assert_eq!(body["data"]["a"], 1);
        assert_eq!(body["metadata"]["timestamp"], "1970-01-01T00:00:00.000Z");
        assert!(body.get("error").is_none());
    }

    #[test]
    fn failure_has_null_data_code_message_and_optional_details() {
        let plain: Value =
            serde_json::from_str(&failure(&ApiError::not_found("no such job"), 0)).unwrap();
        assert!(plain["data"].is_null());
        assert_eq!(plain["error"]["code"], "NOT_FOUND");
        assert_eq!(plain["error"]["message"], "no such job");
        assert!(plain["error"].get("details").is_none());

        let detailed: Value =
            serde_json::from_str(&failure(&ApiError::rate_limited(3), 0)).unwrap();
        assert_eq!(detailed["error"]["details"]["retryAfter"], 3);
    }
}
