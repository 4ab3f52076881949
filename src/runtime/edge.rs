//! What every Worker request handler shares: the configuration, the client's rate limits,
//! fresh job ids, and the refusal of forged tokens before any object is touched.

use crate::config::Config;
use crate::error::ApiError;
use crate::ids::{self, issue_job_id, Provenance};
use crate::rate_limit::Bucket;
use crate::runtime::http;
use crate::runtime::rate_limiter::{self, Decision};
use crate::token::{self, TokenSigner};
use serde_json::json;
use worker::Env;

/// What every handler needs besides the request.
pub struct Ctx<'a> {
    pub env: &'a Env,
    pub config: &'a Config,
    pub client_ip: Option<String>,
}

impl Ctx<'_> {
    /// Counts the request against the client's per-minute limit for `bucket`: 429 when it is
    /// used up, and then the request has no other effect. Each route calls it after the
    /// checks it can make without reading a body or asking an object, and before those.
    pub async fn limit(&self, bucket: Bucket) -> Result<(), ApiError> {
        match rate_limiter::acquire(self.env, self.client_ip.as_deref(), bucket).await {
            Decision::Allowed => Ok(()),
            Decision::Refused {
                retry_after_secs,
                scope,
            } => {
                http::log(
                    "ratelimit.refused",
                    json!({ "bucket": bucket.as_str(), "scope": scope, "retryAfter": retry_after_secs }),
                );
                Err(ApiError::rate_limited(retry_after_secs))
            }
        }
    }

    fn signing_key(&self) -> &[u8] {
        self.config.token_signing_key.as_bytes()
    }

    pub fn fresh_job_id(&self) -> String {
        let mut random = [0u8; 8];
        // Workers always provide crypto.getRandomValues; without it nothing here could work.
        let _ = getrandom::fill(&mut random);
        issue_job_id(self.signing_key(), http::now(), random)
    }

    /// A job id a client proposed, refused (400) when it claims an issue time in the future.
    pub fn proposed_job_id(&self, proposed: Option<String>) -> Result<Option<String>, ApiError> {
        if let Some(id) = &proposed {
            ids::check_proposed(self.signing_key(), id, http::now())?;
        }
        Ok(proposed)
    }

    /// Refuses, without touching any object, a request for a job this server issued so
    /// recently that it must still exist, when its token is missing or was never issued for
    /// it (401), and one for an id whose issue time is in the future, which no job has (404).
    /// Every other request goes to the job's object, which answers 404 before 401 as the
    /// contract orders.
    pub fn edge_auth(&self, job_id: &str, token: Option<&str>) -> Result<(), ApiError> {
        let now = http::now();
        match ids::provenance(self.signing_key(), job_id, now, self.config.results_ttl_ms) {
            Provenance::Foreign | Provenance::Old => return Ok(()),
            Provenance::Future => {
                http::log(
                    "auth.refused_at_edge",
                    json!({ "jobId": job_id, "reason": "issued in the future" }),
                );
                return Err(ApiError::not_found("no such job"));
            }
            Provenance::Recent => {}
        }
        let refused = match token.filter(|t| !t.is_empty()) {
            None => token::TokenError::Missing,
            Some(t) if TokenSigner::new(self.signing_key()).is_authentic(job_id, t) => {
                return Ok(())
            }
            Some(_) => token::TokenError::Wrong,
        };
        http::log(
            "auth.refused_at_edge",
            json!({ "jobId": job_id, "reason": refused.message() }),
        );
        Err(ApiError::auth(refused.message()))
    }
}
