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
//! skipped, not retried: the next provider is asked instead. A book ends as *not found* when
//! at least one provider answered and none matched, and as a *provider error* only when every
//! provider that was asked failed.

use super::failure::{classify_status, LookupFailure};
use super::matching::best_match;
use super::model::{BookOutcome, Candidate, EnrichedBook, Provider};
use super::open_library::{self, EditionCandidate, MAX_AUTHOR_LOOKUPS};
use super::request::BookInput;
use super::{google_books, matching};

/// Where the providers live (configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bases {
    pub google_books: String,
    pub google_books_key: Option<String>,
    pub open_library: String,
}

/// What a request produced: an HTTP status with its body, or no answer at all.
pub type Answer = Result<(u16, String), String>;

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
        let (status, body) = match answer {
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
                .then(|| open_library::parse_author(&body))
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
            Err(e) => self.fail(e.to_string()),
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
        Ok((200, body.to_string()))
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
                ("http://gb", Ok((500, "{}".into()))),
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
                ("http://gb", Ok((503, String::new()))),
                ("http://ol", Err("timeout".into())),
            ],
        );
        assert!(!outcome.success);
        let error = outcome.error.unwrap();
        let (mut lookup, _) = Lookup::start(BookInput::new("Anything", None, None), bases());
        lookup.answer(Ok((403, String::new())));
        lookup.answer(Ok((400, String::new())));
        assert_eq!(
            lookup.verdict(),
            Some(Verdict::ProviderError { transient: false }),
            "rejections are not worth retrying"
        );
        let (mut lookup, _) = Lookup::start(BookInput::new("Anything", None, None), bases());
        lookup.answer(Ok((403, String::new())));
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
                ("http://gb", Ok((503, String::new()))),
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
                ("http://ol/isbn/", Ok((404, "{}".into()))),
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
}
