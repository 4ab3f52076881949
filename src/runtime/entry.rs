//! The Worker's fetch entry point: resolve the route, answer or forward to the job's object.

use crate::error::ApiError;
use crate::routes::{self, Resolved, Route};
use crate::runtime::http;
use serde_json::json;
use worker::{event, Context, Env, Request, Response};

#[event(start)]
fn start() {
    console_error_panic_hook::set_once();
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let config = http::config(&env);
    let origin = http::header(&req, "origin");
    let response = match routes::resolve(req.method().as_ref(), &req.path()) {
        Ok(Resolved::Preflight) => return Ok(http::preflight(&config, origin.as_deref())),
        Ok(Resolved::Route(route)) => http::result(dispatch(route, req, &env).await),
        Err(err) => http::error(&err),
    };
    Ok(http::with_cors(response, &config, origin.as_deref()))
}

async fn dispatch(route: Route, _req: Request, _env: &Env) -> Result<Response, ApiError> {
    match route {
        Route::Health => Ok(http::ok(
            200,
            &json!({ "status": "ok", "version": crate::VERSION, "commit": crate::COMMIT }),
        )),
        _ => Err(ApiError::not_found("this endpoint is not available yet")),
    }
}
