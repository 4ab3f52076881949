//! URL building for provider queries: joining a configured base and RFC 3986 percent-encoding.

/// A configured base without its trailing slashes, so `https://x/` and `https://x` give the
/// same URLs and a path never gains a `//`.
pub(crate) fn base(api_base: &str) -> &str {
    api_base.trim().trim_end_matches('/')
}

/// Percent-encodes everything outside the RFC 3986 unreserved set (`A-Z a-z 0-9 - . _ ~`),
/// byte by byte over UTF-8. A space therefore becomes `%20`, never `+`: `%20` means a space
/// to every decoder, while `+` is a space only to form decoders, and a literal `+` in a title
/// must survive as `%2B`.
pub(crate) fn encode(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

/// Encodes a path that may hold several segments, keeping its `/` separators.
pub(crate) fn encode_path(path: &str) -> String {
    path.split('/').map(encode).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_outside_the_unreserved_set() {
        let table = [
            ("abcXYZ019-._~", "abcXYZ019-._~"),
            ("the hobbit", "the%20hobbit"),
            ("Pride & Prejudice", "Pride%20%26%20Prejudice"),
            ("a+b=c?d#e/f", "a%2Bb%3Dc%3Fd%23e%2Ff"),
            ("Les Misérables", "Les%20Mis%C3%A9rables"),
            ("三体", "%E4%B8%89%E4%BD%93"),
            ("📚", "%F0%9F%93%9A"),
            ("%", "%25"),
            ("", ""),
        ];
        for (raw, want) in table {
            assert_eq!(encode(raw), want, "{raw}");
        }
    }

    #[test]
    fn trims_trailing_slashes_from_bases() {
        let table = [
            ("https://openlibrary.org", "https://openlibrary.org"),
            ("https://openlibrary.org/", "https://openlibrary.org"),
            ("https://openlibrary.org//", "https://openlibrary.org"),
            (" http://127.0.0.1:8787/ol/ ", "http://127.0.0.1:8787/ol"),
        ];
        for (raw, want) in table {
            assert_eq!(base(raw), want, "{raw}");
        }
    }

    #[test]
    fn encodes_paths_segment_by_segment() {
        let table = [
            ("/authors/OL79034A", "/authors/OL79034A"),
            ("/authors/a b?c", "/authors/a%20b%3Fc"),
        ];
        for (raw, want) in table {
            assert_eq!(encode_path(raw), want, "{raw}");
        }
    }
}
