//! Outbound requests to the providers: the whole answer as bytes, or no answer within a deadline.

use crate::host::{Answer, CallError, HttpMethod, Outbound};
use crate::time::Millis;
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

/// Aborts the request when dropped before the answer was read: a step abandoned mid-call (a
/// cancel) or past its deadline leaves no fetch running.
struct AbortOnDrop(Option<AbortController>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(controller) = self.0.take() {
            controller.abort();
        }
    }
}

/// Sends one request and reads the whole answer, giving up after `timeout_ms`. Errors are
/// short descriptions for logs (never containing credentials).
pub async fn send(request: Outbound, timeout_ms: Millis) -> Result<Answer, CallError> {
    let headers = Headers::new();
    for (name, value) in &request.headers {
        headers
            .set(name, value)
            .map_err(|e| CallError::Failed(format!("bad header {name}: {e}")))?;
    }
    let method = match request.method {
        HttpMethod::Get => Method::Get,
        HttpMethod::Post => Method::Post,
    };
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    if let Some(body) = request.body {
        init.with_body(Some(body.into()));
    }
    let outgoing = Request::new_with_init(&request.url, &init)
        .map_err(|e| CallError::Failed(format!("bad request URL: {e}")))?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let mut guard = AbortOnDrop(Some(controller));
    let exchange = async {
        let mut response = Fetch::Request(outgoing)
            .send_with_signal(&signal)
            .await
            .map_err(|e| CallError::Failed(e.to_string()))?;
        let retry_after = response.headers().get("retry-after").ok().flatten();
        let body = response
            .bytes()
            .await
            .map_err(|e| CallError::Failed(e.to_string()))?;
        Ok::<_, CallError>(Answer {
            status: response.status_code(),
            body,
            retry_after,
        })
    };
    let timeout = Delay::from(std::time::Duration::from_millis(timeout_ms));
    futures::pin_mut!(exchange);
    match futures::future::select(exchange, timeout).await {
        futures::future::Either::Left((answer, _)) => {
            // Answered (or failed by itself): nothing left to abort.
            guard.0 = None;
            answer
        }
        futures::future::Either::Right(((), _)) => Err(CallError::TimedOut {
            after_ms: timeout_ms,
        }),
    }
}
