//! The origin's side: audio in whenever the source gives it, blocks out on
//! the timeline.
//!
//! Frames are numbered from the stream's start. The source's frames are
//! appended one after the other; block `k` is cut once capture has passed
//! its end by a grace (a source that delivers a little late still lands in
//! its block), padded with silence if the source gave less. So a silent
//! source gives silent blocks, never a stall, and audio that comes back goes
//! into the next block not yet cut: in step at once. A source that runs
//! ahead (a burst, a regular file) is held: [`Cutter::wants_audio`] says when
//! to stop reading, and a FIFO's writer then waits. Sans-IO: `now` is a
//! parameter.

use crate::timing::StreamClock;
use firefly_clock::SwarmMicros;
use std::collections::VecDeque;

/// How long after a block's capture window it is cut: audio delivered up to
/// this late still goes into its block.
const GRACE_MICROS: i64 = 40_000;
/// How far ahead of capture the source may run before reading stops.
const MAX_AHEAD_MICROS: i64 = 100_000;
/// An origin more than this behind its timeline (a suspended process) skips
/// to the present instead of cutting every missed block.
const MAX_BEHIND_MICROS: i64 = 1_000_000;

/// One block of audio: frames `[index·N, (index+1)·N)` of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// The block's number.
    pub index: u64,
    /// Interleaved samples, exactly N frames.
    pub samples: Vec<f32>,
    /// Frames of it the source gave (the rest is silence).
    pub audio_frames: u32,
}

impl Block {
    /// The largest absolute sample (for a level meter).
    pub fn peak(&self) -> f32 {
        self.samples.iter().fold(0.0f32, |m, s| m.max(s.abs()))
    }
}

/// Cuts a source's audio into blocks; see the module doc.
#[derive(Debug, Clone)]
pub struct Cutter {
    clock: StreamClock,
    channels: usize,
    /// Samples of the frames from `next_block · N` on, not cut yet.
    /// Invariant: at most `MAX_AHEAD` + one block + one read of frames
    /// (callers stop reading when [`Cutter::wants_audio`] is false).
    pending: VecDeque<f32>,
    next_block: u64,
    /// Frames the source gave in all, and frames dropped (over the bound).
    received: u64,
    dropped: u64,
    skipped_blocks: u64,
}

impl Cutter {
    /// A cutter for a stream with `clock`'s timing, of `channels` channels.
    /// The first block cut is the one capture is in at `now`.
    pub fn new(clock: StreamClock, channels: u16, now: SwarmMicros) -> Self {
        let n = u64::from(clock.block_frames());
        let next_block = u64::try_from(clock.captured_at(now)).unwrap_or(0) / n;
        Self {
            clock,
            channels: usize::from(channels.max(1)),
            pending: VecDeque::new(),
            next_block,
            received: 0,
            dropped: 0,
            skipped_blocks: 0,
        }
    }

    /// The stream's timing.
    pub fn clock(&self) -> &StreamClock {
        &self.clock
    }

    fn block_len(&self) -> u64 {
        u64::from(self.clock.block_frames())
    }

    fn pending_frames(&self) -> u64 {
        (self.pending.len() / self.channels) as u64
    }

    /// The stream position of the next frame the source gives.
    pub fn written(&self) -> u64 {
        self.next_block * self.block_len() + self.pending_frames()
    }

    /// Whether the source may give more now (it is not ahead of capture by
    /// more than the bound).
    pub fn wants_audio(&self, now: SwarmMicros) -> bool {
        let ahead = self.clock.rate() as i64 * MAX_AHEAD_MICROS / 1_000_000;
        (self.written() as i64) < self.clock.captured_at(now) + ahead
    }

    /// Appends interleaved `samples` (whole frames; a trailing partial frame
    /// is ignored). Past the bound, frames are dropped and counted.
    pub fn handle_audio(&mut self, samples: &[f32]) {
        let frames = samples.len() / self.channels;
        self.received += frames as u64;
        let limit = (self.clock.rate() as u64 * MAX_AHEAD_MICROS as u64 / 1_000_000
            + 2 * self.block_len()) as usize
            * self.channels;
        let room = limit.saturating_sub(self.pending.len()) / self.channels * self.channels;
        let take = (frames * self.channels).min(room);
        self.pending.extend(&samples[..take]);
        self.dropped += ((frames * self.channels - take) / self.channels) as u64;
    }

    /// The next block whose capture window (plus the grace) has passed at `now`.
    pub fn poll_block(&mut self, now: SwarmMicros) -> Option<Block> {
        let n = self.block_len();
        let captured = self.clock.captured_at(now);
        let behind = self.clock.rate() as i64 * MAX_BEHIND_MICROS / 1_000_000;
        let present = u64::try_from(captured).unwrap_or(0) / n;
        if captured - (self.next_block * n) as i64 > behind {
            self.skipped_blocks += present - self.next_block;
            self.next_block = present;
            self.pending.clear();
            return None;
        }
        if now < self.poll_timeout() {
            return None;
        }
        let want = n as usize * self.channels;
        let have = self.pending.len().min(want);
        let mut samples: Vec<f32> = self.pending.drain(..have).collect();
        samples.resize(want, 0.0);
        let block = Block {
            index: self.next_block,
            samples,
            audio_frames: (have / self.channels) as u32,
        };
        self.next_block += 1;
        Some(block)
    }

