//! A member's side: which block sounds when.
//!
//! Blocks arrive in any order and are kept by number; the player reads
//! frames by stream position (frame `p` sounds at the instant the
//! [`StreamClock`](crate::StreamClock) gives it). A block that arrives after
//! its first frame was read is late and dropped, never played late; a block
//! missing when its frames are read is silence, with the block before it
//! fading out and the block after it fading in over a few milliseconds. No
//! arrival or loss moves any other frame. At most `max_blocks` blocks are
//! held, the ones nearest the read position; a block beyond them is refused.
//! Sans-IO.

use std::collections::BTreeMap;

/// What became of a block handed to [`Schedule::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Kept until its frames are read.
    Accepted,
    /// Its first frame was already read: dropped.
    Late,
    /// Already held: ignored.
    Duplicate,
    /// Too far ahead of the read position (more than the window): dropped.
    TooFarAhead,
    /// Not exactly one block of samples: dropped.
    WrongLength,
}

/// What a schedule saw, for reports and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScheduleStats {
    /// Blocks accepted.
    pub accepted: u64,
    /// Blocks dropped because they came too late.
    pub late: u64,
    /// Blocks read as silence because they never came (in time).
    pub concealed: u64,
    /// Blocks refused (duplicate, too far ahead, wrong length).
    pub refused: u64,
}

/// The blocks waiting to sound; see the module doc.
#[derive(Debug, Clone)]
pub struct Schedule {
    channels: usize,
    block_frames: u64,
    fade_frames: u64,
    max_blocks: u64,
    /// Invariant: keys are in `[read_block, read_block + max_blocks)` once
    /// something was read; every value is `block_frames × channels` samples.
    blocks: BTreeMap<u64, Vec<f32>>,
    /// The block the next read starts in; blocks before it were read (or
    /// concealed) and are gone.
    read_block: u64,
    /// The frame the next read starts at: a block starting before it is late.
    read_end: u64,
    /// Whether anything was read yet (before, any block number is welcome
    /// within the window of the first one).
    started: bool,
    /// The last block concealed, so each counts once.
    concealed_upto: Option<u64>,
    stats: ScheduleStats,
}

impl Schedule {
    /// A schedule for blocks of `block_frames` frames of `channels` channels,
    /// fading over `fade_frames` around gaps, holding at most `max_blocks`.
    pub fn new(channels: u16, block_frames: u32, fade_frames: u32, max_blocks: u32) -> Self {
        Self {
            channels: usize::from(channels.max(1)),
            block_frames: u64::from(block_frames.max(1)),
            fade_frames: u64::from(fade_frames.min(block_frames / 2).max(1)),
            max_blocks: u64::from(max_blocks.max(1)),
            blocks: BTreeMap::new(),
            read_block: 0,
            read_end: 0,
            started: false,
            concealed_upto: None,
            stats: ScheduleStats::default(),
        }
    }

    /// What the schedule saw so far.
    pub fn stats(&self) -> ScheduleStats {
        self.stats
    }

    /// Blocks held.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether no block is held.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Frames held from the read position on without a gap.
    pub fn contiguous_frames(&self) -> u64 {
        let mut k = self.read_block;
        while self.blocks.contains_key(&k) {
            k += 1;
        }
        (k - self.read_block) * self.block_frames
    }

    /// Takes block `index` (interleaved samples, exactly one block).
    pub fn insert(&mut self, index: u64, samples: Vec<f32>) -> Inserted {
        let outcome = self.classify(index, samples.len());
        match outcome {
            Inserted::Accepted => {
                self.blocks.insert(index, samples);
                self.stats.accepted += 1;
                if !self.started {
                    // Before the first read, keep the window around the newest.
                    while let Some((&first, _)) = self.blocks.first_key_value() {
                        if index - first < self.max_blocks {
                            break;
                        }
                        self.blocks.remove(&first);
                    }
                }
            }
            Inserted::Late => self.stats.late += 1,
            _ => self.stats.refused += 1,
        }
        outcome
    }

    fn classify(&self, index: u64, len: usize) -> Inserted {
        if len != self.block_frames as usize * self.channels {
            return Inserted::WrongLength;
        }
        if self.started && index.saturating_mul(self.block_frames) < self.read_end {
            return Inserted::Late;
        }
        if self.started && index - self.read_block >= self.max_blocks {
            return Inserted::TooFarAhead;
        }
        if self.blocks.contains_key(&index) {
            return Inserted::Duplicate;
        }
        Inserted::Accepted
    }

