//! Outbound requests to the providers, with a timeout, answering status and raw body bytes or
//! an error. The body is never decoded here: a body that is not UTF-8 must not cost the status.

use crate::runtime::http;
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

/// Sends one request and reads the whole answer, giving up after `timeout_ms`. The error is
/// a short description for logs and per-item errors (never containing credentials).
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
    timeout_ms: u64,
) -> Result<(u16, Vec<u8>), String> {
    let header_map = Headers::new();
    for (name, value) in headers {
        header_map
            .set(name, value)
            .map_err(|e| format!("bad header {name}: {e}"))?;
    }
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(header_map);
    if let Some(body) = body {
        init.with_body(Some(body.into()));
    }
    let request =
        Request::new_with_init(url, &init).map_err(|e| format!("bad request URL: {e}"))?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let exchange = async {
        let mut response = Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status_code();
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((status, bytes))
    };
    let timeout = Delay::from(std::time::Duration::from_millis(timeout_ms));
    futures::pin_mut!(exchange);
    match futures::future::select(exchange, timeout).await {
        futures::future::Either::Left((answer, _)) => answer,
        futures::future::Either::Right(((), _)) => {
            controller.abort();
            Err(format!("timed out after {timeout_ms} ms"))
        }
    }
}

/// Logs one provider call without its URL's query (which may carry a key) or headers.
pub fn log_call(provider: &str, url: &str, outcome: &Result<(u16, Vec<u8>), String>, started: u64) {
    let path = url.split('?').next().unwrap_or(url);
    let (status, error) = match outcome {
        Ok((status, _)) => (Some(*status), None),
        Err(e) => (None, Some(e.clone())),
    };
    http::log(
        "provider.call",
        serde_json::json!({
            "provider": provider,
            "path": path,
            "status": status,
            "error": error,
            "ms": http::now().saturating_sub(started),
        }),
    );
}
