//! Record-level repair of spreadsheet damage: a record wrapped whole in one quoted cell.
//!
//! The cell's content is split again with [`split_fields`], which reads fields as the padded
//! tokenizer does (blanks around a quoted cell are padding). Padded files themselves need no
//! repair here: their records are tokenized that way from the start (see `padded`).

use super::padded::is_padding;
use super::reader::{FieldView, RawRecord};

/// A record's fields after a repair, owned because they no longer sit in the reader's buffer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OwnedRecord {
    data: Vec<u8>,
    /// The end of each kept field in `data`.
    ends: Vec<usize>,
    /// Every field, including those past the cap.
    field_count: usize,
}

impl OwnedRecord {
    pub(crate) fn view(&self) -> FieldView<'_> {
        FieldView::new(&self.data, &self.ends, self.field_count)
    }
}

/// Splits one record's bytes (line break excluded) into unescaped fields, keeping at most
/// `max_fields`. Quoting is RFC 4180 with `"`, plus two leniencies: padding before an opening
/// quote is skipped, and text after a closing quote is kept (as csv-core keeps it), so
/// `  "Doe, Jane"  ,x` is the two fields `Doe, Jane  ` and `x`. An unclosed quote runs to the
/// end. Unquoted fields keep their padding; cells are trimmed later anyway.
pub(crate) fn split_fields(bytes: &[u8], delimiter: u8, max_fields: usize) -> OwnedRecord {
    let mut record = OwnedRecord::default();
    let mut i = 0;
    loop {
        let keep = record.field_count < max_fields;
        let push = |record: &mut OwnedRecord, byte: u8| {
            if keep {
                record.data.push(byte);
            }
        };
        let mut j = i;
        while bytes.get(j).is_some_and(|&b| is_padding(b, delimiter)) {
            j += 1;
        }
        if bytes.get(j) == Some(&b'"') {
            j += 1;
            while let Some(&byte) = bytes.get(j) {
                j += 1;
                if byte != b'"' {
                    push(&mut record, byte);
                } else if bytes.get(j) == Some(&b'"') {
                    push(&mut record, b'"');
                    j += 1;
                } else {
                    break;
                }
            }
        } else {
            j = i;
        }
        while let Some(&byte) = bytes.get(j).filter(|&&b| b != delimiter) {
            push(&mut record, byte);
            j += 1;
        }
        if keep {
            record.ends.push(record.data.len());
        }
        record.field_count += 1;
        if j >= bytes.len() {
            return record;
        }
        i = j + 1;
    }
}

/// Unwraps a record that a spreadsheet saved as one quoted cell holding the whole line (its
/// inner quotes doubled, which csv-core has already undone), often followed by a stray `;`.
///
/// It is unambiguous only when all of these hold, else `None`: the header has at least three
/// columns; the record is one field (with a `;` delimiter, the stray `;` makes empty fields
/// after it) that is quoted in the file, closed, and holds the delimiter; and unwrapped it has
/// at least three fields, exactly the header's count or, after a stray `;`, no more than it.
/// A title with commas in a row that still has its other cells (`"Dune, Messiah",,`) is
/// therefore left alone; one written alone on its line with exactly as many commas as the
/// header has columns would not be, which no export writes.
pub(crate) fn unwrap_wrapped(
    record: &RawRecord<'_>,
    raw: &[u8],
    delimiter: u8,
    column_count: usize,
) -> Option<OwnedRecord> {
    if column_count < 3 || record.too_long {
        return None;
    }
    let mut fields = record.fields();
    let first = fields.next()?;
    let one_cell = record.field_count == 1
        || (delimiter == b';' && fields.all(|f| f.iter().all(u8::is_ascii_whitespace)));
    let quoted = raw.iter().find(|&&b| !is_padding(b, delimiter)) == Some(&b'"');
    if !one_cell || !quoted || !first.contains(&delimiter) {
        return None;
    }
    // The wrapping cell must be closed: an unclosed quote that swallowed the rest of the file
    // is not a record someone wrapped.
    let closed = trim_end_matching(strip_line_break(raw), |b| {
        b.is_ascii_whitespace() || b == b';' || b == delimiter
    })
    .ends_with(b"\"");
    if !closed {
        return None;
    }
    // Blanks are trimmed, but never the delimiter: a tab-separated row may end in empty cells.
    let blank = |b: u8| b.is_ascii_whitespace() && b != delimiter;
    let trimmed = trim_end_matching(first, blank);
    let (content, stray_semicolon) = match trimmed.strip_suffix(b";") {
        Some(content) if delimiter != b';' => {
            (trim_end_matching(content, |b| b == b';' || blank(b)), true)
        }
        _ => (trimmed, false),
    };
    let unwrapped = split_fields(content, delimiter, column_count);
    let count = unwrapped.field_count;
    let fits = count == column_count || (stray_semicolon && count <= column_count);
    (count >= 3 && fits).then_some(unwrapped)
}

fn trim_end_matching(bytes: &[u8], strip: impl Fn(u8) -> bool) -> &[u8] {
    let end = bytes.iter().rposition(|&b| !strip(b)).map_or(0, |i| i + 1);
    bytes.get(..end).unwrap_or_default()
}

