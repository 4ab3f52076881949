//! A deterministic Goodreads-export generator with exact expected totals, for tests and benchmarks.

use super::book::ImportTotals;
use crate::isbn::isbn10_to_13;

const HEADER: &str = "Book Id,Title,Author,Author l-f,Additional Authors,ISBN,ISBN13,My Rating,\
    Average Rating,Publisher,Binding,Number of Pages,Year Published,Original Publication Year,\
    Date Read,Date Added,Bookshelves,Bookshelves with positions,Exclusive Shelf,My Review,\
    Spoiler,Private Notes,Read Count,Owned Copies";

const FIRST_NAMES: &[&str] = &[
    "Ursula", "Terry", "Octavia", "Iain", "Becky", "Ann", "Ted", "N. K.", "Jo", "Hilary",
];
const LAST_NAMES: &[&str] = &[
    "Le Guin",
    "Pratchett",
    "Butler",
    "Banks",
    "Chambers",
    "Leckie",
    "Chiang",
    "Jemisin",
];
const TITLE_WORDS: &[&str] = &[
    "Silent", "Harbor", "Glass", "Orchard", "Winter", "Engine", "Lantern", "Tide", "Hollow",
    "Crown", "Salt", "Garden", "Signal", "Ember", "Atlas", "Meridian",
];
const SHELVES: &[&str] = &["read", "read", "read", "to-read", "currently-reading"];
const REVIEWS: &[&str] = &[
    "Loved it.<br/>\nThe second half drags, but \"the ending\" earns it, mostly.",
    "Three things:\r\n1. pacing, <b>great</b>\r\n2. characters\r\n3. that \"twist\"",
    "<i>Re-read</i> for book club,\nstill holds up.\n\nRecommended.",
];

/// What a generated row is meant to become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    Isbn13AndIsbn10,
    Isbn10Only,
    Isbn979,
    NoIsbn,
    MissingTitle,
    BadChecksum,
    DuplicateIsbn,
    DuplicateTitleAndAuthor,
}

impl RowKind {
    /// The mix: mostly valid books, with a few percent of each error and duplicate kind.
    fn pick(roll: u64) -> Self {
        match roll % 100 {
            0..=1 => Self::MissingTitle,
            2..=4 => Self::BadChecksum,
            5..=7 => Self::DuplicateIsbn,
            8..=9 => Self::DuplicateTitleAndAuthor,
            10..=14 => Self::NoIsbn,
            15..=24 => Self::Isbn10Only,
            25..=29 => Self::Isbn979,
            _ => Self::Isbn13AndIsbn10,
        }
    }
}

/// SplitMix64: tiny, fast and good enough to vary rows reproducibly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items
            .get(self.below(items.len()))
            .copied()
            .unwrap_or_default()
    }

    fn percent(&mut self, chance: u64) -> bool {
        self.next() % 100 < chance
    }
}

/// A kept book, as later duplicates need to repeat it.
struct Kept {
    title: String,
    author: String,
    isbn13: Option<String>,
}

/// The cells of one row that vary by kind.
struct Identity {
    title: String,
    author: String,
    isbn: String,
    isbn13: String,
}