    /// When the next block is due to be cut.
    pub fn poll_timeout(&self) -> SwarmMicros {
        self.clock
            .capture_reaches((self.next_block + 1) * self.block_len())
            + GRACE_MICROS
    }

    /// Frames the source gave, frames dropped over the bound, blocks skipped
    /// after the origin fell behind.
    pub fn counters(&self) -> (u64, u64, u64) {
        (self.received, self.dropped, self.skipped_blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const N: u32 = 480;

    fn clock() -> StreamClock {
        StreamClock::new(SwarmMicros(0), 48_000, N, 200_000).expect("valid timing")
    }

    fn drain(cutter: &mut Cutter, now: SwarmMicros) -> Vec<Block> {
        std::iter::from_fn(|| cutter.poll_block(now)).collect()
    }

    #[test]
    fn a_silent_source_gives_silent_blocks_on_time() {
        let mut cutter = Cutter::new(clock(), 2, SwarmMicros(0));
        let blocks = drain(&mut cutter, SwarmMicros(1_000_000));
        // 1 s minus the grace: 48 blocks of 10 ms are due.
        assert_eq!(blocks.len(), 96);
        assert!(
            blocks
                .iter()
                .all(|b| b.audio_frames == 0 && b.peak() == 0.0)
        );
        assert!(blocks.windows(2).all(|w| w[1].index == w[0].index + 1));
    }

    #[test]
    fn audio_after_a_silence_is_in_step_at_once() {
        let mut cutter = Cutter::new(clock(), 1, SwarmMicros(0));
        let _ = drain(&mut cutter, SwarmMicros(500_000));
        // The source wakes up at 0.5 s: its first frame goes into the first
        // block not cut yet, which sounds within a block and the grace of
        // 0.5 s + the buffer.
        cutter.handle_audio(&[1.0; 10]);
        let block = drain(&mut cutter, SwarmMicros(600_000))
            .into_iter()
            .find(|b| b.audio_frames > 0)
            .expect("the audio is cut");
        let sounds = cutter.clock().block_sounds_at(block.index);
        let late = sounds - SwarmMicros(500_000 + 200_000);
        assert!((-50_000..=0).contains(&late), "{late}");
    }

    #[test]
    fn a_source_ahead_is_held_and_bounded() {
        let mut cutter = Cutter::new(clock(), 1, SwarmMicros(0));
        assert!(cutter.wants_audio(SwarmMicros(0)));
        cutter.handle_audio(&vec![0.1; 48_000]);
        assert!(!cutter.wants_audio(SwarmMicros(0)));
        let (received, dropped, _) = cutter.counters();
        assert_eq!(received, 48_000);
        assert!(dropped > 0);
        assert!(cutter.pending.len() < 48_000);
    }

    #[test]
    fn an_origin_far_behind_skips_to_the_present() {
        let mut cutter = Cutter::new(clock(), 1, SwarmMicros(0));
        assert_eq!(cutter.poll_block(SwarmMicros(5_000_000)), None);
        let block = cutter.poll_block(SwarmMicros(5_100_000)).expect("a block");
        assert!(block.index >= 500);
    }

    proptest! {
        /// Whatever the source gives and whenever it is polled, blocks come
        /// in order with no gap, each exactly N frames, and the source's
        /// frames come out in order.
        #[test]
        fn blocks_are_whole_contiguous_and_keep_the_order(
            steps in proptest::collection::vec((0i64..30_000, 0usize..2_000), 1..60),
        ) {
            let mut cutter = Cutter::new(clock(), 1, SwarmMicros(0));
            let mut now = SwarmMicros(0);
            let mut sent = 0u64;
            let mut got = Vec::new();
            let mut last: Option<u64> = None;
            for (dt, frames) in steps {
                now = now + dt;
                if cutter.wants_audio(now) {
                    let samples: Vec<f32> = (0..frames).map(|i| (sent + i as u64 + 1) as f32).collect();
                    sent += frames as u64;
                    cutter.handle_audio(&samples);
                }
                while let Some(block) = cutter.poll_block(now) {
                    prop_assert_eq!(block.samples.len(), N as usize);
                    if let Some(prev) = last {
                        prop_assert_eq!(block.index, prev + 1);
                    }
                    last = Some(block.index);
                    got.extend(block.samples.into_iter().filter(|s| *s > 0.0));
                }
            }
            prop_assert!(got.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
