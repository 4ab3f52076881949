//! Gemini `generateContent` for a shelf photo: the request, the parsing of the answer into
//! lenient detections, their normalisation into scan books, and provider failure classes.

use crate::json_body::structural_brackets;
use serde_json::{json, Map, Value};

use super::image::ImageKind;
use super::results::{BoundingBox, ScanBook};
use crate::base64;
use crate::host::{Answer, CallError};
use crate::isbn::{classify, IsbnCheck};
use crate::pipelines::provider_body::decode_body;
use crate::time::{retry_after_ms, Millis};

pub const PROMPT: &str = "This photo shows books on a shelf, a table or a floor. Identify every \
book whose spine or cover is visible, including books lying flat or partly hidden. For each \
book return an object with:\n\
- \"title\": the title as printed, or null if you cannot read it;\n\
- \"author\": the author as printed, or null if it is not visible;\n\
- \"isbn\": the ISBN only if it is printed and legible, otherwise null; never guess one;\n\
- \"confidence\": a number from 0 to 1, how sure you are of the title and author;\n\
- \"boundingBox\": the visible spine or cover as {\"x\", \"y\", \"width\", \"height\"}, \
fractions (0 to 1) of the image width and height, with x and y the top-left corner.\n\
Return only a JSON array of these objects, ordered left to right then top to bottom, or an \
empty array if no book is visible. Use null for any unknown field; do not invent titles.";

/// Low but not zero: the answer should be stable, yet a zero temperature makes some models
/// loop on repeated spines.
pub const TEMPERATURE: f64 = 0.1;
pub const MAX_TITLE_CHARS: usize = 500;
pub const MAX_AUTHOR_CHARS: usize = 300;
pub const MAX_BOOKS_PER_PHOTO: usize = 200;

/// `POST` target for a model. A model configured as `models/<name>` is accepted too.
pub fn endpoint(api_base: &str, model: &str) -> String {
    let base = api_base.trim().trim_end_matches('/');
    let model = model.trim();
    let model = model.strip_prefix("models/").unwrap_or(model);
    format!("{base}/models/{model}:generateContent")
}

/// The schema Gemini's JSON mode holds the answer to: the same shape the prompt describes.
pub fn response_schema() -> Value {
    let number = json!({ "type": "NUMBER" });
    let nullable_string = json!({ "type": "STRING", "nullable": true });
    json!({
        "type": "ARRAY",
        "items": {
            "type": "OBJECT",
            "properties": {
                "title": nullable_string,
                "author": nullable_string,
                "isbn": nullable_string,
                "confidence": number,
                "boundingBox": {
                    "type": "OBJECT",
                    "properties": { "x": number, "y": number, "width": number, "height": number },
                    "required": ["x", "y", "width", "height"],
                    "propertyOrdering": ["x", "y", "width", "height"],
                },
            },
            "required": ["title", "author", "isbn", "confidence", "boundingBox"],
            "propertyOrdering": ["title", "author", "isbn", "confidence", "boundingBox"],
        },
    })
}

/// How much Gemini may write for one photo. `max_output_tokens` bounds the answer (and the
/// bill) whatever the photo; `thinking_budget` is the part of it the model may spend thinking
/// first (0: none, which suits reading spines, a task the model does not need to reason about).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputBudget {
    pub max_output_tokens: u32,
    pub thinking_budget: u32,
}

/// The `generateContent` body for one photo, as text. The image goes first: Gemini's
/// guidance for single-image prompts is image before text. Its base64 is written straight
/// into the body (no separate text of it and no JSON escaping pass over it): a 5 MiB photo
/// costs one 6.7 MiB string, not three.
pub fn build_request(image: &[u8], kind: ImageKind, budget: OutputBudget) -> String {
    // A placeholder that serialises as itself and that no other part of the body contains.
    const PHOTO: &str = "@photo@";
    let skeleton = json!({
        "contents": [{
            "role": "user",
            "parts": [
                { "inline_data": { "mime_type": kind.mime(), "data": PHOTO } },
                { "text": PROMPT },
            ],
        }],
        "generationConfig": {
            "responseMimeType": "application/json",
            "temperature": TEMPERATURE,
            "responseSchema": response_schema(),
            "maxOutputTokens": budget.max_output_tokens,
            "thinkingConfig": { "thinkingBudget": budget.thinking_budget },
        },
    })
    .to_string();
    let (before, after) = skeleton
        .split_once(PHOTO)
        .expect("the placeholder is in the skeleton");
    let mut body =
        String::with_capacity(before.len() + base64::encoded_len(image.len()) + after.len());
    body.push_str(before);
    base64::encode_into(&mut body, image);
    body.push_str(after);
    body
}

/// One book as the model described it, before any cleaning. Numbers given as strings are
/// already read; a `"95%"` string is already divided by 100; the box is as given.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Detection {
    pub title: Option<String>,
    pub author: Option<String>,
    pub isbn: Option<String>,
    pub confidence: Option<f64>,
    pub bounding_box: Option<BoundingBox>,
}

/// Why a 200 answer from Gemini holds no usable book list. None is retryable: the same image
/// and prompt would meet the same safety filter, the same empty answer or the same output
/// limit (`Truncated`: a shelf whose list exceeds the model's output budget will exceed it
/// again; low temperature makes the answer nearly deterministic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeminiError {
    /// The prompt (`promptFeedback.blockReason`) or the answer (`finishReason`) was blocked.
    Blocked {
        reason: String,
    },
    NoCandidates,
    /// The answer text holds no JSON book list.
    NoJson,
    /// The answer holds a JSON list, but of things that are not books: no entry has a single
    /// field of a book detection (`[{"name": "mug", "colors": [...]}]`).
    NotBooks,
    /// `finishReason` is `MAX_TOKENS` and the text is not complete JSON.
    Truncated,
    /// The body is not a `generateContent` response at all.
    MalformedResponse,
}

impl GeminiError {
    pub fn retryable(&self) -> bool {
        false
    }

    /// A stable name for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Blocked { .. } => "blocked",
            Self::NoCandidates => "no_candidates",
            Self::NoJson => "no_json",
            Self::NotBooks => "not_books",
            Self::Truncated => "truncated",
            Self::MalformedResponse => "malformed_response",
        }
    }

    /// A message fit for the client and the photo record.
    pub fn message(&self) -> String {
        match self {
            Self::Blocked { reason } => {
                format!("the AI provider refused to analyse this photo ({reason})")
            }
            Self::NoCandidates => "the AI provider returned no answer for this photo".into(),
            Self::NoJson => "the AI provider's answer did not contain a book list".into(),
            Self::NotBooks => {
                "the AI provider's answer did not contain a book list: it listed things \
                 without any book field (title, author, ISBN)"
                    .into()
            }
            Self::Truncated => {
                "the AI provider's answer was cut off; try a photo with fewer books".into()
            }
            Self::MalformedResponse => "the AI provider returned an unexpected response".into(),
        }
    }
}

impl std::fmt::Display for GeminiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for GeminiError {}

/// Candidate finish reasons that mean the answer was withheld.
const BLOCKING_FINISH_REASONS: [&str; 6] = [
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "IMAGE_SAFETY",
];

/// How many bracket positions the JSON search tries; prose rarely has more than a few.
const MAX_JSON_ATTEMPTS: usize = 64;
/// Deeper than any book list; also under serde_json's own recursion limit.
const MAX_SEARCH_DEPTH: usize = 64;

