//! Cell-level parsing: identifiers, ratings, dates read, series suffixes and dedupe keys.

use crate::isbn::{classify, is_valid_isbn10, isbn10_to_13, normalize, IsbnCheck};
use crate::time::is_valid_date;

/// What a row's identifier cells amount to, taken together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Identifier {
    Isbn {
        isbn13: String,
        isbn10: Option<String>,
    },
    /// ISBN-shaped but failing its checksum, and no valid ISBN anywhere else in the row.
    BadChecksum {
        normalized: String,
    },
    /// Something else, such as an ASIN; kept so the book can still be looked up.
    Other(String),
    Absent,
}

/// A repair made or a value lost while reading a row's identifiers, for its warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IsbnNote {
    /// A spreadsheet stored an ISBN-10 as a number and dropped its leading zeros; padding
    /// them back made the checksum hold.
    Padded { written: String, isbn10: String },
    /// `9.78054E+12`: the digits are gone. Only noted when the row ended without an ISBN.
    Scientific { written: String },
    /// One cell listed ISBNs of different books; the first valid one was used.
    Several { used: String, ignored: String },
}

/// The row's identifier and the notes about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub identifier: Identifier,
    pub notes: Vec<IsbnNote>,
}

/// One candidate value, as read.
enum Candidate {
    Valid {
        isbn13: String,
        isbn10: Option<String>,
        padded: Option<IsbnNote>,
    },
    BadChecksum(String),
    Scientific(String),
    Other(String),
}

/// Goes through the cells best column first and takes the first valid ISBN. Within the cell
/// that gave it, a valid ISBN of another book is noted as ignored.
pub(crate) fn resolve_identifier<'a>(cells: impl IntoIterator<Item = &'a str>) -> Resolved {
    let mut bad_checksum = None;
    let mut other = None;
    let mut scientific = None;
    for cell in cells {
        let mut found: Option<(String, Option<String>, Option<IsbnNote>)> = None;
        let mut several = None;
        for candidate in identifier_candidates(cell) {
            match read_candidate(candidate) {
                Candidate::Valid {
                    isbn13,
                    isbn10,
                    padded,
                } => match &found {
                    None => found = Some((isbn13, isbn10, padded)),
                    Some((used, ..)) if *used != isbn13 && several.is_none() => {
                        several = Some(IsbnNote::Several {
                            used: used.clone(),
                            ignored: isbn13,
                        });
                    }
                    Some(_) => {}
                },
                Candidate::BadChecksum(normalized) => {
                    bad_checksum.get_or_insert(normalized);
                }
                Candidate::Scientific(written) => {
                    scientific.get_or_insert(written);
                }
                Candidate::Other(text) => {
                    other.get_or_insert(text);
                }
            }
        }
        if let Some((isbn13, isbn10, padded)) = found {
            return Resolved {
                identifier: Identifier::Isbn { isbn13, isbn10 },
                notes: padded.into_iter().chain(several).collect(),
            };
        }
    }
    let identifier = match (bad_checksum, other) {
        (Some(normalized), _) => Identifier::BadChecksum { normalized },
        (None, Some(other)) => Identifier::Other(other),
        (None, None) => Identifier::Absent,
    };
    let notes = scientific
        .map(|written| IsbnNote::Scientific { written })
        .into_iter()
        .collect();
    Resolved { identifier, notes }
}

/// One candidate read: a number in scientific notation is never an identifier; a run of 7 to
/// 9 digits is an ISBN-10 that lost its leading zeros when padding them back makes the
/// checksum hold (calibre also writes 9-digit SBNs, which the same padding turns into their
/// ISBN-10); anything else is classified as written.
fn read_candidate(candidate: &str) -> Candidate {
    if let Some(digits) = scientific_digits(candidate) {
        return match digits {
            Some(digits) => read_candidate_digits(&digits, candidate),
            None => Candidate::Scientific(candidate.to_string()),
        };
    }
    read_candidate_digits(candidate, candidate)
}

