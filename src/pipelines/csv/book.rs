//! The import's output records (books, row errors and warnings), its totals and its deduper.

use super::cells::{push_dedupe_text, split_series};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One imported book, in the contract's results shape plus the series extension fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
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

impl Book {
    /// Appends the book's JSON, byte for byte what serde_json writes for it (the same fields
    /// in the same order, the same escapes), for the results an import stores. Through serde,
    /// a profiled 50,000-row import spent 67 ms of its checkpoints' 155 ms serialising books,
    /// 21 ms of it escaping the constant keys; here the keys are literals and each book goes
    /// straight into its array. Returns false if a value could not be written.
    pub fn write_json(&self, out: &mut Vec<u8>) -> bool {
        let text = |out: &mut Vec<u8>, key: &[u8], value: &str| {
            out.extend_from_slice(key);
            serde_json::to_writer(&mut *out, value).is_ok()
        };
        let optional = |out: &mut Vec<u8>, key: &[u8], value: &Option<String>| {
            value.as_deref().is_none_or(|value| text(out, key, value))
        };
        let rating = |out: &mut Vec<u8>| {
            self.rating.is_none_or(|rating| {
                out.extend_from_slice(b",\"rating\":");
                serde_json::to_writer(&mut *out, &rating).is_ok()
            })
        };
        text(out, b"{\"title\":", &self.title)
            && text(out, b",\"author\":", &self.author)
            && optional(out, b",\"isbn\":", &self.isbn)
            && optional(out, b",\"isbn10\":", &self.isbn10)
            && optional(out, b",\"identifier\":", &self.identifier)
            && optional(out, b",\"shelf\":", &self.shelf)
            && rating(out)
            && optional(out, b",\"dateRead\":", &self.date_read)
            && optional(out, b",\"series\":", &self.series)
            && optional(out, b",\"seriesNumber\":", &self.series_number)
            && {
                out.push(b'}');
                true
            }
    }
}

/// The most bytes of text a book's field, an error's title or message, or a warning keeps
/// (contract 9.2's "1 KiB of a bad record"): longer text is cut at a character boundary, so
/// one hostile row cannot make a stored value or a results page large.
pub const MAX_FIELD_BYTES: usize = 1024;

/// A row that could not become a book. It never fails the import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RowError {
    /// The 1-based physical line where the record starts; the header is line 1.
    pub line: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub error: String,
    /// The title or the message was cut to [`MAX_FIELD_BYTES`]. Sent only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("const" = true)))]
    pub truncated: bool,
}

impl RowError {
    /// The error for the record at `line`, its title and message cut to [`MAX_FIELD_BYTES`].
    pub fn new(line: u64, title: Option<String>, error: String) -> Self {
        let mut row_error = Self {
            line,
            title,
            error,
            truncated: false,
        };
        let title_cut = row_error
            .title
            .as_mut()
            .is_some_and(|title| crate::text::cut_in_place(title, MAX_FIELD_BYTES));
        let error_cut = crate::text::cut_in_place(&mut row_error.error, MAX_FIELD_BYTES);
        row_error.truncated = title_cut || error_cut;
        row_error
    }
}

/// Something worth telling the user about a row that was still imported: a value repaired or
/// dropped while the book was kept (contract 9.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub struct RowWarning {
    pub line: u64,
    /// The results field it is about (`isbn`, `rating`, `dateRead`), or `record` for the
    /// whole row. Warnings stored before the field existed read as `record`.
    #[serde(default = "record_field")]
    pub field: String,
    pub warning: String,
}

fn record_field() -> String {
    "record".to_string()
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
    /// Warnings about kept rows, all of them (not every one is kept in the results).
    #[serde(default)]
    pub warnings: u64,
}

/// The contract's results document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportResults {
    pub books: Vec<Book>,
    pub errors: Vec<RowError>,
    pub success_rate: String,
}

/// A kept book: its position among all the books of the import (0-based, file order). It is
/// what a [`BookPatch`] names, so the glue may store books in slices of any size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BookRef(pub u64);