/// Reads a `generateContent` answer into detections (in the model's order; entries that
/// are not objects are skipped).
pub fn parse_response(body: &str) -> Result<Vec<Detection>, GeminiError> {
    let root: Value = serde_json::from_str(body).map_err(|_| GeminiError::MalformedResponse)?;
    let root = root.as_object().ok_or(GeminiError::MalformedResponse)?;

    if let Some(reason) = root
        .get("promptFeedback")
        .and_then(|f| f.get("blockReason"))
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        return Err(GeminiError::Blocked {
            reason: sanitize_reason(reason),
        });
    }
    let candidates = match root.get("candidates") {
        Some(Value::Array(list)) => list,
        // Without candidates, only the other top-level fields tell a real answer from junk.
        None | Some(Value::Null)
            if root.contains_key("promptFeedback") || root.contains_key("usageMetadata") =>
        {
            return Err(GeminiError::NoCandidates)
        }
        _ => return Err(GeminiError::MalformedResponse),
    };
    let candidate = candidates
        .first()
        .ok_or(GeminiError::NoCandidates)?
        .as_object()
        .ok_or(GeminiError::MalformedResponse)?;
    let finish = candidate
        .get("finishReason")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if BLOCKING_FINISH_REASONS.contains(&finish) {
        return Err(GeminiError::Blocked {
            reason: sanitize_reason(finish),
        });
    }
    let text = candidate_text(candidate)?;
    match extract_books(&text) {
        Extracted::Books(items) => Ok(items.iter().filter_map(detection_from).collect()),
        Extracted::NotBooks => Err(GeminiError::NotBooks),
        Extracted::Nothing if finish == "MAX_TOKENS" => Err(GeminiError::Truncated),
        Extracted::Nothing => Err(GeminiError::NoJson),
    }
}

/// Why one Gemini call gave no books for its photo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// An HTTP status other than 200. `quota` is a 429 or a `RESOURCE_EXHAUSTED` error body;
    /// `retry_after_secs` comes from the `Retry-After` header, else the body's `RetryInfo`.
    Status {
        status: u16,
        quota: bool,
        retry_after_secs: Option<u64>,
    },
    /// A 200 whose answer holds no usable book list.
    Answer(GeminiError),
}

impl CallFailure {
    /// Whether the same photo may succeed later: 408, 429 and 5xx; never an unusable answer.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Status { status, .. } => classify_http_status(*status).retryable(),
            Self::Answer(e) => e.retryable(),
        }
    }

    /// For the photo record and logs: which provider failed and its status, never the
    /// provider's own text (contract 9.6).
    pub fn message(&self) -> String {
        match self {
            Self::Status {
                status,
                quota: true,
                ..
            } => {
                format!("Gemini answered HTTP {status}: rate limit or quota exceeded")
            }
            Self::Status { status, .. } => format!("Gemini answered HTTP {status}"),
            Self::Answer(e) => e.message(),
        }
    }
}

/// Reads one Gemini HTTP answer: its status, its raw body bytes (decoded whatever their
/// encoding, see [`decode_body`]) and its `Retry-After` header if any. The status decides
/// first, so an error body that does not decode never hides it.
pub fn read_answer(
    status: u16,
    body: &[u8],
    retry_after: Option<&str>,
) -> Result<Vec<Detection>, CallFailure> {
    let text = decode_body(body);
    if status != 200 {
        let exhausted = google_error(&text)
            .and_then(|e| e.get("status").and_then(Value::as_str).map(str::to_owned))
            .is_some_and(|s| s == "RESOURCE_EXHAUSTED");
        let header_secs = retry_after.and_then(|v| v.trim().parse::<u64>().ok());
        return Err(CallFailure::Status {
            status,
            quota: status == 429 || exhausted,
            retry_after_secs: header_secs
                .map(|s| s.min(86_400))
                .or_else(|| retry_delay_secs(&text)),
        });
    }
    parse_response(&text).map_err(CallFailure::Answer)
}

/// Block reasons are enum names; anything else is cut down so it cannot smuggle text into
/// messages.
fn sanitize_reason(reason: &str) -> String {
    let clean: String = reason
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    if clean.is_empty() {
        "UNSPECIFIED".into()
    } else {
        clean
    }
}

/// The candidate's text parts, concatenated: a long answer may be split mid-token. Thought
/// summaries (`"thought": true`) are not the answer.
fn candidate_text(candidate: &Map<String, Value>) -> Result<String, GeminiError> {
    let parts = match candidate.get("content") {
        None | Some(Value::Null) => return Ok(String::new()),
        Some(Value::Object(content)) => match content.get("parts") {
            None | Some(Value::Null) => return Ok(String::new()),
            Some(Value::Array(parts)) => parts,
            Some(_) => return Err(GeminiError::MalformedResponse),
        },
        Some(_) => return Err(GeminiError::MalformedResponse),
    };
    Ok(parts
        .iter()
        .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect())
}

/// What one JSON value found in the text says about the book list.
enum Found {
    Books(Vec<Value>),
    /// An empty array: a book list only if nothing better turns up.
    Empty,
    /// A list of objects none of which describes a book: an answer only if nothing better
    /// turns up, and then a failure, not a photo with no books.
    NotBooks,
    No,
}

/// The keys a book entry may carry (the schema's and the variants read below); an object with
/// none of them is not a book. A detection with only a box is still a book nobody could read.
pub const BOOK_KEYS: [&str; 12] = [
    "title",
    "author",
    "authors",
    "isbn",
    "isbn13",
    "isbn10",
    "confidence",
    "boundingBox",
    "bounding_box",
    "bbox",
    "box",
    "box_2d",
];

fn is_book_like(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|obj| BOOK_KEYS.iter().any(|key| obj.contains_key(*key)))
}

fn list_of(items: Vec<Value>) -> Found {
    if items.is_empty() {
        Found::Empty
    } else if items.iter().any(is_book_like) {
        Found::Books(items)
    } else if items.iter().any(Value::is_object) {
        Found::NotBooks
    } else {
        Found::No
    }
}

fn books_in(value: Value) -> Found {
    match value {
        Value::Array(items) => list_of(items),
        Value::Object(mut map) => match map.remove("books") {
            Some(Value::Array(items)) if items.is_empty() => Found::Books(items),
            Some(Value::Array(items)) => list_of(items),
            _ => Found::No,
        },
        _ => Found::No,
    }
}

/// What the model's text holds.
enum Extracted {
    Books(Vec<Value>),
    NotBooks,
    Nothing,
}

/// Finds the book list in the model's text: the whole text as JSON (bare array, `books`
/// object, a single book object, or a JSON string holding any of those), else the first
/// bracketed span that parses and looks like a book list, which covers code fences, prose
/// around the JSON, and wrappers under other keys.
fn extract_books(text: &str) -> Extracted {
    let trimmed = text.trim();
    let mut not_books_seen = false;
    if let Ok(value) = serde_json::from_str::<Value>(trimmed) {
        let value = match value {
            Value::String(inner) => serde_json::from_str(inner.trim()).unwrap_or(Value::Null),
            other => other,
        };
        match value {
            Value::Object(map) if !map.contains_key("books") && map.contains_key("title") => {
                return Extracted::Books(vec![Value::Object(map)])
            }
            value => match books_in(value) {
                Found::Books(items) => return Extracted::Books(items),
                Found::Empty => return Extracted::Books(Vec::new()),
                Found::NotBooks => not_books_seen = true,
                Found::No => {}
            },
        }
    }

    let bytes = trimmed.as_bytes();
    let mut empty_seen = false;
    let starts = bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'[' || b == b'{')
        .map(|(i, _)| i)
        .take(MAX_JSON_ATTEMPTS);
    for start in starts {
        let Some(end) = matching_close(bytes, start) else {
            continue;
        };
        // Both ends are ASCII brackets, hence char boundaries; `get` keeps that unchecked.
        let Some(span) = trimmed.get(start..=end) else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(span) else {
            continue;
        };
        match books_in(value) {
            Found::Books(items) => return Extracted::Books(items),
            Found::Empty => empty_seen = true,
            Found::NotBooks => not_books_seen = true,
            Found::No => {}
        }
    }
    if empty_seen {
        Extracted::Books(Vec::new())
    } else if not_books_seen {
        Extracted::NotBooks
    } else {
        Extracted::Nothing
    }
}

