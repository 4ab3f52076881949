//! Header detection: the file's dialect, which export it is, and which column holds each field.

use super::dialect::{decode, detect_delimiter, detect_padding, header_quote, Delimiter, Encoding};
use super::layouts;
use super::reader::{Dialect, RawRecord, RecordReader, Step, MAX_RECORD_BYTES};
use super::repair::split_fields;
use super::Cursor;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Wider headers are rejected: no export comes close, and the cap bounds per-record work.
pub const MAX_HEADER_COLUMNS: usize = 512;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

// Column names in priority order, as normalised by `column_key`. Every format uses the same
// tables, so a layout nobody anticipated still gets whatever columns it names recognisably.
const TITLE_COLUMNS: &[&str] = &["title", "booktitle"];
// The older LibraryThing export and BookBuddy name their author columns by name order; the
// "first, last" form reads best, the "last, first" one is a last resort.
const AUTHOR_COLUMNS: &[&str] = &[
    "author",
    "authors",
    "primaryauthor",
    "authorname",
    "bookauthor",
    "writer",
    "authorfirstlast",
    "authorlastfirst",
    "authorsort",
];
// Goodreads' ISBN13 before its ISBN; LibraryThing's single ISBN before its list; calibre's
// `identifiers` (`isbn:...,amazon:...`) last.
const IDENTIFIER_COLUMNS: &[&str] = &[
    "isbn13",
    "isbn",
    "isbnuid",
    "isbns",
    "isbn10",
    "ean",
    "ean13",
    "asin",
    "identifiers",
];
const SHELF_COLUMNS: &[&str] = &[
    "exclusiveshelf",
    "readstatus",
    "readingstatus",
    "shelf",
    "status",
    "collections",
];
// Goodreads' `Average Rating` is deliberately absent: it is not the reader's rating. The older
// LibraryThing export calls the reader's rating `RATINGS`.
const RATING_COLUMNS: &[&str] = &[
    "myrating",
    "starrating",
    "rating",
    "userrating",
    "stars",
    "ratings",
];
// StoryGraph's single `Last Date Read` before its `Dates Read` ranges.
const DATE_READ_COLUMNS: &[&str] = &[
    "lastdateread",
    "dateread",
    "datesread",
    "datefinished",
    "finisheddate",
    "readdate",
];
const PLAIN_COLUMNS: &[&str] = &["title", "author", "isbn"];

/// The export a header looks like. Mapping does not depend on it; it is reported so users
/// and logs can tell what the file was taken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Goodreads,
    StoryGraph,
    LibraryThing,
    BookBuddy,
    Calibre,
    Plain,
    Generic,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Goodreads => "goodreads",
            Self::StoryGraph => "story_graph",
            Self::LibraryThing => "library_thing",
            Self::BookBuddy => "book_buddy",
            Self::Calibre => "calibre",
            Self::Plain => "plain",
            Self::Generic => "generic",
        }
    }

    /// Each export's signature: names only it writes (docs/IMPORT.md lists them).
    fn detect(keys: &[String]) -> Self {
        let has = |wanted: &str| keys.iter().any(|key| key == wanted);
        if has("exclusiveshelf") && has("myrating") {
            Self::Goodreads
        } else if has("readstatus") && (has("isbnuid") || has("starrating")) {
            Self::StoryGraph
        } else if (has("primaryauthor") && (has("isbns") || has("workid") || has("bookid")))
            || (has("authorfirstlast") && has("isbns"))
        {
            Self::LibraryThing
        } else if has("googlevolumeid") || (has("authorlastfirst") && has("originaltitle")) {
            Self::BookBuddy
        } else if has("authorsort") && (has("uuid") || has("titlesort")) {
            Self::Calibre
        } else if keys
            .iter()
            .all(|key| key.is_empty() || PLAIN_COLUMNS.contains(&key.as_str()))
        {
            Self::Plain
        } else {
            Self::Generic
        }
    }
}

/// The client's `format` choice (contract 9.1). A named format only matters for a file whose
/// first line is data: a header row always speaks for itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormatHint {
    #[default]
    Auto,
    Goodreads,
    StoryGraph,
    LibraryThing,
    Plain,
}

impl FormatHint {
    /// The contract's values, case-insensitively and trimmed; anything else is `None` (400).
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        [
            ("auto", Self::Auto),
            ("goodreads", Self::Goodreads),
            ("storygraph", Self::StoryGraph),
            ("librarything", Self::LibraryThing),
            ("plain", Self::Plain),
        ]
        .into_iter()
        .find_map(|(name, hint)| value.eq_ignore_ascii_case(name).then_some(hint))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Goodreads => "goodreads",
            Self::StoryGraph => "storygraph",
            Self::LibraryThing => "librarything",
            Self::Plain => "plain",
        }
    }
}