/// A field a later duplicate may fill in its first occurrence (contract 9.1). `Isbn` brings
/// the duplicate's `isbn10` with it: an ISBN-10 of another edition beside the ISBN-13 would
/// describe two books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeField {
    Isbn,
    Rating,
    DateRead,
    Shelf,
}

impl MergeField {
    const ALL: [MergeField; 4] = [Self::Isbn, Self::Rating, Self::DateRead, Self::Shelf];

    fn bit(self) -> u8 {
        match self {
            Self::Isbn => 1,
            Self::Rating => 2,
            Self::DateRead => 4,
            Self::Shelf => 8,
        }
    }

    fn present(self, book: &Book) -> bool {
        match self {
            Self::Isbn => book.isbn.is_some(),
            Self::Rating => book.rating.is_some(),
            Self::DateRead => book.date_read.is_some(),
            Self::Shelf => book.shelf.is_some(),
        }
    }

    /// The bits of the fields `book` lacks.
    fn lacking(book: &Book) -> u8 {
        Self::ALL
            .iter()
            .filter(|field| !field.present(book))
            .fold(0, |bits, field| bits | field.bit())
    }
}

/// What [`Deduper::admit`] decided about a book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// A new book, kept at this position.
    New(BookRef),
    /// A duplicate of the kept book `merged_into`, which takes the `filled` fields from it
    /// (none when it lacked nothing the duplicate had).
    Duplicate {
        merged_into: BookRef,
        filled: Vec<MergeField>,
    },
}

/// The values a duplicate gives the kept book it merged into. Applying is idempotent and
/// first-wins (a field already set is never changed), so patches can be stored and applied in
/// file order by whoever reads the results, and a patch applied twice changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookPatch {
    pub book: BookRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isbn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isbn10: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_read: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shelf: Option<String>,
}

impl BookPatch {
    /// The patch that carries `duplicate`'s values for `filled` into `merged_into`.
    pub fn new(merged_into: BookRef, filled: &[MergeField], duplicate: &Book) -> Self {
        let take = |field: MergeField| filled.contains(&field);
        Self {
            book: merged_into,
            isbn: duplicate.isbn.clone().filter(|_| take(MergeField::Isbn)),
            isbn10: duplicate.isbn10.clone().filter(|_| take(MergeField::Isbn)),
            rating: duplicate.rating.filter(|_| take(MergeField::Rating)),
            date_read: duplicate
                .date_read
                .clone()
                .filter(|_| take(MergeField::DateRead)),
            shelf: duplicate.shelf.clone().filter(|_| take(MergeField::Shelf)),
        }
    }

    /// Fills what `book` lacks. An ISBN comes with its ISBN-10 and replaces a non-ISBN
    /// `identifier`, as a row with a valid ISBN carries none (contract section 2).
    pub fn apply(&self, book: &mut Book) {
        if let (None, Some(isbn)) = (&book.isbn, &self.isbn) {
            book.isbn = Some(isbn.clone());
            book.isbn10.clone_from(&self.isbn10);
            book.identifier = None;
        }
        if book.rating.is_none() {
            book.rating = self.rating;
        }
        if book.date_read.is_none() {
            book.date_read.clone_from(&self.date_read);
        }
        if book.shelf.is_none() {
            book.shelf.clone_from(&self.shelf);
        }
    }
}

/// Applies, in order, the patches that name a book of `books`, whose first book is `first`
/// (a slice or a page of the results); the others are skipped.
pub fn apply_patches<'a>(
    books: &mut [Book],
    first: BookRef,
    patches: impl IntoIterator<Item = &'a BookPatch>,
) {
    for patch in patches {
        let index = patch
            .book
            .0
            .checked_sub(first.0)
            .and_then(|i| usize::try_from(i).ok());
        if let Some(book) = index.and_then(|i| books.get_mut(i)) {
            patch.apply(book);
        }
    }
}

