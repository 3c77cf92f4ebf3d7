//! Live streams in the player: a source of frames whose frame `k` is due at
//! a known swarm instant, with gaps played as silence.
//!
//! [`LiveFrames`] is the handle the node keeps: it hands each decoded block
//! in ([`LiveFrames::insert`], mapped to the output's channels) and says when
//! the stream ended ([`LiveFrames::end`]). The engine reads it through the
//! same path as a decoded file ([`crate::feed::Feed::Live`]): a read never
//! waits and never underruns, since a block that is not there is silence
//! (`firefly_live::Schedule` fades around it and drops blocks that come too
//! late), so nothing shifts the schedule. After [`LiveFrames::end`] the next
//! read ends the track.

use crate::feed::Fetch;
use firefly_live::{Inserted, Schedule, ScheduleStats};
use std::sync::{Arc, Mutex};

/// Fade around a missing block, ms.
const GAP_FADE_MILLIS: u32 = 3;
/// Blocks held ahead of the read position: 2.5 s of 20 ms blocks, beyond
/// any buffer a stream uses.
const MAX_HELD_BLOCKS: u32 = 128;

#[derive(Debug)]
struct State {
    schedule: Schedule,
    channels: usize,
    ended: Option<String>,
    reported_end: bool,
}

/// A live stream's frames, shared by the node (writing) and the engine (reading).
#[derive(Debug, Clone)]
pub struct LiveFrames {
    state: Arc<Mutex<State>>,
    rate: u32,
}

impl LiveFrames {
    /// Frames for a stream at `rate` with blocks of `block_frames`, played
    /// on an output of `channels` channels.
    pub fn new(rate: u32, block_frames: u32, channels: u16) -> Self {
        let fade = rate / 1000 * GAP_FADE_MILLIS;
        Self {
            state: Arc::new(Mutex::new(State {
                schedule: Schedule::new(channels, block_frames, fade, MAX_HELD_BLOCKS),
                channels: usize::from(channels.max(1)),
                ended: None,
                reported_end: false,
            })),
            rate,
        }
    }

    /// The stream's frames per second.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The output's channels (what [`LiveFrames::insert`] expects).
    pub fn channels(&self) -> usize {
        crate::lock(&self.state).channels
    }

    /// Hands block `index` in (interleaved, already at the output's channels).
    pub fn insert(&self, index: u64, samples: Vec<f32>) -> Inserted {
        crate::lock(&self.state).schedule.insert(index, samples)
    }

    /// The stream ended (`reason` for the player's event); playback ends at the next read.
    pub fn end(&self, reason: String) {
        let mut state = crate::lock(&self.state);
        if state.ended.is_none() {
            state.ended = Some(reason);
        }
    }

    /// Whether [`LiveFrames::end`] was called.
    pub fn is_ended(&self) -> bool {
        crate::lock(&self.state).ended.is_some()
    }

    /// What the schedule saw (blocks accepted, late, concealed).
    pub fn stats(&self) -> ScheduleStats {
        crate::lock(&self.state).schedule.stats()
    }

    /// The engine's read: frames `from .. from + n`, silence where blocks are missing.
    pub(crate) fn fetch(&self, from: u64, n: usize, out: &mut Vec<f32>) -> Fetch {
        let mut state = crate::lock(&self.state);
        if state.ended.is_some() {
            return Fetch::Ended(0);
        }
        state.schedule.read(from, n, out);
        Fetch::Ready
    }

    /// Frames held from the read position on, and whether the stream ended.
    pub(crate) fn buffered(&self) -> (usize, bool) {
        let state = crate::lock(&self.state);
        (
            state.schedule.contiguous_frames() as usize,
            state.ended.is_some(),
        )
    }

    /// The end's reason, once.
    pub(crate) fn take_end(&self) -> Option<String> {
        let mut state = crate::lock(&self.state);
        if state.reported_end {
            return None;
        }
        let reason = state.ended.clone()?;
        state.reported_end = true;
        Some(reason)
    }
}
