//! Fake Gemini, Google Books and Open Library endpoints in the providers' real JSON shapes.
//!
//! Behaviour is chosen by what a test sends, so many tests can share one server: a scan test
//! marks its image bytes with `scenario=<name>;`, an enrichment test picks titles and ISBNs
//! from [`KNOWN_BOOKS`] or with the words "Unknown", "Outage" or "Slow" in them.
//!
//! Answers the real providers gave that the worker once mishandled are learnt by title word
//! ([`RealShape`]): a body behind a UTF-8 BOM, a 429 saved as UTF-16, a title carrying its
//! author after `\c`, a quoted publisher with a timestamp date, duplicate Open Library records
//! of which only the second has a cover, and an unreadable 200. A scan's `notbooks` scenario
//! answers a list of objects that are not books, `quota16` a UTF-16 429.

use super::fake::{FakeRequest, FakeResponse, FakeServer, Handler};
use super::wrangler::{Worker, WorkerOptions};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

pub const GEMINI_KEY: &str = "test-gemini-key-3f9a1c";
pub const GEMINI_MODEL: &str = "gemini-test";

/// Books the fake providers know by ISBN: (ISBN-13, title, author).
pub const KNOWN_BOOKS: &[(&str, &str, &str)] = &[
    ("9780441013593", "Dune", "Frank Herbert"),
    (
        "9780441478125",
        "The Left Hand of Darkness",
        "Ursula K. Le Guin",
    ),
    ("9780441569595", "Neuromancer", "William Gibson"),
    ("9780553293357", "Foundation", "Isaac Asimov"),
    (
        "9780345391803",
        "The Hitchhiker's Guide to the Galaxy",
        "Douglas Adams",
    ),
    ("9780547928227", "The Hobbit", "J.R.R. Tolkien"),
    ("9780316769488", "The Catcher in the Rye", "J.D. Salinger"),
    ("9780061120084", "To Kill a Mockingbird", "Harper Lee"),
    ("9780452284234", "Nineteen Eighty-Four", "George Orwell"),
    ("9780143127550", "Station Eleven", "Emily St. John Mandel"),
];

/// ISBNs for which Google Books answers 500 (Open Library still knows them).
pub const GOOGLE_OUTAGE_ISBNS: &[&str] = &["9780143127550"];

