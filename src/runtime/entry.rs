//! The Worker's fetch entry point: resolve the route, validate what can be validated without
//! state, and forward to the job's Durable Object.

use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{issue_job_id, issued_at, parse_job_id};
use crate::internal::{self, Blob, CreateJob};
use crate::job::Pipeline;
use crate::json_body;
use crate::limits::{
    check_request, single_query_param, CSV_BODY_BYTES, CSV_HEADER_WINDOW_BYTES,
    ENRICHMENT_BODY_BYTES, MULTIPART_OVERHEAD_BYTES, SMALL_JSON_BODY_BYTES,
};
use crate::multipart;
use crate::pipelines::csv::{
    format_hint, read_header_with, HeaderError, ImportTotals, MAX_HEADER_COLUMNS,
};
use crate::pipelines::enrich;
use crate::pipelines::scan::request::{self as scan_request, ScanImage};
use crate::pipelines::synthetic;
use crate::pipelines::work::{CsvWork, EnrichWork, ScanPhoto, ScanWork, Work};
use crate::rate_limit::Bucket;
use crate::routes::{self, Resolved, Route};
use crate::runtime::http;
use crate::runtime::job_object::stub_for;
use crate::runtime::pipelines::{CSV_INPUT_PREFIX, ENRICH_INPUT_KEY};
use crate::runtime::rate_limiter::{self, Decision};
use crate::time::Millis;
use crate::token::{self, TokenSigner};
use serde::Deserialize;
use serde_json::json;
use worker::js_sys::Uint8Array;
use worker::{event, Context, Env, Headers, Method, Request, RequestInit, Response};

