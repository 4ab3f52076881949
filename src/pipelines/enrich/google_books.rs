//! Google Books: `/volumes` query URLs, and the parsing of volume lists into candidates.
//!
//! Query values are percent-encoded over the RFC 3986 unreserved set, so a space is `%20`;
//! the `+` joining `intitle:` and `inauthor:` is literal and reads as a space to Google, as
//! in its own examples (`q=flowers+inauthor:keyes`).

use serde_json::{Map, Value};

use super::extract::{field, object, positive_u32, texts};
use super::failure::ParseError;
use super::matching::search_title;
use super::model::{https_url, Candidate, IsbnSet};
use super::request::BookInput;
use super::url::{base, encode};

/// Results per query. An ISBN query may also return several volumes (reprints that share the
/// ISBN, or a mis-indexed neighbour), and scoring picks the one that carries it.
pub const MAX_RESULTS: u32 = 5;

/// `imageLinks` keys, largest first.
const IMAGE_SIZES: [&str; 6] = [
    "extraLarge",
    "large",
    "medium",
    "small",
    "thumbnail",
    "smallThumbnail",
];

/// Longest provider error message kept, so a verbose error page cannot bloat a result.
const MAX_ERROR_CHARS: usize = 200;

/// The search for `book`: by ISBN when it has a valid one, else by title and author.
/// A blank or absent key is left out.
pub fn query_url(api_base: &str, book: &BookInput, api_key: Option<&str>) -> String {
    match book.valid_isbn13() {
        Some(isbn13) => isbn_query_url(api_base, &isbn13, api_key),
        None => title_query_url(api_base, &book.title, book.author.as_deref(), api_key),
    }
}

pub fn isbn_query_url(api_base: &str, isbn13: &str, api_key: Option<&str>) -> String {
    volumes_url(
        api_base,
        &format!("isbn:{}", encode(isbn13.trim())),
        api_key,
    )
}

/// The title and author search, also the fallback when an ISBN search finds nothing.
/// Bracketed series notes are dropped from the title (see [`search_title`]).
pub fn title_query_url(
    api_base: &str,
    title: &str,
    author: Option<&str>,
    api_key: Option<&str>,
) -> String {
    let mut q = format!("intitle:{}", encode(&search_title(title)));
    if let Some(author) = author.map(str::trim).filter(|a| !a.is_empty()) {
        q.push_str("+inauthor:");
        q.push_str(&encode(author));
    }
    volumes_url(api_base, &q, api_key)
}

fn volumes_url(api_base: &str, q: &str, api_key: Option<&str>) -> String {
    let mut url = format!(
        "{}/volumes?q={q}&maxResults={MAX_RESULTS}&printType=books",
        base(api_base)
    );
    if let Some(key) = api_key.map(str::trim).filter(|k| !k.is_empty()) {
        url.push_str("&key=");
        url.push_str(&encode(key));
    }
    url
}

/// The candidates of a `/volumes` response, in the provider's order. A response without
/// `items` (Google omits it when `totalItems` is 0) is an empty list; an item without a
/// title is skipped, since it cannot be matched or shown.
pub fn parse(body: &str) -> Result<Vec<Candidate>, ParseError> {
    let root = object(body)?;
    if let Some(error) = root.get("error") {
        return Err(ParseError::Provider(error_message(error)));
    }
    match root.get("items") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => Ok(items.iter().filter_map(candidate).collect()),
        Some(_) => Err(ParseError::UnexpectedShape("items is not an array".into())),
    }
}

fn candidate(item: &Value) -> Option<Candidate> {
    let item = item.as_object()?;
    let info = item.get("volumeInfo")?.as_object()?;
    let title = field(info, "title")?;
    let (isbn13, isbn10, isbns) = identifiers(info);
    Some(Candidate {
        title,
        subtitle: field(info, "subtitle"),
        authors: texts(info, "authors"),
        isbn13,
        isbn10,
        isbns,
        publisher: field(info, "publisher"),
        published_date: field(info, "publishedDate"),
        page_count: positive_u32(info.get("pageCount")),
        cover_url: cover_url(info.get("imageLinks")),
        source_id: field(item, "id"),
    })
}

