//! Base64 encoding and a strict-but-forgiving decoder, small enough not to need a crate.

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Standard alphabet with `=` padding, as Gemini's `inline_data` expects.
pub fn encode(bytes: &[u8]) -> String {
    encode_with(bytes, STANDARD, true)
}

/// URL-safe alphabet without padding, for tokens that travel in query strings.
pub fn encode_url(bytes: &[u8]) -> String {
    encode_with(bytes, URL_SAFE, false)
}

/// Standard alphabet with padding, appended to `out`: a photo's text goes straight into the
/// request body that carries it.
pub fn encode_into(out: &mut String, bytes: &[u8]) {
    append_with(out, bytes, STANDARD, true);
}

/// The length of [`encode`]'s text for `len` bytes.
pub fn encoded_len(len: usize) -> usize {
    len.div_ceil(3) * 4
}

fn encode_with(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(encoded_len(bytes.len()));
    append_with(&mut out, bytes, alphabet, pad);
    out
}

fn append_with(out: &mut String, bytes: &[u8], alphabet: &[u8; 64], pad: bool) {
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let symbols = chunk.len() + 1;
        for i in 0..4 {
            if i < symbols {
                out.push(alphabet[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
}

/// Why a base64 text could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    InvalidByte {
        offset: usize,
        byte: u8,
    },
    InvalidLength,
    /// The decoded size would pass the caller's limit; found before decoding it all.
    TooLarge {
        decoded_at_least: usize,
    },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidByte { offset, byte } => {
                write!(f, "invalid base64 byte 0x{byte:02x} at offset {offset}")
            }
            Self::InvalidLength => write!(f, "invalid base64 length"),
            Self::TooLarge { decoded_at_least } => {
                write!(f, "decoded data is at least {decoded_at_least} bytes")
            }
        }
    }
}

fn sextet(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'+' | b'-' => Some(62),
        b'/' | b'_' => Some(63),
        _ => None,
    }
}

/// Decodes standard or URL-safe base64, padded or not, skipping ASCII whitespace (line-wrapped
/// encoders) and a leading `data:...;base64,` prefix. Fails before decoding past
/// `max_decoded` bytes.
pub fn decode(text: &str, max_decoded: usize) -> Result<Vec<u8>, DecodeError> {
    let mut buffer = text.as_bytes().to_vec();
    let len = decode_in_place(&mut buffer, 0..text.len(), 0, max_decoded)?;
    buffer.truncate(len);
    Ok(buffer)
}

