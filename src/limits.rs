//! Every request-size limit of the HTTP surface in one place, with the checks on the request line.

use crate::error::ApiError;
use serde_json::json;

/// The path, before routing: ids are 36 characters, so anything longer is not a route.
pub const MAX_PATH_BYTES: usize = 1_024;
/// The query string: only `/ws/progress` takes one (a 36-character id, a 43-character token
/// and a flag).
pub const MAX_QUERY_BYTES: usize = 1_024;
/// All header names and values together. Cloudflare's own limit is far higher; nothing this
/// API reads needs more than a few hundred bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Bodies of the small JSON routes: token refresh, cancel by body, synthetic jobs.
pub const SMALL_JSON_BODY_BYTES: usize = 16 * 1024;
/// 100 books at their longest fields are about 90 KB of JSON; this leaves room for spacing.
pub const ENRICHMENT_BODY_BYTES: usize = 256 * 1024;
/// The largest CSV upload (contract section 2).
pub const CSV_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Room for a multipart envelope around a CSV file of the largest size.
pub const MULTIPART_OVERHEAD_BYTES: usize = 64 * 1024;
/// The CSV header row must end within the upload's first 64 KiB.
pub const CSV_HEADER_WINDOW_BYTES: usize = 64 * 1024;

/// Refuses a request line or header block that no route of this API could need, before any
/// other work is done.
pub fn check_request(path: &str, query: Option<&str>, header_bytes: usize) -> Result<(), ApiError> {
    let query_len = query.map_or(0, str::len);
    if path.len() > MAX_PATH_BYTES || query_len > MAX_QUERY_BYTES {
        return Err(
            ApiError::invalid("the URL is too long for this API").with_details(
                json!({ "maxPathBytes": MAX_PATH_BYTES, "maxQueryBytes": MAX_QUERY_BYTES }),
            ),
        );
    }
    if header_bytes > MAX_HEADER_BYTES {
        return Err(ApiError::invalid("the request headers are too large")
            .with_details(json!({ "maxHeaderBytes": MAX_HEADER_BYTES })));
    }
    Ok(())
}

/// The value of a query parameter that must appear at most once; a repeated one is refused
/// rather than guessed at.
pub fn single_query_param<'a>(
    pairs: &'a [(String, String)],
    name: &str,
) -> Result<Option<&'a str>, ApiError> {
    let mut found = pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    let first = found.next();
    if found.next().is_some() {
        return Err(
            ApiError::invalid(format!("the {name} parameter is given more than once"))
                .with_details(json!({ "field": name })),
        );
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn request_line_limits() {
        let long = "x".repeat(MAX_QUERY_BYTES + 1);
        let table: &[(&str, Option<&str>, usize, bool)] = &[
            ("/health", None, 200, true),
            ("/ws/progress", Some("jobId=x&token=y"), 500, true),
            ("/ws/progress", Some(&long), 500, false),
            (&long, None, 0, false),
            ("/health", None, MAX_HEADER_BYTES, true),
            ("/health", None, MAX_HEADER_BYTES + 1, false),
        ];
        for (path, query, headers, ok) in table {
            let result = check_request(path, *query, *headers);
            assert_eq!(
                result.is_ok(),
                *ok,
                "{} {:?} {headers}",
                path.len(),
                query.map(str::len)
            );
            if let Err(e) = result {
                assert_eq!(e.code, ErrorCode::InvalidRequest);
            }
        }
    }

    #[test]
    fn repeated_parameters_are_refused() {
        let pairs: Vec<(String, String)> = [("jobId", "a"), ("token", "t"), ("jobId", "b")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(single_query_param(&pairs, "token").unwrap(), Some("t"));
        assert_eq!(single_query_param(&pairs, "reconnect").unwrap(), None);
        assert!(single_query_param(&pairs, "jobId").is_err());
    }
}
