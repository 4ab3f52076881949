//! Validation of a `POST /api/enrichment/batch` body into an optional job id and the books to look up.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::ids::parse_job_id;
use crate::isbn::{classify, IsbnCheck};

pub const MAX_BOOKS: usize = 100;
pub const MAX_TITLE_CHARS: usize = 500;
pub const MAX_AUTHOR_CHARS: usize = 300;
pub const MAX_ISBN_CHARS: usize = 17;

/// One book as the client sent it, trimmed. This is also the `input` echoed in the results.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct BookInput {
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Kept as sent even when it is not a valid ISBN: the client should recognise its input,
    /// and such a book is simply looked up by title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isbn: Option<String>,
}

impl BookInput {
    pub fn new(title: &str, author: Option<&str>, isbn: Option<&str>) -> Self {
        Self {
            title: title.to_string(),
            author: author.map(str::to_string),
            isbn: isbn.map(str::to_string),
        }
    }

    /// The ISBN-13 of the `isbn` field when it is a valid ISBN-10 or ISBN-13.
    pub fn valid_isbn13(&self) -> Option<String> {
        match classify(self.isbn.as_deref()?) {
            IsbnCheck::Valid { isbn13, .. } => Some(isbn13),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct EnrichmentRequest {
    /// The client's proposed job id, in canonical lowercase form.
    pub job_id: Option<String>,
    pub books: Vec<BookInput>,
}

/// Validates a request body. Every failure is a 400 INVALID_REQUEST; a failure inside a book
/// names it with `details: {"index": i, "field": f}` (the first offending book, fields checked
/// in the order title, author, isbn). A book that is not an object gets `{"index": i}` alone.
pub fn parse_request(body: &[u8]) -> Result<EnrichmentRequest, ApiError> {
    // Some clients (and Windows tooling) prefix a UTF-8 byte-order mark that JSON forbids.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    // serde_json stops at 128 levels of nesting, so a nesting bomb is an error here, not a
    // stack overflow.
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(format!("request body is not valid JSON: {e}"))
            .with_details(json!({ "field": "body" }))
    })?;
    let Value::Object(root) = value else {
        return Err(ApiError::invalid("request body must be a JSON object")
            .with_details(json!({ "field": "body" })));
    };

    let job_id = match root.get("jobId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_job_id(s).ok_or_else(|| {
            ApiError::invalid("jobId must be a UUID (8-4-4-4-12 hexadecimal digits)")
                .with_details(json!({ "field": "jobId" }))
        })?),
        Some(_) => {
            return Err(ApiError::invalid("jobId must be a string")
                .with_details(json!({ "field": "jobId" })))
        }
    };

    let books = match root.get("books") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => {
            return Err(
                ApiError::invalid("books is required: an array of 1 to 100 books")
                    .with_details(json!({ "field": "books" })),
            )
        }
        Some(_) => {
            return Err(ApiError::invalid("books must be an array")
                .with_details(json!({ "field": "books" })))
        }
    };
    if books.is_empty() || books.len() > MAX_BOOKS {
        return Err(ApiError::invalid(format!(
            "books must hold 1 to {MAX_BOOKS} books; got {}",
            books.len()
        ))
        .with_details(json!({ "field": "books", "count": books.len(), "max": MAX_BOOKS })));
    }

    let books = books
        .iter()
        .enumerate()
        .map(|(index, item)| parse_book(index, item))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EnrichmentRequest { job_id, books })
}

fn parse_book(index: usize, item: &Value) -> Result<BookInput, ApiError> {
    let Value::Object(book) = item else {
        return Err(
            ApiError::invalid(format!("books[{index}] must be an object"))
                .with_details(json!({ "index": index })),
        );
    };
    let title = text_field(index, book, "title", MAX_TITLE_CHARS)?
        .ok_or_else(|| field_error(index, "title", "is required and must not be blank", None))?;
    let author = text_field(index, book, "author", MAX_AUTHOR_CHARS)?;
    let isbn = text_field(index, book, "isbn", MAX_ISBN_CHARS)?;
    Ok(BookInput {
        title,
        author,
        isbn,
    })
}

