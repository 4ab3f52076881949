//! The per-pipeline progress a job persists beside its core, so processing resumes after eviction.

use crate::pipelines::csv::{Cursor, Header, ImportTotals};
use crate::pipelines::enrich::model::ErrorKind;
use crate::pipelines::enrich::BookOutcome;
use crate::pipelines::scan::image::ImageKind;
use crate::pipelines::scan::results::{PhotoRecord, PhotoStatus};
use crate::pipelines::synthetic::SyntheticSpec;
use serde::{Deserialize, Serialize};

/// What a job is working through and how far it got. Stored under its own key and written
/// in the same operation as the job's core at every checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Work {
    /// Test and benchmark jobs; their cursor is the state's processed count.
    Synthetic(SyntheticSpec),
    Scan(ScanWork),
    Enrich(EnrichWork),
    Csv(CsvWork),
}

/// A CSV import: the header read at upload, and how far the parser got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CsvWork {
    pub header: Header,
    /// Where the next slice starts; always a record boundary.
    pub cursor: Cursor,
    pub totals: ImportTotals,
    /// The upload's size, which names its storage slices.
    pub bytes: usize,
    /// How many result slices are stored; the next one gets this number.
    pub result_slices: u32,
}

/// A shelf scan: one entry per photo, in the order the client sent them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanWork {
    pub photos: Vec<ScanPhoto>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScanPhoto {
    pub record: PhotoRecord,
    pub kind: ImageKind,
    pub bytes: usize,
    /// Whether the failure of a failed photo might not recur (it ran out of retries on
    /// timeouts or 5xx), which decides `retryable` when every photo failed.
    #[serde(default)]
    pub retryable: bool,
}

impl ScanPhoto {
    pub fn new(index: u32, kind: ImageKind, bytes: usize) -> Self {
        Self {
            record: PhotoRecord::queued(index),
            kind,
            bytes,
            retryable: false,
        }
    }

    /// Where the photo's bytes are stored.
    pub fn slice_prefix(position: usize) -> String {
        format!("img:{position}:")
    }
}

impl ScanWork {
    /// The photo to work on next: one left mid-call by an eviction, else the first queued.
    pub fn next_photo(&self) -> Option<usize> {
        self.photos
            .iter()
            .position(|p| !p.record.status.is_terminal())
    }

    pub fn finished(&self) -> usize {
        self.photos
            .iter()
            .filter(|p| p.record.status.is_terminal())
            .count()
    }

    pub fn failed(&self) -> usize {
        self.photos
            .iter()
            .filter(|p| p.record.status == PhotoStatus::Failed)
            .count()
    }
}

/// A batch enrichment: which books have their outcome stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrichWork {
    pub books: usize,
    pub done: Vec<bool>,
    pub found: usize,
    pub not_found: usize,
    /// Books that ended as a provider error or a parse error (contract: `providerErrors`).
    pub provider_errors: usize,
    /// Provider errors where some provider failed transiently (5xx, 429, timeout).
    #[serde(default)]
    pub retryable_errors: usize,
    /// The part of `provider_errors` that were unreadable answers (`errorKind: parse_error`).
    #[serde(default)]
    pub parse_errors: usize,
}

impl EnrichWork {
    pub fn new(books: usize) -> Self {
        Self {
            books,
            done: vec![false; books],
            found: 0,
            not_found: 0,
            provider_errors: 0,
            retryable_errors: 0,
            parse_errors: 0,
        }
    }

    /// Records book `index`'s outcome, counted by its error kind (never by its message), and
    /// returns how many books are finished. `transient` says some provider failed in a way
    /// that may pass. A book already recorded is not counted again.
    pub fn record(&mut self, index: usize, outcome: &BookOutcome, transient: bool) -> usize {
        match self.done.get_mut(index) {
            Some(done) if !*done => *done = true,
            _ => return self.finished(),
        }
        match outcome.kind() {
            None => self.found += 1,
            Some(ErrorKind::NotFound) => self.not_found += 1,
            Some(kind) => {
                self.provider_errors += 1;
                self.parse_errors += usize::from(kind == ErrorKind::ParseError);
                self.retryable_errors += usize::from(transient);
            }
        }
        self.finished()
    }

    pub fn finished(&self) -> usize {
        self.done.iter().filter(|d| **d).count()
    }

    /// The next books to look up, at most `chunk`, in input order.
    pub fn next_chunk(&self, chunk: usize) -> Vec<usize> {
        self.done
            .iter()
            .enumerate()
            .filter(|(_, d)| !**d)
            .map(|(i, _)| i)
            .take(chunk)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrichment_chunks_skip_finished_books() {
        let mut work = EnrichWork::new(25);
        assert_eq!(work.next_chunk(10), (0..10).collect::<Vec<_>>());
        for i in [0, 1, 2, 5, 9] {
            work.done[i] = true;
        }
        assert_eq!(work.next_chunk(10), vec![3, 4, 6, 7, 8, 10, 11, 12, 13, 14]);
        assert_eq!(work.finished(), 5);
        work.done.iter_mut().for_each(|d| *d = true);
        assert!(work.next_chunk(10).is_empty());
    }

    #[test]
    fn enrichment_outcomes_are_counted_by_kind() {
        use crate::pipelines::enrich::BookInput;
        let input = || BookInput::new("Dune", None, None);
        let mut legacy_not_found = BookOutcome::not_found(input());
        legacy_not_found.error_kind = None;
        let mut legacy_failure = BookOutcome::provider_error(input(), "timeout");
        legacy_failure.error_kind = None;
        // (outcome, transient, found, not found, provider errors, parse errors, retryable)
        let cases = [
            (BookOutcome::not_found(input()), false, (0, 1, 0, 0, 0)),
            (
                BookOutcome::provider_error(input(), "x"),
                true,
                (0, 0, 1, 0, 1),
            ),
            (
                BookOutcome::parse_error(input(), "x"),
                false,
                (0, 0, 1, 1, 0),
            ),
            // The kind decides, not the text: a parse error worded like "not found" is one.
            (
                BookOutcome::parse_error(
                    input(),
                    crate::pipelines::enrich::model::NOT_FOUND_MESSAGE,
                ),
                false,
                (0, 0, 1, 1, 0),
            ),
            (legacy_not_found, false, (0, 1, 0, 0, 0)),
            (legacy_failure, false, (0, 0, 1, 0, 0)),
        ];
        for (outcome, transient, want) in cases {
            let mut work = EnrichWork::new(2);
            assert_eq!(work.record(1, &outcome, transient), 1);
            // Recording the same book again changes nothing.
            assert_eq!(work.record(1, &outcome, transient), 1);
            assert_eq!(work.record(7, &outcome, transient), 1);
            let got = (
                work.found,
                work.not_found,
                work.provider_errors,
                work.parse_errors,
                work.retryable_errors,
            );
            assert_eq!(got, want, "{outcome:?}");
        }
    }

    #[test]
    fn scans_resume_at_the_first_unfinished_photo() {
        let photo = |status| ScanPhoto {
            record: PhotoRecord {
                status,
                ..PhotoRecord::queued(0)
            },
            ..ScanPhoto::new(0, ImageKind::Jpeg, 1)
        };
        let work = ScanWork {
            photos: vec![
                photo(PhotoStatus::Done),
                photo(PhotoStatus::Processing),
                photo(PhotoStatus::Queued),
            ],
        };
        assert_eq!(work.next_photo(), Some(1));
        assert_eq!((work.finished(), work.failed()), (1, 0));
    }
}
