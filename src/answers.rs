//! The `data` of the HTTP answers that are neither a job's state nor its results: creation,
//! token refresh, cancel and health (contract sections 1, 2, 4 and 6).

use crate::job::{Pipeline, Status};
use crate::time::Millis;
use serde::Serialize;

/// The 202 answer of every creation route (`CreateJob` in docs/schema/protocol.json).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CreateJobData {
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(crate::schema::rules::JOB_ID_PATTERN))
    )]
    pub job_id: String,
    pub token: String,
    /// Whole seconds the token has left.
    pub expires_in: u64,
    pub pipeline: Pipeline,
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(crate::schema::rules::WEBSOCKET_URL_PATTERN))
    )]
    pub websocket_url: String,
}

impl CreateJobData {
    pub fn new(job_id: &str, pipeline: Pipeline, token: &str, expires_in_ms: Millis) -> Self {
        Self {
            job_id: job_id.to_string(),
            token: token.to_string(),
            expires_in: expires_in_ms / 1_000,
            pipeline,
            websocket_url: format!("/ws/progress?jobId={job_id}&token={token}"),
        }
    }
}

/// The 200 answer of `POST /api/token/refresh` (`TokenRefresh`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct TokenRefreshData {
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(crate::schema::rules::JOB_ID_PATTERN))
    )]
    pub job_id: String,
    pub token: String,
    pub expires_in: u64,
}

/// The 200 answer of every cancel route (`CancelJob`): the job is now canceled.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct CancelJobData {
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(pattern(crate::schema::rules::JOB_ID_PATTERN))
    )]
    pub job_id: String,
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("const" = "canceled")))]
    pub status: Status,
}

impl CancelJobData {
    pub fn new(job_id: String) -> Self {
        Self {
            job_id,
            status: Status::Canceled,
        }
    }
}

/// The 200 answer of `GET /health` (`Health`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct HealthData {
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("const" = "ok")))]
    pub status: &'static str,
    pub version: &'static str,
    pub commit: &'static str,
}

impl HealthData {
    /// This build's answer.
    pub const CURRENT: Self = Self {
        status: "ok",
        version: crate::VERSION,
        commit: crate::COMMIT,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_serialize_in_contract_shape() {
        let id = "0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e";
        let table = [
            (
                serde_json::to_value(CreateJobData::new(id, Pipeline::AiScan, "tok", 7_200_999))
                    .unwrap(),
                json!({
                    "jobId": id, "token": "tok", "expiresIn": 7200, "pipeline": "ai_scan",
                    "websocketUrl": format!("/ws/progress?jobId={id}&token=tok"),
                }),
            ),
            (
                serde_json::to_value(TokenRefreshData {
                    job_id: id.into(),
                    token: "new".into(),
                    expires_in: 60,
                })
                .unwrap(),
                json!({"jobId": id, "token": "new", "expiresIn": 60}),
            ),
            (
                serde_json::to_value(CancelJobData::new(id.into())).unwrap(),
                json!({"jobId": id, "status": "canceled"}),
            ),
            (
                serde_json::to_value(HealthData::CURRENT).unwrap(),
                json!({"status": "ok", "version": crate::VERSION, "commit": crate::COMMIT}),
            ),
        ];
        for (got, want) in table {
            assert_eq!(got, want);
        }
    }
}
