//! One book's lookup as a state machine: which request to make next, and what the answers mean.
//!
//! The glue only performs the requests this plan asks for and feeds the answers back, so the
//! provider order and the fallback rules are tested natively:
//!
//! - a book with a valid ISBN: Google Books by ISBN, then Open Library's edition for that
//!   ISBN (with up to three author names), then the title searches below;
//! - then (or for a book without one): Google Books by title and author, then Open Library's
//!   search.
//!
//! The first match wins. A provider that fails (5xx, timeout, a body it cannot read) is
//! skipped, not retried: the next provider is asked instead. Without a match, a book ends as
//! a *parse error* when some provider's 2xx body could not be read (its answer may have held
//! the book, so "not found" would be a claim nobody checked); else as *not found* when at
//! least one provider answered; and as a *provider error* only when every provider asked
//! failed. Bodies arrive as bytes and are decoded here ([`decode_body`]), and only for a 2xx
//! status: an HTTP status is never lost to a body that does not decode.

use super::failure::{classify_status, LookupFailure};
use super::matching::best_match;
use super::model::{BookOutcome, Candidate, EnrichedBook, Provider};
use super::open_library::{self, EditionCandidate, MAX_AUTHOR_LOOKUPS};
use super::request::BookInput;
use super::{google_books, matching};
use crate::pipelines::provider_body::decode_body;

/// Where the providers live (configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bases {
    pub google_books: String,
    pub google_books_key: Option<String>,
    pub open_library: String,
}

/// What a request produced: an HTTP status with its raw body bytes, or no answer at all.
pub type Answer = Result<(u16, Vec<u8>), String>;

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// GET this URL of this provider and pass the answer to [`Lookup::answer`].
    Fetch(Provider, String),
    Done(Box<BookOutcome>),
}

/// How a finished lookup ended, for the batch's counts and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Found,
    /// Some provider answered and none had a match.
    NotFound,
    /// Every provider that was asked failed; `transient` when some failure may pass (5xx,
    /// 429, timeout), so the lookup is worth repeating later.
    ProviderError {
        transient: bool,
    },
    /// A provider answered with a body that could not be read (`errorKind: parse_error`):
    /// never taken for "not found".
    Unreadable,
}

#[derive(Debug, Clone, PartialEq)]
enum Stage {
    GoogleByIsbn,
    OpenLibraryEdition,
    OpenLibraryAuthor {
        edition: Box<EditionCandidate>,
        names: Vec<String>,
    },
    GoogleByTitle,
    OpenLibrarySearch,
}

#[derive(Debug, Clone)]
pub struct Lookup {
    input: BookInput,
    bases: Bases,
    isbn13: Option<String>,
    stage: Stage,
    /// A provider answered (even with nothing): the book is then "not found", not an error.
    answered: bool,
    failures: Vec<String>,
    /// Providers whose 2xx body could not be read, and why (no response text).
    unreadable: Vec<String>,
    /// Some provider failed in a way that may pass (5xx, 429, timeout, no answer).
    transient: bool,
    verdict: Option<Verdict>,
}

impl Lookup {
    pub fn start(input: BookInput, bases: Bases) -> (Lookup, Step) {
        let isbn13 = input.valid_isbn13();
        let stage = if isbn13.is_some() {
            Stage::GoogleByIsbn
        } else {
            Stage::GoogleByTitle
        };
        let mut lookup = Lookup {
            input,
            bases,
            isbn13,
            stage,
            answered: false,
            failures: Vec::new(),
            unreadable: Vec::new(),
            transient: false,
            verdict: None,
        };
        let step = lookup.request();
        (lookup, step)
    }

    /// How the lookup ended, once it returned [`Step::Done`].
    pub fn verdict(&self) -> Option<Verdict> {
        self.verdict
    }

    /// Whether some provider failed in a way that may pass (5xx, 429, timeout).
    pub fn failed_transiently(&self) -> bool {
        self.transient
    }