/// The dedupe memory: each kept book's keys, position and the mergeable fields it still
/// lacks, so a duplicate is merged into its first occurrence wherever that is stored. Its
/// size is bounded by the kept books (a key or two and a byte each).
///
/// Not persisted: after an eviction the glue rebuilds it by calling [`Deduper::remember`] for
/// every stored book in file order, then [`Deduper::remember_patch`] for every stored patch.
#[derive(Debug, Default)]
pub struct Deduper {
    isbns: HashMap<String, u32>,
    titles_and_authors: HashMap<String, u32>,
    /// Per kept book, in order: the bits of the [`MergeField`]s it lacks.
    lacking: Vec<u8>,
}

impl Deduper {
    /// A deduper with room for `books` books, so that remembering them never rehashes its
    /// keys (a third of its work on a large import, as each rehash hashes every key again).
    pub fn with_capacity(books: usize) -> Self {
        Self {
            isbns: HashMap::with_capacity(books),
            titles_and_authors: HashMap::with_capacity(books),
            lacking: Vec::with_capacity(books),
        }
    }

    /// Records a book as kept, without checking it (rebuilding from stored books).
    pub fn remember(&mut self, book: &Book) {
        let position = self.next_position();
        let (isbn, title_and_author) = dedupe_keys(book);
        if let Some(isbn) = isbn {
            self.isbns.entry(isbn).or_insert(position);
        }
        self.titles_and_authors
            .entry(title_and_author)
            .or_insert(position);
        self.lacking.push(MergeField::lacking(book));
    }

    /// Records a stored patch (rebuilding), as [`Deduper::admit`] did when it made it.
    pub fn remember_patch(&mut self, patch: &BookPatch) {
        let Some(position) = u32::try_from(patch.book.0).ok() else {
            return;
        };
        let Some(lacking) = self.lacking.get_mut(position as usize) else {
            return;
        };
        let mut filled = 0;
        if let Some(isbn) = patch
            .isbn
            .as_ref()
            .filter(|_| *lacking & MergeField::Isbn.bit() != 0)
        {
            self.isbns.entry(isbn.clone()).or_insert(position);
            filled |= MergeField::Isbn.bit();
        }
        for (field, given) in [
            (MergeField::Rating, patch.rating.is_some()),
            (MergeField::DateRead, patch.date_read.is_some()),
            (MergeField::Shelf, patch.shelf.is_some()),
        ] {
            if given {
                filled |= field.bit();
            }
        }
        *lacking &= !filled;
    }

    /// Decides whether `book` is new or a duplicate (same ISBN-13, else same normalised title
    /// and author) and remembers the outcome. A duplicate by ISBN goes to the book with that
    /// ISBN even when another has its title: the ISBN names the edition. A duplicate's keys are
    /// not remembered, so only first occurrences define what is kept; an ISBN it fills in is,
    /// since it is now the kept book's.
    pub fn admit(&mut self, book: &Book) -> Admission {
        let (isbn, title_and_author) = dedupe_keys(book);
        let by_isbn = isbn.as_ref().and_then(|isbn| self.isbns.get(isbn));
        let found = by_isbn
            .or_else(|| self.titles_and_authors.get(&title_and_author))
            .copied();
        let Some(position) = found else {
            let position = self.next_position();
            if let Some(isbn) = isbn {
                self.isbns.insert(isbn, position);
            }
            self.titles_and_authors.insert(title_and_author, position);
            self.lacking.push(MergeField::lacking(book));
            return Admission::New(BookRef(u64::from(position)));
        };
        let lacking = self.lacking.get(position as usize).copied().unwrap_or(0);
        let filled: Vec<MergeField> = MergeField::ALL
            .into_iter()
            .filter(|field| lacking & field.bit() != 0 && field.present(book))
            .collect();
        if let Some(bits) = self.lacking.get_mut(position as usize) {
            *bits &= !filled.iter().fold(0, |bits, field| bits | field.bit());
        }
        if filled.contains(&MergeField::Isbn) {
            // Not taken by another book: a book holding it would have matched by ISBN.
            if let Some(isbn) = isbn {
                self.isbns.insert(isbn, position);
            }
        }
        Admission::Duplicate {
            merged_into: BookRef(u64::from(position)),
            filled,
        }
    }

    /// How many books it remembers.
    pub fn len(&self) -> usize {
        self.lacking.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lacking.is_empty()
    }

