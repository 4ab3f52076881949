//! How a provider lookup can fail: unusable bodies and the meaning of HTTP error statuses.

use std::fmt;

/// A provider answered with a body this module cannot use. The glue reports it as a provider
/// error for that one book; it is never a reason to fail the whole job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON at all (an HTML error page, a truncated body, a nesting bomb).
    InvalidJson(String),
    /// JSON, but not the shape this endpoint documents.
    UnexpectedShape(String),
    /// A well-formed error object sent with a success status (Google's `{"error":{...}}`).
    Provider(String),
}

impl ParseError {
    /// The body could not be read (as opposed to a readable error object): the book then ends
    /// as a parse error, never as "not found".
    pub fn is_unreadable(&self) -> bool {
        matches!(self, Self::InvalidJson(_) | Self::UnexpectedShape(_))
    }

    /// What went wrong, without the provider's own text (contract 9.6: messages name the
    /// provider and the status, never echo its response).
    pub fn summary(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "its response is not valid JSON",
            Self::UnexpectedShape(_) => "its response has an unexpected shape",
            Self::Provider(_) => "it reported an error",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidJson(e) => write!(f, "provider response is not valid JSON: {e}"),
            Self::UnexpectedShape(e) => write!(f, "unexpected provider response: {e}"),
            Self::Provider(e) => write!(f, "provider reported an error: {e}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// What a non-success HTTP status from a provider means for the book being looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupFailure {
    /// Worth retrying later: the provider is slow, overloaded or rate limiting us.
    Transient,
    /// The provider has no such record: "no match", not an outage (Open Library's `/isbn/`
    /// answers 404 for every ISBN it does not know).
    NotFound,
    /// Retrying will not help (a bad request or a rejected key); report it for this book.
    Permanent,
}

impl LookupFailure {
    pub fn is_retryable(self) -> bool {
        self == Self::Transient
    }
}

/// Classifies a provider's non-2xx status. Statuses the contract does not name (1xx, 2xx,
/// 3xx that `fetch` did not follow) are `Permanent`: an answer we cannot read will not
/// become readable by asking again.
pub fn classify_status(status: u16) -> LookupFailure {
    match status {
        404 => LookupFailure::NotFound,
        408 | 429 | 500..=599 => LookupFailure::Transient,
        _ => LookupFailure::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statuses() {
        use LookupFailure::*;
        let table = [
            (404, NotFound),
            (408, Transient),
            (429, Transient),
            (500, Transient),
            (502, Transient),
            (503, Transient),
            (504, Transient),
            (599, Transient),
            (400, Permanent),
            (401, Permanent),
            (403, Permanent),
            (405, Permanent),
            (410, Permanent),
            (422, Permanent),
            (499, Permanent),
            (302, Permanent),
            (200, Permanent),
            (600, Permanent),
            (0, Permanent),
        ];
        for (status, want) in table {
            assert_eq!(classify_status(status), want, "{status}");
            assert_eq!(classify_status(status).is_retryable(), want == Transient);
        }
    }

    #[test]
    fn parse_errors_display_their_cause() {
        let table = [
            (
                ParseError::InvalidJson("eof".into()),
                "provider response is not valid JSON: eof",
            ),
            (
                ParseError::UnexpectedShape("items".into()),
                "unexpected provider response: items",
            ),
            (
                ParseError::Provider("quota".into()),
                "provider reported an error: quota",
            ),
        ];
        for (err, want) in table {
            assert_eq!(err.to_string(), want);
        }
        let summaries = [
            (
                ParseError::InvalidJson("eof".into()),
                true,
                "its response is not valid JSON",
            ),
            (
                ParseError::UnexpectedShape("x".into()),
                true,
                "its response has an unexpected shape",
            ),
            (
                ParseError::Provider("Quota exceeded".into()),
                false,
                "it reported an error",
            ),
        ];
        for (err, unreadable, summary) in summaries {
            assert_eq!((err.is_unreadable(), err.summary()), (unreadable, summary));
        }
    }
}
