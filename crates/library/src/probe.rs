//! Recognizing audio: probe a file with symphonia and read its tags and audio
//! parameters into a [`TrackMeta`].
//!
//! A file counts as audio only when symphonia finds a container in it, builds
//! a decoder for its default track and decodes a packet from its head — the
//! extension is only a hint. When the container declares a duration, a packet
//! near the end is decoded too, which catches truncated files and headers that
//! promise more than the file holds. Only the head (and that one spot near the
//! end) is read; hashing reads the whole file separately.
//!
//! What it isn't: a decoder for playback (that is `firefly-player`).

use crate::cover::{Cover, CoverPick, MAX_COVER_BYTES};
use crate::id::CoverId;
use crate::manifest::{MAX_TEXT_LEN, TrackMeta};
use std::fs::File;
use std::path::Path;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo};
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::{Limit, MetadataOptions, MetadataRevision, StandardTagKey};
use symphonia::core::probe::Hint;

/// Extensions of the formats Firefly plays. A file with one of these that
/// fails the probe is reported as skipped; other files are left out silently.
pub const AUDIO_EXTENSIONS: [&str; 8] = ["mp3", "flac", "ogg", "oga", "wav", "m4a", "mp4", "aac"];

/// How many packets to try before deciding a file has nothing decodable.
const PACKET_ATTEMPTS: usize = 16;

/// Why a file was not taken as a track.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The file could not be opened or read.
    #[error("cannot read the file: {0}")]
    Io(String),
    /// No container format symphonia knows was found.
    #[error("not a recognized audio format: {0}")]
    Unrecognized(String),
    /// A container was found but it has no audio track with a known codec.
    #[error("no playable audio track")]
    NoTrack,
    /// The codec is not one Firefly can decode.
    #[error("unsupported codec: {0}")]
    UnsupportedCodec(String),
    /// No packet at the head of the file decodes.
    #[error("audio data does not decode: {0}")]
    Undecodable(String),
    /// The data ends before the duration the header declares.
    #[error("truncated: the header declares {declared_ms} ms but the audio data ends early")]
    Truncated {
        /// Duration the header declares, in milliseconds.
        declared_ms: u64,
    },
    /// The decoder panicked on this file (a bug in the decoder, survived).
    #[error("the decoder crashed on this file")]
    DecoderPanic,
}

/// Whether `path` has one of the [`AUDIO_EXTENSIONS`] (case-insensitive).
pub fn has_audio_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| AUDIO_EXTENSIONS.iter().any(|a| a.eq_ignore_ascii_case(e)))
}

/// Probes the file at `path` and returns what it learned, or why the file is
/// not a playable track. Never panics: a panicking decoder is caught and
/// reported as [`ProbeError::DecoderPanic`].
pub fn probe_file(path: &Path) -> Result<TrackMeta, ProbeError> {
    probe_with_cover(path).map(|(meta, _)| meta)
}

/// Like [`probe_file`], with the embedded cover picture when the tags hold
/// one Firefly keeps (see `cover`).
pub(crate) fn probe_with_cover(path: &Path) -> Result<(TrackMeta, Option<Cover>), ProbeError> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let fallback = title_from_path(path);
    probe_guarded(path, extension, &fallback)
}

/// Like [`probe_file`] for a file whose name says nothing (a staging file):
/// `extension` is the format hint and `fallback_title` the title to use when
/// the tags have none.
pub(crate) fn probe_file_as(
    path: &Path,
    extension: &str,
    fallback_title: &str,
) -> Result<(TrackMeta, Option<Cover>), ProbeError> {
    let extension = Some(extension.to_ascii_lowercase()).filter(|e| !e.is_empty());
    probe_guarded(path, extension, fallback_title)
}

fn probe_guarded(
    path: &Path,
    extension: Option<String>,
    fallback_title: &str,
) -> Result<(TrackMeta, Option<Cover>), ProbeError> {
    let file = File::open(path).map_err(|e| ProbeError::Io(e.to_string()))?;
    // symphonia is third-party code fed untrusted bytes: a panic in it must
    // cost this one file, not the scan.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        probe_open(file, extension, fallback_title)
    }))
    .unwrap_or(Err(ProbeError::DecoderPanic))
}

