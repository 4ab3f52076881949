//! A resumable RFC 4180 record reader over byte slices of any size, with physical line numbers.

use super::padded::PaddedReader;
use super::Cursor;
use csv_core::{ReadRecordResult, Reader, ReaderBuilder};

/// Records whose bytes (line break excluded) exceed this are reported, not parsed: it bounds
/// the memory one hostile row can take.
pub const MAX_RECORD_BYTES: u64 = 1 << 20;

const INITIAL_DATA_CAPACITY: usize = 4 * 1024;

/// One record as the file holds it: unescaped field bytes, not yet decoded.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// Where the record's first byte is.
    pub start: Cursor,
    /// Every field the record has, including those past the reader's field cap.
    pub field_count: usize,
    /// Longer than [`MAX_RECORD_BYTES`]: its fields were dropped and read as absent.
    pub too_long: bool,
    /// False when a kept field is not UTF-8 (fields past the cap are checked as one run).
    pub valid_utf8: bool,
    /// Every field is empty or ASCII whitespace; never true for a record that is too long.
    pub blank: bool,
    data: &'a [u8],
    ends: &'a [usize],
}

impl<'a> RawRecord<'a> {
    /// The field at `index`, if it exists and is within the reader's field cap.
    pub fn field(&self, index: usize) -> Option<&'a [u8]> {
        self.view().field(index)
    }

    /// The fields as a view that a repaired record can offer too.
    pub fn view(&self) -> FieldView<'a> {
        FieldView::new(self.data, self.ends, self.field_count)
    }

    /// The fields within the reader's field cap, in order.
    pub fn fields(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.ends.len()).filter_map(|index| self.field(index))
    }

    /// The bytes of the fields past the cap, run together; empty when there are none.
    fn overflow(&self) -> &'a [u8] {
        let kept_end = self.ends.last().copied().unwrap_or(0);
        self.data.get(kept_end..).unwrap_or_default()
    }
}

/// A record's unescaped fields: consecutive bytes and the end of each kept field.
#[derive(Debug, Clone, Copy)]
pub struct FieldView<'a> {
    data: &'a [u8],
    ends: &'a [usize],
    field_count: usize,
}

impl<'a> FieldView<'a> {
    pub(crate) fn new(data: &'a [u8], ends: &'a [usize], field_count: usize) -> Self {
        Self {
            data,
            ends,
            field_count,
        }
    }

    /// The field at `index`, if it exists and was kept.
    pub fn field(&self, index: usize) -> Option<&'a [u8]> {
        let end = *self.ends.get(index)?;
        let start = match index.checked_sub(1) {
            Some(previous) => *self.ends.get(previous)?,
            None => 0,
        };
        self.data.get(start..end)
    }

    /// How many fields were kept (at most the reader's field cap).
    pub fn kept(&self) -> usize {
        self.ends.len()
    }

    /// How many fields the record has, kept or not.
    pub fn field_count(&self) -> usize {
        self.field_count
    }
}

/// What one call to [`RecordReader::next`] found.
#[derive(Debug)]
pub enum Step<'r> {
    Record(RawRecord<'r>),
    /// The input ended inside a record or before the next one; feed more bytes.
    NeedInput,
    /// The input ended and `eof` was given: there are no more records.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    BetweenRecords,
    InRecord,
    Finished,
}

/// How a file writes its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    pub delimiter: u8,
    pub quote: u8,
    /// Blanks before an opening quote are padding (see the `padded` module); quotes are then
    /// always `"`.
    pub padded: bool,
}

impl Default for Dialect {
    fn default() -> Self {
        Self {
            delimiter: b',',
            quote: b'"',
            padded: false,
        }
    }
}

/// csv-core, or the padded-file tokenizer that keeps its contract. One lives per slice call,
/// so the size gap costs nothing worth a box on the common path.
#[allow(clippy::large_enum_variant)]
enum Tokenizer {
    Core(Reader),
    Padded(PaddedReader),
}

impl Tokenizer {
    fn read_record(
        &mut self,
        input: &[u8],
        output: &mut [u8],
        ends: &mut [usize],
    ) -> (ReadRecordResult, usize, usize, usize) {
        match self {
            Self::Core(csv) => csv.read_record(input, output, ends),
            Self::Padded(padded) => padded.read_record(input, output, ends),
        }
    }
}

