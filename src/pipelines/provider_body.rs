//! Provider answer bodies as text, whatever their encoding: decoding never fails, so an HTTP
//! status is never lost to an unreadable body.
//!
//! The glue hands the domain the raw body bytes and the status separately; parsers read
//! [`decode_body`]'s text. JSON is UTF-8 in practice, but real answers have come back with a
//! UTF-8 byte-order mark (which `serde_json` refuses) and, for error pages, as UTF-16.

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The body as text:
/// - a UTF-8 BOM is dropped;
/// - a UTF-16 BOM (`FF FE`, `FE FF`) says UTF-16LE or BE;
/// - without a BOM, a body whose first two bytes are one NUL and one non-NUL is UTF-16 (JSON
///   starts with an ASCII character, so `{ 00` is LE and `00 {` is BE: RFC 4627's rule);
/// - anything else is UTF-8, invalid sequences replaced with U+FFFD.
///
/// `String::from_utf16_lossy` is all UTF-16 needs; an odd trailing byte is dropped.
pub fn decode_body(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(UTF8_BOM) {
        return String::from_utf8_lossy(rest).into_owned();
    }
    match bytes {
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        [first, 0, ..] if *first != 0 => utf16(bytes, u16::from_le_bytes),
        [0, second, ..] if *second != 0 => utf16(bytes, u16::from_be_bytes),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|pair| unit([pair[0], pair[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(text: &str, bom: bool) -> Vec<u8> {
        let mut out = if bom { vec![0xFF, 0xFE] } else { vec![] };
        out.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
        out
    }

    fn utf16be(text: &str, bom: bool) -> Vec<u8> {
        let mut out = if bom { vec![0xFE, 0xFF] } else { vec![] };
        out.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        out
    }

    #[test]
    fn decodes_every_encoding_seen() {
        let json = r#"{"error":{"code":429,"message":"Quota exceeded – café"}}"#;
        let cases: Vec<(&str, Vec<u8>, String)> = vec![
            ("plain UTF-8", json.as_bytes().to_vec(), json.into()),
            (
                "UTF-8 with a BOM",
                [UTF8_BOM, json.as_bytes()].concat(),
                json.into(),
            ),
            ("UTF-16LE with a BOM", utf16le(json, true), json.into()),
            ("UTF-16BE with a BOM", utf16be(json, true), json.into()),
            ("UTF-16LE without a BOM", utf16le(json, false), json.into()),
            ("UTF-16BE without a BOM", utf16be(json, false), json.into()),
            (
                "UTF-16 with an odd trailing byte",
                [utf16le("{}", true), vec![0x41]].concat(),
                "{}".into(),
            ),
            (
                "invalid UTF-8",
                b"{\"a\":\"caf\xE9\"}".to_vec(),
                "{\"a\":\"caf\u{FFFD}\"}".into(),
            ),
            ("empty", vec![], String::new()),
            ("one byte", vec![b'x'], "x".into()),
            ("a NUL pair is not UTF-16", vec![0, 0, b'x'], "\0\0x".into()),
            ("a lone BOM", UTF8_BOM.to_vec(), String::new()),
        ];
        for (name, bytes, want) in cases {
            assert_eq!(decode_body(&bytes), want, "{name}");
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_bytes_decode(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_body(&bytes);
        }

        #[test]
        fn utf8_json_comes_back_as_written(text in "[{\\[\"a-z0-9:, é]{0,80}") {
            // JSON starts with ASCII, so no UTF-16 guess applies to it.
            let body = format!("{{{text}");
            prop_assert_eq!(decode_body(body.as_bytes()), body.clone());
            let with_bom = [b"\xEF\xBB\xBF".as_slice(), body.as_bytes()].concat();
            prop_assert_eq!(decode_body(&with_bom), body.clone());
            let utf16: Vec<u8> = [0xFF, 0xFE].into_iter().chain(body.encode_utf16().flat_map(u16::to_le_bytes)).collect();
            prop_assert_eq!(decode_body(&utf16), body);
        }
    }
}
