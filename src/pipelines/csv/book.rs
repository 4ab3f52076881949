//! The import's output records (books, row errors and warnings), its totals and its deduper.

use super::cells::{push_dedupe_text, split_series};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// One imported book, in the contract's results shape plus the series extension fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Book {
    pub title: String,
    pub author: String,
    /// Always the ISBN-13, converted from an ISBN-10 when that is all the row had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isbn: Option<String>,
    /// Absent for 979 ISBNs, which have no ISBN-10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isbn10: Option<String>,
    /// A non-ISBN identifier such as an ASIN; never set alongside `isbn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shelf: Option<String>,
    /// In (0, 5]; absent when unrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<f64>,
    /// `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_read: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_number: Option<String>,
}

/// A row that could not become a book. It never fails the import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RowError {
    /// The 1-based physical line where the record starts; the header is line 1.
    pub line: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub error: String,
}

/// Something worth telling the user about a row that was still imported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RowWarning {
    pub line: u64,
    pub warning: String,
}

/// Totals over the whole import; persisted by the glue together with the cursor. Every data
/// record ends up as exactly one of a book, an error or a duplicate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportTotals {
    pub data_records: u64,
    pub books: u64,
    pub errors: u64,
    pub duplicates: u64,
    pub invalid_utf8_rows: u64,
}

/// The contract's results document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportResults {
    pub books: Vec<Book>,
    pub errors: Vec<RowError>,
    pub success_rate: String,
}

/// Remembers the dedupe keys of kept books. Not persisted: after an eviction the glue rebuilds
/// it by calling `remember` for every book already stored.
#[derive(Debug, Default)]
pub struct Deduper {
    isbns: HashSet<String>,
    titles_and_authors: HashSet<String>,
}

impl Deduper {
    pub fn remember(&mut self, book: &Book) {
        let (isbn, title_and_author) = dedupe_keys(book);
        if let Some(isbn) = isbn {
            self.isbns.insert(isbn);
        }
        self.titles_and_authors.insert(title_and_author);
    }

    /// True when the book is new (and remembers it); false for a duplicate of a kept book,
    /// whose keys are then not remembered, so only first occurrences define what is kept.
    pub fn admit(&mut self, book: &Book) -> bool {
        let (isbn, title_and_author) = dedupe_keys(book);
        let seen_isbn = isbn.as_ref().is_some_and(|isbn| self.isbns.contains(isbn));
        if seen_isbn || self.titles_and_authors.contains(&title_and_author) {
            return false;
        }
        if let Some(isbn) = isbn {
            self.isbns.insert(isbn);
        }
        self.titles_and_authors.insert(title_and_author);
        true
    }

    /// How many books it remembers.
    pub fn len(&self) -> usize {
        self.titles_and_authors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.titles_and_authors.is_empty()
    }
}

/// The ISBN-13, and the normalised title (series suffix ignored) with the normalised author.
fn dedupe_keys(book: &Book) -> (Option<String>, String) {
    let base_title = split_series(&book.title).map_or(book.title.as_str(), |s| s.base_title);
    let mut key = String::with_capacity(base_title.len() + book.author.len() + 1);
    push_dedupe_text(&mut key, base_title);
    // The unit separator cannot survive normalisation, so title and author cannot run into
    // each other.
    key.push('\u{1f}');
    push_dedupe_text(&mut key, &book.author);
    (book.isbn.clone(), key)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A book with only these fields set; shared with the slice tests.
    pub(crate) fn book(title: &str, author: &str, isbn: Option<&str>) -> Book {
        Book {
            title: title.into(),
            author: author.into(),
            isbn: isbn.map(Into::into),
            isbn10: None,
            identifier: None,
            shelf: None,
            rating: None,
            date_read: None,
            series: None,
            series_number: None,
        }
    }

    #[test]
    fn admits_first_occurrences_only() {
        let hobbit = book("The Hobbit", "J.R.R. Tolkien", Some("9780547928227"));
        let cases: &[(&str, Book, bool)] = &[
            (
                "same ISBN, different title",
                book("Hobbit, The", "Tolkien", Some("9780547928227")),
                false,
            ),
            (
                "same title and author, other case and punctuation",
                book("the hobbit!", "j.r.r  TOLKIEN", None),
                false,
            ),
            (
                "same title and author, other ISBN",
                book("THE HOBBIT", "JRR Tolkien", Some("9780261103344")),
                false,
            ),
            (
                "same title with a series suffix",
                book("The Hobbit (Middle-earth, #0)", "JRR Tolkien", None),
                false,
            ),
            (
                "same title, different author",
                book("The Hobbit", "Someone Else", None),
                true,
            ),
            (
                "different title, same author",
                book("The Silmarillion", "J.R.R. Tolkien", None),
                true,
            ),
        ];
        for (name, candidate, admitted) in cases {
            let mut deduper = Deduper::default();
            assert!(deduper.admit(&hobbit));
            assert_eq!(deduper.admit(candidate), *admitted, "{name}");
        }
    }

    #[test]
    fn does_not_remember_rejected_duplicates() {
        let mut deduper = Deduper::default();
        assert!(deduper.admit(&book("A", "X", Some("9780441013593"))));
        // A duplicate by ISBN brings a new title; that title must not block a later book.
        assert!(!deduper.admit(&book("B", "Y", Some("9780441013593"))));
        assert!(deduper.admit(&book("B", "Y", None)));
        assert_eq!(deduper.len(), 2);
    }

    #[test]
    fn remember_rebuilds_the_same_state() {
        let kept = [book("A", "X", Some("9780441013593")), book("B", "Y", None)];
        let mut rebuilt = Deduper::default();
        assert!(rebuilt.is_empty());
        kept.iter().for_each(|b| rebuilt.remember(b));
        assert!(!rebuilt.admit(&book("A2", "Z", Some("9780441013593"))));
        assert!(!rebuilt.admit(&book("b", "y", None)));
        assert!(rebuilt.admit(&book("C", "Z", None)));
    }

    #[test]
    fn serializes_in_the_contract_shape() {
        let mut full = book("T (S, #2)", "A", Some("9780441013593"));
        full.isbn10 = Some("0441013597".into());
        full.shelf = Some("read".into());
        full.rating = Some(4.5);
        full.date_read = Some("2023-08-15".into());
        full.series = Some("S".into());
        full.series_number = Some("2".into());
        let cases: Vec<(serde_json::Value, serde_json::Value)> = vec![
            (
                serde_json::to_value(book("T", "", None)).unwrap(),
                serde_json::json!({"title": "T", "author": ""}),
            ),
            (
                serde_json::to_value(&full).unwrap(),
                serde_json::json!({
                    "title": "T (S, #2)", "author": "A", "isbn": "9780441013593",
                    "isbn10": "0441013597", "shelf": "read", "rating": 4.5,
                    "dateRead": "2023-08-15", "series": "S", "seriesNumber": "2"
                }),
            ),
            (
                serde_json::to_value(RowError {
                    line: 3,
                    title: None,
                    error: "missing title".into(),
                })
                .unwrap(),
                serde_json::json!({"line": 3, "error": "missing title"}),
            ),
            (
                serde_json::to_value(ImportTotals {
                    data_records: 1,
                    invalid_utf8_rows: 1,
                    ..Default::default()
                })
                .unwrap(),
                serde_json::json!({"dataRecords": 1, "books": 0, "errors": 0, "duplicates": 0, "invalidUtf8Rows": 1}),
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
        let parsed: Book = serde_json::from_value(serde_json::to_value(&full).unwrap()).unwrap();
        assert_eq!(parsed, full);
    }
}
