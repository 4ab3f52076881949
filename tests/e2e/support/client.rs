//! Real HTTP and WebSocket clients for the tests, with helpers that wait on events, not time.

use super::wrangler::Worker;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Generous upper bound for any single awaited event; tests fail rather than hang.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A client with its own address: each call looks like a different client to the worker's
/// per-client rate limits (`CF-Connecting-IP`, which wrangler dev keeps when a client sends
/// it), so tests do not use up each other's quota.
pub fn http() -> reqwest::Client {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    http_from(&format!("10.{}.{}.{}", pid % 256, (n >> 8) % 256, n % 256))
}

/// A client that always presents `ip` as its address.
pub fn http_from(ip: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("cf-connecting-ip", ip.parse().unwrap());
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .default_headers(headers)
        .build()
        .unwrap()
}

/// An HTTP answer with its parsed JSON envelope.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    /// Reads the answer; a JSON body is checked against the schema (`support::schema`).
    pub async fn from(resp: reqwest::Response) -> Answer {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let path = resp.url().path().to_string();
        let text = resp.text().await.unwrap_or_default();
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
        super::schema::check_answer(&path, status, content_type, &text);
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Checks the contract's envelope: data or error (never both), and a timestamp.
    pub fn assert_envelope(&self) {
        assert!(self.body.is_object(), "not a JSON envelope: {}", self.text);
        let ts = self.body["metadata"]["timestamp"].as_str().unwrap_or("");
        assert!(
            ts.ends_with('Z') && ts.len() >= 20,
            "timestamp {ts:?} in {}",
            self.text
        );
        match self.body.get("error") {
            Some(err) => {
                assert!(
                    self.body["data"].is_null(),
                    "error with data: {}",
                    self.text
                );
                assert!(
                    err["code"].is_string() && err["message"].is_string(),
                    "{}",
                    self.text
                );
            }
            None => assert!(
                self.status < 400,
                "error status without error: {}",
                self.text
            ),
        }
    }

    /// Asserts an error envelope with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) {
        self.assert_envelope();
        assert_eq!((self.status, self.code()), (status, code), "{}", self.text);
    }
}

