//! Job ids: UUIDs in their canonical hyphenated form, parsed strictly and issued as v4.
//!
//! An id the server issues carries, inside its random bits, the second it was issued and a
//! 32-bit MAC. The Worker can therefore tell an id it issued recently, whose job must still
//! exist, from any other UUID, and refuse a forged token for it without touching an object.

use crate::error::ApiError;
use crate::time::Millis;
use crate::token::hmac_sha256;
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

/// A job id from a request, or the 400 that names the field.
pub fn require_job_id(raw: &str) -> Result<String, ApiError> {
    parse_job_id(raw).ok_or_else(|| {
        ApiError::invalid("jobId must be a UUID like 0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e")
            .with_details(serde_json::json!({ "field": "jobId" }))
    })
}

/// The longest `Idempotency-Key` accepted (contract 9.3).
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 128;

/// An `Idempotency-Key` header's value, checked: 1..=128 visible ASCII characters.
pub fn idempotency_key(raw: &str) -> Result<&str, ApiError> {
    let visible = raw.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if raw.is_empty() || raw.len() > MAX_IDEMPOTENCY_KEY_CHARS || !visible {
        return Err(ApiError::invalid(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII characters"
        ))
        .with_details(serde_json::json!({ "field": "Idempotency-Key" })));
    }
    Ok(raw)
}

/// The job id of a creation under an `Idempotency-Key`: derived from the key with the signing
/// key, so that every repeat of the request reaches the same object, which tells a repeat
/// from another request (see [`request_hash`]) without any other storage.
pub fn job_id_for_key(key: &[u8], route: &str, idempotency_key: &str) -> String {
    let mac = hmac_sha256(
        key,
        &[
            b"bookstrack-idempotency-key-v1\0",
            route.as_bytes(),
            b"\0",
            idempotency_key.as_bytes(),
        ],
    );
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&mac[..16]);
    bytes[6] = 0x40 | (bytes[6] & 0x0f);
    bytes[8] = 0x80 | (bytes[8] & 0x3f);
    Uuid::from_bytes(bytes).hyphenated().to_string()
}

/// What makes a creation request itself: its route, its key and its parsed content (the
/// file, the images, the books), hashed. A client's retry may frame the same content
/// differently (another multipart boundary), so the parsed parts count, not the bytes sent.
pub fn request_hash(route: &str, idempotency_key: &str, parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in [route.as_bytes(), idempotency_key.as_bytes()]
        .into_iter()
        .chain(parts.iter().copied())
    {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn id_mac(key: &[u8], body: &[u8]) -> [u8; 4] {
    let mac = hmac_sha256(key, &[b"bookstrack-job-id-v1\0", body]);
    [mac[0], mac[1], mac[2], mac[3]]
}

/// An id for a new job: issue time (4 bytes), 58 random bits, and a MAC (4 bytes), laid out
/// as a valid version-4, RFC 4122 variant UUID.
pub fn issue_job_id(key: &[u8], now: Millis, random: [u8; 8]) -> String {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&((now / 1_000) as u32).to_be_bytes());
    bytes[4..12].copy_from_slice(&random);
    bytes[6] = 0x40 | (bytes[6] & 0x0f);
    bytes[8] = 0x80 | (bytes[8] & 0x3f);
    let mac = id_mac(key, &bytes[..12]);
    bytes[12..].copy_from_slice(&mac);
    Uuid::from_bytes(bytes).hyphenated().to_string()
}

/// When this server issued `job_id` (epoch ms, to the second), or `None` for any id it did
/// not issue with `key`, such as one a client proposed.
pub fn issued_at(key: &[u8], job_id: &str) -> Option<Millis> {
    let bytes = *Uuid::try_parse(job_id).ok()?.as_bytes();
    (id_mac(key, &bytes[..12]) == bytes[12..])
        .then(|| Millis::from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])) * 1_000)
}

