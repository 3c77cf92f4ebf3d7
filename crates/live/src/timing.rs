//! Where a stream's blocks sit on the swarm timeline.

use firefly_clock::SwarmMicros;

/// Why a stream's timing is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimingError {
    /// The sample rate is outside 8 000 to 192 000.
    #[error("sample rate {0} outside 8000 to 192000")]
    Rate(u32),
    /// A block is shorter than 16 or longer than 65 535 frames (FLAC's limits).
    #[error("block of {0} frames outside 16 to 65535")]
    BlockFrames(u32),
    /// The buffer is negative or longer than 10 s.
    #[error("buffer of {0} µs outside 0 to 10 s")]
    Buffer(i64),
}

/// A stream's timing: block `k` covers frames `[k·N, (k+1)·N)`, captured from
/// `S0 + k·N/rate` on, and sounds at `S0 + k·N/rate + buffer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamClock {
    s0: SwarmMicros,
    rate: u32,
    block_frames: u32,
    buffer_micros: i64,
}

impl StreamClock {
    /// A stream that started at `s0`, `rate` frames per second, blocks of
    /// `block_frames`, sounding `buffer_micros` after capture.
    pub fn new(
        s0: SwarmMicros,
        rate: u32,
        block_frames: u32,
        buffer_micros: i64,
    ) -> Result<Self, TimingError> {
        if !(8_000..=192_000).contains(&rate) {
            return Err(TimingError::Rate(rate));
        }
        if !(16..=65_535).contains(&block_frames) {
            return Err(TimingError::BlockFrames(block_frames));
        }
        if !(0..=10_000_000).contains(&buffer_micros) {
            return Err(TimingError::Buffer(buffer_micros));
        }
        Ok(Self {
            s0,
            rate,
            block_frames,
            buffer_micros,
        })
    }

    /// The instant capture started (frame 0 was captured).
    pub fn s0(&self) -> SwarmMicros {
        self.s0
    }

    /// Frames per second.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Frames per block.
    pub fn block_frames(&self) -> u32 {
        self.block_frames
    }

    /// Capture to sound, µs.
    pub fn buffer_micros(&self) -> i64 {
        self.buffer_micros
    }

    /// The instant stream frame `frame` sounds.
    pub fn sounds_at(&self, frame: u64) -> SwarmMicros {
        let micros = (frame as i128 * 1_000_000 / i128::from(self.rate)) as i64;
        self.s0 + micros.saturating_add(self.buffer_micros)
    }

    /// The instant block `index` starts sounding.
    pub fn block_sounds_at(&self, index: u64) -> SwarmMicros {
        self.sounds_at(index.saturating_mul(u64::from(self.block_frames)))
    }

    /// The capture position at `now`: frames since `S0` (negative before it).
    pub fn captured_at(&self, now: SwarmMicros) -> i64 {
        let micros = now - self.s0;
        (i128::from(micros) * i128::from(self.rate) / 1_000_000) as i64
    }

    /// The instant capture reaches frame `frame`.
    pub fn capture_reaches(&self, frame: u64) -> SwarmMicros {
        let micros = (frame as i128 * 1_000_000 / i128::from(self.rate)) as i64;
        self.s0 + micros
    }

    /// The block holding stream frame `frame`.
    pub fn block_of(&self, frame: u64) -> u64 {
        frame / u64::from(self.block_frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_k_sounds_at_s0_plus_k_n_over_rate_plus_buffer() {
        let clock =
            StreamClock::new(SwarmMicros(1_000_000), 48_000, 960, 400_000).expect("valid timing");
        assert_eq!(clock.block_sounds_at(0), SwarmMicros(1_400_000));
        assert_eq!(clock.block_sounds_at(50), SwarmMicros(2_400_000));
        assert_eq!(clock.captured_at(SwarmMicros(2_000_000)), 48_000);
        assert_eq!(clock.captured_at(SwarmMicros(0)), -48_000);
        assert_eq!(clock.block_of(48_000), 50);
    }

    #[test]
    fn bad_timing_is_refused() {
        assert!(StreamClock::new(SwarmMicros(0), 7_999, 960, 0).is_err());
        assert!(StreamClock::new(SwarmMicros(0), 48_000, 8, 0).is_err());
        assert!(StreamClock::new(SwarmMicros(0), 48_000, 960, -1).is_err());
    }
}
