//! Verifying a download while it arrives, over the file's present prefix.
//!
//! Finishing a download needs two facts about the assembled file: does it
//! hash to the track id, and does FastCDC cut it exactly where the
//! manifest's chunks end. [`VerifiedPrefix`] computes both as the file's
//! contiguous present prefix grows — the whole-file BLAKE3 and a
//! [`CutStream`] fed chunk after chunk in file order — so that once the last
//! chunk is in, the verdict ([`StagedCheck`]) is known without reading the
//! file back.
//!
//! It is sans-IO: the caller (`Library::accept_chunks`) decides which chunk
//! comes next ([`VerifiedPrefix::next_chunk`]), finds its bytes (from the
//! batch in memory or read back from the staging file) and feeds them. It
//! is not a store of chunks: it keeps a hasher, at most one cut buffer
//! (bounded, see [`CutStream`]) and two indexes, whatever the file's size.

use crate::chunking::CutStream;
use crate::id::TrackId;
use crate::manifest::ChunkRef;

/// What checking a complete download's bytes found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StagedCheck {
    /// The bytes hash to the track, and FastCDC cuts them exactly where the
    /// manifest's chunks end.
    Canonical,
    /// The bytes hash to the track, but the manifest's chunk boundaries are
    /// not FastCDC's (a peer cut the file its own way).
    NotCanonical,
    /// The file has the wrong length or its bytes do not hash to the track.
    Mismatch,
}

/// The whole-file hash and FastCDC cut check of a download, over the chunks
/// fed so far (a prefix of the manifest's chunk sequence).
#[derive(Debug)]
pub(crate) struct VerifiedPrefix {
    /// Manifest chunks `..next` have been fed, in file order.
    next: usize,
    /// Where chunk `next` starts: the sum of the lengths fed.
    offset: u64,
    /// BLAKE3 of the bytes fed.
    hasher: blake3::Hasher,
    /// FastCDC over the bytes fed; `None` once a cut differed from the
    /// manifest (nothing after it can make the cuts match again).
    cuts: Option<CutStream>,
    /// How many manifest chunks FastCDC's cuts have matched so far.
    matched: usize,
    /// A cut differed from the manifest's.
    cuts_differ: bool,
    /// Cuts settled by the last feed, compared and cleared at once.
    settled: Vec<u32>,
    /// Set once every chunk was fed.
    verdict: Option<StagedCheck>,
    /// Feeding failed part-way (the staging file could not be read back, or
    /// a panic tore the state): only reading the whole file can tell now.
    broken: bool,
}

impl VerifiedPrefix {
    /// A check that has seen no bytes.
    pub(crate) fn new() -> Self {
        Self {
            next: 0,
            offset: 0,
            hasher: blake3::Hasher::new(),
            cuts: Some(CutStream::new()),
            matched: 0,
            cuts_differ: false,
            settled: Vec::new(),
            verdict: None,
            broken: false,
        }
    }