fn fixture(dir: &str, name: &str) -> String {
    let path = format!("{}/tests/fixtures/{dir}/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Image bytes of `kind` ("jpeg", "png", "webp", "heic", "gif") that carry a scenario marker.
pub fn image(kind: &str, scenario: &str) -> Vec<u8> {
    let mut bytes: Vec<u8> = match kind {
        "jpeg" => vec![
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00,
        ],
        "png" => b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec(),
        "webp" => b"RIFF\x24\x00\x00\x00WEBPVP8 ".to_vec(),
        "heic" => b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic".to_vec(),
        "gif" => b"GIF89a\x01\x00\x01\x00".to_vec(),
        other => panic!("no such kind {other}"),
    };
    bytes.extend_from_slice(format!("scenario={scenario};").as_bytes());
    bytes.resize(bytes.len() + 512, 0x42);
    bytes
}

fn scenario_of(req: &FakeRequest) -> String {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let data = body["contents"][0]["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|p| {
            p["inline_data"]["data"]
                .as_str()
                .or(p["inlineData"]["data"].as_str())
        })
        .unwrap_or("");
    let bytes = bookstrack_jobs::base64::decode(data, 10 << 20).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    text.split("scenario=")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .unwrap_or("")
        .to_string()
}

/// How many Gemini requests carried each scenario marker.
#[derive(Default)]
pub struct Counts(Mutex<HashMap<String, usize>>);

impl Counts {
    fn bump(&self, key: &str) -> usize {
        let mut map = self.0.lock().unwrap();
        let n = map.entry(key.to_string()).or_default();
        *n += 1;
        *n
    }

    pub fn get(&self, key: &str) -> usize {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

/// Title words that make the fake book providers answer in a shape a real provider once did.
pub struct RealShape;

impl RealShape {
    /// Google Books answers 200 with the volume behind a UTF-8 byte-order mark.
    pub const BOM: &'static str = "Bommed";
    /// Both providers answer 429 with a Google quota error saved as UTF-16.
    pub const UTF16_QUOTA: &'static str = "Quota16";
    /// Google Books answers 200 with a body that is not JSON; Open Library finds nothing.
    pub const UNREADABLE: &'static str = "Unreadable";
    /// Google Books' title carries the author after a `\c` marker.
    pub const AUTHOR_SUFFIX: &'static str = "Catalogued";
    /// Google Books quotes the publisher and gives a timestamp for the date.
    pub const QUOTED_PUBLISHER: &'static str = "Quoted";
    /// Google Books finds nothing; Open Library lists the work twice, the first without a cover.
    pub const COVER_DUPLICATE: &'static str = "Twice";
}

fn fixture_bytes(dir: &str, name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{dir}/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn gemini(req: &FakeRequest, counts: &Counts) -> FakeResponse {
    let scenario = scenario_of(req);
    let n = counts.bump(&scenario);
    let ok = |name: &str| FakeResponse::json(200, fixture("gemini", &format!("{name}.json")));
    let kind = scenario.split('-').next().unwrap_or("");
    match kind {
        // `fenced-<anything>` answers as `fenced`: tests mark their own requests that way.
        "fenced" | "prose" => ok(kind),
        "bare" => ok("bare_array"),
        "wrapped" => ok("wrapped_books"),
        "boxes" => ok("out_of_range_boxes"),
        "blocked" => ok("blocked_safety"),
        "notbooks" => ok("not_books"),
        "quota16" => FakeResponse::json(429, fixture_bytes("gemini", "error_429_utf16.json")),
        "badrequest" => FakeResponse::json(
            400,
            json!({"error": {"code": 400, "message": "Image is unreadable", "status": "INVALID_ARGUMENT"}}).to_string(),
        ),
        // Fails the first time it is asked, then answers.
        "flaky" if n == 1 => FakeResponse::json(500, fixture("gemini", "error_500.json")),
        "flaky" => ok("fenced"),
        "down" => FakeResponse::json(500, fixture("gemini", "error_500.json")),
        "slow" => ok("fenced").after(Duration::from_millis(700)),
        // Hangs well past any test's provider timeout the first time, then answers at once.
        "hangonce" if n == 1 => ok("fenced").after(Duration::from_secs(3)),
        "hangonce" => ok("fenced"),
        // A bad request whose body echoes the API key, as some proxies and error pages do.
        "echokey" => FakeResponse::json(
            400,
            json!({"error": {"code": 400, "message": format!("API key {GEMINI_KEY} not valid. Please pass a valid API key."), "status": "INVALID_ARGUMENT"}}).to_string(),
        ),
        // Holds the call for 40 s, past the token expiry and results TTL of the timing tests.
        "hang40" => ok("fenced").after(Duration::from_secs(40)),
        _ => FakeResponse::json(400, json!({"error": {"code": 400, "message": format!("no scenario {scenario:?}")}}).to_string()),
    }
}

fn query_param(target: &str, name: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

/// Decodes `%XX`; a `+` stays a `+`, since the worker encodes spaces as `%20` and uses `+`
/// as Google's query operator separator.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => out.push(b),
                    Err(_) => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn isbn10_of(isbn13: &str) -> Option<String> {
    bookstrack_jobs::isbn::isbn13_to_10(isbn13)
}

fn volume(isbn13: Option<&str>, title: &str, author: &str) -> Value {
    let mut ids = Vec::new();
    if let Some(isbn13) = isbn13 {
        ids.push(json!({"type": "ISBN_13", "identifier": isbn13}));
        if let Some(isbn10) = isbn10_of(isbn13) {
            ids.push(json!({"type": "ISBN_10", "identifier": isbn10}));
        }
    }
    json!({
        "kind": "books#volume",
        "id": format!("fake{}", title.len()),
        "volumeInfo": {
            "title": title,
            "authors": [author],
            "publisher": "Fake Press",
            "publishedDate": "2001-02-03",
            "pageCount": 321,
            "industryIdentifiers": ids,
            "imageLinks": {
                "smallThumbnail": "http://books.google.com/books/content?id=x&zoom=5",
                "thumbnail": "http://books.google.com/books/content?id=x&zoom=1&edge=curl"
            }
        }
    })
}

fn volumes(items: Vec<Value>) -> FakeResponse {
    let body = if items.is_empty() {
        json!({"kind": "books#volumes", "totalItems": 0})
    } else {
        json!({"kind": "books#volumes", "totalItems": items.len(), "items": items})
    };
    FakeResponse::json(200, body.to_string())
}

fn known(isbn13: &str) -> Option<(&'static str, &'static str, &'static str)> {
    KNOWN_BOOKS.iter().copied().find(|(i, _, _)| *i == isbn13)
}

fn google_books(req: &FakeRequest) -> FakeResponse {
    let q = query_param(&req.target, "q").unwrap_or_default();
    if let Some(isbn) = q.strip_prefix("isbn:") {
        if GOOGLE_OUTAGE_ISBNS.contains(&isbn) {
            return FakeResponse::json(500, r#"{"error":{"code":500,"message":"Backend Error"}}"#);
        }
        return volumes(
            known(isbn)
                .map(|(i, t, a)| volume(Some(i), t, a))
                .into_iter()
                .collect(),
        );
    }
    let title = q
        .split("intitle:")
        .nth(1)
        .map(|t| t.split("+inauthor:").next().unwrap_or(""))
        .unwrap_or("");
    let author = q.split("+inauthor:").nth(1).unwrap_or("Anonymous");
    if title.contains("Outage") {
        return FakeResponse::json(
            503,
            r#"{"error":{"code":503,"message":"Service Unavailable"}}"#,
        );
    }
    if title.contains("Unknown") || title.contains(RealShape::COVER_DUPLICATE) {
        return volumes(Vec::new());
    }
    if title.contains(RealShape::BOM) {
        let mut body = b"\xEF\xBB\xBF".to_vec();
        let answer = json!({"kind": "books#volumes", "totalItems": 1, "items": [volume(None, title, author)]});
        body.extend_from_slice(answer.to_string().as_bytes());
        return FakeResponse::json(200, body);
    }
    if title.contains(RealShape::UTF16_QUOTA) {
        return FakeResponse::json(429, fixture_bytes("books", "gb_error_429_utf16.json"));
    }
    if title.contains(RealShape::UNREADABLE) {
        return FakeResponse::json(
            200,
            "<html><body>Service temporarily unavailable</body></html>",
        );
    }
    if title.contains(RealShape::AUTHOR_SUFFIX) {
        return volumes(vec![volume(None, &format!("{title} \\c {author}"), author)]);
    }
    if title.contains(RealShape::QUOTED_PUBLISHER) {
        let mut v = volume(None, title, author);
        v["volumeInfo"]["publisher"] = json!("\"Fake Press\"");
        v["volumeInfo"]["publishedDate"] = json!("2001-02-03T00:00:00Z");
        return volumes(vec![v]);
    }
    // `Stagger<n>` answers after n × 300 ms, so the books of one chunk finish one by one.
    if let Some(n) = title
        .split("Stagger")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse::<u64>().ok())
    {
        return volumes(vec![volume(None, title, author)])
            .after(Duration::from_millis(300 * n + 20));
    }
    if title.contains("Hang") {
        return volumes(vec![volume(None, title, author)]).after(Duration::from_secs(3));
    }
    volumes(vec![volume(None, title, author)])
}

fn open_library(req: &FakeRequest) -> FakeResponse {
    let path = req.path();
    if let Some(isbn) = path
        .strip_prefix("/ol/isbn/")
        .and_then(|p| p.strip_suffix(".json"))
    {
        return match known(isbn) {
            Some((i, title, _)) => FakeResponse::json(
                200,
                json!({
                    "title": title,
                    "publishers": ["Open Press"],
                    "publish_date": "1999",
                    "number_of_pages": 250,
                    "isbn_13": [i],
                    "covers": [12345],
                    "authors": [{"key": format!("/authors/OL{}A", i)}],
                    "key": format!("/books/OL{}M", i),
                })
                .to_string(),
            ),
            None => FakeResponse::json(404, r#"{"error":"notfound","key":"/isbn"}"#),
        };
    }
    if let Some(key) = path
        .strip_prefix("/ol/authors/OL")
        .and_then(|p| p.strip_suffix("A.json"))
    {
        let name = known(key).map(|(_, _, a)| a).unwrap_or("Someone");
        return FakeResponse::json(
            200,
            json!({"name": name, "key": format!("/authors/OL{key}A")}).to_string(),
        );
    }
    if path == "/ol/search.json" {
        let title = query_param(&req.target, "title").unwrap_or_default();
        let author = query_param(&req.target, "author").unwrap_or_else(|| "Anonymous".into());
        if title.contains("Unknown")
            || title.contains("Outage")
            || title.contains(RealShape::UNREADABLE)
        {
            return FakeResponse::json(200, r#"{"numFound":0,"start":0,"docs":[]}"#);
        }
        if title.contains(RealShape::UTF16_QUOTA) {
            return FakeResponse::json(429, fixture_bytes("books", "gb_error_429_utf16.json"));
        }
        if title.contains(RealShape::COVER_DUPLICATE) {
            let bare = json!({"title": title, "author_name": [author], "first_publish_year": 1990, "key": "/works/OL1W"});
            let covered = json!({"title": title, "author_name": [author], "first_publish_year": 1990, "cover_i": 999, "key": "/works/OL2W"});
            return FakeResponse::json(
                200,
                json!({"numFound": 2, "start": 0, "docs": [bare, covered]}).to_string(),
            );
        }
        let doc = json!({"title": title, "author_name": [author], "first_publish_year": 1990, "cover_i": 777, "key": "/works/OL1W"});
        return FakeResponse::json(
            200,
            json!({"numFound": 1, "start": 0, "docs": [doc]}).to_string(),
        );
    }
    FakeResponse::json(404, r#"{"error":"notfound"}"#)
}

/// Applies the server's lookup delay unless the scenario chose its own.
fn with_default_delay(response: FakeResponse, delay: Duration) -> FakeResponse {
    if response.delay.is_zero() {
        response.after(delay)
    } else {
        response
    }
}

/// The fake providers, with Gemini request counts by scenario marker.
pub struct Providers {
    pub server: FakeServer,
    pub gemini_counts: Arc<Counts>,
}

impl Providers {
    /// `books_delay` slows every book lookup, so that concurrency can be observed; titles
    /// containing "Slow" wait longer.
    pub fn start(books_delay: Duration) -> Providers {
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let handler: Handler = Arc::new(move |req: &FakeRequest| {
            let path = req.path().to_string();
            let slow = req.target.contains("Slow") || req.target.contains("slow");
            let delay = if slow { books_delay * 8 } else { books_delay };
            if path.starts_with("/v1beta/models/") {
                gemini(req, &c)
            } else if path.starts_with("/books/v1/volumes") {
                with_default_delay(google_books(req), delay)
            } else if path.starts_with("/ol/") {
                with_default_delay(open_library(req), delay)
            } else {
                FakeResponse::json(404, r#"{"error":"no such fake endpoint"}"#)
            }
        });
        Providers {
            server: FakeServer::start(handler),
            gemini_counts: counts,
        }
    }

    /// Worker options that point every provider at this server.
    pub fn options(&self, base: WorkerOptions) -> WorkerOptions {
        base.var("GEMINI_API_BASE", format!("{}/v1beta", self.server.base))
            .var("GEMINI_MODEL", GEMINI_MODEL)
            .var("GEMINI_API_KEY", GEMINI_KEY)
            .var(
                "GOOGLE_BOOKS_API_BASE",
                format!("{}/books/v1", self.server.base),
            )
            .var("OPENLIBRARY_API_BASE", format!("{}/ol", self.server.base))
            .var("GEMINI_TIMEOUT_SECS", 3)
            .var("BOOKS_API_TIMEOUT_SECS", 3)
    }
}

/// One fake-provider server and one worker pointed at it, shared by the pipeline tests that
/// only look at their own jobs and their own scenario markers.
pub async fn shared_providers() -> &'static (Providers, Worker) {
    static SHARED: OnceCell<(Providers, Worker)> = OnceCell::const_new();
    SHARED
        .get_or_init(|| async {
            let providers = Providers::start(Duration::from_millis(20));
            let worker = Worker::start(providers.options(super::test_options())).await;
            (providers, worker)
        })
        .await
}
