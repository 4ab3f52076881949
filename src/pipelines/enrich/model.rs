//! The enrichment data model: what a provider record parses into, and the per-book results.

use serde::{Deserialize, Serialize};

use super::request::BookInput;
use crate::isbn::{classify, isbn13_to_10, normalize, IsbnCheck};
use crate::time::Millis;

/// The `error` of a book no provider had a matching record for.
pub const NOT_FOUND_MESSAGE: &str = "no matching book found";

/// Open Library editions and search documents can list hundreds of ISBNs; beyond this many a
/// record is not telling us which edition it is anyway, and the cap bounds the work per record.
const MAX_ISBNS_PER_CANDIDATE: usize = 500;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    GoogleBooks,
    OpenLibrary,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GoogleBooks => "google_books",
            Self::OpenLibrary => "open_library",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct EnrichedBook {
    pub title: String,
    pub authors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isbn13: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isbn10: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cover_url: Option<String>,
    pub provider: Provider,
}

impl EnrichedBook {
    /// The enriched record for `input` matched to `candidate`. When the input's ISBN is one the
    /// candidate carries, that ISBN is reported: a work-level record (an Open Library search
    /// document) lists many editions, and the user's own edition is the right one to echo.
    pub fn from_match(input: &BookInput, candidate: &Candidate, provider: Provider) -> Self {
        let mut enriched = candidate.to_enriched(provider);
        if let Some(isbn13) = input.valid_isbn13() {
            if candidate.isbns.contains(&isbn13) {
                enriched.isbn10 = isbn13_to_10(&isbn13);
                enriched.isbn13 = Some(isbn13);
            }
        }
        enriched
    }
}

/// Why a book was not enriched, for machines: `errorKind` in its results line.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Some provider answered and none had a matching record.
    NotFound,
    /// Every provider asked failed (timeout, network, an error status, or an error object).
    ProviderError,
    /// A provider answered 2xx with a body that could not be read; no match came from the
    /// others. Never reported as "not found": the unreadable answer may have held the book.
    ParseError,
}

/// One book's line in the results.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(
    not(target_arch = "wasm32"),
    derive(schemars::JsonSchema),
    schemars(transform = crate::schema::rules::outcome_rules)
)]
#[serde(rename_all = "camelCase")]
pub struct BookOutcome {
    pub input: BookInput,
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Present exactly when `success` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enriched: Option<EnrichedBook>,
}

impl BookOutcome {
    pub fn found(input: BookInput, enriched: EnrichedBook) -> Self {
        Self {
            input,
            success: true,
            error: None,
            error_kind: None,
            enriched: Some(enriched),
        }
    }

    pub fn not_found(input: BookInput) -> Self {
        Self::failed(input, ErrorKind::NotFound, NOT_FOUND_MESSAGE)
    }

    pub fn provider_error(input: BookInput, message: impl Into<String>) -> Self {
        Self::failed(input, ErrorKind::ProviderError, message)
    }

    pub fn parse_error(input: BookInput, message: impl Into<String>) -> Self {
        Self::failed(input, ErrorKind::ParseError, message)
    }

    fn failed(input: BookInput, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            input,
            success: false,
            error: Some(message.into()),
            error_kind: Some(kind),
            enriched: None,
        }
    }

    /// The outcome's error kind; `None` for a found book. Lines stored before the kind
    /// existed carry only the message, from which it is the one thing to read it.
    pub fn kind(&self) -> Option<ErrorKind> {
        if self.success {
            return None;
        }
        Some(
            self.error_kind
                .unwrap_or(if self.error.as_deref() == Some(NOT_FOUND_MESSAGE) {
                    ErrorKind::NotFound
                } else {
                    ErrorKind::ProviderError
                }),
        )
    }
}

/// The summary of a complete batch (docs/PROTOCOL.md section 8.3). `parseErrors` is absent
/// from the summaries of batches that completed before it existed.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[cfg_attr(
    not(target_arch = "wasm32"),
    derive(schemars::JsonSchema),
    schemars(transform = crate::schema::rules::NotRequired(&["parseErrors"]))
)]
#[serde(rename_all = "camelCase")]
pub struct EnrichmentSummary {
    /// Books.
    pub total_processed: usize,
    pub success_count: usize,
    /// `notFound` + `providerErrors`.
    pub failure_count: usize,
    pub not_found: usize,
    pub provider_errors: usize,
    /// The part of `providerErrors` that were unreadable answers.
    pub parse_errors: usize,
    pub duration: Millis,
}

