//! Turning data records into books, errors and warnings, one resumable slice at a time.

use super::book::{
    Admission, Book, BookPatch, BookRef, Deduper, ImportTotals, RowError, RowWarning,
    MAX_FIELD_BYTES,
};
use super::cells::{
    parse_date_read, read_rating, resolve_identifier, split_series, Identifier, IsbnNote, Rating,
};
use super::count::count_records;
use super::dialect::{decode, Encoding};
use super::header::{Header, MAX_HEADER_COLUMNS};
use super::reader::{Dialect, FieldView, RawRecord, RecordReader, Step, MAX_RECORD_BYTES};
use super::repair::unwrap_wrapped;
use super::Cursor;
use crate::text;
use std::borrow::Cow;

const MISSING_TITLE: &str = "missing title";

/// What one call to [`parse_slice`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceOutput {
    pub books: Vec<Book>,
    pub errors: Vec<RowError>,
    pub warnings: Vec<RowWarning>,
    /// Merges of this slice's duplicates into books returned by earlier calls (merges into
    /// this call's own books are already applied). Store them beside the books and apply them
    /// in order when the results are read ([`super::apply_patches`]); replay them into a
    /// rebuilt [`Deduper`] with [`Deduper::remember_patch`].
    pub patches: Vec<BookPatch>,
    /// Where the next call starts; persist it with the totals.
    pub cursor: Cursor,
    /// The whole file has been consumed.
    pub done: bool,
}

/// Parses data records starting at `cursor`. `input` holds the file's bytes from
/// `cursor.offset` onward, and `eof` says whether it reaches the end of the file. Parses at
/// most `max_records` data records (blank ones do not count; with 0 it only skips line
/// breaks), updates `totals`, and returns what it found plus the cursor to resume from. When
/// `eof` is false and a record does not end inside `input`, it stops before that record.
pub fn parse_slice(
    header: &Header,
    input: &[u8],
    cursor: Cursor,
    eof: bool,
    max_records: usize,
    totals: &mut ImportTotals,
    deduper: &mut Deduper,
) -> SliceOutput {
    let mut reader = reader_for(header, cursor);
    let mut output = SliceOutput {
        books: Vec::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
        patches: Vec::new(),
        cursor,
        done: false,
    };
    // The position of this call's first new book: merges into earlier ones become patches.
    let first = BookRef(deduper.len() as u64);
    let mut consumed = 0;
    let mut records = 0;
    while records < max_records {
        let (step, used) = reader.next(input.get(consumed..).unwrap_or_default(), eof);
        consumed += used;
        match step {
            Step::Record(record) if record.blank => {}
            Step::Record(record) => {
                records += 1;
                // A record always ends inside the input it came from, so its bytes are there
                // for the repairs that read them again.
                let start = record.start.offset.saturating_sub(cursor.offset) as usize;
                let raw = input.get(start..consumed).unwrap_or_default();
                import_record(header, &record, raw, first, totals, deduper, &mut output);
            }
            Step::NeedInput | Step::End => break,
        }
    }
    // Landing on the next record's first byte lets `done` be seen without another call.
    consumed += reader.skip_line_breaks(input.get(consumed..).unwrap_or_default(), eof);
    output.cursor = reader.position();
    output.done = eof && consumed >= input.len();
    output
}

/// Counts the data records from `cursor` to the end of `input` (the rest of the file)
/// without mapping them: the total a job announces before it imports. Blank records do not
/// count, exactly as in [`parse_slice`].
pub fn count_data_records(header: &Header, input: &[u8], cursor: Cursor) -> u64 {
    if header.padded {
        return count_with_reader(header, input, cursor);
    }
    count_records(input, header.delimiter.byte())
}

/// The count as the parser's own reader finds it: for padded files, whose tokenizer is not
/// csv-core's, and as the reference the scanner is tested against.
fn count_with_reader(header: &Header, input: &[u8], cursor: Cursor) -> u64 {
    let mut reader = reader_for(header, cursor);
    let mut consumed = 0;
    let mut count = 0;
    loop {
        let (step, used) = reader.next(input.get(consumed..).unwrap_or_default(), true);
        consumed += used;
        match step {
            Step::Record(record) => count += u64::from(!record.blank),
            Step::NeedInput | Step::End => return count,
        }
    }
}

/// `"<books>/<data records>"`.
pub fn success_rate(totals: &ImportTotals) -> String {
    format!("{}/{}", totals.books, totals.data_records)
}

