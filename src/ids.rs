//! Job ids: UUIDs in their canonical hyphenated form, parsed strictly and generated as v4.

use uuid::Uuid;

/// Accepts only the 36-character hyphenated form (any case), so that one job has exactly one
/// spelling and therefore one Durable Object. Returns the lowercase canonical id.
pub fn parse_job_id(text: &str) -> Option<String> {
    if text.len() != 36 {
        return None;
    }
    let hyphens_in_place = text
        .bytes()
        .enumerate()
        .all(|(i, b)| matches!(i, 8 | 13 | 18 | 23) == (b == b'-'));
    if !hyphens_in_place {
        return None;
    }
    Uuid::try_parse(text)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

/// A random (version 4) UUID from caller-supplied entropy.
pub fn new_job_id(random: [u8; 16]) -> String {
    uuid::Builder::from_random_bytes(random)
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_canonical_uuids() {
        let table: &[(&str, Option<&str>)] = &[
            (
                "0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e",
                Some("0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e"),
            ),
            (
                "0B7C8F0E-4D3B-4E44-9A4E-1F2A3B4C5D6E",
                Some("0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e"),
            ),
            (
                "00000000-0000-0000-0000-000000000000",
                Some("00000000-0000-0000-0000-000000000000"),
            ),
            ("0b7c8f0e4d3b4e449a4e1f2a3b4c5d6e", None),
            ("{0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e}", None),
            ("urn:uuid:0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e", None),
            ("0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6g", None),
            ("0b7c8f0e-4d3b-4e44-9a4e1-f2a3b4c5d6e", None),
            ("../../../../etc/passwd-0000000000000", None),
            ("", None),
            ("not-a-uuid", None),
        ];
        for (text, want) in table {
            assert_eq!(parse_job_id(text).as_deref(), *want, "{text}");
        }
    }

    #[test]
    fn generated_ids_are_v4_and_parse_back() {
        let id = new_job_id([0xab; 16]);
        assert_eq!(parse_job_id(&id).as_deref(), Some(id.as_str()));
        assert_eq!(&id[14..15], "4", "version nibble");
        assert!(
            matches!(&id[19..20], "8" | "9" | "a" | "b"),
            "RFC 4122 variant"
        );
        assert_ne!(new_job_id([1; 16]), new_job_id([2; 16]));
    }
}