/// As [`decode`], for the text at `src` in `buffer`, writing the bytes at `dst` in the same
/// buffer: a 33 MiB batch of photos is decoded without a second buffer. Returns how many
/// bytes were written. `dst` must not be after `src.start`: each byte is written where text
/// has already been read (three bytes for four symbols), so no unread text is overwritten.
/// On an error, the bytes from `dst` on may have been overwritten.
pub fn decode_in_place(
    buffer: &mut [u8],
    src: std::ops::Range<usize>,
    dst: usize,
    max_decoded: usize,
) -> Result<usize, DecodeError> {
    assert!(
        dst <= src.start && src.end <= buffer.len(),
        "decode_in_place: bad ranges"
    );
    let text = &buffer[src.clone()];
    let prefix_len = match text.strip_prefix(b"data:") {
        Some(rest) => rest
            .iter()
            .position(|&b| b == b',')
            .map_or(5, |comma| 5 + comma + 1),
        None => 0,
    };
    let significant = text[prefix_len..]
        .iter()
        .filter(|b| !b.is_ascii_whitespace())
        .count();
    let estimated = significant / 4 * 3;
    if estimated > max_decoded.saturating_add(3) {
        return Err(DecodeError::TooLarge {
            decoded_at_least: estimated.saturating_sub(2),
        });
    }
    let mut written = dst;
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut padding = 0usize;
    let mut symbols = 0usize;
    for i in src.start + prefix_len..src.end {
        let byte = buffer[i];
        if byte.is_ascii_whitespace() {
            continue;
        }
        if byte == b'=' {
            padding += 1;
            continue;
        }
        let offset = i - src.start;
        if padding > 0 {
            // Data after padding is corrupt input, not a second message.
            return Err(DecodeError::InvalidByte { offset, byte });
        }
        let value = sextet(byte).ok_or(DecodeError::InvalidByte { offset, byte })?;
        symbols += 1;
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // `written` trails `i`: at least two symbols are read for each byte written.
            buffer[written] = (acc >> bits) as u8;
            written += 1;
            acc &= (1 << bits) - 1;
        }
    }
    let remainder = symbols % 4;
    if remainder == 1 || padding > 2 || (padding > 0 && !(symbols + padding).is_multiple_of(4)) {
        return Err(DecodeError::InvalidLength);
    }
    let len = written - dst;
    if len > max_decoded {
        return Err(DecodeError::TooLarge {
            decoded_at_least: len,
        });
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        let table = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in table {
            assert_eq!(encode(plain.as_bytes()), encoded);
            assert_eq!(decode(encoded, 100).unwrap(), plain.as_bytes(), "{encoded}");
            let unpadded = encoded.trim_end_matches('=');
            assert_eq!(
                decode(unpadded, 100).unwrap(),
                plain.as_bytes(),
                "{unpadded}"
            );
        }
    }

    #[test]
    fn url_safe_round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = encode_url(&bytes);
        assert!(!text.contains(['+', '/', '=']));
        assert_eq!(decode(&text, 1_000).unwrap(), bytes);
    }

    #[test]
    fn tolerates_wrapping_and_data_urls() {
        assert_eq!(decode("Zm9v\r\nYmFy\n", 10).unwrap(), b"foobar");
        assert_eq!(
            decode("data:image/png;base64,Zm9vYmFy", 10).unwrap(),
            b"foobar"
        );
    }

    #[test]
    fn rejects_garbage() {
        let table: &[(&str, DecodeError)] = &[
            (
                "Zm9v!",
                DecodeError::InvalidByte {
                    offset: 4,
                    byte: b'!',
                },
            ),
            ("Zm9vY", DecodeError::InvalidLength),
            ("Zg===", DecodeError::InvalidLength),
            (
                "Zg=a",
                DecodeError::InvalidByte {
                    offset: 3,
                    byte: b'a',
                },
            ),
            ("Z===", DecodeError::InvalidLength),
        ];
        for (text, want) in table {
            assert_eq!(&decode(text, 100).unwrap_err(), want, "{text}");
        }
    }

    #[test]
    fn enforces_the_size_limit() {
        let text = encode(&[7u8; 1_000]);
        assert!(decode(&text, 1_000).is_ok());
        assert!(matches!(
            decode(&text, 999),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            decode(&text, 10),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn decodes_in_place_behind_the_text() {
        // Three texts back to back, decoded each to the end of the previous one's bytes, as
        // a batch's photos are in their JSON body.
        let plains: [&[u8]; 3] = [b"first photo", &[0u8, 255, 7, 8, 9], b"x"];
        let texts = [
            encode(plains[0]),
            format!("data:image/png;base64,{}", encode(plains[1])),
            // Wrapped lines, as some encoders write them.
            format!("{}\r\n", encode(plains[2])),
        ];
        let mut buffer = b"{}".to_vec();
        let mut ranges = Vec::new();
        for text in &texts {
            let start = buffer.len();
            buffer.extend_from_slice(text.as_bytes());
            ranges.push(start..buffer.len());
        }
        let mut written = 0;
        for (range, plain) in ranges.into_iter().zip(plains) {
            let n = decode_in_place(&mut buffer, range, written, 100).unwrap();
            assert_eq!(&buffer[written..written + n], plain);
            written += n;
        }
        assert_eq!(
            &buffer[..written],
            [plains[0], plains[1], plains[2]].concat()
        );
        // The same errors as `decode`, at the same offsets.
        for bad in ["Zm9v!mFy", "Zg=a", "Zm9vY"] {
            let mut buffer = bad.as_bytes().to_vec();
            assert_eq!(
                decode_in_place(&mut buffer, 0..bad.len(), 0, 100),
                decode(bad, 100).map(|v| v.len()),
                "{bad}"
            );
        }
    }
}