/// A trimmed string field: `None` when missing, null or blank; an error for any other type or
/// when longer than `max_chars` Unicode scalar values (what a user would call characters;
/// bytes would hold non-Latin titles to a third of the limit).
fn text_field(
    index: usize,
    book: &Map<String, Value>,
    field: &str,
    max_chars: usize,
) -> Result<Option<String>, ApiError> {
    match book.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                Ok(None)
            } else if s.chars().count() > max_chars {
                Err(field_error(
                    index,
                    field,
                    &format!("must be at most {max_chars} characters"),
                    Some(max_chars),
                ))
            } else {
                Ok(Some(s.to_string()))
            }
        }
        Some(_) => Err(field_error(index, field, "must be a string", None)),
    }
}

fn field_error(index: usize, field: &str, problem: &str, max_chars: Option<usize>) -> ApiError {
    let mut details = json!({ "index": index, "field": field });
    if let Some(max) = max_chars {
        details["maxChars"] = json!(max);
    }
    ApiError::invalid(format!("books[{index}].{field} {problem}")).with_details(details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    const UUID: &str = "0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e";

    fn ok(body: &str) -> EnrichmentRequest {
        parse_request(body.as_bytes()).unwrap_or_else(|e| panic!("{body:.80}: {e}"))
    }

    fn details(body: &[u8]) -> Value {
        let err = parse_request(body).expect_err("should be rejected");
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert_eq!(err.status(), 400);
        err.details.expect("details")
    }

    fn books_json(books: &[Value]) -> String {
        json!({ "books": books }).to_string()
    }

    #[test]
    fn accepts_valid_bodies() {
        let table: &[(&str, Option<&str>, Vec<BookInput>)] = &[
            (
                r#"{"books":[{"title":"Dune"}]}"#,
                None,
                vec![BookInput::new("Dune", None, None)],
            ),
            (
                r#"{"books":[{"title":"  Dune ","author":" Frank Herbert ","isbn":" 0441013597 "}]}"#,
                None,
                vec![BookInput::new(
                    "Dune",
                    Some("Frank Herbert"),
                    Some("0441013597"),
                )],
            ),
            (
                r#"{"books":[{"title":"Dune","author":null,"isbn":null}]}"#,
                None,
                vec![BookInput::new("Dune", None, None)],
            ),
            (
                r#"{"books":[{"title":"Dune","author":"   ","isbn":""}]}"#,
                None,
                vec![BookInput::new("Dune", None, None)],
            ),
            (
                r#"{"books":[{"title":"Dune","isbn":"not-an-isbn"}]}"#,
                None,
                vec![BookInput::new("Dune", None, Some("not-an-isbn"))],
            ),
            (
                r#"{"books":[{"title":"Dune","isbn":"9780441013594"}]}"#,
                None,
                vec![BookInput::new("Dune", None, Some("9780441013594"))],
            ),
            (
                r#"{"jobId":"0B7C8F0E-4D3B-4E44-9A4E-1F2A3B4C5D6E","books":[{"title":"Dune"}]}"#,
                Some(UUID),
                vec![BookInput::new("Dune", None, None)],
            ),
            (
                r#"{"jobId":null,"books":[{"title":"Dune","extra":{"deep":[1,2,{"x":null}]}}],"other":1}"#,
                None,
                vec![BookInput::new("Dune", None, None)],
            ),
            (
                "\u{feff}{\"books\":[{\"title\":\"Dune\"}]}",
                None,
                vec![BookInput::new("Dune", None, None)],
            ),
        ];
        for (body, job_id, books) in table {
            let req = ok(body);
            assert_eq!(req.job_id.as_deref(), *job_id, "{body}");
            assert_eq!(&req.books, books, "{body}");
        }
    }

    #[test]
    fn rejects_bad_bodies_with_their_field() {
        let table: &[(&str, Value)] = &[
            ("", json!({"field": "body"})),
            ("not json", json!({"field": "body"})),
            (r#"{"books":[{"title":"Dune"}]"#, json!({"field": "body"})),
            ("[]", json!({"field": "body"})),
            ("null", json!({"field": "body"})),
            (r#""books""#, json!({"field": "body"})),
            ("{}", json!({"field": "books"})),
            (r#"{"books":null}"#, json!({"field": "books"})),
            (r#"{"books":{"title":"Dune"}}"#, json!({"field": "books"})),
            (r#"{"books":"Dune"}"#, json!({"field": "books"})),
            (
                r#"{"books":[]}"#,
                json!({"field": "books", "count": 0, "max": 100}),
            ),
            (
                r#"{"jobId":"nope","books":[{"title":"Dune"}]}"#,
                json!({"field": "jobId"}),
            ),
            (
                r#"{"jobId":"","books":[{"title":"Dune"}]}"#,
                json!({"field": "jobId"}),
            ),
            (
                r#"{"jobId":"0b7c8f0e4d3b4e449a4e1f2a3b4c5d6e","books":[{"title":"Dune"}]}"#,
                json!({"field": "jobId"}),
            ),
            (
                r#"{"jobId":42,"books":[{"title":"Dune"}]}"#,
                json!({"field": "jobId"}),
            ),
            (
                r#"{"books":[{"title":"Dune"},"Dune"]}"#,
                json!({"index": 1}),
            ),
            (r#"{"books":[null]}"#, json!({"index": 0})),
            (r#"{"books":[[]]}"#, json!({"index": 0})),
            (r#"{"books":[{}]}"#, json!({"index": 0, "field": "title"})),
            (
                r#"{"books":[{"title":null}]}"#,
                json!({"index": 0, "field": "title"}),
            ),
            (
                r#"{"books":[{"title":"  "}]}"#,
                json!({"index": 0, "field": "title"}),
            ),
            (
                r#"{"books":[{"title":1984}]}"#,
                json!({"index": 0, "field": "title"}),
            ),
            (
                r#"{"books":[{"title":["Dune"]}]}"#,
                json!({"index": 0, "field": "title"}),
            ),
            (
                r#"{"books":[{"title":true}]}"#,
                json!({"index": 0, "field": "title"}),
            ),
            (
                r#"{"books":[{"title":"a"},{"title":"b"},{"title":"c"},{"title":"d","author":7}]}"#,
                json!({"index": 3, "field": "author"}),
            ),
            (
                r#"{"books":[{"title":"a","author":{"name":"x"}}]}"#,
                json!({"index": 0, "field": "author"}),
            ),
            (
                r#"{"books":[{"title":"a","isbn":9780441013593}]}"#,
                json!({"index": 0, "field": "isbn"}),
            ),
            (
                r#"{"books":[{"title":"a","isbn":false}]}"#,
                json!({"index": 0, "field": "isbn"}),
            ),
            (
                r#"{"books":[{"title":"a"},{"title":""},{"title":5}]}"#,
                json!({"index": 1, "field": "title"}),
            ),
            (
                r#"{"books":[{"title":1,"author":1,"isbn":1}]}"#,
                json!({"index": 0, "field": "title"}),
            ),
        ];
        for (body, want) in table {
            assert_eq!(&details(body.as_bytes()), want, "{body}");
        }
        assert_eq!(details(b"\xff\xfe{}"), json!({"field": "body"}));
    }

    #[test]
    fn book_count_limits() {
        let book = json!({"title": "Dune"});
        let table = [
            (1, true),
            (2, true),
            (MAX_BOOKS, true),
            (MAX_BOOKS + 1, false),
            (1_000, false),
        ];
        for (n, accepted) in table {
            let body = books_json(&vec![book.clone(); n]);
            match parse_request(body.as_bytes()) {
                Ok(req) => {
                    assert!(accepted, "{n}");
                    assert_eq!(req.books.len(), n);
                }
                Err(e) => {
                    assert!(!accepted, "{n}");
                    assert_eq!(
                        e.details,
                        Some(json!({"field": "books", "count": n, "max": MAX_BOOKS}))
                    );
                }
            }
        }
    }

    #[test]
    fn length_limits_count_characters_not_bytes() {
        // "é" is 2 bytes and "📚" is 4: a byte count would reject all of these at the limit.
        let table: &[(&str, usize, &str, bool)] = &[
            ("title", MAX_TITLE_CHARS, "a", true),
            ("title", MAX_TITLE_CHARS + 1, "a", false),
            ("title", MAX_TITLE_CHARS, "é", true),
            ("title", MAX_TITLE_CHARS + 1, "é", false),
            ("title", MAX_TITLE_CHARS, "📚", true),
            ("title", MAX_TITLE_CHARS + 1, "📚", false),
            ("author", MAX_AUTHOR_CHARS, "a", true),
            ("author", MAX_AUTHOR_CHARS + 1, "a", false),
            ("author", MAX_AUTHOR_CHARS, "ö", true),
            ("author", MAX_AUTHOR_CHARS + 1, "ö", false),
            ("isbn", MAX_ISBN_CHARS, "9", true),
            ("isbn", MAX_ISBN_CHARS + 1, "9", false),
            ("isbn", MAX_ISBN_CHARS, "–", true),
            ("isbn", MAX_ISBN_CHARS + 1, "–", false),
        ];
        for (field, n, unit, accepted) in table {
            let value = unit.repeat(*n);
            let mut book = json!({"title": "Dune"});
            book[*field] = json!(value);
            // Padding is trimmed before counting.
            let padded = json!({"books": [{"title": "x"}, book]})
                .to_string()
                .replace(&format!("\"{value}\""), &format!("\"  {value}\\t\""));
            for body in [books_json(&[json!({"title": "x"}), book.clone()]), padded] {
                match parse_request(body.as_bytes()) {
                    Ok(req) => {
                        assert!(accepted, "{field} {n}x{unit}");
                        let b = &req.books[1];
                        let got = match *field {
                            "title" => Some(b.title.clone()),
                            "author" => b.author.clone(),
                            _ => b.isbn.clone(),
                        };
                        assert_eq!(got.as_deref(), Some(value.as_str()));
                    }
                    Err(e) => {
                        assert!(!accepted, "{field} {n}x{unit}");
                        assert_eq!(
                            e.details,
                            Some(json!({"index": 1, "field": field, "maxChars": n - 1}))
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn nesting_bombs_are_rejected_not_overflowed() {
        let table = [
            "[".repeat(100_000),
            "{\"a\":".repeat(100_000),
            format!(
                "{{\"books\":[{{\"title\":\"x\",\"extra\":{}1{}}}]}}",
                "[".repeat(200),
                "]".repeat(200)
            ),
            format!("{{\"jobId\":{}", "[".repeat(1_000_000)),
        ];
        for body in table {
            let err = parse_request(body.as_bytes()).expect_err("bomb");
            assert_eq!(err.status(), 400);
            assert_eq!(err.details, Some(json!({"field": "body"})));
        }
        // Nesting within the limit in an ignored field is harmless.
        let body = format!(
            "{{\"books\":[{{\"title\":\"x\",\"extra\":{}1{}}}]}}",
            "[".repeat(100),
            "]".repeat(100)
        );
        assert_eq!(ok(&body).books.len(), 1);
    }

    #[test]
    fn valid_isbn13_is_derived_from_the_isbn_field() {
        let table = [
            (Some("0441013597"), Some("9780441013593")),
            (Some("978-0-441-01359-3"), Some("9780441013593")),
            (Some("9780441013594"), None),
            (Some("B08ZYQT962"), None),
            (None, None),
        ];
        for (isbn, want) in table {
            let b = BookInput::new("Dune", None, isbn);
            assert_eq!(b.valid_isbn13().as_deref(), want, "{isbn:?}");
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parse_request_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_request(&body);
        }

        #[test]
        fn parse_request_never_panics_on_json_like_text(body in r#"[\[\]{}",:a-z0-9 \\é📚]{0,200}"#) {
            let _ = parse_request(body.as_bytes());
        }

        #[test]
        fn accepted_books_respect_the_limits(
            title in any::<String>(), author in proptest::option::of(any::<String>()),
            isbn in proptest::option::of(any::<String>()),
        ) {
            let body = serde_json::json!({"books": [{"title": title, "author": author, "isbn": isbn}]});
            if let Ok(req) = parse_request(body.to_string().as_bytes()) {
                let b = &req.books[0];
                prop_assert!(!b.title.is_empty() && b.title.chars().count() <= MAX_TITLE_CHARS);
                prop_assert!(b.author.as_ref().is_none_or(|a| !a.is_empty() && a.chars().count() <= MAX_AUTHOR_CHARS));
                prop_assert!(b.isbn.as_ref().is_none_or(|i| !i.is_empty() && i.chars().count() <= MAX_ISBN_CHARS));
            }
        }
    }
}
