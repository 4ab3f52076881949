//! A small multipart/form-data parser over an in-memory body.
//!
//! Scope: what browsers, `curl` and mobile HTTP clients send for a file upload. Parts are
//! found by searching for the delimiter, so the work is linear in the body (times the
//! boundary length, at most 72 bytes), whatever the data contains. Header folding is
//! tolerated; `Content-Transfer-Encoding` and `filename*` are not interpreted (RFC 7578
//! deprecates the first, and browsers do not send the second).

use crate::error::ApiError;

/// More parts than an upload form has is a body built to make us work.
pub const MAX_PARTS: usize = 16;
/// The header block of one part, up to its blank line.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// RFC 2046 section 5.1.1.
pub const MAX_BOUNDARY_LEN: usize = 70;

/// One part of a form. Header values are decoded as UTF-8, lossily.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Part {
    pub name: Option<String>,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// Why a body is not a usable multipart/form-data body. `part` is the 0-based position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartError {
    /// The boundary is empty, longer than 70 bytes, or has characters RFC 2046 forbids.
    InvalidBoundary,
    /// The body never contains the opening delimiter.
    NoOpeningBoundary,
    /// The body ends before the closing delimiter.
    Truncated,
    /// A part has no blank line ending its headers before the data or the next delimiter.
    MissingHeaderEnd {
        part: usize,
    },
    MalformedHeader {
        part: usize,
    },
    HeadersTooLarge {
        part: usize,
    },
    TooManyParts,
}

impl MultipartError {
    pub fn message(&self) -> String {
        match self {
            Self::InvalidBoundary => {
                "the multipart boundary must be 1 to 70 characters allowed by RFC 2046".into()
            }
            Self::NoOpeningBoundary => "the multipart body does not contain its boundary".into(),
            Self::Truncated => "the multipart body ends before its closing boundary".into(),
            Self::MissingHeaderEnd { part } => {
                format!("multipart part {part} has no blank line after its headers")
            }
            Self::MalformedHeader { part } => {
                format!("multipart part {part} has a header line without a colon")
            }
            Self::HeadersTooLarge { part } => {
                format!("multipart part {part} has more than {MAX_HEADER_BYTES} bytes of headers")
            }
            Self::TooManyParts => format!("the multipart body has more than {MAX_PARTS} parts"),
        }
    }

    /// Every multipart failure is a malformed request: 400 INVALID_REQUEST.
    pub fn to_api_error(&self) -> ApiError {
        ApiError::invalid(self.message())
    }
}

impl std::fmt::Display for MultipartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for MultipartError {}

/// The boundary of a `multipart/form-data` Content-Type (type and parameter names in any
/// case, value quoted or bare). `None` for another media type or a missing or invalid
/// boundary, so that the caller can answer 415 or 400 without guessing.
pub fn boundary(content_type: &str) -> Option<String> {
    let (essence, rest) = content_type.split_once(';').unwrap_or((content_type, ""));
    if !essence.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params(rest)
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value)
        .filter(|value| valid_boundary(value))
}

/// RFC 2046 `bchars`, with the rule that a boundary does not end in a space.
fn valid_boundary(b: &str) -> bool {
    let ok_char = |c: u8| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'\''
                    | b'('
                    | b')'
                    | b'+'
                    | b'_'
                    | b','
                    | b'-'
                    | b'.'
                    | b'/'
                    | b':'
                    | b'='
                    | b'?'
                    | b' '
            )
    };
    (1..=MAX_BOUNDARY_LEN).contains(&b.len()) && b.bytes().all(ok_char) && !b.ends_with(' ')
}

