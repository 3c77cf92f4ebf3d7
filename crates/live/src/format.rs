//! Raw PCM as pipes carry it: the declared format, and bytes → samples with
//! a partial frame carried over to the next read.

use std::fmt;

/// Most channels a live stream carries.
pub const MAX_CHANNELS: u16 = 8;

/// How one sample is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleEncoding {
    /// Signed 16-bit little-endian (librespot, shairport-sync and MPD's default).
    S16le,
    /// Signed 24-bit little-endian, packed in 3 bytes.
    S24le,
    /// Signed 32-bit little-endian.
    S32le,
    /// 32-bit float little-endian.
    F32le,
}

impl SampleEncoding {
    /// Bytes per sample.
    pub fn bytes(self) -> usize {
        match self {
            Self::S16le => 2,
            Self::S24le => 3,
            Self::S32le | Self::F32le => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::S16le => "s16le",
            Self::S24le => "s24le",
            Self::S32le => "s32le",
            Self::F32le => "f32le",
        }
    }
}

/// Why a declared format is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The sample encoding is not one of s16le, s24le, s32le, f32le.
    #[error("unknown sample format {0:?} (s16le, s24le, s32le or f32le)")]
    Encoding(String),
    /// The rate is not a number in 8 000 to 192 000.
    #[error("rate {0:?} is not a number from 8000 to 192000")]
    Rate(String),
    /// The channel count is not a number in 1 to 8.
    #[error("channels {0:?} is not a number from 1 to 8")]
    Channels(String),
    /// A key other than format, rate and channels.
    #[error("unknown option {0:?} (format, rate or channels)")]
    Key(String),
}

/// A raw PCM format: encoding, frames per second, samples per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PcmFormat {
    /// How each sample is written.
    pub encoding: SampleEncoding,
    /// Frames per second.
    pub rate: u32,
    /// Samples per frame.
    pub channels: u16,
}

impl Default for PcmFormat {
    /// s16le, 48 kHz, stereo.
    fn default() -> Self {
        Self {
            encoding: SampleEncoding::S16le,
            rate: 48_000,
            channels: 2,
        }
    }
}

impl fmt::Display for PcmFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} Hz {} ch",
            self.encoding.name(),
            self.rate,
            self.channels
        )
    }
}

impl PcmFormat {
    /// Parses `format=s16le&rate=44100&channels=2` (any subset, any order;
    /// the rest as [`PcmFormat::default`]).
    pub fn parse_query(query: &str) -> Result<Self, FormatError> {
        let mut format = Self::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "format" => {
                    format.encoding = match value.to_ascii_lowercase().as_str() {
                        "s16le" | "s16" => SampleEncoding::S16le,
                        "s24le" | "s24" => SampleEncoding::S24le,
                        "s32le" | "s32" => SampleEncoding::S32le,
                        "f32le" | "f32" => SampleEncoding::F32le,
                        _ => return Err(FormatError::Encoding(clip(value))),
                    }
                }
                "rate" => {
                    format.rate = value
                        .parse()
                        .ok()
                        .filter(|r| (8_000..=192_000).contains(r))
                        .ok_or_else(|| FormatError::Rate(clip(value)))?;
                }
                "channels" => {
                    format.channels = value
                        .parse()
                        .ok()
                        .filter(|c| (1..=MAX_CHANNELS).contains(c))
                        .ok_or_else(|| FormatError::Channels(clip(value)))?;
                }
                _ => return Err(FormatError::Key(clip(key))),
            }
        }
        Ok(format)
    }

    /// Bytes per frame.
    pub fn frame_bytes(&self) -> usize {
        self.encoding.bytes() * usize::from(self.channels)
    }
}

/// Keeps error messages short whatever the input.
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Bytes → interleaved `f32` samples in −1..1; a partial frame at the end
/// of a read is kept for the next one (at most one frame's bytes).
#[derive(Debug, Clone)]
pub struct PcmDecoder {
    format: PcmFormat,
    carry: Vec<u8>,
}

