//! Decoding a track to interleaved `f32` frames with symphonia.
//!
//! [`Decoder`] opens any container and codec this build of symphonia knows
//! (MP3, FLAC, Ogg Vorbis, WAV, AAC in MP4/M4A), maps its channels onto the
//! output's channel count and hands out blocks of frames at the track's own
//! sample rate. Resampling is not done here: the renderer resamples, because
//! that is where the drift-correcting rate is known.
//!
//! A corrupt packet mid-file is skipped and replaced by silence of the
//! packet's length, so later frames keep their place on the timeline; the
//! count is kept in [`Decoder::corrupt_packets`]. A file that is not audio or
//! uses a codec this build cannot decode gets a [`DecodeError`] on open.

use crate::error::DecodeError;
use std::fs::File;
use std::path::Path;
use symphonia::core::audio::{SampleBuffer, SignalSpec};
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use symphonia::core::units::TimeBase;

/// The lowest sample rate the player accepts.
pub const MIN_SAMPLE_RATE: u32 = 8_000;
/// The highest sample rate the player accepts.
pub const MAX_SAMPLE_RATE: u32 = 192_000;

/// The longest run of silence inserted for one corrupt packet (one second at
/// 192 kHz): a lying packet header cannot make us allocate more.
const MAX_GAP_FRAMES: u64 = 192_000;

/// Packets failing in a row after which the track is given up: a stream
/// the decoder cannot handle at all, rather than a damaged stretch.
const MAX_FAILURES_IN_A_ROW: u32 = 100;

/// What a track is, as far as playback cares.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackInfo {
    /// Frames per second of the decoded signal.
    pub sample_rate: u32,
    /// Channels in the file (before mapping to the output), when the container says.
    pub channels: Option<u16>,
    /// Total frames, when the container says.
    pub frames: Option<u64>,
    /// The codec's short name, e.g. `mp3`, `flac`, `vorbis`, `aac`, `pcm_s16le`.
    pub codec: String,
}

/// A block of decoded frames appended by [`Decoder::next_block`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Index (at the track's rate) of the first frame of the block.
    pub first_frame: u64,
    /// Frames appended.
    pub frames: usize,
    /// Whether the block is silence standing in for a corrupt packet.
    pub concealed: bool,
}

