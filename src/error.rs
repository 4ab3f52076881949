//! The one error type of the HTTP surface, and the single place that maps it to a status and code.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// Every error code of contract section 1. The HTTP status is a function of the code, so a
/// code can never be sent with the wrong status. Jobs store the code of their error in this
/// spelling too (`PROVIDER_ERROR`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidRequest,
    AuthError,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    UpgradeRequired,
    RateLimitExceeded,
    InternalError,
    ProviderError,
    ServiceUnavailable,
}

impl ErrorCode {
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidRequest => 400,
            Self::AuthError => 401,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict => 409,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::UpgradeRequired => 426,
            Self::RateLimitExceeded => 429,
            Self::InternalError => 500,
            Self::ProviderError => 502,
            Self::ServiceUnavailable => 503,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::AuthError => "AUTH_ERROR",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::Conflict => "CONFLICT",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::UpgradeRequired => "UPGRADE_REQUIRED",
            Self::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            Self::InternalError => "INTERNAL_ERROR",
            Self::ProviderError => "PROVIDER_ERROR",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
        }
    }
}

/// An error answer: code, human message, optional structured details, and for 429 the
/// whole seconds the client should wait (sent as `Retry-After` and `details.retryAfter`).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after_secs: Option<u64>,
    /// Methods for the `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            retry_after_secs: None,
            allow: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AuthError, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn too_large(limit_bytes: usize) -> Self {
        Self::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than the {limit_bytes}-byte limit of this route"),
        )
        .with_details(serde_json::json!({ "limitBytes": limit_bytes }))
    }

    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnsupportedMediaType, message)
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        let mut err = Self::new(
            ErrorCode::MethodNotAllowed,
            format!("method not allowed on this path; allowed: {allow}"),
        );
        err.allow = Some(allow);
        err
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        let mut err = Self::new(
            ErrorCode::RateLimitExceeded,
            format!("too many requests; retry in {retry_after_secs} s"),
        )
        .with_details(serde_json::json!({ "retryAfter": retry_after_secs }));
        err.retry_after_secs = Some(retry_after_secs);
        err
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalError, message)
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_contract_statuses() {
        let table = [
            (ErrorCode::InvalidRequest, 400, "INVALID_REQUEST"),
            (ErrorCode::AuthError, 401, "AUTH_ERROR"),
            (ErrorCode::NotFound, 404, "NOT_FOUND"),
            (ErrorCode::MethodNotAllowed, 405, "METHOD_NOT_ALLOWED"),
            (ErrorCode::Conflict, 409, "CONFLICT"),
            (ErrorCode::PayloadTooLarge, 413, "PAYLOAD_TOO_LARGE"),
            (
                ErrorCode::UnsupportedMediaType,
                415,
                "UNSUPPORTED_MEDIA_TYPE",
            ),
            (ErrorCode::UpgradeRequired, 426, "UPGRADE_REQUIRED"),
            (ErrorCode::RateLimitExceeded, 429, "RATE_LIMIT_EXCEEDED"),
            (ErrorCode::InternalError, 500, "INTERNAL_ERROR"),
            (ErrorCode::ProviderError, 502, "PROVIDER_ERROR"),
            (ErrorCode::ServiceUnavailable, 503, "SERVICE_UNAVAILABLE"),
        ];
        for (code, status, name) in table {
            assert_eq!(code.status(), status);
            assert_eq!(code.as_str(), name);
        }
    }

    #[test]
    fn rate_limit_carries_retry_after_in_details() {
        let err = ApiError::rate_limited(17);
        assert_eq!(err.retry_after_secs, Some(17));
        assert_eq!(err.details.unwrap()["retryAfter"], 17);
    }
}