    fn request(&mut self) -> Step {
        let b = &self.bases;
        let provider = match self.stage {
            Stage::GoogleByIsbn | Stage::GoogleByTitle => Provider::GoogleBooks,
            _ => Provider::OpenLibrary,
        };
        let url = match &self.stage {
            Stage::GoogleByIsbn => {
                google_books::query_url(&b.google_books, &self.input, b.google_books_key.as_deref())
            }
            Stage::OpenLibraryEdition => {
                open_library::isbn_url(&b.open_library, self.isbn13.as_deref().unwrap_or_default())
            }
            Stage::OpenLibraryAuthor { edition, names } => {
                open_library::author_url(&b.open_library, &edition.author_keys[names.len()])
            }
            Stage::GoogleByTitle => google_books::title_query_url(
                &b.google_books,
                &matching::search_title(&self.input.title),
                self.input.author.as_deref(),
                b.google_books_key.as_deref(),
            ),
            Stage::OpenLibrarySearch => open_library::search_url(
                &b.open_library,
                &matching::search_title(&self.input.title),
                self.input.author.as_deref(),
            ),
        };
        Step::Fetch(provider, url)
    }

    /// Moves on to the stage after the current one, or ends the lookup.
    fn next_stage(&mut self) -> Step {
        self.stage = match self.stage {
            Stage::GoogleByIsbn => Stage::OpenLibraryEdition,
            Stage::OpenLibraryEdition | Stage::OpenLibraryAuthor { .. } => Stage::GoogleByTitle,
            Stage::GoogleByTitle => Stage::OpenLibrarySearch,
            Stage::OpenLibrarySearch => return Step::Done(Box::new(self.unmatched())),
        };
        self.request()
    }

    fn unmatched(&mut self) -> BookOutcome {
        if !self.unreadable.is_empty() {
            self.verdict = Some(Verdict::Unreadable);
            return BookOutcome::parse_error(
                self.input.clone(),
                format!(
                    "a provider's answer could not be read: {}",
                    self.unreadable.join("; ")
                ),
            );
        }
        if self.answered || self.failures.is_empty() {
            self.verdict = Some(Verdict::NotFound);
            BookOutcome::not_found(self.input.clone())
        } else {
            self.verdict = Some(Verdict::ProviderError {
                transient: self.transient,
            });
            BookOutcome::provider_error(
                self.input.clone(),
                format!("every provider failed: {}", self.failures.join("; ")),
            )
        }
    }

    fn found(&mut self, candidate: &Candidate, provider: Provider) -> Step {
        self.verdict = Some(Verdict::Found);
        Step::Done(Box::new(BookOutcome::found(
            self.input.clone(),
            EnrichedBook::from_match(&self.input, candidate, provider),
        )))
    }