/// A symphonia demuxer and decoder for one track, producing interleaved `f32`.
pub struct Decoder {
    format: Box<dyn FormatReader>,
    decoder: Box<dyn symphonia::core::codecs::Decoder>,
    track_id: u32,
    time_base: Option<TimeBase>,
    info: TrackInfo,
    out_channels: usize,
    /// Reused conversion buffer; rebuilt when a packet is larger or its layout changes.
    convert: Option<(SignalSpec, SampleBuffer<f32>)>,
    /// Index of the next frame [`Decoder::next_block`] will append.
    next_frame: u64,
    /// Frames still to drop after an accurate seek landed before its target.
    discard: u64,
    /// Timestamp the next packet should carry; a later one means packets were lost.
    expected_ts: Option<u64>,
    /// Whether the end-of-track shortfall against the declared length was handled.
    tail_checked: bool,
    corrupt_packets: u64,
    failures_in_a_row: u32,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("info", &self.info)
            .field("out_channels", &self.out_channels)
            .field("next_frame", &self.next_frame)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// Opens a file, using its extension as a format hint.
    pub fn open_file(path: &Path, out_channels: u16) -> Result<Self, DecodeError> {
        let file = File::open(path).map_err(|source| DecodeError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let extension = path.extension().and_then(|e| e.to_str());
        Self::open(Box::new(file), extension, out_channels)
    }

    /// Opens any byte source (a file, a [`StreamSource`](crate::StreamSource), a cursor).
    ///
    /// `extension` is an optional hint (`"mp3"`, `"flac"` …); the content decides.
    /// `out_channels` is the channel count frames are mapped to (mono is copied
    /// to every channel, more channels than wanted are mixed down to mono or cut
    /// to the first ones).
    pub fn open(
        source: Box<dyn MediaSource>,
        extension: Option<&str>,
        out_channels: u16,
    ) -> Result<Self, DecodeError> {
        // A demuxer bug triggered by a hostile file is an error, not a crash.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Self::open_inner(source, extension, out_channels)
        }))
        .unwrap_or_else(|_| {
            Err(DecodeError::Malformed(
                "the demuxer crashed on this file".into(),
            ))
        })
    }

    fn open_inner(
        source: Box<dyn MediaSource>,
        extension: Option<&str>,
        out_channels: u16,
    ) -> Result<Self, DecodeError> {
        if out_channels == 0 {
            return Err(DecodeError::UnsupportedChannels(0));
        }
        let stream = MediaSourceStream::new(source, Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = extension {
            hint.with_extension(ext);
        }
        let format_options = FormatOptions {
            enable_gapless: true,
            ..Default::default()
        };
        let probed = symphonia::default::get_probe()
            .format(&hint, stream, &format_options, &MetadataOptions::default())
            .map_err(|err| match err {
                SymphoniaError::Unsupported(what) if what.contains("no suitable format reader") => {
                    DecodeError::NotAudio(what.to_string())
                }
                SymphoniaError::Unsupported(what) => {
                    DecodeError::UnsupportedCodec(what.to_string())
                }
                SymphoniaError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                    DecodeError::Malformed("the file ends before its headers do".into())
                }
                SymphoniaError::IoError(io) => DecodeError::Io(io),
                other => DecodeError::Malformed(other.to_string()),
            })?;
        let format = probed.format;
        let track = format
            .tracks()
            .iter()
            .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
            .ok_or(DecodeError::NoAudioTrack)?;
        let params = &track.codec_params;
        let codec = symphonia::default::get_codecs()
            .get_codec(params.codec)
            .map(|c| c.short_name.to_string())
            .unwrap_or_else(|| format!("{}", params.codec));
        let sample_rate = params.sample_rate.unwrap_or(0);
        if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&sample_rate) {
            return Err(DecodeError::UnsupportedSampleRate(sample_rate));
        }
        let channels = params.channels.map(|c| c.count());
        if channels == Some(0) {
            return Err(DecodeError::UnsupportedChannels(0));
        }
        let decoder = symphonia::default::get_codecs()
            .make(params, &DecoderOptions::default())
            .map_err(|err| DecodeError::UnsupportedCodec(format!("{codec} ({err})")))?;
        let info = TrackInfo {
            sample_rate,
            channels: channels.and_then(|c| u16::try_from(c).ok()),
            frames: params.n_frames,
            codec,
        };
        Ok(Self {
            track_id: track.id,
            time_base: params.time_base,
            format,
            decoder,
            info,
            out_channels: usize::from(out_channels),
            convert: None,
            next_frame: 0,
            discard: 0,
            expected_ts: None,
            tail_checked: false,
            corrupt_packets: 0,
            failures_in_a_row: 0,
        })
    }

    /// The track's description.
    pub fn info(&self) -> &TrackInfo {
        &self.info
    }

    /// Channels of the frames this decoder appends.
    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// Index of the next frame [`Decoder::next_block`] will append.
    pub fn next_frame(&self) -> u64 {
        self.next_frame
    }

    /// Packets that failed to decode and were replaced by silence so far.
    pub fn corrupt_packets(&self) -> u64 {
        self.corrupt_packets
    }

    /// Decodes the next packet and appends its frames to `out` (interleaved,
    /// [`Decoder::out_channels`] per frame). `Ok(None)` at the end of the track.
    ///
    /// A packet that fails to decode is replaced by silence of its length and
    /// reported as a `concealed` block; only unrecoverable failures are errors.
    pub fn next_block(&mut self, out: &mut Vec<f32>) -> Result<Option<Block>, DecodeError> {
        loop {
            let packet = match self.format.next_packet() {
                Ok(packet) => packet,
                Err(SymphoniaError::IoError(err))
                    if err.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    return Ok(self.fill_shortfall(out));
                }
                Err(SymphoniaError::IoError(err)) => return Err(DecodeError::Io(err)),
                Err(SymphoniaError::ResetRequired) => {
                    self.decoder.reset();
                    continue;
                }
                Err(SymphoniaError::DecodeError(msg)) => {
                    // The demuxer lost sync on a damaged frame header; it resyncs on the next call.
                    self.corrupt_packets += 1;
                    tracing::debug!(%msg, "skipping undemuxable data");
                    continue;
                }
                Err(other) => return Err(DecodeError::Fatal(other.to_string())),
            };
            if packet.track_id() != self.track_id {
                continue;
            }
            let start = out.len();
            let first_frame = self.next_frame;
            // Demuxers resync silently past damaged data; a jump in timestamps shows what was lost.
            let mut concealed = false;
            if let Some(expected) = self.expected_ts
                && packet.ts() > expected
            {
                let gap = self.ts_to_frame(packet.ts() - expected).min(MAX_GAP_FRAMES);
                self.corrupt_packets += 1;
                concealed = true;
                tracing::debug!(frames = gap, "lost packets replaced by silence");
                out.resize(start + gap as usize * self.out_channels, 0.0);
            }
            self.expected_ts = Some(packet.ts() + packet.dur());
            match self.decoder.decode(&packet) {
                Ok(decoded) => {
                    let spec = *decoded.spec();
                    let needed = decoded.capacity() as u64;
                    let rebuild = match &self.convert {
                        Some((old_spec, buf)) => {
                            *old_spec != spec
                                || (buf.capacity() as u64) < needed * spec.channels.count() as u64
                        }
                        None => true,
                    };
                    if rebuild {
                        self.convert = Some((spec, SampleBuffer::new(needed, spec)));
                    }
                    let Some((_, buf)) = self.convert.as_mut() else {
                        continue;
                    };
                    buf.copy_interleaved_ref(decoded);
                    map_channels(buf.samples(), spec.channels.count(), self.out_channels, out);
                    self.failures_in_a_row = 0;
                }
                Err(SymphoniaError::ResetRequired) => {
                    self.decoder.reset();
                    continue;
                }
                Err(
                    err @ (SymphoniaError::DecodeError(_)
                    | SymphoniaError::IoError(_)
                    | SymphoniaError::Unsupported(_)),
                ) => {
                    // The packet is in memory, so an i/o error means its bits ran out, and
                    // garbage can look like an unsupported feature: treat both as corruption,
                    // unless nothing decodes at all.
                    self.failures_in_a_row += 1;
                    if self.failures_in_a_row > MAX_FAILURES_IN_A_ROW {
                        return Err(DecodeError::Fatal(format!(
                            "{MAX_FAILURES_IN_A_ROW} packets in a row failed, last: {err}"
                        )));
                    }
                    self.corrupt_packets += 1;
                    concealed = true;
                    let gap = packet.dur().min(MAX_GAP_FRAMES);
                    tracing::debug!(%err, frames = gap, "corrupt packet replaced by silence");
                    out.resize(out.len() + gap as usize * self.out_channels, 0.0);
                }
                Err(other) => return Err(DecodeError::Fatal(other.to_string())),
            }
            let frames = self.account(out, start);
            if frames == 0 {
                continue;
            }
            return Ok(Some(Block {
                first_frame,
                frames,
                concealed,
            }));
        }
    }

    /// At the end of the track: if fewer frames came out than the container
    /// declared, frames were lost without a trace in the timestamps (MP3
    /// resyncs that way); report it and pad the end so the length is right.
    fn fill_shortfall(&mut self, out: &mut Vec<f32>) -> Option<Block> {
        if self.tail_checked {
            return None;
        }
        self.tail_checked = true;
        let declared = self.info.frames?;
        let missing = declared.checked_sub(self.next_frame).filter(|&m| m > 0)?;
        let missing = missing.min(MAX_GAP_FRAMES);
        self.corrupt_packets += 1;
        tracing::debug!(frames = missing, "track shorter than declared; padding");
        let first_frame = self.next_frame;
        out.resize(out.len() + missing as usize * self.out_channels, 0.0);
        self.next_frame += missing;
        Some(Block {
            first_frame,
            frames: missing as usize,
            concealed: true,
        })
    }

    /// Drops pending seek-discard frames from what was just appended and
    /// advances the frame counter; returns the frames kept.
    fn account(&mut self, out: &mut Vec<f32>, start: usize) -> usize {
        let mut frames = (out.len() - start) / self.out_channels;
        if self.discard > 0 {
            let drop = (self.discard as usize).min(frames);
            out.drain(start..start + drop * self.out_channels);
            self.discard -= drop as u64;
            frames -= drop;
        }
        self.next_frame += frames as u64;
        frames
    }

    /// Positions the decoder so the next block starts exactly at `frame`.
    ///
    /// Seeks the demuxer to the nearest point at or before `frame`, then drops
    /// decoded frames up to it.
    pub fn seek(&mut self, frame: u64) -> Result<(), DecodeError> {
        let ts = self.frame_to_ts(frame);
        let seeked = self
            .format
            .seek(
                SeekMode::Accurate,
                SeekTo::TimeStamp {
                    ts,
                    track_id: self.track_id,
                },
            )
            .map_err(|err| DecodeError::Seek {
                frame,
                reason: err.to_string(),
            })?;
        self.decoder.reset();
        self.expected_ts = None;
        self.tail_checked = false;
        let actual = self.ts_to_frame(seeked.actual_ts);
        // An accurate seek lands at or before the target; the frames between are dropped.
        self.discard = frame.saturating_sub(actual);
        self.next_frame = actual.max(frame);
        Ok(())
    }

    fn frame_to_ts(&self, frame: u64) -> u64 {
        match self.time_base {
            Some(tb) if tb.numer > 0 && tb.denom > 0 => {
                let ts = u128::from(frame) * u128::from(tb.denom)
                    / (u128::from(tb.numer) * u128::from(self.info.sample_rate));
                u64::try_from(ts).unwrap_or(u64::MAX)
            }
            _ => frame,
        }
    }

    fn ts_to_frame(&self, ts: u64) -> u64 {
        match self.time_base {
            Some(tb) if tb.numer > 0 && tb.denom > 0 => {
                let frame =
                    u128::from(ts) * u128::from(tb.numer) * u128::from(self.info.sample_rate)
                        / u128::from(tb.denom);
                u64::try_from(frame).unwrap_or(u64::MAX)
            }
            _ => ts,
        }
    }
}