/// Splits a stream of bytes into records. It is fed consecutive slices; it keeps a partial
/// record between calls, so it never needs to see a byte twice.
pub struct RecordReader {
    csv: Tokenizer,
    phase: Phase,
    offset: u64,
    line: u64,
    /// The last byte counted was `\r`: a `\n` right after it ends the same line.
    after_cr: bool,
    record_start: Cursor,
    record_bytes: u64,
    data: Vec<u8>,
    data_len: usize,
    ends: Vec<usize>,
    overflow_end: [usize; 1],
    field_count: usize,
}

impl RecordReader {
    /// A comma-separated reader whose first input byte is at `start`. At most `max_fields`
    /// fields per record are kept; the rest are only counted.
    pub fn new(start: Cursor, max_fields: usize) -> Self {
        Self::with_dialect(start, max_fields, Dialect::default())
    }

    /// Like [`RecordReader::new`], for the file's own dialect.
    pub fn with_dialect(start: Cursor, max_fields: usize, dialect: Dialect) -> Self {
        let csv = if dialect.padded {
            Tokenizer::Padded(PaddedReader::new(dialect.delimiter))
        } else {
            let mut csv = ReaderBuilder::new()
                .delimiter(dialect.delimiter)
                .quote(dialect.quote)
                .build();
            // csv-core drops a BOM only on its first read, which would make a reader resumed
            // at a record starting with BOM bytes disagree with one that read through. A read
            // that cannot consume anything (no output room) uses up that first read
            // harmlessly; the file's own BOM is handled by `read_header`.
            let _ = csv.read_record(b"x", &mut [], &mut [0]);
            Tokenizer::Core(csv)
        };
        Self {
            csv,
            phase: Phase::BetweenRecords,
            offset: start.offset,
            line: start.line,
            after_cr: false,
            record_start: start,
            record_bytes: 0,
            data: Vec::new(),
            data_len: 0,
            ends: vec![0; max_fields],
            overflow_end: [0],
            field_count: 0,
        }
    }

    /// Where to resume with a fresh reader so that it finds exactly the records this one has
    /// not returned yet.
    pub fn position(&self) -> Cursor {
        match self.phase {
            Phase::InRecord => self.record_start,
            // Whether a `\n` follows the `\r` decides the next line number, and a fresh reader
            // could not know it saw the `\r`; so resume at the `\r` itself.
            _ if self.after_cr => Cursor {
                offset: self.offset.saturating_sub(1),
                line: self.line.saturating_sub(1),
            },
            _ => Cursor {
                offset: self.offset,
                line: self.line,
            },
        }
    }

    /// Consumes line breaks between records so the position lands on the next record's first
    /// byte. Returns the bytes consumed; does nothing inside a record.
    pub fn skip_line_breaks(&mut self, input: &[u8], eof: bool) -> usize {
        if self.phase != Phase::BetweenRecords {
            return 0;
        }
        let skipped = input
            .iter()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
        self.count_lines(input.get(..skipped).unwrap_or_default());
        // A known next byte (or the certainty that there is none) settles the pending `\r`.
        if skipped < input.len() || eof {
            self.after_cr = false;
        }
        skipped
    }

    /// Reads from `input`, the bytes right after everything consumed so far. Returns what it
    /// found and how many bytes of `input` it consumed; call again with the rest.
    pub fn next(&mut self, input: &[u8], eof: bool) -> (Step<'_>, usize) {
        let mut consumed = 0;
        loop {
            let rest = input.get(consumed..).unwrap_or_default();
            match self.phase {
                Phase::Finished => return (Step::End, consumed),
                Phase::BetweenRecords => {
                    consumed += self.skip_line_breaks(rest, eof);
                    if consumed < input.len() {
                        self.begin_record();
                    } else if eof {
                        self.phase = Phase::Finished;
                        return (Step::End, consumed);
                    } else {
                        return (Step::NeedInput, consumed);
                    }
                }
                Phase::InRecord => {
                    if rest.is_empty() && !eof {
                        return (Step::NeedInput, consumed);
                    }
                    self.make_output_room();
                    let ends = match self.ends.get_mut(self.field_count..) {
                        Some(room) if !room.is_empty() => room,
                        _ => &mut self.overflow_end[..],
                    };
                    let output = self.data.get_mut(self.data_len..).unwrap_or_default();
                    let (result, read, written, ended) = self.csv.read_record(rest, output, ends);
                    let read_bytes = rest.get(..read).unwrap_or_default();
                    self.count_lines(read_bytes);
                    consumed += read;
                    self.record_bytes += read as u64;
                    self.data_len += written;
                    self.field_count += ended;
                    match result {
                        ReadRecordResult::Record => {
                            // A record ended by a byte consumed its line break; one ended by
                            // the end of input did not.
                            let terminated = !rest.is_empty();
                            return (Step::Record(self.finish_record(terminated)), consumed);
                        }
                        ReadRecordResult::End => {
                            self.phase = Phase::Finished;
                            return (Step::End, consumed);
                        }
                        ReadRecordResult::InputEmpty
                        | ReadRecordResult::OutputFull
                        | ReadRecordResult::OutputEndsFull => {}
                    }
                }
            }
        }
    }