/// Where each book field lives in the file, and how the file is written. Persisted by the
/// glue so later slices need not re-read the header; fields added since the first stored
/// headers default to what those files were read as (comma, per-record UTF-8).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub format: Format,
    /// Records with more fields than this are rejected.
    pub column_count: usize,
    /// The column names as written (trimmed), for error details and logs.
    pub names: Vec<String>,
    pub title: usize,
    pub author: Option<usize>,
    /// Columns that may hold an ISBN or another identifier, best first.
    pub identifiers: Vec<usize>,
    pub shelf: Option<usize>,
    pub rating: Option<usize>,
    /// Columns that may hold the date read, best first.
    pub dates_read: Vec<usize>,
    #[serde(default)]
    pub delimiter: Delimiter,
    #[serde(default)]
    pub encoding: Encoding,
    /// The header line is padded to line up columns: records are read with the padded
    /// tokenizer, which takes blanks before an opening quote as padding.
    #[serde(default)]
    pub padded: bool,
    /// The file had no header row: `names` is the format's standard layout and the first data
    /// record is on the file's first line.
    #[serde(default)]
    pub headerless: bool,
}

impl Header {
    /// Maps column names to book fields; fails when none of them is a title. The dialect is
    /// the default one (comma, encoding undecided).
    pub fn from_names(names: Vec<String>) -> Result<Self, HeaderError> {
        if names.len() > MAX_HEADER_COLUMNS {
            return Err(HeaderError::TooManyColumns { count: names.len() });
        }
        let keys: Vec<String> = names.iter().map(|name| column_key(name)).collect();
        let Some(title) = first_column(&keys, TITLE_COLUMNS) else {
            return Err(HeaderError::NoTitleColumn {
                columns_found: names,
            });
        };
        Ok(Self {
            format: Format::detect(&keys),
            column_count: names.len(),
            title,
            author: first_column(&keys, AUTHOR_COLUMNS),
            identifiers: all_columns(&keys, IDENTIFIER_COLUMNS),
            shelf: first_column(&keys, SHELF_COLUMNS),
            rating: first_column(&keys, RATING_COLUMNS),
            dates_read: all_columns(&keys, DATE_READ_COLUMNS),
            names,
            delimiter: Delimiter::default(),
            encoding: Encoding::default(),
            padded: false,
            headerless: false,
        })
    }

    /// A header for a file without one: `layout`'s names, widened to `field_count` unnamed
    /// columns when the first record is wider, so that record is not refused as too long.
    fn from_layout(layout: &[&str], field_count: usize) -> Result<Self, HeaderError> {
        let mut names: Vec<String> = layout.iter().map(|name| name.to_string()).collect();
        names.resize(names.len().max(field_count), String::new());
        let mut header = Self::from_names(names)?;
        header.headerless = true;
        Ok(header)
    }
}

/// Why a file was refused before any job existed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Nothing but blank lines.
    Empty,
    NoTitleColumn {
        columns_found: Vec<String>,
    },
    TooManyColumns {
        count: usize,
    },
    /// The header row does not end within the first `limit` bytes.
    TooLong {
        limit: u64,
    },
}

