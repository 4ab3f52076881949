//! How an upload's bytes are written: its delimiter, the quote of its header, and its encoding.
//!
//! # The encoding rule
//!
//! csv-core splits bytes, so text is decoded one record at a time, never as a whole-file pass.
//! What the job knows is decided once, at creation, from the header window (the first 64 KiB
//! at most) and stored in the [`Header`](super::Header) as an [`Encoding`]:
//!
//! - a UTF-8 BOM, or non-ASCII bytes that are all valid UTF-8: [`Encoding::Utf8`];
//! - any byte sequence that is not UTF-8 (a sequence cut by the window's end does not count):
//!   [`Encoding::Windows1252`];
//! - nothing but ASCII: [`Encoding::Undecided`].
//!
//! Each record is then decoded as UTF-8 when its bytes are valid UTF-8, else as Windows-1252;
//! a `Windows1252` file reads every record as Windows-1252 even when a record happens to be
//! valid UTF-8 (`Ã©` is mojibake in such a file, not `é`). Windows-1252 text is almost never
//! valid UTF-8 by accident, so the per-record test is what makes an all-ASCII window safe. A
//! record that falls back in a file whose window was UTF-8 is mixed-encoding damage and gets
//! a warning; in an undecided file the fallback is the file's encoding showing, and is silent.
//! No byte is ever refused or replaced: Windows-1252 (as WHATWG defines it) maps all 256.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// What the header window said about the file's text encoding (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    Utf8,
    Windows1252,
    /// Only ASCII so far: each record decides for itself, silently.
    #[default]
    Undecided,
}

/// The three separators real exports use. Stored by name so a stored header reads clearly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delimiter {
    #[default]
    Comma,
    Tab,
    Semicolon,
}

impl Delimiter {
    /// Ties go to the earlier entry: a comma file is the common case.
    const ALL: [Delimiter; 3] = [Delimiter::Comma, Delimiter::Tab, Delimiter::Semicolon];

    pub fn byte(self) -> u8 {
        match self {
            Self::Comma => b',',
            Self::Tab => b'\t',
            Self::Semicolon => b';',
        }
    }
}

impl Encoding {
    /// Decides from the header window; `eof` says the window is the whole file, so a
    /// sequence cut at its end is really broken rather than continued in the next bytes.
    pub(crate) fn detect(window: &[u8], bom: bool, eof: bool) -> Self {
        if bom {
            return Self::Utf8;
        }
        let valid = match std::str::from_utf8(window) {
            Ok(_) => window.len(),
            // `error_len() == None`: the window ends inside a sequence that may be completed.
            Err(e) if e.error_len().is_none() && !eof => e.valid_up_to(),
            Err(_) => return Self::Windows1252,
        };
        if window.get(..valid).unwrap_or_default().is_ascii() {
            Self::Undecided
        } else {
            Self::Utf8
        }
    }

    /// Whether a record with this UTF-8 validity is read as Windows-1252.
    pub(crate) fn record_is_1252(self, valid_utf8: bool) -> bool {
        self == Self::Windows1252 || !valid_utf8
    }
}

/// The delimiter of the first line that has content, counting separators outside double
/// quotes; when there are none outside (a header wrapped whole in quotes), those inside.
/// Most frequent wins, ties in the order comma, tab, semicolon; none at all is a comma (a
/// one-column file).
pub(crate) fn detect_delimiter(body: &[u8]) -> Delimiter {
    let line = first_content_line(body);
    let mut outside = [0usize; 3];
    let mut inside = [0usize; 3];
    let mut quoted = false;
    for &byte in line {
        if byte == b'"' {
            quoted = !quoted;
            continue;
        }
        if let Some(i) = Delimiter::ALL.iter().position(|d| d.byte() == byte) {
            if quoted {
                inside[i] += 1;
            } else {
                outside[i] += 1;
            }
        }
    }
    let counts = if outside.iter().any(|&n| n > 0) {
        outside
    } else {
        inside
    };
    let mut best = Delimiter::Comma;
    let mut best_count = 0;
    for (delimiter, count) in Delimiter::ALL.into_iter().zip(counts) {
        if count > best_count {
            best = delimiter;
            best_count = count;
        }
    }
    best
}

/// The first line (line breaks inside double quotes included) that holds more than
/// whitespace and separators, as the reader would skip such lines as blank.
fn first_content_line(body: &[u8]) -> &[u8] {
    let mut start = 0;
    while start < body.len() {
        let mut quoted = false;
        let mut end = start;
        while let Some(&byte) = body.get(end) {
            match byte {
                b'"' => quoted = !quoted,
                b'\r' | b'\n' if !quoted => break,
                _ => {}
            }
            end += 1;
        }
        let line = body.get(start..end).unwrap_or_default();
        let blank = line
            .iter()
            .all(|b| b.is_ascii_whitespace() || matches!(b, b',' | b';'));
        if !blank {
            return line;
        }
        start = end + 1;
    }
    &[]
}

