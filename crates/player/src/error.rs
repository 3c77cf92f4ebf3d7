//! The player's errors, one enum per operation family.
//!
//! [`DecodeError`] covers opening and decoding a track, [`OutputError`]
//! covers opening and running an output, and [`PlayError`] covers the
//! commands a running [`Player`](crate::Player) accepts. [`Error`] wraps them
//! all for callers that do not care which family failed.

use std::path::PathBuf;

/// Opening, probing or decoding a track failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Open {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The bytes are not in any audio container symphonia recognizes.
    #[error("not an audio file (no known container format): {0}")]
    NotAudio(String),
    /// The container was recognized but its headers are damaged.
    #[error("malformed audio file: {0}")]
    Malformed(String),
    /// The container holds no audio track.
    #[error("no audio track in the container")]
    NoAudioTrack,
    /// The track uses a codec this build cannot decode.
    #[error("unsupported codec: {0}")]
    UnsupportedCodec(String),
    /// The track's sample rate is unknown or outside 8–192 kHz.
    #[error("unsupported sample rate: {0} Hz (supported: 8000 to 192000)")]
    UnsupportedSampleRate(u32),
    /// The track's channel layout is unknown or empty.
    #[error("unsupported channel layout: {0} channels")]
    UnsupportedChannels(usize),
    /// Reading the underlying bytes failed mid-stream.
    #[error("i/o error while decoding: {0}")]
    Io(#[from] std::io::Error),
    /// Seeking to a frame failed.
    #[error("cannot seek to frame {frame}: {reason}")]
    Seek {
        /// The frame that was asked for.
        frame: u64,
        /// What the demuxer said.
        reason: String,
    },
    /// The decoder failed in a way that cannot be skipped.
    #[error("decoder failure: {0}")]
    Fatal(String),
}

/// Opening or running an output failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The named audio device does not exist or cannot be opened.
    #[error("cannot open audio device {device}: {reason} (choose --output with one of: {choices})")]
    Device {
        /// The device that was asked for (`default` for the system default).
        device: String,
        /// What the audio stack said.
        reason: String,
        /// The `--output` values that would work on this machine.
        choices: String,
    },
    /// The `--output` value is not one the player understands.
    #[error("unknown output {given:?} (choose one of: {choices})")]
    UnknownChoice {
        /// The value given.
        given: String,
        /// The accepted forms.
        choices: String,
    },
    /// The output format is unusable (zero channels, rate outside 8–192 kHz, zero period).
    #[error("invalid output format: {0}")]
    Format(String),
    /// The WAV file could not be created or written.
    #[error("cannot write wav file {path}: {reason}")]
    Wav {
        /// The file being written.
        path: PathBuf,
        /// What hound or the operating system said.
        reason: String,
    },
    /// The output's thread could not be started, or ended unexpectedly.
    #[error("output thread failed: {0}")]
    Thread(std::io::Error),
}

/// A command to a running player failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlayError {
    /// The output has stopped (its thread ended or the device went away).
    #[error("the output has stopped")]
    OutputGone,
    /// The decoding thread could not be started.
    #[error("cannot start the decoding thread: {0}")]
    Thread(std::io::Error),
    /// The track was opened for another channel count than the output's.
    #[error("track decodes to {track} channels but the output has {output}")]
    ChannelMismatch {
        /// Channels the decoder maps to.
        track: usize,
        /// Channels of the output.
        output: u16,
    },
    /// A volume outside 0.0–4.0 or not a number.
    #[error("invalid volume {0} (expected 0.0 to 4.0)")]
    InvalidVolume(f32),
    /// The resampler could not be built for this track's rate.
    #[error("cannot build the resampler: {0}")]
    Resampler(String),
}

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`DecodeError`].
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// See [`OutputError`].
    #[error(transparent)]
    Output(#[from] OutputError),
    /// See [`PlayError`].
    #[error(transparent)]
    Play(#[from] PlayError),
}