fn read_candidate_digits(text: &str, written: &str) -> Candidate {
    // A spreadsheet's number is bare digits; checking that first keeps the common path (a
    // 10- or 13-character ISBN) free of another allocation.
    if (7..=9).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()) {
        let padded = format!("{text:0>10}");
        if is_valid_isbn10(&padded) {
            return Candidate::Valid {
                isbn13: isbn10_to_13(&padded),
                isbn10: Some(padded.clone()),
                padded: Some(IsbnNote::Padded {
                    written: written.to_string(),
                    isbn10: padded,
                }),
            };
        }
    }
    match classify(text) {
        IsbnCheck::Valid { isbn13, isbn10 } => Candidate::Valid {
            isbn13,
            isbn10,
            padded: None,
        },
        IsbnCheck::BadChecksum { normalized } => Candidate::BadChecksum(normalized),
        IsbnCheck::NotIsbn => Candidate::Other(written.to_string()),
    }
}

/// `Some(None)` for a number in scientific notation whose digits are lost (`9.78054E+12`),
/// `Some(Some(digits))` when its mantissa still shows every digit (`9.780441013593E+12`),
/// `None` when the text is not such a number. Digits past the mantissa were rounded away by
/// the spreadsheet, so guessing them (as zeros or otherwise) would invent an ISBN.
fn scientific_digits(text: &str) -> Option<Option<String>> {
    // Every identifier cell passes here: a byte scan rejects the common case cheaply.
    let at = text.bytes().position(|b| b == b'e' || b == b'E')?;
    let (mantissa, exponent) = (text.get(..at)?, text.get(at + 1..)?);
    let exponent: usize = exponent
        .strip_prefix('+')
        .unwrap_or(exponent)
        .parse()
        .ok()?;
    let (whole, fraction) = mantissa.split_once(['.', ',']).unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.len() != 1 || !digits(whole) || !digits(fraction) || exponent > 20 {
        return None;
    }
    Some((fraction.len() == exponent).then(|| format!("{whole}{fraction}")))
}

/// One cell's candidates, unwrapped from Goodreads' `="..."`, LibraryThing's `[...]`, a
/// spreadsheet's leading `'` and calibre's `isbn:` labels, and split when the cell is a list
/// (LibraryThing's `ISBNs`, calibre's `identifiers`): at `,`, `;` or `|`, and at blanks unless
/// the piece is one ISBN written with spaces (`0 441 01359 7`). Labelled identifiers other
/// than `isbn:` (`amazon:`, `goodreads:`) are another site's ids and are skipped.
fn identifier_candidates(cell: &str) -> impl Iterator<Item = &str> {
    let wrapping = |c: char| matches!(c, '=' | '"' | '\'' | '[' | ']') || c.is_whitespace();
    // `9,78044E+12` (a decimal comma) is one number, not a list.
    let one_number = scientific_digits(cell.trim_matches(wrapping)).is_some();
    let list_separator = move |b: u8| !one_number && matches!(b, b',' | b';' | b'|');
    split_ascii(cell, list_separator)
        .map(move |piece| piece.trim_matches(wrapping))
        .filter_map(unlabel)
        .flat_map(|piece| {
            let spaced = piece.bytes().any(|b| b.is_ascii_whitespace());
            let whole = !spaced || is_isbn_shaped(&normalize(piece));
            split_ascii(piece, move |b| !whole && b.is_ascii_whitespace())
        })
        .map(move |piece| piece.trim_matches(wrapping))
        .filter(|piece| !piece.is_empty())
}