/// Parses `; name=value; name="quoted value"` parameter lists. Inside quotes only `\"` and
/// `\\` are escapes: curl escapes that way, while browsers send backslashes (Windows paths)
/// unescaped, and keeping other backslashes literal serves both.
fn params(text: &str) -> Vec<(String, String)> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        while matches!(bytes.get(i), Some(b';' | b' ' | b'\t')) {
            i += 1;
        }
        let name_start = i;
        while !matches!(bytes.get(i), None | Some(b'=' | b';')) {
            i += 1;
        }
        let name = String::from_utf8_lossy(bytes.get(name_start..i).unwrap_or_default())
            .trim()
            .to_string();
        if bytes.get(i) != Some(&b'=') {
            if !name.is_empty() {
                out.push((name, String::new()));
            }
            continue;
        }
        i += 1;
        while matches!(bytes.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        let mut value = Vec::new();
        if bytes.get(i) == Some(&b'"') {
            i += 1;
            while let Some(&c) = bytes.get(i) {
                match (c, bytes.get(i + 1)) {
                    (b'\\', Some(&next @ (b'"' | b'\\'))) => {
                        value.push(next);
                        i += 2;
                    }
                    (b'"', _) => {
                        i += 1;
                        break;
                    }
                    _ => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
            // Anything between the closing quote and the next `;` is junk.
            while !matches!(bytes.get(i), None | Some(b';')) {
                i += 1;
            }
        } else {
            let start = i;
            while !matches!(bytes.get(i), None | Some(b';')) {
                i += 1;
            }
            value.extend_from_slice(bytes.get(start..i).unwrap_or_default().trim_ascii());
        }
        out.push((name, String::from_utf8_lossy(&value).into_owned()));
    }
    out
}

/// A delimiter line found in the body.
struct Delimiter {
    /// Where the preceding part's data ends (before the line break that opens the delimiter).
    content_end: usize,
    /// `--boundary--`: no part follows.
    close: bool,
    /// Just past the line break that ends the delimiter line.
    line_end: usize,
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let rest = haystack.get(from..)?;
    let first = *needle.first()?;
    let mut offset = 0;
    while let Some(pos) = rest.get(offset..)?.iter().position(|&b| b == first) {
        let at = offset + pos;
        if rest.get(at..at + needle.len())? == needle {
            return Some(from + at);
        }
        offset = at + 1;
    }
    None
}

/// The next `--boundary` at or after `from` that starts a line and is followed by `--` or by
/// optional transport padding and a line break. Text that merely starts like the delimiter
/// (`--boundaryX`) is data.
fn next_delimiter(body: &[u8], delim: &[u8], from: usize) -> Option<Delimiter> {
    let mut search = from;
    loop {
        let at = find(body, delim, search)?;
        search = at + 1;
        let content_end = if at == 0 {
            0
        } else if body.get(at - 1) == Some(&b'\n') {
            let lf = at - 1;
            if lf > 0 && body.get(lf - 1) == Some(&b'\r') {
                lf - 1
            } else {
                lf
            }
        } else {
            continue;
        };
        let after = at + delim.len();
        if body.get(after..after + 2) == Some(b"--") {
            return Some(Delimiter {
                content_end,
                close: true,
                line_end: after + 2,
            });
        }
        let mut i = after;
        while matches!(body.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        let line_end = match (body.get(i), body.get(i + 1)) {
            (Some(b'\r'), Some(b'\n')) => i + 2,
            (Some(b'\n'), _) => i + 1,
            _ => continue,
        };
        return Some(Delimiter {
            content_end,
            close: false,
            line_end,
        });
    }
}

struct Headers {
    name: Option<String>,
    filename: Option<String>,
    content_type: Option<String>,
    data_start: usize,
}

/// Reads the header block that starts at `start`, up to and including its blank line.
fn read_headers(
    body: &[u8],
    start: usize,
    delim: &[u8],
    part: usize,
) -> Result<Headers, MultipartError> {
    let limit = body.len().min(start.saturating_add(MAX_HEADER_BYTES));
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut line_start = start;
    let data_start = loop {
        let window = body.get(line_start..limit).unwrap_or_default();
        let Some(nl) = window.iter().position(|&b| b == b'\n') else {
            return Err(if limit < body.len() {
                MultipartError::HeadersTooLarge { part }
            } else {
                MultipartError::MissingHeaderEnd { part }
            });
        };
        let raw = window.get(..nl).unwrap_or_default();
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let next = line_start + nl + 1;
        if line.is_empty() {
            break next;
        }
        if line.starts_with(delim) {
            return Err(MultipartError::MissingHeaderEnd { part });
        }
        let text = String::from_utf8_lossy(line);
        if text.starts_with([' ', '\t']) {
            let (_, value) = fields
                .last_mut()
                .ok_or(MultipartError::MalformedHeader { part })?;
            value.push(' ');
            value.push_str(text.trim());
        } else {
            let (name, value) = text
                .split_once(':')
                .ok_or(MultipartError::MalformedHeader { part })?;
            fields.push((name.trim().to_string(), value.trim().to_string()));
        }
        line_start = next;
    };

    let header = |wanted: &str| {
        fields
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| value.as_str())
    };
    let disposition = header("content-disposition")
        .map(|value| {
            let rest = value.split_once(';').map(|(_, r)| r).unwrap_or_default();
            params(rest)
        })
        .unwrap_or_default();
    let param = |wanted: &str| {
        disposition
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, value)| value.clone())
    };
    Ok(Headers {
        name: param("name"),
        filename: param("filename"),
        content_type: header("content-type")
            .filter(|v| !v.is_empty())
            .map(str::to_string),
        data_start,
    })
}