/// Deterministic Goodreads-format file: `rows` data rows with a known mix of valid
/// ISBN-10/13, 979 ISBNs, bad checksums, missing titles, duplicates (by ISBN and by
/// title+author), series suffixes, quoted multi-line reviews, blank lines and the odd invalid
/// UTF-8 byte, at about 200 bytes a row. Returns the bytes and the totals an import must find.
pub fn generate_goodreads(rows: usize, seed: u64) -> (Vec<u8>, ImportTotals) {
    let mut rng = Rng(seed);
    // Odd seeds write CRLF files, so both line endings get exercised at scale.
    let newline = if seed % 2 == 1 { "\r\n" } else { "\n" };
    // Distinct seeds get distinct ISBN ranges; within a file every body is unique.
    let isbn_base = (seed % 400) * 1_000_000;
    let mut out = Vec::with_capacity(rows.saturating_mul(210) + HEADER.len() + 2);
    out.extend_from_slice(HEADER.as_bytes());
    out.extend_from_slice(newline.as_bytes());
    let mut totals = ImportTotals::default();
    let mut kept: Vec<Kept> = Vec::new();
    let mut kept_with_isbn: Vec<usize> = Vec::new();

    for index in 0..rows {
        let mut kind = RowKind::pick(rng.next());
        if kind == RowKind::DuplicateIsbn && kept_with_isbn.is_empty()
            || kind == RowKind::DuplicateTitleAndAuthor && kept.is_empty()
        {
            kind = RowKind::Isbn13AndIsbn10;
        }
        let body = format!("{:09}", isbn_base + index as u64);
        let identity = identity(kind, index, &body, &mut rng, &kept, &kept_with_isbn);

        totals.data_records += 1;
        match kind {
            RowKind::MissingTitle | RowKind::BadChecksum => totals.errors += 1,
            RowKind::DuplicateIsbn | RowKind::DuplicateTitleAndAuthor => totals.duplicates += 1,
            _ => {
                totals.books += 1;
                let isbn13 = match kind {
                    RowKind::NoIsbn => None,
                    RowKind::Isbn10Only => Some(isbn10_to_13(&identity.isbn)),
                    _ => Some(identity.isbn13.clone()),
                };
                if isbn13.is_some() {
                    kept_with_isbn.push(kept.len());
                }
                kept.push(Kept {
                    title: identity.title.clone(),
                    author: identity.author.clone(),
                    isbn13,
                });
            }
        }

        if rng.percent(1) {
            out.extend_from_slice(newline.as_bytes());
        }
        let invalid_utf8 = rng.percent(1);
        if invalid_utf8 {
            totals.invalid_utf8_rows += 1;
        }
        write_row(&mut out, index, &identity, invalid_utf8, newline, &mut rng);
    }
    (out, totals)
}

fn identity(
    kind: RowKind,
    index: usize,
    body: &str,
    rng: &mut Rng,
    kept: &[Kept],
    kept_with_isbn: &[usize],
) -> Identity {
    let author = format!("{} {}", rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES));
    // The index makes every fresh title unique, so only intended duplicates collide.
    let mut title = format!(
        "{} {} {}",
        rng.pick(TITLE_WORDS),
        rng.pick(TITLE_WORDS),
        index + 1
    );
    if rng.percent(10) {
        title = format!("{title}, Revisited");
    }
    if rng.percent(20) {
        title = format!(
            "{title} ({} Cycle, #{})",
            rng.pick(TITLE_WORDS),
            1 + rng.below(9)
        );
    }
    let isbn10 = format!("{body}{}", isbn10_check(body));
    let prefix979 = format!("979{body}");
    let isbn979 = format!("{prefix979}{}", isbn13_check(&prefix979));
    let isbn13 = isbn10_to_13(&isbn10);
    match kind {
        RowKind::Isbn13AndIsbn10 => Identity {
            title,
            author,
            isbn: isbn10,
            isbn13,
        },
        RowKind::Isbn10Only => Identity {
            title,
            author,
            isbn: isbn10,
            isbn13: String::new(),
        },
        RowKind::Isbn979 => Identity {
            title,
            author,
            isbn: String::new(),
            isbn13: isbn979,
        },
        RowKind::NoIsbn => Identity {
            title,
            author,
            isbn: String::new(),
            isbn13: String::new(),
        },
        RowKind::MissingTitle => Identity {
            title: String::new(),
            author,
            isbn: isbn10,
            isbn13,
        },
        RowKind::BadChecksum => {
            let broken = broken_check_digit(&isbn13);
            Identity {
                title,
                author,
                isbn: String::new(),
                isbn13: broken,
            }
        }
        RowKind::DuplicateIsbn => {
            let original = kept_with_isbn
                .get(rng.below(kept_with_isbn.len()))
                .and_then(|&i| kept.get(i));
            let isbn13 = original.and_then(|k| k.isbn13.clone()).unwrap_or_default();
            let title = format!("{title} (Reissue)");
            Identity {
                title,
                author,
                isbn: String::new(),
                isbn13,
            }
        }
        RowKind::DuplicateTitleAndAuthor => {
            let original = kept.get(rng.below(kept.len()));
            // Other case and punctuation, same words: normalisation must see through it.
            let title = original
                .map(|k| k.title.to_uppercase().replacen(' ', " - ", 1))
                .unwrap_or_default();
            let author = original
                .map(|k| k.author.to_lowercase())
                .unwrap_or_default();
            Identity {
                title,
                author,
                isbn: String::new(),
                isbn13: String::new(),
            }
        }
    }
}