    fn begin_record(&mut self) {
        self.phase = Phase::InRecord;
        self.record_start = Cursor {
            offset: self.offset,
            line: self.line,
        };
        self.record_bytes = 0;
        self.data_len = 0;
        self.field_count = 0;
    }

    /// Grows the field buffer up to one byte past the record cap. Filling that means the
    /// record is too long whatever follows, so its bytes are dropped and the buffer reused
    /// just to keep the parser moving.
    fn make_output_room(&mut self) {
        if self.data_len < self.data.len() {
            return;
        }
        let limit = MAX_RECORD_BYTES as usize + 1;
        if self.data.len() < limit {
            let grown = (self.data.len() * 2).clamp(INITIAL_DATA_CAPACITY, limit);
            self.data.resize(grown, 0);
        } else {
            self.data_len = 0;
        }
    }

    fn finish_record(&mut self, terminated: bool) -> RawRecord<'_> {
        self.phase = Phase::BetweenRecords;
        let content_bytes = self.record_bytes.saturating_sub(u64::from(terminated));
        let too_long = content_bytes > MAX_RECORD_BYTES;
        let kept = if too_long {
            0
        } else {
            self.field_count.min(self.ends.len())
        };
        let record = RawRecord {
            start: self.record_start,
            field_count: self.field_count,
            too_long,
            valid_utf8: true,
            blank: false,
            data: self.data.get(..self.data_len).unwrap_or_default(),
            ends: self.ends.get(..kept).unwrap_or_default(),
        };
        if too_long {
            return record;
        }
        let runs = || record.fields().chain(std::iter::once(record.overflow()));
        // Valid as a whole with every field starting on a character boundary means every
        // field is valid; only records failing that cheap check are examined field by field.
        let valid_utf8 = match std::str::from_utf8(record.data) {
            Ok(text) => record.ends.iter().all(|&end| text.is_char_boundary(end)),
            Err(_) => runs().all(|run| std::str::from_utf8(run).is_ok()),
        };
        let blank = runs().all(|run| run.iter().all(u8::is_ascii_whitespace));
        RawRecord {
            valid_utf8,
            blank,
            ..record
        }
    }

    fn count_lines(&mut self, bytes: &[u8]) {
        self.offset += bytes.len() as u64;
        let Some(&last) = bytes.last() else {
            return;
        };
        // One pass without a branch per byte: every record's bytes come through here when
        // they are parsed (and when a padded file's rows are counted), and a first pass
        // looking for any break before a byte-by-byte match cost a second pass over nearly
        // every record.
        // A `\r` ends a line; a `\n` does unless a `\r` came right before it.
        let mut breaks = 0u64;
        let mut previous_cr = self.after_cr;
        for &byte in bytes {
            let cr = byte == b'\r';
            breaks += u64::from(cr | ((byte == b'\n') & !previous_cr));
            previous_cr = cr;
        }
        self.line += breaks;
        self.after_cr = last == b'\r';
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as owned strings, for comparisons.
    #[derive(Debug, Clone, PartialEq)]
    struct Owned {
        line: u64,
        offset: u64,
        fields: Vec<String>,
        valid_utf8: bool,
        blank: bool,
        too_long: bool,
        field_count: usize,
    }

    fn own(record: &RawRecord<'_>) -> Owned {
        Owned {
            line: record.start.line,
            offset: record.start.offset,
            fields: record
                .fields()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect(),
            valid_utf8: record.valid_utf8,
            blank: record.blank,
            too_long: record.too_long,
            field_count: record.field_count,
        }
    }

    /// Reads everything in one call per record.
    fn read_all(input: &[u8], max_fields: usize) -> Vec<Owned> {
        read_streamed(input, max_fields, input.len().max(1))
    }

    /// Feeds one long-lived reader consecutive chunks of `chunk` bytes.
    fn read_streamed(input: &[u8], max_fields: usize, chunk: usize) -> Vec<Owned> {
        let mut reader = RecordReader::new(Cursor { offset: 0, line: 1 }, max_fields);
        let mut records = Vec::new();
        let mut fed = 0;
        let mut pos = 0;
        loop {
            let eof = fed == input.len();
            let (step, used) = reader.next(&input[pos..fed], eof);
            pos += used;
            match step {
                Step::Record(record) => records.push(own(&record)),
                Step::NeedInput => fed = (fed + chunk).min(input.len()),
                Step::End => return records,
            }
        }
    }

    /// Restarts a fresh reader at the saved position after every chunk, re-feeding what the
    /// last one left unconsumed, as the glue does across evictions.
    fn read_resumed(input: &[u8], max_fields: usize, chunk: usize) -> Vec<Owned> {
        let mut cursor = Cursor { offset: 0, line: 1 };
        let mut records = Vec::new();
        let mut fed = 0;
        loop {
            fed = (fed + chunk).min(input.len());
            let eof = fed == input.len();
            let mut reader = RecordReader::new(cursor, max_fields);
            let window = &input[cursor.offset as usize..fed];
            let mut pos = 0;
            loop {
                let (step, used) = reader.next(&window[pos..], eof);
                pos += used;
                match step {
                    Step::Record(record) => records.push(own(&record)),
                    Step::NeedInput => break,
                    Step::End => return records,
                }
            }
            reader.skip_line_breaks(&window[pos..], eof);
            cursor = reader.position();
        }
    }

    fn fields(record: &Owned) -> Vec<&str> {
        record.fields.iter().map(String::as_str).collect()
    }

    #[test]
    fn quoting_edge_cases() {
        type Case = (
            &'static str,
            &'static [u8],
            &'static [(u64, &'static [&'static str])],
        );
        let cases: &[Case] = &[
            ("plain", b"a,b,c\n", &[(1, &["a", "b", "c"])]),
            (
                "no trailing newline",
                b"a,b\nc,d",
                &[(1, &["a", "b"]), (2, &["c", "d"])],
            ),
            ("comma in quotes", b"\"a,b\",c\n", &[(1, &["a,b", "c"])]),
            (
                "doubled quotes",
                b"\"say \"\"hi\"\"\",x\n",
                &[(1, &["say \"hi\"", "x"])],
            ),
            (
                "LF in quotes",
                b"\"a\nb\",c\nd\n",
                &[(1, &["a\nb", "c"]), (3, &["d"])],
            ),
            (
                "CRLF in quotes",
                b"\"a\r\nb\",c\r\nd\r\n",
                &[(1, &["a\r\nb", "c"]), (3, &["d"])],
            ),
            ("empty quoted", b"\"\",x,\"\"\n", &[(1, &["", "x", ""])]),
            ("empty unquoted", b",,\n", &[(1, &["", "", ""])]),
            (
                "quote inside unquoted",
                b"ab\"c,d\n",
                &[(1, &["ab\"c", "d"])],
            ),
            (
                "text after closing quote",
                b"\"ab\"c,d\n",
                &[(1, &["abc", "d"])],
            ),
            ("unterminated quote", b"\"abc\nx", &[(1, &["abc\nx"])]),
            (
                "CRLF file",
                b"a,b\r\nc,d\r\n",
                &[(1, &["a", "b"]), (2, &["c", "d"])],
            ),
            (
                "lone CR file",
                b"a\rb\rc",
                &[(1, &["a"]), (2, &["b"]), (3, &["c"])],
            ),
            (
                "blank lines",
                b"\n\na\n\n\r\n\nb\n\n",
                &[(3, &["a"]), (7, &["b"])],
            ),
            (
                "whitespace line",
                b"a\n  \t \nb\n",
                &[(1, &["a"]), (2, &["  \t "]), (3, &["b"])],
            ),
            (
                "goodreads isbn",
                b"\"=\"\"0441013597\"\"\",\"=\"\"\"\"\"\n",
                &[(1, &["=\"0441013597\"", "=\"\""])],
            ),
            (
                "BOM mid-file is data",
                b"a\n\xEF\xBB\xBFb\n",
                &[(1, &["a"]), (2, &["\u{FEFF}b"])],
            ),
            ("only blank", b"\r\n\n\r", &[]),
            ("empty", b"", &[]),
        ];
        for (name, input, want) in cases {
            let got = read_all(input, 16);
            let got: Vec<(u64, Vec<&str>)> = got.iter().map(|r| (r.line, fields(r))).collect();
            let want: Vec<(u64, Vec<&str>)> = want.iter().map(|(l, f)| (*l, f.to_vec())).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn flags_blank_and_invalid_utf8_records() {
        let cases: &[(&[u8], bool, bool)] = &[
            (b"a,b\n", false, true),
            (b" , \t,\"\"\n", true, true),
            (b"\"  \"\n", true, true),
            (b"caf\xE9\n", false, false),
            // Each half of a split sequence is invalid even though the pair would be valid.
            (b"\xC3,\xA9\n", false, false),
            (b"\xC3\xA9\n", false, true),
        ];
        for (input, blank, valid) in cases {
            let records = read_all(input, 4);
            assert_eq!(records.len(), 1, "{input:?}");
            assert_eq!(
                (records[0].blank, records[0].valid_utf8),
                (*blank, *valid),
                "{input:?}"
            );
        }
    }

    #[test]
    fn caps_fields_but_counts_them_all() {
        let records = read_all(b"a,b,c,d\xFF,e\nx\n", 2);
        assert_eq!(fields(&records[0]), ["a", "b"]);
        assert_eq!(records[0].field_count, 5);
        assert!(
            !records[0].valid_utf8,
            "bytes past the cap are still checked"
        );
        assert_eq!(fields(&records[1]), ["x"]);
        let none_kept = read_all(b"a,b\n", 0);
        assert_eq!(
            (none_kept[0].field_count, none_kept[0].fields.len()),
            (2, 0)
        );
    }

    #[test]
    fn skips_past_records_that_are_too_long() {
        let cap = MAX_RECORD_BYTES as usize;
        let cases: &[(&str, Vec<u8>, bool)] = &[
            (
                "at the cap",
                [vec![b'a'; cap], b"\nok\n".to_vec()].concat(),
                false,
            ),
            ("at the cap at end of input", vec![b'a'; cap], false),
            (
                "one over",
                [vec![b'a'; cap + 1], b"\nok\n".to_vec()].concat(),
                true,
            ),
            (
                "quoted with line breaks",
                [
                    b"\"".to_vec(),
                    b"x\n".repeat(cap / 2 + 1),
                    b"\"\nok\n".to_vec(),
                ]
                .concat(),
                true,
            ),
            ("over at end of input", vec![b'a'; cap + 1], true),
        ];
        for (name, input, too_long) in cases {
            for chunk in [input.len(), 65_536, 1_000_003] {
                let records = read_streamed(input, 4, chunk);
                assert_eq!(records[0].too_long, *too_long, "{name} chunk {chunk}");
                assert_eq!(records[0].line, 1, "{name}");
                if *too_long {
                    assert!(records[0].fields.is_empty(), "{name}");
                } else {
                    assert_eq!(records[0].fields[0].len(), cap, "{name}: fields intact");
                }
                if input.ends_with(b"ok\n") {
                    let last = records.last().unwrap();
                    assert_eq!(fields(last), ["ok"], "{name}");
                    let breaks = input.iter().filter(|&&b| b == b'\n').count() as u64;
                    assert_eq!(last.line, breaks, "{name}");
                }
            }
        }
    }

    const TRICKY: &[u8] = b"\xEF\xBB\xBFTitle,Author,ISBN\r\n\
        \"Commas, inside\",\"Doe, Jane\",\"=\"\"0441013597\"\"\"\r\n\
        \r\n\
        \"Multi\r\nline\nreview\rhere\",x\"y,\r\
        plain,,\n\
        \n   \n\
        \"\"\"quoted\"\"\",caf\xE9,\"=\"\"\"\"\"\r\
        \n\"unterminated,\r\nstill\n";

    #[test]
    fn streamed_and_resumed_reads_match_one_pass_at_every_chunk_size() {
        let whole = read_all(TRICKY, 3);
        let lines: Vec<u64> = whole.iter().map(|r| r.line).collect();
        assert_eq!(lines, [1, 2, 4, 8, 10, 11, 12]);
        assert_eq!(
            fields(&whole[2]),
            ["Multi\r\nline\nreview\rhere", "x\"y", ""]
        );
        assert!(whole[4].blank);
        for chunk in 1..=64 {
            assert_eq!(
                read_streamed(TRICKY, 3, chunk),
                whole,
                "streamed, chunk {chunk}"
            );
            assert_eq!(
                read_resumed(TRICKY, 3, chunk),
                whole,
                "resumed, chunk {chunk}"
            );
        }
    }

    #[test]
    fn position_never_splits_a_crlf() {
        let input = b"a\r\nb\r\n";
        let mut reader = RecordReader::new(Cursor { offset: 0, line: 1 }, 4);
        let (step, used) = reader.next(&input[..2], false);
        assert!(matches!(step, Step::Record(_)));
        assert_eq!(used, 2);
        assert_eq!(reader.position(), Cursor { offset: 1, line: 1 });
        assert_eq!(reader.skip_line_breaks(&input[2..], false), 1);
        assert_eq!(reader.position(), Cursor { offset: 3, line: 2 });
    }
}
