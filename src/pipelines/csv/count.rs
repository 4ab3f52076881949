//! Counting an upload's data records without parsing them: the total a job announces at start.
//!
//! [`super::RecordReader`] copies every field out, counts lines and checks UTF-8, and the import
//! does all of that again when it parses; a count needs none of it. This scanner follows
//! csv-core's rules for the dialects [`super::Header`] can name (quote `"` doubled to escape
//! it, `\r`, `\n` or `\r\n` ending a record, no comments or escape byte), and so finds the
//! same records: once a record shows a byte that is not blank, only its quotes (with the byte
//! before each) and line breaks decide where it ends, and those are found with `memchr`.

use super::reader::MAX_RECORD_BYTES;
use memchr::{memchr, memchr3};

const QUOTE: u8 = b'"';

fn is_line_break(byte: u8) -> bool {
    byte == b'\n' || byte == b'\r'
}

/// Where a record ends and whether it counts.
struct Scanned {
    /// The offset of the byte that ended the record (a line break), or the input's length.
    end: usize,
    /// Some field holds a byte that is not ASCII whitespace.
    not_blank: bool,
}

/// Counts the records of `input`, which starts on a record boundary, that are not blank: the
/// records csv-core finds with `delimiter`, less those whose fields are all empty or ASCII
/// whitespace (a record longer than [`MAX_RECORD_BYTES`] always counts: its fields are never
/// read). `count_data_records` gives the same number for the same dialect (property tests in
/// `slice.rs` and the dialect fuzz target hold them equal).
pub fn count_records(input: &[u8], delimiter: u8) -> u64 {
    let mut count = 0;
    let mut at = 0;
    loop {
        at += input
            .get(at..)
            .unwrap_or_default()
            .iter()
            .take_while(|&&byte| is_line_break(byte))
            .count();
        if at >= input.len() {
            return count;
        }
        let record = scan_record(input, at, delimiter);
        let too_long = (record.end - at) as u64 > MAX_RECORD_BYTES;
        count += u64::from(record.not_blank || too_long);
        at = record.end;
    }
}

/// Scans the record starting at `start` (not a line break) to its end.
fn scan_record(input: &[u8], start: usize, delimiter: u8) -> Scanned {
    // Byte by byte while every field read so far is blank: only content bytes decide that,
    // and telling content from structure needs to know where each field starts.
    let mut at = start;
    let mut quoted = false;
    let mut field_start = true;
    while let Some(&byte) = input.get(at) {
        if quoted {
            if byte == QUOTE {
                if input.get(at + 1) == Some(&QUOTE) {
                    // An escaped quote: content, and not blank.
                    return scan_rest(input, at + 2, true, delimiter);
                }
                quoted = false;
            } else if !byte.is_ascii_whitespace() {
                return scan_rest(input, at + 1, true, delimiter);
            }
        } else if is_line_break(byte) {
            return Scanned {
                end: at,
                not_blank: false,
            };
        } else if byte == delimiter {
            field_start = true;
        } else if byte == QUOTE && field_start {
            quoted = true;
            field_start = false;
        } else if byte.is_ascii_whitespace() {
            field_start = false;
        } else {
            return scan_rest(input, at + 1, false, delimiter);
        }
        at += 1;
    }
    Scanned {
        end: input.len(),
        not_blank: false,
    }
}

/// Finds the end of a record already known not to be blank, resuming at `at` (past the
/// record's first byte), inside quotes or not. Outside quotes a quote opens a quoted field
/// only right after a delimiter read outside quotes; a delimiter inside quotes is never
/// followed by a quote read outside them.
fn scan_rest(input: &[u8], mut at: usize, mut quoted: bool, delimiter: u8) -> Scanned {
    let end_of_input = Scanned {
        end: input.len(),
        not_blank: true,
    };
    loop {
        if quoted {
            let Some(found) = input.get(at..).and_then(|rest| memchr(QUOTE, rest)) else {
                return end_of_input;
            };
            at += found + 1;
            // A doubled quote is an escaped one; any other byte after a quote ends the quotes
            // and is read as outside them.
            if input.get(at) == Some(&QUOTE) {
                at += 1;
            } else {
                quoted = false;
            }
        } else {
            let Some(found) = input
                .get(at..)
                .and_then(|rest| memchr3(QUOTE, b'\n', b'\r', rest))
            else {
                return end_of_input;
            };
            at += found;
            if input.get(at) != Some(&QUOTE) {
                return Scanned {
                    end: at,
                    not_blank: true,
                };
            }
            quoted = at.checked_sub(1).and_then(|before| input.get(before)) == Some(&delimiter);
            at += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_counted_as_csv_core_splits_them() {
        // (input, delimiter, records that count)
        let cases: &[(&str, u8, u64)] = &[
            ("", b',', 0),
            ("\r\n\n\r", b',', 0),
            ("a,b\nc,d\n", b',', 2),
            ("a,b\r\nc,d", b',', 2),
            ("a\rb\r\rc", b',', 3),
            // Blank records: empty fields, blanks, quoted blanks, bare delimiters.
            (",,\n  ,\t\n\"\",\" \"\nx\n", b',', 1),
            // A tab delimits in a tab file and is a blank in a comma file.
            ("\t\t\n\"\t\"\n", b'\t', 0),
            // Line breaks and delimiters inside quotes stay in the field.
            ("\"a\nb\",c\n\"d,\re\"\n", b',', 2),
            // A doubled quote is content: not blank, and it does not close the field.
            ("\"\"\"\"\n\"\"\"\n\"\nx\"\n", b',', 3),
            // A quote inside an unquoted field is a plain byte: the line break ends the record.
            ("a\"b\nc\n", b',', 2),
            ("ab,c\"d\ne\n", b',', 2),
            // After a closing quote, the rest of the field is read outside quotes.
            ("\"a\"b\"\nc\n", b',', 2),
            // A quote after a delimiter opens a field, after a blank it does not.
            ("x, \"a\nb\"\n", b',', 2),
            ("x,\"a\nb\"\n", b',', 1),
            ("x;\"a\nb\"\n", b';', 1),
            ("x;\"a\nb\"\n", b',', 2),
            // An unterminated quote runs to the end and is one record.
            ("x,\"a\nb\nc", b',', 1),
            ("\"  \n  ", b',', 0),
            ("\" \n y", b',', 1),
        ];
        for &(input, delimiter, expected) in cases {
            assert_eq!(
                count_records(input.as_bytes(), delimiter),
                expected,
                "{input:?} with {:?}",
                delimiter as char
            );
        }
    }

    #[test]
    fn a_blank_record_counts_only_once_it_is_too_long_to_read() {
        let limit = MAX_RECORD_BYTES as usize;
        for (blanks, expected) in [(limit, 0), (limit + 1, 1)] {
            let mut input = vec![b' '; blanks];
            input.extend_from_slice(b"\nx\n");
            assert_eq!(count_records(&input, b','), 1 + expected, "{blanks} blanks");
        }
    }
}
