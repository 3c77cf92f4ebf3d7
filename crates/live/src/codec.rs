//! A block on the wire: one FLAC frame (lossless, the default) or raw
//! 16-bit PCM.
//!
//! FLAC frames are made with `flacenc` (pure Rust) at 16 bits per sample,
//! each frame numbered by its block, and decoded by symphonia's FLAC decoder
//! given the STREAMINFO both ends derive from the stream's format, so no
//! header travels. A decoded block must be exactly one block long; anything
//! else is an error, never a panic.

use flacenc::component::BitRepr;
use flacenc::error::Verify;
use flacenc::source::{Fill, FrameBuf};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_FLAC, CodecParameters, DecoderOptions};
use symphonia::core::formats::Packet;

/// Largest encoded block accepted: 16-bit PCM of the longest block of 8
/// channels, and some.
pub const MAX_BLOCK_BYTES: usize = 65_535 * 8 * 2 + 1024;

/// How blocks are encoded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Codec {
    /// One FLAC frame per block, 16 bits per sample.
    #[default]
    Flac,
    /// Interleaved signed 16-bit little-endian samples.
    Pcm16,
}

impl Codec {
    /// The codec's name on the wire and in the API.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flac => "flac",
            Self::Pcm16 => "pcm16",
        }
    }

    /// The codec called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "flac" => Some(Self::Flac),
            "pcm16" => Some(Self::Pcm16),
            _ => None,
        }
    }
}

/// Why a block could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The encoder refused the format or the samples.
    #[error("cannot encode the block: {0}")]
    Encode(String),
    /// The bytes are not a block of this stream.
    #[error("block does not decode: {0}")]
    Decode(String),
}

fn to_i16(s: f32) -> i16 {
    (s.clamp(-1.0, 1.0) * 32_767.0).round() as i16
}

/// Encodes a stream's blocks.
pub struct BlockEncoder {
    codec: Codec,
    channels: usize,
    block_frames: usize,
    flac: Option<(
        flacenc::error::Verified<flacenc::config::Encoder>,
        flacenc::component::StreamInfo,
        FrameBuf,
    )>,
    ints: Vec<i32>,
}

impl std::fmt::Debug for BlockEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockEncoder")
            .field("codec", &self.codec)
            .field("channels", &self.channels)
            .field("block_frames", &self.block_frames)
            .finish_non_exhaustive()
    }
}

impl BlockEncoder {
    /// An encoder of blocks of `block_frames` frames, `channels` channels at `rate`.
    pub fn new(
        codec: Codec,
        rate: u32,
        channels: u16,
        block_frames: u32,
    ) -> Result<Self, CodecError> {
        let (ch, n) = (usize::from(channels), block_frames as usize);
        let flac = match codec {
            Codec::Pcm16 => None,
            Codec::Flac => {
                let mut config = flacenc::config::Encoder::default();
                config.block_size = n;
                config.multithread = false;
                let config = config
                    .into_verified()
                    .map_err(|(_, e)| CodecError::Encode(e.to_string()))?;
                let info = flacenc::component::StreamInfo::new(rate as usize, ch, 16)
                    .map_err(|e| CodecError::Encode(e.to_string()))?;
                let buf =
                    FrameBuf::with_size(ch, n).map_err(|e| CodecError::Encode(e.to_string()))?;
                Some((config, info, buf))
            }
        };
        Ok(Self {
            codec,
            channels: ch,
            block_frames: n,
            flac,
            ints: Vec::with_capacity(n * ch),
        })
    }