fn strip_line_break(raw: &[u8]) -> &[u8] {
    trim_end_matching(raw, |b| b == b'\r' || b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipelines::csv::reader::{Dialect, RecordReader, Step};
    use crate::pipelines::csv::Cursor;

    fn fields(record: &OwnedRecord) -> Vec<String> {
        let view = record.view();
        (0..view.kept())
            .map(|i| String::from_utf8_lossy(view.field(i).unwrap_or_default()).into_owned())
            .collect()
    }

    #[test]
    fn splits_with_padding_around_quotes() {
        type Case = (&'static [u8], u8, usize, &'static [&'static str], usize);
        let cases: &[Case] = &[
            (b"a,b,c", b',', 9, &["a", "b", "c"], 3),
            (b"a,,", b',', 9, &["a", "", ""], 3),
            (b"", b',', 9, &[""], 1),
            (
                b"1  ,  \"Doe, Jane\"  , x ",
                b',',
                9,
                &["1  ", "Doe, Jane  ", " x "],
                3,
            ),
            (b"\"say \"\"hi\"\"\",x", b',', 9, &["say \"hi\"", "x"], 2),
            (b"\"multi\nline\",x", b',', 9, &["multi\nline", "x"], 2),
            (b"\"ab\"c,d", b',', 9, &["abc", "d"], 2),
            (b"ab\"c,d", b',', 9, &["ab\"c", "d"], 2),
            (b"\"unclosed, still", b',', 9, &["unclosed, still"], 1),
            (b"a\t \"b\tc\" \td", b'\t', 9, &["a", "b\tc ", "d"], 3),
            // With a tab delimiter only spaces are padding.
            (b"a;  \"b;c\";d", b';', 9, &["a", "b;c", "d"], 3),
            (b"a,b,c,d", b',', 2, &["a", "b"], 4),
            (b"a,b,c,d", b',', 0, &[], 4),
        ];
        for (bytes, delimiter, max, want, count) in cases {
            let record = split_fields(bytes, *delimiter, *max);
            assert_eq!(fields(&record), *want, "{}", bytes.escape_ascii());
            assert_eq!(record.field_count, *count, "{}", bytes.escape_ascii());
        }
    }

    /// Reads the first record of `file` with a comma reader and runs `f` on it and its bytes.
    fn with_record<T>(file: &[u8], f: impl FnOnce(&RawRecord<'_>, &[u8]) -> T) -> T {
        with_record_in(file, b',', f)
    }

    fn with_record_in<T>(
        file: &[u8],
        delimiter: u8,
        f: impl FnOnce(&RawRecord<'_>, &[u8]) -> T,
    ) -> T {
        let dialect = Dialect {
            delimiter,
            ..Dialect::default()
        };
        let mut reader = RecordReader::with_dialect(Cursor { offset: 0, line: 1 }, 64, dialect);
        let (step, used) = reader.next(file, true);
        let Step::Record(record) = step else {
            panic!("no record in {}", file.escape_ascii())
        };
        f(&record, &file[..used])
    }

    #[test]
    fn unwraps_only_unambiguous_wrapped_records() {
        type Case = (
            &'static str,
            &'static [u8],
            usize,
            Option<&'static [&'static str]>,
        );
        let cases: &[Case] = &[
            (
                "wrapped with a stray semicolon",
                b"\"1,\"\"Dune, Deluxe\"\",Frank Herbert,=\"\"0441013597\"\"\";\n",
                4,
                Some(&["1", "Dune, Deluxe", "Frank Herbert", "=\"0441013597\""]),
            ),
            (
                "several stray semicolons and blanks",
                b"\"1,Dune,Frank Herbert\" ;; \n",
                5,
                Some(&["1", "Dune", "Frank Herbert"]),
            ),
            (
                "exact column count without semicolon",
                b"\"1,Dune,Frank Herbert\"\n",
                3,
                Some(&["1", "Dune", "Frank Herbert"]),
            ),
            (
                "a quoted first cell with its row's other cells",
                b"\"1,Dune,Frank Herbert\",,\n",
                3,
                None,
            ),
            (
                "fewer fields without a stray semicolon",
                b"\"1,Dune,Frank\"\n",
                5,
                None,
            ),
            (
                "a title with commas in a wide file",
                b"\"Dune, Messiah\"\n",
                3,
                None,
            ),
            ("too few columns", b"\"Dune, Frank Herbert\";\n", 2, None),
            ("not quoted", b"Dune;\n", 3, None),
            ("no delimiter inside", b"\"Dune\";\n", 3, None),
            ("other fields present", b"\"a,b,c\",x\n", 3, None),
            ("an unclosed quote", b"\"a,b,c\nd", 3, None),
            ("too many fields", b"\"a,b,c,d\";\n", 3, None),
        ];
        let tab = with_record_in(b"\"1\tDune\t\";\n", b'\t', |record, raw| {
            unwrap_wrapped(record, raw, b'\t', 3)
        });
        assert_eq!(
            tab.as_ref().map(fields),
            Some(vec!["1".into(), "Dune".into(), "".into()])
        );
        let semicolon = with_record_in(b"\"1;Dune;Frank Herbert\";;\n", b';', |record, raw| {
            unwrap_wrapped(record, raw, b';', 3)
        });
        assert_eq!(
            semicolon.as_ref().map(fields),
            Some(vec!["1".into(), "Dune".into(), "Frank Herbert".into()])
        );
        for (name, file, columns, want) in cases {
            let got = with_record(file, |record, raw| {
                unwrap_wrapped(record, raw, b',', *columns)
            });
            let got = got.as_ref().map(fields);
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, want, "{name}");
        }
    }
}