/// How long before the end of its guaranteed lifetime a job issued here is no longer assumed
/// to exist, allowing for clock differences between machines.
const EXISTENCE_MARGIN_MS: Millis = 60_000;

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
        )
    });
    let response = match resolved {
        Ok(Resolved::Preflight) => return Ok(http::preflight(&config, origin.as_deref())),
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
        http::log(
            "config.default_signing_key",
            json!({ "warning": "TOKEN_SIGNING_KEY is not set; set it with wrangler secret put" }),
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

/// What every handler needs besides the request.
struct Ctx<'a> {
    env: &'a Env,
    config: &'a Config,
    client_ip: Option<String>,
}

impl Ctx<'_> {
    /// Counts the request against the client's per-minute limit for `bucket`: 429 when it is
    /// used up. Called after validation, so only well-formed requests count, and a refused
    /// request has no other effect.
    async fn limit(&self, bucket: Bucket) -> Result<(), ApiError> {
        match rate_limiter::acquire(self.env, self.client_ip.as_deref(), bucket).await {
            Decision::Allowed => Ok(()),
            Decision::Refused { retry_after_secs } => {
                http::log("ratelimit.refused", json!({ "bucket": bucket.as_str() }));
                Err(ApiError::rate_limited(retry_after_secs))
            }
        }
    }

    fn signing_key(&self) -> &[u8] {
        self.config.token_signing_key.as_bytes()
    }

    fn fresh_job_id(&self) -> String {
        let mut random = [0u8; 8];
        // Workers always provide crypto.getRandomValues; without it nothing here could work.
        let _ = getrandom::fill(&mut random);
        issue_job_id(self.signing_key(), http::now(), random)
    }

    /// Refuses, without touching any object, a request for a job this server issued so
    /// recently that it must still exist, when its token is missing or was never issued for
    /// it. Every other request goes to the job's object, which answers 404 before 401 as
    /// the contract orders.
    fn edge_auth(&self, job_id: &str, token: Option<&str>) -> Result<(), ApiError> {
        let Some(issued) = issued_at(self.signing_key(), job_id) else {
            return Ok(());
        };
        let certain_until =
            (issued + self.config.results_ttl_ms).saturating_sub(EXISTENCE_MARGIN_MS);
        if http::now() >= certain_until {
            return Ok(());
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

async fn dispatch(ctx: &Ctx<'_>, route: Route, mut req: Request) -> Result<Response, ApiError> {
    let env = ctx.env;
    match route {
        Route::Health => Ok(http::ok(
            200,
            &json!({ "status": "ok", "version": crate::VERSION, "commit": crate::COMMIT }),
        )),
        Route::CreateSyntheticJob => {
            let body = http::read_body_limited(&mut req, SMALL_JSON_BODY_BYTES).await?;
            let (spec, proposed) = synthetic::parse_spec(&body)?;
            let create = CreateJob {
                job_id: proposed.unwrap_or_else(|| ctx.fresh_job_id()),
                pipeline: spec.pipeline,
                total_count: spec.items,
                work: Work::Synthetic(spec),
                blobs: Vec::new(),
            };
            create_job(env, create, &[]).await
        }
        Route::CreateScan => {
            let content_type = http::header(&req, "content-type");
            let body =
                http::read_body_limited(&mut req, scan_request::MAX_SINGLE_BODY_BYTES).await?;
            let image = scan_request::parse_single(content_type.as_deref(), body)?;
            ctx.limit(Bucket::Scan).await?;
            create_scan(env, ctx.fresh_job_id(), vec![image]).await
        }
        Route::CreateScanBatch => {
            require_json(&req)?;
            let body =
                http::read_body_limited(&mut req, scan_request::MAX_BATCH_BODY_BYTES).await?;
            let batch = scan_request::parse_batch(&body)?;
            ctx.limit(Bucket::Scan).await?;
            let job_id = batch.job_id.unwrap_or_else(|| ctx.fresh_job_id());
            create_scan(env, job_id, batch.images).await
        }
        Route::CreateEnrichment => {
            require_json(&req)?;
            let body = http::read_body_limited(&mut req, ENRICHMENT_BODY_BYTES).await?;
            let request = enrich::parse_request(&body)?;
            ctx.limit(Bucket::Enrichment).await?;
            let books = serde_json::to_vec(&request.books)
                .map_err(|e| http::internal("encoding books", e))?;
            let create = CreateJob {
                job_id: request.job_id.unwrap_or_else(|| ctx.fresh_job_id()),
                pipeline: Pipeline::BatchEnrichment,
                total_count: request.books.len() as u64,
                work: Work::Enrich(EnrichWork::new(request.books.len())),
                blobs: vec![Blob {
                    key: ENRICH_INPUT_KEY.into(),
                    len: books.len(),
                }],
            };
            create_job(env, create, &books).await
        }
        Route::CreateCsvImport => {
            let query_format = csv_query_format(&req)?;
            let (file, field_format) = read_csv_upload(&mut req).await?;
            let hint = format_hint(query_format.as_deref(), field_format.as_deref()).map_err(
                |message| ApiError::invalid(message).with_details(json!({ "field": "format" })),
            )?;
            // The header is checked before any job exists (contract section 2).
            let prefix = &file[..file.len().min(CSV_HEADER_WINDOW_BYTES)];
            let (header, cursor) = read_header_with(prefix, prefix.len() == file.len(), hint)
                .map_err(csv_header_error)?;
            ctx.limit(Bucket::Csv).await?;
            let create = CreateJob {
                job_id: ctx.fresh_job_id(),
                pipeline: Pipeline::CsvImport,
                total_count: 0,
                work: Work::Csv(CsvWork {
                    header,
                    cursor,
                    totals: ImportTotals::default(),
                    bytes: file.len(),
                    result_slices: 0,
                }),
                blobs: blobs_for(CSV_INPUT_PREFIX, file.len()),
            };
            create_job(env, create, &file).await
        }
        Route::JobState { job_id } => {
            let job_id = valid_job_id(&job_id)?;
            ctx.edge_auth(&job_id, http::bearer(&req).as_deref())?;
            forward(env, &job_id, Method::Get, "/internal/state", &req, None).await
        }
        Route::TokenRefresh => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Body {
                job_id: Option<String>,
                old_token: Option<String>,
            }
            let raw = http::read_body_limited(&mut req, SMALL_JSON_BODY_BYTES).await?;
            let body: Body = json_body::parse(&raw)?;
            let job_id = valid_job_id(body.job_id.as_deref().unwrap_or(""))?;
            ctx.edge_auth(&job_id, body.old_token.as_deref())?;
            let old_token = body
                .old_token
                .filter(|t| !t.is_empty())
                .ok_or_else(|| ApiError::auth("missing oldToken"))?;
            ctx.limit(Bucket::Refresh).await?;
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
            let job_id = valid_job_id(&job_id)?;
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
            let job_id = valid_job_id(body.job_id.as_deref().unwrap_or(""))?;
            ctx.edge_auth(&job_id, http::bearer(&req).as_deref())?;
            forward(env, &job_id, Method::Post, "/internal/cancel", &req, None).await
        }
        Route::Results { pipeline, job_id } => {
            let job_id = valid_job_id(&job_id)?;
            ctx.edge_auth(&job_id, http::bearer(&req).as_deref())?;
            let path = format!("/internal/results/{}", pipeline.results_segment());
            forward(env, &job_id, Method::Get, &path, &req, None).await
        }
        Route::ProgressSocket => upgrade(ctx, req).await,
    }
}

/// Media types a CSV upload may declare: the standard one and those browsers and spreadsheet
/// programs commonly send for `.csv` files.
const CSV_MEDIA_TYPES: &[&str] = &[
    "text/csv",
    "application/csv",
    "text/comma-separated-values",
    "application/vnd.ms-excel",
];

/// The `format` query parameter of a CSV upload (contract 9.1), if given once.
fn csv_query_format(req: &Request) -> Result<Option<String>, ApiError> {
    let url = req
        .url()
        .map_err(|e| http::internal("reading the URL", e))?;
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    Ok(single_query_param(&pairs, "format")?.map(str::to_owned))
}

/// Reads a CSV upload: a raw body of a CSV media type, or the `file` field of a multipart
/// form, with the form's `format` field if any. Over 10 MiB is 413, other media types are 415.
async fn read_csv_upload(req: &mut Request) -> Result<(Vec<u8>, Option<Vec<u8>>), ApiError> {
    let media = http::media_type(req).unwrap_or_default();
    if CSV_MEDIA_TYPES.contains(&media.as_str()) {
        return Ok((http::read_body_limited(req, CSV_BODY_BYTES).await?, None));
    }
    if media != "multipart/form-data" {
        let shown = if media.is_empty() {
            "missing"
        } else {
            media.as_str()
        };
        return Err(ApiError::unsupported_media(format!(
            "Content-Type {shown} is not accepted; send text/csv, or multipart/form-data with a `file` field"
        )));
    }
    let content_type = http::header(req, "content-type").unwrap_or_default();
    let body = http::read_body_limited(req, CSV_BODY_BYTES + MULTIPART_OVERHEAD_BYTES).await?;
    let boundary = multipart::boundary(&content_type)
        .ok_or_else(|| ApiError::invalid("multipart/form-data needs a boundary parameter"))?;
    let parts = multipart::parse(&body, &boundary).map_err(|e| e.to_api_error())?;
    let file = multipart::find_field(&parts, "file")
        .ok_or_else(|| ApiError::invalid("the multipart form has no `file` field"))?;
    if file.data.len() > CSV_BODY_BYTES {
        return Err(ApiError::too_large(CSV_BODY_BYTES));
    }
    let format = multipart::find_field(&parts, "format").map(|part| part.data.clone());
    Ok((file.data.clone(), format))
}

fn csv_header_error(err: HeaderError) -> ApiError {
    let details = match &err {
        HeaderError::NoTitleColumn { columns_found } => json!({ "columnsFound": columns_found }),
        HeaderError::Empty => json!({ "reason": "empty" }),
        HeaderError::TooManyColumns { count } => {
            json!({ "reason": "too_many_columns", "columns": count, "maxColumns": MAX_HEADER_COLUMNS })
        }
        HeaderError::TooLong { limit } => {
            json!({ "reason": "header_too_long", "limitBytes": limit })
        }
    };
    ApiError::invalid(format!(
        "the CSV header cannot be imported: {}",
        err.message()
    ))
    .with_details(details)
}

/// The JSON creation routes take `application/json` only (contract section 1: 415).
fn require_json(req: &Request) -> Result<(), ApiError> {
    match http::media_type(req).as_deref() {
        Some("application/json") => Ok(()),
        Some(other) => Err(ApiError::unsupported_media(format!(
            "Content-Type {other} is not accepted here; send application/json"
        ))),
        None => Err(ApiError::unsupported_media(
            "Content-Type is missing; send application/json",
        )),
    }
}

/// Creates a scan job whose photos are stored in slices, one series per photo.
async fn create_scan(
    env: &Env,
    job_id: String,
    images: Vec<ScanImage>,
) -> Result<Response, ApiError> {
    let mut blobs = Vec::new();
    let mut data = Vec::with_capacity(images.iter().map(|i| i.bytes.len()).sum());
    let mut photos = Vec::with_capacity(images.len());
    for (position, image) in images.into_iter().enumerate() {
        blobs.extend(blobs_for(
            &ScanPhoto::slice_prefix(position),
            image.bytes.len(),
        ));
        photos.push(ScanPhoto::new(image.index, image.kind, image.bytes.len()));
        data.extend_from_slice(&image.bytes);
    }
    let create = CreateJob {
        job_id,
        pipeline: Pipeline::AiScan,
        total_count: photos.len() as u64,
        work: Work::Scan(ScanWork { photos }),
        blobs,
    };
    create_job(env, create, &data).await
}

fn valid_job_id(raw: &str) -> Result<String, ApiError> {
    parse_job_id(raw).ok_or_else(|| {
        ApiError::invalid("jobId must be a UUID like 0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e")
            .with_details(json!({ "field": "jobId" }))
    })
}

/// Sends a creation to the job's object, with its inputs stored under the given blobs.
pub async fn create_job(env: &Env, create: CreateJob, data: &[u8]) -> Result<Response, ApiError> {
    debug_assert_eq!(
        create.blobs.iter().map(|b| b.len).sum::<usize>(),
        data.len()
    );
    let job_id = create.job_id.clone();
    let body = internal::encode(&create, data);
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(Uint8Array::from(body.as_slice()).into()));
    let request = Request::new_with_init("https://job.internal/internal/create", &init)
        .map_err(|e| http::internal("building a create request", e))?;
    stub_for(env, &job_id)?
        .fetch_with_request(request)
        .await
        .map_err(|e| http::internal("creating the job", e))
}

/// Names the slices a pipeline input is stored in.
pub fn blobs_for(prefix: &str, len: usize) -> Vec<Blob> {
    internal::slices(prefix, len)
        .into_iter()
        .map(|(key, range)| Blob {
            key,
            len: range.len(),
        })
        .collect()
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
/// 400); the object answers 404/401 and accepts the socket.
async fn upgrade(ctx: &Ctx<'_>, req: Request) -> Result<Response, ApiError> {
    if !http::header(&req, "upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return Err(ApiError::new(
            ErrorCode::UpgradeRequired,
            "this route needs Upgrade: websocket",
        ));
    }
    let url = req
        .url()
        .map_err(|e| http::internal("reading the URL", e))?;
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let job_id = valid_job_id(single_query_param(&pairs, "jobId")?.unwrap_or_default())?;
    let token = single_query_param(&pairs, "token")?;
    single_query_param(&pairs, "reconnect")?;
    ctx.edge_auth(&job_id, token)?;
    let started = http::now();
    let response = stub_for(ctx.env, &job_id)?
        .fetch_with_request(req)
        .await
        .map_err(|e| http::internal("upgrading through the job object", e))?;
    http::log(
        "socket.upgrade",
        json!({ "jobId": job_id, "status": response.status_code(), "ms": http::now().saturating_sub(started) }),
    );
    Ok(response)
}