/// A stored header comes back from JSON; the cap keeps a corrupted column count from asking
/// for an absurd allocation, and changes nothing for a header `read_header` made.
fn reader_for(header: &Header, cursor: Cursor) -> RecordReader {
    RecordReader::with_dialect(
        cursor,
        header.column_count.min(MAX_HEADER_COLUMNS),
        Dialect {
            delimiter: header.delimiter.byte(),
            quote: b'"',
            padded: header.padded,
        },
    )
}

/// One record ready to map: its fields (repaired or as read) and how to decode them.
struct Row<'a> {
    fields: FieldView<'a>,
    windows_1252: bool,
    line: u64,
}

impl<'a> Row<'a> {
    /// A field decoded, with its stray control characters made spaces ([`text::without_controls`])
    /// and trimmed; empty when the record is too short to have it.
    fn cell(&self, column: usize) -> Cow<'a, str> {
        match decode(
            self.fields.field(column).unwrap_or_default(),
            self.windows_1252,
        ) {
            Cow::Borrowed(decoded) => match text::without_controls(decoded) {
                Cow::Borrowed(clean) => Cow::Borrowed(clean.trim()),
                Cow::Owned(clean) => Cow::Owned(clean.trim().to_string()),
            },
            Cow::Owned(decoded) => Cow::Owned(text::without_controls(&decoded).trim().to_string()),
        }
    }

    /// A field of the book, cut to [`MAX_FIELD_BYTES`] with a warning when longer.
    fn bounded(
        &self,
        field: &str,
        value: Cow<'a, str>,
        warnings: &mut Vec<RowWarning>,
    ) -> Cow<'a, str> {
        if value.len() <= MAX_FIELD_BYTES {
            return value;
        }
        let warning = format!(
            "{} bytes long: cut to the first {MAX_FIELD_BYTES}",
            value.len()
        );
        self.warn(warnings, field, warning);
        Cow::Owned(text::cut(&value, MAX_FIELD_BYTES).to_string())
    }

    /// A warning about `field`; its text, which may quote the cell, is cut to
    /// [`MAX_FIELD_BYTES`].
    fn warn(&self, warnings: &mut Vec<RowWarning>, field: &str, mut warning: String) {
        text::cut_in_place(&mut warning, MAX_FIELD_BYTES);
        warnings.push(RowWarning {
            line: self.line,
            field: field.to_string(),
            warning,
        });
    }
}

fn import_record(
    header: &Header,
    record: &RawRecord<'_>,
    raw: &[u8],
    first: BookRef,
    totals: &mut ImportTotals,
    deduper: &mut Deduper,
    output: &mut SliceOutput,
) {
    totals.data_records += 1;
    if record.too_long {
        totals.errors += 1;
        output.errors.push(RowError::new(
            record.start.line,
            None,
            format!("record too long: more than {MAX_RECORD_BYTES} bytes"),
        ));
        return;
    }
    let mut warnings = Vec::new();
    let row_warning = |field: &str, warning: &str| RowWarning {
        line: record.start.line,
        field: field.to_string(),
        warning: warning.to_string(),
    };
    if !record.valid_utf8 {
        totals.invalid_utf8_rows += 1;
        // In a file that showed UTF-8 this is damage worth a word; elsewhere it is simply
        // the file's encoding (see the dialect module).
        if header.encoding == Encoding::Utf8 {
            warnings.push(row_warning(
                "record",
                "not valid UTF-8: read as Windows-1252",
            ));
        }
    }
    let repaired = unwrap_wrapped(record, raw, header.delimiter.byte(), header.column_count);
    if repaired.is_some() {
        warnings.push(row_warning(
            "record",
            "the record was saved as one quoted cell: unwrapped",
        ));
    }
    let row = Row {
        fields: repaired
            .as_ref()
            .map_or_else(|| record.view(), |r| r.view()),
        windows_1252: header.encoding.record_is_1252(record.valid_utf8),
        line: record.start.line,
    };
    let book = match record_to_book(header, &row, &mut warnings) {
        Ok(book) => book,
        Err((title, error)) => {
            totals.errors += 1;
            output.errors.push(RowError::new(row.line, title, error));
            return;
        }
    };
    // Warnings are about books kept: a row that became an error says so itself.
    totals.warnings += warnings.len() as u64;
    output.warnings.append(&mut warnings);
    match deduper.admit(&book) {
        Admission::New(_) => {
            totals.books += 1;
            output.books.push(book);
        }
        Admission::Duplicate {
            merged_into,
            filled,
        } => {
            totals.duplicates += 1;
            if filled.is_empty() {
                return;
            }
            let patch = BookPatch::new(merged_into, &filled, &book);
            let here = merged_into
                .0
                .checked_sub(first.0)
                .and_then(|i| output.books.get_mut(i as usize));
            match here {
                Some(kept) => patch.apply(kept),
                None => output.patches.push(patch),
            }
        }
    }
}