/// A page of `GET /v1/enrichment/results/{jobId}`: results lines in input order, passed on
/// as stored, each a [`BookOutcome`] as some version of this code wrote it.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub struct EnrichmentResultsPage {
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Vec<BookOutcome>"))]
    pub books: Vec<serde_json::Value>,
}

/// The results document of a batch: `{ "books": [...] }`, in input order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct EnrichmentResults {
    pub books: Vec<BookOutcome>,
}

/// A provider record, whichever provider it came from, ready for scoring and conversion.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Candidate {
    /// The main title, without the subtitle.
    pub title: String,
    pub subtitle: Option<String>,
    pub authors: Vec<String>,
    /// The record's primary ISBN pair, always of the same edition: the first valid ISBN-13
    /// (else ISBN-10) the record lists, with the other form derived from it.
    pub isbn13: Option<String>,
    pub isbn10: Option<String>,
    /// Every valid ISBN the record carries, as ISBN-13, for outright matching on the input's.
    pub isbns: Vec<String>,
    pub publisher: Option<String>,
    /// As the provider wrote it (`2005-08-02`, `1965`, `August 1990`): not normalised, since
    /// turning free text into a date would invent precision the source does not have.
    pub published_date: Option<String>,
    pub page_count: Option<u32>,
    /// Always `https`, the largest image the provider offers.
    pub cover_url: Option<String>,
    /// The provider's own id: a Google volume id, an Open Library `/books/` or `/works/` key.
    pub source_id: Option<String>,
}

/// A publisher name without the literal quotes some records wrap it in (`"Knopf"`, curly
/// quotes too) and with its whitespace collapsed; `None` when nothing is left.
pub fn clean_publisher(raw: &str) -> Option<String> {
    let quotes = |c: char| {
        matches!(
            c,
            '"' | '\'' | '\u{201C}' | '\u{201D}' | '\u{2018}' | '\u{2019}'
        )
    };
    let mut text = raw.trim();
    // Only a matched pair is a wrapper: `O'Reilly` keeps its apostrophe.
    while let (Some(first), Some(last)) = (text.chars().next(), text.chars().last()) {
        if text.chars().count() < 2 || !quotes(first) || !quotes(last) {
            break;
        }
        text = text
            .get(first.len_utf8()..text.len() - last.len_utf8())
            .unwrap_or_default()
            .trim();
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    (!words.is_empty()).then(|| words.join(" "))
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// A publication date as `YYYY-MM-DD`, `YYYY-MM` or `YYYY`, as precise as the provider was and
/// no more:
/// - ISO forms, including a full timestamp (`2014-09-09T00:00:00Z` is `2014-09-09`); an
///   impossible month or day drops to the precision that holds (`2005-13-40` is `2005`);
/// - English forms Open Library uses: `August 2, 2005`, `2 August 2005`, `Aug. 2005`;
/// - otherwise the one year the text names (`c1965`, `[1965?]`, `1965 printing`);
/// - `None` for text with no year or several (`1965-1970`), rather than a guess.
pub fn clean_published_date(raw: &str) -> Option<String> {
    let text = raw.trim();
    if let Some(iso) = iso_date(text) {
        return Some(iso);
    }
    let lower = text.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let years: Vec<u32> = words
        .iter()
        .filter(|w| w.len() == 4 && w.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|w| w.parse().ok())
        .filter(|y| (1000..=2999).contains(y))
        .collect();
    let year = match years.as_slice() {
        [year] => *year,
        // `c1965`: a year glued to a copyright mark.
        [] => {
            let digits: Vec<u32> = words
                .iter()
                .filter_map(|w| w.strip_prefix('c'))
                .filter(|w| w.len() == 4)
                .filter_map(|w| w.parse().ok())
                .collect();
            match digits.as_slice() {
                [year] if (1000..=2999).contains(year) => *year,
                _ => return None,
            }
        }
        _ => return None,
    };
    // A month is a word of three letters or more that begins its English name (`aug`,
    // `sept`, `august`).
    let month = words.iter().find_map(|w| {
        MONTHS
            .iter()
            .position(|m| w.len() >= 3 && m.starts_with(*w))
            .map(|i| i as u32 + 1)
    });
    let day = words
        .iter()
        .filter(|w| w.len() <= 2 && w.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|w| w.parse::<u32>().ok())
        .next();
    Some(match (month, day) {
        (Some(m), Some(d)) if crate::time::is_valid_date(i64::from(year), m, d) => {
            format!("{year:04}-{m:02}-{d:02}")
        }
        (Some(m), _) => format!("{year:04}-{m:02}"),
        _ => format!("{year:04}"),
    })
}

/// `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, optionally followed by a `T` time: as precise as valid.
fn iso_date(text: &str) -> Option<String> {
    let date = text.split(['T', 't', ' ']).next()?;
    let parts: Vec<&str> = date.split('-').collect();
    let number = |s: &str, len: usize| {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u32>().ok())
            .flatten()
    };
    let rest_ok = text
        .get(date.len()..)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['T', 't']));
    if !rest_ok {
        return None;
    }
    let year = number(parts.first()?, 4).filter(|y| (1000..=2999).contains(y))?;
    let month = parts.get(1).map(|m| number(m, 2));
    let day = parts.get(2).map(|d| number(d, 2));
    if parts.len() > 3 || month == Some(None) || day == Some(None) {
        return None;
    }
    Some(match (month.flatten(), day.flatten()) {
        (Some(m), Some(d)) if crate::time::is_valid_date(i64::from(year), m, d) => {
            format!("{year:04}-{m:02}-{d:02}")
        }
        (Some(m), _) if (1..=12).contains(&m) => format!("{year:04}-{m:02}"),
        _ => format!("{year:04}"),
    })
}

