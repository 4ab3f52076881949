//! What a job needs from the machine it runs on: the [`Host`] trait and the values it trades in.
//!
//! The Durable Object implements [`Host`] over workerd (`runtime::job_object::host`); the
//! engine's tests implement it in memory with a virtual clock (`engine::testing`). Nothing
//! here depends on the Workers runtime.

use crate::time::Millis;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Approves (or not) the value stored under a key, for a compare-and-set write.
pub type Expect = Box<dyn Fn(Option<&Stored>) -> bool>;

/// A stored value: JSON text (job records, results) or raw bytes (uploads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Text(String),
    Bytes(Vec<u8>),
}

impl Stored {
    /// Bytes of either kind, as stored.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Bytes(bytes) => bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// Decodes a JSON value; bytes are accepted too, since an older build stored some JSON
    /// (the enrichment input) as bytes.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(self.as_bytes()).map_err(|e| e.to_string())
    }
}

/// Values read in one call, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values(pub BTreeMap<String, Stored>);

impl Values {
    pub fn get(&self, key: &str) -> Option<&Stored> {
        self.0.get(key)
    }

    /// The JSON value under `key`: `None` when absent, `Some(Err)` when unreadable.
    pub fn json<T: DeserializeOwned>(&self, key: &str) -> Option<Result<T, String>> {
        self.get(key)
            .map(|v| v.json().map_err(|e| format!("{key}: {e}")))
    }

    /// The bytes under `key`, as an error naming the key when it is missing.
    pub fn require_bytes(&self, key: &str) -> Result<&[u8], StorageError> {
        self.get(key)
            .map(Stored::as_bytes)
            .ok_or_else(|| StorageError(format!("{key} is missing")))
    }
}

/// The most keys one storage put or delete takes in workerd.
pub const MAX_KEYS_PER_WRITE: usize = 128;
/// The most bytes a key and its value may take together in a SQLite-backed object.
pub const MAX_ENTRY_BYTES: usize = 2 * 1024 * 1024;

/// A set of values written in one operation (one implicit transaction).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    entries: Vec<(String, Stored)>,
}

impl Batch {
    /// Adds a JSON-encoded value. Serialising our own types cannot fail; if it ever did the
    /// key is skipped rather than written half-formed.
    pub fn json<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> &mut Self {
        if let Ok(text) = serde_json::to_string(value) {
            self.text(key, text);
        }
        self
    }

    pub fn text(&mut self, key: &str, text: String) -> &mut Self {
        self.put(key, Stored::Text(text))
    }

    pub fn bytes(&mut self, key: &str, bytes: Vec<u8>) -> &mut Self {
        self.put(key, Stored::Bytes(bytes))
    }

    /// A later value for the same key replaces the earlier one, as a storage write would.
    fn put(&mut self, key: &str, value: Stored) -> &mut Self {
        self.entries.retain(|(k, _)| k != key);
        self.entries.push((key.to_string(), value));
        self
    }

    pub fn append(&mut self, other: Batch) -> &mut Self {
        for (key, value) in other.entries {
            self.put(&key, value);
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn entries(&self) -> &[(String, Stored)] {
        &self.entries
    }

    pub fn into_entries(self) -> Vec<(String, Stored)> {
        self.entries
    }

    /// The largest key plus value in the batch, in bytes: what the storage limit is about.
    pub fn largest_entry_bytes(&self) -> usize {
        self.entries
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .max()
            .unwrap_or(0)
    }
}

/// A storage operation failed; the text is for logs, never for clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError(pub String);

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StorageError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

/// A request to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub method: HttpMethod,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<String>,
}

impl Outbound {
    pub fn get(url: String) -> Self {
        Self {
            method: HttpMethod::Get,
            url,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn post(url: String, body: String) -> Self {
        Self {
            method: HttpMethod::Post,
            url,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The URL without its query, which may carry a key: what logs may show.
    pub fn path_for_logs(&self) -> &str {
        self.url.split('?').next().unwrap_or(&self.url)
    }
}

/// A provider's answer: its status, its raw body (whatever its encoding) and its
/// `Retry-After` header, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub retry_after: Option<String>,
}

impl Answer {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            body: body.into(),
            retry_after: None,
        }
    }
}

/// A provider call that produced no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No answer within the provider's deadline; the call was abandoned.
    TimedOut { after_ms: Millis },
    /// The connection failed, or the request could not be sent.
    Failed(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut { after_ms } => write!(f, "timed out after {after_ms} ms"),
            Self::Failed(why) => write!(f, "request failed: {why}"),
        }
    }
}