/// How far the clocks of two machines of the deployment are assumed to differ at most. An id
/// issued on one machine can look up to this much younger, or older, on another.
pub const CLOCK_SKEW_MS: Millis = 60_000;

/// What the Worker can tell about a job id on its own, by its issue time and MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Not issued with this key (a client's own id, or a guess): only its object knows
    /// whether the job exists.
    Foreign,
    /// Issued here so recently that its job must still exist: it cannot have been cleaned
    /// up before `RESULTS_TTL_SECS` has passed, less [`CLOCK_SKEW_MS`].
    Recent,
    /// Issued here longer ago: its job may have been cleaned up.
    Old,
    /// Carries this key's MAC but an issue time more than [`CLOCK_SKEW_MS`] ahead of the
    /// clock. This server never issued it, and the creation routes refuse it as a proposed
    /// id, so no such job exists: whoever made it holds the signing key.
    Future,
}

/// Classifies `job_id` at `now`, for a deployment whose ended jobs live `results_ttl_ms`.
pub fn provenance(key: &[u8], job_id: &str, now: Millis, results_ttl_ms: Millis) -> Provenance {
    let Some(issued) = issued_at(key, job_id) else {
        return Provenance::Foreign;
    };
    if issued > now + CLOCK_SKEW_MS {
        return Provenance::Future;
    }
    let certain_until = (issued + results_ttl_ms).saturating_sub(CLOCK_SKEW_MS);
    if now < certain_until {
        Provenance::Recent
    } else {
        Provenance::Old
    }
}

