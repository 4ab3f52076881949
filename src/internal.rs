//! The Worker-to-object creation message: a JSON header framed with the job's binary inputs.

use crate::job::Pipeline;
use crate::pipelines::work::Work;
use serde::{Deserialize, Serialize};

/// A named byte range of the creation body, stored under `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    pub key: String,
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateJob {
    pub job_id: String,
    pub pipeline: Pipeline,
    pub total_count: u64,
    pub work: Work,
    pub blobs: Vec<Blob>,
    /// With an `Idempotency-Key`: a hash of the route, the key and the parsed request, so
    /// that a repeat is told from another request under the same key (contract 9.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<String>,
}

/// `[u32 big-endian header length][header JSON][blob bytes...]`.
pub fn encode(create: &CreateJob, data: &[u8]) -> Vec<u8> {
    encode_parts(create, [data])
}

/// As [`encode`], with the data given in parts (a batch's photos): each is copied once,
/// straight into the body, and may be dropped by the caller's iterator as soon as it is.
pub fn encode_parts<P: AsRef<[u8]>>(
    create: &CreateJob,
    parts: impl IntoIterator<Item = P>,
) -> Vec<u8> {
    let header = serde_json::to_vec(create).unwrap_or_default();
    // Reserved once when the declared lengths add up; they are data, not trusted arithmetic.
    let data_len = create
        .blobs
        .iter()
        .try_fold(0usize, |sum, b| sum.checked_add(b.len))
        .unwrap_or(0);
    let mut out = Vec::with_capacity((4 + header.len()).saturating_add(data_len).min(64 << 20));
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&header);
    for part in parts {
        out.extend_from_slice(part.as_ref());
    }
    out
}

/// The inverse of [`encode`]; also checks that the blobs add up to the data.
pub fn decode(body: &[u8]) -> Result<(CreateJob, &[u8]), String> {
    let len_bytes: [u8; 4] = body
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or("short body")?;
    let header_len = u32::from_be_bytes(len_bytes) as usize;
    let header = body.get(4..4 + header_len).ok_or("truncated header")?;
    let create: CreateJob = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    let data = &body[4 + header_len..];
    // Summed with overflow checks: the lengths are data, not trusted arithmetic.
    let declared = create
        .blobs
        .iter()
        .try_fold(0usize, |sum, b| sum.checked_add(b.len));
    if declared != Some(data.len()) {
        return Err(format!(
            "blobs declare {declared:?} bytes, body has {}",
            data.len()
        ));
    }
    Ok((create, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipelines::synthetic::SyntheticSpec;

    #[test]
    fn round_trips_and_rejects_bad_frames() {
        let create = CreateJob {
            job_id: "j".into(),
            pipeline: Pipeline::CsvImport,
            total_count: 0,
            work: Work::Synthetic(SyntheticSpec {
                pipeline: Pipeline::CsvImport,
                items: 1,
                items_per_chunk: 1,
                chunk_delay_ms: 0,
                fail_first_attempts: 0,
                coalesce_ms: None,
                throttle_ms: None,
            }),
            blobs: vec![Blob {
                key: "in:0".into(),
                len: 3,
            }],
            idempotency: None,
        };
        let body = encode(&create, b"abc");
        assert_eq!(encode_parts(&create, [&b"a"[..], b"bc"]), body);
        let (back, data) = decode(&body).unwrap();
        assert_eq!(back, create);
        assert_eq!(data, b"abc");
        assert!(decode(&body[..body.len() - 1]).is_err());
        assert!(decode(b"\x00\x00").is_err());
        assert!(decode(b"\x00\x00\x00\x09{}").is_err());
        let mut huge = create.clone();
        huge.blobs = vec![
            Blob {
                key: "a".into(),
                len: usize::MAX,
            },
            Blob {
                key: "b".into(),
                len: 4,
            },
        ];
        assert!(
            decode(&encode(&huge, b"abc")).is_err(),
            "overflowing lengths are refused"
        );
    }
}
