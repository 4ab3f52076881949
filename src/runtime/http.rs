//! HTTP glue: envelope responses, CORS, bounded body reading, the clock and the env lookup.

use crate::config::Config;
use crate::envelope;
use crate::error::ApiError;
use crate::logline::Level;
use crate::time::Millis;
use futures::StreamExt;
use serde::Serialize;
use std::sync::atomic::{AtomicU8, Ordering};
use worker::{js_sys, wasm_bindgen::JsValue, Env, Headers, Request, Response};

/// `Date.now()` itself: `worker::Date::now()` builds a `Date` object to read it from.
pub fn now() -> Millis {
    js_sys::Date::now() as Millis
}

/// Reads a var or secret as text; numbers written unquoted in wrangler.toml count too.
pub fn env_text(env: &Env, name: &str) -> Option<String> {
    let value = js_sys::Reflect::get(env.as_ref(), &JsValue::from_str(name)).ok()?;
    value
        .as_string()
        .or_else(|| value.as_f64().map(|n| n.to_string()))
}

/// The configuration, which also sets this isolate's log level. Read from `env` once per
/// isolate (an isolate serves one deployment, whose vars and secrets do not change under it):
/// each read is some thirty calls out of wasm, and every request and object construction
/// needs it.
pub fn config(env: &Env) -> Config {
    thread_local! {
        static CONFIG: std::cell::OnceCell<Config> = const { std::cell::OnceCell::new() };
    }
    CONFIG.with(|cell| {
        cell.get_or_init(|| {
            let config = Config::from_lookup(|name| env_text(env, name));
            LOG_THRESHOLD.store(config.log_level as u8, Ordering::Relaxed);
            config
        })
        .clone()
    })
}

/// The least important level logged by this isolate; set from `LOG_LEVEL` with the config.
static LOG_THRESHOLD: AtomicU8 = AtomicU8::new(Level::Info as u8);

fn json_response(status: u16, body: String, headers: Headers) -> Response {
    // Setting a header on a fresh `Headers` only fails for invalid names, and these are
    // constants.
    let _ = headers.set("content-type", "application/json; charset=utf-8");
    Response::builder()
        .with_status(status)
        .with_headers(headers)
        .fixed(body.into_bytes())
}

pub fn ok<T: Serialize>(status: u16, data: &T) -> Response {
    json_response(status, envelope::success(data, now()), Headers::new())
}

/// The one place an [`ApiError`] becomes an HTTP response.
pub fn error(err: &ApiError) -> Response {
    let headers = Headers::new();
    if let Some(secs) = err.retry_after_secs {
        let _ = headers.set("retry-after", &secs.to_string());
    }
    if let Some(allow) = err.allow {
        let _ = headers.set("allow", allow);
    }
    json_response(err.status(), envelope::failure(err, now()), headers)
}

pub fn result(outcome: Result<Response, ApiError>) -> Response {
    outcome.unwrap_or_else(|err| error(&err))
}

/// Maps a runtime error from glue code to a 500 without exposing internals to the client.
pub fn internal(context: &str, err: impl std::fmt::Display) -> ApiError {
    log(
        "internal_error",
        serde_json::json!({ "context": context, "error": err.to_string() }),
    );
    ApiError::internal(format!("internal error while {context}"))
}

/// Adds CORS headers for `origin`; WebSocket upgrades (101) pass through untouched.
pub fn with_cors(mut response: Response, config: &Config, origin: Option<&str>) -> Response {
    if response.status_code() == 101 {
        return response;
    }
    let headers = response.headers_mut();
    if let Some(allowed) = config.cors_origin(origin) {
        let _ = headers.set("access-control-allow-origin", &allowed);
        if allowed != "*" {
            let _ = headers.append("vary", "Origin");
        }
        let _ = headers.set("access-control-expose-headers", "Retry-After");
    }
    response
}

/// The 204 answer to a preflight.
pub fn preflight(config: &Config, origin: Option<&str>) -> Response {
    let headers = Headers::new();
    let _ = headers.set("access-control-allow-methods", "GET, POST, OPTIONS");
    let _ = headers.set(
        "access-control-allow-headers",
        "Authorization, Content-Type, Idempotency-Key",
    );
    let _ = headers.set("access-control-max-age", "86400");
    let response = Response::builder()
        .with_status(204)
        .with_headers(headers)
        .empty();
    with_cors(response, config, origin)
}