/// Splits a multipart body into its parts. The preamble before the first delimiter and the
/// epilogue after the closing one are ignored; line breaks may be CRLF or bare LF. A body
/// holding only the closing delimiter has no parts.
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, MultipartError> {
    if !valid_boundary(boundary) {
        return Err(MultipartError::InvalidBoundary);
    }
    let mut delim = Vec::with_capacity(boundary.len() + 2);
    delim.extend_from_slice(b"--");
    delim.extend_from_slice(boundary.as_bytes());

    let first = next_delimiter(body, &delim, 0).ok_or(MultipartError::NoOpeningBoundary)?;
    let mut parts = Vec::new();
    if first.close {
        return Ok(parts);
    }
    let mut cursor = first.line_end;
    loop {
        if parts.len() == MAX_PARTS {
            return Err(MultipartError::TooManyParts);
        }
        let headers = read_headers(body, cursor, &delim, parts.len())?;
        let next =
            next_delimiter(body, &delim, headers.data_start).ok_or(MultipartError::Truncated)?;
        // A sloppy sender may let the blank line double as the delimiter's line break.
        let end = next.content_end.max(headers.data_start);
        parts.push(Part {
            name: headers.name,
            filename: headers.filename,
            content_type: headers.content_type,
            data: body
                .get(headers.data_start..end)
                .unwrap_or_default()
                .to_vec(),
        });
        if next.close {
            return Ok(parts);
        }
        cursor = next.line_end;
    }
}

