//! Hostile input on every route: 4xx envelopes, never a 5xx, and `/health` and a running job unharmed.

use crate::support::providers::{image, Providers};
use crate::support::*;
use bookstrack_jobs::base64;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;

/// A well-formed job id that no job has.
const UNKNOWN_JOB: &str = "0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e";
/// Enough in flight to be quick, few enough not to turn the barrage into a load test.
const CONCURRENCY: usize = 8;
/// One case that hangs fails on its own instead of stalling the whole test.
const CASE_TIMEOUT: Duration = Duration::from_secs(30);

/// The status a case must get: exact where the contract leaves no choice.
#[derive(Clone, Copy, Debug)]
enum Want {
    Status(u16),
    Any4xx,
}

use Want::{Any4xx, Status};

/// How a body goes on the wire. Raw framing, because the point is to send what a well-behaved
/// client library would refuse to.
#[derive(Clone)]
enum Body {
    None,
    /// With a `Content-Length`.
    Sized(Vec<u8>),
    /// `Transfer-Encoding: chunked`: no declared length, so only the streaming limit can stop it.
    Chunked(Vec<u8>),
}

struct Case {
    name: String,
    method: &'static str,
    target: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Body,
    want: Want,
}

impl Case {
    fn new(name: impl Into<String>, method: &'static str, target: impl Into<String>) -> Case {
        Case {
            name: name.into(),
            method,
            target: target.into(),
            headers: Vec::new(),
            body: Body::None,
            want: Any4xx,
        }
    }

    fn want(mut self, want: Want) -> Case {
        self.want = want;
        self
    }

    fn header(mut self, name: &'static str, value: impl AsRef<[u8]>) -> Case {
        self.headers.push((name, value.as_ref().to_vec()));
        self
    }

    fn bearer(self, token: &str) -> Case {
        self.header("Authorization", format!("Bearer {token}"))
    }

    /// A sized body, with this Content-Type when there is one.
    fn body(mut self, content_type: Option<&str>, bytes: impl AsRef<[u8]>) -> Case {
        if let Some(ct) = content_type {
            self = self.header("Content-Type", ct);
        }
        self.body = Body::Sized(bytes.as_ref().to_vec());
        self
    }

    fn json(self, bytes: impl AsRef<[u8]>) -> Case {
        self.body(Some("application/json"), bytes)
    }

    fn chunked(mut self, content_type: &str, bytes: impl AsRef<[u8]>) -> Case {
        self = self.header("Content-Type", content_type);
        self.body = Body::Chunked(bytes.as_ref().to_vec());
        self
    }

    /// The headers of a real WebSocket handshake, so the refusal must come from the checks
    /// behind the 426.
    fn upgrade(self) -> Case {
        self.header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
    }

    fn is_upgrade(&self) -> bool {
        self.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("upgrade") && v == b"websocket")
    }

    fn describe(&self) -> String {
        let target: String = self.target.chars().take(120).collect();
        let len = match &self.body {
            Body::None => "no body".to_string(),
            Body::Sized(b) => format!("{} bytes", b.len()),
            Body::Chunked(b) => format!("{} bytes chunked", b.len()),
        };
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| {
                let v = String::from_utf8_lossy(v);
                format!("{n}: {}", v.chars().take(60).collect::<String>())
            })
            .collect();
        format!("{} {target} [{}] ({len})", self.method, headers.join("; "))
    }
}

fn get(name: &str, target: impl Into<String>) -> Case {
    Case::new(name, "GET", target)
}

fn post(name: &str, target: impl Into<String>) -> Case {
    Case::new(name, "POST", target)
}

/// Deterministic noise (xorshift64*), so a failure can be replayed byte for byte.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn nested_arrays(depth: usize) -> Vec<u8> {
    ["[".repeat(depth), "]".repeat(depth)].concat().into_bytes()
}

fn nested_objects(depth: usize) -> Vec<u8> {
    [r#"{"a":"#.repeat(depth), "1".into(), "}".repeat(depth)]
        .concat()
        .into_bytes()
}

/// `prefix`, bytes that are not UTF-8, then `suffix`.
fn with_bad_utf8(prefix: &str, suffix: &str) -> Vec<u8> {
    [
        prefix.as_bytes(),
        &[0xC3u8, 0x28, 0xFF, 0xFE, 0x80][..],
        suffix.as_bytes(),
    ]
    .concat()
}

fn utf16le(text: &str) -> Vec<u8> {
    let mut out = vec![0xFF, 0xFE];
    out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    out
}

const BOUNDARY: &str = "hostile-boundary-7d1f";

/// A multipart/form-data body; `closed` decides whether the closing delimiter is written.
fn multipart(parts: &[(&str, &[u8])], closed: bool) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, data) in parts {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"x\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    if closed {
        body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    }
    body
}

fn multipart_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// Job ids that are not UUIDs, already percent-encoded for a path segment or query value.
fn bad_ids() -> Vec<(&'static str, String)> {
    vec![
        ("traversal", "..%2F..%2Fetc%2Fpasswd".to_string()),
        ("NUL byte", "%00".to_string()),
        ("percent-encoded UUID", UNKNOWN_JOB.replace('-', "%2D")),
        ("braces", format!("%7B{UNKNOWN_JOB}%7D")),
        ("37 characters", format!("{UNKNOWN_JOB}0")),
        (
            "double-encoded traversal",
            "%252e%252e%252f%252e%252e%252fetc".to_string(),
        ),
        ("unicode hyphens", UNKNOWN_JOB.replace('-', "%E2%80%90")),
        ("10 KB", "a".repeat(10 * 1024)),
        ("negative index", "-1".to_string()),
        ("urn prefix", format!("urn:uuid:{UNKNOWN_JOB}")),
        (
            "NUL inside",
            format!("{}%00{}", &UNKNOWN_JOB[..17], &UNKNOWN_JOB[18..]),
        ),
    ]
}

