//! Job tokens: issuing, hashing at rest, constant-time checks, expiry and the refresh window.
//!
//! A token is 16 random bytes followed by a 16-byte MAC over the job id and those bytes,
//! base64url-encoded. The MAC lets the Worker refuse forged tokens without touching a
//! Durable Object; the object keeps the authoritative SHA-256 hash, so rotation and expiry
//! are decided there.

use crate::base64;
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const RANDOM_BYTES: usize = 16;
const MAC_BYTES: usize = 16;
const TOKEN_BYTES: usize = RANDOM_BYTES + MAC_BYTES;
/// Encoded length: 32 bytes in unpadded base64url.
pub const TOKEN_CHARS: usize = 43;

/// HMAC-SHA256 (RFC 2104) over `parts`, written out because it is ten lines over `sha2`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Issues and recognises tokens with the deployment's signing key.
#[derive(Clone)]
pub struct TokenSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

impl TokenSigner {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn mac(&self, job_id: &str, random: &[u8]) -> [u8; 32] {
        hmac_sha256(
            &self.key,
            &[b"bookstrack-token-v1\0", job_id.as_bytes(), b"\0", random],
        )
    }

    /// A new token for `job_id` from fresh random bytes.
    pub fn issue(&self, job_id: &str, random: [u8; RANDOM_BYTES]) -> String {
        let mut raw = [0u8; TOKEN_BYTES];
        raw[..RANDOM_BYTES].copy_from_slice(&random);
        raw[RANDOM_BYTES..].copy_from_slice(&self.mac(job_id, &random)[..MAC_BYTES]);
        base64::encode_url(&raw)
    }

    /// The token of a job created under an `Idempotency-Key`: its random part is derived from
    /// the request's hash with the signing key, so a repeat of the request gets the same token
    /// without the server keeping it; nobody without the key can derive it.
    pub fn issue_for_request(&self, job_id: &str, request_hash: &str) -> String {
        let derived = hmac_sha256(
            &self.key,
            &[
                b"bookstrack-idempotent-token-v1\0",
                job_id.as_bytes(),
                b"\0",
                request_hash.as_bytes(),
            ],
        );
        let mut random = [0u8; RANDOM_BYTES];
        random.copy_from_slice(&derived[..RANDOM_BYTES]);
        self.issue(job_id, random)
    }

    /// True when `token` was issued by this signer for `job_id`. Says nothing about whether
    /// it is still the job's current, unexpired token.
    pub fn is_authentic(&self, job_id: &str, token: &str) -> bool {
        if token.len() != TOKEN_CHARS {
            return false;
        }
        let Ok(raw) = base64::decode(token, TOKEN_BYTES) else {
            return false;
        };
        // The decoder is lenient (either alphabet, spare bits); only the exact issued
        // spelling is the token.
        if raw.len() != TOKEN_BYTES || base64::encode_url(&raw) != token {
            return false;
        }
        let (random, mac) = raw.split_at(RANDOM_BYTES);
        constant_time_eq(mac, &self.mac(job_id, random)[..MAC_BYTES])
    }
}

/// SHA-256 of a token, hex-encoded: the only form in which a token is stored.
pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The stored half of a job's credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    pub hash: String,
    pub expires_at: Millis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    Wrong,
    Expired,
}

impl TokenError {
    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => "missing token",
            Self::Wrong => "invalid token",
            Self::Expired => "token expired",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshError {
    Auth(TokenError),
    /// Too early: the refresh window opens in this many whole seconds.
    TooEarly {
        retry_after_secs: u64,
    },
}

impl TokenRecord {
    pub fn new(token: &str, now: Millis, ttl_ms: Millis) -> Self {
        Self {
            hash: hash(token),
            expires_at: now + ttl_ms,
        }
    }

    /// Accepts the job's current token until the instant it expires.
    pub fn check(&self, presented: Option<&str>, now: Millis) -> Result<(), TokenError> {
        let token = presented
            .filter(|t| !t.is_empty())
            .ok_or(TokenError::Missing)?;
        if !constant_time_eq(hash(token).as_bytes(), self.hash.as_bytes()) {
            return Err(TokenError::Wrong);
        }
        if now >= self.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(())
    }

