//! The record tokenizer for files padded to line up their columns: RFC 4180 as csv-core reads
//! it, except that blanks before an opening quote are padding.
//!
//! csv-core reads `1 , "Doe, Jane" ,x` as four fields, the quote being text once a blank came
//! first; worse, a quote right after a delimiter inside such a cell opens a quoted field that
//! can run over the line break, so the record boundary itself is lost. Repairing fields after
//! csv-core has split them cannot undo that, so a file whose header is padded is tokenized by
//! this reader instead, with csv-core's incremental contract ([`PaddedReader::read_record`]).

use csv_core::ReadRecordResult;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Skip,
    Write,
    EndField,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a field's first byte; padding here is skipped.
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: a second quote is a literal one, anything else closes it.
    QuoteInQuoted,
}

/// Tokenizes padded records. Quotes are `"`; `\r`, `\n` and `\r\n` end a record, as for the
/// csv-core reader it stands in for.
#[derive(Debug, Clone)]
pub(crate) struct PaddedReader {
    delimiter: u8,
    state: State,
    /// Bytes written for the current record, across calls: field ends are counted from it.
    record_len: usize,
}

/// Padding: spaces, and tabs unless the tab is the delimiter.
pub(crate) fn is_padding(byte: u8, delimiter: u8) -> bool {
    byte == b' ' || (byte == b'\t' && delimiter != b'\t')
}

impl PaddedReader {
    pub(crate) fn new(delimiter: u8) -> Self {
        Self {
            delimiter,
            state: State::FieldStart,
            record_len: 0,
        }
    }

    /// Like `csv_core::Reader::read_record`: reads at most one record from `input`, writing
    /// unescaped field bytes to `output` and field end positions (counted from the record's
    /// first byte) to `ends`; returns the outcome and the bytes read, written and ended. An
    /// empty `input` means the data is over and ends the record in progress. Text after a
    /// closing quote is kept, as csv-core keeps it.
    pub(crate) fn read_record(
        &mut self,
        input: &[u8],
        output: &mut [u8],
        ends: &mut [usize],
    ) -> (ReadRecordResult, usize, usize, usize) {
        let (mut read, mut written, mut ended) = (0, 0, 0);
        if input.is_empty() {
            return match ends.first_mut() {
                Some(end) => {
                    *end = self.record_len;
                    self.finish_record();
                    (ReadRecordResult::Record, 0, 0, 1)
                }
                None => (ReadRecordResult::OutputEndsFull, 0, 0, 0),
            };
        }
        while let Some(&byte) = input.get(read) {
            let ends_field = byte == self.delimiter || byte == b'\r' || byte == b'\n';
            let (action, next) = match (self.state, byte) {
                (State::FieldStart, b) if is_padding(b, self.delimiter) => {
                    (Action::Skip, State::FieldStart)
                }
                (State::FieldStart, b'"') => (Action::Skip, State::Quoted),
                (State::Quoted, b'"') => (Action::Skip, State::QuoteInQuoted),
                (State::Quoted, _) => (Action::Write, State::Quoted),
                // The second quote of a doubled pair is the literal quote.
                (State::QuoteInQuoted, b'"') => (Action::Write, State::Quoted),
                _ if ends_field => (Action::EndField, State::FieldStart),
                // Unquoted content, or text after a closing quote.
                _ => (Action::Write, State::Unquoted),
            };
            // Nothing changes until there is room for it, so a call that stops for room
            // resumes at the same byte.
            match action {
                Action::Skip => {}
                Action::Write => {
                    let Some(slot) = output.get_mut(written) else {
                        return (ReadRecordResult::OutputFull, read, written, ended);
                    };
                    *slot = byte;
                    written += 1;
                    self.record_len += 1;
                }
                Action::EndField => {
                    let Some(end) = ends.get_mut(ended) else {
                        return (ReadRecordResult::OutputEndsFull, read, written, ended);
                    };
                    *end = self.record_len;
                    ended += 1;
                    if byte != self.delimiter {
                        self.finish_record();
                        return (ReadRecordResult::Record, read + 1, written, ended);
                    }
                }
            }
            self.state = next;
            read += 1;
        }
        (ReadRecordResult::InputEmpty, read, written, ended)
    }