impl HeaderError {
    pub fn message(&self) -> String {
        match self {
            Self::Empty => "the CSV file is empty: no header row found".to_string(),
            Self::NoTitleColumn { .. } => {
                "the CSV header has no title column; expected a Goodreads, StoryGraph, \
                 LibraryThing, BookBuddy, calibre or Title,Author,ISBN layout, or a `format` \
                 for a file without a header row"
                    .to_string()
            }
            Self::TooManyColumns { count } => format!(
                "the CSV header has {count} columns; at most {MAX_HEADER_COLUMNS} are supported"
            ),
            Self::TooLong { limit } => {
                format!("the CSV header row is too long: it does not end within {limit} bytes")
            }
        }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for HeaderError {}

/// The `format` hint of an upload from its query parameter and its multipart field, either
/// or both (when both, they must agree). `Err` is the message of a 400: a value that is not
/// one of the contract's, or two that differ.
pub fn format_hint(query: Option<&str>, field: Option<&[u8]>) -> Result<FormatHint, String> {
    let read = |value: &str| {
        FormatHint::parse(value).ok_or_else(|| {
            format!(
                "format must be one of auto, goodreads, storygraph, librarything, plain; got {:?}",
                value.chars().take(40).collect::<String>()
            )
        })
    };
    let field = field.map(String::from_utf8_lossy);
    match (
        query.map(read).transpose()?,
        field.as_deref().map(read).transpose()?,
    ) {
        (Some(a), Some(b)) if a != b => Err(format!(
            "the format parameter ({}) and the format field ({}) disagree",
            a.as_str(),
            b.as_str()
        )),
        (a, b) => Ok(a.or(b).unwrap_or_default()),
    }
}

/// [`read_header_with`] in `auto` mode.
pub fn read_header(input: &[u8], eof: bool) -> Result<(Header, Cursor), HeaderError> {
    read_header_with(input, eof, FormatHint::Auto)
}

/// Reads the header row from the start of the file (BOM allowed), after deciding the file's
/// dialect from the same bytes: its encoding and delimiter (see [`super::dialect`]). Ok gives
/// the header and the cursor of the first data record. `input` may be only a prefix of the
/// file; when the header row does not end inside it and `eof` is false, the header counts as
/// too long. Blank lines (see the module docs) before the header are skipped.
///
/// A first line without a title column is data when `hint` names a format (it is then read in
/// that format's standard order), or in `auto` when it looks like a Goodreads record (see
/// [`looks_like_goodreads_record`]); otherwise the file is refused.
pub fn read_header_with(
    input: &[u8],
    eof: bool,
    hint: FormatHint,
) -> Result<(Header, Cursor), HeaderError> {
    let bom = if input.starts_with(UTF8_BOM) {
        UTF8_BOM.len()
    } else {
        0
    };
    let body = input.get(bom..).unwrap_or_default();
    let encoding = Encoding::detect(body, bom > 0, eof);
    let delimiter = detect_delimiter(body);
    let quote = header_quote(body);
    let padded = detect_padding(body, delimiter, quote);
    // The padded tokenizer quotes with `"` only; a header in single quotes is never padded.
    let mut reader = RecordReader::with_dialect(
        Cursor {
            offset: bom as u64,
            line: 1,
        },
        MAX_HEADER_COLUMNS,
        Dialect {
            delimiter: delimiter.byte(),
            quote,
            padded: padded && quote == b'"',
        },
    );
    let mut consumed = 0;
    let (raw_names, first_record) = loop {
        let (step, used) = reader.next(body.get(consumed..).unwrap_or_default(), eof);
        consumed += used;
        match step {
            Step::Record(record) if record.too_long => {
                return Err(HeaderError::TooLong {
                    limit: MAX_RECORD_BYTES,
                });
            }
            Step::Record(record) if record.blank => {}
            Step::Record(record) if record.field_count > MAX_HEADER_COLUMNS => {
                return Err(HeaderError::TooManyColumns {
                    count: record.field_count,
                });
            }
            Step::Record(record) => {
                break (
                    record_texts(&record, encoding, delimiter),
                    (record.start, record.field_count),
                );
            }
            Step::NeedInput => {
                return Err(HeaderError::TooLong {
                    limit: input.len() as u64,
                })
            }
            Step::End => return Err(HeaderError::Empty),
        }
    };
    let names: Vec<String> = raw_names.iter().map(|name| clean_name(name)).collect();
    let (mut header, cursor) = match Header::from_names(names) {
        Ok(header) => {
            reader.skip_line_breaks(body.get(consumed..).unwrap_or_default(), eof);
            (header, reader.position())
        }
        Err(HeaderError::NoTitleColumn { columns_found }) => {
            let (start, field_count) = first_record;
            let Some(layout) = headerless_layout(hint, &raw_names, field_count, delimiter) else {
                return Err(HeaderError::NoTitleColumn { columns_found });
            };
            (Header::from_layout(layout, field_count)?, start)
        }
        Err(other) => return Err(other),
    };
    header.delimiter = delimiter;
    header.encoding = encoding;
    header.padded = padded;
    Ok((header, cursor))
}

/// The first record's fields as text. A header row that a spreadsheet wrapped whole in one
/// quoted cell is unwrapped here, as data records are later.
fn record_texts(record: &RawRecord<'_>, encoding: Encoding, delimiter: Delimiter) -> Vec<String> {
    let windows_1252 = encoding.record_is_1252(record.valid_utf8);
    let names: Vec<String> = record
        .fields()
        .map(|field| decode(field, windows_1252).into_owned())
        .collect();
    match names.as_slice() {
        [only] if only.as_bytes().contains(&delimiter.byte()) => {
            let split = split_fields(only.as_bytes(), delimiter.byte(), MAX_HEADER_COLUMNS);
            let view = split.view();
            (0..view.kept())
                .map(|i| String::from_utf8_lossy(view.field(i).unwrap_or_default()).into_owned())
                .collect()
        }
        _ => names,
    }
}

/// A column name as written, trimmed of blanks and of one pair of surrounding quotes
/// (`'TITLE'`, `"ISBN"`), then of blanks again.
fn clean_name(raw: &str) -> String {
    let name = raw.trim();
    let unquoted = ['\'', '"'].iter().find_map(|&quote| {
        name.strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
    });
    unquoted.unwrap_or(name).trim().to_string()
}

/// The layout a header-less first record is read in, if any.
fn headerless_layout(
    hint: FormatHint,
    first: &[String],
    field_count: usize,
    delimiter: Delimiter,
) -> Option<&'static [&'static str]> {
    let goodreads = || {
        if field_count == layouts::GOODREADS_OLD.len() {
            layouts::GOODREADS_OLD
        } else {
            layouts::GOODREADS
        }
    };
    match hint {
        FormatHint::Auto => looks_like_goodreads_record(first, field_count).then(goodreads),
        FormatHint::Goodreads => Some(goodreads()),
        FormatHint::StoryGraph => Some(layouts::STORYGRAPH),
        FormatHint::LibraryThing if delimiter == Delimiter::Tab => Some(layouts::LIBRARYTHING),
        FormatHint::LibraryThing => Some(layouts::LIBRARYTHING_OLD),
        FormatHint::Plain => Some(layouts::PLAIN),
    }
}

/// A Goodreads record, recognised without its header: one of the export's two widths, a
/// numeric `Book Id` first, `My Rating` a whole number from 0 to 5, and `ISBN`/`ISBN13` empty,
/// digits, or Goodreads' `="..."`. A header row never passes: its first name is not a number.
pub fn looks_like_goodreads_record(fields: &[String], field_count: usize) -> bool {
    let field = |i: usize| fields.get(i).map_or("", |f| f.trim());
    let width =
        field_count == layouts::GOODREADS.len() || field_count == layouts::GOODREADS_OLD.len();
    let book_id = !field(0).is_empty() && field(0).bytes().all(|b| b.is_ascii_digit());
    let rating = matches!(field(7), "0" | "1" | "2" | "3" | "4" | "5");
    let isbn_like = |text: &str| {
        let inner = text
            .strip_prefix("=\"")
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(text);
        inner
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'X' || b == b'x')
    };
    width && book_id && rating && isbn_like(field(5)) && isbn_like(field(6))
}

