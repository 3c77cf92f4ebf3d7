//! Which of the music's channels a node plays: the whole stereo image, one
//! side of a stereo pair, or a mono downmix.
//!
//! The engine applies a [`ChannelMap`] to every rendered period, after the
//! track (and its gapless successor) is resampled into the output's
//! channels and before the volume, so a map changes no timing: the two
//! nodes of a stereo pair play frames of one timeline, one side each.
//!
//! Channel 0 of the output is the left channel and channel 1 the right
//! (the decoder maps every source to the output's channels that way). A
//! `Left` node puts the left channel on every output channel, a `Right`
//! node the right one, a `Mono` node their mean. On a one-channel output
//! the decoder has already mixed the source down: every map plays that.

/// Which channels a node plays.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ChannelMap {
    /// Every channel as decoded.
    #[default]
    Stereo,
    /// The left channel on every output channel.
    Left,
    /// The right channel on every output channel.
    Right,
    /// The mean of left and right on every output channel.
    Mono,
}

impl ChannelMap {
    /// Applies the map to `out`, interleaved frames of `channels` samples.
    pub fn apply(self, out: &mut [f32], channels: usize) {
        if channels < 2 || self == Self::Stereo {
            return;
        }
        for frame in out.chunks_exact_mut(channels) {
            let (left, right) = (frame[0], frame[1]);
            let value = match self {
                Self::Stereo => return,
                Self::Left => left,
                Self::Right => right,
                Self::Mono => 0.5 * (left + right),
            };
            frame.fill(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_map_puts_its_channel_everywhere() {
        let frames = [0.25_f32, -0.5, 1.0, 0.0];
        let mapped = |map: ChannelMap| {
            let mut out = frames;
            map.apply(&mut out, 2);
            out
        };
        assert_eq!(mapped(ChannelMap::Stereo), frames);
        assert_eq!(mapped(ChannelMap::Left), [0.25, 0.25, 1.0, 1.0]);
        assert_eq!(mapped(ChannelMap::Right), [-0.5, -0.5, 0.0, 0.0]);
        assert_eq!(mapped(ChannelMap::Mono), [-0.125, -0.125, 0.5, 0.5]);
        let mut mono_out = [0.3_f32, 0.4];
        ChannelMap::Left.apply(&mut mono_out, 1);
        assert_eq!(mono_out, [0.3, 0.4]);
    }

    proptest! {
        #[test]
        fn a_pair_plays_exactly_the_two_sides(samples in proptest::collection::vec(-1.0f32..1.0, 0..64)) {
            let whole: Vec<f32> = samples.iter().copied().take(samples.len() / 2 * 2).collect();
            let (mut left, mut right) = (whole.clone(), whole.clone());
            ChannelMap::Left.apply(&mut left, 2);
            ChannelMap::Right.apply(&mut right, 2);
            for (i, frame) in whole.chunks_exact(2).enumerate() {
                prop_assert_eq!(left[2 * i], frame[0]);
                prop_assert_eq!(left[2 * i + 1], frame[0]);
                prop_assert_eq!(right[2 * i], frame[1]);
                prop_assert_eq!(right[2 * i + 1], frame[1]);
            }
        }
    }
}