/// Collects a record's identifiers. The primary pair is the first valid ISBN-13, else the
/// first valid ISBN-10, with the other form derived from it: taking "the first 13" and "the
/// first 10" separately could pair two different editions of a multi-edition record.
/// Identifiers that fail their checksum are dropped, since echoing a broken ISBN is worse
/// than echoing none.
#[derive(Debug, Default)]
pub(crate) struct IsbnSet {
    first13: Option<String>,
    first10: Option<String>,
    all: Vec<String>,
}

impl IsbnSet {
    pub(crate) fn add(&mut self, raw: &str) {
        if self.all.len() >= MAX_ISBNS_PER_CANDIDATE {
            return;
        }
        if let IsbnCheck::Valid { isbn13, .. } = classify(raw) {
            if normalize(raw).len() == 13 {
                self.first13.get_or_insert_with(|| isbn13.clone());
            } else {
                self.first10.get_or_insert_with(|| isbn13.clone());
            }
            if !self.all.contains(&isbn13) {
                self.all.push(isbn13);
            }
        }
    }

    /// `(isbn13, isbn10, all)`.
    pub(crate) fn finish(self) -> (Option<String>, Option<String>, Vec<String>) {
        let primary = self.first13.or(self.first10);
        let isbn10 = primary.as_deref().and_then(isbn13_to_10);
        (primary, isbn10, self.all)
    }
}