/// The first part named `name` (form field names are case-sensitive).
pub fn find_field<'a>(parts: &'a [Part], name: &str) -> Option<&'a Part> {
    parts.iter().find(|p| p.name.as_deref() == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(name: Option<&str>, filename: Option<&str>, ct: Option<&str>, data: &[u8]) -> Part {
        Part {
            name: name.map(Into::into),
            filename: filename.map(Into::into),
            content_type: ct.map(Into::into),
            data: data.to_vec(),
        }
    }

    #[test]
    fn extracts_boundaries() {
        let table: &[(&str, Option<&str>)] = &[
            ("multipart/form-data; boundary=abc123", Some("abc123")),
            (
                "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
                Some("----WebKitFormBoundary7MA4YWxkTrZu0gW"),
            ),
            ("multipart/form-data; boundary=\"a b:c\"", Some("a b:c")),
            ("Multipart/Form-Data; BOUNDARY=xyz", Some("xyz")),
            (
                "multipart/form-data;charset=utf-8;boundary=xyz ",
                Some("xyz"),
            ),
            (
                "multipart/form-data; boundary=\"x=y\"; charset=utf-8",
                Some("x=y"),
            ),
            (
                "multipart/form-data; boundary=------------------------d74496d66958873e",
                Some("------------------------d74496d66958873e"),
            ),
            ("multipart/form-data", None),
            ("multipart/form-data; boundary=", None),
            ("multipart/form-data; boundary=\"\"", None),
            ("multipart/form-data; boundary=\"ends in space \"", None),
            ("multipart/form-data; boundary=bad<char>", None),
            ("multipart/form-data; boundary=\"x;y\"", None),
            ("multipart/mixed; boundary=abc", None),
            ("image/jpeg; boundary=abc", None),
            ("", None),
        ];
        for (ct, want) in table {
            assert_eq!(boundary(ct).as_deref(), *want, "{ct:?}");
        }
        let long = "a".repeat(71);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={long}")),
            None
        );
        let max = "a".repeat(70);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={max}")),
            Some(max)
        );
    }

    #[test]
    fn parses_well_formed_bodies() {
        let browser = b"--XyZ\r\n\
Content-Disposition: form-data; name=\"note\"\r\n\
\r\n\
hello\r\n\
--XyZ\r\n\
Content-Disposition: form-data; name=\"image\"; filename=\"shelf.jpg\"\r\n\
Content-Type: image/jpeg\r\n\
\r\n\
\xFF\xD8\xFF\xE0data\r\n\
--XyZ--\r\n";
        let unquoted = b"preamble to ignore\r\n--XyZ\r\n\
content-disposition: form-data; name=image; filename=shelf.png\r\n\
CONTENT-TYPE: image/png\r\n\
\r\n\
png\r\n\
--XyZ--\r\nepilogue to ignore";
        let lf_only = b"--XyZ\n\
Content-Disposition: form-data; name=\"image\"\n\
\n\
line one\nline two\n\
--XyZ--\n";
        let escaped = b"--XyZ\r\n\
Content-Disposition: form-data; name=\"a\\\"b\"; filename=\"C:\\photos\\shelf;1.jpg\"\r\n\
\r\n\
x\r\n\
--XyZ--";
        let no_headers = b"--XyZ\r\n\r\nanonymous\r\n--XyZ  \r\n\
Content-Disposition: form-data;\r\n name=\"folded\"\r\n\r\n\r\n--XyZ--";
        let only_close = b"--XyZ--\r\n";
        let shared_break = b"--XyZ\r\nContent-Disposition: form-data; name=e\r\n\r\n--XyZ--";

        let table: Vec<(&str, &[u8], Vec<Part>)> = vec![
            (
                "browser",
                browser,
                vec![
                    part(Some("note"), None, None, b"hello"),
                    part(
                        Some("image"),
                        Some("shelf.jpg"),
                        Some("image/jpeg"),
                        b"\xFF\xD8\xFF\xE0data",
                    ),
                ],
            ),
            (
                "unquoted with preamble and epilogue",
                unquoted,
                vec![part(
                    Some("image"),
                    Some("shelf.png"),
                    Some("image/png"),
                    b"png",
                )],
            ),
            (
                "lf only",
                lf_only,
                vec![part(Some("image"), None, None, b"line one\nline two")],
            ),
            (
                "escapes and windows paths",
                escaped,
                vec![part(
                    Some("a\"b"),
                    Some("C:\\photos\\shelf;1.jpg"),
                    None,
                    b"x",
                )],
            ),
            (
                "no headers, padding, folding, empty data",
                no_headers,
                vec![
                    part(None, None, None, b"anonymous"),
                    part(Some("folded"), None, None, b""),
                ],
            ),
            ("only the closing delimiter", only_close, vec![]),
            (
                "blank line doubles as the delimiter's break",
                shared_break,
                vec![part(Some("e"), None, None, b"")],
            ),
        ];
        for (name, body, want) in table {
            assert_eq!(parse(body, "XyZ").as_ref(), Ok(&want), "{name}");
        }
    }

    #[test]
    fn keeps_binary_data_that_resembles_delimiters() {
        let data: &[u8] = b"\x00\xFF\r\n--XyZ\x00\r\n--Xy\r\n\r\n--XyZX\r\n--XyZ-\r\n\r\n\xFF";
        let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n".to_vec();
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        let parts = parse(&body, "XyZ").unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].data, data);
    }

    #[test]
    fn rejects_malformed_bodies() {
        let many: Vec<u8> = {
            let mut b = Vec::new();
            for i in 0..=MAX_PARTS {
                b.extend_from_slice(
                    format!("--XyZ\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\nv\r\n")
                        .as_bytes(),
                );
            }
            b.extend_from_slice(b"--XyZ--\r\n");
            b
        };
        let exactly_max: Vec<u8> = {
            let mut b = Vec::new();
            for i in 0..MAX_PARTS {
                b.extend_from_slice(format!("--XyZ\r\nX-I: {i}\r\n\r\nv\r\n").as_bytes());
            }
            b.extend_from_slice(b"--XyZ--");
            b
        };
        assert_eq!(parse(&exactly_max, "XyZ").map(|p| p.len()), Ok(MAX_PARTS));
        let huge_headers = {
            let mut b = b"--XyZ\r\nX-Pad: ".to_vec();
            b.extend(std::iter::repeat_n(b'a', MAX_HEADER_BYTES + 10));
            b.extend_from_slice(b"\r\n\r\ndata\r\n--XyZ--");
            b
        };

        let table: Vec<(&str, Vec<u8>, &str, MultipartError)> = vec![
            (
                "truncated data",
                b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n\xFF\xD8\xFF"
                    .to_vec(),
                "XyZ",
                MultipartError::Truncated,
            ),
            (
                "delimiter without closing dashes at the end",
                b"--XyZ\r\nA: b\r\n\r\nv\r\n--XyZ".to_vec(),
                "XyZ",
                MultipartError::Truncated,
            ),
            (
                "no boundary in body",
                b"just some bytes\r\n".to_vec(),
                "XyZ",
                MultipartError::NoOpeningBoundary,
            ),
            (
                "other boundary in body",
                b"--Other\r\n\r\nv\r\n--Other--".to_vec(),
                "XyZ",
                MultipartError::NoOpeningBoundary,
            ),
            (
                "empty body",
                Vec::new(),
                "XyZ",
                MultipartError::NoOpeningBoundary,
            ),
            (
                "headers run into the next delimiter",
                b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n--XyZ--\r\n".to_vec(),
                "XyZ",
                MultipartError::MissingHeaderEnd { part: 0 },
            ),
            (
                "headers run to the end",
                b"--XyZ\r\nA: b\r\nC: d".to_vec(),
                "XyZ",
                MultipartError::MissingHeaderEnd { part: 0 },
            ),
            (
                "header without colon",
                b"--XyZ\r\nA: b\r\n\r\nv\r\n--XyZ\r\nnot a header\r\n\r\nv\r\n--XyZ--".to_vec(),
                "XyZ",
                MultipartError::MalformedHeader { part: 1 },
            ),
            (
                "fold without a header",
                b"--XyZ\r\n folded\r\n\r\nv\r\n--XyZ--".to_vec(),
                "XyZ",
                MultipartError::MalformedHeader { part: 0 },
            ),
            ("too many parts", many, "XyZ", MultipartError::TooManyParts),
            (
                "huge headers",
                huge_headers,
                "XyZ",
                MultipartError::HeadersTooLarge { part: 0 },
            ),
            (
                "empty boundary",
                b"--\r\n".to_vec(),
                "",
                MultipartError::InvalidBoundary,
            ),
            (
                "boundary with control bytes",
                b"--a\nb\r\n".to_vec(),
                "a\nb",
                MultipartError::InvalidBoundary,
            ),
        ];
        for (name, body, b, want) in table {
            assert_eq!(parse(&body, b), Err(want.clone()), "{name}");
            assert!(!want.message().is_empty());
            assert_eq!(want.to_api_error().status(), 400);
        }
    }

    #[test]
    fn finds_fields_by_exact_name() {
        let parts = vec![
            part(Some("note"), None, None, b"1"),
            part(None, None, None, b"2"),
            part(Some("image"), None, None, b"3"),
            part(Some("image"), None, None, b"4"),
        ];
        let table: &[(&str, Option<&[u8]>)] = &[
            ("image", Some(b"3")),
            ("note", Some(b"1")),
            ("Image", None),
            ("missing", None),
            ("", None),
        ];
        for (name, want) in table {
            assert_eq!(
                find_field(&parts, name).map(|p| p.data.as_slice()),
                *want,
                "{name}"
            );
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// Bytes biased towards the characters that steer the parser.
    fn structural_bytes() -> impl Strategy<Value = Vec<u8>> {
        let atoms = prop_oneof![
            Just(b"--XyZ".to_vec()),
            Just(b"--XyZ--".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"Content-Disposition: form-data; name=\"image\"".to_vec()),
            Just(b"; filename=\"".to_vec()),
            Just(b" ".to_vec()),
            any::<u8>().prop_map(|b| vec![b]),
        ];
        prop::collection::vec(atoms, 0..64).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&body, "XyZ");
        }

        #[test]
        fn parse_never_panics_on_structured_noise(body in structural_bytes()) {
            if let Ok(parts) = parse(&body, "XyZ") {
                prop_assert!(parts.len() <= MAX_PARTS);
                let total: usize = parts.iter().map(|p| p.data.len()).sum();
                prop_assert!(total <= body.len());
            }
        }

        #[test]
        fn boundary_never_panics(ct in ".{0,120}") {
            if let Some(b) = boundary(&ct) {
                prop_assert!(valid_boundary(&b));
            }
        }

        #[test]
        fn round_trips_arbitrary_data(data in prop::collection::vec(any::<u8>(), 0..256)) {
            // 256 random bytes will not contain a 20-byte boundary, so the part is exact.
            let b = "Zq7-boundary-9fK2xLw0";
            let mut body = format!("--{b}\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n").into_bytes();
            body.extend_from_slice(&data);
            body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
            let parts = parse(&body, b).unwrap();
            prop_assert_eq!(parts.len(), 1);
            prop_assert_eq!(&parts[0].data, &data);
        }
    }
}