    /// Appends frames `from .. from + n` (interleaved) to `out`: held blocks'
    /// samples, silence for the rest, faded around gaps. Blocks before the
    /// end of the read are dropped: they will not be read again.
    pub fn read(&mut self, from: u64, n: usize, out: &mut Vec<f32>) {
        let ch = self.channels;
        let n_blk = self.block_frames;
        if !self.started || from / n_blk > self.read_block {
            // Skipped ahead (a first read, a late join): what lies before is gone.
            self.started = true;
            self.read_block = self.read_block.max(from / n_blk);
            self.read_end = self.read_end.max(from);
        }
        out.reserve(n * ch);
        let mut p = from;
        let end = from + n as u64;
        while p < end {
            let k = p / n_blk;
            let in_block = p - k * n_blk;
            let stop = end.min((k + 1) * n_blk);
            match self.blocks.get(&k) {
                Some(samples) => {
                    let fade_in = !self.blocks.contains_key(&k.wrapping_sub(1)) && k > 0;
                    let fade_out = !self.blocks.contains_key(&(k + 1));
                    for q in in_block..stop - k * n_blk {
                        let mut gain = 1.0f32;
                        if fade_in && q < self.fade_frames {
                            gain = q as f32 / self.fade_frames as f32;
                        }
                        let left = n_blk - 1 - q;
                        if fade_out && left < self.fade_frames {
                            gain = gain.min(left as f32 / self.fade_frames as f32);
                        }
                        let at = q as usize * ch;
                        out.extend(samples[at..at + ch].iter().map(|s| s * gain));
                    }
                }
                None => {
                    if k >= self.read_block && self.concealed_upto.is_none_or(|c| c < k) {
                        self.stats.concealed += 1;
                        self.concealed_upto = Some(k);
                    }
                    out.resize(out.len() + (stop - p) as usize * ch, 0.0);
                }
            }
            p = stop;
        }
        // Blocks wholly read are gone; the block the read ended in stays
        // (the next read continues in it), and the one before it is kept
        // while it can still decide this one's fade-in.
        let last = (end - 1) / n_blk;
        let keep_from = last.saturating_sub(1);
        while let Some((&first, _)) = self.blocks.first_key_value() {
            if first >= keep_from {
                break;
            }
            self.blocks.remove(&first);
        }
        self.read_end = self.read_end.max(end);
        self.read_block = self.read_end / n_blk;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const N: u32 = 100;

    fn block(value: f32) -> Vec<f32> {
        vec![value; N as usize]
    }

    #[test]
    fn blocks_play_by_position_and_gaps_are_faded_silence() {
        let mut s = Schedule::new(1, N, 10, 50);
        assert_eq!(s.insert(0, block(1.0)), Inserted::Accepted);
        assert_eq!(s.insert(2, block(1.0)), Inserted::Accepted);
        let mut out = Vec::new();
        s.read(0, 300, &mut out);
        assert_eq!(out.len(), 300);
        // Block 0: full, fading out over its last 10 frames (block 1 is missing).
        assert_eq!(out[50], 1.0);
        assert!(out[95] < 1.0 && out[99] == 0.0);
        // Block 1: silence.
        assert!(out[100..200].iter().all(|s| *s == 0.0));
        // Block 2: fades in, then full.
        assert_eq!(out[200], 0.0);
        assert_eq!(out[250], 1.0);
        assert_eq!(s.stats().concealed, 1);
    }

    #[test]
    fn a_late_block_is_dropped_not_played_late() {
        let mut s = Schedule::new(1, N, 10, 50);
        let mut out = Vec::new();
        s.read(0, 150, &mut out);
        assert_eq!(s.insert(0, block(1.0)), Inserted::Late);
        assert_eq!(
            s.insert(1, block(1.0)),
            Inserted::Late,
            "its first frame was read"
        );
        assert_eq!(s.insert(2, block(1.0)), Inserted::Accepted);
        out.clear();
        s.read(150, 150, &mut out);
        assert!(out[..50].iter().all(|s| *s == 0.0));
        assert_eq!(out[100], 1.0);
        assert_eq!(s.stats().late, 2);
    }

    #[test]
    fn memory_is_bounded() {
        let mut s = Schedule::new(1, N, 10, 8);
        for k in 0..100 {
            s.insert(k, block(0.5));
        }
        assert!(s.len() <= 8);
        let mut out = Vec::new();
        s.read(9_000, 10, &mut out);
        assert_eq!(s.insert(90 + 8, block(0.5)), Inserted::TooFarAhead);
        assert_eq!(s.insert(91, vec![0.0; 3]), Inserted::WrongLength);
    }

    proptest! {
        /// Whatever arrives, in whatever order, each read returns exactly the
        /// frames asked for; a frame is either its block's sample (scaled by
        /// a fade in 0..1) or silence, so nothing is shifted; memory stays
        /// within the window.
        #[test]
        fn nothing_shifts_and_memory_stays_bounded(
            arrivals in proptest::collection::vec((0u64..60, any::<bool>()), 0..120),
            reads in proptest::collection::vec(1usize..250, 1..30),
        ) {
            let max = 16;
            let mut s = Schedule::new(2, N, 8, max);
            let mut pos = 0u64;
            let mut arrivals = arrivals.into_iter();
            for n in reads {
                for (k, deliver) in arrivals.by_ref().take(4) {
                    if deliver {
                        // Sample value encodes its frame position.
                        let samples: Vec<f32> = (0..N as u64)
                            .flat_map(|q| { let v = (k * u64::from(N) + q + 1) as f32; [v, -v] })
                            .collect();
                        s.insert(k, samples);
                    }
                }
                let mut out = Vec::new();
                s.read(pos, n, &mut out);
                prop_assert_eq!(out.len(), n * 2);
                for (i, frame) in out.chunks_exact(2).enumerate() {
                    let expect = (pos + i as u64 + 1) as f32;
                    let l = frame[0];
                    prop_assert!(l == 0.0 || (l <= expect && l / expect >= 0.0 && (l - expect).abs() <= expect), "{} vs {}", l, expect);
                    prop_assert_eq!(frame[1], -l);
                    // The fade never scales by more than 1, and an unfaded frame is exact.
                    prop_assert!(l <= expect + 1e-3);
                }
                prop_assert!(s.len() as u32 <= max + 1);
                pos += n as u64;
            }
        }
    }
}