fn write_row(
    out: &mut Vec<u8>,
    index: usize,
    identity: &Identity,
    invalid_utf8: bool,
    newline: &str,
    rng: &mut Rng,
) {
    let (first, last) = identity
        .author
        .rsplit_once(' ')
        .unwrap_or(("", &identity.author));
    let shelf = rng.pick(SHELVES);
    let rating = if shelf == "read" { rng.below(6) } else { 0 };
    let date_read = if shelf == "read" && rng.percent(70) {
        format!(
            "{}/{:02}/{:02}",
            2015 + rng.below(10),
            1 + rng.below(12),
            1 + rng.below(28)
        )
    } else {
        String::new()
    };
    let date_added = format!(
        "{}/{:02}/{:02}",
        2014 + rng.below(10),
        1 + rng.below(12),
        1 + rng.below(28)
    );
    let review = if rng.percent(12) {
        rng.pick(REVIEWS)
    } else {
        ""
    };
    let publisher = if rng.percent(50) {
        "Orbit"
    } else {
        "Tor Books"
    };
    let cells = [
        (1_000_000 + index).to_string(),
        csv_quote(&identity.title),
        csv_quote(&identity.author),
        csv_quote(&format!("{last}, {first}")),
        String::new(),
        excel_text(&identity.isbn),
        excel_text(&identity.isbn13),
        rating.to_string(),
        format!("{}.{:02}", 3 + rng.below(2), rng.below(100)),
        publisher.to_string(),
        "Paperback".to_string(),
        (150 + rng.below(600)).to_string(),
        (1990 + rng.below(34)).to_string(),
        (1950 + rng.below(70)).to_string(),
        date_read,
        date_added,
        shelf.to_string(),
        format!("{shelf} (#{})", 1 + rng.below(400)),
        shelf.to_string(),
        csv_quote(review),
        String::new(),
        String::new(),
        u8::from(shelf == "read").to_string(),
        "0".to_string(),
    ];
    for (position, cell) in cells.iter().enumerate() {
        if position > 0 {
            out.push(b',');
        }
        out.extend_from_slice(cell.as_bytes());
        // Old exports were often Latin-1; one raw é makes the row invalid UTF-8.
        if invalid_utf8 && position == 9 {
            out.extend_from_slice(b" \xE9ditions");
        }
    }
    out.extend_from_slice(newline.as_bytes());
}

/// Quotes a cell when it needs it, as Goodreads does.
fn csv_quote(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// Goodreads' `="..."` wrapping, which keeps spreadsheets from eating leading zeros.
fn excel_text(value: &str) -> String {
    format!("\"=\"\"{value}\"\"\"")
}

fn digit_values(text: &str) -> impl Iterator<Item = u32> + '_ {
    text.bytes().map(|b| u32::from(b.wrapping_sub(b'0')) % 10)
}