/// The book a row describes, or the row error with the title when known. Repairs and values
/// dropped along the way are added to `warnings`.
fn record_to_book(
    header: &Header,
    row: &Row<'_>,
    warnings: &mut Vec<RowWarning>,
) -> Result<Book, (Option<String>, String)> {
    let title = row.cell(header.title);
    let known_title = || Some(title.to_string()).filter(|t| !t.is_empty());
    let field_count = row.fields.field_count();
    if field_count > header.column_count {
        let error = format!(
            "too many fields: {field_count} where the header has {}",
            header.column_count
        );
        return Err((known_title(), error));
    }
    if title.is_empty() {
        return Err((None, MISSING_TITLE.to_string()));
    }
    let identifier_cells: Vec<Cow<'_, str>> = header
        .identifiers
        .iter()
        .map(|&column| row.cell(column))
        .collect();
    let resolved = resolve_identifier(identifier_cells.iter().map(|c| c.as_ref()));
    let (isbn, isbn10, identifier) = match resolved.identifier {
        Identifier::Isbn { isbn13, isbn10 } => (Some(isbn13), isbn10, None),
        Identifier::BadChecksum { normalized } => {
            return Err((
                known_title(),
                format!("invalid ISBN checksum: {normalized}"),
            ));
        }
        Identifier::Other(other) => (None, None, Some(other)),
        Identifier::Absent => (None, None, None),
    };
    for note in resolved.notes {
        let warning = match note {
            IsbnNote::Padded { written, isbn10 } => {
                format!("ISBN-10 {written} had lost its leading zeros: read as {isbn10}")
            }
            IsbnNote::Scientific { written } => format!(
                "ISBN {written} is in scientific notation and its digits are lost: \
                 the book is kept without it"
            ),
            IsbnNote::Several { used, ignored } => {
                format!("several ISBNs in one cell: {used} used, {ignored} ignored")
            }
        };
        row.warn(warnings, "isbn", warning);
    }
    let optional = |column: Option<usize>| {
        column
            .map(|column| row.cell(column))
            .filter(|text| !text.is_empty())
    };
    let rating = optional(header.rating).and_then(|text| match read_rating(&text) {
        Rating::Rated(value) => Some(value),
        Rating::Unrated => None,
        Rating::Unreadable => {
            let warning = format!("rating {text:?} is not a number from 0 to 5: dropped");
            row.warn(warnings, "rating", warning);
            None
        }
    });
    let date_read = header
        .dates_read
        .iter()
        .find_map(|&column| parse_date_read(&row.cell(column)));
    if date_read.is_none() {
        // Read again only on this rare path, so the common one allocates nothing for it.
        let written = header
            .dates_read
            .iter()
            .map(|&column| row.cell(column))
            .find(|cell| !cell.is_empty());
        if let Some(written) = written {
            let warning = format!("date read {written:?} is not a date: dropped");
            row.warn(warnings, "dateRead", warning);
        }
    }
    let title = row.bounded("title", title, warnings);
    let series = split_series(&title);
    let author = optional(header.author).map(|author| row.bounded("author", author, warnings));
    let identifier = identifier.map(|other| {
        row.bounded("identifier", Cow::Owned(other), warnings)
            .into_owned()
    });
    let shelf = optional(header.shelf).map(|shelf| row.bounded("shelf", shelf, warnings));
    Ok(Book {
        author: author.map(Cow::into_owned).unwrap_or_default(),
        isbn,
        isbn10,
        identifier,
        shelf: shelf.map(Cow::into_owned),
        rating,
        date_read,
        series: series.as_ref().map(|s| s.series.to_string()),
        series_number: series.as_ref().map(|s| s.number.to_string()),
        title: title.into_owned(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pipelines::csv::read_header;

    // The real header rows, shared with the header tests; each file adds its own line break.
    use crate::pipelines::csv::header::tests::{GOODREADS, LIBRARYTHING, STORYGRAPH};

    /// Everything a whole import produces.
    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct Import {
        pub books: Vec<Book>,
        pub errors: Vec<RowError>,
        pub warnings: Vec<RowWarning>,
        pub totals: ImportTotals,
    }

    /// Parses a whole file in one call.
    pub(crate) fn import_whole(file: &[u8]) -> Import {
        let (header, cursor) = read_header(file, true).expect("header");
        import_from(&header, file, cursor, &mut |_| (file.len(), usize::MAX))
    }

    /// Drives `parse_slice` like the glue: `next_window(call)` gives how far the file has been
    /// received and the record limit for that call. Every call restarts from the cursor.
    pub(crate) fn import_from(
        header: &Header,
        file: &[u8],
        start: Cursor,
        next_window: &mut dyn FnMut(usize) -> (usize, usize),
    ) -> Import {
        let mut import = Import {
            books: vec![],
            errors: vec![],
            warnings: vec![],
            totals: ImportTotals::default(),
        };
        let mut deduper = Deduper::default();
        let mut cursor = start;
        let mut received = start.offset as usize;
        for call in 0.. {
            let (window, max_records) = next_window(call);
            received = received.max(window).min(file.len());
            let eof = received == file.len();
            let input = &file[cursor.offset as usize..received];
            let out = parse_slice(
                header,
                input,
                cursor,
                eof,
                max_records,
                &mut import.totals,
                &mut deduper,
            );
            assert!(out.cursor.offset >= cursor.offset, "cursor went backwards");
            import.books.extend(out.books);
            crate::pipelines::csv::apply_patches(&mut import.books, BookRef(0), &out.patches);
            import.errors.extend(out.errors);
            import.warnings.extend(out.warnings);
            cursor = out.cursor;
            if out.done {
                break;
            }
            assert!(call < 10 * file.len() + 100, "no progress");
        }
        import
    }

    /// Feeds `chunk` more bytes per call with no record limit.
    pub(crate) fn import_in_chunks(file: &[u8], chunk: usize) -> Import {
        let (header, cursor) = read_header(file, true).expect("header");
        let start = cursor.offset as usize;
        import_from(&header, file, cursor, &mut |call| {
            (start + (call + 1) * chunk, usize::MAX)
        })
    }

    fn book(title: &str, author: &str) -> Book {
        crate::pipelines::csv::book::tests::book(title, author, None)
    }

    fn error(line: u64, title: Option<&str>, error: &str) -> RowError {
        RowError::new(line, title.map(Into::into), error.into())
    }

    /// A Goodreads row from the fields that matter; the rest are filled in.
    fn goodreads_row(title: &str, isbn: &str, isbn13: &str, rating: &str, date: &str) -> String {
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        format!(
            "1,{},Author A,\"A, Author\",,{},{},{rating},4.01,Pub,Paperback,300,2001,1999,\
             {date},2020/01/01,,,read,,,,1,0\n",
            quote(title),
            quote(isbn),
            quote(isbn13)
        )
    }

    #[test]
    fn maps_goodreads_rows() {
        type Case = (&'static str, String, Result<Book, RowError>);
        let valid = |f: fn(&mut Book)| {
            let mut b = book("T", "Author A");
            b.shelf = Some("read".into());
            f(&mut b);
            Ok(b)
        };
        let cases: Vec<Case> = vec![
            (
                "ISBN13 preferred",
                goodreads_row("T", "=\"0441013597\"", "=\"9780441013593\"", "4", ""),
                valid(|b| {
                    b.isbn = Some("9780441013593".into());
                    b.isbn10 = Some("0441013597".into());
                    b.rating = Some(4.0);
                }),
            ),
            (
                "ISBN-10 only: ISBN-13 derived",
                goodreads_row("T", "=\"080442957X\"", "=\"\"", "5", "2023/08/15"),
                valid(|b| {
                    b.isbn = Some("9780804429573".into());
                    b.isbn10 = Some("080442957X".into());
                    b.rating = Some(5.0);
                    b.date_read = Some("2023-08-15".into());
                }),
            ),
            (
                "979: no ISBN-10",
                goodreads_row("T", "=\"\"", "=\"9791032305690\"", "0", ""),
                valid(|b| b.isbn = Some("9791032305690".into())),
            ),
            (
                "empty ISBNs, unrated, bad date",
                goodreads_row("T", "=\"\"", "=\"\"", "0", "2023/02/30"),
                valid(|_| {}),
            ),
            (
                "bad ISBN13 checksum",
                goodreads_row("T", "=\"\"", "=\"9780441013594\"", "3", ""),
                Err(error(2, Some("T"), "invalid ISBN checksum: 9780441013594")),
            ),
            (
                "bad ISBN-10 checksum",
                goodreads_row("T", "=\"0441013598\"", "=\"\"", "3", ""),
                Err(error(2, Some("T"), "invalid ISBN checksum: 0441013598")),
            ),
            (
                "missing title",
                goodreads_row("  ", "=\"\"", "=\"9780441013593\"", "3", ""),
                Err(error(2, None, MISSING_TITLE)),
            ),
            (
                "series",
                goodreads_row(
                    "The Name of the Wind (The Kingkiller Chronicle, #1)",
                    "",
                    "",
                    "",
                    "",
                ),
                valid(|b| {
                    b.title = "The Name of the Wind (The Kingkiller Chronicle, #1)".into();
                    b.series = Some("The Kingkiller Chronicle".into());
                    b.series_number = Some("1".into());
                }),
            ),
            (
                "not a series",
                goodreads_row("Dune (40th Anniversary Edition)", "", "", "", ""),
                valid(|b| b.title = "Dune (40th Anniversary Edition)".into()),
            ),
            (
                "too many fields",
                goodreads_row("T", "", "", "", "").replace('\n', ",extra\n"),
                Err(error(
                    2,
                    Some("T"),
                    "too many fields: 25 where the header has 24",
                )),
            ),
            (
                "fewer fields are fine",
                "1,T,Author A\n".to_string(),
                Ok(book("T", "Author A")),
            ),
        ];
        for (name, row, want) in cases {
            let import = import_whole(format!("{GOODREADS}\n{row}").as_bytes());
            let got = match (import.books.as_slice(), import.errors.as_slice()) {
                ([book], []) => Ok(book.clone()),
                ([], [error]) => Err(error.clone()),
                _ => panic!("{name}: {import:?}"),
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn maps_storygraph_and_librarything_rows() {
        let storygraph = |isbn: &str, last: &str, dates: &str, stars: &str| {
            format!(
                "{STORYGRAPH}\nPiranesi,Susanna Clarke,,{isbn},digital,read,2023/01/01,\
                 {last},{dates},1,,,,,,,,{stars},,,,,No\n"
            )
        };
        let librarything = |isbn: &str, isbns: &str, rating: &str, date: &str| {
            let mut fields = vec![""; 49];
            fields[0] = "1";
            fields[1] = "Piranesi";
            fields[3] = "\"Clarke, Susanna\"";
            fields[10] = rating;
            fields[25] = date;
            fields[29] = "Your library";
            fields[33] = isbn;
            fields[34] = isbns;
            format!("{LIBRARYTHING}\n{}\n", fields.join(","))
        };
        // (name, file, isbn, identifier, rating, date read)
        type Case = (
            &'static str,
            String,
            Option<&'static str>,
            Option<&'static str>,
            Option<f64>,
            Option<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "storygraph ASIN",
                storygraph("B08ZYQT962", "", "", ""),
                None,
                Some("B08ZYQT962"),
                None,
                None,
            ),
            (
                "storygraph ISBN",
                storygraph("9781635575637", "", "", "4.5"),
                Some("9781635575637"),
                None,
                Some(4.5),
                None,
            ),
            (
                "storygraph ranges",
                storygraph(
                    "",
                    "",
                    "\"2022/12/01-2022/12/10, 2023/01/05-2023/01/20\"",
                    "4",
                ),
                None,
                None,
                Some(4.0),
                Some("2023-01-20"),
            ),
            (
                "storygraph last date wins",
                storygraph("", "2023/02/02", "2023/01/05-2023/01/20", ""),
                None,
                None,
                None,
                Some("2023-02-02"),
            ),
            (
                "storygraph bad last date",
                storygraph("", "2023/02/31", "2023/01/05-2023/01/20", ""),
                None,
                None,
                None,
                Some("2023-01-20"),
            ),
            (
                "librarything bracketed",
                librarything("[163557563X]", "", "4.5", "2023-08-15"),
                Some("9781635575637"),
                None,
                Some(4.5),
                Some("2023-08-15"),
            ),
            (
                "librarything list",
                librarything("", "\"1635575632, 9781635575637\"", "", ""),
                Some("9781635575637"),
                None,
                None,
                None,
            ),
        ];
        for (name, file, isbn, identifier, rating, date) in cases {
            let import = import_whole(file.as_bytes());
            assert_eq!(import.errors, [], "{name}");
            let [got] = import.books.as_slice() else {
                panic!("{name}: {import:?}")
            };
            assert_eq!(got.title, "Piranesi", "{name}");
            assert!(got.author.contains("Susanna"), "{name}");
            assert_eq!(got.isbn.as_deref(), isbn, "{name}");
            assert_eq!(got.identifier.as_deref(), identifier, "{name}");
            assert_eq!(got.rating, rating, "{name}");
            assert_eq!(got.date_read.as_deref(), date, "{name}");
            let shelf = if name.starts_with("storygraph") {
                "read"
            } else {
                "Your library"
            };
            assert_eq!(got.shelf.as_deref(), Some(shelf), "{name}");
        }
    }

    #[test]
    fn counts_and_reports_every_record() {
        let file = b"Title,Author,ISBN\n\
            A,X,0441013597\n\
            \n\
            \"B\nmultiline\",Y,\n\
            ,Z,\n\
            \x20 , \t,\n\
            a!,x,\n\
            C,\xFFbad,9780441013594\n\
            D,W,978-0-441-01359-3\n\
            E,V,1,2\n";
        let import = import_whole(file);
        let titles: Vec<&str> = import.books.iter().map(|b| b.title.as_str()).collect();
        assert_eq!(titles, ["A", "B\nmultiline"]);
        assert_eq!(
            import.errors,
            [
                error(6, None, MISSING_TITLE),
                error(9, Some("C"), "invalid ISBN checksum: 9780441013594"),
                error(11, Some("E"), "too many fields: 4 where the header has 3"),
            ]
        );
        // The one non-UTF-8 row became an error, which says enough.
        assert_eq!(import.warnings, []);
        let totals = ImportTotals {
            data_records: 7,
            books: 2,
            errors: 3,
            duplicates: 2,
            invalid_utf8_rows: 1,
            warnings: 0,
        };
        assert_eq!(import.totals, totals);
        assert_eq!(success_rate(&import.totals), "2/7");
    }

    fn warning(line: u64, field: &str, warning: &str) -> RowWarning {
        RowWarning {
            line,
            field: field.into(),
            warning: warning.into(),
        }
    }

    #[test]
    fn reads_non_utf8_records_as_windows_1252() {
        const FALLBACK: &str = "not valid UTF-8: read as Windows-1252";
        // (name, header window, file, books, warnings)
        type Case = (
            &'static str,
            &'static [u8],
            &'static [u8],
            Vec<Book>,
            Vec<RowWarning>,
        );
        let cases: Vec<Case> = vec![
            (
                "a Windows-1252 file",
                b"Title,Author\nCaf\xE9,Ren\xE9\n",
                b"Title,Author\nCaf\xE9,Ren\xE9\n",
                vec![book("Caf\u{e9}", "Ren\u{e9}")],
                vec![],
            ),
            (
                // Mojibake in a Windows-1252 file stays what its bytes say.
                "a Windows-1252 file with a valid UTF-8 row",
                b"Title\nCaf\xE9\n",
                b"Title\nCaf\xE9\nCaf\xC3\xA9\n",
                vec![book("Caf\u{e9}", ""), book("Caf\u{c3}\u{a9}", "")],
                vec![],
            ),
            (
                "an ASCII window: each record decides, silently",
                b"Title,Author\n",
                b"Title,Author\nCaf\xE9,X\nNa\xC3\xAFve,Y\n",
                vec![book("Caf\u{e9}", "X"), book("Na\u{ef}ve", "Y")],
                vec![],
            ),
            (
                "a UTF-8 file with one broken row",
                "Title,Author\nNa\u{ef}ve,Y\n".as_bytes(),
                b"Title,Author\nNa\xC3\xAFve,Y\n\x93Quoted\x94,X\n",
                vec![book("Na\u{ef}ve", "Y"), book("\u{201c}Quoted\u{201d}", "X")],
                vec![warning(3, "record", FALLBACK)],
            ),
        ];
        for (name, window, file, books, warnings) in cases {
            let (header, start) = read_header(window, false).expect(name);
            let import = import_from(&header, file, start, &mut |_| (file.len(), usize::MAX));
            assert_eq!(import.books, books, "{name}");
            assert_eq!(import.warnings, warnings, "{name}");
            let not_utf8 = file
                .split(|&b| b == b'\n')
                .filter(|line| std::str::from_utf8(line).is_err())
                .count() as u64;
            assert_eq!(import.totals.invalid_utf8_rows, not_utf8, "{name}");
        }
    }

    #[test]
    fn reports_records_that_are_too_long_and_carries_on() {
        let huge = "x".repeat(MAX_RECORD_BYTES as usize);
        let file = format!("Title,Review\nA,ok\nB,\"{huge}\"\nC,ok\n");
        for chunk in [file.len(), 300_000] {
            let import = import_in_chunks(file.as_bytes(), chunk);
            let titles: Vec<&str> = import.books.iter().map(|b| b.title.as_str()).collect();
            assert_eq!(titles, ["A", "C"], "chunk {chunk}");
            let want = format!("record too long: more than {MAX_RECORD_BYTES} bytes");
            assert_eq!(import.errors, [error(3, None, &want)], "chunk {chunk}");
        }
    }

    #[test]
    fn honours_record_limits_and_reports_done() {
        let file = b"Title\nA\n\nB\nC\n\n\n";
        let (header, start) = read_header(file, true).unwrap();
        let mut totals = ImportTotals::default();
        let mut deduper = Deduper::default();
        let mut cursor = start;
        // (max records, titles, cursor after, done)
        let steps: &[(usize, &[&str], Cursor, bool)] = &[
            (0, &[], Cursor { offset: 6, line: 2 }, false),
            (1, &["A"], Cursor { offset: 9, line: 4 }, false),
            (
                2,
                &["B", "C"],
                Cursor {
                    offset: 15,
                    line: 8,
                },
                true,
            ),
            (
                5,
                &[],
                Cursor {
                    offset: 15,
                    line: 8,
                },
                true,
            ),
        ];
        for (max, titles, after, done) in steps {
            let input = &file[cursor.offset as usize..];
            let out = parse_slice(
                &header,
                input,
                cursor,
                true,
                *max,
                &mut totals,
                &mut deduper,
            );
            let got: Vec<&str> = out.books.iter().map(|b| b.title.as_str()).collect();
            assert_eq!(
                (got.as_slice(), out.cursor, out.done),
                (*titles, *after, *done),
                "max {max}"
            );
            cursor = out.cursor;
        }
        assert_eq!(totals.data_records, 3);
    }

    #[test]
    fn stops_before_a_record_that_does_not_end_in_the_input() {
        let file = b"Title\nA\n\"B\nstill B";
        let (header, start) = read_header(file, true).unwrap();
        let mut totals = ImportTotals::default();
        let mut deduper = Deduper::default();
        let input = &file[start.offset as usize..];
        let out = parse_slice(&header, input, start, false, 10, &mut totals, &mut deduper);
        assert_eq!(out.books.len(), 1);
        assert_eq!(
            (out.cursor, out.done),
            (Cursor { offset: 8, line: 3 }, false)
        );
        let rest = &file[out.cursor.offset as usize..];
        let out = parse_slice(
            &header,
            rest,
            out.cursor,
            true,
            10,
            &mut totals,
            &mut deduper,
        );
        assert_eq!(out.books, [book("B\nstill B", "")]);
        assert_eq!(
            (out.cursor, out.done),
            (
                Cursor {
                    offset: file.len() as u64,
                    line: 4
                },
                true
            )
        );
    }

    #[test]
    fn survives_a_corrupted_stored_header() {
        let header = Header {
            column_count: usize::MAX,
            title: 10_000,
            author: Some(usize::MAX),
            identifiers: vec![usize::MAX],
            ..Header::from_names(vec!["Title".to_string()]).unwrap()
        };
        let mut totals = ImportTotals::default();
        let start = Cursor { offset: 0, line: 2 };
        let out = parse_slice(
            &header,
            b"a,b
",
            start,
            true,
            10,
            &mut totals,
            &mut Deduper::default(),
        );
        assert_eq!(out.errors, [error(2, None, MISSING_TITLE)]);
        assert!(out.done);
    }

    /// Every quoting and line-break edge case in one file, with an exact expected outcome.
    const TRICKY: &[u8] = b"\xEF\xBB\xBFTitle,Author,ISBN,Review\r\n\
        \"Commas, inside\",\"Doe, Jane\",\"=\"\"0441013597\"\"\",\r\n\
        \r\n\
        \"Quote \"\"inside\"\"\",Roe,,\"Multi\r\nline\nreview\rhere\"\r\
        \"\",Nobody,,\n\
        \n   \n,,,\n\
        Lenient \"quote,Poe,=\"\"\"\",\"=\"\"\"\"\"\n\
        Caf\xE9,Zoe,9780441013594,x\n\
        Extra,Fields,,,x\r\n\
        \"Unterminated,Lo,,\r\nstill open";

    #[test]
    fn tricky_file_has_the_exact_expected_outcome() {
        let import = import_whole(TRICKY);
        let mut commas = book("Commas, inside", "Doe, Jane");
        commas.isbn = Some("9780441013593".into());
        commas.isbn10 = Some("0441013597".into());
        let lenient = book("Lenient \"quote", "Poe");
        assert_eq!(
            import.books,
            [
                commas,
                book("Quote \"inside\"", "Roe"),
                lenient,
                book("Unterminated,Lo,,\r\nstill open", ""),
            ]
        );
        assert_eq!(
            import.errors,
            [
                error(8, None, MISSING_TITLE),
                error(
                    13,
                    Some("Caf\u{e9}"),
                    "invalid ISBN checksum: 9780441013594"
                ),
                error(
                    14,
                    Some("Extra"),
                    "too many fields: 5 where the header has 4"
                ),
            ]
        );
        assert_eq!(import.warnings, []);
        assert_eq!(import.totals.invalid_utf8_rows, 1);
    }

    #[test]
    fn resuming_at_every_byte_boundary_changes_nothing() {
        for file in [
            TRICKY,
            format!(
                "{GOODREADS}\n{}",
                goodreads_row("A (S, #1)", "=\"0441013597\"", "", "3", "2023/08/15")
            )
            .as_bytes(),
        ] {
            let whole = import_whole(file);
            for chunk in 1..=64 {
                assert_eq!(import_in_chunks(file, chunk), whole, "chunk {chunk}");
            }
            // Record limits split the work differently but never change it.
            let (header, start) = read_header(file, true).unwrap();
            for max in 1..=3 {
                let limited = import_from(&header, file, start, &mut |_| (file.len(), max));
                assert_eq!(limited, whole, "max {max}");
            }
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties {
    use super::tests::{import_from, Import};
    use super::*;
    use crate::pipelines::csv::header::Header;
    use crate::pipelines::csv::read_header;
    use crate::pipelines::csv::Delimiter;
    use proptest::prelude::*;

    /// Bytes biased towards the ones the parser treats specially.
    fn csv_bytes() -> impl Strategy<Value = Vec<u8>> {
        let byte = prop_oneof![
            4 => prop::sample::select(b"ab,\"\r\n =#()[]0123456789X/-".to_vec()),
            1 => any::<u8>(),
        ];
        prop::collection::vec(byte, 0..400)
    }

    fn header(names: &[&str]) -> Header {
        Header::from_names(names.iter().map(|s| s.to_string()).collect()).unwrap()
    }

    fn sliced(header: &Header, file: &[u8], sizes: &[usize], limits: &[usize]) -> Import {
        let start = Cursor { offset: 0, line: 2 };
        let mut received = 0;
        import_from(header, file, start, &mut |call| {
            received += sizes[call % sizes.len()];
            (received, limits[call % limits.len()])
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn read_header_never_panics(bytes in csv_bytes(), eof in any::<bool>()) {
            let _ = read_header(&bytes, eof);
        }

        #[test]
        fn sliced_parsing_equals_whole_parsing(
            file in csv_bytes(),
            sizes in prop::collection::vec(1usize..=64, 1..8),
            limits in prop::collection::vec(1usize..=5, 1..4),
        ) {
            for header in [header(&["Title", "Author", "ISBN"]), header(&["ISBN13", "title"])] {
                let whole = sliced(&header, &file, &[file.len().max(1)], &[usize::MAX]);
                let t = whole.totals;
                prop_assert_eq!(t.data_records, t.books + t.errors + t.duplicates);
                prop_assert_eq!(sliced(&header, &file, &sizes, &limits), whole);
            }
        }

        #[test]
        fn header_then_slices_never_panic(file in csv_bytes()) {
            if let Ok((header, cursor)) = read_header(&file, true) {
                let input = file.get(cursor.offset as usize..).unwrap_or_default();
                let mut totals = ImportTotals::default();
                let out = parse_slice(&header, input, cursor, true, usize::MAX, &mut totals, &mut Deduper::default());
                prop_assert!(out.done);
                prop_assert_eq!(count_data_records(&header, input, cursor), totals.data_records);
            }
        }

        #[test]
        fn the_scanner_counts_what_the_reader_counts(
            file in prop::collection::vec(prop::sample::select(b"a ,;\t\"\r\n\x0b\x0c".to_vec()), 0..300),
            delimiter in prop::sample::select(vec![Delimiter::Comma, Delimiter::Tab, Delimiter::Semicolon]),
        ) {
            let mut header = header(&["Title", "Author"]);
            header.delimiter = delimiter;
            let start = Cursor { offset: 0, line: 2 };
            // The reader's count from every record boundary, so resumed counts agree too.
            prop_assert_eq!(count_records(&file, delimiter.byte()), count_with_reader(&header, &file, start));
        }
    }

    /// A blank record counts once it is too long to read: at the limit, one byte over, with
    /// each kind of line break after it and none.
    #[test]
    fn the_scanner_and_the_reader_agree_at_the_record_limit() {
        let header = header(&["Title", "Author"]);
        let start = Cursor { offset: 0, line: 2 };
        let limit = MAX_RECORD_BYTES as usize;
        for blanks in [limit - 1, limit, limit + 1] {
            for end in ["", "\n", "\r\n", "\r", "\nx\n"] {
                let mut file = vec![b' '; blanks];
                file.extend_from_slice(end.as_bytes());
                assert_eq!(
                    count_records(&file, b','),
                    count_with_reader(&header, &file, start),
                    "{blanks} blanks, then {end:?}"
                );
            }
        }
    }
}