/// The index of the bracket closing the one at `start`, honouring JSON strings, or `None`
/// when brackets mismatch, nest too deep or never close.
fn matching_close(bytes: &[u8], start: usize) -> Option<usize> {
    let mut expected: Vec<u8> = Vec::new();
    for (i, b) in structural_brackets(bytes.get(start..)?) {
        if matches!(b, b'[' | b'{') {
            if expected.len() == MAX_SEARCH_DEPTH {
                return None;
            }
            expected.push(if b == b'[' { b']' } else { b'}' });
        } else {
            if expected.pop() != Some(b) {
                return None;
            }
            if expected.is_empty() {
                return Some(start + i);
            }
        }
    }
    None
}

fn detection_from(value: &Value) -> Option<Detection> {
    let obj = value.as_object()?;
    Some(Detection {
        title: text_field(obj, &["title"]),
        author: text_field(obj, &["author", "authors"]),
        isbn: text_field(obj, &["isbn", "isbn13", "isbn10"]),
        confidence: obj.get("confidence").and_then(confidence_value),
        bounding_box: bounding_box(obj),
    })
}

/// A string field; numbers are spelled out (a title such as 1984, an ISBN sent as a number)
/// and a list of strings is joined, as models sometimes list co-authors.
fn text_field(obj: &Map<String, Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| match obj.get(*k)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => {
            let names: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            (!names.is_empty()).then(|| names.join(", "))
        }
        _ => None,
    })
}

fn number_value(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn confidence_value(value: &Value) -> Option<f64> {
    if let Some(percent) = value.as_str().and_then(|s| s.trim().strip_suffix('%')) {
        return percent.trim().parse::<f64>().ok().map(|p| p / 100.0);
    }
    number_value(value)
}

/// `boundingBox` (or `bounding_box`, `bbox`, `box`) as `{x,y,width,height}`, `{x,y,w,h}` or
/// `[x,y,w,h]`; failing that, Gemini's native `box_2d`, `[ymin,xmin,ymax,xmax]` in 0..1000.
/// A box missing any coordinate is no box.
fn bounding_box(obj: &Map<String, Value>) -> Option<BoundingBox> {
    let given = ["boundingBox", "bounding_box", "bbox", "box"]
        .iter()
        .find_map(|k| obj.get(*k).filter(|v| !v.is_null()));
    if let Some(raw) = given {
        return match raw {
            Value::Object(b) => {
                let get =
                    |keys: &[&str]| keys.iter().find_map(|k| b.get(*k).and_then(number_value));
                Some(BoundingBox {
                    x: get(&["x", "left"])?,
                    y: get(&["y", "top"])?,
                    width: get(&["width", "w"])?,
                    height: get(&["height", "h"])?,
                })
            }
            Value::Array(items) => {
                let [x, y, width, height] = four_numbers(items)?;
                Some(BoundingBox {
                    x,
                    y,
                    width,
                    height,
                })
            }
            _ => None,
        };
    }
    let [ymin, xmin, ymax, xmax] = four_numbers(obj.get("box_2d")?.as_array()?)?;
    Some(BoundingBox {
        x: xmin / 1000.0,
        y: ymin / 1000.0,
        width: (xmax - xmin) / 1000.0,
        height: (ymax - ymin) / 1000.0,
    })
}

fn four_numbers(items: &[Value]) -> Option<[f64; 4]> {
    match items {
        [a, b, c, d] => Some([
            number_value(a)?,
            number_value(b)?,
            number_value(c)?,
            number_value(d)?,
        ]),
        _ => None,
    }
}

/// Turns detections into scan books for photo `photo_index`:
/// - text is trimmed, inner whitespace and control characters collapse to single spaces
///   (spine text often breaks lines), and titles and authors are capped at
///   `MAX_TITLE_CHARS`/`MAX_AUTHOR_CHARS` characters;
/// - a book without a title is dropped; placeholders such as "Unknown" or "null" count as
///   no value;
/// - `isbn` is kept only when valid, as its ISBN-13 (an `ISBN`/`ISBN-13:` label is allowed);
/// - confidence above 1 is a percentage and is divided by 100, then clamped to 0..=1, so an
///   out-of-range 1.7 becomes 0.017 and lands in review rather than being approved; missing
///   or not finite is 0;
/// - the box is cut to the part inside the image (a negative `x` shortens the width), so that
///   `x + width <= 1` and `y + height <= 1`; a negative size is 0, a non-finite value is 0,
///   and a missing box is all zeros;
/// - numbers are rounded to 4 decimals (a tenth of a pixel on a 1000-pixel photo), so the
///   JSON carries no float noise;
/// - at most `MAX_BOOKS_PER_PHOTO` books are kept, in the model's order.
pub fn normalize(detections: Vec<Detection>, photo_index: u32) -> Vec<ScanBook> {
    detections
        .into_iter()
        .filter_map(|d| {
            let title = clean_text(&d.title?, MAX_TITLE_CHARS)?;
            Some(ScanBook {
                title,
                author: d.author.and_then(|a| clean_text(&a, MAX_AUTHOR_CHARS)),
                isbn: d.isbn.and_then(|i| valid_isbn13(&i)),
                confidence: clamp_confidence(d.confidence),
                bounding_box: clamp_box(d.bounding_box),
                photo_index,
            })
        })
        .take(MAX_BOOKS_PER_PHOTO)
        .collect()
}

const PLACEHOLDERS: [&str; 9] = [
    "null",
    "none",
    "n/a",
    "unknown",
    "unknown title",
    "unknown author",
    "unreadable",
    "?",
    "-",
];

fn clean_text(raw: &str, max_chars: usize) -> Option<String> {
    let spaced: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut words = spaced.split_whitespace();
    let mut out = String::from(words.next()?);
    for word in words {
        out.push(' ');
        out.push_str(word);
    }
    if PLACEHOLDERS.iter().any(|p| out.eq_ignore_ascii_case(p)) {
        return None;
    }
    if out.chars().count() > max_chars {
        out = out
            .chars()
            .take(max_chars)
            .collect::<String>()
            .trim_end()
            .to_string();
    }
    Some(out)
}

fn valid_isbn13(raw: &str) -> Option<String> {
    // Anything longer is prose, not an ISBN; this also bounds the work of `classify`.
    if raw.len() > 64 {
        return None;
    }
    let mut text = raw.trim();
    if text.len() >= 4
        && text
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("isbn"))
    {
        text = text.get(4..).unwrap_or_default();
        text = text
            .strip_prefix("-13")
            .or_else(|| text.strip_prefix("-10"))
            .unwrap_or(text);
        text = text.trim_start_matches([':', ' ']);
    }
    match classify(text) {
        IsbnCheck::Valid { isbn13, .. } => Some(isbn13),
        _ => None,
    }
}

fn round4(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

fn clamp_confidence(raw: Option<f64>) -> f64 {
    match raw {
        Some(v) if v.is_finite() => {
            let v = if v > 1.0 { v / 100.0 } else { v };
            round4(v.clamp(0.0, 1.0))
        }
        _ => 0.0,
    }
}

/// One axis of the box: `start` in 0..=1 and `len` so that the span stays inside 0..=1.
fn clamp_span(start: f64, len: f64) -> (f64, f64) {
    let mut start = finite_or_zero(start);
    let mut len = finite_or_zero(len).max(0.0);
    if start < 0.0 {
        len = (len + start).max(0.0);
        start = 0.0;
    }
    let start = round4(start.min(1.0));
    let room = round4(1.0 - start);
    let len = round4(len.min(room)).min(room).max(0.0);
    (start, len)
}

fn clamp_box(raw: Option<BoundingBox>) -> BoundingBox {
    let Some(b) = raw else {
        return BoundingBox::default();
    };
    let (x, width) = clamp_span(b.x, b.width);
    let (y, height) = clamp_span(b.y, b.height);
    BoundingBox {
        x,
        y,
        width,
        height,
    }
}

/// Whether a failed provider call is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderFailure {
    /// Timeout, rate limit or server error: the same job may succeed later.
    Transient,
    /// A bad request, key or model: retrying cannot help.
    Permanent,
}

