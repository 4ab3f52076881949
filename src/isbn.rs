//! ISBN-10/13 normalisation, checksum validation and conversion, shared by every pipeline.

/// What a raw identifier turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsbnCheck {
    /// A valid ISBN: always its ISBN-13, and the ISBN-10 when one exists (978- prefix).
    Valid {
        isbn13: String,
        isbn10: Option<String>,
    },
    /// ISBN-shaped (10 or 13 digits, final X allowed on 10) but the checksum fails.
    BadChecksum { normalized: String },
    /// Not ISBN-shaped at all (an ASIN, a UID, free text, or empty).
    NotIsbn,
}

/// Removes hyphens and spaces and upper-cases a trailing `x`.
pub fn normalize(raw: &str) -> String {
    // Most cells are already bare digits: copied whole, without a pass per character.
    if raw.bytes().all(|b| b.is_ascii_digit()) {
        return raw.to_string();
    }
    raw.chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\u{2010}'..='\u{2015}'))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn is_isbn10_shape(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[..9].iter().all(u8::is_ascii_digit)
        && (b[9].is_ascii_digit() || b[9] == b'X')
}

fn is_isbn13_shape(s: &str) -> bool {
    s.len() == 13 && s.bytes().all(|b| b.is_ascii_digit())
}

fn digit(b: u8) -> u32 {
    u32::from(b - b'0')
}

pub fn is_valid_isbn10(s: &str) -> bool {
    if !is_isbn10_shape(s) {
        return false;
    }
    let sum: u32 = s
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            let value = if b == b'X' { 10 } else { digit(b) };
            value * (10 - i as u32)
        })
        .sum();
    sum.is_multiple_of(11)
}

pub fn is_valid_isbn13(s: &str) -> bool {
    if !is_isbn13_shape(s) {
        return false;
    }
    let sum: u32 = s
        .bytes()
        .enumerate()
        .map(|(i, b)| digit(b) * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    sum.is_multiple_of(10)
}

/// ISBN-13 of a valid ISBN-10 (978 prefix, recomputed check digit).
pub fn isbn10_to_13(isbn10: &str) -> String {
    // Built by hand, not with format!: an import converts one per row with an ISBN-10.
    let mut isbn13 = String::with_capacity(13);
    isbn13.push_str("978");
    isbn13.push_str(&isbn10[..9]);
    let sum: u32 = isbn13
        .bytes()
        .enumerate()
        .map(|(i, b)| digit(b) * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    isbn13.push(char::from(b'0' + ((10 - sum % 10) % 10) as u8));
    isbn13
}

/// ISBN-10 of a valid ISBN-13, which exists only for the 978 prefix.
pub fn isbn13_to_10(isbn13: &str) -> Option<String> {
    let body = isbn13.strip_prefix("978")?.get(..9)?;
    let sum: u32 = body
        .bytes()
        .enumerate()
        .map(|(i, b)| digit(b) * (10 - i as u32))
        .sum();
    let check = (11 - sum % 11) % 11;
    let check = if check == 10 {
        'X'
    } else {
        char::from_digit(check, 10)?
    };
    let mut isbn10 = String::with_capacity(10);
    isbn10.push_str(body);
    isbn10.push(check);
    Some(isbn10)
}

/// Classifies a raw identifier such as a CSV cell or a model's guess.
pub fn classify(raw: &str) -> IsbnCheck {
    let s = normalize(raw);
    if is_isbn13_shape(&s) {
        if is_valid_isbn13(&s) {
            let isbn10 = isbn13_to_10(&s);
            IsbnCheck::Valid { isbn13: s, isbn10 }
        } else {
            IsbnCheck::BadChecksum { normalized: s }
        }
    } else if is_isbn10_shape(&s) {
        if is_valid_isbn10(&s) {
            IsbnCheck::Valid {
                isbn13: isbn10_to_13(&s),
                isbn10: Some(s),
            }
        } else {
            IsbnCheck::BadChecksum { normalized: s }
        }
    } else {
        IsbnCheck::NotIsbn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(isbn13: &str, isbn10: Option<&str>) -> IsbnCheck {
        IsbnCheck::Valid {
            isbn13: isbn13.into(),
            isbn10: isbn10.map(Into::into),
        }
    }

    #[test]
    fn classifies_identifiers() {
        let table: &[(&str, IsbnCheck)] = &[
            ("0441013597", valid("9780441013593", Some("0441013597"))),
            ("0-441-01359-7", valid("9780441013593", Some("0441013597"))),
            ("9780441013593", valid("9780441013593", Some("0441013597"))),
            (
                "978-0-441-01359-3",
                valid("9780441013593", Some("0441013597")),
            ),
            ("080442957X", valid("9780804429573", Some("080442957X"))),
            ("080442957x", valid("9780804429573", Some("080442957X"))),
            ("9791032305690", valid("9791032305690", None)),
            (
                "0441013598",
                IsbnCheck::BadChecksum {
                    normalized: "0441013598".into(),
                },
            ),
            (
                "9780441013594",
                IsbnCheck::BadChecksum {
                    normalized: "9780441013594".into(),
                },
            ),
            ("B08ZYQT962", IsbnCheck::NotIsbn),
            ("12345", IsbnCheck::NotIsbn),
            ("", IsbnCheck::NotIsbn),
            ("97804410135930", IsbnCheck::NotIsbn),
            ("X441013597", IsbnCheck::NotIsbn),
            ("978044101359X", IsbnCheck::NotIsbn),
        ];
        for (raw, want) in table {
            assert_eq!(&classify(raw), want, "{raw}");
        }
    }

    #[test]
    fn conversions_round_trip_on_valid_isbn10s() {
        for isbn10 in [
            "0441013597",
            "080442957X",
            "0306406152",
            "0131103628",
            "1566199093",
        ] {
            assert!(is_valid_isbn10(isbn10), "{isbn10}");
            let isbn13 = isbn10_to_13(isbn10);
            assert!(is_valid_isbn13(&isbn13), "{isbn13}");
            assert_eq!(isbn13_to_10(&isbn13).as_deref(), Some(isbn10));
        }
    }
}
