//! The Worker's fetch entry point: resolve the route, validate what can be validated without
//! state, and forward to the job's Durable Object.

use crate::answers::HealthData;
use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::ids::require_job_id;
use crate::json_body;
use crate::limits::{check_request, SMALL_JSON_BODY_BYTES};
use crate::protocol::UpgradeQuery;
use crate::rate_limit::Bucket;
use crate::results::PageQuery;
use crate::routes::{self, Resolved, Route};
use crate::runtime::create;
use crate::runtime::edge::Ctx;
use crate::runtime::job_object::stub_for;
use crate::runtime::{console, http};
use serde::Deserialize;
use serde_json::json;
use worker::js_sys::Uint8Array;
use worker::{event, Context, Env, Headers, Method, Request, RequestInit, Response};

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let config = http::config(&env);
    warn_about_config_once(&config);
    let origin = http::header(&req, "origin");
    let resolved = request_size(&req).and_then(|()| {
        routes::resolve(
            req.method().as_ref(),
            &req.path(),
            config.enable_test_routes,
            config.console_enabled,
        )
    });
    let response = match resolved {
        Ok(Resolved::Preflight) => return Ok(http::preflight(&config, origin.as_deref())),
        Ok(Resolved::Route(_)) if config.unavailable_reason().is_some() => {
            http::error(&unavailable(&config))
        }
        Ok(Resolved::Route(route)) => {
            let ctx = Ctx {
                env: &env,
                config: &config,
                client_ip: http::header(&req, "cf-connecting-ip"),
            };
            http::result(dispatch(&ctx, route, req).await)
        }
        Err(err) => http::error(&err),
    };
    Ok(http::with_cors(response, &config, origin.as_deref()))
}

/// The answer of `/health` and every job route while the deployment cannot run safely
/// (contract 9.6): production mode without the `TOKEN_SIGNING_KEY` secret.
fn unavailable(config: &Config) -> ApiError {
    let reason = config.unavailable_reason().unwrap_or("misconfigured");
    ApiError::new(
        ErrorCode::ServiceUnavailable,
        format!("the service is not configured: {reason}"),
    )
}

/// Logs configuration problems once per isolate: values that fell back to their defaults,
/// and a missing signing key.
fn warn_about_config_once(config: &Config) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    for warning in &config.warnings {
        http::log("config.invalid", json!({ "warning": warning }));
    }
    if config.signing_key_is_default {
        let warning = match config.unavailable_reason() {
            Some(_) => "TOKEN_SIGNING_KEY is not set: /health and every job route answer 503 until it is (wrangler secret put TOKEN_SIGNING_KEY)",
            None => "TOKEN_SIGNING_KEY is not set: signing with the public development key",
        };
        http::log(
            "config.default_signing_key",
            json!({ "warning": warning, "environment": config.environment.as_str() }),
        );
    }
}

fn request_size(req: &Request) -> Result<(), ApiError> {
    let url = req
        .url()
        .map_err(|_| ApiError::invalid("the URL cannot be parsed"))?;
    let header_bytes = req
        .headers()
        .entries()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    check_request(url.path(), url.query(), header_bytes)
}