/// `text` split at every ASCII byte `separator` accepts. Splitting bytes rather than chars
/// keeps this per-cell work cheap; an ASCII byte is always a char boundary.
fn split_ascii(text: &str, separator: impl Fn(u8) -> bool) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.bytes().position(&separator) {
            Some(at) => {
                rest = current.get(at + 1..);
                current.get(..at)
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// `isbn:978...` is its value; `amazon:B0...` is none of ours.
fn unlabel(piece: &str) -> Option<&str> {
    match piece.split_once(':') {
        Some((label, value))
            if !label.is_empty() && label.chars().all(|c| c.is_ascii_alphabetic()) =>
        {
            label.eq_ignore_ascii_case("isbn").then_some(value.trim())
        }
        _ => Some(piece),
    }
}

fn is_isbn_shaped(normalized: &str) -> bool {
    let b = normalized.as_bytes();
    (b.len() == 13 && b.iter().all(u8::is_ascii_digit))
        || (b.len() == 10
            && b.get(..9).is_some_and(|d| d.iter().all(u8::is_ascii_digit))
            && b.get(9).is_some_and(|&c| c.is_ascii_digit() || c == b'X'))
}

/// A rating cell, read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Rating {
    /// Empty, or 0: how Goodreads writes "unrated".
    Unrated,
    /// In (0, 5], quarter stars and all.
    Rated(f64),
    /// Text or out of range: not a rating we can trust, dropped with a warning.
    Unreadable,
}

/// Reads a rating; a decimal comma (`3,5`, as European spreadsheets write) is a decimal point.
pub(crate) fn read_rating(cell: &str) -> Rating {
    let cell = cell.trim();
    if cell.is_empty() {
        return Rating::Unrated;
    }
    let parsed: Option<f64> = if cell.contains(',') && !cell.contains('.') {
        cell.replacen(',', ".", 1).parse().ok()
    } else {
        cell.parse().ok()
    };
    match parsed {
        Some(0.0) => Rating::Unrated,
        Some(value) if value.is_finite() && value > 0.0 && value <= 5.0 => Rating::Rated(value),
        _ => Rating::Unreadable,
    }
}

/// The last `YYYY?MM?DD` date in the cell (`/`, `-` or `.` separated), as `YYYY-MM-DD`, or
/// nothing when that date does not exist. Taking the last one reads StoryGraph's
/// `2023/01/05-2023/01/20, ...` ranges as the end of the last range, and a single date as
/// itself; an impossible end date is not replaced by the range's start, which is not when the
/// book was finished.
pub(crate) fn parse_date_read(cell: &str) -> Option<String> {
    let bytes = cell.as_bytes();
    let mut last = None;
    let mut index = 0;
    while index < bytes.len() {
        match date_at(bytes, index) {
            Some((year, month, day, length)) => {
                last = Some((year, month, day));
                index += length;
            }
            None => index += 1,
        }
    }
    let (year, month, day) = last?;
    is_valid_date(i64::from(year), month, day).then(|| format!("{year:04}-{month:02}-{day:02}"))
}

/// A date starting exactly at `index`, not glued to other digits: (year, month, day, length).
fn date_at(bytes: &[u8], index: usize) -> Option<(u32, u32, u32, usize)> {
    let preceded_by_digit = index
        .checked_sub(1)
        .and_then(|previous| bytes.get(previous))
        .is_some_and(u8::is_ascii_digit);
    if preceded_by_digit {
        return None;
    }
    let rest = bytes.get(index..)?;
    let (year, year_len) = digits(rest, 4, 4)?;
    let separator = *rest.get(year_len)?;
    if !matches!(separator, b'/' | b'-' | b'.') || rest.first() == Some(&b'0') {
        return None;
    }
    let (month, month_len) = digits(rest.get(year_len + 1..)?, 1, 2)?;
    let day_start = year_len + 1 + month_len + 1;
    if rest.get(day_start - 1) != Some(&separator) {
        return None;
    }
    let (day, day_len) = digits(rest.get(day_start..)?, 1, 2)?;
    let length = day_start + day_len;
    if rest.get(length).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    Some((year, month, day, length))
}

/// The number formed by the leading digits when there are `min..=max` of them.
fn digits(bytes: &[u8], min: usize, max: usize) -> Option<(u32, usize)> {
    let count = bytes
        .iter()
        .take(max + 1)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if count < min || count > max {
        return None;
    }
    let value = bytes
        .get(..count)?
        .iter()
        .fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'));
    Some((value, count))
}

/// A title split at a Goodreads-style series suffix: `Base (Series Name, #2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeriesSuffix<'a> {
    pub base_title: &'a str,
    pub series: &'a str,
    pub number: &'a str,
}