/// A job id a client proposed at creation, refused (400) when it claims to have been issued
/// here in the future: accepting it would make a job that the Worker answers 404 for.
pub fn check_proposed(key: &[u8], job_id: &str, now: Millis) -> Result<(), ApiError> {
    match provenance(key, job_id, now, 0) {
        Provenance::Future => Err(ApiError::invalid(
            "jobId carries an issue time in the future; propose another UUID",
        )
        .with_details(serde_json::json!({ "field": "jobId" }))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys() {
        let long = "k".repeat(129);
        let table: &[(&str, bool)] = &[
            ("a", true),
            ("3f9a-1c2b_client:retry#1", true),
            (&long[..128], true),
            (&long, false),
            ("", false),
            ("has space", false),
            ("tab\there", false),
            ("é", false),
        ];
        for (raw, ok) in table {
            assert_eq!(idempotency_key(raw).is_ok(), *ok, "{raw:?}");
        }
    }

    #[test]
    fn a_key_names_one_job_per_route_and_signing_key() {
        let id = job_id_for_key(b"k1", "enrichment", "abc");
        assert_eq!(
            parse_job_id(&id).as_deref(),
            Some(id.as_str()),
            "a canonical v4 UUID"
        );
        assert_eq!(id, job_id_for_key(b"k1", "enrichment", "abc"));
        assert_ne!(id, job_id_for_key(b"k1", "csv", "abc"));
        assert_ne!(id, job_id_for_key(b"k2", "enrichment", "abc"));
        assert_ne!(id, job_id_for_key(b"k1", "enrichment", "abd"));
        assert_eq!(
            issued_at(b"k1", &id),
            None,
            "not mistaken for an id the server issued"
        );
    }

    #[test]
    fn request_hashes_tell_parts_apart() {
        let h = |parts: &[&[u8]]| request_hash("csv", "k", parts);
        assert_eq!(h(&[b"ab", b"c"]), h(&[b"ab", b"c"]));
        assert_ne!(h(&[b"ab", b"c"]), h(&[b"a", b"bc"]), "boundaries count");
        assert_ne!(h(&[b"abc"]), request_hash("scan", "k", &[b"abc"]));
        assert_ne!(h(&[b"abc"]), request_hash("csv", "k2", &[b"abc"]));
    }

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
    fn issued_ids_are_v4_uuids_that_reveal_their_issue_time_only_to_the_key() {
        let now = 1_795_306_530_042;
        let id = issue_job_id(b"k", now, [7; 8]);
        assert_eq!(parse_job_id(&id).as_deref(), Some(id.as_str()));
        assert_eq!(&id[14..15], "4", "version nibble");
        assert!(
            matches!(&id[19..20], "8" | "9" | "a" | "b"),
            "RFC 4122 variant"
        );
        assert_eq!(issued_at(b"k", &id), Some(now / 1_000 * 1_000));
        assert_eq!(
            issued_at(b"other", &id),
            None,
            "another key did not issue it"
        );
        assert_ne!(issue_job_id(b"k", now, [8; 8]), id, "randomness matters");
        // Flip one hex digit anywhere: no longer ours.
        for pos in [0, 10, 20, 30, 35] {
            let mut forged: Vec<char> = id.chars().collect();
            forged[pos] = if forged[pos] == '0' { '1' } else { '0' };
            let forged: String = forged.into_iter().collect();
            assert_eq!(issued_at(b"k", &forged), None, "{forged}");
        }
        assert_eq!(
            issued_at(b"k", "0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e"),
            None
        );
        assert_eq!(issued_at(b"k", "not a uuid"), None);
    }

    #[test]
    fn provenance_by_issue_time() {
        const TTL: Millis = 86_400_000;
        let now: Millis = 1_795_306_530_042;
        // (key that issued the id, issued at, provenance at `now`)
        let table: &[(&[u8], Millis, Provenance)] = &[
            (b"k", now, Provenance::Recent),
            (b"k", now - 3_600_000, Provenance::Recent),
            (b"k", now - TTL + CLOCK_SKEW_MS + 1_000, Provenance::Recent),
            // Its job may be gone from a minute before its earliest cleanup.
            (b"k", now - TTL + CLOCK_SKEW_MS, Provenance::Old),
            (b"k", now - 30 * TTL, Provenance::Old),
            // Another machine's clock may be a little ahead.
            (b"k", now + 1_000, Provenance::Recent),
            (b"k", now + CLOCK_SKEW_MS, Provenance::Recent),
            (b"k", now + CLOCK_SKEW_MS + 1_000, Provenance::Future),
            (b"k", now + 3_600_000, Provenance::Future),
            (b"k", 4_294_967_295_000, Provenance::Future),
            // Another key's ids are foreign whatever their time.
            (b"other", now + 3_600_000, Provenance::Foreign),
            (b"other", now, Provenance::Foreign),
        ];
        for (issuer, issued, want) in table {
            let id = issue_job_id(issuer, *issued, [3; 8]);
            assert_eq!(
                provenance(b"k", &id, now, TTL),
                *want,
                "issued by {issuer:?} at now{:+} ms",
                *issued as i64 - now as i64
            );
        }
        assert_eq!(
            provenance(b"k", "0b7c8f0e-4d3b-4e44-9a4e-1f2a3b4c5d6e", now, TTL),
            Provenance::Foreign
        );
    }

    #[test]
    fn proposed_ids_from_the_future_are_refused() {
        let now: Millis = 1_795_306_530_042;
        let table: &[(&[u8], Millis, bool)] = &[
            (b"k", now, true),
            (b"k", now - 86_400_000, true),
            (b"k", now + CLOCK_SKEW_MS, true),
            (b"k", now + CLOCK_SKEW_MS + 1_000, false),
            (b"k", now + 86_400_000, false),
            (b"other", now + 86_400_000, true),
        ];
        for (issuer, issued, ok) in table {
            let id = issue_job_id(issuer, *issued, [5; 8]);
            let got = check_proposed(b"k", &id, now);
            assert_eq!(got.is_ok(), *ok, "{issuer:?} at {issued}");
            if let Err(e) = got {
                assert_eq!(e.code, crate::error::ErrorCode::InvalidRequest);
                assert_eq!(e.details.unwrap()["field"], "jobId");
            }
        }
    }
}