async fn dispatch(ctx: &Ctx<'_>, route: Route, mut req: Request) -> Result<Response, ApiError> {
    let env = ctx.env;
    match route {
        Route::Health => Ok(http::ok(200, &HealthData::CURRENT)),
        Route::CreateSyntheticJob => create::synthetic_job(ctx, &mut req).await,
        Route::CreateScan => create::single_scan(ctx, &mut req).await,
        Route::CreateScanBatch => create::batch_scan(ctx, &mut req).await,
        Route::CreateEnrichment => create::enrichment(ctx, &mut req).await,
        Route::CreateCsvImport => create::csv_import(ctx, &mut req).await,
        Route::JobState { job_id } => {
            let job_id = require_job_id(&job_id)?;
            ctx.edge_auth(&job_id, http::bearer(&req).as_deref())?;
            ctx.limit(Bucket::Read).await?;
            forward(env, &job_id, Method::Get, "/internal/state", &req, None).await
        }
        Route::TokenRefresh => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Body {
                job_id: Option<String>,
                old_token: Option<String>,
            }
            // Counted before the body is read: every refresh that passes the declared-length
            // check uses the client's quota, whatever the body turns out to hold.
            http::check_declared_length(&req, SMALL_JSON_BODY_BYTES)?;
            ctx.limit(Bucket::Refresh).await?;
            let raw = http::read_body_limited(&mut req, SMALL_JSON_BODY_BYTES).await?;
            let body: Body = json_body::parse(&raw)?;
            let job_id = require_job_id(body.job_id.as_deref().unwrap_or(""))?;
            // A refresh names the token it replaces (contract 9.6: 400 without it).
            let old_token = body.old_token.filter(|t| !t.is_empty()).ok_or_else(|| {
                ApiError::invalid("oldToken is required: the token this refresh replaces")
                    .with_details(json!({ "field": "oldToken" }))
            })?;
            ctx.edge_auth(&job_id, Some(&old_token))?;
            let forwarded =
                serde_json::to_vec(&json!({ "oldToken": old_token })).unwrap_or_default();
            forward(
                env,
                &job_id,
                Method::Post,
                "/internal/refresh",
                &req,
                Some(forwarded),
            )
            .await
        }
        Route::CancelById { job_id } => {
            let job_id = require_job_id(&job_id)?;
            ctx.edge_auth(&job_id, http::bearer(&req).as_deref())?;
            forward(env, &job_id, Method::Post, "/internal/cancel", &req, None).await
        }
        Route::CancelByBody => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Body {
                job_id: Option<String>,
            }
            let raw = http::read_body_limited(&mut req, SMALL_JSON_BODY_BYTES).await?;
            let body: Body = json_body::parse(&raw)?;
            let job_id = require_job_id(body.job_id.as_deref().unwrap_or(""))?;
            ctx.edge_auth(&job_id, http::bearer(&req).as_deref())?;
            forward(env, &job_id, Method::Post, "/internal/cancel", &req, None).await
        }
        Route::Results { pipeline, job_id } => {
            let job_id = require_job_id(&job_id)?;
            ctx.edge_auth(&job_id, http::bearer(&req).as_deref())?;
            // Checked here too, so a malformed request never reaches an object.
            let query = PageQuery::from_pairs(&http::query_pairs(&req)?)?;
            ctx.limit(Bucket::Read).await?;
            let path = format!(
                "/internal/results/{}?{}",
                pipeline.results_segment(),
                query.to_query()
            );
            forward(env, &job_id, Method::Get, &path, &req, None).await
        }
        Route::ProgressSocket => upgrade(ctx, req).await,
        Route::Console(asset) => Ok(console::response(asset)),
    }
}

/// Forwards a request about an existing job, carrying its Authorization header only: a
/// token in the query string of these routes is ignored (contract section 4).
async fn forward(
    env: &Env,
    job_id: &str,
    method: Method,
    path: &str,
    req: &Request,
    body: Option<Vec<u8>>,
) -> Result<Response, ApiError> {
    let headers = Headers::new();
    if let Some(auth) = http::header(req, "authorization") {
        let _ = headers.set("authorization", &auth);
    }
    let mut init = RequestInit::new();
    if let Some(body) = body {
        let _ = headers.set("content-type", "application/json");
        init.with_body(Some(Uint8Array::from(body.as_slice()).into()));
    }
    init.with_method(method).with_headers(headers);
    let request = Request::new_with_init(&format!("https://job.internal{path}"), &init)
        .map_err(|e| http::internal("building a job request", e))?;
    stub_for(env, job_id)?
        .fetch_with_request(request)
        .await
        .map_err(|e| http::internal("asking the job object", e))
}

/// `GET /ws/progress`: the stateless checks happen here, in the contract's order (426, then
/// 400), then the client's upgrade limit (429); the object answers 404/401 and accepts the
/// socket.
async fn upgrade(ctx: &Ctx<'_>, req: Request) -> Result<Response, ApiError> {
    if !http::is_websocket_upgrade(&req) {
        return Err(ApiError::new(
            ErrorCode::UpgradeRequired,
            "this route needs Upgrade: websocket",
        ));
    }
    let query = UpgradeQuery::from_pairs(&http::query_pairs(&req)?)?;
    ctx.edge_auth(&query.job_id, query.token.as_deref())?;
    ctx.limit(Bucket::Upgrade).await?;
    let started = http::now();
    let response = stub_for(ctx.env, &query.job_id)?
        .fetch_with_request(req)
        .await
        .map_err(|e| http::internal("upgrading through the job object", e))?;
    http::log(
        "socket.upgrade",
        json!({ "jobId": query.job_id, "status": response.status_code(), "ms": http::now().saturating_sub(started) }),
    );
    Ok(response)
}
