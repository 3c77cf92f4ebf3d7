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
use std::io::{self, Read};

/// FastCDC minimum chunk size.
pub const MIN_CHUNK_LEN: u32 = 16 * 1024;
/// FastCDC average chunk size.
pub const AVG_CHUNK_LEN: u32 = 64 * 1024;

/// Read buffer size: many chunks per read, bounded memory per worker.
const BUFFER_LEN: usize = 1024 * 1024;

/// Chunk lengths FastCDC cuts from the front of `data`, in order.
///
/// With `at_eof == false` the plan stops while fewer than [`MAX_CHUNK_LEN`]
/// bytes remain, because the next cut may depend on bytes not yet buffered;
/// with `at_eof == true` it covers all of `data`. Returns the lengths and the
/// number of bytes they cover.
pub fn plan_cuts(data: &[u8], at_eof: bool) -> (Vec<u32>, usize) {
    let cutter = cutter();
    let mut lens = Vec::new();
    let max = MAX_CHUNK_LEN as usize;
    let mut at = 0usize;
    while at < data.len() {
        let remaining = data.len() - at;
        if remaining < max && !at_eof {
            break;
        }
        let len = cutter.cut(&data[at..]);
        // A cut is at most MAX_CHUNK_LEN bytes long, so it fits in a u32.
        lens.push(u32::try_from(len).unwrap_or(MAX_CHUNK_LEN));
        at += len;
    }
    (lens, at)
}

/// How many bytes [`CutStream`] buffers before it looks for cuts: four
/// maximal chunks, so the bytes carried over to the next round (fewer than
/// [`MAX_CHUNK_LEN`]) are at most a third of what the round cut.
const CUT_STREAM_BUF: usize = 4 * MAX_CHUNK_LEN as usize;

/// [`plan_cuts`] over bytes that arrive in pieces of any size.
///
/// Pieces are gathered in one buffer of at most [`CUT_STREAM_BUF`] bytes;
/// when it is full the settled cuts are taken from its front and the rest
/// (fewer than [`MAX_CHUNK_LEN`] bytes, since a cut can depend on that many
/// bytes after it) is carried over. The cuts are exactly those of
/// `plan_cuts(whole, true)`, whatever the pieces.
#[derive(Debug, Default)]
pub(crate) struct CutStream {
    buf: Vec<u8>,
}

impl CutStream {
    /// A stream that has seen no bytes.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Feeds the next `bytes`, appending to `cuts` every chunk length that
    /// no later byte can change.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], cuts: &mut Vec<u32>) {
        while !bytes.is_empty() {
            if self.buf.capacity() < CUT_STREAM_BUF {
                self.buf.reserve_exact(CUT_STREAM_BUF - self.buf.len());
            }
            let take = bytes.len().min(CUT_STREAM_BUF - self.buf.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() == CUT_STREAM_BUF {
                self.settle(false, cuts);
            }
        }
    }

    /// Ends the stream: appends the lengths of the chunks still buffered.
    pub(crate) fn finish(mut self, cuts: &mut Vec<u32>) {
        self.settle(true, cuts);
    }

    fn settle(&mut self, at_eof: bool, cuts: &mut Vec<u32>) {
        let (lens, covered) = plan_cuts(&self.buf, at_eof);
        cuts.extend(lens);
        self.buf.drain(..covered);
    }
}

/// Bytes each lane of [`Cutter::scan`] covers per round.
const LANE: usize = 1024;
/// The masks only look at hash bits 0..=47, and bit `k` of the gear hash
/// depends on the last `k + 1` bytes: 47 bytes before a position are enough
/// to know its masked bits.
const WARM_UP: usize = 47;

/// FastCDC v2020's cut-point search (gear hash, normalization level 1, the
/// crate's own gear table and masks), computed four positions at a time.
///
/// `fastcdc::v2020::cut` advances one hash chain, so each byte waits for the
/// previous one. Because the masked bits of the hash depend only on the last
/// 48 bytes, four stretches of the buffer can be hashed side by side (each
/// warmed up on the 47 bytes before it); a stretch group that shows a match
/// is re-scanned in order to find the first one. The cut points are exactly
/// fastcdc's (tested against it), only found faster.
struct Cutter {
    gear: [u64; 256],
    /// Mask before the average size (harder to match).
    mask_s: u64,
    /// Mask after the average size (easier to match).
    mask_l: u64,
}