fn isbn10_check(body9: &str) -> char {
    let sum: u32 = digit_values(body9)
        .zip((2..=10).rev())
        .map(|(d, w)| d * w)
        .sum();
    match (11 - sum % 11) % 11 {
        10 => 'X',
        check => char::from_digit(check, 10).unwrap_or('0'),
    }
}

fn isbn13_check(prefix12: &str) -> char {
    let sum: u32 = digit_values(prefix12)
        .zip([1, 3].into_iter().cycle())
        .map(|(d, w)| d * w)
        .sum();
    char::from_digit((10 - sum % 10) % 10, 10).unwrap_or('0')
}

/// The same ISBN with its check digit off by one, so the checksum must fail.
fn broken_check_digit(isbn13: &str) -> String {
    let mut chars: Vec<char> = isbn13.chars().collect();
    if let Some(last) = chars.last_mut() {
        let digit = last.to_digit(10).unwrap_or(0);
        *last = char::from_digit((digit + 1) % 10, 10).unwrap_or('0');
    }
    chars.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isbn::{classify, is_valid_isbn10, is_valid_isbn13, IsbnCheck};
    use crate::pipelines::csv::{parse_slice, read_header, Deduper, Format};

    #[test]
    fn check_digits_agree_with_the_isbn_module() {
        for body in [
            "044101359",
            "080442957",
            "000000000",
            "999999999",
            "123456789",
        ] {
            let isbn10 = format!("{body}{}", isbn10_check(body));
            assert!(is_valid_isbn10(&isbn10), "{isbn10}");
            let isbn979 = format!("979{body}{}", isbn13_check(&format!("979{body}")));
            assert!(is_valid_isbn13(&isbn979), "{isbn979}");
            let broken = broken_check_digit(&isbn10_to_13(&isbn10));
            assert!(
                matches!(classify(&broken), IsbnCheck::BadChecksum { .. }),
                "{broken}"
            );
        }
    }

    #[test]
    fn claimed_totals_match_what_an_import_finds() {
        for (rows, seed) in [(0, 1), (1, 2), (50, 3), (400, 4), (1_500, 5), (3_000, 42)] {
            let (file, claimed) = generate_goodreads(rows, seed);
            let (header, cursor) = read_header(&file, true).unwrap();
            assert_eq!(header.format, Format::Goodreads);
            let rest = &file[cursor.offset as usize..];
            assert_eq!(
                crate::pipelines::csv::count_data_records(&header, rest, cursor),
                rows as u64
            );
            let mut totals = ImportTotals::default();
            let mut deduper = Deduper::default();
            let mut cursor = cursor;
            loop {
                let input = &file[cursor.offset as usize..];
                let out = parse_slice(&header, input, cursor, true, 700, &mut totals, &mut deduper);
                cursor = out.cursor;
                if out.done {
                    break;
                }
            }
            assert_eq!(totals, claimed, "rows {rows} seed {seed}");
            assert_eq!(totals.data_records, rows as u64);
        }
    }

    #[test]
    fn mix_and_size_are_as_advertised() {
        let (file, totals) = generate_goodreads(5_000, 8);
        assert_eq!(generate_goodreads(5_000, 8).0, file, "deterministic");
        let bytes_per_row = file.len() / 5_000;
        assert!(
            (180..=230).contains(&bytes_per_row),
            "{bytes_per_row} bytes a row"
        );
        for (what, count) in [
            ("errors", totals.errors),
            ("duplicates", totals.duplicates),
            ("invalid UTF-8", totals.invalid_utf8_rows),
        ] {
            assert!(count > 20, "{what}: {count}");
        }
        assert!(file.windows(2).any(|w| w == b"\n\n"), "has blank lines");
        let header_end = |file: &[u8]| file[HEADER.len()..HEADER.len() + 2].to_vec();
        assert_eq!(header_end(&file), b"\n1", "even seeds write LF");
        assert_eq!(
            header_end(&generate_goodreads(1, 1).0),
            b"\r\n",
            "odd seeds write CRLF"
        );
    }
}
