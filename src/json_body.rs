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
}