/// A cover URL made `https`; `None` when it is not an http(s) URL at all. Covers are shown in
/// an app that loads them over TLS, and both providers serve the same image on `https`.
pub(crate) fn https_url(raw: &str) -> Option<String> {
    let url = raw.trim();
    let rest = if let Some(rest) = strip_prefix_ignore_case(url, "https://") {
        rest
    } else if let Some(rest) = strip_prefix_ignore_case(url, "http://") {
        rest
    } else {
        url.strip_prefix("//")?
    };
    // A URL needs a host: something before the first `/`, `?` or `#`.
    let host_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if host_len == 0 || rest.chars().any(char::is_whitespace) {
        return None;
    }
    Some(format!("https://{rest}"))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn isbns(raw: &[&str]) -> (Option<String>, Option<String>, Vec<String>) {
        let mut set = IsbnSet::default();
        for r in raw {
            set.add(r);
        }
        set.finish()
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn isbn_set_derives_a_consistent_pair() {
        type Row<'a> = (&'a [&'a str], Option<String>, Option<String>, &'a [&'a str]);
        let table: &[Row] = &[
            (
                &["9780441013593", "0441013597"],
                s("9780441013593"),
                s("0441013597"),
                &["9780441013593"],
            ),
            (
                &["0441013597", "9780441013593"],
                s("9780441013593"),
                s("0441013597"),
                &["9780441013593"],
            ),
            (
                &["9780441013593"],
                s("9780441013593"),
                s("0441013597"),
                &["9780441013593"],
            ),
            (
                &["0131103628"],
                s("9780131103627"),
                s("0131103628"),
                &["9780131103627"],
            ),
            (
                &["979-10-323-0569-0"],
                s("9791032305690"),
                None,
                &["9791032305690"],
            ),
            (&["9780441013594", "bogus", ""], None, None, &[]),
            (
                &["0547928227", "054792822x", "9780441013593"],
                s("9780441013593"),
                s("0441013597"),
                &["9780547928227", "9780441013593"],
            ),
            (&[], None, None, &[]),
        ];
        for (raw, want13, want10, want_all) in table {
            let (i13, i10, all) = isbns(raw);
            assert_eq!((&i13, &i10), (want13, want10), "{raw:?}");
            assert_eq!(
                all,
                want_all.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn isbn_set_is_capped() {
        let mut set = IsbnSet::default();
        for i in 0..2_000u32 {
            set.add(&crate::isbn::isbn10_to_13(&format!("{:09}0", i)));
        }
        assert_eq!(set.finish().2.len(), MAX_ISBNS_PER_CANDIDATE);
    }

    #[test]
    fn cover_urls_become_https() {
        let table = [
            (
                "http://books.google.com/x?id=1",
                s("https://books.google.com/x?id=1"),
            ),
            ("HTTP://books.google.com/x", s("https://books.google.com/x")),
            (
                "https://covers.openlibrary.org/b/id/1-L.jpg",
                s("https://covers.openlibrary.org/b/id/1-L.jpg"),
            ),
            ("//books.google.com/x", s("https://books.google.com/x")),
            ("  https://a.b/c  ", s("https://a.b/c")),
            ("ftp://a.b/c", None),
            ("javascript:alert(1)", None),
            ("data:image/png;base64,AAAA", None),
            ("/relative/path.jpg", None),
            ("https://", None),
            ("http:///x", None),
            ("http://?edge=curl", None),
            ("https://#frag", None),
            ("https://a b/c", None),
            ("", None),
            ("é", None),
        ];
        for (raw, want) in table {
            assert_eq!(https_url(raw), want, "{raw}");
        }
    }

    fn dune() -> Candidate {
        Candidate {
            title: "Dune".into(),
            authors: vec!["Frank Herbert".into()],
            isbn13: s("9780441172696"),
            isbn10: s("0441172695"),
            isbns: vec!["9780441172696".into(), "9780441013593".into()],
            ..Candidate::default()
        }
    }

    #[test]
    fn from_match_pins_the_input_isbn_when_the_candidate_carries_it() {
        let table = [
            (Some("0441013597"), "9780441013593", "0441013597"),
            (Some("978-0-441-01359-3"), "9780441013593", "0441013597"),
            (Some("9780547928227"), "9780441172696", "0441172695"),
            (Some("not an isbn"), "9780441172696", "0441172695"),
            (None, "9780441172696", "0441172695"),
        ];
        for (isbn, want13, want10) in table {
            let input = BookInput::new("Dune", None, isbn);
            let e = EnrichedBook::from_match(&input, &dune(), Provider::OpenLibrary);
            assert_eq!(e.isbn13.as_deref(), Some(want13), "{isbn:?}");
            assert_eq!(e.isbn10.as_deref(), Some(want10), "{isbn:?}");
            assert_eq!(e.provider, Provider::OpenLibrary);
        }
    }

    #[test]
    fn outcomes_serialize_to_the_contract_shape() {
        let input = BookInput::new("Dune", Some("Frank Herbert"), None);
        let found = BookOutcome::found(input.clone(), dune().to_enriched(Provider::GoogleBooks));
        let table = [
            (
                found,
                json!({
                    "input": {"title": "Dune", "author": "Frank Herbert"},
                    "success": true,
                    "enriched": {
                        "title": "Dune", "authors": ["Frank Herbert"], "isbn13": "9780441172696",
                        "isbn10": "0441172695", "provider": "google_books"
                    }
                }),
            ),
            (
                BookOutcome::not_found(BookInput::new("Dune", None, Some("123"))),
                json!({"input": {"title": "Dune", "isbn": "123"}, "success": false, "error": NOT_FOUND_MESSAGE, "errorKind": "not_found"}),
            ),
            (
                BookOutcome::provider_error(input, "Google Books: 503"),
                json!({"input": {"title": "Dune", "author": "Frank Herbert"}, "success": false, "error": "Google Books: 503", "errorKind": "provider_error"}),
            ),
            (
                BookOutcome::parse_error(BookInput::new("Dune", None, None), "unreadable"),
                json!({"input": {"title": "Dune"}, "success": false, "error": "unreadable", "errorKind": "parse_error"}),
            ),
        ];
        for (outcome, want) in table {
            let v = serde_json::to_value(&outcome).unwrap();
            assert_eq!(v, want);
            let back: BookOutcome = serde_json::from_value(v).unwrap();
            assert_eq!(back, outcome);
        }
        let full = EnrichedBook {
            title: "T".into(),
            authors: vec![],
            isbn13: s("9780441013593"),
            isbn10: s("0441013597"),
            publisher: s("Ace"),
            published_date: s("2005"),
            page_count: Some(896),
            cover_url: s("https://x/y.jpg"),
            provider: Provider::OpenLibrary,
        };
        assert_eq!(
            serde_json::to_value(&full).unwrap(),
            json!({
                "title": "T", "authors": [], "isbn13": "9780441013593", "isbn10": "0441013597",
                "publisher": "Ace", "publishedDate": "2005", "pageCount": 896,
                "coverUrl": "https://x/y.jpg", "provider": "open_library"
            })
        );
        assert_eq!(
            serde_json::to_value(EnrichmentResults { books: vec![] }).unwrap(),
            json!({"books": []})
        );
    }

    #[test]
    fn publishers_lose_their_literal_quotes() {
        let table = [
            (
                "\"Knopf Doubleday Publishing Group\"",
                s("Knopf Doubleday Publishing Group"),
            ),
            ("\u{201C}Ace Books\u{201D}", s("Ace Books")),
            ("'Penguin'", s("Penguin")),
            ("\"\"Tor\"\"", s("Tor")),
            ("O'Reilly Media, Inc.", s("O'Reilly Media, Inc.")),
            ("\"O'Reilly\"", s("O'Reilly")),
            ("  Harper   Collins ", s("Harper Collins")),
            ("\"\"", None),
            ("\"", s("\"")),
            ("", None),
        ];
        for (raw, want) in table {
            assert_eq!(clean_publisher(raw), want, "{raw}");
        }
    }

    #[test]
    fn published_dates_take_the_results_shapes() {
        let table = [
            ("2005-08-02", s("2005-08-02")),
            ("2014-09-09T00:00:00Z", s("2014-09-09")),
            ("2014-09-09T12:30:00.000+02:00", s("2014-09-09")),
            ("2005-08", s("2005-08")),
            ("2005", s("2005")),
            (" 1937 ", s("1937")),
            ("2005-02-30", s("2005-02")),
            ("2005-13-01", s("2005")),
            ("August 2, 2005", s("2005-08-02")),
            ("2 August 2005", s("2005-08-02")),
            ("Aug. 2005", s("2005-08")),
            ("Sept 1999", s("1999-09")),
            ("March 1987", s("1987-03")),
            ("February 30, 2001", s("2001-02")),
            ("c1965", s("1965")),
            ("[1965?]", s("1965")),
            ("1965 printing", s("1965")),
            ("1965-1970", None),
            ("n.d.", None),
            ("", None),
            ("0000", None),
        ];
        for (raw, want) in table {
            assert_eq!(clean_published_date(raw), want, "{raw}");
        }
    }

    #[test]
    fn provider_names_match_serde() {
        for p in [Provider::GoogleBooks, Provider::OpenLibrary] {
            assert_eq!(serde_json::to_value(p).unwrap(), json!(p.as_str()));
        }
    }
}