/// The first line with content is padded to line up columns: a blank (a space, or a tab when
/// the tab is not the delimiter) next to a delimiter outside quotes, or at the line's start.
/// Such a file's cells may be padded around their quotes too, so it is read with the padded
/// tokenizer; for a file that merely has a space after its commas that changes nothing.
pub(crate) fn detect_padding(body: &[u8], delimiter: Delimiter, quote: u8) -> bool {
    let delimiter = delimiter.byte();
    let blank = |b: u8| b == b' ' || (b == b'\t' && delimiter != b'\t');
    let line = first_content_line(body);
    if line.first().copied().is_some_and(blank) {
        return true;
    }
    let mut quoted = false;
    let mut previous: Option<u8> = None;
    for &byte in line {
        if byte == quote {
            quoted = !quoted;
        } else if !quoted {
            let padded = match previous {
                Some(p) => (p == delimiter && blank(byte)) || (blank(p) && byte == delimiter),
                None => false,
            };
            if padded {
                return true;
            }
        }
        previous = Some(byte);
    }
    false
}

/// The header line starts with a single quote: the older LibraryThing export writes its
/// names as `'TITLE','AUTHOR (first, last)',...`, so `'` is the header's quote character.
pub(crate) fn header_quote(body: &[u8]) -> u8 {
    let line = first_content_line(body);
    match line.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'\'') => b'\'',
        _ => b'"',
    }
}

/// Windows-1252's 0x80..=0x9F, as WHATWG's index defines them (the five unassigned bytes map
/// to the C1 controls of the same value); 0xA0..=0xFF are Latin-1 and map to themselves.
/// A 32-entry table is all the wasm bundle needs for the one legacy encoding real exports
/// use; `encoding_rs` would bring tables for every WHATWG encoding.
const WINDOWS_1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

fn windows_1252_char(byte: u8) -> char {
    match byte {
        0x80..=0x9F => WINDOWS_1252_HIGH
            .get(usize::from(byte - 0x80))
            .copied()
            .unwrap_or(char::REPLACEMENT_CHARACTER),
        _ => char::from(byte),
    }
}