impl ProviderFailure {
    pub fn retryable(self) -> bool {
        self == Self::Transient
    }
}

/// 408, 429 and 5xx are transient; every other status, including ones that should never be
/// an error (1xx-3xx), is permanent so that a surprise does not loop.
pub fn classify_http_status(status: u16) -> ProviderFailure {
    match status {
        408 | 429 | 500..=599 => ProviderFailure::Transient,
        _ => ProviderFailure::Permanent,
    }
}

/// The top-level error object of a Google error body, which is sometimes wrapped in a
/// one-element array.
fn google_error(body: &str) -> Option<Map<String, Value>> {
    let root: Value = serde_json::from_str(body).ok()?;
    let root = match root {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        other => other,
    };
    match root {
        Value::Object(mut map) => match map.remove("error")? {
            Value::Object(error) => Some(error),
            _ => None,
        },
        _ => None,
    }
}

/// `error.message` of a Google error body, whitespace-collapsed and capped at 300 characters
/// so that a log line stays a line. Google's messages do not echo the API key.
pub fn error_message_from_body(body: &str) -> Option<String> {
    let error = google_error(body)?;
    let message = error.get("message")?.as_str()?;
    clean_text(message, 300)
}

/// The server's suggested wait from a `google.rpc.RetryInfo` detail (`"retryDelay": "27s"`),
/// rounded up to whole seconds and capped at a day.
pub fn retry_delay_secs(body: &str) -> Option<u64> {
    let error = google_error(body)?;
    error
        .get("details")?
        .as_array()?
        .iter()
        .filter(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })
        .find_map(|d| {
            let secs: f64 = d
                .get("retryDelay")?
                .as_str()?
                .trim()
                .strip_suffix('s')?
                .parse()
                .ok()?;
            (secs.is_finite() && secs >= 0.0).then(|| secs.ceil().min(86_400.0) as u64)
        })
}

/// Why one photo could not be scanned: a message fit for the client (never the provider's
/// own text, which may echo a request header), whether trying again could help, and how
/// long the provider asked us to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhotoFailure {
    pub message: String,
    pub retryable: bool,
    pub retry_after_ms: Option<Millis>,
}

/// What one Gemini call means for its photo: the books found, or why not. `now` turns an
/// HTTP-date `Retry-After` into a wait.
pub fn interpret(
    answer: Result<Answer, CallError>,
    photo_index: u32,
    now: Millis,
) -> Result<Vec<ScanBook>, PhotoFailure> {
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            return Err(PhotoFailure {
                message: format!("Gemini request failed: {e}"),
                retryable: true,
                retry_after_ms: None,
            })
        }
    };
    let retry_after = answer.retry_after.as_deref();
    read_answer(answer.status, &answer.body, retry_after)
        .map(|detections| normalize(detections, photo_index))
        .map_err(|failure| {
            // An HTTP-date Retry-After too, which `read_answer` (seconds only) leaves out.
            let header_wait = retry_after.and_then(|value| retry_after_ms(value, now));
            let wait = match &failure {
                CallFailure::Status {
                    retry_after_secs, ..
                } => retry_after_secs
                    .map(|secs| secs.saturating_mul(1_000))
                    .max(header_wait),
                CallFailure::Answer(_) => None,
            };
            PhotoFailure {
                message: failure.message(),
                retryable: failure.retryable(),
                retry_after_ms: wait,
            }
        })
}

/// Token counts from `usageMetadata`, for logs and cost tracking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub candidates_tokens: u64,
    pub thoughts_tokens: u64,
    pub total_tokens: u64,
}

