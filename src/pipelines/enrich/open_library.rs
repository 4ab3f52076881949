//! Open Library: edition-by-ISBN, author and search URLs, and the parsing of their JSON into candidates.

use serde_json::{Map, Value};

use super::extract::{field, object, positive_i64, positive_u32, texts};
use super::failure::ParseError;
use super::matching::search_title;
use super::model::{Candidate, IsbnSet};
use super::url::{base, encode, encode_path};

/// Search results per query.
pub const SEARCH_LIMIT: u32 = 5;
/// Author names fetched per edition: each is one more subrequest against the Worker's budget,
/// and the first three name the book for matching and display.
pub const MAX_AUTHOR_LOOKUPS: usize = 3;
/// The search document fields [`parse_search`] reads; asking for only these keeps responses
/// small (a work's full document lists every edition's metadata).
pub const SEARCH_FIELDS: &str =
    "key,title,subtitle,author_name,first_publish_year,publisher,isbn,cover_i,number_of_pages_median";

/// `https://covers.openlibrary.org/b/id/{id}-L.jpg`: the large size, on the covers host,
/// which does not follow `OPENLIBRARY_API_BASE` (it is not an API call and is never fetched
/// by the Worker).
pub fn cover_url(cover_id: i64) -> String {
    format!("https://covers.openlibrary.org/b/id/{cover_id}-L.jpg")
}

/// `{base}/isbn/{isbn}.json`. Open Library redirects it to the edition (`/books/OL...M.json`)
/// and answers 404 for an ISBN it does not know.
pub fn isbn_url(api_base: &str, isbn13: &str) -> String {
    format!("{}/isbn/{}.json", base(api_base), encode(isbn13.trim()))
}

/// `{base}/search.json?title=..&author=..&limit=5&fields=..`, the author only when given.
/// Bracketed series notes are dropped from the title (see [`search_title`]).
pub fn search_url(api_base: &str, title: &str, author: Option<&str>) -> String {
    let mut url = format!(
        "{}/search.json?title={}",
        base(api_base),
        encode(&search_title(title))
    );
    if let Some(author) = author.map(str::trim).filter(|a| !a.is_empty()) {
        url.push_str("&author=");
        url.push_str(&encode(author));
    }
    url.push_str(&format!("&limit={SEARCH_LIMIT}&fields={SEARCH_FIELDS}"));
    url
}

/// `{base}{key}.json` for an author key such as `/authors/OL79034A`, as returned in
/// [`EditionCandidate::author_keys`]. A key without its leading `/` is accepted.
pub fn author_url(api_base: &str, key: &str) -> String {
    let key = key.trim().trim_end_matches(".json");
    let key = key.strip_prefix('/').unwrap_or(key);
    format!("{}/{}.json", base(api_base), encode_path(key))
}

/// An edition read from `/isbn/{isbn}.json`. Editions name their authors only by key, so the
/// candidate's `authors` is empty until the glue has fetched the names and called
/// [`EditionCandidate::with_authors`].
#[derive(Clone, Debug, PartialEq)]
pub struct EditionCandidate {
    pub candidate: Candidate,
    /// `/authors/OL...A` keys, in order, without duplicates, at most [`MAX_AUTHOR_LOOKUPS`].
    pub author_keys: Vec<String>,
    /// `/works/OL...W` keys.
    pub work_keys: Vec<String>,
}

impl EditionCandidate {
    /// The candidate with the author names the glue fetched (blank names are dropped). A
    /// failed author lookup can simply be left out: the edition is still worth reporting.
    pub fn with_authors(self, names: Vec<String>) -> Candidate {
        let authors = names
            .into_iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        Candidate {
            authors,
            ..self.candidate
        }
    }
}