    /// Whether `old` may be exchanged now: it must be the current, unexpired token, and the
    /// last `window_ms` of its lifetime must have begun.
    pub fn check_refresh(
        &self,
        old: Option<&str>,
        now: Millis,
        window_ms: Millis,
    ) -> Result<(), RefreshError> {
        self.check(old, now).map_err(RefreshError::Auth)?;
        let opens_at = self.expires_at.saturating_sub(window_ms);
        if now < opens_at {
            return Err(RefreshError::TooEarly {
                retry_after_secs: (opens_at - now).div_ceil(1_000),
            });
        }
        Ok(())
    }
}

/// Pulls the token out of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc4231() {
        let table: &[(&[u8], &[u8], &str)] = &[
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
        ];
        for (key, msg, want) in table {
            assert_eq!(hex(&hmac_sha256(key, &[msg])), *want);
        }
    }

    #[test]
    fn constant_time_eq_cases() {
        let table: &[(&[u8], &[u8], bool)] = &[
            (b"", b"", true),
            (b"a", b"a", true),
            (b"a", b"b", false),
            (b"ab", b"a", false),
        ];
        for (a, b, want) in table {
            assert_eq!(constant_time_eq(a, b), *want);
        }
    }

    #[test]
    fn issued_tokens_are_bound_to_their_job_and_key() {
        let signer = TokenSigner::new(b"k1");
        let token = signer.issue("job-a", [9; RANDOM_BYTES]);
        assert_eq!(token.len(), TOKEN_CHARS);
        assert!(signer.is_authentic("job-a", &token));
        assert!(
            !signer.is_authentic("job-b", &token),
            "not reusable across jobs"
        );
        assert!(!TokenSigner::new(b"k2").is_authentic("job-a", &token));
        assert_ne!(token, signer.issue("job-a", [8; RANDOM_BYTES]));
        for forged in ["", "x", &"A".repeat(43), &token[..42], &format!("{token}A")] {
            assert!(!signer.is_authentic("job-a", forged), "{forged}");
        }
        // The last character carries two spare bits: flipping one spells the same bytes
        // differently, and only the issued spelling is the token.
        const URL_ALPHABET: &str =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let last = URL_ALPHABET.find(token.chars().last().unwrap()).unwrap();
        let sibling = format!(
            "{}{}",
            &token[..42],
            URL_ALPHABET.as_bytes()[last ^ 1] as char
        );
        assert_eq!(
            base64::decode(&sibling, 64),
            base64::decode(&token, 64),
            "same bytes"
        );
        assert!(!signer.is_authentic("job-a", &sibling));
        let mut flipped = token.into_bytes();
        flipped[40] = if flipped[40] == b'A' { b'B' } else { b'A' };
        assert!(!signer.is_authentic("job-a", std::str::from_utf8(&flipped).unwrap()));
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn check_rules() {
        let record = TokenRecord::new("good", 1_000, 10_000);
        let table: &[(Option<&str>, Millis, Result<(), TokenError>)] = &[
            (Some("good"), 1_000, Ok(())),
            (Some("good"), 10_999, Ok(())),
            (Some("good"), 11_000, Err(TokenError::Expired)),
            (Some("bad"), 2_000, Err(TokenError::Wrong)),
            (Some("bad"), 20_000, Err(TokenError::Wrong)),
            (Some(""), 2_000, Err(TokenError::Missing)),
            (None, 2_000, Err(TokenError::Missing)),
        ];
        for (token, now, want) in table {
            assert_eq!(record.check(*token, *now), *want, "{token:?} at {now}");
        }
    }

    #[test]
    fn refresh_window_rules() {
        // Lifetime 1_000..11_000, window 3_000 ⇒ refresh allowed from 8_000.
        let record = TokenRecord::new("t", 1_000, 10_000);
        let table: &[(Option<&str>, Millis, Result<(), RefreshError>)] = &[
            (
                Some("t"),
                1_000,
                Err(RefreshError::TooEarly {
                    retry_after_secs: 7,
                }),
            ),
            (
                Some("t"),
                7_001,
                Err(RefreshError::TooEarly {
                    retry_after_secs: 1,
                }),
            ),
            (Some("t"), 8_000, Ok(())),
            (Some("t"), 10_999, Ok(())),
            (
                Some("t"),
                11_000,
                Err(RefreshError::Auth(TokenError::Expired)),
            ),
            (Some("u"), 9_000, Err(RefreshError::Auth(TokenError::Wrong))),
            (None, 9_000, Err(RefreshError::Auth(TokenError::Missing))),
        ];
        for (token, now, want) in table {
            assert_eq!(
                record.check_refresh(*token, *now, 3_000),
                *want,
                "{token:?} at {now}"
            );
        }
    }

    #[test]
    fn bearer_parsing() {
        let table: &[(Option<&str>, Option<&str>)] = &[
            (Some("Bearer abc"), Some("abc")),
            (Some("bearer  abc "), Some("abc")),
            (Some("Basic abc"), None),
            (Some("Bearer"), None),
            (Some("Bearer "), None),
            (Some("abc"), None),
            (None, None),
        ];
        for (header, want) in table {
            assert_eq!(bearer(*header), *want, "{header:?}");
        }
    }
}