    fn provider_name(&self) -> &'static str {
        match self.stage {
            Stage::GoogleByIsbn | Stage::GoogleByTitle => "Google Books",
            _ => "Open Library",
        }
    }

    fn fail(&mut self, why: String) -> Step {
        let name = self.provider_name();
        self.failures.push(format!("{name}: {why}"));
        self.next_stage()
    }

    /// Feeds the answer to the last [`Step::Fetch`] and returns what to do next.
    pub fn answer(&mut self, answer: Answer) -> Step {
        let (status, bytes) = match answer {
            Err(network) => {
                if matches!(self.stage, Stage::OpenLibraryAuthor { .. }) {
                    return self.author_done(None);
                }
                self.transient = true;
                return self.fail(network);
            }
            Ok(pair) => pair,
        };
        if matches!(self.stage, Stage::OpenLibraryAuthor { .. }) {
            let name = (status == 200)
                .then(|| open_library::parse_author(&decode_body(&bytes)))
                .flatten();
            return self.author_done(name);
        }
        if !(200..300).contains(&status) {
            return match classify_status(status) {
                LookupFailure::NotFound => {
                    self.answered = true;
                    self.next_stage()
                }
                failure => {
                    self.transient |= failure.is_retryable();
                    self.fail(format!("HTTP {status}"))
                }
            };
        }
        let provider = match self.stage {
            Stage::GoogleByIsbn | Stage::GoogleByTitle => Provider::GoogleBooks,
            _ => Provider::OpenLibrary,
        };
        let body = decode_body(&bytes);
        let parsed = match self.stage {
            Stage::GoogleByIsbn | Stage::GoogleByTitle => google_books::parse(&body),
            Stage::OpenLibrarySearch => open_library::parse_search(&body),
            Stage::OpenLibraryEdition => match open_library::parse_edition(&body) {
                Ok(edition) => {
                    self.answered = true;
                    return self.with_edition(edition);
                }
                Err(e) => Err(e),
            },
            // Author answers never get here (handled above); treat one like a failed lookup.
            Stage::OpenLibraryAuthor { .. } => return self.author_done(None),
        };
        match parsed {
            Err(e) if e.is_unreadable() => {
                let name = self.provider_name();
                self.unreadable
                    .push(format!("{name} answered HTTP {status} but {}", e.summary()));
                self.fail(e.summary().to_string())
            }
            Err(e) => self.fail(e.summary().to_string()),
            Ok(candidates) => {
                self.answered = true;
                match best_match(&self.input, &candidates) {
                    Some(c) => self.found(c, provider),
                    None => self.next_stage(),
                }
            }
        }
    }

    fn with_edition(&mut self, edition: EditionCandidate) -> Step {
        if edition.author_keys.is_empty() {
            return self.finish_edition(edition, Vec::new());
        }
        self.stage = Stage::OpenLibraryAuthor {
            edition: Box::new(edition),
            names: Vec::new(),
        };
        self.request()
    }

    /// One author name arrived (or could not be had, which only costs the name).
    fn author_done(&mut self, name: Option<String>) -> Step {
        let Stage::OpenLibraryAuthor { edition, mut names } =
            std::mem::replace(&mut self.stage, Stage::OpenLibraryEdition)
        else {
            return self.next_stage();
        };
        names.push(name.unwrap_or_default());
        if names.len() < edition.author_keys.len().min(MAX_AUTHOR_LOOKUPS) {
            self.stage = Stage::OpenLibraryAuthor { edition, names };
            return self.request();
        }
        self.finish_edition(*edition, names)
    }

    fn finish_edition(&mut self, edition: EditionCandidate, names: Vec<String>) -> Step {
        self.stage = Stage::OpenLibraryEdition;
        let candidate = edition.with_authors(names);
        match best_match(&self.input, std::slice::from_ref(&candidate)) {
            Some(c) => self.found(c, Provider::OpenLibrary),
            None => self.next_stage(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bases() -> Bases {
        Bases {
            google_books: "http://gb".into(),
            google_books_key: None,
            open_library: "http://ol".into(),
        }
    }

    /// Runs a lookup against canned answers chosen by URL prefix; returns the outcome and
    /// the URLs requested.
    fn run(input: BookInput, answers: &[(&str, Answer)]) -> (BookOutcome, Vec<String>) {
        let (mut lookup, mut step) = Lookup::start(input, bases());
        let mut urls = Vec::new();
        loop {
            match step {
                Step::Done(outcome) => {
                    let verdict = lookup.verdict().expect("a finished lookup has a verdict");
                    assert_eq!(verdict == Verdict::Found, outcome.success, "{verdict:?}");
                    return (*outcome, urls);
                }
                Step::Fetch(_, url) => {
                    let answer = answers
                        .iter()
                        .find(|(prefix, _)| url.starts_with(prefix))
                        .map(|(_, a)| a.clone())
                        .unwrap_or_else(|| panic!("unexpected request {url}"));
                    urls.push(url);
                    step = lookup.answer(answer);
                    assert!(urls.len() < 20, "runaway lookup");
                }
            }
        }
    }

    fn ok(body: &str) -> Answer {
        Ok((200, body.as_bytes().to_vec()))
    }

    #[test]
    fn google_books_isbn_match_ends_the_lookup() {
        let input = BookInput::new("Dune", Some("Frank Herbert"), Some("9780441013593"));
        let (outcome, urls) = run(
            input,
            &[(
                "http://gb/volumes?q=isbn",
                ok(fixture!("books", "gb_full.json")),
            )],
        );
        assert!(outcome.success, "{outcome:?}");
        assert_eq!(outcome.enriched.unwrap().provider, Provider::GoogleBooks);
        assert_eq!(urls.len(), 1);
    }

    #[test]
    fn a_google_outage_falls_back_to_open_library_by_isbn_with_authors() {
        let input = BookInput::new("Dune", Some("Frank Herbert"), Some("9780441013593"));
        let (outcome, urls) = run(
            input,
            &[
                ("http://gb", Ok((500, b"{}".to_vec()))),
                ("http://ol/isbn/", ok(fixture!("books", "ol_edition.json"))),
                (
                    "http://ol/authors/",
                    ok(fixture!("books", "ol_author.json")),
                ),
            ],
        );
        assert!(outcome.success, "{outcome:?}");
        let enriched = outcome.enriched.unwrap();
        assert_eq!(enriched.provider, Provider::OpenLibrary);
        assert!(!enriched.authors.is_empty());
        assert!(
            urls[1].starts_with("http://ol/isbn/9780441013593"),
            "{urls:?}"
        );
    }

    #[test]
    fn title_books_try_google_then_open_library_search() {
        let input = BookInput::new("The Hobbit", Some("J.R.R. Tolkien"), None);
        let (outcome, urls) = run(
            input,
            &[
                (
                    "http://gb/volumes?q=intitle",
                    ok(fixture!("books", "gb_near_miss.json")),
                ),
                (
                    "http://ol/search.json",
                    ok(fixture!("books", "ol_search_empty.json")),
                ),
            ],
        );
        assert!(!outcome.success);
        assert_eq!(
            outcome.error.as_deref(),
            Some(crate::pipelines::enrich::model::NOT_FOUND_MESSAGE),
            "near misses are not matches"
        );
        assert_eq!(urls.len(), 2);
    }

    #[test]
    fn every_provider_failing_is_a_provider_error_and_one_answer_is_not_found() {
        let input = BookInput::new("Anything", None, None);
        let (outcome, _) = run(
            input.clone(),
            &[
                ("http://gb", Ok((503, Vec::new()))),
                ("http://ol", Err("timeout".into())),
            ],
        );
        assert!(!outcome.success);
        let error = outcome.error.unwrap();
        let (mut lookup, _) = Lookup::start(BookInput::new("Anything", None, None), bases());
        lookup.answer(Ok((403, Vec::new())));
        lookup.answer(Ok((400, Vec::new())));
        assert_eq!(
            lookup.verdict(),
            Some(Verdict::ProviderError { transient: false }),
            "rejections are not worth retrying"
        );
        let (mut lookup, _) = Lookup::start(BookInput::new("Anything", None, None), bases());
        lookup.answer(Ok((403, Vec::new())));
        lookup.answer(Err("timeout".into()));
        assert_eq!(
            lookup.verdict(),
            Some(Verdict::ProviderError { transient: true })
        );
        assert!(
            error.starts_with("every provider failed")
                && error.contains("HTTP 503")
                && error.contains("timeout"),
            "{error}"
        );

        let (outcome, _) = run(
            input,
            &[
                ("http://gb", Ok((503, Vec::new()))),
                ("http://ol", ok(fixture!("books", "ol_search_empty.json"))),
            ],
        );
        assert_eq!(
            outcome.error.as_deref(),
            Some(crate::pipelines::enrich::model::NOT_FOUND_MESSAGE)
        );
    }

    #[test]
    fn an_unknown_isbn_falls_back_to_title_searches() {
        let input = BookInput::new("Dune", Some("Frank Herbert"), Some("9780441013593"));
        let (outcome, urls) = run(
            input,
            &[
                (
                    "http://gb/volumes?q=isbn",
                    ok(fixture!("books", "gb_no_items.json")),
                ),
                ("http://ol/isbn/", Ok((404, b"{}".to_vec()))),
                (
                    "http://gb/volumes?q=intitle",
                    ok(fixture!("books", "gb_full.json")),
                ),
            ],
        );
        assert!(outcome.success, "{outcome:?}");
        assert_eq!(urls.len(), 3);
    }

    #[test]
    fn a_failed_author_lookup_costs_only_the_name() {
        let input = BookInput::new("Dune", Some("Frank Herbert"), Some("9780441013593"));
        let (outcome, _) = run(
            input,
            &[
                ("http://gb", ok(fixture!("books", "gb_no_items.json"))),
                ("http://ol/isbn/", ok(fixture!("books", "ol_edition.json"))),
                ("http://ol/authors/", Err("reset".into())),
            ],
        );
        let enriched = outcome.enriched.expect("the ISBN match stands");
        assert_eq!(enriched.provider, Provider::OpenLibrary);
    }

    fn status(code: u16, body: &[u8]) -> Answer {
        Ok((code, body.to_vec()))
    }

    #[test]
    fn real_provider_bodies_are_read_whatever_their_encoding() {
        use super::super::model::ErrorKind;
        let bom = fixture_bytes!("books", "gb_bom.json");
        let utf16_429 = fixture_bytes!("books", "gb_error_429_utf16.json");
        let dune = || BookInput::new("Dune", Some("Frank Herbert"), Some("9780441013593"));
        let title_only = || BookInput::new("Dune", Some("Frank Herbert"), None);
        let empty = ok(fixture!("books", "ol_search_empty.json"));
        // (name, input, answers, success, error kind, transient)
        type Case = (
            &'static str,
            BookInput,
            Vec<(&'static str, Answer)>,
            bool,
            Option<ErrorKind>,
            bool,
        );
        let cases: Vec<Case> = vec![
            (
                "a Google Books body with a UTF-8 BOM",
                dune(),
                vec![("http://gb", status(200, bom))],
                true,
                None,
                false,
            ),
            (
                "a 429 saved as UTF-16 keeps its status: transient, then Open Library",
                title_only(),
                vec![
                    ("http://gb", status(429, utf16_429)),
                    ("http://ol", empty.clone()),
                ],
                false,
                Some(ErrorKind::NotFound),
                true,
            ),
            (
                "every provider failing with a UTF-16 429",
                title_only(),
                vec![
                    ("http://gb", status(429, utf16_429)),
                    ("http://ol", status(429, utf16_429)),
                ],
                false,
                Some(ErrorKind::ProviderError),
                true,
            ),
            (
                "an unreadable answer is never \"not found\"",
                title_only(),
                vec![
                    ("http://gb", status(200, b"<html>oops</html>")),
                    ("http://ol", empty.clone()),
                ],
                false,
                Some(ErrorKind::ParseError),
                false,
            ),
            (
                "an unreadable answer, then a match elsewhere",
                title_only(),
                vec![
                    ("http://gb", status(200, b"{\"items\": 7}")),
                    (
                        "http://ol",
                        ok(fixture!("books", "ol_search_dune_duplicates.json")),
                    ),
                ],
                true,
                None,
                false,
            ),
            (
                "an error object with a 200 is a provider failure",
                title_only(),
                vec![
                    (
                        "http://gb",
                        status(200, br#"{"error":{"message":"Quota exceeded"}}"#),
                    ),
                    ("http://ol", status(503, b"")),
                ],
                false,
                Some(ErrorKind::ProviderError),
                true,
            ),
        ];
        for (name, input, answers, success, kind, transient) in cases {
            let (mut lookup, mut step) = Lookup::start(input, bases());
            let outcome = loop {
                match step {
                    Step::Done(outcome) => break *outcome,
                    Step::Fetch(_, url) => {
                        let answer = answers
                            .iter()
                            .find(|(prefix, _)| url.starts_with(prefix))
                            .map(|(_, a)| a.clone())
                            .unwrap_or_else(|| ok(r#"{"numFound":0,"docs":[]}"#));
                        step = lookup.answer(answer);
                    }
                }
            };
            assert_eq!(outcome.success, success, "{name}: {outcome:?}");
            assert_eq!(outcome.error_kind, kind, "{name}: {outcome:?}");
            assert_eq!(lookup.failed_transiently(), transient, "{name}");
            // Messages name the provider and the status, never the provider's own text.
            let error = outcome.error.unwrap_or_default();
            assert!(!error.contains("Quota exceeded"), "{name}: {error}");
            if kind == Some(ErrorKind::ParseError) {
                assert!(
                    error.contains("Google Books answered HTTP 200"),
                    "{name}: {error}"
                );
            }
        }
    }
}