/// Every malformed request, with what it must get. `job` is a running job: the cases aimed at
/// it carry wrong or missing credentials, so none may touch it.
fn cases(job: &Created) -> Vec<Case> {
    let id = job.job_id.as_str();
    let token = job.token.as_str();
    let jpeg = base64::encode(&image("jpeg", "fenced"));
    let gif = base64::encode(&image("gif", "fenced"));
    let scan_entry = |index: &str, data: &str| format!(r#"{{"index":{index},"data":"{data}"}}"#);
    let scan_body = |entries: &[String]| format!(r#"{{"images":[{}]}}"#, entries.join(","));
    let ws = |query: &str| format!("/ws/progress?{query}");
    let ten_kb = "x".repeat(10 * 1024);
    let csv = "/api/import/csv";
    let csv_alias = "/api/import/csv-gemini";
    let scan = "/api/scan-bookshelf";
    let batch = "/api/scan-bookshelf/batch";
    let enrich = "/api/enrichment/batch";
    let enrich_v1 = "/v1/enrichment/batch";
    let refresh = "/api/token/refresh";
    let cancel_enrich = "/api/enrichment/cancel";
    let cancel_scan = "/api/scan-bookshelf/cancel";
    let state = |id: &str| format!("/api/job-state/{id}");
    let cancel = |id: &str| format!("/api/jobs/{id}/cancel");
    let many_books: Vec<Value> = (0..101)
        .map(|i| json!({ "title": format!("Book {i}") }))
        .collect();
    let mut c = vec![
        // /health
        post("health: POST with random bytes", "/health")
            .body(Some("application/octet-stream"), noise(1, 512))
            .want(Status(405)),
        Case::new("health: DELETE", "DELETE", "/health").want(Status(405)),
        Case::new("health: HEAD", "HEAD", "/health").want(Status(405)),
        get("health: trailing slash", "/health/").want(Status(404)),
        get("health: NUL suffix", "/health%00").want(Status(404)),
        get("health: upper case", "/HEALTH").want(Status(404)),
        get("health: double slash", "//health").want(Status(404)),
        get("health: 17 KiB of headers", "/health")
            .header("X-Padding", "p".repeat(17 * 1024))
            .want(Status(400)),
        // CSV import
        post("csv: random bytes, no Content-Type", csv)
            .body(None, noise(2, 4096))
            .want(Status(415)),
        post("csv: JSON Content-Type", csv)
            .json(r#"{"title":"Dune"}"#)
            .want(Status(415)),
        post("csv: text/plain", csv)
            .body(Some("text/plain"), "Title,Author\nDune,Frank Herbert\n")
            .want(Status(415)),
        post("csv: garbage Content-Type", csv)
            .body(Some(";;;=;\"\""), "Title\nDune\n")
            .want(Status(415)),
        post("csv: near-miss media type", csv)
            .body(Some("text/csvx"), "Title\nDune\n")
            .want(Status(415)),
        post("csv: empty body", csv)
            .body(Some("text/csv"), "")
            .want(Status(400)),
        post("csv: random bytes as text/csv", csv)
            .body(Some("text/csv"), noise(3, 4096))
            .want(Status(400)),
        post("csv: only blank lines", csv)
            .body(Some("text/csv"), "\r\n\n  \n\r\n")
            .want(Status(400)),
        post("csv: invalid UTF-8 header without a title", csv)
            .body(Some("text/csv"), with_bad_utf8("", ",Author\nx,y\n"))
            .want(Status(400)),
        post("csv: header of NUL bytes", csv)
            .body(Some("text/csv"), [vec![0u8; 300], b"\nDune\n".to_vec()].concat())
            .want(Status(400)),
        post("csv: header row past 64 KiB", csv)
            .body(Some("text/csv"), "ab,".repeat(30_000))
            .want(Status(400)),
        post("csv: multipart without boundary", csv)
            .body(
                Some("multipart/form-data"),
                multipart(&[("file", b"Title\nDune\n".as_slice())], true),
            )
            .want(Status(400)),
        post("csv: multipart with empty boundary", csv)
            .body(Some("multipart/form-data; boundary="), "--\r\n\r\nTitle\n----\r\n")
            .want(Status(400)),
        post("csv: multipart boundary of 71 characters", csv)
            .body(
                Some(&format!("multipart/form-data; boundary={}", "b".repeat(71))),
                format!("--{0}\r\n\r\nTitle\r\n--{0}--\r\n", "b".repeat(71)),
            )
            .want(Status(400)),
        post("csv: multipart boundary never closed", csv)
            .body(
                Some(&multipart_type()),
                multipart(&[("file", b"Title,Author\nDune,Frank Herbert\n".as_slice())], false),
            )
            .want(Status(400)),
        post("csv: multipart cut inside a part header", csv)
            .body(
                Some(&multipart_type()),
                format!("--{BOUNDARY}\r\nContent-Disposition: form-da"),
            )
            .want(Status(400)),
        post("csv: multipart header without blank line", csv)
            .body(
                Some(&multipart_type()),
                format!(
                    "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\nTitle,Author\r\n--{BOUNDARY}--\r\n"
                ),
            )
            .want(Status(400)),
        post("csv: multipart without a file part", csv)
            .body(
                Some(&multipart_type()),
                multipart(&[("other", b"Title\nDune\n".as_slice())], true),
            )
            .want(Status(400)),
        post("csv: multipart body without its boundary", csv)
            .body(Some(&multipart_type()), noise(4, 2048))
            .want(Status(400)),
        post("csv: multipart with 17 parts", csv)
            .body(
                Some(&multipart_type()),
                multipart(&[("x", b"1".as_slice()); 17], true),
            )
            .want(Status(400)),
        post("csv: multipart file without a title column", csv)
            .body(
                Some(&multipart_type()),
                multipart(&[("file", b"Name,Writer\nDune,Frank Herbert\n".as_slice())], true),
            )
            .want(Status(400)),
        post("csv: 11 MiB chunked", csv)
            .chunked("text/csv", [b"Title\n".to_vec(), vec![b'a'; 11 << 20]].concat())
            .want(Status(413)),
        Case::new("csv: PUT", "PUT", csv)
            .body(Some("text/csv"), "Title\nDune\n")
            .want(Status(405)),
        get("csv alias: GET", csv_alias).want(Status(405)),
        post("csv alias: image/png", csv_alias)
            .body(Some("image/png"), image("png", "fenced"))
            .want(Status(415)),
        post("csv alias: multipart never closed", csv_alias)
            .body(
                Some(&multipart_type()),
                multipart(&[("file", b"Title\nDune\n".as_slice())], false),
            )
            .want(Status(400)),
        // Single scan
        post("scan: no Content-Type", scan)
            .body(None, image("jpeg", "fenced"))
            .want(Status(415)),
        post("scan: image/gif", scan)
            .body(Some("image/gif"), image("gif", "fenced"))
            .want(Status(415)),
        post("scan: GIF bytes declared JPEG", scan)
            .body(Some("image/jpeg"), image("gif", "fenced"))
            .want(Status(415)),
        post("scan: random bytes declared JPEG", scan)
            .body(Some("image/jpeg"), [b"NOTANIMAGE".to_vec(), noise(5, 4096)].concat())
            .want(Status(415)),
        post("scan: text declared PNG", scan)
            .body(Some("image/png"), "hello, this is not a picture")
            .want(Status(415)),
        post("scan: empty JPEG", scan)
            .body(Some("image/jpeg"), "")
            .want(Status(400)),
        post("scan: JSON body", scan)
            .json(format!(r#"{{"image":"{jpeg}"}}"#))
            .want(Status(415)),
        post("scan: multipart never closed", scan)
            .body(
                Some(&multipart_type()),
                multipart(&[("image", image("jpeg", "fenced").as_slice())], false),
            )
            .want(Status(400)),
        post("scan: multipart part named file", scan)
            .body(
                Some(&multipart_type()),
                multipart(&[("file", image("jpeg", "fenced").as_slice())], true),
            )
            .want(Status(400)),
        post("scan: multipart GIF part", scan)
            .body(
                Some(&multipart_type()),
                multipart(&[("image", image("gif", "fenced").as_slice())], true),
            )
            .want(Status(415)),
        post("scan: multipart empty image part", scan)
            .body(Some(&multipart_type()), multipart(&[("image", b"".as_slice())], true))
            .want(Status(400)),
        post("scan: 6 MiB with Content-Length", scan)
            .body(Some("image/jpeg"), [image("jpeg", "fenced"), vec![0; 6 << 20]].concat())
            .want(Status(413)),
        get("scan: GET", scan).want(Status(405)),
        Case::new("scan: DELETE", "DELETE", scan).want(Status(405)),
        // Batch scan
        post("batch: text/plain", batch)
            .body(Some("text/plain"), scan_body(&[scan_entry("0", &jpeg)]))
            .want(Status(415)),
        post("batch: no Content-Type", batch)
            .body(None, scan_body(&[scan_entry("0", &jpeg)]))
            .want(Status(415)),
        post("batch: 10,000 nested arrays", batch)
            .json(nested_arrays(10_000))
            .want(Status(400)),
        post("batch: 10,000 nested objects", batch)
            .json(nested_objects(10_000))
            .want(Status(400)),
        post("batch: random bytes", batch)
            .json(noise(6, 4096))
            .want(Status(400)),
        post("batch: truncated JSON", batch)
            .json(r#"{"images":[{"index":0,"da"#)
            .want(Status(400)),
        post("batch: trailing garbage", batch)
            .json(scan_body(&[scan_entry("0", &jpeg)]) + " }{ garbage")
            .want(Status(400)),
        post("batch: null", batch).json("null").want(Status(400)),
        post("batch: images empty", batch)
            .json(r#"{"images":[]}"#)
            .want(Status(400)),
        post("batch: images a string", batch)
            .json(r#"{"images":"abc"}"#)
            .want(Status(400)),
        post("batch: images [null]", batch)
            .json(r#"{"images":[null]}"#)
            .want(Status(400)),
        post("batch: six images", batch)
            .json(scan_body(
                &(0..6)
                    .map(|i| scan_entry(&i.to_string(), &jpeg))
                    .collect::<Vec<_>>(),
            ))
            .want(Status(400)),
        post("batch: negative index", batch)
            .json(scan_body(&[scan_entry("-1", &jpeg)]))
            .want(Status(400)),
        post("batch: fractional index", batch)
            .json(scan_body(&[scan_entry("1.5", &jpeg)]))
            .want(Status(400)),
        post("batch: index 2^70", batch)
            .json(scan_body(&[scan_entry("1180591620717411303424", &jpeg)]))
            .want(Status(400)),
        post("batch: index 1e20", batch)
            .json(scan_body(&[scan_entry("1e20", &jpeg)]))
            .want(Status(400)),
        post("batch: index 1e999999", batch)
            .json(scan_body(&[scan_entry("1e999999", &jpeg)]))
            .want(Status(400)),
        post("batch: index a string", batch)
            .json(scan_body(&[scan_entry("\"0\"", &jpeg)]))
            .want(Status(400)),
        post("batch: repeated index", batch)
            .json(scan_body(&[scan_entry("3", &jpeg), scan_entry("3", &jpeg)]))
            .want(Status(400)),
        post("batch: data not base64", batch)
            .json(scan_body(&[scan_entry("0", "@@@not base64@@@")]))
            .want(Status(400)),
        post("batch: data empty", batch)
            .json(scan_body(&[scan_entry("0", "")]))
            .want(Status(400)),
        post("batch: data invalid UTF-8", batch)
            .json(with_bad_utf8(r#"{"images":[{"index":0,"data":""#, r#""}]}"#))
            .want(Status(400)),
        post("batch: invalid UTF-8 in an unknown field", batch)
            .json(with_bad_utf8(
                r#"{"note":""#,
                &format!(r#"","images":[{}]}}"#, scan_entry("0", &jpeg)),
            ))
            .want(Status(400)),
        post("batch: GIF data", batch)
            .json(scan_body(&[scan_entry("0", &gif)]))
            .want(Status(415)),
        post("batch: jobId traversal", batch)
            .json(format!(
                r#"{{"jobId":"../../etc/passwd","images":[{}]}}"#,
                scan_entry("0", &jpeg)
            ))
            .want(Status(400)),
        post("batch: jobId a number", batch)
            .json(format!(
                r#"{{"jobId":12345,"images":[{}]}}"#,
                scan_entry("0", &jpeg)
            ))
            .want(Status(400)),
        post("batch: images given twice", batch)
            .json(format!(
                r#"{{"images":[{0}],"images":[{0}]}}"#,
                scan_entry("0", &jpeg)
            ))
            .want(Status(400)),
        Case::new("batch: PATCH", "PATCH", batch)
            .json(scan_body(&[scan_entry("0", &jpeg)]))
            .want(Status(405)),
        // Enrichment
        post("enrich: text/plain", enrich)
            .body(Some("text/plain"), r#"{"books":[{"title":"Dune"}]}"#)
            .want(Status(415)),
        post("enrich: form-urlencoded", enrich)
            .body(Some("application/x-www-form-urlencoded"), "books=Dune")
            .want(Status(415)),
        post("enrich: no Content-Type", enrich)
            .body(None, r#"{"books":[{"title":"Dune"}]}"#)
            .want(Status(415)),
        post("enrich: 10,000 nested arrays", enrich)
            .json(nested_arrays(10_000))
            .want(Status(400)),
        post("enrich: 10,000 nested objects", enrich)
            .json(nested_objects(10_000))
            .want(Status(400)),
        post("enrich: books nested 10,000 deep", enrich)
            .json(
                [
                    br#"{"books":"#.to_vec(),
                    nested_arrays(10_000),
                    b"}".to_vec(),
                ]
                .concat(),
            )
            .want(Status(400)),
        post("enrich: random bytes", enrich)
            .json(noise(7, 4096))
            .want(Status(400)),
        post("enrich: empty body", enrich).json("").want(Status(400)),
        post("enrich: null", enrich).json("null").want(Status(400)),
        post("enrich: top-level array", enrich)
            .json(r#"[{"title":"Dune"}]"#)
            .want(Status(400)),
        post("enrich: bare string", enrich)
            .json(r#""Dune""#)
            .want(Status(400)),
        post("enrich: books [null]", enrich)
            .json(r#"{"books":[null]}"#)
            .want(Status(400)),
        post("enrich: books a string", enrich)
            .json(r#"{"books":"Dune"}"#)
            .want(Status(400)),
        post("enrich: books an object", enrich)
            .json(r#"{"books":{"title":"Dune"}}"#)
            .want(Status(400)),
        post("enrich: books empty", enrich)
            .json(r#"{"books":[]}"#)
            .want(Status(400)),
        post("enrich: 101 books", enrich)
            .json(json!({ "books": many_books }).to_string())
            .want(Status(400)),
        post("enrich: title a number", enrich)
            .json(r#"{"books":[{"title":12345}]}"#)
            .want(Status(400)),
        post("enrich: title an object", enrich)
            .json(r#"{"books":[{"title":{"text":"Dune"}}]}"#)
            .want(Status(400)),
        post("enrich: blank title", enrich)
            .json(r#"{"books":[{"title":"   \t "}]}"#)
            .want(Status(400)),
        post("enrich: title of 501 characters", enrich)
            .json(json!({ "books": [{ "title": "é".repeat(501) }] }).to_string())
            .want(Status(400)),
        post("enrich: isbn of 18 characters", enrich)
            .json(r#"{"books":[{"title":"Dune","isbn":"978044101359312345"}]}"#)
            .want(Status(400)),
        post("enrich: author 1e999999", enrich)
            .json(r#"{"books":[{"title":"Dune","author":1e999999}]}"#)
            .want(Status(400)),
        post("enrich: title invalid UTF-8", enrich)
            .json(with_bad_utf8(r#"{"books":[{"title":"Du"#, r#"ne"}]}"#))
            .want(Status(400)),
        post("enrich: lone surrogate escape", enrich)
            .json(r#"{"books":[{"title":"\ud800"}]}"#)
            .want(Status(400)),
        post("enrich: jobId in braces", enrich)
            .json(format!(
                r#"{{"jobId":"{{{UNKNOWN_JOB}}}","books":[{{"title":"Dune"}}]}}"#
            ))
            .want(Status(400)),
        post("enrich: jobId a number", enrich)
            .json(r#"{"jobId":1e20,"books":[{"title":"Dune"}]}"#)
            .want(Status(400)),
        post("enrich: jobId traversal", enrich)
            .json(r#"{"jobId":"../../../../etc/passwd-0000000000000","books":[{"title":"Dune"}]}"#)
            .want(Status(400)),
        post("enrich: trailing garbage", enrich)
            .json(r#"{"books":[{"title":"Dune"}]} trailing"#)
            .want(Status(400)),
        post("enrich: UTF-16 JSON", enrich)
            .body(
                Some("application/json; charset=utf-16"),
                utf16le(r#"{"books":[{"title":"Dune"}]}"#),
            )
            .want(Status(400)),
        post("enrich: 300 KiB with Content-Length", enrich)
            .json(json!({ "books": [{ "title": "a".repeat(300 * 1024) }] }).to_string())
            .want(Status(413)),
        post("enrich: 300 KiB chunked", enrich)
            .chunked(
                "application/json",
                json!({ "books": [{ "title": "a".repeat(300 * 1024) }] }).to_string(),
            )
            .want(Status(413)),
        Case::new("enrich: HEAD", "HEAD", enrich).want(Status(405)),
        post("enrich v1: 10,000 nested arrays", enrich_v1)
            .json(nested_arrays(10_000))
            .want(Status(400)),
        post("enrich v1: text/csv", enrich_v1)
            .body(Some("text/csv"), "Title\nDune\n")
            .want(Status(415)),
        Case::new("enrich v1: PUT", "PUT", enrich_v1)
            .json(r#"{"books":[{"title":"Dune"}]}"#)
            .want(Status(405)),
        // Job state: ids, then credentials on the running job.
        get("state: unknown job", state(UNKNOWN_JOB))
            .bearer("x")
            .want(Status(404)),
        get("state: trailing slash", format!("{}/", state(id)))
            .bearer(token)
            .want(Status(404)),
        get("state: running job, no Authorization", state(id)).want(Status(401)),
        get("state: running job, Bearer alone", state(id))
            .header("Authorization", "Bearer")
            .want(Status(401)),
        get("state: running job, lower-case bearer and two spaces", state(id))
            .header("Authorization", "bearer  x")
            .want(Status(401)),
        get("state: running job, Basic", state(id))
            .header("Authorization", "Basic dXNlcjpwYXNz")
            .want(Status(401)),
        get("state: running job, 10 KB token", state(id))
            .bearer(&ten_kb)
            .want(Status(401)),
        get(
            "state: running job, token only in the query",
            format!("{}?token={token}", state(id)),
        )
        .want(Status(401)),
        get("state: running job, non-ASCII Authorization", state(id))
            .header("Authorization", b"Bearer \xff\xfe\xfd")
            .want(Status(401)),
        get("state: running job, two wrong Authorization headers", state(id))
            .bearer("wrong-one")
            .bearer("wrong-two")
            .want(Status(401)),
        get("state: running job, token with a trailing byte", state(id))
            .bearer(&format!("{token}A"))
            .want(Status(401)),
        post("state: POST", state(id)).bearer(token).want(Status(405)),
        Case::new("state: DELETE", "DELETE", state(id))
            .bearer(token)
            .want(Status(405)),
        Case::new("state: HEAD", "HEAD", state(id))
            .bearer(token)
            .want(Status(405)),
        // Token refresh
        post("refresh: array", refresh)
            .json(format!(r#"["{id}","x"]"#))
            .want(Status(400)),
        post("refresh: string", refresh)
            .json(r#""refresh me""#)
            .want(Status(400)),
        post("refresh: null", refresh).json("null").want(Status(400)),
        post("refresh: empty object", refresh)
            .json("{}")
            .want(Status(400)),
        post("refresh: empty body", refresh).json("").want(Status(400)),
        post("refresh: random bytes", refresh)
            .body(None, noise(8, 1024))
            .want(Status(400)),
        post("refresh: invalid UTF-8", refresh)
            .json(with_bad_utf8(r#"{"jobId":""#, r#"","oldToken":"x"}"#))
            .want(Status(400)),
        post("refresh: 5,000 open brackets", refresh)
            .json("[".repeat(5_000))
            .want(Status(400)),
        post("refresh: jobId a number", refresh)
            .json(r#"{"jobId":12345,"oldToken":"x"}"#)
            .want(Status(400)),
        post("refresh: jobId traversal", refresh)
            .json(r#"{"jobId":"../../etc/passwd","oldToken":"x"}"#)
            .want(Status(400)),
        post("refresh: oldToken a number", refresh)
            .json(format!(r#"{{"jobId":"{id}","oldToken":1e999}}"#))
            .want(Status(400)),
        // Contract 9.6: a refresh without the token it replaces is malformed.
        post("refresh: running job, no oldToken", refresh)
            .json(format!(r#"{{"jobId":"{id}"}}"#))
            .want(Status(400)),
        post("refresh: running job, empty oldToken", refresh)
            .json(format!(r#"{{"jobId":"{id}","oldToken":""}}"#))
            .want(Status(400)),
        post("refresh: running job, wrong oldToken", refresh)
            .json(format!(r#"{{"jobId":"{id}","oldToken":"not-the-token"}}"#))
            .want(Status(401)),
        post("refresh: running job, Bearer header instead of oldToken", refresh)
            .bearer(token)
            .json(format!(r#"{{"jobId":"{id}"}}"#))
            .want(Status(400)),
        post("refresh: unknown job", refresh)
            .json(format!(r#"{{"jobId":"{UNKNOWN_JOB}","oldToken":"x"}}"#))
            .want(Status(404)),
        post("refresh: 17 KiB with Content-Length", refresh)
            .json(format!(
                r#"{{"jobId":"{id}","oldToken":"{}"}}"#,
                "t".repeat(17 * 1024)
            ))
            .want(Status(413)),
        post("refresh: 17 KiB chunked", refresh)
            .chunked(
                "application/json",
                format!(r#"{{"jobId":"{id}","oldToken":"{}"}}"#, "t".repeat(17 * 1024)),
            )
            .want(Status(413)),
        get("refresh: GET", refresh).want(Status(405)),
        Case::new("refresh: PATCH", "PATCH", refresh)
            .json(format!(r#"{{"jobId":"{id}","oldToken":"{token}"}}"#))
            .want(Status(405)),
        // Cancel by id
        post("cancel: empty id", "/api/jobs//cancel")
            .bearer("x")
            .want(Status(400)),
        post("cancel: unknown job", cancel(UNKNOWN_JOB))
            .bearer("x")
            .want(Status(404)),
        post("cancel: running job, no Authorization, random body", cancel(id))
            .body(Some("application/octet-stream"), noise(9, 1024))
            .want(Status(401)),
        post("cancel: running job, wrong token, body not JSON", cancel(id))
            .bearer("wrong")
            .body(Some("application/json"), "{{{{not json")
            .want(Status(401)),
        post("cancel: running job, Basic", cancel(id))
            .header("Authorization", "Basic dXNlcjpwYXNz")
            .want(Status(401)),
        post("cancel: running job, token in the query", format!("{}?token={token}", cancel(id)))
            .want(Status(401)),
        post("cancel: extra segment", format!("{}/now", cancel(id)))
            .bearer(token)
            .want(Status(404)),
        get("cancel: GET", cancel(id)).bearer(token).want(Status(405)),
        Case::new("cancel: DELETE", "DELETE", cancel(id))
            .bearer(token)
            .want(Status(405)),
        // Cancel by body
        post("enrichment cancel: random bytes", cancel_enrich)
            .bearer(token)
            .body(Some("application/json"), noise(10, 777))
            .want(Status(400)),
        post("enrichment cancel: jobId null", cancel_enrich)
            .bearer(token)
            .json(r#"{"jobId":null}"#)
            .want(Status(400)),
        post("enrichment cancel: form body", cancel_enrich)
            .bearer(token)
            .body(Some("application/x-www-form-urlencoded"), format!("jobId={id}"))
            .want(Status(400)),
        post("enrichment cancel: running job, no Authorization", cancel_enrich)
            .json(format!(r#"{{"jobId":"{id}"}}"#))
            .want(Status(401)),
        post("enrichment cancel: running job, Bearer alone", cancel_enrich)
            .header("Authorization", "Bearer ")
            .json(format!(r#"{{"jobId":"{id}"}}"#))
            .want(Status(401)),
        get("enrichment cancel: GET", cancel_enrich).want(Status(405)),
        post("scan cancel: array", cancel_scan)
            .bearer("wrong")
            .json(format!(r#"["{id}"]"#))
            .want(Status(400)),
        post("scan cancel: invalid UTF-8", cancel_scan)
            .bearer(token)
            .json(with_bad_utf8(r#"{"jobId":""#, r#""}"#))
            .want(Status(400)),
        post("scan cancel: jobId with unicode hyphens", cancel_scan)
            .bearer(token)
            .json(format!(r#"{{"jobId":"{}"}}"#, id.replace('-', "\u{2010}")))
            .want(Status(400)),
        post("scan cancel: 17 KiB chunked", cancel_scan)
            .bearer(token)
            .chunked(
                "application/json",
                format!(r#"{{"jobId":"{id}","pad":"{}"}}"#, "p".repeat(17 * 1024)),
            )
            .want(Status(413)),
        post("scan cancel: running job, wrong token", cancel_scan)
            .bearer("wrong")
            .json(format!(r#"{{"jobId":"{id}"}}"#))
            .want(Status(401)),
        Case::new("scan cancel: PUT", "PUT", cancel_scan)
            .bearer(token)
            .json(format!(r#"{{"jobId":"{id}"}}"#))
            .want(Status(405)),
        // Results
        get("csv results: running job, wrong token", format!("/v1/csv/results/{id}"))
            .bearer("wrong")
            .want(Status(401)),
        Case::new("csv results: HEAD", "HEAD", format!("/v1/csv/results/{id}"))
            .bearer(token)
            .want(Status(405)),
        get("scan results: empty id", "/v1/scan/results/")
            .bearer(token)
            .want(Status(400)),
        get("scan results: another pipeline's job", format!("/v1/scan/results/{id}"))
            .bearer(token)
            .want(Status(404)),
        Case::new("scan results: PATCH", "PATCH", format!("/v1/scan/results/{id}"))
            .bearer(token)
            .want(Status(405)),
        get("enrichment results: unknown job", format!("/v1/enrichment/results/{UNKNOWN_JOB}"))
            .bearer("x")
            .want(Status(404)),
        get(
            "enrichment results: another pipeline's job",
            format!("/v1/enrichment/results/{id}"),
        )
        .bearer(token)
        .want(Status(404)),
        Case::new(
            "enrichment results: DELETE",
            "DELETE",
            format!("/v1/enrichment/results/{id}"),
        )
        .bearer(token)
        .want(Status(405)),
        get("results: unknown pipeline", format!("/v1/books/results/{id}"))
            .bearer(token)
            .want(Status(404)),
        // Progress socket as plain HTTP
        get("ws: no Upgrade", ws(&format!("jobId={id}&token={token}"))).want(Status(426)),
        get("ws: no Upgrade, no query", "/ws/progress").want(Status(426)),
        get("ws: Upgrade h2c", ws(&format!("jobId={id}&token={token}")))
            .header("Upgrade", "h2c")
            .header("Connection", "Upgrade")
            .want(Status(426)),
        post("ws: POST", ws(&format!("jobId={id}&token={token}"))).want(Status(405)),
        Case::new("ws: PUT", "PUT", ws(&format!("jobId={id}&token={token}"))).want(Status(405)),
        Case::new("ws: HEAD", "HEAD", "/ws/progress").want(Status(405)),
        // Progress socket as real upgrades
        get("ws upgrade: no jobId", ws(&format!("token={token}")))
            .upgrade()
            .want(Status(400)),
        get("ws upgrade: two junk jobIds", ws("jobId=a&jobId=b&token=x"))
            .upgrade()
            .want(Status(400)),
        get(
            "ws upgrade: junk jobId first, real one second",
            ws(&format!("jobId=junk&jobId={id}&token={token}")),
        )
        .upgrade()
        .want(Status(400)),
        get(
            "ws upgrade: two wrong tokens",
            ws(&format!("jobId={id}&token=wrong1&token=wrong2")),
        )
        .upgrade()
        .want(Status(400)),
        get(
            "ws upgrade: right token then a wrong one",
            ws(&format!("jobId={id}&token={token}&token=wrong")),
        )
        .upgrade()
        .want(Status(400)),
        get(
            "ws upgrade: 900-byte token",
            ws(&format!("jobId={id}&token={}", "t".repeat(900))),
        )
        .upgrade()
        .want(Status(401)),
        get(
            "ws upgrade: reconnect twice",
            ws(&format!("jobId={id}&token=x&reconnect=true&reconnect=false")),
        )
        .upgrade()
        .want(Status(400)),
        get("ws upgrade: no token", ws(&format!("jobId={id}")))
            .upgrade()
            .want(Status(401)),
        get("ws upgrade: 10 KB token", ws(&format!("jobId={id}&token={ten_kb}")))
            .upgrade()
            .want(Status(400)),
        get(
            "ws upgrade: token in the Authorization header only",
            ws(&format!("jobId={id}")),
        )
        .bearer(token)
        .upgrade()
        .want(Status(401)),
        get("ws upgrade: unknown job", ws(&format!("jobId={UNKNOWN_JOB}&token=x")))
            .upgrade()
            .want(Status(404)),
        get("ws upgrade: jobId with plus signs", ws(&format!("jobId={}&token=x", id.replace('-', "+"))))
            .upgrade()
            .want(Status(400)),
        // The test route
        post("test jobs: random bytes", "/api/test/jobs")
            .body(None, noise(11, 512))
            .want(Status(400)),
        post("test jobs: unknown field", "/api/test/jobs")
            .json(r#"{"items":1,"rm -rf":true}"#)
            .want(Status(400)),
        post("test jobs: items 2^70", "/api/test/jobs")
            .json(r#"{"items":1180591620717411303424}"#)
            .want(Status(400)),
        get("test jobs: GET", "/api/test/jobs").want(Status(405)),
        // Unknown paths
        get("unknown: root", "/").want(Status(404)),
        get("unknown: /api", "/api").want(Status(404)),
        get("unknown: encoded dot segments", "/%2e%2e/%2e%2e/etc/passwd").want(Status(404)),
        post("unknown: encoded slash after a route", "/api/import/csv%2F")
            .body(Some("text/csv"), "Title\nDune\n")
            .want(Status(404)),
        get("unknown: job-state without id", "/api/job-state").want(Status(404)),
        post("unknown: extra segment after enrichment", "/v1/enrichment/batch/extra")
            .json(r#"{"books":[{"title":"Dune"}]}"#)
            .want(Status(404)),
        get("unknown: 10 KB path", format!("/{ten_kb}")).want(Status(400)),
        Case::new("unknown: DELETE", "DELETE", "/nope").want(Status(404)),
        get("unknown: job without action", format!("/api/jobs/{id}"))
            .bearer(token)
            .want(Status(404)),
    ];
    // Every bad id on every route that takes one in its path or query.
    for (what, bad) in bad_ids() {
        let want = match what {
            // Decoded it would be a UUID; refusing it (400) or looking it up (404) both hold.
            "percent-encoded UUID" => Any4xx,
            _ => Status(400),
        };
        c.push(
            get(&format!("state: id {what}"), state(&bad))
                .bearer("x")
                .want(want),
        );
        c.push(
            post(&format!("cancel: id {what}"), cancel(&bad))
                .bearer("x")
                .want(want),
        );
        c.push(
            get(
                &format!("ws upgrade: jobId {what}"),
                ws(&format!("jobId={bad}&token=x")),
            )
            .upgrade()
            .want(want),
        );
        for kind in ["csv", "scan", "enrichment"] {
            c.push(
                get(
                    &format!("{kind} results: id {what}"),
                    format!("/v1/{kind}/results/{bad}"),
                )
                .bearer("x")
                .want(want),
            );
        }
    }
    c
}

/// What came back, framing undone.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// Sends one case over its own connection and reads the answer. The request is written by a
/// separate task, so an early refusal is read even while the body is still going out.
async fn exchange(port: u16, case: &Case, client_ip: &str) -> Result<Reply, String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut wire = format!(
        "{} {} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCF-Connecting-IP: {client_ip}\r\n",
        case.method, case.target
    )
    .into_bytes();
    for (name, value) in &case.headers {
        wire.extend_from_slice(name.as_bytes());
        wire.extend_from_slice(b": ");
        wire.extend_from_slice(value);
        wire.extend_from_slice(b"\r\n");
    }
    if !case.is_upgrade() {
        wire.extend_from_slice(b"Connection: close\r\n");
    }
    match &case.body {
        Body::None => wire.extend_from_slice(b"\r\n"),
        Body::Sized(bytes) => {
            wire.extend_from_slice(format!("Content-Length: {}\r\n\r\n", bytes.len()).as_bytes());
            wire.extend_from_slice(bytes);
        }
        Body::Chunked(bytes) => {
            wire.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for chunk in bytes.chunks(4096) {
                wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                wire.extend_from_slice(chunk);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
        }
    }
    let (mut reader, mut writer) = stream.into_split();
    // The task hands the write half back rather than dropping it: a drop would half-close the
    // connection before the answer is read.
    let sending = tokio::spawn(async move {
        let _ = writer.write_all(&wire).await;
        writer
    });
    let reply = tokio::time::timeout(CASE_TIMEOUT, read_reply(&mut reader, case.method == "HEAD"))
        .await
        .map_err(|_| format!("no complete answer within {CASE_TIMEOUT:?}"))?;
    sending.abort();
    reply
}

async fn more(reader: &mut OwnedReadHalf, buf: &mut Vec<u8>) -> Result<usize, String> {
    let mut chunk = [0u8; 16 * 1024];
    let n = reader
        .read(&mut chunk)
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Reads until `buf` holds at least `len` bytes.
async fn fill(reader: &mut OwnedReadHalf, buf: &mut Vec<u8>, len: usize) -> Result<(), String> {
    while buf.len() < len {
        if more(reader, buf).await? == 0 {
            return Err(format!(
                "connection closed after {} of {len} bytes",
                buf.len()
            ));
        }
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

async fn read_reply(reader: &mut OwnedReadHalf, head_only: bool) -> Result<Reply, String> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n", 0) {
            break i;
        }
        if more(reader, &mut buf).await? == 0 {
            return Err(format!(
                "connection closed without a complete answer: {:?}",
                String::from_utf8_lossy(&buf)
            ));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.trim().as_bytes()),
                HeaderValue::from_str(value.trim()),
            ) {
                headers.append(n, v);
            }
        }
    }
    let mut rest = buf.split_off(head_end + 4);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let body = if head_only || matches!(status, 101 | 204 | 304) {
        Vec::new()
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut pos = 0;
        loop {
            let line_end = loop {
                if let Some(i) = find(&rest, b"\r\n", pos) {
                    break i;
                }
                if more(reader, &mut rest).await? == 0 {
                    return Err("connection closed inside a chunked answer".into());
                }
            };
            let size_text = String::from_utf8_lossy(&rest[pos..line_end]);
            let size_hex = size_text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| format!("bad chunk size {size_text:?}"))?;
            if size == 0 {
                break body;
            }
            fill(reader, &mut rest, line_end + 2 + size + 2).await?;
            body.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            pos = line_end + 2 + size + 2;
        }
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        fill(reader, &mut rest, len).await?;
        rest.truncate(len);
        rest
    } else {
        while more(reader, &mut rest).await? > 0 {}
        rest
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// The contract's code for an error status.
fn code_for(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "INVALID_REQUEST",
        401 => "AUTH_ERROR",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        409 => "CONFLICT",
        413 => "PAYLOAD_TOO_LARGE",
        415 => "UNSUPPORTED_MEDIA_TYPE",
        426 => "UPGRADE_REQUIRED",
        429 => "RATE_LIMIT_EXCEEDED",
        _ => return None,
    })
}

fn check(case: &Case, reply: Reply) -> Result<(), String> {
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    let shown: String = text.chars().take(400).collect();
    let fail = |why: String| {
        Err(format!(
            "{}: {why}\n    request: {}\n    answer: {} {shown}",
            case.name,
            case.describe(),
            reply.status
        ))
    };
    if !(400..500).contains(&reply.status) {
        return fail(format!("status {}, want 4xx", reply.status));
    }
    if let Status(want) = case.want {
        if reply.status != want {
            return fail(format!("status {}, want {want}", reply.status));
        }
    }
    let Some(code) = code_for(reply.status) else {
        return fail(format!(
            "status {} is not one of the contract's",
            reply.status
        ));
    };
    if reply.status == 405 && !reply.headers.contains_key("allow") {
        return fail("405 without an Allow header".into());
    }
    if case.method == "HEAD" {
        return Ok(());
    }
    let answer = Answer {
        status: reply.status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        headers: reply.headers,
        text: text.clone(),
    };
    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| answer.assert_envelope())) {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        return fail(format!("not the error envelope: {why}"));
    }
    if answer.code() != code {
        return fail(format!("code {:?}, want {code}", answer.code()));
    }
    Ok(())
}

/// Each case comes from its own client address, so that per-client rate limits see every
/// case as a first request and the status is the one its input deserves.
fn client_ip(n: usize) -> String {
    format!("198.18.{}.{}", n / 200, n % 200 + 1)
}

#[tokio::test]
async fn malformed_requests_get_4xx_envelopes_and_harm_nothing() {
    // Its own worker: the barrage must not spend rate limits other tests count on.
    let providers = Providers::start(Duration::from_millis(20));
    let w = Worker::start(providers.options(test_options())).await;

    // A job in full flight while the barrage lands: about 6 s of work.
    let job = synthetic(&w, json!({ "items": 60, "chunkDelayMs": 100 })).await;
    let mut ws = Socket::connect(&w, &job).await;
    ws.ready().await;
    ws.until("job_started").await;

    let cases = cases(&job);
    let total = cases.len();
    let mut names = HashSet::new();
    for case in &cases {
        assert!(
            names.insert(case.name.as_str()),
            "case {:?} twice",
            case.name
        );
    }
    assert!(total >= 60, "only {total} cases");
    let port = w.port;
    let failures: Vec<String> = futures_util::stream::iter(cases.into_iter().enumerate())
        .map(|(n, case)| async move {
            match exchange(port, &case, &client_ip(n)).await {
                Ok(reply) => check(&case, reply),
                Err(e) => Err(format!(
                    "{}: {e}\n    request: {}",
                    case.name,
                    case.describe()
                )),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|outcome| async move { outcome.err() })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} of {total} malformed requests were mishandled:\n{}",
        failures.len(),
        failures.join("\n")
    );

    let health = get_answer(&w, "/health").await;
    assert_eq!(health.status, 200, "{}", health.text);
    health.assert_envelope();
    assert_eq!(health.data()["status"], "ok");

    let closed = ws.until_closed().await;
    assert_eq!(closed.code, 1000, "{closed:?} after {:?}", ws.kinds());
    assert_eq!(ws.of_kind("job_complete").len(), 1, "{:?}", ws.kinds());
    let state = job_state(&w, &job).await;
    assert_eq!(state["status"], "complete", "{state}");
    assert_eq!(state["processedCount"], 60, "{state}");

    let fresh = http()
        .post(w.url("/api/enrichment/batch"))
        .header("CF-Connecting-IP", client_ip(total))
        .json(&json!({ "books": [{ "title": "Dune", "author": "Frank Herbert" }] }))
        .send()
        .await
        .unwrap();
    let created = Created::from_answer(&Answer::from(fresh).await);
    assert_eq!(created.pipeline, "batch_enrichment");

    println!("hostile: {total} malformed requests, all 4xx");
}

/// `support::get` by another name: this module's own `get` builds cases.
async fn get_answer(w: &Worker, path: &str) -> Answer {
    crate::support::get(w, path, None).await
}
