//! The Worker-to-object creation message: a JSON header framed with the job's binary inputs.

use crate::job::Pipeline;
use crate::pipelines::work::Work;
use futures::{Stream, StreamExt};
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
    [header_frame(create), data.to_vec()].concat()
}

/// The part of [`encode`] before the data: the Worker streams the data after it, straight
/// from the buffer it was validated in.
pub fn header_frame(create: &CreateJob) -> Vec<u8> {
    let header = serde_json::to_vec(create).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + header.len());
    out.extend_from_slice(&(header.len() as u32).to_be_bytes());
    out.extend_from_slice(&header);
    out
}

/// The inverse of [`encode`], through the [`FrameReader`] the object reads with: the header,
/// then exactly the bytes its blobs declare, then the end.
pub fn decode(body: &[u8]) -> Result<(CreateJob, Vec<u8>), String> {
    use futures::FutureExt;
    let mut frame = FrameReader::new(futures::stream::iter([Ok(body.to_vec())]));
    async move {
        let create = frame.header().await?;
        // `header` checked that the lengths add up without overflow.
        let len = create.blobs.iter().map(|b| b.len).sum();
        let data = frame.take(len).await?;
        frame.end().await?;
        Ok((create, data))
    }
    // The body is all there: nothing waits, so the reader completes on its first poll.
    .now_or_never()
    .unwrap_or_else(|| Err("the frame did not complete".into()))
}

/// The most a creation header may take: a CSV's work holds its header row (64 KiB at most).
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// Reads a creation body as it arrives, so that the object holds one blob of it at a time
/// instead of the whole upload: the header first, then each blob, then the end.
pub struct FrameReader<S> {
    chunks: S,
    /// Bytes received and not yet consumed, from `at` on.
    pending: Vec<u8>,
    at: usize,
}

impl<S: Stream<Item = Result<Vec<u8>, String>> + Unpin> FrameReader<S> {
    pub fn new(chunks: S) -> Self {
        Self {
            chunks,
            pending: Vec::new(),
            at: 0,
        }
    }

    /// Exactly `len` bytes, or an error if the body ends first.
    pub async fn take(&mut self, len: usize) -> Result<Vec<u8>, String> {
        // Grown as bytes arrive past the first 1 MiB: `len` is what a header claims.
        let mut out = Vec::with_capacity(len.min(1 << 20));
        while out.len() < len {
            if self.at == self.pending.len() {
                self.pending = match self.chunks.next().await {
                    Some(chunk) => chunk?,
                    None => return Err(format!("the body ended {} bytes early", len - out.len())),
                };
                self.at = 0;
            }
            let n = (len - out.len()).min(self.pending.len() - self.at);
            out.extend_from_slice(&self.pending[self.at..self.at + n]);
            self.at += n;
        }
        Ok(out)
    }

    /// The header, checked: its blobs' lengths add up (the data is not read yet).
    pub async fn header(&mut self) -> Result<CreateJob, String> {
        let len_bytes: [u8; 4] = self
            .take(4)
            .await?
            .try_into()
            .map_err(|_| "short body".to_string())?;
        let header_len = u32::from_be_bytes(len_bytes) as usize;
        if header_len > MAX_HEADER_BYTES {
            return Err(format!("a header of {header_len} bytes"));
        }
        let create: CreateJob =
            serde_json::from_slice(&self.take(header_len).await?).map_err(|e| e.to_string())?;
        if create
            .blobs
            .iter()
            .try_fold(0usize, |sum, b| sum.checked_add(b.len))
            .is_none()
        {
            return Err("blob lengths overflow".into());
        }
        Ok(create)
    }

    /// Checks that nothing follows the last blob.
    pub async fn end(&mut self) -> Result<(), String> {
        let mut extra = self.pending.len() - self.at;
        while let Some(chunk) = self.chunks.next().await {
            extra += chunk?.len();
        }
        match extra {
            0 => Ok(()),
            n => Err(format!("{n} bytes after the last blob")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipelines::synthetic::SyntheticSpec;

    /// A synthetic job's creation with blobs of these lengths.
    fn creation(blobs: &[(&str, usize)]) -> CreateJob {
        CreateJob {
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
            blobs: blobs
                .iter()
                .map(|&(key, len)| Blob {
                    key: key.into(),
                    len,
                })
                .collect(),
            idempotency: None,
        }
    }

    #[test]
    fn round_trips_and_rejects_bad_frames() {
        let create = creation(&[("in:0", 3)]);
        let body = encode(&create, b"abc");
        let (back, data) = decode(&body).unwrap();
        assert_eq!(back, create);
        assert_eq!(data, b"abc");
        // A header that claims more than any body holds is read as far as the body goes.
        let claims = creation(&[("a", usize::MAX / 2)]);
        assert!(decode(&encode(&claims, b"abc"))
            .unwrap_err()
            .contains("early"));
        assert!(decode(&body[..body.len() - 1]).is_err());
        assert!(decode(b"\x00\x00").is_err());
        assert!(decode(b"\x00\x00\x00\x09{}").is_err());
        let huge = creation(&[("a", usize::MAX), ("b", 4)]);
        assert!(
            decode(&encode(&huge, b"abc")).is_err(),
            "overflowing lengths are refused"
        );
    }

    // Native only: the executor that runs it is a native dev-dependency.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn a_body_read_in_any_chunks_gives_the_same_header_and_blobs() {
        let create = creation(&[("a", 3), ("b", 5)]);
        let body = encode(&create, b"abcdefgh");
        let read = |chunk: usize, body: Vec<u8>| {
            let chunks: Vec<Result<Vec<u8>, String>> =
                body.chunks(chunk).map(|c| Ok(c.to_vec())).collect();
            futures::executor::block_on(async move {
                let mut frame = FrameReader::new(futures::stream::iter(chunks));
                let header = frame.header().await?;
                let mut blobs = Vec::new();
                for blob in &header.blobs {
                    blobs.push(frame.take(blob.len).await?);
                }
                frame.end().await?;
                Ok::<_, String>((header, blobs))
            })
        };
        for chunk in [1, 2, 3, 7, 64, 10_000] {
            let (header, blobs) = read(chunk, body.clone()).unwrap();
            assert_eq!(header, create, "chunks of {chunk}");
            assert_eq!(
                blobs,
                [b"abc".to_vec(), b"defgh".to_vec()],
                "chunks of {chunk}"
            );
        }
        // Short, long and malformed bodies are errors, never a panic.
        let short = body[..body.len() - 1].to_vec();
        assert!(read(4, short).unwrap_err().contains("early"));
        let long = [&body[..], b"!"].concat();
        assert!(read(4, long).unwrap_err().contains("after the last blob"));
        assert!(read(4, vec![0, 0]).is_err());
        assert!(read(4, vec![255, 255, 255, 255, b'{'])
            .unwrap_err()
            .contains("header of"));
    }
}