fn probe_open(
    file: File,
    extension: Option<String>,
    fallback_title: &str,
) -> Result<(TrackMeta, Option<Cover>), ProbeError> {
    let mut hint = Hint::new();
    if let Some(ext) = &extension {
        hint.with_extension(ext);
    }
    let mss = MediaSourceStream::new(Box::new(file), MediaSourceStreamOptions::default());
    let mut probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions {
                // Larger pictures are not kept: readers that honour the
                // limit need not even load them.
                limit_visual_bytes: Limit::Maximum(MAX_COVER_BYTES),
                ..MetadataOptions::default()
            },
        )
        .map_err(|e| match e {
            // The probe ran off the end looking for a container.
            SymphoniaError::IoError(_) => ProbeError::Unrecognized("no known container".to_owned()),
            e => ProbeError::Unrecognized(describe(&e)),
        })?;

    let mut tags = Tags::default();
    let mut cover = CoverPick::default();
    if let Some(rev) = probed.metadata.get().as_ref().and_then(|m| m.current()) {
        tags.absorb(rev);
        cover.absorb(rev);
    }
    if let Some(rev) = probed.format.metadata().current() {
        tags.absorb(rev);
        cover.absorb(rev);
    }

    let format = &mut probed.format;
    let track = format
        .default_track()
        .filter(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or(ProbeError::NoTrack)?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let descriptor = symphonia::default::get_codecs()
        .get_codec(params.codec)
        .ok_or_else(|| ProbeError::UnsupportedCodec(format!("{}", params.codec)))?;
    let codec = codec_family(descriptor.short_name);
    let sample_rate = params.sample_rate.unwrap_or(0);
    let channels = params
        .channels
        .map(|c| u16::try_from(c.count()).unwrap_or(u16::MAX))
        .unwrap_or(0);
    let duration_ms = match (params.n_frames, params.time_base) {
        (Some(n), Some(tb)) => {
            let t = tb.calc_time(n);
            Some(t.seconds.saturating_mul(1000) + (t.frac * 1000.0).round() as u64)
        }
        (Some(n), None) if sample_rate > 0 => Some(n.saturating_mul(1000) / u64::from(sample_rate)),
        _ => None,
    };

    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| ProbeError::UnsupportedCodec(describe(&e)))?;
    let (decoded_rate, decoded_channels) = decode_one(format.as_mut(), decoder.as_mut(), track_id)
        .map_err(|e| ProbeError::Undecodable(describe(&e)))?;
    // Some containers (AAC in MP4) only tell the channel count once decoded.
    let sample_rate = if sample_rate == 0 {
        decoded_rate
    } else {
        sample_rate
    };
    let channels = if channels == 0 {
        decoded_channels
    } else {
        channels
    };

    // A packet near the end must exist when the header promises a duration.
    if let (Some(n), Some(ms)) = (params.n_frames, duration_ms)
        && n > 0
    {
        let ts = params.start_ts + n / 10 * 9;
        let seeked = format.seek(SeekMode::Coarse, SeekTo::TimeStamp { ts, track_id });
        match seeked {
            Ok(_) => {
                decoder.reset();
                if decode_one(format.as_mut(), decoder.as_mut(), track_id).is_err() {
                    return Err(ProbeError::Truncated { declared_ms: ms });
                }
            }
            // Some readers cannot seek; that says nothing about the data.
            Err(SymphoniaError::Unsupported(_) | SymphoniaError::SeekError(_)) => {}
            Err(_) => return Err(ProbeError::Truncated { declared_ms: ms }),
        }
    }

    let title = tags
        .title
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| {
            if fallback_title.trim().is_empty() {
                "Untitled".to_owned()
            } else {
                fallback_title.to_owned()
            }
        });
    // Keep the file's own extension only when it fits what is inside.
    let extension = match extension {
        Some(ext) if fits_codec(&ext, &codec) => ext,
        _ => default_extension(&codec).to_owned(),
    };
    let cover = cover.into_cover();
    let meta = TrackMeta {
        title: bounded(title),
        artist: tags.artist.map(bounded),
        album: tags.album.map(bounded),
        track: tags.track,
        duration_ms,
        codec,
        sample_rate,
        channels,
        extension,
        cover: cover.as_ref().map(|c| CoverId(c.hash())),
    };
    Ok((meta, cover))
}

