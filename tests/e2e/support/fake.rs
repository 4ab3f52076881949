//! A local HTTP server that stands in for the external providers, with a request log.
//!
//! It runs on its own thread and runtime, so one server can outlive any single test. What it
//! answers is up to a handler, which the pipeline tests write in the providers' real JSON
//! shapes; it records every request and how many were in flight at once.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct FakeRequest {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl FakeRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

#[derive(Debug, Clone)]
pub struct FakeResponse {
    pub status: u16,
    pub body: Vec<u8>,
    /// Held before answering, to make concurrency observable and to simulate slow providers.
    pub delay: Duration,
}

impl FakeResponse {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        FakeResponse {
            status,
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

pub type Handler = Arc<dyn Fn(&FakeRequest) -> FakeResponse + Send + Sync>;

#[derive(Default)]
struct Counters {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

pub struct FakeServer {
    pub base: String,
    log: Arc<Mutex<Vec<FakeRequest>>>,
    counters: Arc<Counters>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    pub fn start(handler: Handler) -> FakeServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let counters = Arc::new(Counters::default());
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (log2, counters2) = (log.clone(), counters.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (stream, _) = tokio::select! {
                        accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
                        _ = &mut stopped => return,
                    };
                    let (handler, log, counters) = (handler.clone(), log2.clone(), counters2.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |req| serve(req, handler.clone(), log.clone(), counters.clone()));
                        let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                    });
                }
            });
        });
        FakeServer {
            base,
            log,
            counters,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn requests(&self) -> Vec<FakeRequest> {
        self.log.lock().unwrap().clone()
    }

    /// The most requests that were being answered at the same moment.
    pub fn max_in_flight(&self) -> usize {
        self.counters.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    req: hyper::Request<Incoming>,
    handler: Handler,
    log: Arc<Mutex<Vec<FakeRequest>>>,
    counters: Arc<Counters>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let now_in_flight = counters.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    counters
        .max_in_flight
        .fetch_max(now_in_flight, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let request = FakeRequest {
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
        body,
    };
    log.lock().unwrap().push(request.clone());
    let answer = handler(&request);
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    counters.in_flight.fetch_sub(1, Ordering::SeqCst);
    let response = hyper::Response::builder()
        .status(answer.status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(answer.body)))
        .unwrap();
    Ok(response)
}
