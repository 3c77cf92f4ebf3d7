//! Content-defined chunking and fingerprinting of a file in one pass.
//!
//! [`plan_cuts`] is the sans-IO core: given the bytes buffered so far, it says
//! where FastCDC (v2020, 16 KiB min / 64 KiB avg / 256 KiB max) cuts, and
//! stops where a cut could still depend on bytes not yet read. [`digest`]
//! drives it over any reader with one bounded buffer, feeding the same bytes
//! to the cutter, the per-chunk BLAKE3 and the whole-file BLAKE3 — each byte
//! is read once. The cuts are the same as chunking the whole file in memory.

use crate::id::{ChunkId, TrackId};
use crate::manifest::{ChunkRef, MAX_CHUNK_LEN, MAX_TRACK_BYTES};
use fastcdc::v2020::FastCDC;
use std::io::{self, Read};

/// FastCDC minimum chunk size.
pub const MIN_CHUNK_LEN: u32 = 16 * 1024;
/// FastCDC average chunk size.
pub const AVG_CHUNK_LEN: u32 = 64 * 1024;

/// Read buffer size: many chunks per read, bounded memory per worker.
const BUFFER_LEN: usize = 4 * 1024 * 1024;

/// Chunk lengths FastCDC cuts from the front of `data`, in order.
///
/// With `at_eof == false` the plan stops while fewer than [`MAX_CHUNK_LEN`]
/// bytes remain, because the next cut may depend on bytes not yet buffered;
/// with `at_eof == true` it covers all of `data`. Returns the lengths and the
/// number of bytes they cover.
pub fn plan_cuts(data: &[u8], at_eof: bool) -> (Vec<u32>, usize) {
    let mut lens = Vec::new();
    if data.is_empty() {
        return (lens, 0);
    }
    let cdc = FastCDC::new(data, MIN_CHUNK_LEN, AVG_CHUNK_LEN, MAX_CHUNK_LEN);
    let max = MAX_CHUNK_LEN as usize;
    let mut at = 0usize;
    while at < data.len() {
        let remaining = data.len() - at;
        if remaining < max && !at_eof {
            break;
        }
        let (_, end) = cdc.cut(at, remaining);
        if end <= at {
            break;
        }
        // A cut is at most MAX_CHUNK_LEN bytes long, so it fits in a u32.
        lens.push(u32::try_from(end - at).unwrap_or(MAX_CHUNK_LEN));
        at = end;
    }
    (lens, at)
}

/// A file's fingerprint: its track id, size and chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    /// BLAKE3 of all the bytes.
    pub track: TrackId,
    /// Number of bytes read.
    pub size: u64,
    /// The chunks in order.
    pub chunks: Vec<ChunkRef>,
}

/// Why a file could not be digested.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// Reading failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// The file is larger than [`MAX_TRACK_BYTES`].
    #[error("file is larger than {MAX_TRACK_BYTES} bytes")]
    TooLarge,
}

/// Reads `reader` to the end once, cutting and hashing as it goes.
pub fn digest(mut reader: impl Read) -> Result<Digest, DigestError> {
    let mut buf = vec![0u8; BUFFER_LEN];
    let mut filled = 0usize;
    let mut whole = blake3::Hasher::new();
    let mut chunks = Vec::new();
    let mut size = 0u64;
    let mut eof = false;
    while !eof {
        // Fill the buffer as far as the reader gives.
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let (lens, covered) = plan_cuts(&buf[..filled], eof);
        let mut at = 0usize;
        for len in lens {
            let bytes = &buf[at..at + len as usize];
            chunks.push(ChunkRef {
                id: ChunkId::of(bytes),
                len,
            });
            at += len as usize;
        }
        whole.update(&buf[..covered]);
        size += covered as u64;
        if size > MAX_TRACK_BYTES {
            return Err(DigestError::TooLarge);
        }
        buf.copy_within(covered..filled, 0);
        filled -= covered;
    }
    Ok(Digest {
        track: whole.finalize().into(),
        size,
        chunks,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut v = vec![0u8; len];
        rng.fill_bytes(&mut v);
        v
    }

    /// A reader that hands out at most `step` bytes per call.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn streaming_cuts_equal_whole_buffer_cuts() {
        let data = random(9 * 1024 * 1024 + 12345, 1);
        let whole: Vec<u32> = FastCDC::new(&data, MIN_CHUNK_LEN, AVG_CHUNK_LEN, MAX_CHUNK_LEN)
            .map(|c| c.length as u32)
            .collect();
        let d = digest(Trickle {
            data: &data,
            step: 1_000_003,
        })
        .unwrap();
        let streamed: Vec<u32> = d.chunks.iter().map(|c| c.len).collect();
        assert_eq!(streamed, whole);
        assert_eq!(d.size, data.len() as u64);
        assert_eq!(d.track, TrackId::of(&data));
        let mut at = 0usize;
        for c in &d.chunks {
            assert_eq!(c.id, ChunkId::of(&data[at..at + c.len as usize]));
            at += c.len as usize;
        }
    }

    #[test]
    fn chunk_sizes_stay_in_bounds() {
        let data = random(3 * 1024 * 1024, 2);
        let (lens, covered) = plan_cuts(&data, true);
        assert_eq!(covered, data.len());
        let (last, rest) = lens.split_last().unwrap();
        assert!(*last <= MAX_CHUNK_LEN);
        for len in rest {
            assert!((MIN_CHUNK_LEN..=MAX_CHUNK_LEN).contains(len), "{len}");
        }
        let avg = data.len() / lens.len();
        assert!((32 * 1024..=128 * 1024).contains(&avg), "average {avg}");
    }

    #[test]
    fn plan_waits_for_more_bytes_before_eof() {
        let data = random(MAX_CHUNK_LEN as usize - 1, 3);
        assert_eq!(plan_cuts(&data, false), (vec![], 0));
        let (lens, covered) = plan_cuts(&data, true);
        assert_eq!(covered, data.len());
        assert!(!lens.is_empty());
        assert_eq!(plan_cuts(&[], true), (vec![], 0));
    }

    #[test]
    fn an_insertion_at_the_front_keeps_most_chunks() {
        let data = random(4 * 1024 * 1024, 4);
        let mut grown = random(5000, 5);
        grown.extend_from_slice(&data);
        let a = digest(&data[..]).unwrap();
        let b = digest(&grown[..]).unwrap();
        let ids: std::collections::HashSet<_> = a.chunks.iter().map(|c| c.id).collect();
        let shared: u64 = b
            .chunks
            .iter()
            .filter(|c| ids.contains(&c.id))
            .map(|c| u64::from(c.len))
            .sum();
        assert!(shared * 10 >= data.len() as u64 * 9, "shared {shared}");
    }
}