    /// The position the next kept book gets. A 10 MiB upload holds far fewer than 2^32 rows.
    fn next_position(&self) -> u32 {
        u32::try_from(self.lacking.len()).unwrap_or(u32::MAX)
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

    fn is_new(admission: &Admission) -> bool {
        matches!(admission, Admission::New(_))
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
            assert_eq!(deduper.admit(&hobbit), Admission::New(BookRef(0)));
            assert_eq!(is_new(&deduper.admit(candidate)), *admitted, "{name}");
        }
    }

    #[test]
    fn does_not_remember_rejected_duplicates() {
        let mut deduper = Deduper::default();
        assert!(is_new(&deduper.admit(&book(
            "A",
            "X",
            Some("9780441013593")
        ))));
        // A duplicate by ISBN brings a new title; that title must not block a later book.
        assert!(!is_new(&deduper.admit(&book(
            "B",
            "Y",
            Some("9780441013593")
        ))));
        assert_eq!(
            deduper.admit(&book("B", "Y", None)),
            Admission::New(BookRef(1))
        );
        assert_eq!(deduper.len(), 2);
    }

    /// A book with a shelf, rating and date read.
    fn read(title: &str, isbn: Option<&str>, rating: Option<f64>, date: Option<&str>) -> Book {
        let mut b = book(title, "Author", isbn);
        b.isbn10 = isbn.and_then(crate::isbn::isbn13_to_10);
        b.rating = rating;
        b.date_read = date.map(Into::into);
        b.shelf = Some("read".into());
        b
    }

