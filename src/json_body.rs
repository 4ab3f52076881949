//! Small JSON request bodies read strictly: valid UTF-8 throughout, and an object at the root.
//!
//! Derived `Deserialize` alone would take a JSON array for a struct (fields in order) and
//! never checks the UTF-8 of strings it skips; both let malformed bodies through.

use crate::error::ApiError;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The body's root object.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::invalid(format!(
            "the body is not valid UTF-8 (at byte {})",
            e.valid_up_to()
        ))
    })?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid("the body must be a JSON object")),
        Err(e) => Err(ApiError::invalid(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// The brackets (`[`, `]`, `{`, `}`) of a JSON text that stand outside strings, with their
/// offsets: enough to measure nesting or find a matching close without a recursive parser.
pub fn structural_brackets(bytes: &[u8]) -> impl Iterator<Item = (usize, u8)> + '_ {
    let mut in_string = false;
    let mut escaped = false;
    bytes.iter().enumerate().filter_map(move |(i, &b)| {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            return None;
        }
        match b {
            b'"' => {
                in_string = true;
                None
            }
            b'[' | b']' | b'{' | b'}' => Some((i, b)),
            _ => None,
        }
    })
}

/// The body as `T`, after the checks of [`object`].
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(object(body)?))
        .map_err(|e| ApiError::invalid(format!("the body has the wrong shape: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "camelCase")]
    struct Refresh {
        job_id: Option<String>,
        old_token: Option<String>,
    }

    #[test]
    fn only_utf8_objects_of_the_right_shape() {
        let ok: Refresh = parse(br#"{"jobId":"j","oldToken":"t"}"#).unwrap();
        assert_eq!(
            ok,
            Refresh {
                job_id: Some("j".into()),
                old_token: Some("t".into())
            }
        );
        let table: &[&[u8]] = &[
            br#"["j","t"]"#,
            b"\"j\"",
            b"null",
            b"",
            b"{",
            b"{\"jobId\":\"j\",\"note\":\"\xC3\x28\xFF\"}",
            br#"{"jobId":7}"#,
        ];
        for body in table {
            assert!(
                parse::<Refresh>(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
        assert!(
            object(deep.as_bytes()).is_err(),
            "a nesting bomb is an error, not a crash"
        );
    }

    #[test]
    fn brackets_inside_strings_are_not_structure() {
        let text = br#"{"a":"[x]\"{","b":[1,{}]}"#;
        let found: Vec<(usize, u8)> = structural_brackets(text).collect();
        let bytes: Vec<u8> = found.iter().map(|(_, b)| *b).collect();
        assert_eq!(bytes, b"{[{}]}");
        assert!(found.iter().all(|(i, b)| text[*i] == *b));
    }
}