pub fn usage(body: &str) -> Option<Usage> {
    let root: Value = serde_json::from_str(body).ok()?;
    let meta = root.get("usageMetadata")?.as_object()?;
    let count = |k: &str| meta.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some(Usage {
        prompt_tokens: count("promptTokenCount"),
        candidates_tokens: count("candidatesTokenCount"),
        thoughts_tokens: count("thoughtsTokenCount"),
        total_tokens: count("totalTokenCount"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(x: f64, y: f64, width: f64, height: f64) -> BoundingBox {
        BoundingBox {
            x,
            y,
            width,
            height,
        }
    }

    fn book(
        title: &str,
        author: Option<&str>,
        isbn: Option<&str>,
        confidence: f64,
        bounding_box: BoundingBox,
    ) -> ScanBook {
        ScanBook {
            title: title.into(),
            author: author.map(Into::into),
            isbn: isbn.map(Into::into),
            confidence,
            bounding_box,
            photo_index: 0,
        }
    }

    fn detection(title: Option<&str>, confidence: Option<f64>) -> Detection {
        Detection {
            title: title.map(Into::into),
            confidence,
            ..Detection::default()
        }
    }

    #[test]
    fn builds_endpoints() {
        let table = [
            ("https://generativelanguage.googleapis.com/v1beta", "gemini-2.5-flash",
             "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"),
            ("https://generativelanguage.googleapis.com/v1beta/", "gemini-2.5-flash",
             "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"),
            ("http://127.0.0.1:8788//", " models/gemini-2.0-flash ",
             "http://127.0.0.1:8788/models/gemini-2.0-flash:generateContent"),
        ];
        for (base, model, want) in table {
            assert_eq!(endpoint(base, model), want, "{base} {model}");
        }
    }

    #[test]
    fn builds_the_request_body() {
        let table: &[(&[u8], ImageKind)] = &[
            (b"\xFF\xD8\xFF\xE0\x00\x10JFIF", ImageKind::Jpeg),
            (b"\x89PNG\r\n\x1a\n\x00", ImageKind::Png),
            (b"RIFF\0\0\0\0WEBPVP8 ", ImageKind::Webp),
            (b"\0\0\0\x10ftypheic\0\0\0\0", ImageKind::Heic),
        ];
        for &(bytes, kind) in table {
            let budget = OutputBudget {
                max_output_tokens: 4_096,
                thinking_budget: 128,
            };
            let req: Value = serde_json::from_str(&build_request(bytes, kind, budget)).unwrap();
            let parts = &req["contents"][0]["parts"];
            assert_eq!(req["contents"][0]["role"], "user");
            assert_eq!(parts[0]["inline_data"]["mime_type"], kind.mime());
            let data = parts[0]["inline_data"]["data"].as_str().unwrap();
            assert_eq!(crate::base64::decode(data, 100).unwrap(), bytes);
            assert_eq!(parts[1]["text"], PROMPT);
            let config = &req["generationConfig"];
            assert_eq!(config["responseMimeType"], "application/json");
            assert!(config["temperature"].as_f64().unwrap() <= 0.2);
            assert_eq!(config["responseSchema"]["type"], "ARRAY");
            assert_eq!(config["maxOutputTokens"], 4_096);
            assert_eq!(config["thinkingConfig"]["thinkingBudget"], 128);
            let props = &config["responseSchema"]["items"]["properties"];
            for key in ["title", "author", "isbn", "confidence", "boundingBox"] {
                assert!(props.get(key).is_some(), "{key}");
            }
        }
        for word in [
            "JSON array",
            "null",
            "boundingBox",
            "fractions",
            "confidence",
        ] {
            assert!(PROMPT.contains(word), "{word}");
        }
    }

    #[test]
    fn parses_and_normalises_every_fixture() {
        type Case<'a> = (&'a str, &'a str, Result<Vec<ScanBook>, GeminiError>);
        let table: Vec<Case> = vec![
            (
                "bare_array",
                fixture!("gemini", "bare_array.json"),
                Ok(vec![
                    book(
                        "Dune",
                        Some("Frank Herbert"),
                        Some("9780441013593"),
                        0.97,
                        bx(0.02, 0.08, 0.07, 0.84),
                    ),
                    book(
                        "Snow Crash",
                        Some("Neal Stephenson"),
                        Some("9780553380958"),
                        0.91,
                        bx(0.1, 0.1, 0.06, 0.8),
                    ),
                    book(
                        "The Name of the Rose",
                        Some("Umberto Eco"),
                        None,
                        0.66,
                        bx(0.17, 0.05, 0.08, 0.88),
                    ),
                    book(
                        "Middlemarch",
                        Some("George Eliot"),
                        None,
                        0.45,
                        bx(0.26, 0.15, 0.05, 0.75),
                    ),
                ]),
            ),
            (
                "fenced",
                fixture!("gemini", "fenced.json"),
                Ok(vec![
                    book(
                        "The Left Hand of Darkness",
                        Some("Ursula K. Le Guin"),
                        Some("9780441478125"),
                        0.93,
                        bx(0.05, 0.1, 0.06, 0.79),
                    ),
                    book(
                        "Neuromancer",
                        Some("William Gibson"),
                        None,
                        0.81,
                        bx(0.12, 0.09, 0.05, 0.8),
                    ),
                    book(
                        "Piranesi",
                        Some("Susanna Clarke"),
                        None,
                        0.58,
                        bx(0.18, 0.2, 0.07, 0.7),
                    ),
                ]),
            ),
            (
                "prose",
                fixture!("gemini", "prose.json"),
                Ok(vec![
                    book(
                        "Beloved [Vintage International]",
                        Some("Toni Morrison"),
                        Some("9781400033416"),
                        0.9,
                        bx(0.3, 0.12, 0.05, 0.76),
                    ),
                    book(
                        "Gödel, Escher, Bach: an Eternal Golden Braid",
                        Some("Douglas R. Hofstadter"),
                        None,
                        0.86,
                        bx(0.36, 0.1, 0.09, 0.8),
                    ),
                    book(
                        "A Wizard of Earthsea {50th anniversary}",
                        Some("Ursula K. Le Guin"),
                        Some("9780547773742"),
                        0.77,
                        bx(0.46, 0.18, 0.04, 0.7),
                    ),
                ]),
            ),
            (
                "wrapped_books",
                fixture!("gemini", "wrapped_books.json"),
                Ok(vec![
                    book(
                        "Project Hail Mary",
                        Some("Andy Weir"),
                        Some("9780593135204"),
                        0.95,
                        bx(0.41, 0.06, 0.09, 0.9),
                    ),
                    book(
                        "Sapiens: A Brief History of Humankind",
                        Some("Yuval Noah Harari"),
                        Some("9780062316097"),
                        0.72,
                        bx(0.52, 0.1, 0.08, 0.85),
                    ),
                ]),
            ),
            (
                "out_of_range_boxes",
                fixture!("gemini", "out_of_range_boxes.json"),
                Ok(vec![
                    book(
                        "Dune Messiah",
                        Some("Frank Herbert"),
                        None,
                        0.95,
                        bx(0.0, 0.1, 0.07, 0.8),
                    ),
                    book(
                        "Children of Dune",
                        Some("Frank Herbert"),
                        None,
                        0.017,
                        bx(0.95, 0.9, 0.05, 0.1),
                    ),
                    book(
                        "God Emperor of Dune",
                        Some("Frank Herbert"),
                        None,
                        0.0,
                        bx(1.0, 0.0, 0.0, 1.0),
                    ),
                    book("Heretics of Dune", None, None, 1.0, bx(0.5, 0.5, 0.0, 0.25)),
                    book(
                        "Chapterhouse: Dune",
                        None,
                        None,
                        1.0,
                        bx(1.0, 1.0, 0.0, 0.0),
                    ),
                    book(
                        "The Dosadi Experiment",
                        None,
                        None,
                        0.64,
                        bx(0.3, 0.2, 0.12, 0.75),
                    ),
                ]),
            ),
            (
                "missing_fields",
                fixture!("gemini", "missing_fields.json"),
                Ok(vec![
                    book(
                        "The Dispossessed",
                        Some("Ursula K. Le Guin"),
                        None,
                        0.83,
                        bx(0.1, 0.05, 0.07, 0.9),
                    ),
                    book(
                        "Middlemarch",
                        None,
                        Some("9780141439549"),
                        0.9,
                        bx(0.0, 0.0, 0.0, 0.0),
                    ),
                    book("Beloved", None, None, 0.0, bx(0.3, 0.2, 0.05, 0.6)),
                    book(
                        "War and Peace",
                        Some("Leo Tolstoy, Richard Pevear"),
                        Some("9781400079988"),
                        0.9,
                        bx(0.42, 0.08, 0.1, 0.85),
                    ),
                    book(
                        "1984",
                        Some("George Orwell"),
                        None,
                        0.7,
                        bx(0.6, 0.1, 0.05, 0.8),
                    ),
                ]),
            ),
            (
                "empty_candidates",
                fixture!("gemini", "empty_candidates.json"),
                Err(GeminiError::NoCandidates),
            ),
            (
                "blocked_safety",
                fixture!("gemini", "blocked_safety.json"),
                Err(GeminiError::Blocked {
                    reason: "SAFETY".into(),
                }),
            ),
            (
                "finish_safety",
                fixture!("gemini", "finish_safety.json"),
                Err(GeminiError::Blocked {
                    reason: "SAFETY".into(),
                }),
            ),
            (
                "truncated_max_tokens",
                fixture!("gemini", "truncated_max_tokens.json"),
                Err(GeminiError::Truncated),
            ),
            (
                "not_books",
                fixture!("gemini", "not_books.json"),
                Err(GeminiError::NotBooks),
            ),
            (
                "error_429",
                fixture!("gemini", "error_429.json"),
                Err(GeminiError::MalformedResponse),
            ),
            (
                "error_500",
                fixture!("gemini", "error_500.json"),
                Err(GeminiError::MalformedResponse),
            ),
        ];
        for (name, body, want) in table {
            let got = parse_response(body).map(|d| normalize(d, 0));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn fixtures_carry_usage_metadata() {
        let table: &[(&str, Option<Usage>)] = &[
            (
                fixture!("gemini", "bare_array.json"),
                Some(Usage {
                    prompt_tokens: 1548,
                    candidates_tokens: 386,
                    thoughts_tokens: 1102,
                    total_tokens: 3036,
                }),
            ),
            (
                fixture!("gemini", "blocked_safety.json"),
                Some(Usage {
                    prompt_tokens: 1548,
                    candidates_tokens: 0,
                    thoughts_tokens: 0,
                    total_tokens: 1548,
                }),
            ),
            (fixture!("gemini", "error_500.json"), None),
            ("not json", None),
        ];
        for (body, want) in table {
            assert_eq!(usage(body), *want);
        }
        for body in [
            fixture!("gemini", "bare_array.json"),
            fixture!("gemini", "fenced.json"),
            fixture!("gemini", "prose.json"),
            fixture!("gemini", "wrapped_books.json"),
            fixture!("gemini", "empty_candidates.json"),
            fixture!("gemini", "blocked_safety.json"),
            fixture!("gemini", "finish_safety.json"),
            fixture!("gemini", "out_of_range_boxes.json"),
            fixture!("gemini", "missing_fields.json"),
            fixture!("gemini", "truncated_max_tokens.json"),
        ] {
            let v: Value = serde_json::from_str(body).unwrap();
            assert!(v["modelVersion"].is_string() && v["responseId"].is_string());
            assert!(v["usageMetadata"]["totalTokenCount"].is_u64());
        }
    }

    #[test]
    fn parses_response_shapes() {
        let wrap = |text: &str, finish: &str| {
            json!({
                "candidates": [{
                    "content": { "parts": [{ "text": text }], "role": "model" },
                    "finishReason": finish,
                    "index": 0
                }],
                "usageMetadata": { "promptTokenCount": 10, "totalTokenCount": 10 }
            })
            .to_string()
        };
        let titles = |r: Result<Vec<Detection>, GeminiError>| {
            r.map(|ds| {
                ds.into_iter()
                    .map(|d| d.title.unwrap_or_default())
                    .collect::<Vec<_>>()
            })
        };
        let ok = |t: &[&str]| Ok(t.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        type Case<'a> = (&'a str, String, Result<Vec<String>, GeminiError>);
        let table: Vec<Case> = vec![
            ("bare", wrap(r#"[{"title":"A"}]"#, "STOP"), ok(&["A"])),
            ("empty array", wrap("[]", "STOP"), ok(&[])),
            ("empty books", wrap(r#"{"books":[]}"#, "STOP"), ok(&[])),
            (
                "single object",
                wrap(r#"{"title":"Solo"}"#, "STOP"),
                ok(&["Solo"]),
            ),
            (
                "double encoded",
                wrap(r#""[{\"title\":\"B\"}]""#, "STOP"),
                ok(&["B"]),
            ),
            (
                "other wrapper",
                wrap(r#"{"result":{"items":[{"title":"C"}]}}"#, "STOP"),
                ok(&["C"]),
            ),
            (
                "non-objects skipped",
                wrap(r#"[{"title":"D"}, "E", 3, null]"#, "STOP"),
                ok(&["D"]),
            ),
            (
                "bracket prose first",
                wrap(
                    r#"Found [2] books: [{"title":"F]"},{"title":"G{"}] ok"#,
                    "STOP",
                ),
                ok(&["F]", "G{"]),
            ),
            (
                "empty array in prose is a fallback",
                wrap("I see [] nothing", "STOP"),
                ok(&[]),
            ),
            (
                "fence without language",
                wrap("```\n[{\"title\":\"H\"}]\n```", "STOP"),
                ok(&["H"]),
            ),
            (
                "complete despite max tokens",
                wrap(r#"[{"title":"I"}]"#, "MAX_TOKENS"),
                ok(&["I"]),
            ),
            (
                "cut off",
                wrap(r#"[{"title":"J"},{"title":"K"#, "MAX_TOKENS"),
                Err(GeminiError::Truncated),
            ),
            (
                "unbalanced",
                wrap(r#"[{"title":"J"},{"title":"K"#, "STOP"),
                Err(GeminiError::NoJson),
            ),
            (
                "prose only",
                wrap("I cannot see any books.", "STOP"),
                Err(GeminiError::NoJson),
            ),
            (
                "numbers only",
                wrap("[1, 2, 3]", "STOP"),
                Err(GeminiError::NoJson),
            ),
            (
                "object without books",
                wrap(r#"{"count": 0}"#, "STOP"),
                Err(GeminiError::NoJson),
            ),
            ("empty text", wrap("", "STOP"), Err(GeminiError::NoJson)),
            (
                "recitation",
                wrap("[]", "RECITATION"),
                Err(GeminiError::Blocked {
                    reason: "RECITATION".into(),
                }),
            ),
            (
                "prohibited",
                wrap("", "PROHIBITED_CONTENT"),
                Err(GeminiError::Blocked {
                    reason: "PROHIBITED_CONTENT".into(),
                }),
            ),
            (
                "split parts and thoughts",
                json!({"candidates": [{"content": {"parts": [
                    {"text": "[{\"title\": \"thinking\"}]", "thought": true},
                    {"text": "[{\"title\":\"Sp"},
                    {"text": "lit\"}]"}
                ]}}]})
                .to_string(),
                ok(&["Split"]),
            ),
            (
                "no content",
                json!({"candidates": [{"finishReason": "STOP"}]}).to_string(),
                Err(GeminiError::NoJson),
            ),
            (
                "candidates missing with feedback",
                json!({"promptFeedback": {}}).to_string(),
                Err(GeminiError::NoCandidates),
            ),
            (
                "prompt blocked other",
                json!({"promptFeedback": {"blockReason": "OTHER"}}).to_string(),
                Err(GeminiError::Blocked {
                    reason: "OTHER".into(),
                }),
            ),
            (
                "reason sanitised",
                json!({"promptFeedback": {"blockReason": "<b>X Y</b>"}}).to_string(),
                Err(GeminiError::Blocked {
                    reason: "bXYb".into(),
                }),
            ),
            (
                "reason without letters",
                json!({"promptFeedback": {"blockReason": "<>"}}).to_string(),
                Err(GeminiError::Blocked {
                    reason: "UNSPECIFIED".into(),
                }),
            ),
            (
                "not json",
                "<html>502</html>".into(),
                Err(GeminiError::MalformedResponse),
            ),
            (
                "not object",
                "[1]".into(),
                Err(GeminiError::MalformedResponse),
            ),
            (
                "empty object",
                "{}".into(),
                Err(GeminiError::MalformedResponse),
            ),
            (
                "candidates not array",
                json!({"candidates": {}}).to_string(),
                Err(GeminiError::MalformedResponse),
            ),
            (
                "candidate not object",
                json!({"candidates": [1]}).to_string(),
                Err(GeminiError::MalformedResponse),
            ),
            (
                "parts not array",
                json!({"candidates": [{"content": {"parts": "x"}}]}).to_string(),
                Err(GeminiError::MalformedResponse),
            ),
        ];
        for (name, body, want) in table {
            assert_eq!(titles(parse_response(&body)), want, "{name}");
        }
    }

    #[test]
    fn reads_lenient_detections() {
        let parse = |entry: Value| {
            let body = json!({"candidates": [{"content": {"parts": [{"text": json!([entry]).to_string()}]}}]});
            parse_response(&body.to_string()).unwrap().pop().unwrap()
        };
        let table: Vec<(Value, Detection)> = vec![
            (
                json!({"title": "T", "authors": ["A", "B"], "isbn13": 9780441013593u64, "confidence": "0.5",
                       "bbox": [0.1, "0.2", 0.3, 0.4]}),
                Detection {
                    title: Some("T".into()),
                    author: Some("A, B".into()),
                    isbn: Some("9780441013593".into()),
                    confidence: Some(0.5),
                    bounding_box: Some(bx(0.1, 0.2, 0.3, 0.4)),
                },
            ),
            (
                json!({"title": "T", "confidence": "95%", "box_2d": [100, 200, 900, 250]}),
                Detection {
                    title: Some("T".into()),
                    confidence: Some(0.95),
                    bounding_box: Some(bx(0.2, 0.1, 0.05, 0.8)),
                    ..Detection::default()
                },
            ),
            (
                json!({"title": "T", "confidence": "high", "boundingBox": {"x": 0.1, "y": 0.2, "width": 0.3}}),
                Detection {
                    title: Some("T".into()),
                    ..Detection::default()
                },
            ),
            (
                json!({"title": null, "author": {"name": "x"}, "confidence": true, "boundingBox": "0,0,1,1"}),
                Detection::default(),
            ),
            (
                json!({"title": "T", "bounding_box": {"left": 0.5, "top": 0.25, "w": 0.125, "h": 0.5}}),
                Detection {
                    title: Some("T".into()),
                    bounding_box: Some(bx(0.5, 0.25, 0.125, 0.5)),
                    ..Detection::default()
                },
            ),
        ];
        for (entry, want) in table {
            assert_eq!(parse(entry.clone()), want, "{entry}");
        }
    }

    #[test]
    fn normalises_titles_authors_and_isbns() {
        let with = |title: &str, author: Option<&str>, isbn: Option<&str>| Detection {
            title: Some(title.into()),
            author: author.map(Into::into),
            isbn: isbn.map(Into::into),
            ..Detection::default()
        };
        let long_title = "é".repeat(MAX_TITLE_CHARS + 5);
        let long_author = "a".repeat(MAX_AUTHOR_CHARS + 1);
        // (detection, Some((title, author, isbn)) or None when dropped)
        type Want = Option<(String, Option<&'static str>, Option<&'static str>)>;
        let keep =
            |t: &str, a: Option<&'static str>, i: Option<&'static str>| Some((t.to_string(), a, i));
        let table: Vec<(Detection, Want)> = vec![
            (
                with("  Dune\n Messiah\t", Some(" Frank  Herbert "), None),
                keep("Dune Messiah", Some("Frank Herbert"), None),
            ),
            (
                with("Dune\u{0}\u{7}X", None, None),
                keep("Dune X", None, None),
            ),
            (with("   ", Some("x"), None), None),
            (with("Unknown", None, None), None),
            (with("NULL", None, None), None),
            (Detection::default(), None),
            (
                with("T", Some("unknown author"), None),
                keep("T", None, None),
            ),
            (with("T", Some(""), None), keep("T", None, None)),
            (
                with("T", None, Some("0441013597")),
                keep("T", None, Some("9780441013593")),
            ),
            (
                with("T", None, Some("978-0-441-01359-3")),
                keep("T", None, Some("9780441013593")),
            ),
            (
                with("T", None, Some("ISBN-13: 978-0-441-01359-3")),
                keep("T", None, Some("9780441013593")),
            ),
            (
                with("T", None, Some("isbn 080442957x")),
                keep("T", None, Some("9780804429573")),
            ),
            (
                with("T", None, Some("9780441013594")),
                keep("T", None, None),
            ),
            (with("T", None, Some("B08ZYQT962")), keep("T", None, None)),
            (
                with("T", None, Some(&"9".repeat(100))),
                keep("T", None, None),
            ),
            (
                with(&long_title, None, None),
                keep(&"é".repeat(MAX_TITLE_CHARS), None, None),
            ),
        ];
        for (det, want) in table {
            let got = normalize(vec![det.clone()], 4).pop();
            let got = got.map(|b| {
                assert_eq!(b.photo_index, 4);
                (b.title, b.author, b.isbn)
            });
            let want = want.map(|(t, a, i)| (t, a.map(String::from), i.map(String::from)));
            assert_eq!(got, want, "{det:?}");
        }
        let capped = normalize(vec![with("T", Some(&long_author), None)], 0);
        assert_eq!(
            capped[0].author.as_deref().map(str::len),
            Some(MAX_AUTHOR_CHARS)
        );
    }

    #[test]
    fn normalises_confidence_and_boxes() {
        let table: &[(Option<f64>, f64)] = &[
            (Some(0.5), 0.5),
            (Some(1.0), 1.0),
            (Some(95.0), 0.95),
            (Some(1.7), 0.017),
            (Some(250.0), 1.0),
            (Some(-0.3), 0.0),
            (Some(0.123456), 0.1235),
            (Some(f64::NAN), 0.0),
            (Some(f64::INFINITY), 0.0),
            (None, 0.0),
        ];
        for &(raw, want) in table {
            assert_eq!(
                normalize(vec![detection(Some("T"), raw)], 0)[0].confidence,
                want,
                "{raw:?}"
            );
        }

        let boxes: &[(Option<BoundingBox>, BoundingBox)] = &[
            (None, bx(0.0, 0.0, 0.0, 0.0)),
            (Some(bx(0.1, 0.2, 0.3, 0.4)), bx(0.1, 0.2, 0.3, 0.4)),
            (Some(bx(-0.1, -0.5, 0.3, 0.4)), bx(0.0, 0.0, 0.2, 0.0)),
            (Some(bx(0.8, 0.9, 0.5, 0.5)), bx(0.8, 0.9, 0.2, 0.1)),
            (Some(bx(2.0, 1.0, 1.0, 1.0)), bx(1.0, 1.0, 0.0, 0.0)),
            (Some(bx(0.5, 0.5, -0.1, -1.0)), bx(0.5, 0.5, 0.0, 0.0)),
            (
                Some(bx(f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.5)),
                bx(0.0, 0.0, 0.0, 0.5),
            ),
            (
                Some(bx(-1e308, 0.0, 1e308, f64::MAX)),
                bx(0.0, 0.0, 0.0, 1.0),
            ),
            (Some(bx(-0.25, 0.0, 1e308, 0.0)), bx(0.0, 0.0, 1.0, 0.0)),
            (
                Some(bx(0.33336, 0.0, 0.66665, 1.0)),
                bx(0.3334, 0.0, 0.6666, 1.0),
            ),
        ];
        for (raw, want) in boxes {
            let det = Detection {
                bounding_box: raw.clone(),
                ..detection(Some("T"), None)
            };
            let got = normalize(vec![det], 0).remove(0).bounding_box;
            assert_eq!(&got, want, "{raw:?}");
            assert!(got.x + got.width <= 1.0 + 1e-9 && got.y + got.height <= 1.0 + 1e-9);
        }
    }

    #[test]
    fn caps_books_per_photo() {
        let many: Vec<Detection> = (0..MAX_BOOKS_PER_PHOTO + 50)
            .map(|i| detection(Some(if i % 2 == 0 { "" } else { "T" }), Some(0.9)))
            .collect();
        assert_eq!(normalize(many, 0).len(), MAX_BOOKS_PER_PHOTO.min(125));
        let all: Vec<Detection> = (0..MAX_BOOKS_PER_PHOTO + 1)
            .map(|_| detection(Some("T"), None))
            .collect();
        assert_eq!(normalize(all, 0).len(), MAX_BOOKS_PER_PHOTO);
    }

    #[test]
    fn classifies_provider_failures() {
        let table: &[(u16, ProviderFailure)] = &[
            (408, ProviderFailure::Transient),
            (429, ProviderFailure::Transient),
            (500, ProviderFailure::Transient),
            (502, ProviderFailure::Transient),
            (503, ProviderFailure::Transient),
            (504, ProviderFailure::Transient),
            (599, ProviderFailure::Transient),
            (400, ProviderFailure::Permanent),
            (401, ProviderFailure::Permanent),
            (403, ProviderFailure::Permanent),
            (404, ProviderFailure::Permanent),
            (413, ProviderFailure::Permanent),
            (200, ProviderFailure::Permanent),
            (302, ProviderFailure::Permanent),
            (600, ProviderFailure::Permanent),
            (0, ProviderFailure::Permanent),
        ];
        for &(status, want) in table {
            assert_eq!(classify_http_status(status), want, "{status}");
            assert_eq!(want.retryable(), want == ProviderFailure::Transient);
        }
    }

    #[test]
    fn reads_google_error_bodies() {
        let table: &[(&str, Option<&str>, Option<u64>)] = &[
            (
                fixture!("gemini", "error_429.json"),
                Some("You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."),
                Some(27),
            ),
            (
                fixture!("gemini", "error_500.json"),
                Some("An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"),
                None,
            ),
            (
                r#"[{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"1.2s"}]}}]"#,
                Some("API key not valid. Please pass a valid API key."),
                Some(2),
            ),
            (r#"{"error":{"code":503,"message":"  \n "}}"#, None, None),
            (r#"{"error":"quota"}"#, None, None),
            (r#"{"message":"no error key"}"#, None, None),
            (r#"{"error":{"details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"-3s"}]}}"#, None, None),
            ("upstream connect error", None, None),
            ("", None, None),
            ("[]", None, None),
        ];
        for &(body, message, delay) in table {
            assert_eq!(error_message_from_body(body).as_deref(), message, "{body}");
            assert_eq!(retry_delay_secs(body), delay, "{body}");
        }
        let long = json!({"error": {"message": "x".repeat(1000)}}).to_string();
        assert_eq!(error_message_from_body(&long).map(|m| m.len()), Some(300));
    }

    /// The model's text wrapped in a minimal `generateContent` answer.
    fn answer_with_text(text: &str) -> String {
        json!({"candidates": [{"content": {"parts": [{"text": text}]}, "finishReason": "STOP"}]})
            .to_string()
    }

    #[test]
    fn lists_of_things_that_are_not_books_fail_the_photo() {
        let table: &[(&str, Result<usize, GeminiError>)] = &[
            (
                r#"[{"name": "mug", "colors": ["red"]}]"#,
                Err(GeminiError::NotBooks),
            ),
            (
                r#"{"books": [{"name": "mug"}]}"#,
                Err(GeminiError::NotBooks),
            ),
            (r#"Here: [{"object": "lamp"}]"#, Err(GeminiError::NotBooks)),
            // One book among other things is a book list; book fields left null (a spine the
            // model could not read) still describe books, which normalising then drops.
            (r#"[{"name": "mug"}, {"title": "Dune"}]"#, Ok(1)),
            (r#"[{"title": null, "author": null}]"#, Ok(0)),
            (r#"[{"isbn": "9780441013593"}]"#, Ok(0)),
            (r#"[{"confidence": 0.4, "box_2d": [1, 2, 3, 4]}]"#, Ok(0)),
            ("[{}]", Err(GeminiError::NotBooks)),
            // An empty list is a photo without books, not a failure.
            ("[]", Ok(0)),
            (r#"{"books": []}"#, Ok(0)),
            // A better candidate later in the text wins over a list of things.
            (r#"[{"name": "mug"}] and [{"title": "Dune"}]"#, Ok(1)),
            (r#"["mug", "lamp"]"#, Err(GeminiError::NoJson)),
        ];
        for (text, want) in table {
            let got = parse_response(&answer_with_text(text)).map(|d| normalize(d, 0).len());
            assert_eq!(got, *want, "{text}");
        }
    }

    #[test]
    fn answers_keep_their_status_whatever_the_body() {
        let quota = |retry_after_secs| CallFailure::Status {
            status: 429,
            quota: true,
            retry_after_secs,
        };
        let status = |status| CallFailure::Status {
            status,
            quota: false,
            retry_after_secs: None,
        };
        let bom = [
            b"\xEF\xBB\xBF".as_slice(),
            fixture!("gemini", "fenced.json").as_bytes(),
        ]
        .concat();
        type Case<'a> = (
            &'a str,
            u16,
            &'a [u8],
            Option<&'a str>,
            Result<usize, CallFailure>,
            bool,
        );
        let table: Vec<Case> = vec![
            (
                "a book list",
                200,
                fixture!("gemini", "bare_array.json").as_bytes(),
                None,
                Ok(4),
                false,
            ),
            ("a book list after a BOM", 200, &bom, None, Ok(3), false),
            (
                "a UTF-16 quota answer",
                429,
                fixture_bytes!("gemini", "error_429_utf16.json"),
                None,
                Err(quota(Some(27))),
                true,
            ),
            (
                "a UTF-8 quota answer",
                429,
                fixture!("gemini", "error_429.json").as_bytes(),
                None,
                Err(quota(Some(27))),
                true,
            ),
            (
                "a Retry-After header wins",
                429,
                fixture!("gemini", "error_429.json").as_bytes(),
                Some(" 5 "),
                Err(quota(Some(5))),
                true,
            ),
            (
                "a 429 with an unreadable body",
                429,
                b"\xFF\x00\xD8",
                None,
                Err(quota(None)),
                true,
            ),
            (
                "a server error",
                500,
                fixture!("gemini", "error_500.json").as_bytes(),
                None,
                Err(status(500)),
                true,
            ),
            (
                "a rejected request",
                400,
                b"<html>bad</html>",
                None,
                Err(status(400)),
                false,
            ),
            (
                "no JSON with a 200",
                200,
                b"<html>oops</html>",
                None,
                Err(CallFailure::Answer(GeminiError::MalformedResponse)),
                false,
            ),
            (
                "things that are not books",
                200,
                fixture!("gemini", "not_books.json").as_bytes(),
                None,
                Err(CallFailure::Answer(GeminiError::NotBooks)),
                false,
            ),
        ];
        for (name, code, body, retry_after, want, retryable) in table {
            let got = read_answer(code, body, retry_after).map(|d| d.len());
            assert_eq!(got, want, "{name}");
            if let Err(failure) = got {
                assert_eq!(failure.retryable(), retryable, "{name}");
                let message = failure.message();
                assert!(!message.contains("quota, please"), "{name}: {message}");
                if code != 200 {
                    assert!(
                        message.starts_with(&format!("Gemini answered HTTP {code}")),
                        "{message}"
                    );
                }
            }
        }
        assert_eq!(
            quota(None).message(),
            "Gemini answered HTTP 429: rate limit or quota exceeded"
        );
    }

    #[test]
    fn errors_explain_themselves() {
        let all = [
            GeminiError::Blocked {
                reason: "SAFETY".into(),
            },
            GeminiError::NoCandidates,
            GeminiError::NoJson,
            GeminiError::NotBooks,
            GeminiError::Truncated,
            GeminiError::MalformedResponse,
        ];
        let mut codes: Vec<&str> = all.iter().map(GeminiError::code).collect();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        for e in all {
            assert!(!e.retryable(), "{e:?}");
            assert!(!e.message().is_empty());
            assert_eq!(e.to_string(), e.message());
        }
        assert!(GeminiError::Blocked {
            reason: "SPII".into()
        }
        .message()
        .contains("SPII"));
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn text_noise() -> impl Strategy<Value = String> {
        let atoms = prop_oneof![
            Just("[".to_string()),
            Just("]".to_string()),
            Just("{".to_string()),
            Just("}".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just(",".to_string()),
            Just(":".to_string()),
            Just("```json\n".to_string()),
            Just("\"title\"".to_string()),
            Just("\"books\"".to_string()),
            Just("\"boundingBox\"".to_string()),
            Just("\"confidence\"".to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            "[a-zé ]{0,6}",
        ];
        prop::collection::vec(atoms, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn parse_response_never_panics_on_arbitrary_bodies(body in ".{0,300}") {
            let _ = parse_response(&body);
            let _ = error_message_from_body(&body);
            let _ = retry_delay_secs(&body);
        }

        #[test]
        fn parse_and_normalize_never_panic_on_model_text(text in text_noise(), finish in "STOP|MAX_TOKENS|OTHER") {
            let body = json!({"candidates": [{"content": {"parts": [{"text": text}]}, "finishReason": finish}]});
            if let Ok(detections) = parse_response(&body.to_string()) {
                for b in normalize(detections, 1) {
                    prop_assert!(!b.title.is_empty());
                    prop_assert!((0.0..=1.0).contains(&b.confidence));
                    let bb = &b.bounding_box;
                    for v in [bb.x, bb.y, bb.width, bb.height] {
                        prop_assert!((0.0..=1.0).contains(&v));
                    }
                    prop_assert!(bb.x + bb.width <= 1.0 + 1e-9 && bb.y + bb.height <= 1.0 + 1e-9);
                }
            }
        }

        #[test]
        fn normalize_keeps_every_box_inside(x in any::<f64>(), y in any::<f64>(), w in any::<f64>(), h in any::<f64>(), c in any::<f64>()) {
            let det = Detection {
                title: Some("T".into()),
                confidence: Some(c),
                bounding_box: Some(BoundingBox { x, y, width: w, height: h }),
                ..Detection::default()
            };
            let b = normalize(vec![det], 0).remove(0);
            prop_assert!((0.0..=1.0).contains(&b.confidence));
            let bb = b.bounding_box;
            for v in [bb.x, bb.y, bb.width, bb.height] {
                prop_assert!((0.0..=1.0).contains(&v));
            }
            prop_assert!(bb.x + bb.width <= 1.0 + 1e-9 && bb.y + bb.height <= 1.0 + 1e-9);
        }
    }
}