fn cutter() -> &'static Cutter {
    static CUTTER: std::sync::OnceLock<Cutter> = std::sync::OnceLock::new();
    CUTTER.get_or_init(|| {
        let (gear, _) = fastcdc::v2020::get_gear_with_seed(0);
        let bits = fastcdc::v2020::logarithm2(AVG_CHUNK_LEN) as usize;
        Cutter {
            gear: *gear,
            mask_s: fastcdc::v2020::MASKS[bits + 1],
            mask_l: fastcdc::v2020::MASKS[bits - 1],
        }
    })
}

impl Cutter {
    /// Length of the first chunk of `data` (as `FastCDC::cut(0, len)`).
    fn cut(&self, data: &[u8]) -> usize {
        let (min, avg, max) = (
            MIN_CHUNK_LEN as usize,
            AVG_CHUNK_LEN as usize,
            MAX_CHUNK_LEN as usize,
        );
        let remaining = data.len();
        if remaining <= min {
            return remaining;
        }
        let limit = remaining.min(max);
        let center = if remaining < avg { remaining } else { avg };
        // fastcdc steps two bytes at a time, so both bounds are rounded down
        // to even positions.
        let center_end = center / 2 * 2;
        let end = limit / 2 * 2;
        let data = &data[..limit];
        if let Some(i) = self.scan(data, min, center_end.min(end), min, self.mask_s) {
            return i;
        }
        if let Some(i) = self.scan(data, center_end.max(min), end, min, self.mask_l) {
            return i;
        }
        limit
    }

    /// First position `i` in `from..to` whose gear hash (started at
    /// `origin`) has no bit of `mask` set.
    fn scan(&self, data: &[u8], from: usize, to: usize, origin: usize, mask: u64) -> Option<usize> {
        let g = &self.gear;
        let mut base = from;
        while to.saturating_sub(base) >= 4 * LANE {
            let mut h = [0u64; 4];
            for (j, h) in h.iter_mut().enumerate() {
                let start = base + j * LANE;
                for &b in &data[start.saturating_sub(WARM_UP).max(origin)..start] {
                    *h = (*h << 1).wrapping_add(g[usize::from(b)]);
                }
            }
            let block = &data[base..base + 4 * LANE];
            let (l0, rest) = block.split_at(LANE);
            let (l1, rest) = rest.split_at(LANE);
            let (l2, l3) = rest.split_at(LANE);
            let [mut h0, mut h1, mut h2, mut h3] = h;
            let mut hit = false;
            for (((&b0, &b1), &b2), &b3) in l0.iter().zip(l1).zip(l2).zip(l3) {
                h0 = (h0 << 1).wrapping_add(g[usize::from(b0)]);
                h1 = (h1 << 1).wrapping_add(g[usize::from(b1)]);
                h2 = (h2 << 1).wrapping_add(g[usize::from(b2)]);
                h3 = (h3 << 1).wrapping_add(g[usize::from(b3)]);
                // `x - 1` has its top bit set exactly when `x == 0` (the
                // masks never reach bit 63): one test for all four lanes.
                let any_zero = (h0 & mask).wrapping_sub(1)
                    | (h1 & mask).wrapping_sub(1)
                    | (h2 & mask).wrapping_sub(1)
                    | (h3 & mask).wrapping_sub(1);
                if any_zero >> 63 != 0 {
                    hit = true;
                    break;
                }
            }
            if hit {
                return self.scan_in_order(data, base, base + 4 * LANE, origin, mask);
            }
            base += 4 * LANE;
        }
        self.scan_in_order(data, base, to, origin, mask)
    }