    fn finish_record(&mut self) {
        self.state = State::FieldStart;
        self.record_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipelines::csv::reader::{Dialect, RecordReader, Step};
    use crate::pipelines::csv::Cursor;

    /// Every record of `input` read in `chunk`-byte pieces, as field strings.
    fn records(input: &[u8], dialect: Dialect, chunk: usize) -> Vec<(u64, Vec<String>)> {
        let mut reader = RecordReader::with_dialect(Cursor { offset: 0, line: 1 }, 8, dialect);
        let (mut out, mut fed, mut pos) = (Vec::new(), 0, 0);
        loop {
            let eof = fed == input.len();
            let (step, used) = reader.next(&input[pos..fed], eof);
            pos += used;
            match step {
                Step::Record(record) => out.push((
                    record.start.line,
                    record
                        .fields()
                        .map(|f| String::from_utf8_lossy(f).into_owned())
                        .collect(),
                )),
                Step::NeedInput => fed = (fed + chunk).min(input.len()),
                Step::End => return out,
            }
        }
    }

    fn padded(delimiter: u8) -> Dialect {
        Dialect {
            delimiter,
            quote: b'"',
            padded: true,
        }
    }

    #[test]
    fn reads_padded_records() {
        type Case = (&'static [u8], u8, &'static [(u64, &'static [&'static str])]);
        let cases: &[Case] = &[
            (
                b"1  ,  \"Doe, Jane\"  , x \n",
                b',',
                &[(1, &["1  ", "Doe, Jane  ", "x "])],
            ),
            // A quote right after a delimiter inside a padded cell neither opens a field nor
            // swallows the line break.
            (
                b"1 ; \"B0 ;\" ; x\n2 ; y ; z\n",
                b';',
                &[(1, &["1 ", "B0 ; ", "x"]), (2, &["2 ", "y ", "z"])],
            ),
            (
                b" \"say \"\"hi\"\"\" , \"multi\nline\"\r\nnext\n",
                b',',
                &[(1, &["say \"hi\" ", "multi\nline"]), (3, &["next"])],
            ),
            (b"a\t \"b\tc\" \td\n", b'\t', &[(1, &["a", "b\tc ", "d"])]),
            (b"\"ab\"c , d", b',', &[(1, &["abc ", "d"])]),
            (
                b"a,,\n\n  ,  \nb",
                b',',
                &[(1, &["a", "", ""]), (3, &["", ""]), (4, &["b"])],
            ),
            (
                b"\"unclosed, still\nopen",
                b',',
                &[(1, &["unclosed, still\nopen"])],
            ),
            (b"x,", b',', &[(1, &["x", ""])]),
        ];
        for (input, delimiter, want) in cases {
            let want: Vec<(u64, Vec<String>)> = want
                .iter()
                .map(|(line, fields)| (*line, fields.iter().map(|f| f.to_string()).collect()))
                .collect();
            for chunk in 1..=input.len() {
                assert_eq!(
                    records(input, padded(*delimiter), chunk),
                    want,
                    "{} in chunks of {chunk}",
                    input.escape_ascii()
                );
            }
        }
    }

    #[test]
    fn stops_for_room_and_resumes_at_the_same_byte() {
        let mut reader = PaddedReader::new(b',');
        let input = b" \"a\"\"b\" ,cd\n";
        let (mut output, mut ends) = ([0u8; 8], [0usize; 1]);
        // No output room: nothing written past what fits.
        let (result, read, written, ended) = reader.read_record(input, &mut output[..1], &mut ends);
        assert_eq!(
            (result, written, ended),
            (ReadRecordResult::OutputFull, 1, 0)
        );
        let (result, read2, written2, ended2) =
            reader.read_record(&input[read..], &mut output[1..], &mut ends);
        assert_eq!((result, ended2), (ReadRecordResult::OutputEndsFull, 1));
        let (result, read3, _, ended3) = reader.read_record(
            &input[read + read2..],
            &mut output[1 + written2..],
            &mut ends,
        );
        assert_eq!((result, ended3), (ReadRecordResult::Record, 1));
        assert_eq!(read + read2 + read3, input.len());
        // The blank after the closing quote is kept, as csv-core keeps it (cells are trimmed).
        assert_eq!(&output[..6], b"a\"b cd");
    }
}