    /// Encodes block `index` (exactly one block of interleaved samples).
    pub fn encode(&mut self, index: u64, samples: &[f32]) -> Result<Vec<u8>, CodecError> {
        if samples.len() != self.block_frames * self.channels {
            return Err(CodecError::Encode(format!(
                "{} samples, expected {}",
                samples.len(),
                self.block_frames * self.channels
            )));
        }
        match &mut self.flac {
            None => Ok(samples
                .iter()
                .flat_map(|s| to_i16(*s).to_le_bytes())
                .collect()),
            Some((config, info, buf)) => {
                self.ints.clear();
                self.ints
                    .extend(samples.iter().map(|s| i32::from(to_i16(*s))));
                buf.fill_interleaved(&self.ints)
                    .map_err(|e| CodecError::Encode(e.to_string()))?;
                // FLAC frame numbers have 31 bits; the number is only a label here.
                let number = (index % (1 << 31)) as usize;
                let frame = flacenc::encode_fixed_size_frame(config, buf, number, info)
                    .map_err(|e| CodecError::Encode(e.to_string()))?;
                let mut sink = flacenc::bitsink::ByteSink::new();
                frame
                    .write(&mut sink)
                    .map_err(|e| CodecError::Encode(e.to_string()))?;
                Ok(sink.into_inner())
            }
        }
    }
}

/// The 34-byte FLAC STREAMINFO of a fixed-block 16-bit stream.
fn stream_info(rate: u32, channels: u16, block_frames: u32) -> Vec<u8> {
    let mut info = Vec::with_capacity(34);
    let n = block_frames as u16;
    info.extend(n.to_be_bytes());
    info.extend(n.to_be_bytes());
    info.extend([0u8; 6]); // frame sizes unknown
    // 20 bits rate, 3 bits channels − 1, 5 bits bits − 1, 36 bits total (0: unknown).
    let packed: u64 =
        (u64::from(rate) << 44) | (u64::from(channels.saturating_sub(1)) << 41) | (15u64 << 36);
    info.extend(packed.to_be_bytes());
    info.extend([0u8; 16]); // no MD5
    info
}

/// Decodes a stream's blocks.
pub struct BlockDecoder {
    codec: Codec,
    channels: usize,
    block_frames: usize,
    flac: Option<Box<dyn symphonia::core::codecs::Decoder>>,
    buffer: Option<SampleBuffer<f32>>,
}

impl std::fmt::Debug for BlockDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockDecoder")
            .field("codec", &self.codec)
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

impl BlockDecoder {
    /// A decoder of what [`BlockEncoder::new`] with the same arguments encodes.
    pub fn new(
        codec: Codec,
        rate: u32,
        channels: u16,
        block_frames: u32,
    ) -> Result<Self, CodecError> {
        if !(1..=8).contains(&channels) || !(16..=65_535).contains(&block_frames) {
            return Err(CodecError::Decode(format!(
                "{channels} channels, blocks of {block_frames} frames"
            )));
        }
        let flac = match codec {
            Codec::Pcm16 => None,
            Codec::Flac => {
                let mut params = CodecParameters::new();
                params
                    .for_codec(CODEC_TYPE_FLAC)
                    .with_extra_data(stream_info(rate, channels, block_frames).into_boxed_slice());
                Some(
                    symphonia::default::get_codecs()
                        .make(&params, &DecoderOptions::default())
                        .map_err(|e| CodecError::Decode(e.to_string()))?,
                )
            }
        };
        Ok(Self {
            codec,
            channels: usize::from(channels),
            block_frames: block_frames as usize,
            flac,
            buffer: None,
        })
    }