/// Only a trailing parenthetical of the form `Name[,] #number` counts, so editions such as
/// `(40th Anniversary Edition)` are left alone. Of several series (`(A, #1; B, #3)`) the first
/// is taken.
pub(crate) fn split_series(title: &str) -> Option<SeriesSuffix<'_>> {
    let without_paren = title.trim_end().strip_suffix(')')?;
    let (base_title, inside) = without_paren.rsplit_once('(')?;
    let base_title = base_title.trim_end();
    let first_series = inside.split(';').next()?.trim();
    let (name, number) = first_series.rsplit_once('#')?;
    let name = name.trim_end();
    let series = name.strip_suffix(',').unwrap_or(name).trim();
    let number = number.trim();
    let number_ok = number.starts_with(|c: char| c.is_ascii_digit())
        && number.ends_with(|c: char| c.is_ascii_digit())
        && number
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-');
    let series_ok = !series.is_empty() && !series.contains(['(', ')', '#']);
    (number_ok && series_ok && !base_title.is_empty()).then_some(SeriesSuffix {
        base_title,
        series,
        number,
    })
}

/// Appends `text` case folded, with punctuation dropped and whitespace collapsed, so
/// `The Hobbit!` and `the  hobbit` compare equal. Appending lets a composite key be built
/// with one allocation.
pub(crate) fn push_dedupe_text(out: &mut String, text: &str) {
    let start = out.len();
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if pending_space && out.len() > start {
                out.push(' ');
            }
            pending_space = false;
            if c.is_ascii() {
                out.push(c.to_ascii_lowercase());
            } else {
                out.extend(c.to_lowercase());
            }
        } else if c.is_whitespace() {
            pending_space = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn isbn(isbn13: &str, isbn10: Option<&str>) -> Identifier {
        Identifier::Isbn {
            isbn13: isbn13.into(),
            isbn10: isbn10.map(Into::into),
        }
    }

    fn bad(normalized: &str) -> Identifier {
        Identifier::BadChecksum {
            normalized: normalized.into(),
        }
    }

    #[test]
    fn resolves_identifiers() {
        let cases: &[(&[&str], Identifier)] = &[
            (
                &["=\"9780441013593\"", "=\"0441013597\""],
                isbn("9780441013593", Some("0441013597")),
            ),
            (
                &["=\"\"", "=\"0441013597\""],
                isbn("9780441013593", Some("0441013597")),
            ),
            (&["=\"\"", "=\"\""], Identifier::Absent),
            (&["", ""], Identifier::Absent),
            (&["=\"9780441013594\"", "=\"\""], bad("9780441013594")),
            // A valid ISBN anywhere in the row outweighs a bad one elsewhere.
            (
                &["=\"9780441013594\"", "=\"0441013597\""],
                isbn("9780441013593", Some("0441013597")),
            ),
            (&["=\"9791032305690\""], isbn("9791032305690", None)),
            (
                &["978-0-441-01359-3"],
                isbn("9780441013593", Some("0441013597")),
            ),
            (
                &["0 441 01359 7"],
                isbn("9780441013593", Some("0441013597")),
            ),
            (&["080442957x"], isbn("9780804429573", Some("080442957X"))),
            (&["'0441013597"], isbn("9780441013593", Some("0441013597"))),
            (&["B08ZYQT962"], Identifier::Other("B08ZYQT962".into())),
            (&["B08ZYQT962", "0441013598"], bad("0441013598")),
            (
                &["[0441013597]", "9780441013593, 0441013597"],
                isbn("9780441013593", Some("0441013597")),
            ),
            (
                &["", "0441013598, 9780804429573"],
                isbn("9780804429573", Some("080442957X")),
            ),
            (&["[]", "0441013598; 12345"], bad("0441013598")),
            // Lists: blanks and bars separate too, unless the piece is one spaced ISBN.
            (
                &["0441013598 9780804429573"],
                isbn("9780804429573", Some("080442957X")),
            ),
            (
                &["foo | 9780804429573"],
                isbn("9780804429573", Some("080442957X")),
            ),
            // calibre's labelled identifiers.
            (
                &["", "goodreads:234225,isbn:9780441013593,amazon:B00B7NPRY8"],
                isbn("9780441013593", Some("0441013597")),
            ),
            (&["amazon:B00B7NPRY8"], Identifier::Absent),
            (
                &["ISBN: 0441013597"],
                isbn("9780441013593", Some("0441013597")),
            ),
            // A number with lost digits is not an identifier to keep.
            (&["9.78044E+12"], Identifier::Absent),
            (
                &["9.78044E+12", "B08ZYQT962"],
                Identifier::Other("B08ZYQT962".into()),
            ),
            // Seven to nine digits that are not a zero-stripped ISBN-10 stay what they were.
            (&["123456780"], Identifier::Other("123456780".into())),
        ];
        for (cells, want) in cases {
            assert_eq!(
                resolve_identifier(cells.iter().copied()).identifier,
                *want,
                "{cells:?}"
            );
        }
    }

    #[test]
    fn repairs_spreadsheet_numbers_and_notes_them() {
        let padded = |written: &str, isbn10: &str| IsbnNote::Padded {
            written: written.into(),
            isbn10: isbn10.into(),
        };
        let scientific = |written: &str| IsbnNote::Scientific {
            written: written.into(),
        };
        let cases: &[(&[&str], Identifier, Vec<IsbnNote>)] = &[
            (
                &["", "441013597"],
                isbn("9780441013593", Some("0441013597")),
                vec![padded("441013597", "0441013597")],
            ),
            // HarperCollins UK ISBN-10s start with 00: two zeros lost.
            (
                &["7136587"],
                isbn("9780007136582", Some("0007136587")),
                vec![padded("7136587", "0007136587")],
            ),
            (
                &["9.78044E+12", "441013597"],
                isbn("9780441013593", Some("0441013597")),
                vec![padded("441013597", "0441013597")],
            ),
            (
                &["9.78044E+12", ""],
                Identifier::Absent,
                vec![scientific("9.78044E+12")],
            ),
            (
                &["9.78E+12", "=\"0441013597\""],
                isbn("9780441013593", Some("0441013597")),
                vec![],
            ),
            // A mantissa that shows all thirteen digits is exact.
            (
                &["9.780441013593E+12"],
                isbn("9780441013593", Some("0441013597")),
                vec![],
            ),
            (
                &["9,780441013593E+12"],
                isbn("9780441013593", Some("0441013597")),
                vec![],
            ),
            (
                &["0441013597, 9780441013593"],
                isbn("9780441013593", Some("0441013597")),
                vec![],
            ),
            (
                &["0441013597, 9780804429573"],
                isbn("9780441013593", Some("0441013597")),
                vec![IsbnNote::Several {
                    used: "9780441013593".into(),
                    ignored: "9780804429573".into(),
                }],
            ),
        ];
        for (cells, identifier, notes) in cases {
            let got = resolve_identifier(cells.iter().copied());
            assert_eq!(&got.identifier, identifier, "{cells:?}");
            assert_eq!(&got.notes, notes, "{cells:?}");
        }
    }

    #[test]
    fn reads_scientific_notation() {
        let cases: &[(&str, Option<Option<&str>>)] = &[
            ("9.78054E+12", Some(None)),
            ("9.78054e12", Some(None)),
            ("9.780441013593E+12", Some(Some("9780441013593"))),
            ("4.41013597E+8", Some(Some("441013597"))),
            ("1E+3", Some(None)),
            ("1.5E+0", Some(None)),
            ("97.8E+12", None),
            ("9.7x8E+12", None),
            ("B00E5", None),
            ("9780441013593", None),
            ("9.78E+99", None),
        ];
        for (text, want) in cases {
            let got = scientific_digits(text);
            assert_eq!(got.as_ref().map(|d| d.as_deref()), *want, "{text}");
        }
    }

    #[test]
    fn reads_ratings() {
        let cases: &[(&str, Rating)] = &[
            ("5", Rating::Rated(5.0)),
            ("4", Rating::Rated(4.0)),
            ("4.5", Rating::Rated(4.5)),
            ("3.75", Rating::Rated(3.75)),
            ("3,5", Rating::Rated(3.5)),
            (" 3 ", Rating::Rated(3.0)),
            ("0", Rating::Unrated),
            ("0.0", Rating::Unrated),
            ("0,0", Rating::Unrated),
            ("", Rating::Unrated),
            ("  ", Rating::Unrated),
            ("5.5", Rating::Unreadable),
            ("-1", Rating::Unreadable),
            ("NaN", Rating::Unreadable),
            ("inf", Rating::Unreadable),
            ("four", Rating::Unreadable),
            ("4/5", Rating::Unreadable),
            ("3,5.0", Rating::Unreadable),
        ];
        for (cell, want) in cases {
            assert_eq!(read_rating(cell), *want, "{cell:?}");
        }
    }

    #[test]
    fn parses_dates_read() {
        let cases: &[(&str, Option<&str>)] = &[
            ("2023/08/15", Some("2023-08-15")),
            ("2023-08-15", Some("2023-08-15")),
            ("2023/8/5", Some("2023-08-05")),
            ("2023.08.15", Some("2023-08-15")),
            (" 2023/08/15 ", Some("2023-08-15")),
            ("2023-08-15T10:00:00Z", Some("2023-08-15")),
            ("2023/01/05-2023/01/20", Some("2023-01-20")),
            ("2023-01-05-2023-01-20", Some("2023-01-20")),
            (
                "2022/12/01-2022/12/10, 2023/01/05-2023/01/20",
                Some("2023-01-20"),
            ),
            ("2023/01/05-", Some("2023-01-05")),
            ("2023/01/05-2023/02/30", None),
            ("2024/02/29", Some("2024-02-29")),
            ("2023/02/29", None),
            ("2023/13/01", None),
            ("2023/08/15/", Some("2023-08-15")),
            ("2023/08-15", None),
            ("12023/08/15", None),
            ("2023/08/150", None),
            ("0000/01/01", None),
            ("15/08/2023", None),
            ("20230815", None),
            ("not a date", None),
            ("", None),
        ];
        for (cell, want) in cases {
            assert_eq!(parse_date_read(cell).as_deref(), *want, "{cell:?}");
        }
    }

    #[test]
    fn splits_series_suffixes() {
        type Split = Option<(&'static str, &'static str, &'static str)>;
        let cases: &[(&str, Split)] = &[
            (
                "The Name of the Wind (The Kingkiller Chronicle, #1)",
                Some(("The Name of the Wind", "The Kingkiller Chronicle", "1")),
            ),
            (
                "Guards! Guards! (Discworld #8)",
                Some(("Guards! Guards!", "Discworld", "8")),
            ),
            (
                "Sourcery (Discworld #5) ",
                Some(("Sourcery", "Discworld", "5")),
            ),
            (
                "The Expanse Novellas (The Expanse, #0.5)",
                Some(("The Expanse Novellas", "The Expanse", "0.5")),
            ),
            ("Box Set (Series, #1-3)", Some(("Box Set", "Series", "1-3"))),
            (
                "Crossover (Series A, #2; Series B, #7)",
                Some(("Crossover", "Series A", "2")),
            ),
            ("Dune (40th Anniversary Edition)", None),
            ("Untitled (#1)", None),
            ("(Series, #1)", None),
            ("Number One (Series, #one)", None),
            ("Nested (Series (US), #2)", None),
            ("Trailing hash (Series, #)", None),
            ("No suffix", None),
            ("", None),
        ];
        for (title, want) in cases {
            let got = split_series(title).map(|s| (s.base_title, s.series, s.number));
            assert_eq!(got, *want, "{title:?}");
        }
    }

    fn dedupe_text(text: &str) -> String {
        let mut normalized = String::new();
        push_dedupe_text(&mut normalized, text);
        normalized
    }

    #[test]
    fn normalizes_for_dedupe() {
        let cases: &[(&str, &str)] = &[
            ("The Hobbit", "the hobbit"),
            ("  THE   hobbit!! ", "the hobbit"),
            ("Don't Panic: A Guide", "dont panic a guide"),
            ("Él Niño", "él niño"),
            ("...", ""),
        ];
        for (text, want) in cases {
            assert_eq!(dedupe_text(text), *want, "{text:?}");
        }
    }
}