impl PcmDecoder {
    /// A decoder of `format`.
    pub fn new(format: PcmFormat) -> Self {
        Self {
            format,
            carry: Vec::with_capacity(format.frame_bytes()),
        }
    }

    /// The format decoded.
    pub fn format(&self) -> PcmFormat {
        self.format
    }

    /// Bytes of a partial frame waiting for the rest.
    pub fn carried(&self) -> usize {
        self.carry.len()
    }

    /// Forgets a partial frame (the writer went away mid-frame).
    pub fn reset(&mut self) {
        self.carry.clear();
    }

    /// Decodes every whole frame of `carry + bytes` onto `out`.
    pub fn push(&mut self, mut bytes: &[u8], out: &mut Vec<f32>) {
        let frame = self.format.frame_bytes();
        if !self.carry.is_empty() {
            let want = frame - self.carry.len();
            let take = want.min(bytes.len());
            self.carry.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.carry.len() < frame {
                return;
            }
            let carry = std::mem::take(&mut self.carry);
            self.decode_whole(&carry, out);
            self.carry = carry;
            self.carry.clear();
        }
        let whole = bytes.len() / frame * frame;
        self.decode_whole(&bytes[..whole], out);
        self.carry.extend_from_slice(&bytes[whole..]);
    }

    fn decode_whole(&self, bytes: &[u8], out: &mut Vec<f32>) {
        let width = self.format.encoding.bytes();
        out.reserve(bytes.len() / width);
        for s in bytes.chunks_exact(width) {
            let v = match self.format.encoding {
                SampleEncoding::S16le => f32::from(i16::from_le_bytes([s[0], s[1]])) / 32_768.0,
                SampleEncoding::S24le => {
                    (i32::from_le_bytes([0, s[0], s[1], s[2]]) >> 8) as f32 / 8_388_608.0
                }
                SampleEncoding::S32le => {
                    i32::from_le_bytes([s[0], s[1], s[2], s[3]]) as f32 / 2_147_483_648.0
                }
                SampleEncoding::F32le => {
                    let v = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
                    // Not finite: not audio (a format that does not match its declaration).
                    if v.is_finite() {
                        v.clamp(-1.0, 1.0)
                    } else {
                        0.0
                    }
                }
            };
            out.push(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_query_sets_what_it_names() {
        let f = PcmFormat::parse_query("rate=44100&channels=1").expect("valid");
        assert_eq!(f.encoding, SampleEncoding::S16le);
        assert_eq!((f.rate, f.channels), (44_100, 1));
        assert_eq!(
            PcmFormat::parse_query("").expect("empty"),
            PcmFormat::default()
        );
        assert!(matches!(
            PcmFormat::parse_query("format=u8"),
            Err(FormatError::Encoding(_))
        ));
        assert!(matches!(
            PcmFormat::parse_query("rate=1"),
            Err(FormatError::Rate(_))
        ));
        assert!(matches!(
            PcmFormat::parse_query("channels=0"),
            Err(FormatError::Channels(_))
        ));
        assert!(matches!(
            PcmFormat::parse_query("volume=3"),
            Err(FormatError::Key(_))
        ));
    }

    #[test]
    fn samples_decode_to_their_values() {
        let mut d = PcmDecoder::new(PcmFormat::default());
        let mut out = Vec::new();
        d.push(&[0x00, 0x40, 0x00, 0xc0], &mut out);
        assert_eq!(out, vec![0.5, -0.5]);
    }

    proptest! {
        /// However the bytes are split into reads, the same samples come out
        /// and at most one partial frame waits.
        #[test]
        fn a_partial_frame_is_carried_over(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(0usize..600, 0..8),
        ) {
            let format = PcmFormat::parse_query("format=s24le&channels=2").expect("valid");
            let mut whole = Vec::new();
            PcmDecoder::new(format).push(&bytes, &mut whole);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut pieces = PcmDecoder::new(format);
            let mut split = Vec::new();
            let mut at = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                pieces.push(&bytes[at..cut], &mut split);
                at = cut;
                prop_assert!(pieces.carried() < format.frame_bytes());
            }
            prop_assert_eq!(whole, split);
        }
    }
}
