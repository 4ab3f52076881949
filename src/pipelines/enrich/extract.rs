//! Lenient reads of provider JSON: a field that is missing, null, blank or of the wrong type reads as absent.

use serde_json::{Map, Value};

use super::failure::ParseError;

/// Parses a provider body into its top-level object. serde_json's recursion limit turns a
/// deeply nested body into an error rather than a stack overflow.
pub(crate) fn object(body: &str) -> Result<Map<String, Value>, ParseError> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| ParseError::InvalidJson(e.to_string()))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ParseError::UnexpectedShape(
            "top level is not a JSON object".into(),
        )),
    }
}

/// A trimmed, non-blank string.
pub(crate) fn text(value: Option<&Value>) -> Option<String> {
    let s = value?.as_str()?.trim();
    (!s.is_empty()).then(|| s.to_string())
}

pub(crate) fn field(map: &Map<String, Value>, key: &str) -> Option<String> {
    text(map.get(key))
}

/// The trimmed, non-blank strings of an array, in order; anything else in it is skipped.
pub(crate) fn texts(map: &Map<String, Value>, key: &str) -> Vec<String> {
    match map.get(key) {
        Some(Value::Array(items)) => items.iter().filter_map(|v| text(Some(v))).collect(),
        _ => Vec::new(),
    }
}

/// A positive whole number that fits a `u32`. Providers use 0 for "unknown", so it reads as absent.
pub(crate) fn positive_u32(value: Option<&Value>) -> Option<u32> {
    value?
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0)
}

/// A positive whole number that fits an `i64`, such as an Open Library cover id
/// (which uses -1 for "no cover").
pub(crate) fn positive_i64(value: Option<&Value>) -> Option<i64> {
    value?.as_i64().filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_fields_leniently() {
        let map = json!({
            "s": "  Dune ", "blank": "  ", "n": 12, "zero": 0, "neg": -1, "big": 5_000_000_000u64,
            "float": 1.5, "arr": ["a", " ", 3, null, "b "], "null": null
        });
        let map = map.as_object().unwrap();
        assert_eq!(field(map, "s").as_deref(), Some("Dune"));
        for key in ["blank", "n", "arr", "null", "missing"] {
            assert_eq!(field(map, key), None, "{key}");
        }
        assert_eq!(texts(map, "arr"), vec!["a".to_string(), "b".to_string()]);
        assert!(texts(map, "s").is_empty());
        let table = [
            ("n", Some(12)),
            ("zero", None),
            ("neg", None),
            ("big", None),
            ("float", None),
            ("s", None),
        ];
        for (key, want) in table {
            assert_eq!(positive_u32(map.get(key)), want, "{key}");
        }
        assert_eq!(positive_i64(map.get("neg")), None);
        assert_eq!(positive_i64(map.get("big")), Some(5_000_000_000));
    }

    #[test]
    fn top_level_must_be_an_object() {
        assert!(object(r#"{"a":1}"#).is_ok());
        for body in ["", "[]", "\"x\"", "null", "{", &"[".repeat(10_000)] {
            assert!(object(body).is_err(), "{body:.20}");
        }
    }
}
