//! Header detection: which export format a file is and which column holds each book field.

use super::reader::{RecordReader, Step, MAX_RECORD_BYTES};
use super::Cursor;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Wider headers are rejected: no export comes close, and the cap bounds per-record work.
pub const MAX_HEADER_COLUMNS: usize = 512;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

// Column names in priority order, as normalised by `column_key`. Every format uses the same
// tables, so a layout nobody anticipated still gets whatever columns it names recognisably.
const TITLE_COLUMNS: &[&str] = &["title", "booktitle"];
const AUTHOR_COLUMNS: &[&str] = &[
    "author",
    "authors",
    "primaryauthor",
    "authorname",
    "bookauthor",
    "writer",
];
// Goodreads' ISBN13 before its ISBN; LibraryThing's single ISBN before its list.
const IDENTIFIER_COLUMNS: &[&str] = &[
    "isbn13", "isbn", "isbnuid", "isbns", "isbn10", "ean", "ean13", "asin",
];
const SHELF_COLUMNS: &[&str] = &[
    "exclusiveshelf",
    "readstatus",
    "readingstatus",
    "shelf",
    "status",
    "collections",
];
// Goodreads' `Average Rating` is deliberately absent: it is not the reader's rating.
const RATING_COLUMNS: &[&str] = &["myrating", "starrating", "rating", "userrating", "stars"];
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
#[serde(rename_all = "snake_case")]
pub enum Format {
    Goodreads,
    StoryGraph,
    LibraryThing,
    Plain,
    Generic,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Goodreads => "goodreads",
            Self::StoryGraph => "story_graph",
            Self::LibraryThing => "library_thing",
            Self::Plain => "plain",
            Self::Generic => "generic",
        }
    }

    fn detect(keys: &[String]) -> Self {
        let has = |wanted: &str| keys.iter().any(|key| key == wanted);
        if has("exclusiveshelf") && has("myrating") {
            Self::Goodreads
        } else if has("readstatus") && (has("isbnuid") || has("starrating")) {
            Self::StoryGraph
        } else if has("primaryauthor") && (has("isbns") || has("workid") || has("bookid")) {
            Self::LibraryThing
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

/// Where each book field lives in the file. Persisted by the glue so later slices need not
/// re-read the header.
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
}

impl Header {
    /// Maps column names to book fields; fails when none of them is a title.
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
        })
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
                 LibraryThing or Title,Author,ISBN layout"
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

/// Reads the header row from the start of the file (BOM allowed). Ok gives the header and the
/// cursor of the first data record. `input` may be only a prefix of the file; when the header
/// row does not end inside it and `eof` is false, the header counts as too long. Blank lines
/// (see the module docs) before the header are skipped.
pub fn read_header(input: &[u8], eof: bool) -> Result<(Header, Cursor), HeaderError> {
    let bom = if input.starts_with(UTF8_BOM) {
        UTF8_BOM.len()
    } else {
        0
    };
    let body = input.get(bom..).unwrap_or_default();
    let mut reader = RecordReader::new(
        Cursor {
            offset: bom as u64,
            line: 1,
        },
        MAX_HEADER_COLUMNS,
    );
    let mut consumed = 0;
    let names = loop {
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
                break record
                    .fields()
                    .map(|name| String::from_utf8_lossy(name).trim().to_string())
                    .collect::<Vec<_>>();
            }
            Step::NeedInput => {
                return Err(HeaderError::TooLong {
                    limit: input.len() as u64,
                })
            }
            Step::End => return Err(HeaderError::Empty),
        }
    };
    let header = Header::from_names(names)?;
    reader.skip_line_breaks(body.get(consumed..).unwrap_or_default(), eof);
    Ok((header, reader.position()))
}

/// Case folded, with everything but letters and digits dropped, so spacing, punctuation and
/// stray invisible characters (a BOM inside quotes) cannot hide a column.
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
    const GOODREADS_OLD: &str = "Book Id,Title,Author,Author l-f,Additional Authors,ISBN,\
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
}
