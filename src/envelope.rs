//! The JSON envelope every HTTP answer wears (contract section 1), built from plain values.

use crate::error::{ApiError, ErrorCode};
use crate::time::{rfc3339, Millis};
use serde::Serialize;
use serde_json::Value;

/// `{timestamp}`: when the answer was made, RFC 3339 in UTC with milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct Metadata {
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(crate::schema::rules::TIMESTAMP_PATTERN))
    )]
    pub timestamp: String,
}

impl Metadata {
    fn at(now: Millis) -> Self {
        Self {
            timestamp: rfc3339(now),
        }
    }
}

/// A successful answer: `{data, metadata}`, never an `error`.
#[derive(Debug, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct Success<'a, T> {
    pub data: &'a T,
    pub metadata: Metadata,
}

/// An error answer: `{data: null, metadata, error}`.
#[derive(Debug, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct Failure<'a> {
    /// Always `null` on an error.
    pub data: (),
    pub metadata: Metadata,
    pub error: ErrorBody<'a>,
}

/// `error` of an error answer: the code to branch on, a message for people, and the details
/// the protocol names for some errors.
#[derive(Debug, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct ErrorBody<'a> {
    pub code: ErrorCode,
    pub message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<serde_json::Map<String, Value>>")
    )]
    pub details: Option<&'a Value>,
}

/// `{data, metadata:{timestamp}}` around a successful payload.
pub fn success<T: Serialize>(data: &T, now: Millis) -> String {
    serde_json::to_string(&Success {
        data,
        metadata: Metadata::at(now),
    })
    .unwrap_or_default()
}

/// `{data:null, metadata, error:{code,message,details?}}` for an error.
pub fn failure(err: &ApiError, now: Millis) -> String {
    serde_json::to_string(&Failure {
        data: (),
        metadata: Metadata::at(now),
        error: ErrorBody {
            code: err.code,
            message: &err.message,
            details: err.details.as_ref(),
        },
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
