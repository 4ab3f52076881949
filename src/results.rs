//! Paged results (contract 9.2): the page a client asks for, and cursors that only the job
//! they came from accepts.
//!
//! A cursor is opaque to clients: a position inside the job's stored results (two numbers
//! whose meaning is the pipeline's), bound to the job id and the pipeline by a MAC under the
//! signing key, so a cursor of another job, another pipeline or a hand-edited one is 400.

use crate::base64;
use crate::error::ApiError;
use crate::limits::single_query_param;
use crate::token::{constant_time_eq, hmac_sha256};
use serde::Serialize;
use serde_json::json;

/// Entries per page when the client does not say, and the most it may ask for.
pub const MAX_LIMIT: usize = 1_000;
/// The most bytes of JSON one page holds, its envelope aside.
pub const MAX_PAGE_BYTES: usize = 1024 * 1024;

const MAC_BYTES: usize = 12;

/// A page of results as sent: the pipeline's document, and `nextCursor` when entries remain
/// (contract 9.2).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(
    not(target_arch = "wasm32"),
    derive(schemars::JsonSchema),
    schemars(inline)
)]
#[serde(rename_all = "camelCase")]
pub struct Paged<T> {
    #[serde(flatten)]
    pub page: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Where in a job's results a page starts: two numbers whose meaning is the pipeline's (a
/// CSV slice and a book in it; a book's index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub major: u64,
    pub minor: u64,
}

/// The page a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: usize,
    /// `None` for the first page.
    pub after: Option<Position>,
}

impl PageRequest {
    pub const FIRST: Self = Self {
        limit: MAX_LIMIT,
        after: None,
    };

    pub fn is_first(&self) -> bool {
        self.after.is_none()
    }
}

/// The raw `limit` and `cursor` of a results request, as the Worker forwards them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl PageQuery {
    /// From the decoded query pairs; a repeated parameter is 400.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        Ok(Self {
            limit: single_query_param(pairs, "limit")?.map(str::to_string),
            cursor: single_query_param(pairs, "cursor")?.map(str::to_string),
        })
    }

    /// The query string to forward to the job's object.
    pub fn to_query(&self) -> String {
        let mut out = Vec::new();
        if let Some(limit) = &self.limit {
            out.push(format!("limit={}", url_escape(limit)));
        }
        if let Some(cursor) = &self.cursor {
            out.push(format!("cursor={}", url_escape(cursor)));
        }
        out.join("&")
    }

    /// The page asked for, checked: `limit` in 1..=1000, and a cursor this job issued.
    pub fn page(&self, signer: &CursorSigner, job_id: &str) -> Result<PageRequest, ApiError> {
        let limit = match &self.limit {
            None => MAX_LIMIT,
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::invalid(format!(
                        "limit must be a whole number in 1..={MAX_LIMIT}"
                    ))
                    .with_details(json!({ "field": "limit" })))
                }
            },
        };
        let after = match &self.cursor {
            None => None,
            Some(cursor) => Some(signer.open(job_id, cursor).ok_or_else(|| {
                ApiError::invalid("cursor is not one this job's results gave")
                    .with_details(json!({ "field": "cursor" }))
            })?),
        };
        Ok(PageRequest { limit, after })
    }
}

/// Cursors, under the deployment's signing key and for one pipeline.
pub struct CursorSigner {
    key: Vec<u8>,
    pipeline: &'static str,
}

impl CursorSigner {
    pub fn new(key: &[u8], pipeline: &'static str) -> Self {
        Self {
            key: key.to_vec(),
            pipeline,
        }
    }

    fn mac(&self, job_id: &str, body: &[u8]) -> [u8; 32] {
        hmac_sha256(
            &self.key,
            &[
                b"bookstrack-cursor-v1\0",
                job_id.as_bytes(),
                b"\0",
                self.pipeline.as_bytes(),
                b"\0",
                body,
            ],
        )
    }

    pub fn seal(&self, job_id: &str, at: Position) -> String {
        let mut raw = Vec::with_capacity(16 + MAC_BYTES);
        raw.extend_from_slice(&at.major.to_be_bytes());
        raw.extend_from_slice(&at.minor.to_be_bytes());
        let mac = self.mac(job_id, &raw);
        raw.extend_from_slice(&mac[..MAC_BYTES]);
        base64::encode_url(&raw)
    }