pub fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// The token of an `Authorization: Bearer` header.
pub fn bearer(req: &Request) -> Option<String> {
    crate::token::bearer(header(req, "authorization").as_deref()).map(str::to_string)
}

/// Refuses, without reading anything, a body whose declared `Content-Length` is over `limit`
/// (413) or not a number (400).
pub fn check_declared_length(req: &Request, limit: usize) -> Result<(), ApiError> {
    let Some(declared) = header(req, "content-length") else {
        return Ok(());
    };
    match declared.trim().parse::<u64>() {
        Ok(n) if n > limit as u64 => Err(ApiError::too_large(limit)),
        Ok(_) => Ok(()),
        Err(_) => Err(ApiError::invalid("Content-Length is not a number")),
    }
}

/// The chunk size for a body of unknown length.
const UNDECLARED_CHUNK_BYTES: usize = 64 * 1024;

/// How much more of a body that passed its limit is read and dropped before the 413. Under
/// `wrangler dev`, a body abandoned while the client still sends it sometimes reached the
/// client as a 500 "Network connection lost" instead of the 413 (an 11 MiB upload to the
/// 10 MiB CSV route, 1 run in 8 on a loaded machine; workers-sdk issue 15709 reports the
/// same, and that reading to the end let the 413 through). Bounded, so a client sending
/// without end still costs at most this much more reading.
const OVER_LIMIT_DRAIN_BYTES: usize = 4 * 1024 * 1024;

/// Reads a request body, refusing with 413 as soon as it passes `limit` bytes: a declared
/// `Content-Length` over the limit is refused before reading, and a body without one is read
/// as a stream and refused at the limit, never buffered whole (what follows, up to
/// [`OVER_LIMIT_DRAIN_BYTES`], is read and dropped first).
pub async fn read_body_limited(req: &mut Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    check_declared_length(req, limit)?;
    // Sized once from a declared length (already checked against the limit): growing by
    // doubling would hold the old and the new buffer at once, up to three times the body.
    let declared = header(req, "content-length").and_then(|n| n.trim().parse::<usize>().ok());
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    // Chunks as large as the declared body (up to a slice): one or a few reads, not one per
    // few KiB the runtime receives.
    let chunk = declared.map_or(UNDECLARED_CHUNK_BYTES, |n| n.min(limit).saturating_add(1));
    let Some(mut stream) = super::body::chunks(req, chunk) else {
        // No body at all.
        return Ok(body);
    };
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::invalid("the request body could not be read"))?;
        if body.len() + chunk.len() > limit {
            drop(body);
            let mut drained = chunk.len();
            while drained <= OVER_LIMIT_DRAIN_BYTES {
                match stream.next().await {
                    Some(Ok(more)) => drained += more.len(),
                    _ => break,
                }
            }
            return Err(ApiError::too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The media type of a request, lowercased, without parameters.
pub fn media_type(req: &Request) -> Option<String> {
    header(req, "content-type").map(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    })
}

/// Whether `event` is logged at this isolate's `LOG_LEVEL`: callers whose fields cost a call
/// out of wasm ask first.
pub fn logs(event: &str) -> bool {
    Level::of_event(event) as u8 >= LOG_THRESHOLD.load(Ordering::Relaxed)
}

/// Writes one structured log line, if its event's level is at least `LOG_LEVEL`.
pub fn log(event: &str, fields: serde_json::Value) {
    let level = Level::of_event(event);
    if !logs(event) {
        return;
    }
    let line = crate::logline::line(event, now(), fields);
    if level >= Level::Warn {
        worker::console_error!("{line}");
    } else {
        worker::console_log!("{line}");
    }
}

/// True for a request asking to upgrade to a WebSocket.
pub fn is_websocket_upgrade(req: &Request) -> bool {
    header(req, "upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

/// The request's query, percent-decoded into pairs.
pub fn query_pairs(req: &Request) -> Result<Vec<(String, String)>, ApiError> {
    let url = req
        .url()
        .map_err(|_| ApiError::invalid("the URL cannot be parsed"))?;
    Ok(url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}