/// `industryIdentifiers` of type ISBN_13 and ISBN_10; `OTHER` (library ids such as
/// `UOM:39015...`) and ISSNs are not ISBNs.
fn identifiers(info: &Map<String, Value>) -> (Option<String>, Option<String>, Vec<String>) {
    let mut set = IsbnSet::default();
    if let Some(Value::Array(ids)) = info.get("industryIdentifiers") {
        for id in ids.iter().filter_map(Value::as_object) {
            let is_isbn = matches!(
                id.get("type").and_then(Value::as_str),
                Some("ISBN_13" | "ISBN_10")
            );
            if let Some(raw) = field(id, "identifier").filter(|_| is_isbn) {
                set.add(&raw);
            }
        }
    }
    set.finish()
}

/// The largest usable image, made `https` and without the page-curl effect Google draws on
/// thumbnails (`edge=curl`), which looks broken outside Google's own pages.
fn cover_url(links: Option<&Value>) -> Option<String> {
    let links = links?.as_object()?;
    IMAGE_SIZES
        .iter()
        .filter_map(|size| field(links, size))
        .find_map(|raw| https_url(&raw))
        .map(|url| strip_edge_curl(&url))
}

fn strip_edge_curl(url: &str) -> String {
    let Some((path, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case("edge=curl"))
        .collect();
    if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

fn error_message(error: &Value) -> String {
    let message = match error {
        Value::Object(e) => field(e, "message")
            .or_else(|| field(e, "status"))
            .unwrap_or_else(|| "unknown error".into()),
        Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => "unknown error".into(),
    };
    message.chars().take(MAX_ERROR_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://www.googleapis.com/books/v1";

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    fn cover(id: &str, zoom: u8) -> Option<String> {
        s(&format!(
            "https://books.google.com/books/content?id={id}&printsec=frontcover&img=1&zoom={zoom}&source=gbs_api"
        ))
    }

    #[test]
    fn builds_query_urls() {
        let v = "https://www.googleapis.com/books/v1/volumes?q=";
        let tail = "&maxResults=5&printType=books";
        // (base, title, author, isbn, key, expected query after `q=`, before the tail)
        type Row<'a> = (
            &'a str,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            &'a str,
        );
        let table: &[Row] = &[
            (
                BASE,
                "Dune",
                Some("Frank Herbert"),
                Some("0-441-01359-7"),
                None,
                "isbn:9780441013593",
            ),
            (
                BASE,
                "Dune",
                None,
                Some("9780441013593"),
                None,
                "isbn:9780441013593",
            ),
            (
                BASE,
                "Dune",
                None,
                Some("978 0441013593"),
                None,
                "isbn:9780441013593",
            ),
            (
                BASE,
                "Dune",
                None,
                Some("9780441013594"),
                None,
                "intitle:Dune",
            ),
            (BASE, "Dune", None, Some("B08ZYQT962"), None, "intitle:Dune"),
            (BASE, "Dune", None, None, None, "intitle:Dune"),
            (
                BASE,
                "The Hobbit",
                Some("J.R.R. Tolkien"),
                None,
                None,
                "intitle:The%20Hobbit+inauthor:J.R.R.%20Tolkien",
            ),
            (
                BASE,
                "Pride & Prejudice",
                Some("Jane Austen"),
                None,
                None,
                "intitle:Pride%20%26%20Prejudice+inauthor:Jane%20Austen",
            ),
            (
                BASE,
                "C++ Primer",
                None,
                None,
                None,
                "intitle:C%2B%2B%20Primer",
            ),
            (
                BASE,
                "Les Misérables",
                Some("Victor Hugo"),
                None,
                None,
                "intitle:Les%20Mis%C3%A9rables+inauthor:Victor%20Hugo",
            ),
            (
                BASE,
                "三体",
                Some("刘慈欣"),
                None,
                None,
                "intitle:%E4%B8%89%E4%BD%93+inauthor:%E5%88%98%E6%85%88%E6%AC%A3",
            ),
            (
                BASE,
                "What? #1 = 100%",
                None,
                None,
                None,
                "intitle:What%3F%20%231%20%3D%20100%25",
            ),
            (
                BASE,
                "Dune (Dune Chronicles, #1)",
                Some("  "),
                None,
                None,
                "intitle:Dune",
            ),
            (
                "https://www.googleapis.com/books/v1/",
                "Dune",
                None,
                None,
                None,
                "intitle:Dune",
            ),
            (
                "https://www.googleapis.com/books/v1//",
                "Dune",
                None,
                Some("0441013597"),
                None,
                "isbn:9780441013593",
            ),
        ];
        for (base, title, author, isbn, key, q) in table {
            let book = BookInput::new(title, *author, *isbn);
            assert_eq!(
                query_url(base, &book, *key),
                format!("{v}{q}{tail}"),
                "{title} {isbn:?}"
            );
        }
    }

    #[test]
    fn appends_the_api_key_when_given() {
        let book = BookInput::new("Dune", None, None);
        let plain = "https://www.googleapis.com/books/v1/volumes?q=intitle:Dune&maxResults=5&printType=books";
        let table = [
            (None, plain.to_string()),
            (Some(""), plain.to_string()),
            (Some("   "), plain.to_string()),
            (
                Some("AIzaSyA-test_key"),
                format!("{plain}&key=AIzaSyA-test_key"),
            ),
            (Some(" k&y=1 "), format!("{plain}&key=k%26y%3D1")),
        ];
        for (key, want) in table {
            assert_eq!(query_url(BASE, &book, key), want, "{key:?}");
        }
        assert_eq!(
            isbn_query_url("http://127.0.0.1:9000/gb", "9780441013593", Some("k")),
            "http://127.0.0.1:9000/gb/volumes?q=isbn:9780441013593&maxResults=5&printType=books&key=k"
        );
        assert_eq!(
            title_query_url(BASE, "Dune", Some("Frank Herbert"), None),
            "https://www.googleapis.com/books/v1/volumes?q=intitle:Dune+inauthor:Frank%20Herbert&maxResults=5&printType=books"
        );
    }

    #[test]
    fn parses_fixtures_exactly() {
        let dune = Candidate {
            title: "Dune".into(),
            subtitle: s("Deluxe Edition"),
            authors: vec!["Frank Herbert".into()],
            isbn13: s("9780441013593"),
            isbn10: s("0441013597"),
            isbns: vec!["9780441013593".into()],
            publisher: s("Ace Books"),
            published_date: s("2005-08-02"),
            page_count: Some(896),
            cover_url: cover("B1hSG45JCX4C", 6),
            source_id: s("B1hSG45JCX4C"),
        };
        let sparse = Candidate {
            title: "Proceedings of the Annual Meeting".into(),
            source_id: s("xQ3AAAAAMAAJ"),
            ..Candidate::default()
        };
        let kr = Candidate {
            title: "The C Programming Language".into(),
            authors: vec!["Brian W. Kernighan".into(), "Dennis M. Ritchie".into()],
            isbn13: s("9780131103627"),
            isbn10: s("0131103628"),
            isbns: vec!["9780131103627".into()],
            publisher: s("Prentice Hall"),
            published_date: s("1988"),
            page_count: Some(272),
            cover_url: cover("Gy4QAQAAMAAJ", 1),
            source_id: s("Gy4QAQAAMAAJ"),
            ..Candidate::default()
        };
        let hobbit = Candidate {
            title: "The Hobbit".into(),
            subtitle: s("Or There and Back Again"),
            authors: vec!["J. R. R. Tolkien".into()],
            isbn13: s("9780547928227"),
            isbn10: s("054792822X"),
            isbns: vec!["9780547928227".into()],
            publisher: s("Houghton Mifflin Harcourt"),
            published_date: s("2012"),
            page_count: Some(300),
            cover_url: cover("pD6arNyKyi8C", 1),
            source_id: s("pD6arNyKyi8C"),
        };
        let table: &[(&str, &str, Vec<Candidate>)] = &[
            ("gb_full", fixture!("books", "gb_full.json"), vec![dune]),
            (
                "gb_sparse",
                fixture!("books", "gb_sparse.json"),
                vec![sparse],
            ),
            ("gb_no_items", fixture!("books", "gb_no_items.json"), vec![]),
            (
                "gb_isbn10_only",
                fixture!("books", "gb_isbn10_only.json"),
                vec![kr],
            ),
            (
                "gb_http_covers",
                fixture!("books", "gb_http_covers.json"),
                vec![hobbit],
            ),
        ];
        for (name, body, want) in table {
            assert_eq!(&parse(body).unwrap(), want, "{name}");
        }
    }

    #[test]
    fn parses_search_lists_in_provider_order() {
        type Listing<'a> = &'a [(&'a str, &'a str, Option<&'a str>)];
        let table: &[(&str, Listing)] = &[
            (
                fixture!("books", "gb_near_miss.json"),
                &[
                    ("The Hobbit Companion", "David Day", Some("9781780977317")),
                    (
                        "The Annotated Hobbit",
                        "J. R. R. Tolkien",
                        Some("9780618134700"),
                    ),
                    ("Hobbit Cooking", "", None),
                    ("The Hobbit Party", "Jonathan Witt", Some("9781586179823")),
                ],
            ),
            (
                fixture!("books", "gb_multi.json"),
                &[
                    ("Dune Messiah", "Frank Herbert", Some("9780593098233")),
                    ("Children of Dune", "Frank Herbert", Some("9780593098240")),
                    ("The Road to Dune", "Frank Herbert", Some("9780765312952")),
                    ("Dune", "Frank Herbert", Some("9780441172696")),
                ],
            ),
        ];
        for (body, want) in table {
            let got = parse(body).unwrap();
            let got: Vec<_> = got
                .iter()
                .map(|c| {
                    let author = c.authors.first().map(String::as_str).unwrap_or("");
                    (c.title.as_str(), author, c.isbn13.as_deref())
                })
                .collect();
            assert_eq!(&got, want);
        }
        for c in parse(fixture!("books", "gb_near_miss.json")).unwrap() {
            assert!(c
                .cover_url
                .is_none_or(|u| u.starts_with("https://") && !u.contains("edge=curl")));
        }
    }

    #[test]
    fn skips_unusable_items_and_reports_bad_bodies() {
        let table: &[(&str, Result<Vec<&str>, ParseError>)] = &[
            (
                r#"{"kind":"books#volumes","totalItems":0,"items":null}"#,
                Ok(vec![]),
            ),
            (r#"{"items":[]}"#, Ok(vec![])),
            (
                r#"{"items":[1,"x",null,{},{"volumeInfo":null},{"volumeInfo":{}},{"volumeInfo":{"title":"  "}},{"volumeInfo":{"title":7}},{"volumeInfo":{"title":"Kept"}}]}"#,
                Ok(vec!["Kept"]),
            ),
            (
                r#"{"items":[{"volumeInfo":{"title":"T","authors":"Frank Herbert","pageCount":"300","industryIdentifiers":{"type":"ISBN_13"},"imageLinks":[]}}]}"#,
                Ok(vec!["T"]),
            ),
            (
                r#"{"items":{}}"#,
                Err(ParseError::UnexpectedShape("items is not an array".into())),
            ),
            (
                "[]",
                Err(ParseError::UnexpectedShape(
                    "top level is not a JSON object".into(),
                )),
            ),
            (
                r#"{"error":{"code":403,"message":"Daily Limit Exceeded","errors":[{"reason":"dailyLimitExceeded"}]}}"#,
                Err(ParseError::Provider("Daily Limit Exceeded".into())),
            ),
            (
                r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED"}}"#,
                Err(ParseError::Provider("RESOURCE_EXHAUSTED".into())),
            ),
            (
                r#"{"error":true}"#,
                Err(ParseError::Provider("unknown error".into())),
            ),
        ];
        for (body, want) in table {
            let got = parse(body).map(|cs| cs.into_iter().map(|c| c.title).collect::<Vec<_>>());
            let want = want
                .clone()
                .map(|ts| ts.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(got, want, "{body}");
        }
        for body in ["", "<html>503</html>", r#"{"items":["#] {
            assert!(
                matches!(parse(body), Err(ParseError::InvalidJson(_))),
                "{body}"
            );
        }
        let long = format!(r#"{{"error":{{"message":"{}"}}}}"#, "x".repeat(5_000));
        assert_eq!(
            parse(&long),
            Err(ParseError::Provider("x".repeat(MAX_ERROR_CHARS)))
        );
    }

    #[test]
    fn picks_the_largest_usable_cover() {
        let table = [
            (
                r#"{"thumbnail":"http://a/t","smallThumbnail":"http://a/s"}"#,
                s("https://a/t"),
            ),
            (r#"{"smallThumbnail":"http://a/s"}"#, s("https://a/s")),
            (
                r#"{"extraLarge":"ftp://a/x","large":"  ","medium":"http://a/m"}"#,
                s("https://a/m"),
            ),
            (
                r#"{"large":5,"small":"https://a/s?edge=curl"}"#,
                s("https://a/s"),
            ),
            (
                r#"{"thumbnail":"http://a/t?edge=curl&id=1"}"#,
                s("https://a/t?id=1"),
            ),
            (
                r#"{"thumbnail":"http://a/t?id=1&EDGE=CURL&zoom=1"}"#,
                s("https://a/t?id=1&zoom=1"),
            ),
            (
                r#"{"thumbnail":"http://a/t?id=1&edge=curly"}"#,
                s("https://a/t?id=1&edge=curly"),
            ),
            (r#"{}"#, None),
            (r#"[]"#, None),
        ];
        for (links, want) in table {
            let v: Value = serde_json::from_str(links).unwrap();
            assert_eq!(cover_url(Some(&v)), want, "{links}");
        }
        assert_eq!(cover_url(None), None);
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parse_never_panics(body in any::<String>()) {
            let _ = parse(&body);
        }

        #[test]
        fn parse_never_panics_on_json_like_text(body in r#"[\[\]{}":,0-9a-zA-Z_ \-]{0,300}"#) {
            let _ = parse(&body);
        }

        #[test]
        fn parse_never_panics_on_odd_volumes(title in any::<String>(), isbn in any::<String>(), link in any::<String>(), pages in any::<i64>()) {
            let body = serde_json::json!({"items": [{"id": title, "volumeInfo": {
                "title": title, "authors": [title], "pageCount": pages,
                "industryIdentifiers": [{"type": "ISBN_13", "identifier": isbn}, {"type": "ISBN_10", "identifier": isbn}],
                "imageLinks": {"thumbnail": link, "large": format!("http://{link}")}
            }}]});
            let parsed = parse(&body.to_string()).unwrap();
            for c in parsed {
                prop_assert!(c.cover_url.is_none_or(|u| u.starts_with("https://")));
            }
        }

        #[test]
        fn query_urls_are_ascii_without_spaces(title in any::<String>(), author in proptest::option::of(any::<String>()), key in proptest::option::of(any::<String>())) {
            let book = BookInput { title, author, isbn: None };
            let url = query_url(BASE_FOR_PROPS, &book, key.as_deref());
            prop_assert!(url.is_ascii() && !url.contains(' '));
            prop_assert_eq!(url.matches('#').count(), 0);
        }
    }

    const BASE_FOR_PROPS: &str = "https://www.googleapis.com/books/v1";
}