    /// Decodes one block onto `out` (exactly one block of interleaved samples).
    pub fn decode(&mut self, bytes: &[u8], out: &mut Vec<f32>) -> Result<(), CodecError> {
        let want = self.block_frames * self.channels;
        if bytes.len() > MAX_BLOCK_BYTES {
            return Err(CodecError::Decode(format!("{} bytes", bytes.len())));
        }
        match &mut self.flac {
            None => {
                if bytes.len() != want * 2 {
                    return Err(CodecError::Decode(format!(
                        "{} bytes of PCM, expected {}",
                        bytes.len(),
                        want * 2
                    )));
                }
                out.extend(
                    bytes
                        .chunks_exact(2)
                        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0),
                );
                Ok(())
            }
            Some(decoder) => {
                let packet = Packet::new_from_slice(0, 0, self.block_frames as u64, bytes);
                // A decoder bug on hostile bytes must not take the node down.
                let decoded =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        match decoder.decode(&packet) {
                            Ok(audio) => {
                                let spec = *audio.spec();
                                let frames = audio.frames();
                                if spec.channels.count() != self.channels
                                    || frames != self.block_frames
                                {
                                    return Err(CodecError::Decode(format!(
                                        "{} frames of {} channels, expected {} of {}",
                                        frames,
                                        spec.channels.count(),
                                        self.block_frames,
                                        self.channels
                                    )));
                                }
                                let buffer = self.buffer.get_or_insert_with(|| {
                                    SampleBuffer::new(self.block_frames as u64, spec)
                                });
                                buffer.copy_interleaved_ref(audio);
                                Ok(())
                            }
                            Err(e) => Err(CodecError::Decode(e.to_string())),
                        }
                    }))
                    .unwrap_or_else(|_| Err(CodecError::Decode("the decoder crashed".into())));
                decoded?;
                let samples = self
                    .buffer
                    .as_ref()
                    .map(SampleBuffer::samples)
                    .unwrap_or(&[]);
                if samples.len() != want {
                    return Err(CodecError::Decode(format!("{} samples", samples.len())));
                }
                out.extend_from_slice(samples);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tone(frames: usize, channels: usize) -> Vec<f32> {
        (0..frames * channels)
            .map(|i| {
                let t = (i / channels) as f32 / 48_000.0;
                (0.4 * (t * 440.0 * std::f32::consts::TAU).sin() * 32_767.0).round() / 32_767.0
            })
            .collect()
    }

    #[test]
    fn flac_blocks_are_lossless_and_smaller() {
        let mut enc = BlockEncoder::new(Codec::Flac, 48_000, 2, 960).expect("valid format");
        let mut dec = BlockDecoder::new(Codec::Flac, 48_000, 2, 960).expect("valid format");
        for index in 0..5u64 {
            let samples = tone(960, 2);
            let bytes = enc.encode(index, &samples).expect("encodes");
            assert!(bytes.len() < 960 * 2 * 2 / 2, "{} bytes", bytes.len());
            let mut out = Vec::new();
            dec.decode(&bytes, &mut out).expect("decodes");
            assert_eq!(out.len(), samples.len());
            for (a, b) in samples.iter().zip(&out) {
                assert!((a - b).abs() < 1.0 / 32_000.0, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn pcm_blocks_round_trip() {
        let mut enc = BlockEncoder::new(Codec::Pcm16, 44_100, 1, 882).expect("valid");
        let mut dec = BlockDecoder::new(Codec::Pcm16, 44_100, 1, 882).expect("valid");
        let samples = tone(882, 1);
        let bytes = enc.encode(7, &samples).expect("encodes");
        let mut out = Vec::new();
        dec.decode(&bytes, &mut out).expect("decodes");
        assert_eq!(out.len(), 882);
        assert!(dec.decode(&bytes[1..], &mut out).is_err());
    }

    #[test]
    fn a_block_of_another_format_is_refused() {
        let mut enc = BlockEncoder::new(Codec::Flac, 48_000, 1, 480).expect("valid");
        let mut dec = BlockDecoder::new(Codec::Flac, 48_000, 2, 960).expect("valid");
        let bytes = enc.encode(0, &tone(480, 1)).expect("encodes");
        let mut out = Vec::new();
        assert!(dec.decode(&bytes, &mut out).is_err());
    }

    proptest! {
        /// Garbage never panics the decoder and never yields a wrong-sized block.
        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4000)) {
            let mut dec = BlockDecoder::new(Codec::Flac, 48_000, 2, 960).expect("valid");
            let mut out = Vec::new();
            if dec.decode(&bytes, &mut out).is_ok() {
                prop_assert_eq!(out.len(), 960 * 2);
            }
        }
    }
}