    pub fn open(&self, job_id: &str, cursor: &str) -> Option<Position> {
        let raw = base64::decode(cursor, 64).ok()?;
        if raw.len() != 16 + MAC_BYTES || base64::encode_url(&raw) != cursor {
            return None;
        }
        let (body, mac) = raw.split_at(16);
        if !constant_time_eq(mac, &self.mac(job_id, body)[..MAC_BYTES]) {
            return None;
        }
        let number = |bytes: &[u8]| u64::from_be_bytes(bytes.try_into().unwrap_or([0; 8]));
        Some(Position {
            major: number(&body[..8]),
            minor: number(&body[8..]),
        })
    }
}

/// Percent-escapes what a query value must not carry raw; cursors are base64url already.
fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Adds JSON items to a page while they fit in its budget of bytes and entries.
pub struct PageBudget {
    bytes_left: usize,
    entries_left: usize,
}

impl PageBudget {
    pub fn new(limit: usize, bytes: usize) -> Self {
        Self {
            bytes_left: bytes,
            entries_left: limit,
        }
    }

    /// Takes `len` bytes for one entry if they fit; the first entry of a page always fits,
    /// so a page is never empty while entries remain.
    pub fn take(&mut self, len: usize, first: bool) -> bool {
        if self.entries_left == 0 || (!first && len + 1 > self.bytes_left) {
            return false;
        }
        self.entries_left -= 1;
        self.bytes_left = self.bytes_left.saturating_sub(len + 1);
        true
    }

    /// Takes bytes that are not an entry (errors and warnings on a first page).
    pub fn spend(&mut self, len: usize) {
        self.bytes_left = self.bytes_left.saturating_sub(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(limit: Option<&str>, cursor: Option<&str>) -> PageQuery {
        PageQuery {
            limit: limit.map(str::to_string),
            cursor: cursor.map(str::to_string),
        }
    }

    #[test]
    fn cursors_open_only_for_their_job_and_pipeline() {
        let csv = CursorSigner::new(b"key", "csv");
        let at = Position {
            major: 3,
            minor: 1_999,
        };
        let cursor = csv.seal("job-a", at);
        assert_eq!(csv.open("job-a", &cursor), Some(at));
        assert_eq!(csv.open("job-b", &cursor), None, "another job");
        assert_eq!(
            CursorSigner::new(b"key", "scan").open("job-a", &cursor),
            None
        );
        assert_eq!(
            CursorSigner::new(b"other", "csv").open("job-a", &cursor),
            None
        );
        let mut edited = cursor.clone().into_bytes();
        edited[3] = if edited[3] == b'A' { b'B' } else { b'A' };
        let edited = String::from_utf8(edited).unwrap();
        for bad in [edited.as_str(), "", "abc", "%%%", &format!("{cursor}A")] {
            assert_eq!(csv.open("job-a", bad), None, "{bad:?}");
        }
    }

    #[test]
    fn page_requests() {
        let signer = CursorSigner::new(b"key", "csv");
        let cursor = signer.seal("j", Position { major: 1, minor: 2 });
        type Case<'a> = (Option<&'a str>, Option<&'a str>, Option<(usize, bool)>);
        let table: &[Case] = &[
            (None, None, Some((1_000, true))),
            (Some("1"), None, Some((1, true))),
            (Some("1000"), Some(&cursor), Some((1_000, false))),
            (Some("0"), None, None),
            (Some("1001"), None, None),
            (Some("-1"), None, None),
            (Some("ten"), None, None),
            (None, Some("nope"), None),
        ];
        for (limit, cursor, want) in table {
            let got = query(*limit, *cursor).page(&signer, "j");
            match want {
                Some((limit, first)) => {
                    let page = got.unwrap();
                    assert_eq!((page.limit, page.is_first()), (*limit, *first));
                }
                None => assert_eq!(got.unwrap_err().status(), 400, "{limit:?} {cursor:?}"),
            }
        }
    }

    #[test]
    fn queries_forward_escaped() {
        assert_eq!(
            query(Some("5"), Some("a-b_c")).to_query(),
            "limit=5&cursor=a-b_c"
        );
        assert_eq!(query(None, Some("a&b=c")).to_query(), "cursor=a%26b%3Dc");
        assert_eq!(query(None, None).to_query(), "");
    }

    #[test]
    fn a_budget_bounds_bytes_and_entries_but_never_leaves_a_page_empty() {
        let mut budget = PageBudget::new(3, 100);
        assert!(budget.take(500, true), "the first entry always fits");
        let mut budget = PageBudget::new(3, 100);
        assert!(budget.take(40, true));
        assert!(budget.take(40, false));
        assert!(!budget.take(40, false), "over the bytes");
        let mut budget = PageBudget::new(2, 1_000);
        assert!(budget.take(1, true) && budget.take(1, false));
        assert!(!budget.take(1, false), "over the entries");
    }
}