pub async fn get(worker: &Worker, path: &str, token: Option<&str>) -> Answer {
    let mut req = http().get(worker.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    Answer::from(req.send().await.unwrap()).await
}

pub async fn post_json(worker: &Worker, path: &str, body: &Value, token: Option<&str>) -> Answer {
    let mut req = http().post(worker.url(path)).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    Answer::from(req.send().await.unwrap()).await
}

/// POSTs raw bytes from `client`, with the Content-Type given (none for `None`).
pub async fn post_bytes_with(
    client: &reqwest::Client,
    worker: &Worker,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let mut req = client.post(worker.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    Answer::from(req.send().await.unwrap()).await
}

/// POSTs raw bytes as a new client.
pub async fn post_bytes(
    worker: &Worker,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    post_bytes_with(&http(), worker, path, content_type, body).await
}

/// A job as its creation route described it.
#[derive(Debug, Clone)]
pub struct Created {
    pub job_id: String,
    pub token: String,
    pub websocket_url: String,
    pub pipeline: String,
}

impl Created {
    pub fn from_answer(answer: &Answer) -> Created {
        assert_eq!(answer.status, 202, "creation failed: {}", answer.text);
        answer.assert_envelope();
        let d = answer.data();
        assert!(d["expiresIn"].as_u64().is_some(), "{}", answer.text);
        Created {
            job_id: d["jobId"].as_str().unwrap().to_string(),
            token: d["token"].as_str().unwrap().to_string(),
            websocket_url: d["websocketUrl"].as_str().unwrap().to_string(),
            pipeline: d["pipeline"].as_str().unwrap().to_string(),
        }
    }
}

/// Creates a synthetic job (`POST /api/test/jobs`).
pub async fn synthetic(worker: &Worker, spec: Value) -> Created {
    Created::from_answer(&post_json(worker, "/api/test/jobs", &spec, None).await)
}

/// Waits until at least `ms` have passed on the worker's own clock: a synthetic job whose two
/// items are `ms` apart completes. Used where a test must see that something did *not* happen.
pub async fn server_time_passes(w: &Worker, ms: u64) {
    let clock = synthetic(w, json!({ "items": 2, "chunkDelayMs": ms })).await;
    let mut ws = Socket::connect(w, &clock).await;
    ws.ready().await;
    assert_eq!(ws.until_closed().await.code, 1000);
}

/// Says ready on a new socket, waits for the first progress report, cancels the job through
/// `path` (any cancel route: `{jobId}` goes in the body, which `/api/jobs/{id}/cancel` ignores)
/// and waits for the 1001 close; returns the closed socket with what it received.
pub async fn cancel_after_first_progress(w: &Worker, job: &Created, path: &str) -> Socket {
    let mut ws = Socket::connect(w, job).await;
    ws.ready().await;
    ws.until("job_progress").await;
    let answer = post_json(w, path, &json!({ "jobId": job.job_id }), Some(&job.token)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(ws.until_closed().await.code, 1001, "{:?}", ws.kinds());
    ws
}

pub async fn job_state(worker: &Worker, job: &Created) -> Value {
    let answer = get(
        worker,
        &format!("/api/job-state/{}", job.job_id),
        Some(&job.token),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.data().clone()
}

/// A job's whole results document at `path` (`/v1/csv/results/{id}`, ...): every page,
/// following `nextCursor`, with later pages' `books` (or `items`, `results`) appended to the
/// first page's and the cursor removed.
pub async fn all_results(worker: &Worker, path: &str, token: &str) -> Value {
    let mut whole: Option<Value> = None;
    let mut page_path = path.to_string();
    loop {
        let answer = get(worker, &page_path, Some(token)).await;
        assert_eq!(
            answer.status,
            200,
            "{page_path}: {}",
            &answer.text[..answer.text.len().min(500)]
        );
        let mut page = answer.data().clone();
        let next = page.as_object_mut().and_then(|p| p.remove("nextCursor"));
        match whole.as_mut() {
            None => whole = Some(page),
            Some(whole) => {
                for list in ["books", "items", "results"] {
                    if let (Some(have), Some(more)) =
                        (whole[list].as_array_mut(), page[list].as_array())
                    {
                        have.extend(more.iter().cloned());
                    }
                }
            }
        }
        match next.as_ref().and_then(Value::as_str) {
            Some(cursor) => page_path = format!("{path}?cursor={cursor}"),
            None => return whole.unwrap(),
        }
    }
}

/// Polls job state until `done` holds; for checks where no socket event exists to wait on.
pub async fn state_until(
    worker: &Worker,
    job: &Created,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
    loop {
        let state = job_state(worker, job).await;
        if done(&state) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; last state {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How many addresses the harness's sockets come from.
const SOCKET_CLIENTS: u32 = 64;

/// The address a socket's client presents: one of [`SOCKET_CLIENTS`] in 172.16.0.0/24 (apart
/// from the 10.0.0.0/8 of [`http`]), chosen by the job id in the query (FNV-1a of it), so all
/// sockets of one job come from one client, as from one phone. Few enough that a client's
/// limiter is usually warm, as a phone's is after it created its job (the benchmark times
/// upgrades); enough that the suite's upgrades stay far below 60 a minute for each.
fn socket_client_ip(path_and_query: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let job_id = path_and_query
        .split(['?', '&'])
        .find_map(|pair| pair.strip_prefix("jobId="));
    let n = match job_id {
        Some(id) => id.bytes().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        }),
        None => NEXT.fetch_add(1, Ordering::SeqCst),
    };
    format!("172.16.0.{}", 1 + n % SOCKET_CLIENTS)
}

/// A client socket with helpers to wait for typed messages and the close.
pub struct Socket {
    stream: Stream,
    pub received: Vec<Value>,
}

/// How a socket ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

impl Socket {
    pub async fn connect(worker: &Worker, job: &Created) -> Socket {
        Self::connect_path(worker, &job.websocket_url)
            .await
            .expect("upgrade refused")
    }

    /// Opens a socket as the job's own client: every socket of one job comes from one address
    /// (as from one phone), one of a few that the harness's jobs share (`socket_client_ip`).
    pub async fn connect_path(worker: &Worker, path_and_query: &str) -> Result<Socket, u16> {
        let ip = socket_client_ip(path_and_query);
        Self::connect_path_from(worker, path_and_query, &ip).await
    }

    /// Opens a socket presenting `ip` as the client's address (`CF-Connecting-IP`).
    pub async fn connect_path_from(
        worker: &Worker,
        path_and_query: &str,
        ip: &str,
    ) -> Result<Socket, u16> {
        let url = format!("{}{path_and_query}", worker.ws_base());
        let mut request = url.into_client_request().expect("a WebSocket URL");
        request
            .headers_mut()
            .insert("cf-connecting-ip", ip.parse().expect("an address"));
        match tokio_tungstenite::connect_async(request).await {
            Ok((stream, _)) => Ok(Socket {
                stream,
                received: Vec::new(),
            }),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let content_type = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok());
                // The client library hands over the body only when it came with the head.
                let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default());
                if !body.is_empty() {
                    let path = path_and_query.split('?').next().unwrap_or_default();
                    super::schema::check_answer(path, status, content_type, &body);
                }
                Err(status)
            }
            Err(e) => panic!("connect failed: {e}"),
        }
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.stream.send(Message::binary(bytes)).await.unwrap();
    }

    pub async fn ready(&mut self) {
        self.send_text(r#"{"type":"ready"}"#).await;
    }

    /// The next text message as JSON, checked against the schema (`support::schema`), or the
    /// close if the socket ended first.
    pub async fn next(&mut self) -> Result<Value, Closed> {
        loop {
            let frame = tokio::time::timeout(EVENT_TIMEOUT, self.stream.next())
                .await
                .expect("timed out waiting for a socket message");
            match frame {
                Some(Ok(Message::Text(text))) => {
                    let value = super::schema::check_message(&text);
                    self.received.push(value.clone());
                    return Ok(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(frame
                        .map(|f| Closed {
                            code: u16::from(f.code),
                            reason: f.reason.to_string(),
                        })
                        .unwrap_or(Closed {
                            code: u16::from(CloseCode::Status),
                            reason: String::new(),
                        }));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    return Err(Closed {
                        code: 1006,
                        reason: e.to_string(),
                    })
                }
                None => {
                    return Err(Closed {
                        code: 1006,
                        reason: "stream ended".into(),
                    })
                }
            }
        }
    }

    /// Reads until a message of `kind`, returning it; panics if the socket closes first.
    pub async fn until(&mut self, kind: &str) -> Value {
        loop {
            match self.next().await {
                Ok(msg) if msg["type"] == kind => return msg,
                Ok(_) => continue,
                Err(closed) => panic!(
                    "socket closed ({closed:?}) before {kind}; got {:?}",
                    self.kinds()
                ),
            }
        }
    }

    /// Reads everything up to the close and returns it.
    pub async fn until_closed(&mut self) -> Closed {
        loop {
            if let Err(closed) = self.next().await {
                return closed;
            }
        }
    }

    /// Reads past the close frame until the server ends the connection, as clients that report
    /// a close only then (browsers, Node's and Python's WebSocket) do. Returns the close, how
    /// long after the call its frame arrived, and how long after the call the connection ended.
    pub async fn until_disconnected(&mut self, limit: Duration) -> (Closed, Duration, Duration) {
        let started = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + limit;
        let closed = tokio::time::timeout_at(deadline, self.until_closed())
            .await
            .unwrap_or_else(|_| panic!("no close frame within {limit:?}; got {:?}", self.kinds()));
        let frame_at = started.elapsed();
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(None) | Ok(Some(Err(_))) => return (closed, frame_at, started.elapsed()),
                Ok(Some(Ok(_))) => continue,
                Err(_) => panic!(
                    "the close frame came after {frame_at:?}, but the connection was still open after {limit:?}"
                ),
            }
        }
    }

    /// Drops the connection without a close frame, as a phone that loses its network does;
    /// returns what the socket had received.
    pub fn vanish(self) -> Vec<Value> {
        self.received
    }

    pub fn kinds(&self) -> Vec<String> {
        self.received
            .iter()
            .map(|m| m["type"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.received.iter().filter(|m| m["type"] == kind).collect()
    }
}