    #[test]
    fn merges_duplicates_into_their_first_occurrence() {
        use MergeField::*;
        let ebook = |title: &str| {
            let mut b = book(title, "Author", None);
            b.identifier = Some("B00KINDLE1".into());
            b
        };
        // (name, books in file order, admissions, the first book once patched)
        type Case = (&'static str, Vec<Book>, Vec<Admission>, Book);
        let dup = |to: u64, filled: Vec<MergeField>| Admission::Duplicate {
            merged_into: BookRef(to),
            filled,
        };
        let cases: Vec<Case> = vec![
            (
                "the print edition lends the e-book its ISBN",
                vec![
                    ebook("Dune"),
                    read("Dune", Some("9780441013593"), None, None),
                ],
                vec![Admission::New(BookRef(0)), dup(0, vec![Isbn, Shelf])],
                {
                    let mut b = read("Dune", Some("9780441013593"), None, None);
                    b.identifier = None;
                    b
                },
            ),
            (
                "first non-empty value wins",
                vec![
                    book("Dune", "Author", None),
                    read("DUNE", None, Some(3.0), None),
                    read("dune", Some("9780441013593"), Some(5.0), Some("2023-01-02")),
                ],
                vec![
                    Admission::New(BookRef(0)),
                    dup(0, vec![Rating, Shelf]),
                    dup(0, vec![Isbn, DateRead]),
                ],
                read("Dune", Some("9780441013593"), Some(3.0), Some("2023-01-02")),
            ),
            (
                "nothing to fill",
                vec![
                    read("Dune", Some("9780441013593"), Some(4.0), Some("2020-01-01")),
                    read("Dune", Some("9780441013593"), Some(1.0), Some("2021-01-01")),
                ],
                vec![Admission::New(BookRef(0)), dup(0, vec![])],
                read("Dune", Some("9780441013593"), Some(4.0), Some("2020-01-01")),
            ),
            (
                "a filled-in ISBN then matches by ISBN",
                vec![
                    book("Dune", "Author", None),
                    read("Dune", Some("9780441013593"), None, None),
                    read("Dune (Reissue)", Some("9780441013593"), Some(2.0), None),
                ],
                vec![
                    Admission::New(BookRef(0)),
                    dup(0, vec![Isbn, Shelf]),
                    dup(0, vec![Rating]),
                ],
                read("Dune", Some("9780441013593"), Some(2.0), None),
            ),
        ];
        for (name, books, admissions, want) in cases {
            let mut deduper = Deduper::default();
            let mut kept: Vec<Book> = Vec::new();
            let mut patches = Vec::new();
            for (b, expected) in books.iter().zip(&admissions) {
                let admission = deduper.admit(b);
                assert_eq!(&admission, expected, "{name}: {}", b.title);
                match admission {
                    Admission::New(_) => kept.push(b.clone()),
                    Admission::Duplicate {
                        merged_into,
                        filled,
                    } => patches.push(BookPatch::new(merged_into, &filled, b)),
                }
            }
            apply_patches(&mut kept, BookRef(0), &patches);
            assert_eq!(kept[0], want, "{name}");
            // Applying again changes nothing.
            apply_patches(&mut kept, BookRef(0), &patches);
            assert_eq!(kept[0], want, "{name}: idempotent");
        }
    }

    #[test]
    fn an_isbn_match_beats_a_title_match() {
        let mut deduper = Deduper::default();
        deduper.admit(&book("Dune", "Author", None));
        deduper.admit(&read("Other", Some("9780441013593"), None, None));
        assert_eq!(
            deduper.admit(&read("Dune", Some("9780441013593"), Some(5.0), None)),
            Admission::Duplicate {
                merged_into: BookRef(1),
                filled: vec![MergeField::Rating],
            }
        );
    }

    /// Runs `books` through a deduper that restarts after `restart_after` admissions, rebuilt
    /// from the kept books and patches "stored" so far, as the glue does after an eviction.
    fn admit_with_restart(books: &[Book], restart_after: usize) -> (Vec<Admission>, Vec<Book>) {
        let mut deduper = Deduper::default();
        let (mut kept, mut patches, mut admissions) = (Vec::new(), Vec::new(), Vec::new());
        for (i, b) in books.iter().enumerate() {
            if i == restart_after {
                deduper = Deduper::default();
                kept.iter().for_each(|b| deduper.remember(b));
                patches.iter().for_each(|p| deduper.remember_patch(p));
            }
            let admission = deduper.admit(b);
            match &admission {
                Admission::New(_) => kept.push(b.clone()),
                Admission::Duplicate {
                    merged_into,
                    filled,
                } => patches.push(BookPatch::new(*merged_into, filled, b)),
            }
            admissions.push(admission);
        }
        apply_patches(&mut kept, BookRef(0), &patches);
        (admissions, kept)
    }

    #[test]
    fn a_rebuilt_deduper_decides_exactly_as_the_first() {
        let books = vec![
            book("Dune", "Author", None),
            read("Emma", None, None, None),
            read("dune", Some("9780441013593"), Some(3.0), None),
            read(
                "Dune (Reissue)",
                Some("9780441013593"),
                Some(5.0),
                Some("2020-02-02"),
            ),
            read("EMMA", None, Some(4.0), None),
            read("Emma!", None, Some(1.0), Some("2021-01-01")),
            read("Persuasion", Some("9780441013593"), None, None),
            book("Persuasion", "Author", Some("9780141439686")),
        ];
        let undisturbed = admit_with_restart(&books, usize::MAX);
        for restart_after in 0..=books.len() {
            assert_eq!(
                admit_with_restart(&books, restart_after),
                undisturbed,
                "restart after {restart_after}"
            );
        }
        let (_, kept) = undisturbed;
        assert_eq!(kept.len(), 3);
        assert_eq!(kept[0].isbn.as_deref(), Some("9780441013593"));
        assert_eq!(
            (kept[0].rating, kept[0].date_read.as_deref()),
            (Some(3.0), Some("2020-02-02"))
        );
        assert_eq!(kept[1].rating, Some(4.0));
    }

    #[test]
    fn patches_apply_only_to_their_page() {
        let mut page = vec![book("C", "", None), book("D", "", None)];
        let patch = |n: u64| BookPatch {
            shelf: Some(format!("shelf {n}")),
            ..BookPatch::new(BookRef(n), &[], &book("x", "", None))
        };
        let patches = [patch(0), patch(3), patch(2), patch(9)];
        apply_patches(&mut page, BookRef(2), &patches);
        let shelves: Vec<_> = page.iter().map(|b| b.shelf.as_deref()).collect();
        assert_eq!(shelves, [Some("shelf 2"), Some("shelf 3")]);
    }

    #[test]
    fn remember_rebuilds_the_same_state() {
        let kept = [book("A", "X", Some("9780441013593")), book("B", "Y", None)];
        let mut rebuilt = Deduper::default();
        assert!(rebuilt.is_empty());
        kept.iter().for_each(|b| rebuilt.remember(b));
        assert!(!is_new(&rebuilt.admit(&book(
            "A2",
            "Z",
            Some("9780441013593")
        ))));
        assert!(!is_new(&rebuilt.admit(&book("b", "y", None))));
        assert_eq!(
            rebuilt.admit(&book("C", "Z", None)),
            Admission::New(BookRef(2))
        );
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
                serde_json::to_value(RowError::new(3, None, "missing title".into())).unwrap(),
                serde_json::json!({"line": 3, "error": "missing title"}),
            ),
            (
                serde_json::to_value(RowError::new(5, Some("é".repeat(600)), "bad".into()))
                    .unwrap(),
                serde_json::json!({
                    "line": 5, "title": "é".repeat(512), "error": "bad", "truncated": true
                }),
            ),
            (
                serde_json::to_value(RowError::new(6, None, "x".repeat(1025))).unwrap(),
                serde_json::json!({"line": 6, "error": "x".repeat(1024), "truncated": true}),
            ),
            (
                serde_json::to_value(RowWarning {
                    line: 4,
                    field: "isbn".into(),
                    warning: "w".into(),
                })
                .unwrap(),
                serde_json::json!({"line": 4, "field": "isbn", "warning": "w"}),
            ),
            (
                serde_json::to_value(BookPatch::new(
                    BookRef(7),
                    &[MergeField::Isbn, MergeField::Rating],
                    &full,
                ))
                .unwrap(),
                serde_json::json!({"book": 7, "isbn": "9780441013593", "isbn10": "0441013597", "rating": 4.5}),
            ),
            (
                serde_json::to_value(ImportTotals {
                    data_records: 1,
                    invalid_utf8_rows: 1,
                    ..Default::default()
                })
                .unwrap(),
                serde_json::json!({"dataRecords": 1, "books": 0, "errors": 0, "duplicates": 0, "invalidUtf8Rows": 1, "warnings": 0}),
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
        let parsed: Book = serde_json::from_value(serde_json::to_value(&full).unwrap()).unwrap();
        assert_eq!(parsed, full);
        // Warnings stored before they had a field read as whole-record ones.
        let old: RowWarning =
            serde_json::from_value(serde_json::json!({"line": 2, "warning": "w"})).unwrap();
        assert_eq!(old.field, "record");
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod json_properties {
    use super::*;
    use proptest::prelude::*;

    /// Text with what JSON must escape: quotes, backslashes, controls, and multi-byte characters.
    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(vec!['a', ' ', '"', '\\', '/', '\n', '\u{0}', '\u{1f}', '\u{7f}', 'é', '\u{2028}', '📚']),
                1 => any::<char>(),
            ],
            0..24,
        )
        .prop_map(|chars| chars.into_iter().collect())
    }

    fn book() -> impl Strategy<Value = Book> {
        let optional = || prop::option::of(text());
        (
            (text(), text(), optional(), optional(), optional()),
            (
                optional(),
                prop::option::of(any::<f64>()),
                optional(),
                optional(),
                optional(),
            ),
        )
            .prop_map(
                |(
                    (title, author, isbn, isbn10, identifier),
                    (shelf, rating, date_read, series, series_number),
                )| Book {
                    title,
                    author,
                    isbn,
                    isbn10,
                    identifier,
                    shelf,
                    rating,
                    date_read,
                    series,
                    series_number,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        #[test]
        fn a_book_is_written_as_serde_json_writes_it(book in book()) {
            let mut written = Vec::new();
            prop_assert!(book.write_json(&mut written));
            prop_assert_eq!(String::from_utf8(written).unwrap(), serde_json::to_string(&book).unwrap());
        }
    }
}