/// A field's text: UTF-8 (lossy, though the caller only asks for UTF-8 when the record is
/// valid), or Windows-1252. ASCII is the same in both and is borrowed.
pub(crate) fn decode(bytes: &[u8], windows_1252: bool) -> Cow<'_, str> {
    if !windows_1252 || bytes.is_ascii() {
        // The strict check is the fast one (from_utf8_lossy walks chunk by chunk), and nearly
        // every field passes it.
        return match std::str::from_utf8(bytes) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(bytes),
        };
    }
    Cow::Owned(bytes.iter().map(|&b| windows_1252_char(b)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_encoding_from_the_window() {
        let cases: &[(&[u8], bool, bool, Encoding)] = &[
            (b"Title\nDune\n", false, true, Encoding::Undecided),
            (b"Title\nDune\n", true, true, Encoding::Utf8),
            ("Title\nCaf\u{e9}\n".as_bytes(), false, true, Encoding::Utf8),
            (b"Title\nCaf\xE9\n", false, true, Encoding::Windows1252),
            (b"Title\nCaf\xE9\n", true, true, Encoding::Utf8),
            // A sequence cut by the window's end may continue in the next bytes...
            (b"Title\nCaf\xC3", false, false, Encoding::Undecided),
            (b"Title\nCaf\xC3\xA9 \xE2\x82", false, false, Encoding::Utf8),
            // ...unless the window is the whole file.
            (b"Title\nCaf\xC3", false, true, Encoding::Windows1252),
            (b"Title\n\xC3(\n", false, false, Encoding::Windows1252),
            (b"", false, true, Encoding::Undecided),
        ];
        for (window, bom, eof, want) in cases {
            assert_eq!(
                Encoding::detect(window, *bom, *eof),
                *want,
                "{:?}",
                window.escape_ascii()
            );
        }
    }

    #[test]
    fn records_fall_back_to_windows_1252() {
        let cases = [
            (Encoding::Utf8, true, false),
            (Encoding::Utf8, false, true),
            (Encoding::Undecided, true, false),
            (Encoding::Undecided, false, true),
            (Encoding::Windows1252, true, true),
            (Encoding::Windows1252, false, true),
        ];
        for (encoding, valid, want) in cases {
            assert_eq!(encoding.record_is_1252(valid), want, "{encoding:?} {valid}");
        }
    }

    #[test]
    fn detects_delimiters() {
        let cases: &[(&[u8], Delimiter)] = &[
            (b"Title,Author,ISBN\n", Delimiter::Comma),
            (
                b"Book Id\tTitle\tSort Character\tPrimary Author\n",
                Delimiter::Tab,
            ),
            (b"Title;Author;ISBN\r\n", Delimiter::Semicolon),
            (b"Title\n", Delimiter::Comma),
            (b"", Delimiter::Comma),
            // Separators inside quotes do not count while there are others.
            (b"\"a;b;c;d\",Title,Author\n", Delimiter::Comma),
            (b"\"Title, Author\"\tISBN\n", Delimiter::Tab),
            // A header wrapped whole in quotes is read by what it wraps.
            (b"\"Book Id,Title,Author\"\n", Delimiter::Comma),
            (b"\"Title;Author\"\n", Delimiter::Semicolon),
            // A spreadsheet's trailing separator does not outvote the real ones.
            (b"Book Id,Title,Author,BCID;\n", Delimiter::Comma),
            // Blank lines and rows of bare separators before the header are skipped.
            (b"\r\n;;;\n , ,\nTitle\tAuthor\n", Delimiter::Tab),
            // Ties go to the comma, then the tab.
            (b"a,b\tc\n", Delimiter::Comma),
            (b"a;b\tc\n", Delimiter::Tab),
            // Only the first line with content counts.
            (b"Title\nx;y;z\n", Delimiter::Comma),
        ];
        for (body, want) in cases {
            assert_eq!(detect_delimiter(body), *want, "{}", body.escape_ascii());
        }
    }

    #[test]
    fn detects_padded_lines() {
        let cases: &[(&[u8], Delimiter, bool)] = &[
            (b"Book Id  ,Title    ,Author\n", Delimiter::Comma, true),
            (b"Book Id, Title, Author\n", Delimiter::Comma, true),
            (b"  Title,Author\n", Delimiter::Comma, true),
            (b"Title,Author\n", Delimiter::Comma, false),
            (b"Primary Author\tBook Title\n", Delimiter::Tab, false),
            (b"Title \tAuthor\n", Delimiter::Tab, true),
            (b"\"Author , Last\",Title\n", Delimiter::Comma, false),
            (b"\n\nTitle;Author ;\n", Delimiter::Semicolon, true),
            (b"", Delimiter::Comma, false),
        ];
        assert!(!detect_padding(
            b"'TITLE','AUTHOR (first, last)'\n",
            Delimiter::Comma,
            b'\''
        ));
        for (body, delimiter, want) in cases {
            assert_eq!(
                detect_padding(body, *delimiter, b'"'),
                *want,
                "{}",
                body.escape_ascii()
            );
        }
    }

    #[test]
    fn finds_the_header_quote() {
        let cases: &[(&[u8], u8)] = &[
            (b"'TITLE','AUTHOR (first, last)'\n", b'\''),
            (b"\n  'TITLE','DATE'\n", b'\''),
            (b"\"'TITLE'\",\"'DATE'\"\n", b'"'),
            (b"Title,Author\n", b'"'),
            (b"", b'"'),
        ];
        for (body, want) in cases {
            assert_eq!(header_quote(body), *want, "{}", body.escape_ascii());
        }
    }

    #[test]
    fn decodes_windows_1252() {
        let cases: &[(&[u8], bool, &str)] = &[
            (b"plain", true, "plain"),
            (b"Caf\xE9", true, "Caf\u{e9}"),
            (
                b"\x93quoted\x94 \x96 \x80 \x99",
                true,
                "\u{201C}quoted\u{201D} \u{2013} \u{20AC} \u{2122}",
            ),
            (
                b"\x81\x8D\x8F\x90\x9D",
                true,
                "\u{81}\u{8D}\u{8F}\u{90}\u{9D}",
            ),
            (b"\xA0\xFF\x9F", true, "\u{A0}\u{FF}\u{178}"),
            ("Caf\u{e9}".as_bytes(), false, "Caf\u{e9}"),
            (b"Caf\xE9", false, "Caf\u{FFFD}"),
        ];
        for (bytes, windows_1252, want) in cases {
            assert_eq!(decode(bytes, *windows_1252), *want, "{bytes:?}");
        }
        // Every byte decodes to exactly one character.
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&all, true).chars().count(), 256);
    }
}