/// Parses an edition. An edition without a title is an error rather than a candidate: the
/// ISBN lookup was specific, so a record we cannot show is a provider problem.
pub fn parse_edition(body: &str) -> Result<EditionCandidate, ParseError> {
    let root = object(body)?;
    if let Some(error) = field(&root, "error") {
        return Err(ParseError::Provider(error));
    }
    let title = field(&root, "title")
        .ok_or_else(|| ParseError::UnexpectedShape("edition has no title".into()))?;
    let mut isbns = IsbnSet::default();
    for raw in texts(&root, "isbn_13")
        .iter()
        .chain(&texts(&root, "isbn_10"))
    {
        isbns.add(raw);
    }
    let (isbn13, isbn10, all) = isbns.finish();
    let cover = match root.get("covers") {
        Some(Value::Array(ids)) => ids.iter().find_map(|id| positive_i64(Some(id))),
        _ => None,
    };
    let mut author_keys = keys(&root, "authors", "/authors/");
    author_keys.truncate(MAX_AUTHOR_LOOKUPS);
    Ok(EditionCandidate {
        candidate: Candidate {
            title,
            subtitle: field(&root, "subtitle"),
            authors: Vec::new(),
            isbn13,
            isbn10,
            isbns: all,
            publisher: texts(&root, "publishers").into_iter().next(),
            published_date: field(&root, "publish_date"),
            page_count: positive_u32(root.get("number_of_pages")),
            cover_url: cover.map(cover_url),
            source_id: field(&root, "key"),
        },
        author_keys,
        work_keys: keys(&root, "works", "/works/"),
    })
}

/// The keys in `[{"key": ...}]` (or the work-style `[{"author": {"key": ...}}]`) that have
/// the expected prefix and a plain id, so a hostile record cannot steer [`author_url`]
/// outside the author namespace.
fn keys(root: &Map<String, Value>, list: &str, prefix: &str) -> Vec<String> {
    let Some(Value::Array(items)) = root.get(list) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for item in items.iter().filter_map(Value::as_object) {
        let key = field(item, "key").or_else(|| {
            item.get("author")
                .and_then(Value::as_object)
                .and_then(|a| field(a, "key"))
        });
        let Some(key) = key else { continue };
        let plain = key
            .strip_prefix(prefix)
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()));
        if plain && !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

/// The display name in an `/authors/{key}.json` body (`name`, else `personal_name`).
pub fn parse_author(body: &str) -> Option<String> {
    let root = object(body).ok()?;
    field(&root, "name").or_else(|| field(&root, "personal_name"))
}

/// The candidates of a `/search.json` response, in the provider's order. `numFound: 0` (an
/// empty or absent `docs`) is an empty list; a document without a title is skipped. Search
/// documents describe works, so their ISBNs span editions: the candidate's ISBN pair is the
/// first edition's, and [`EnrichedBook::from_match`](super::EnrichedBook::from_match) reports
/// the input's own ISBN instead when the work lists it.
pub fn parse_search(body: &str) -> Result<Vec<Candidate>, ParseError> {
    let root = object(body)?;
    if let Some(error) = field(&root, "error") {
        return Err(ParseError::Provider(error));
    }
    match root.get("docs") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(docs)) => Ok(docs.iter().filter_map(search_candidate).collect()),
        Some(_) => Err(ParseError::UnexpectedShape("docs is not an array".into())),
    }
}