/// Appends `input` (interleaved, `in_ch` per frame) to `out` with `out_ch`
/// channels per frame.
///
/// Mono is copied to every output channel; to mono, all channels are averaged;
/// otherwise channel `c` comes from input channel `c`, and outputs beyond the
/// input's channels repeat its channels in turn.
pub fn map_channels(input: &[f32], in_ch: usize, out_ch: usize, out: &mut Vec<f32>) {
    if in_ch == 0 || out_ch == 0 {
        return;
    }
    let frames = input.len() / in_ch;
    out.reserve(frames * out_ch);
    if in_ch == out_ch {
        out.extend_from_slice(&input[..frames * in_ch]);
        return;
    }
    for frame in input.chunks_exact(in_ch) {
        if out_ch == 1 {
            out.push(frame.iter().sum::<f32>() / in_ch as f32);
        } else {
            out.extend((0..out_ch).map(|c| frame[c % in_ch]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_is_copied_to_both_channels() {
        let mut out = Vec::new();
        map_channels(&[0.5, -0.25], 1, 2, &mut out);
        assert_eq!(out, vec![0.5, 0.5, -0.25, -0.25]);
    }

    #[test]
    fn stereo_to_mono_averages() {
        let mut out = Vec::new();
        map_channels(&[1.0, 0.0, 0.5, 0.5], 2, 1, &mut out);
        assert_eq!(out, vec![0.5, 0.5]);
    }

    #[test]
    fn surround_to_stereo_keeps_front_pair() {
        let mut out = Vec::new();
        map_channels(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 6, 2, &mut out);
        assert_eq!(out, vec![1.0, 2.0]);
    }

    #[test]
    fn garbage_is_not_audio() {
        let bytes = b"this is certainly not an audio file, just some text".repeat(100);
        let err = Decoder::open(Box::new(std::io::Cursor::new(bytes)), Some("mp3"), 2)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("not an audio file")));
    }
}