/// Reads packets of `track_id` until one decodes; gives up after a few.
/// Returns the decoded sample rate and channel count.
fn decode_one(
    format: &mut dyn FormatReader,
    decoder: &mut dyn symphonia::core::codecs::Decoder,
    track_id: u32,
) -> Result<(u32, u16), SymphoniaError> {
    let mut last = SymphoniaError::DecodeError("no audio packet");
    for _ in 0..PACKET_ATTEMPTS {
        let packet = format.next_packet()?;
        if packet.track_id() != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                let spec = buf.spec();
                let channels = u16::try_from(spec.channels.count()).unwrap_or(u16::MAX);
                return Ok((spec.rate, channels));
            }
            Err(e @ SymphoniaError::DecodeError(_)) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

fn describe(e: &SymphoniaError) -> String {
    let text = e.to_string();
    text.chars().take(200).collect()
}

/// The codec family name Firefly shows: `pcm_s16le` and friends are `pcm`.
fn codec_family(short_name: &str) -> String {
    if short_name.starts_with("pcm") {
        "pcm".to_owned()
    } else {
        short_name.to_owned()
    }
}

fn fits_codec(ext: &str, codec: &str) -> bool {
    matches!(
        (codec, ext),
        ("mp3", "mp3")
            | ("flac", "flac")
            | ("vorbis", "ogg" | "oga")
            | ("pcm", "wav")
            | ("aac", "m4a" | "mp4" | "aac")
    )
}

fn default_extension(codec: &str) -> &'static str {
    match codec {
        "mp3" => "mp3",
        "flac" => "flac",
        "vorbis" => "ogg",
        "pcm" => "wav",
        "aac" => "m4a",
        _ => "audio",
    }
}

/// The file name without its extension, for tracks whose tags have no title.
fn title_from_path(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "Untitled".to_owned())
}

/// Cuts a tag value to [`MAX_TEXT_LEN`] bytes at a character boundary.
fn bounded(text: String) -> String {
    let mut text = crate::names::display_text(&text);
    if text.len() > MAX_TEXT_LEN {
        let mut cut = MAX_TEXT_LEN;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// The tags Firefly keeps; later revisions (container tags) fill what earlier
/// ones (ID3 found by the probe) left empty.
#[derive(Default)]
struct Tags {
    title: Option<String>,
    artist: Option<String>,
    album: Option<String>,
    track: Option<u32>,
}

impl Tags {
    fn absorb(&mut self, rev: &MetadataRevision) {
        for tag in rev.tags() {
            let Some(key) = tag.std_key else { continue };
            let value = tag.value.to_string();
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            match key {
                StandardTagKey::TrackTitle => set_once(&mut self.title, value),
                StandardTagKey::Artist => set_once(&mut self.artist, value),
                StandardTagKey::Album => set_once(&mut self.album, value),
                StandardTagKey::TrackNumber if self.track.is_none() => {
                    self.track = parse_track_number(value);
                }
                _ => {}
            }
        }
    }
}

fn set_once(slot: &mut Option<String>, value: &str) {
    if slot.is_none() {
        *slot = Some(value.to_owned());
    }
}

/// `"3"`, `"03"` and `"3/12"` are track 3.
fn parse_track_number(value: &str) -> Option<u32> {
    let digits: String = value
        .trim()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn track_numbers_parse_leading_digits() {
        assert_eq!(parse_track_number("3"), Some(3));
        assert_eq!(parse_track_number("03/12"), Some(3));
        assert_eq!(parse_track_number("x"), None);
        assert_eq!(parse_track_number("99999999999999"), None);
    }

    #[test]
    fn bounded_cuts_at_a_char_boundary() {
        let long = "é".repeat(MAX_TEXT_LEN);
        let cut = bounded(long);
        assert!(cut.len() <= MAX_TEXT_LEN);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn audio_extension_is_case_insensitive() {
        assert!(has_audio_extension(Path::new("a/b.MP3")));
        assert!(!has_audio_extension(Path::new("a/b.txt")));
        assert!(!has_audio_extension(Path::new("a/mp3")));
    }
}
