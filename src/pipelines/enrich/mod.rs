//! Batch enrichment: Google Books and Open Library queries, response parsing and match scoring.
//!
//! The job ([`job`]) performs the fetches through its context; this module decides what to fetch and what the answers
//! mean. For one book, a lookup goes:
//!
//! 1. With a valid ISBN ([`BookInput::valid_isbn13`]): [`google_books::query_url`] searches
//!    by ISBN; if nothing matches, [`open_library::isbn_url`] fetches the edition (404 is "no
//!    match", see [`classify_status`]), then up to three [`open_library::author_url`]s.
//! 2. Otherwise, or when the ISBN found nothing: [`google_books::title_query_url`], then
//!    [`open_library::search_url`].
//!
//! Each response is parsed into [`Candidate`]s, [`best_match`] picks the book (or none), and
//! [`EnrichedBook::from_match`] makes the result line for [`BookOutcome::found`].

pub mod failure;
pub mod google_books;
pub mod job;
pub mod matching;
pub mod model;
pub mod open_library;
pub mod plan;
pub mod request;

mod extract;
mod url;

pub use failure::{classify_status, LookupFailure, ParseError};
pub use job::{EnrichWork, Enrichment};
pub use matching::{best_match, score, MIN_SCORE};
pub use model::{
    BookOutcome, Candidate, EnrichedBook, EnrichmentResults, EnrichmentResultsPage,
    EnrichmentSummary, Provider,
};
pub use open_library::EditionCandidate;
pub use request::{parse_request, BookInput, EnrichmentRequest, MAX_BOOKS};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn book(title: &str, author: Option<&str>, isbn: Option<&str>) -> BookInput {
        BookInput::new(title, author, isbn)
    }

    /// The glue's decision for one provider response, as the result line it would record.
    fn outcome(
        input: &BookInput,
        candidates: &[Candidate],
        provider: Provider,
    ) -> serde_json::Value {
        let line = match best_match(input, candidates) {
            Some(c) => {
                BookOutcome::found(input.clone(), EnrichedBook::from_match(input, c, provider))
            }
            None => BookOutcome::not_found(input.clone()),
        };
        serde_json::to_value(line).unwrap()
    }

    #[test]
    fn fixtures_resolve_to_the_right_book_or_none() {
        let gb = |body| google_books::parse(body).unwrap();
        let ol = |body| open_library::parse_search(body).unwrap();
        let edition = open_library::parse_edition(fixture!("books", "ol_edition.json"))
            .unwrap()
            .with_authors(vec![open_library::parse_author(fixture!(
                "books",
                "ol_author.json"
            ))
            .unwrap()]);
        let hobbit = book("The Hobbit", Some("J.R.R. Tolkien"), None);
        // (input, candidates, expected title of the match)
        let table: Vec<(BookInput, Vec<Candidate>, Option<&str>)> = vec![
            (
                hobbit.clone(),
                gb(fixture!("books", "gb_near_miss.json")),
                None,
            ),
            (
                book("The Hobbit", None, None),
                gb(fixture!("books", "gb_near_miss.json")),
                None,
            ),
            (
                hobbit.clone(),
                ol(fixture!("books", "ol_search.json")),
                Some("The Hobbit"),
            ),
            (
                hobbit.clone(),
                gb(fixture!("books", "gb_http_covers.json")),
                Some("The Hobbit"),
            ),
            (
                hobbit.clone(),
                ol(fixture!("books", "ol_search_empty.json")),
                None,
            ),
            (
                book("Dune", Some("Frank Herbert"), None),
                gb(fixture!("books", "gb_multi.json")),
                Some("Dune"),
            ),
            (
                book("Dune Messiah", Some("Frank Herbert"), None),
                gb(fixture!("books", "gb_multi.json")),
                Some("Dune Messiah"),
            ),
            (
                book("God Emperor of Dune", Some("Frank Herbert"), None),
                gb(fixture!("books", "gb_multi.json")),
                None,
            ),
            (
                book("Dune", None, Some("0441013597")),
                gb(fixture!("books", "gb_full.json")),
                Some("Dune"),
            ),
            (
                book("Dune", None, Some("9780441013593")),
                vec![edition.clone()],
                Some("Dune"),
            ),
            (
                book("Wrong Title", None, Some("9780441013593")),
                vec![edition.clone()],
                Some("Dune"),
            ),
            (
                book("Dune", Some("Frank Herbert"), None),
                vec![edition],
                Some("Dune"),
            ),
            (
                book("The C Programming Language", Some("Kernighan"), None),
                gb(fixture!("books", "gb_isbn10_only.json")),
                Some("The C Programming Language"),
            ),
            (
                book("Proceedings of the Annual Meeting", None, None),
                gb(fixture!("books", "gb_sparse.json")),
                Some("Proceedings of the Annual Meeting"),
            ),
            (
                book("Dune", None, None),
                gb(fixture!("books", "gb_no_items.json")),
                None,
            ),
        ];
        for (input, candidates, want) in table {
            let got = best_match(&input, &candidates).map(|c| c.title.as_str());
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn result_lines_match_the_contract() {
        let hobbit = book("The Hobbit", Some("J.R.R. Tolkien"), None);
        let table = [
            (
                book("Dune", None, Some("0441013597")),
                google_books::parse(fixture!("books", "gb_full.json")).unwrap(),
                Provider::GoogleBooks,
                json!({
                    "input": {"title": "Dune", "isbn": "0441013597"},
                    "success": true,
                    "enriched": {
                        "title": "Dune", "authors": ["Frank Herbert"],
                        "isbn13": "9780441013593", "isbn10": "0441013597",
                        "publisher": "Ace Books", "publishedDate": "2005-08-02", "pageCount": 896,
                        "coverUrl": "https://books.google.com/books/content?id=B1hSG45JCX4C&printsec=frontcover&img=1&zoom=6&source=gbs_api",
                        "provider": "google_books"
                    }
                }),
            ),
            (
                hobbit.clone(),
                google_books::parse(fixture!("books", "gb_near_miss.json")).unwrap(),
                Provider::GoogleBooks,
                json!({
                    "input": {"title": "The Hobbit", "author": "J.R.R. Tolkien"},
                    "success": false,
                    "error": "no matching book found",
                    "errorKind": "not_found"
                }),
            ),
            (
                // A work-level search document reports the user's own edition when it lists it.
                book(
                    "The Hobbit",
                    Some("J.R.R. Tolkien"),
                    Some("978-0-547-92822-7"),
                ),
                open_library::parse_search(fixture!("books", "ol_search.json")).unwrap(),
                Provider::OpenLibrary,
                json!({
                    "input": {"title": "The Hobbit", "author": "J.R.R. Tolkien", "isbn": "978-0-547-92822-7"},
                    "success": true,
                    "enriched": {
                        "title": "The Hobbit", "authors": ["J.R.R. Tolkien"],
                        "isbn13": "9780547928227", "isbn10": "054792822X",
                        "publisher": "HarperCollins", "publishedDate": "1937", "pageCount": 310,
                        "coverUrl": "https://covers.openlibrary.org/b/id/14627509-L.jpg",
                        "provider": "open_library"
                    }
                }),
            ),
            (
                book(
                    "Proceedings of the Annual Meeting",
                    None,
                    Some("not-an-isbn"),
                ),
                google_books::parse(fixture!("books", "gb_sparse.json")).unwrap(),
                Provider::GoogleBooks,
                json!({
                    "input": {"title": "Proceedings of the Annual Meeting", "isbn": "not-an-isbn"},
                    "success": true,
                    "enriched": {
                        "title": "Proceedings of the Annual Meeting", "authors": [],
                        "provider": "google_books"
                    }
                }),
            ),
        ];
        for (input, candidates, provider, want) in table {
            assert_eq!(outcome(&input, &candidates, provider), want, "{input:?}");
        }
    }

    #[test]
    fn real_provider_shapes_become_contract_lines() {
        use crate::pipelines::provider_body::decode_body;
        let gb = |bytes: &[u8]| google_books::parse(&decode_body(bytes)).unwrap();
        let ol = |body: &str| open_library::parse_search(body).unwrap();
        let edition = |body: &str| vec![open_library::parse_edition(body).unwrap().candidate];
        // (shape, input, candidates, provider, the expected results line)
        let table = [
            (
                "a body with a UTF-8 BOM",
                book("Dune", None, Some("9780441013593")),
                gb(fixture_bytes!("books", "gb_bom.json")),
                Provider::GoogleBooks,
                json!({"title": "Dune", "isbn13": "9780441013593"}),
            ),
            (
                "a title with the author after a \\c marker",
                book("Java NIO", Some("Ron Hitchens"), None),
                gb(fixture!("books", "gb_responsibility_title.json").as_bytes()),
                Provider::GoogleBooks,
                json!({"title": "Java NIO", "publisher": "O'Reilly", "publishedDate": "2002"}),
            ),
            (
                "a quoted publisher and a timestamp date",
                book("Station Eleven", Some("Emily St. John Mandel"), None),
                gb(fixture!("books", "gb_quoted_publisher_timestamp.json").as_bytes()),
                Provider::GoogleBooks,
                json!({"publisher": "Knopf Doubleday Publishing Group", "publishedDate": "2014-09-09"}),
            ),
            (
                "duplicate search records, only the second with a cover",
                book("Dune", Some("Frank Herbert"), None),
                ol(fixture!("books", "ol_search_dune_duplicates.json")),
                Provider::OpenLibrary,
                json!({"coverUrl": "https://covers.openlibrary.org/b/id/11481354-L.jpg", "isbn13": "9780441013593"}),
            ),
            (
                "an edition with curly-quoted publisher and a month date",
                book("The Left Hand of Darkness", None, Some("9780441478125")),
                edition(fixture!("books", "ol_edition_month_date.json")),
                Provider::OpenLibrary,
                json!({"publisher": "Ace Books", "publishedDate": "1987-03"}),
            ),
        ];
        for (shape, input, candidates, provider, want) in table {
            let line = outcome(&input, &candidates, provider);
            assert_eq!(line["success"], true, "{shape}: {line}");
            for (key, value) in want.as_object().unwrap() {
                assert_eq!(&line["enriched"][key], value, "{shape}: {key} in {line}");
            }
        }
    }

    #[test]
    fn request_books_feed_query_building() {
        let req = parse_request(
            br#"{"books":[{"title":"Dune","isbn":"0441013597"},{"title":"The Hobbit","author":"J.R.R. Tolkien","isbn":"bogus"}]}"#,
        )
        .unwrap();
        let urls: Vec<String> = req
            .books
            .iter()
            .map(|b| google_books::query_url(crate::config::DEFAULT_GOOGLE_BOOKS_API_BASE, b, None))
            .collect();
        assert_eq!(
            urls,
            [
                "https://www.googleapis.com/books/v1/volumes?q=isbn:9780441013593&maxResults=5&printType=books",
                "https://www.googleapis.com/books/v1/volumes?q=intitle:The%20Hobbit+inauthor:J.R.R.%20Tolkien&maxResults=5&printType=books",
            ]
        );
        assert_eq!(
            open_library::isbn_url(crate::config::DEFAULT_OPENLIBRARY_API_BASE, "9780441013593"),
            "https://openlibrary.org/isbn/9780441013593.json"
        );
    }
}
