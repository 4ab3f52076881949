//! Cell-level parsing: identifiers, ratings, dates read, series suffixes and dedupe keys.

use crate::isbn::{classify, IsbnCheck};
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

/// Goes through the cells best column first and takes the first valid ISBN.
pub(crate) fn resolve_identifier<'a>(cells: impl IntoIterator<Item = &'a str>) -> Identifier {
    let mut bad_checksum = None;
    let mut other = None;
    for candidate in cells.into_iter().flat_map(identifier_candidates) {
        match classify(candidate) {
            IsbnCheck::Valid { isbn13, isbn10 } => return Identifier::Isbn { isbn13, isbn10 },
            IsbnCheck::BadChecksum { normalized } => {
                bad_checksum.get_or_insert(normalized);
            }
            IsbnCheck::NotIsbn => {
                other.get_or_insert_with(|| candidate.to_string());
            }
        }
    }
    match (bad_checksum, other) {
        (Some(normalized), _) => Identifier::BadChecksum { normalized },
        (None, Some(other)) => Identifier::Other(other),
        (None, None) => Identifier::Absent,
    }
}

/// One cell's candidates, unwrapped from Goodreads' `="..."`, LibraryThing's `[...]`, a
/// spreadsheet's leading `'`, and split when the cell is a list (LibraryThing's `ISBNs`).
fn identifier_candidates(cell: &str) -> impl Iterator<Item = &str> {
    let wrapping = |c: char| matches!(c, '=' | '"' | '\'' | '[' | ']') || c.is_whitespace();
    cell.split([',', ';'])
        .map(move |piece| piece.trim_matches(wrapping))
        .filter(|p| !p.is_empty())
}

/// A rating in (0, 5]; 0 is how Goodreads writes "unrated", and anything out of range is
/// not a rating we can trust.
pub(crate) fn parse_rating(cell: &str) -> Option<f64> {
    let value: f64 = cell.trim().parse().ok()?;
    (value.is_finite() && value > 0.0 && value <= 5.0).then_some(value)
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
        ];
        for (cells, want) in cases {
            assert_eq!(
                resolve_identifier(cells.iter().copied()),
                *want,
                "{cells:?}"
            );
        }
    }

    #[test]
    fn parses_ratings() {
        let cases: &[(&str, Option<f64>)] = &[
            ("5", Some(5.0)),
            ("4", Some(4.0)),
            ("4.5", Some(4.5)),
            (" 3 ", Some(3.0)),
            ("0", None),
            ("0.0", None),
            ("", None),
            ("5.5", None),
            ("-1", None),
            ("NaN", None),
            ("inf", None),
            ("four", None),
        ];
        for (cell, want) in cases {
            assert_eq!(parse_rating(cell), *want, "{cell:?}");
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