    /// [`Cutter::scan`] one byte after the other.
    fn scan_in_order(
        &self,
        data: &[u8],
        from: usize,
        to: usize,
        origin: usize,
        mask: u64,
    ) -> Option<usize> {
        let g = &self.gear;
        let mut h = 0u64;
        for &b in &data[from.saturating_sub(WARM_UP).max(origin)..from] {
            h = (h << 1).wrapping_add(g[usize::from(b)]);
        }
        for (i, &b) in data.iter().enumerate().take(to).skip(from) {
            h = (h << 1).wrapping_add(g[usize::from(b)]);
            if h & mask == 0 {
                return Some(i);
            }
        }
        None
    }
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

/// Bytes of `chunks` in chunks whose id also occurs in `other`: how much of
/// one file another one already supplies.
pub fn shared_bytes(chunks: &[ChunkRef], other: &[ChunkRef]) -> u64 {
    let ids: std::collections::HashSet<ChunkId> = other.iter().map(|c| c.id).collect();
    chunks
        .iter()
        .filter(|c| ids.contains(&c.id))
        .map(|c| u64::from(c.len))
        .sum()
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
pub fn digest(reader: impl Read) -> Result<Digest, DigestError> {
    digest_with(reader, &mut Vec::new())
}

/// [`digest`] with a caller-owned buffer, so a worker that digests many
/// files allocates (and zeroes) it once. The buffer grows to at most
/// [`BUFFER_LEN`] bytes.
pub(crate) fn digest_with(mut reader: impl Read, buf: &mut Vec<u8>) -> Result<Digest, DigestError> {
    if buf.len() < BUFFER_LEN {
        buf.resize(BUFFER_LEN, 0);
    }
    let buf = &mut buf[..BUFFER_LEN];
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
            // Both hashes right after the cut, while the chunk is in cache.
            let bytes = &buf[at..at + len as usize];
            chunks.push(ChunkRef {
                id: ChunkId::of(bytes),
                len,
            });
            whole.update(bytes);
            at += len as usize;
        }
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
    use fastcdc::v2020::FastCDC;
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
        let whole = fastcdc_lens(&data);
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

    fn fastcdc_lens(data: &[u8]) -> Vec<u32> {
        FastCDC::new(data, MIN_CHUNK_LEN, AVG_CHUNK_LEN, MAX_CHUNK_LEN)
            .map(|c| c.length as u32)
            .collect()
    }

    #[test]
    fn cuts_equal_fastcdc_v2020_on_all_kinds_of_data() {
        let mut inputs = vec![
            vec![0u8; 1_000_000],
            vec![0xffu8; 700_001],
            (0..2_000_000u32)
                .map(|i| (i % 251) as u8)
                .collect::<Vec<u8>>(),
            (0..900_000u32)
                .map(|i| (i / 7 % 3) as u8)
                .collect::<Vec<u8>>(),
        ];
        for (seed, len) in [
            (10, 5_000_000),
            (11, 16_384),
            (12, 16_385),
            (13, 65_537),
            (14, 262_143),
            (15, 262_145),
            (16, 1),
        ] {
            inputs.push(random(len, seed));
        }
        let mp3 = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../fixtures/reference.wav"
        ))
        .unwrap();
        inputs.push(mp3.repeat(9));
        for data in &inputs {
            assert_eq!(
                plan_cuts(data, true).0,
                fastcdc_lens(data),
                "input of {} bytes",
                data.len()
            );
        }
    }

    #[test]
    fn a_cut_stream_cuts_like_the_whole_buffer_whatever_the_pieces() {
        let data = random(5 * 1024 * 1024 + 777, 6);
        let whole = fastcdc_lens(&data);
        for piece in [7usize, 1000, 65_536, 262_144, 1_048_576, 3_000_000] {
            let mut stream = CutStream::new();
            let mut cuts = Vec::new();
            for bytes in data.chunks(piece) {
                stream.feed(bytes, &mut cuts);
                assert!(stream.buf.len() <= CUT_STREAM_BUF);
            }
            stream.finish(&mut cuts);
            assert_eq!(cuts, whole, "pieces of {piece} bytes");
        }
        let mut cuts = Vec::new();
        CutStream::new().finish(&mut cuts);
        assert!(cuts.is_empty());
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
        let shared = shared_bytes(&b.chunks, &a.chunks);
        assert!(shared * 10 >= data.len() as u64 * 9, "shared {shared}");
    }
}