/// Case folded, with everything but letters and digits dropped, so spacing, punctuation,
/// quotes and stray invisible characters (a BOM inside quotes) cannot hide a column.
fn column_key(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn first_column(keys: &[String], wanted: &[&str]) -> Option<usize> {
    wanted
        .iter()
        .find_map(|want| keys.iter().position(|key| key == want))
}

fn all_columns(keys: &[String], wanted: &[&str]) -> Vec<usize> {
    wanted
        .iter()
        .filter_map(|want| keys.iter().position(|key| key == want))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const GOODREADS: &str = "Book Id,Title,Author,Author l-f,Additional Authors,ISBN,\
        ISBN13,My Rating,Average Rating,Publisher,Binding,Number of Pages,Year Published,\
        Original Publication Year,Date Read,Date Added,Bookshelves,Bookshelves with positions,\
        Exclusive Shelf,My Review,Spoiler,Private Notes,Read Count,Owned Copies";
    pub(crate) const GOODREADS_OLD: &str =
        "Book Id,Title,Author,Author l-f,Additional Authors,ISBN,\
        ISBN13,My Rating,Average Rating,Publisher,Binding,Number of Pages,Year Published,\
        Original Publication Year,Date Read,Date Added,Bookshelves,Bookshelves with positions,\
        Exclusive Shelf,My Review,Spoiler,Private Notes,Read Count,Recommended For,\
        Recommended By,Owned Copies,Original Purchase Date,Original Purchase Location,\
        Condition,Condition Description,BCID";
    pub(crate) const STORYGRAPH: &str = "Title,Authors,Contributors,ISBN/UID,Format,Read Status,\
        Date Added,Last Date Read,Dates Read,Read Count,Moods,Pace,Character- or Plot-Driven?,\
        Strong Character Development?,Loveable Characters?,Diverse Characters?,\
        Flawed Characters?,Star Rating,Review,Content Warnings,Content Warning Description,\
        Tags,Owned?";
    pub(crate) const LIBRARYTHING: &str = "Book Id,Title,Sort Character,Primary Author,\
        Primary Author Role,Secondary Author,Secondary Author Roles,Publication,Date,Review,\
        Rating,Comment,Private Comment,Summary,Media,Physical Description,Weight,Height,\
        Thickness,Length,Dimensions,Page Count,LCCN,Acquired,Date Started,Date Read,Barcode,\
        BCID,Tags,Collections,Languages,Original Languages,LC Classification,ISBN,ISBNs,\
        Subjects,Dewey Decimal,Dewey Wording,Other Call Number,Copies,Source,Entry Date,\
        From Where,OCLC,Work id,Lending Patron,Lending Status,Lending Start,Lending End";

    #[test]
    fn shared_header_rows_are_the_layouts() {
        use crate::pipelines::csv::layouts::{self, header_row};
        let cases = [
            (GOODREADS, layouts::GOODREADS),
            (GOODREADS_OLD, layouts::GOODREADS_OLD),
            (STORYGRAPH, layouts::STORYGRAPH),
            (LIBRARYTHING, layouts::LIBRARYTHING),
        ];
        for (row, layout) in cases {
            assert_eq!(row, header_row(layout, ","));
        }
    }

    /// (format, title, author, identifiers, shelf, rating, dates read, column count)
    type Mapping = (
        Format,
        usize,
        Option<usize>,
        Vec<usize>,
        Option<usize>,
        Option<usize>,
        Vec<usize>,
        usize,
    );

    fn mapping(header: &Header) -> Mapping {
        (
            header.format,
            header.title,
            header.author,
            header.identifiers.clone(),
            header.shelf,
            header.rating,
            header.dates_read.clone(),
            header.column_count,
        )
    }

    #[test]
    fn maps_every_known_layout() {
        let cases: Vec<(&str, String, Mapping)> = vec![
            (
                "goodreads",
                format!("{GOODREADS}\n"),
                (
                    Format::Goodreads,
                    1,
                    Some(2),
                    vec![6, 5],
                    Some(18),
                    Some(7),
                    vec![14],
                    24,
                ),
            ),
            (
                "goodreads, older and wider",
                format!("{GOODREADS_OLD}\r\n"),
                (
                    Format::Goodreads,
                    1,
                    Some(2),
                    vec![6, 5],
                    Some(18),
                    Some(7),
                    vec![14],
                    31,
                ),
            ),
            (
                "storygraph",
                format!("{STORYGRAPH}\n"),
                (
                    Format::StoryGraph,
                    0,
                    Some(1),
                    vec![3],
                    Some(5),
                    Some(17),
                    vec![7, 8],
                    23,
                ),
            ),
            (
                "librarything",
                format!("{LIBRARYTHING}\n"),
                (
                    Format::LibraryThing,
                    1,
                    Some(3),
                    vec![33, 34],
                    Some(29),
                    Some(10),
                    vec![25],
                    49,
                ),
            ),
            (
                "plain",
                "Title,Author,ISBN\n".to_string(),
                (Format::Plain, 0, Some(1), vec![2], None, None, vec![], 3),
            ),
            (
                "plain, reordered with a trailing empty column",
                "isbn,title,author,\n".to_string(),
                (Format::Plain, 1, Some(2), vec![0], None, None, vec![], 4),
            ),
            (
                "title only",
                "Title\n".to_string(),
                (Format::Plain, 0, None, vec![], None, None, vec![], 1),
            ),
            (
                "generic",
                "Book Title,Writer,Notes,ISBN-13,Status,Rating,Date Finished\n".to_string(),
                (
                    Format::Generic,
                    0,
                    Some(1),
                    vec![3],
                    Some(4),
                    Some(5),
                    vec![6],
                    7,
                ),
            ),
            (
                "case, spacing and punctuation variations",
                " TITLE ,\"author\",  Exclusive  Shelf,my_rating,DATE-READ,isbn13,Isbn\n"
                    .to_string(),
                (
                    Format::Goodreads,
                    0,
                    Some(1),
                    vec![5, 6],
                    Some(2),
                    Some(3),
                    vec![4],
                    7,
                ),
            ),
            (
                "BOM and blank lines first",
                "\u{FEFF}\r\n\r\nTitle,Author,ISBN\r\n".to_string(),
                (Format::Plain, 0, Some(1), vec![2], None, None, vec![], 3),
            ),
            (
                "BOM inside a quoted name",
                "\"\u{FEFF}Title\",Author\n".to_string(),
                (Format::Plain, 0, Some(1), vec![], None, None, vec![], 2),
            ),
            (
                "librarything, tab-separated",
                format!("{}\r\n", LIBRARYTHING.replace(',', "\t")),
                (
                    Format::LibraryThing,
                    1,
                    Some(3),
                    vec![33, 34],
                    Some(29),
                    Some(10),
                    vec![25],
                    49,
                ),
            ),
            (
                "semicolon-separated",
                "Title;Author;ISBN;My Rating\n".to_string(),
                (
                    Format::Generic,
                    0,
                    Some(1),
                    vec![2],
                    None,
                    Some(3),
                    vec![],
                    4,
                ),
            ),
            (
                "older librarything, names in single quotes",
                "'TITLE','AUTHOR (first, last)','AUTHOR (last, first)','DATE','LCC','DDC',\
                 'ISBNs','RATINGS','COLLECTIONS'\n"
                    .to_string(),
                (
                    Format::LibraryThing,
                    0,
                    Some(1),
                    vec![6],
                    Some(8),
                    Some(7),
                    vec![],
                    9,
                ),
            ),
            (
                "older librarything, single-quoted names in double quotes",
                "\"'TITLE'\",\"'AUTHOR (first, last)'\",\"'AUTHOR (last, first)'\",\"'DATE'\",\
                 \"'ISBNs'\"\n"
                    .to_string(),
                (
                    Format::LibraryThing,
                    0,
                    Some(1),
                    vec![4],
                    None,
                    None,
                    vec![],
                    5,
                ),
            ),
            (
                "bookbuddy",
                "Title,Original Title,Subtitle,Series,Volume,Author,\"Author (Last, First)\",\
                 Publisher,Year Published,Genre,Summary,Number of Pages,Language,ISBN,Status,\
                 Rating,Date Added,Date Started,Date Finished,Notes,Google VolumeID\n"
                    .to_string(),
                (
                    Format::BookBuddy,
                    0,
                    Some(5),
                    vec![13],
                    Some(14),
                    Some(15),
                    vec![18],
                    21,
                ),
            ),
            (
                "calibre",
                "\u{FEFF}author_sort,authors,comments,cover,formats,id,identifiers,isbn,\
                 languages,library_name,pubdate,publisher,rating,series,series_index,size,tags,\
                 timestamp,title,title_sort,uuid\n"
                    .to_string(),
                (
                    Format::Calibre,
                    18,
                    Some(1),
                    vec![7, 6],
                    None,
                    Some(12),
                    vec![],
                    21,
                ),
            ),
            (
                "padded names",
                "Book Id  , Title    , Author  , Exclusive Shelf , My Rating\n".to_string(),
                (
                    Format::Goodreads,
                    1,
                    Some(2),
                    vec![],
                    Some(3),
                    Some(4),
                    vec![],
                    5,
                ),
            ),
            (
                "padded names, one quoted around its comma",
                "Title , \"Author (Last, First)\" , Status\n".to_string(),
                (
                    Format::Generic,
                    0,
                    Some(1),
                    vec![],
                    Some(2),
                    None,
                    vec![],
                    3,
                ),
            ),
            (
                "a header wrapped whole in one quoted cell",
                "\"Title,Author,ISBN\"\n".to_string(),
                (Format::Plain, 0, Some(1), vec![2], None, None, vec![], 3),
            ),
            (
                "a spreadsheet's stray semicolon on the last name",
                format!("{GOODREADS_OLD};\n"),
                (
                    Format::Goodreads,
                    1,
                    Some(2),
                    vec![6, 5],
                    Some(18),
                    Some(7),
                    vec![14],
                    31,
                ),
            ),
        ];
        for (name, file, want) in cases {
            let (header, _) = read_header(file.as_bytes(), true).unwrap_or_else(|e| {
                panic!("{name}: {e}");
            });
            assert_eq!(mapping(&header), want, "{name}");
            assert_eq!(header.names.len(), header.column_count, "{name}");
        }
    }

    #[test]
    fn returns_the_cursor_of_the_first_data_record() {
        let cases: &[(&[u8], bool, Cursor)] = &[
            (b"Title\nx\n", true, Cursor { offset: 6, line: 2 }),
            (b"Title\r\nx\r\n", true, Cursor { offset: 7, line: 2 }),
            (
                b"\xEF\xBB\xBFTitle\n\n\nx\n",
                true,
                Cursor {
                    offset: 11,
                    line: 4,
                },
            ),
            (
                b"\n\"Ti\ntle\"\nx\n",
                true,
                Cursor {
                    offset: 10,
                    line: 4,
                },
            ),
            (b"Title", true, Cursor { offset: 5, line: 1 }),
            (b"Title\n", false, Cursor { offset: 6, line: 2 }),
            // The byte after the `\r` decides the line count, so the cursor stays on it.
            (b"Title\r", false, Cursor { offset: 5, line: 1 }),
            (b"Title\r", true, Cursor { offset: 6, line: 2 }),
        ];
        for (input, eof, want) in cases {
            let (_, cursor) = read_header(input, *eof).unwrap();
            assert_eq!(cursor, *want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn rejects_unusable_headers() {
        let wide = vec!["c"; MAX_HEADER_COLUMNS + 1].join(",");
        let widest_ok = format!("Title,{}", vec!["c"; MAX_HEADER_COLUMNS - 1].join(","));
        type Case = (&'static str, Vec<u8>, bool, Result<usize, HeaderError>);
        let cases: Vec<Case> = vec![
            ("empty", b"".to_vec(), true, Err(HeaderError::Empty)),
            (
                "only blank lines",
                b"\r\n\n ,\t,\n".to_vec(),
                true,
                Err(HeaderError::Empty),
            ),
            ("BOM only", UTF8_BOM.to_vec(), true, Err(HeaderError::Empty)),
            (
                "no title column",
                b"Name,Writer\nx,y\n".to_vec(),
                true,
                Err(HeaderError::NoTitleColumn {
                    columns_found: vec!["Name".to_string(), "Writer".to_string()],
                }),
            ),
            (
                "no title column, names trimmed",
                b"\xEF\xBB\xBF Author , ISBN\n".to_vec(),
                true,
                Err(HeaderError::NoTitleColumn {
                    columns_found: vec!["Author".to_string(), "ISBN".to_string()],
                }),
            ),
            (
                "too many columns",
                format!("Title,{wide}\n").into_bytes(),
                true,
                Err(HeaderError::TooManyColumns {
                    count: MAX_HEADER_COLUMNS + 2,
                }),
            ),
            (
                "512 columns",
                format!("{widest_ok}\n").into_bytes(),
                true,
                Ok(512),
            ),
            (
                "header not ended in the prefix",
                b"Title,Author".to_vec(),
                false,
                Err(HeaderError::TooLong { limit: 12 }),
            ),
            (
                "quote not closed in the prefix",
                b"\"Title\nAuthor\n".to_vec(),
                false,
                Err(HeaderError::TooLong { limit: 14 }),
            ),
        ];
        for (name, input, eof, want) in cases {
            let got = read_header(&input, eof).map(|(header, _)| header.column_count);
            assert_eq!(got, want, "{name}");
        }
        let huge = [
            b"Title,\"".to_vec(),
            vec![b'x'; MAX_RECORD_BYTES as usize],
            b"\"\n".to_vec(),
        ];
        assert_eq!(
            read_header(&huge.concat(), true).map(|(h, _)| h.column_count),
            Err(HeaderError::TooLong {
                limit: MAX_RECORD_BYTES
            })
        );
    }

    #[test]
    fn messages_and_format_names() {
        let cases: &[(HeaderError, &str)] = &[
            (
                HeaderError::Empty,
                "the CSV file is empty: no header row found",
            ),
            (
                HeaderError::TooManyColumns { count: 600 },
                "the CSV header has 600 columns; at most 512 are supported",
            ),
            (
                HeaderError::TooLong { limit: 65_536 },
                "the CSV header row is too long: it does not end within 65536 bytes",
            ),
        ];
        for (error, want) in cases {
            assert_eq!(error.message(), *want);
            assert_eq!(error.to_string(), *want);
        }
        assert!(HeaderError::NoTitleColumn {
            columns_found: vec![]
        }
        .message()
        .contains("title"));
        for format in [
            Format::Goodreads,
            Format::StoryGraph,
            Format::LibraryThing,
            Format::BookBuddy,
            Format::Calibre,
            Format::Plain,
            Format::Generic,
        ] {
            let json = serde_json::to_value(format).unwrap();
            assert_eq!(json, format.as_str());
            assert_eq!(serde_json::from_value::<Format>(json).unwrap(), format);
        }
    }

    #[test]
    fn header_round_trips_through_json() {
        let (header, _) = read_header(GOODREADS.as_bytes(), true).unwrap();
        let json = serde_json::to_string(&header).unwrap();
        assert!(json.contains("\"columnCount\":24"), "{json}");
        assert_eq!(serde_json::from_str::<Header>(&json).unwrap(), header);
    }

    #[test]
    fn records_the_dialect() {
        // (file, delimiter, encoding, padded)
        let cases: &[(&[u8], Delimiter, Encoding, bool)] = &[
            (
                b"Title,Author\nDune,Herbert\n",
                Delimiter::Comma,
                Encoding::Undecided,
                false,
            ),
            (
                b"\xEF\xBB\xBFTitle,Author\n",
                Delimiter::Comma,
                Encoding::Utf8,
                false,
            ),
            (
                b"Title\tAuthor\nCaf\xE9\tX\n",
                Delimiter::Tab,
                Encoding::Windows1252,
                false,
            ),
            (
                "Title;Author\nCaf\u{e9};X\n".as_bytes(),
                Delimiter::Semicolon,
                Encoding::Utf8,
                false,
            ),
            (
                b"Title , Author\n",
                Delimiter::Comma,
                Encoding::Undecided,
                true,
            ),
            (
                b" Title,Author\n",
                Delimiter::Comma,
                Encoding::Undecided,
                true,
            ),
            (
                b"Title,Author\n\"x\" , y\n",
                Delimiter::Comma,
                Encoding::Undecided,
                false,
            ),
        ];
        for (file, delimiter, encoding, padded) in cases {
            let (header, _) = read_header(file, true).unwrap();
            assert_eq!(
                (
                    header.delimiter,
                    header.encoding,
                    header.padded,
                    header.headerless
                ),
                (*delimiter, *encoding, *padded, false),
                "{}",
                file.escape_ascii()
            );
        }
    }

    #[test]
    fn decodes_windows_1252_names() {
        let (header, _) = read_header(b"Titr\xE9,Title,Auteur \x93principal\x94\n", true).unwrap();
        assert_eq!(
            header.names,
            ["Titr\u{e9}", "Title", "Auteur \u{201C}principal\u{201D}"]
        );
        assert_eq!(header.title, 1);
    }

    /// A Goodreads data row from the layout, with the given Book Id, rating and ISBN cells.
    fn goodreads_record(id: &str, rating: &str, isbn: &str, width: usize) -> String {
        let mut cells = vec![String::new(); width];
        cells[0] = id.to_string();
        cells[1] = "Dune".into();
        cells[2] = "Frank Herbert".into();
        cells[5] = isbn.to_string();
        cells[7] = rating.to_string();
        cells[18] = "read".into();
        cells.join(",")
    }

    #[test]
    fn reads_files_without_a_header_row() {
        let goodreads = goodreads_record("234225", "4", "\"=\"\"0441013597\"\"\"", 24);
        let goodreads_old = goodreads_record("234225", "0", "", 31);
        let storygraph = "Piranesi,Susanna Clarke,,9781635575637,digital,read\n";
        let plain = "Dune,Frank Herbert,0441013597\n";
        let tsv = "1\tDune\t1\tHerbert, Frank\n";
        let csv =
            "\"Dune\",\"Frank Herbert\",\"Herbert, Frank\",\"1965\",\"\",\"\",\"[0441013597]\"\n";
        type Case<'a> = (
            &'a str,
            String,
            FormatHint,
            Result<(Format, usize, u64), HeaderError>,
        );
        let no_title = |names: &[&str]| {
            Err(HeaderError::NoTitleColumn {
                columns_found: names.iter().map(|s| s.to_string()).collect(),
            })
        };
        let cases: Vec<Case> = vec![
            (
                "goodreads, auto",
                format!("{goodreads}\n"),
                FormatHint::Auto,
                Ok((Format::Goodreads, 24, 1)),
            ),
            (
                "goodreads, named",
                format!("{goodreads}\n"),
                FormatHint::Goodreads,
                Ok((Format::Goodreads, 24, 1)),
            ),
            (
                "older goodreads, auto",
                format!("{goodreads_old}\r\n"),
                FormatHint::Auto,
                Ok((Format::Goodreads, 31, 1)),
            ),
            (
                "goodreads after blank lines",
                format!("\n\n{goodreads}\n"),
                FormatHint::Auto,
                Ok((Format::Goodreads, 24, 3)),
            ),
            (
                "storygraph, named",
                storygraph.to_string(),
                FormatHint::StoryGraph,
                Ok((Format::StoryGraph, 23, 1)),
            ),
            (
                "plain, named",
                plain.to_string(),
                FormatHint::Plain,
                Ok((Format::Plain, 3, 1)),
            ),
            (
                "plain, auto",
                plain.to_string(),
                FormatHint::Auto,
                no_title(&["Dune", "Frank Herbert", "0441013597"]),
            ),
            (
                "librarything tsv, named",
                tsv.to_string(),
                FormatHint::LibraryThing,
                Ok((Format::LibraryThing, 49, 1)),
            ),
            (
                "older librarything csv, named",
                csv.to_string(),
                FormatHint::LibraryThing,
                Ok((Format::LibraryThing, 7, 1)),
            ),
            // Wider than the layout: unnamed columns are added rather than refusing row 1.
            (
                "plain, wider",
                "Dune,Frank Herbert,0441013597,extra\n".to_string(),
                FormatHint::Plain,
                Ok((Format::Plain, 4, 1)),
            ),
            // A header row always wins over the hint.
            (
                "a header row with a hint",
                "Title,Author\nDune,X\n".to_string(),
                FormatHint::Goodreads,
                Ok((Format::Plain, 2, 2)),
            ),
            (
                "not a goodreads record: rating out of range",
                format!("{}\n", goodreads_record("1", "7", "", 24)),
                FormatHint::Auto,
                Err(HeaderError::NoTitleColumn {
                    columns_found: vec![],
                }),
            ),
            (
                "not a goodreads record: wrong width",
                "1,Dune,Frank Herbert,,,,,4\n".to_string(),
                FormatHint::Auto,
                Err(HeaderError::NoTitleColumn {
                    columns_found: vec![],
                }),
            ),
        ];
        for (name, file, hint, want) in cases {
            let got = read_header_with(file.as_bytes(), true, hint).map(|(header, cursor)| {
                assert_eq!(
                    header.headerless,
                    name != "a header row with a hint",
                    "{name}"
                );
                assert_eq!(header.names.len(), header.column_count, "{name}");
                (header.format, header.column_count, cursor.line)
            });
            match (&got, &want) {
                (
                    Err(HeaderError::NoTitleColumn { .. }),
                    Err(HeaderError::NoTitleColumn { columns_found }),
                ) if columns_found.is_empty() => {}
                _ => assert_eq!(got, want, "{name}"),
            }
        }
        // The first data record is the first line: the cursor sits on it, past a BOM.
        let file = format!("\u{FEFF}{goodreads}\n");
        let (header, cursor) = read_header(file.as_bytes(), true).unwrap();
        assert!(header.headerless);
        assert_eq!(cursor, Cursor { offset: 3, line: 1 });
        assert_eq!(header.names[..3], ["Book Id", "Title", "Author"]);
    }

    #[test]
    fn recognises_goodreads_records() {
        let record = |cells: &[(usize, &str)], width: usize| {
            let mut fields = vec![String::new(); width];
            for (i, text) in cells {
                fields[*i] = text.to_string();
            }
            (fields, width)
        };
        let cases = [
            (record(&[(0, "1"), (7, "0")], 24), true),
            (
                record(
                    &[
                        (0, "186074"),
                        (5, "=\"0756404746\""),
                        (6, "=\"\""),
                        (7, "5"),
                    ],
                    24,
                ),
                true,
            ),
            (record(&[(0, "1"), (5, "080442957X"), (7, "3")], 31), true),
            (record(&[(0, "1"), (7, "0")], 25), false),
            (record(&[(0, "Book Id"), (7, "My Rating")], 24), false),
            (record(&[(0, ""), (7, "0")], 24), false),
            (record(&[(0, "1"), (7, "")], 24), false),
            (record(&[(0, "1"), (7, "4.5")], 24), false),
            (record(&[(0, "1"), (5, "Paperback"), (7, "4")], 24), false),
        ];
        for ((fields, width), want) in cases {
            assert_eq!(
                looks_like_goodreads_record(&fields, width),
                want,
                "{fields:?}"
            );
        }
    }

    #[test]
    fn parses_format_hints() {
        let cases = [
            ("auto", Some(FormatHint::Auto)),
            ("goodreads", Some(FormatHint::Goodreads)),
            (" GoodReads ", Some(FormatHint::Goodreads)),
            ("storygraph", Some(FormatHint::StoryGraph)),
            ("librarything", Some(FormatHint::LibraryThing)),
            ("plain", Some(FormatHint::Plain)),
            ("story_graph", None),
            ("csv", None),
            ("", None),
        ];
        for (value, want) in cases {
            assert_eq!(FormatHint::parse(value), want, "{value:?}");
            if let Some(hint) = want {
                assert_eq!(FormatHint::parse(hint.as_str()), Some(hint));
            }
        }
    }

    #[test]
    fn reads_the_format_hint_of_an_upload() {
        use FormatHint::*;
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a [u8]>,
            Result<FormatHint, &'a str>,
        );
        let cases: &[Case] = &[
            (None, None, Ok(Auto)),
            (Some("goodreads"), None, Ok(Goodreads)),
            (None, Some(b"plain\r\n"), Ok(Plain)),
            (
                Some("LibraryThing"),
                Some(b"librarything"),
                Ok(LibraryThing),
            ),
            (Some("goodreads"), Some(b"plain"), Err("disagree")),
            (Some("csv"), None, Err("format must be one of")),
            (None, Some(b""), Err("format must be one of")),
            (None, Some(b"\xFFgoodreads"), Err("format must be one of")),
        ];
        for (query, field, want) in cases {
            let got = format_hint(*query, *field);
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want),
                (Err(message), Err(want)) => assert!(message.contains(want), "{message}"),
                (got, want) => panic!("{query:?} {field:?}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn headers_stored_before_the_dialect_fields_still_read() {
        let stored = r#"{"format":"goodreads","columnCount":2,"names":["Title","Author"],
            "title":0,"author":1,"identifiers":[],"shelf":null,"rating":null,"datesRead":[]}"#;
        let header: Header = serde_json::from_str(stored).unwrap();
        assert_eq!(
            (
                header.delimiter,
                header.encoding,
                header.padded,
                header.headerless
            ),
            (Delimiter::Comma, Encoding::Undecided, false, false)
        );
    }
}