/// What a socket carries across hibernation (its attachment, at most 16 KiB).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SocketTag {
    /// Opened with `reconnect=true`: the client wants a state snapshot after `ready_ack`.
    #[serde(default)]
    pub reconnect: bool,
    /// When the socket was accepted.
    #[serde(default)]
    pub opened_at: Millis,
    /// When the client last sent a message the object saw (the runtime's own ping answers
    /// are not seen; see [`Host::auto_response_at`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heard_at: Option<Millis>,
    /// The `since` of the upgrade: the client saw every message up to this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Which token opened the socket (the start of its hash) and when that token expires:
    /// the socket's rights end with that token, even after a refresh.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
    #[serde(default)]
    pub token_expires_at: Millis,
}

/// The machine a job runs on: clock, storage, provider calls, timers, sockets and logs.
///
/// Every method takes `&self`: the object is single-threaded, and events interleave only at
/// `.await` points, so implementations keep their state in cells.
// No `Send` bound is wanted: workerd runs each object on one thread, and so do the tests.
#[allow(async_fn_in_trait)]
pub trait Host {
    type Socket: Clone;

    /// Milliseconds since the Unix epoch.
    fn now(&self) -> Millis;
    /// The object's name (the job id it was addressed by), for logs about requests that
    /// found no job.
    fn name(&self) -> Option<String>;
    /// Cryptographically secure random bytes.
    fn fill_random(&self, buf: &mut [u8]) -> Result<(), String>;
    /// One structured log line (filtered by level by the host).
    fn log(&self, event: &str, fields: serde_json::Value);
    /// Whether the host writes `event` at its log level; asked before building fields that
    /// cost something to find out.
    fn logs(&self, _event: &str) -> bool {
        true
    }

    async fn get(&self, keys: &[String]) -> Result<Values, StorageError>;
    /// Values whose keys start with `prefix`, in key order, after `start_after` if given, at
    /// most `limit` of them if given.
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<(String, Stored)>, StorageError>;
    async fn put(&self, batch: Batch) -> Result<(), StorageError>;
    /// Writes `value` under `key` only if `expect` approves the value stored there now, as one
    /// transaction; returns whether it wrote.
    async fn put_if(&self, key: &str, expect: Expect, value: Stored) -> Result<bool, StorageError>;
    async fn delete(&self, keys: &[String]) -> Result<(), StorageError>;
    async fn delete_all(&self) -> Result<(), StorageError>;
    /// Arms the object's one alarm at an absolute time, or removes it.
    async fn set_alarm(&self, at: Option<Millis>) -> Result<(), StorageError>;

    /// Sends a request and reads the whole answer, abandoning it after `timeout_ms`. Dropping
    /// the future abandons the call too.
    async fn fetch(&self, request: Outbound, timeout_ms: Millis) -> Result<Answer, CallError>;
    /// Completes at `at` (at once if it has passed).
    async fn sleep_until(&self, at: Millis);

    /// The job's open sockets.
    fn sockets(&self) -> Vec<Self::Socket>;
    fn send(&self, socket: &Self::Socket, text: &str);
    fn close(&self, socket: &Self::Socket, code: u16, reason: &str);
    fn tag(&self, socket: &Self::Socket) -> SocketTag;
    fn set_tag(&self, socket: &Self::Socket, tag: &SocketTag);
    /// When the runtime last answered this socket's ping by itself, without the object.
    fn auto_response_at(&self, socket: &Self::Socket) -> Option<Millis>;

    /// Resets the object once nothing is running and no socket is open: the runtime then
    /// releases the connections of closed sockets at once. workerd keeps the connection of a
    /// hibernatable socket that never delivered a message open after the closing handshake
    /// until the object is evicted (about 10 s idle), and many clients report the close only
    /// when the connection ends.
    fn reset_when_idle(&self);

    /// Resets the object, so that the next event rebuilds it from storage: after a failed
    /// write, memory is ahead of what is stored.
    fn abort(&self, reason: &str);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_keeps_the_last_value_per_key() {
        let mut batch = Batch::default();
        batch
            .text("a", "1".into())
            .bytes("b", vec![1, 2])
            .json("a", &2);
        assert_eq!(batch.len(), 2);
        assert_eq!(
            batch.entries(),
            &[
                ("b".to_string(), Stored::Bytes(vec![1, 2])),
                ("a".to_string(), Stored::Text("2".into()))
            ]
        );
        assert_eq!(batch.largest_entry_bytes(), 3);
    }

    #[test]
    fn stored_json_reads_text_and_bytes() {
        let text = Stored::Text("[1,2]".into());
        let bytes = Stored::Bytes(b"[1,2]".to_vec());
        assert_eq!(text.json::<Vec<u8>>().unwrap(), vec![1, 2]);
        assert_eq!(bytes.json::<Vec<u8>>().unwrap(), vec![1, 2]);
        assert!(Stored::Text("{".into()).json::<Vec<u8>>().is_err());
    }

    #[test]
    fn logs_never_see_a_query() {
        let call = Outbound::get("https://x.example/v1/volumes?q=isbn:1&key=secret".into());
        assert_eq!(call.path_for_logs(), "https://x.example/v1/volumes");
    }
}