    /// The next chunk to feed, with its offset and index in `chunks` (the
    /// manifest's sequence); `None` when all were fed or the check broke.
    pub(crate) fn next_chunk<'a>(&self, chunks: &'a [ChunkRef]) -> Option<(u64, &'a ChunkRef)> {
        if self.broken || self.verdict.is_some() {
            return None;
        }
        chunks.get(self.next).map(|chunk| (self.offset, chunk))
    }

    /// Feeds the bytes of the chunk [`Self::next_chunk`] named. `bytes` must
    /// be exactly that chunk's verified bytes. After the last chunk of
    /// `chunks` the verdict is settled against `track`.
    pub(crate) fn feed(&mut self, chunks: &[ChunkRef], track: TrackId, bytes: &[u8]) {
        if self.next_chunk(chunks).is_none() {
            return;
        }
        self.hasher.update(bytes);
        if let Some(cuts) = &mut self.cuts {
            cuts.feed(bytes, &mut self.settled);
        }
        self.compare_cuts(chunks);
        self.next += 1;
        self.offset += bytes.len() as u64;
        if self.next == chunks.len() {
            if let Some(cuts) = self.cuts.take() {
                cuts.finish(&mut self.settled);
                self.compare_cuts(chunks);
            }
            let canonical = !self.cuts_differ && self.matched == chunks.len();
            let hashed = TrackId::from(self.hasher.finalize()) == track;
            self.verdict = Some(match (hashed, canonical) {
                (false, _) => StagedCheck::Mismatch,
                (true, true) => StagedCheck::Canonical,
                (true, false) => StagedCheck::NotCanonical,
            });
            // The verdict is all that is needed from here on.
            self.hasher = blake3::Hasher::new();
            self.settled = Vec::new();
        }
    }

    /// Checks the cuts settled by the last feed against the manifest's
    /// lengths; on the first difference stops cutting for good.
    fn compare_cuts(&mut self, chunks: &[ChunkRef]) {
        for &len in &self.settled {
            if chunks.get(self.matched).map(|c| c.len) == Some(len) {
                self.matched += 1;
            } else {
                self.cuts = None;
                self.cuts_differ = true;
                break;
            }
        }
        self.settled.clear();
    }

    /// Marks the check unusable: the finish will read the file back.
    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// The verdict, once every chunk was fed and nothing went wrong.
    pub(crate) fn verdict(&self) -> Option<StagedCheck> {
        if self.broken { None } else { self.verdict }
    }

    /// How many bytes have been fed.
    #[cfg(test)]
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::chunking;
    use crate::id::ChunkId;
    use rand::{RngCore, SeedableRng};

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut v = vec![0u8; len];
        rng.fill_bytes(&mut v);
        v
    }

    fn run(data: &[u8], chunks: &[ChunkRef], track: TrackId) -> Option<StagedCheck> {
        let mut prefix = VerifiedPrefix::new();
        while let Some((offset, chunk)) = prefix.next_chunk(chunks) {
            let at = offset as usize;
            prefix.feed(chunks, track, &data[at..at + chunk.len as usize]);
        }
        prefix.verdict()
    }

    #[test]
    fn fastcdc_chunks_of_the_right_bytes_are_canonical() {
        let data = random(3 * 1024 * 1024 + 5, 1);
        let digest = chunking::digest(&data[..]).unwrap();
        assert_eq!(
            run(&data, &digest.chunks, digest.track),
            Some(StagedCheck::Canonical)
        );
    }

    #[test]
    fn other_cuts_of_the_right_bytes_are_not_canonical() {
        let data = random(2 * 1024 * 1024, 2);
        let track = TrackId::of(&data);
        // Fixed 100,000-byte pieces: FastCDC never cuts like that.
        let chunks: Vec<ChunkRef> = data
            .chunks(100_000)
            .map(|c| ChunkRef {
                id: ChunkId::of(c),
                len: c.len() as u32,
            })
            .collect();
        assert_eq!(run(&data, &chunks, track), Some(StagedCheck::NotCanonical));
        // The last chunk merged into the one before: every cut but the
        // last matches.
        let digest = chunking::digest(&data[..]).unwrap();
        let mut merged = digest.chunks.clone();
        let last = merged.pop().unwrap();
        merged.last_mut().unwrap().len += last.len;
        assert_eq!(run(&data, &merged, track), Some(StagedCheck::NotCanonical));
    }

    #[test]
    fn bytes_that_do_not_hash_to_the_track_mismatch() {
        let data = random(1024 * 1024, 3);
        let digest = chunking::digest(&data[..]).unwrap();
        assert_eq!(
            run(&data, &digest.chunks, TrackId::of(b"another track")),
            Some(StagedCheck::Mismatch)
        );
    }

    #[test]
    fn no_verdict_before_the_end_or_once_broken() {
        let data = random(1024 * 1024, 4);
        let digest = chunking::digest(&data[..]).unwrap();
        let chunks = &digest.chunks;
        let mut prefix = VerifiedPrefix::new();
        let first = chunks[0].len as usize;
        prefix.feed(chunks, digest.track, &data[..first]);
        assert_eq!(prefix.offset(), first as u64);
        assert_eq!(prefix.verdict(), None);
        assert_eq!(prefix.next_chunk(chunks).unwrap().0, first as u64);
        prefix.mark_broken();
        assert_eq!(prefix.next_chunk(chunks), None);
        assert_eq!(prefix.verdict(), None);
    }
}