fn search_candidate(doc: &Value) -> Option<Candidate> {
    let doc = doc.as_object()?;
    let title = field(doc, "title")?;
    let mut isbns = IsbnSet::default();
    for raw in texts(doc, "isbn") {
        isbns.add(&raw);
    }
    let (isbn13, isbn10, all) = isbns.finish();
    Some(Candidate {
        title,
        subtitle: field(doc, "subtitle"),
        authors: texts(doc, "author_name"),
        isbn13,
        isbn10,
        isbns: all,
        publisher: texts(doc, "publisher").into_iter().next(),
        published_date: positive_u32(doc.get("first_publish_year")).map(|y| y.to_string()),
        page_count: positive_u32(doc.get("number_of_pages_median")),
        cover_url: positive_i64(doc.get("cover_i")).map(cover_url),
        source_id: field(doc, "key"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://openlibrary.org";

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn builds_urls() {
        let fields = format!("&limit=5&fields={SEARCH_FIELDS}");
        let table: &[(String, String)] = &[
            (isbn_url(BASE, "9780441013593"), "https://openlibrary.org/isbn/9780441013593.json".into()),
            (isbn_url("https://openlibrary.org/", " 9780441013593 "), "https://openlibrary.org/isbn/9780441013593.json".into()),
            (isbn_url("http://127.0.0.1:9000/ol", "97804410/3593"), "http://127.0.0.1:9000/ol/isbn/97804410%2F3593.json".into()),
            (
                search_url(BASE, "The Hobbit", Some("J.R.R. Tolkien")),
                format!("https://openlibrary.org/search.json?title=The%20Hobbit&author=J.R.R.%20Tolkien{fields}"),
            ),
            (search_url(BASE, "Dune", None), format!("https://openlibrary.org/search.json?title=Dune{fields}")),
            (search_url(BASE, "Dune", Some(" ")), format!("https://openlibrary.org/search.json?title=Dune{fields}")),
            (
                search_url("https://openlibrary.org//", "Pride & Prejudice (Penguin Classics)", Some("Austen, Jane")),
                format!("https://openlibrary.org/search.json?title=Pride%20%26%20Prejudice&author=Austen%2C%20Jane{fields}"),
            ),
            (
                search_url(BASE, "Les Misérables", Some("Victor Hugo")),
                format!("https://openlibrary.org/search.json?title=Les%20Mis%C3%A9rables&author=Victor%20Hugo{fields}"),
            ),
            (author_url(BASE, "/authors/OL79034A"), "https://openlibrary.org/authors/OL79034A.json".into()),
            (author_url("https://openlibrary.org/", "/authors/OL79034A"), "https://openlibrary.org/authors/OL79034A.json".into()),
            (author_url(BASE, "authors/OL79034A"), "https://openlibrary.org/authors/OL79034A.json".into()),
            (author_url(BASE, "/authors/OL79034A.json"), "https://openlibrary.org/authors/OL79034A.json".into()),
            (author_url(BASE, "/authors/a b?x=1#f"), "https://openlibrary.org/authors/a%20b%3Fx%3D1%23f.json".into()),
        ];
        for (got, want) in table {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn parses_edition_fixtures_exactly() {
        let full = EditionCandidate {
            candidate: Candidate {
                title: "Dune".into(),
                subtitle: s("40th Anniversary Edition"),
                authors: vec![],
                isbn13: s("9780441013593"),
                isbn10: s("0441013597"),
                isbns: strings(&["9780441013593"]),
                publisher: s("Ace Books"),
                published_date: s("August 2, 2005"),
                page_count: Some(528),
                cover_url: s("https://covers.openlibrary.org/b/id/8231856-L.jpg"),
                source_id: s("/books/OL7353617M"),
            },
            author_keys: strings(&["/authors/OL79034A"]),
            work_keys: strings(&["/works/OL893415W"]),
        };
        let sparse = EditionCandidate {
            candidate: Candidate {
                title: "Field Notes on Local Birds".into(),
                source_id: s("/books/OL24364628M"),
                ..Candidate::default()
            },
            author_keys: vec![],
            work_keys: vec![],
        };
        let table = [
            (fixture!("books", "ol_edition.json"), full),
            (fixture!("books", "ol_edition_sparse.json"), sparse),
        ];
        for (body, want) in table {
            assert_eq!(parse_edition(body).unwrap(), want);
        }
    }

    #[test]
    fn edition_author_keys_are_filtered_and_capped() {
        let body = r#"{"title":"T","authors":[
            {"key":"/authors/OL1A"},{"key":"/authors/OL1A"},{"key":"/books/OL2M"},
            {"key":"/authors/../../admin"},{"key":"/authors/"},{"key":7},"x",
            {"author":{"key":"/authors/OL3A"},"type":{"key":"/type/author_role"}},
            {"key":"/authors/OL4A"},{"key":"/authors/OL5A"}
        ],"works":[{"key":"/works/OL9W"},{"key":"/authors/OL1A"}]}"#;
        let e = parse_edition(body).unwrap();
        assert_eq!(
            e.author_keys,
            strings(&["/authors/OL1A", "/authors/OL3A", "/authors/OL4A"])
        );
        assert_eq!(e.work_keys, strings(&["/works/OL9W"]));
    }

    #[test]
    fn edition_fields_are_read_leniently() {
        type Row<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<u32>,
            Option<&'a str>,
        );
        let table: &[Row] = &[
            // (body, isbn13, isbn10, pages, cover)
            (
                r#"{"title":"T","isbn_10":["054792822X"]}"#,
                Some("9780547928227"),
                Some("054792822X"),
                None,
                None,
            ),
            (
                r#"{"title":"T","isbn_13":["9791032305690"]}"#,
                Some("9791032305690"),
                None,
                None,
                None,
            ),
            (
                r#"{"title":"T","isbn_13":["9780441013594"],"isbn_10":["0441013597"]}"#,
                Some("9780441013593"),
                Some("0441013597"),
                None,
                None,
            ),
            (
                r#"{"title":"T","covers":[-1,0,42],"number_of_pages":0}"#,
                None,
                None,
                None,
                Some("https://covers.openlibrary.org/b/id/42-L.jpg"),
            ),
            (
                r#"{"title":"T","covers":"42","number_of_pages":"300"}"#,
                None,
                None,
                None,
                None,
            ),
            (
                r#"{"title":"T","number_of_pages":300.5}"#,
                None,
                None,
                None,
                None,
            ),
            (
                r#"{"title":"T","number_of_pages":1200}"#,
                None,
                None,
                Some(1200),
                None,
            ),
        ];
        for (body, i13, i10, pages, cover) in table {
            let c = parse_edition(body).unwrap().candidate;
            assert_eq!(c.isbn13.as_deref(), *i13, "{body}");
            assert_eq!(c.isbn10.as_deref(), *i10, "{body}");
            assert_eq!(c.page_count, *pages, "{body}");
            assert_eq!(c.cover_url.as_deref(), *cover, "{body}");
        }
    }

    #[test]
    fn edition_errors() {
        let table: &[(&str, ParseError)] = &[
            (
                "{}",
                ParseError::UnexpectedShape("edition has no title".into()),
            ),
            (
                r#"{"title":"  "}"#,
                ParseError::UnexpectedShape("edition has no title".into()),
            ),
            (
                r#"{"title":["Dune"]}"#,
                ParseError::UnexpectedShape("edition has no title".into()),
            ),
            (
                r#"{"error":"notfound","key":"/isbn/9780000000002"}"#,
                ParseError::Provider("notfound".into()),
            ),
            (
                "[]",
                ParseError::UnexpectedShape("top level is not a JSON object".into()),
            ),
        ];
        for (body, want) in table {
            assert_eq!(&parse_edition(body).unwrap_err(), want, "{body}");
        }
        assert!(matches!(
            parse_edition("<html>Not Found</html>"),
            Err(ParseError::InvalidJson(_))
        ));
    }

    #[test]
    fn with_authors_fills_the_names() {
        let edition = parse_edition(fixture!("books", "ol_edition.json")).unwrap();
        let table: &[(Vec<String>, Vec<String>)] = &[
            (strings(&["Frank Herbert"]), strings(&["Frank Herbert"])),
            (
                strings(&[" Frank Herbert ", "", "  "]),
                strings(&["Frank Herbert"]),
            ),
            (vec![], vec![]),
        ];
        for (names, want) in table {
            let c = edition.clone().with_authors(names.clone());
            assert_eq!(&c.authors, want);
            assert_eq!(c.title, "Dune");
            assert_eq!(c.isbn13.as_deref(), Some("9780441013593"));
        }
    }

    #[test]
    fn parses_author_names() {
        let table = [
            (fixture!("books", "ol_author.json"), s("Frank Herbert")),
            (r#"{"personal_name":"Frank Herbert"}"#, s("Frank Herbert")),
            (r#"{"name":"  ","personal_name":"P"}"#, s("P")),
            (r#"{"name":7}"#, None),
            ("{}", None),
            ("[]", None),
            ("not json", None),
            ("", None),
        ];
        for (body, want) in table {
            assert_eq!(parse_author(body), want, "{body:.40}");
        }
    }

    #[test]
    fn parses_search_fixtures_exactly() {
        let companion = Candidate {
            title: "The Hobbit Companion".into(),
            authors: strings(&["David Day"]),
            isbn13: s("9781780977317"),
            isbn10: s("178097731X"),
            isbns: strings(&["9781780977317"]),
            publisher: s("Pavilion Books"),
            published_date: s("2013"),
            page_count: Some(176),
            cover_url: s("https://covers.openlibrary.org/b/id/8405716-L.jpg"),
            source_id: s("/works/OL17078655W"),
            ..Candidate::default()
        };
        let hobbit = Candidate {
            title: "The Hobbit".into(),
            subtitle: s("or There and Back Again"),
            authors: strings(&["J.R.R. Tolkien"]),
            isbn13: s("9780261102217"),
            isbn10: s("0261102214"),
            isbns: strings(&["9780261102217", "9780547928227", "9780345339683"]),
            publisher: s("HarperCollins"),
            published_date: s("1937"),
            page_count: Some(310),
            cover_url: s("https://covers.openlibrary.org/b/id/14627509-L.jpg"),
            source_id: s("/works/OL262758W"),
        };
        let annotated = Candidate {
            title: "The Annotated Hobbit".into(),
            authors: strings(&["J.R.R. Tolkien", "Douglas A. Anderson"]),
            isbn13: s("9780618134700"),
            isbn10: s("0618134700"),
            isbns: strings(&["9780618134700"]),
            publisher: s("Houghton Mifflin"),
            published_date: s("1988"),
            source_id: s("/works/OL27479W"),
            ..Candidate::default()
        };
        let table = [
            (
                fixture!("books", "ol_search.json"),
                vec![companion, hobbit, annotated],
            ),
            (fixture!("books", "ol_search_empty.json"), vec![]),
        ];
        for (body, want) in table {
            assert_eq!(parse_search(body).unwrap(), want);
        }
    }

    #[test]
    fn search_bodies_are_read_leniently() {
        let table: &[(&str, Result<Vec<&str>, ParseError>)] = &[
            (r#"{"numFound":0}"#, Ok(vec![])),
            (r#"{"numFound":0,"docs":null}"#, Ok(vec![])),
            (
                r#"{"docs":[1,null,{},{"title":""},{"title":"Kept","first_publish_year":"1937","cover_i":"5"}]}"#,
                Ok(vec!["Kept"]),
            ),
            (
                r#"{"docs":{}}"#,
                Err(ParseError::UnexpectedShape("docs is not an array".into())),
            ),
            (
                r#"{"error":"Request timed out"}"#,
                Err(ParseError::Provider("Request timed out".into())),
            ),
            (
                "null",
                Err(ParseError::UnexpectedShape(
                    "top level is not a JSON object".into(),
                )),
            ),
        ];
        for (body, want) in table {
            let got =
                parse_search(body).map(|cs| cs.into_iter().map(|c| c.title).collect::<Vec<_>>());
            let want = want
                .clone()
                .map(|ts| ts.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(got, want, "{body}");
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsers_never_panic(body in any::<String>()) {
            let _ = parse_edition(&body);
            let _ = parse_search(&body);
            let _ = parse_author(&body);
        }

        #[test]
        fn parsers_never_panic_on_json_like_text(body in r#"[\[\]{}":,0-9a-z_/ \-]{0,300}"#) {
            let _ = parse_edition(&body);
            let _ = parse_search(&body);
            let _ = parse_author(&body);
        }

        #[test]
        fn parsers_never_panic_on_odd_records(text in any::<String>(), n in any::<i64>(), f in any::<f64>()) {
            let edition = serde_json::json!({
                "title": text, "publishers": [text, n], "isbn_13": [text], "isbn_10": [n],
                "covers": [n, f], "number_of_pages": n, "authors": [{"key": text}, {"author": {"key": text}}],
                "works": [{"key": text}]
            });
            let _ = parse_edition(&edition.to_string());
            let search = serde_json::json!({"docs": [{
                "title": text, "author_name": [text], "isbn": [text, n], "cover_i": n,
                "first_publish_year": n, "number_of_pages_median": f, "publisher": text
            }]});
            let _ = parse_search(&search.to_string());
        }

        #[test]
        fn author_urls_stay_under_the_base(key in any::<String>()) {
            let url = author_url("https://openlibrary.org", &key);
            prop_assert!(url.starts_with("https://openlibrary.org/"));
            prop_assert!(url.ends_with(".json"));
            prop_assert!(!url["https://".len()..].contains("//") || key.contains("//"));
            prop_assert!(!url.contains('?') && !url.contains('#'));
        }
    }
}
