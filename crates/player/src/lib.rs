//! Firefly's player: decode, resample and emit audio so that a chosen frame
//! sounds exactly at a chosen swarm instant, drift-corrected.
//!
//! What it is: a [`Decoder`] (symphonia: MP3, FLAC, Ogg Vorbis, WAV, AAC/M4A
//! to `f32`, channels mapped), a decoding thread per track that may wait on
//! a [`StreamSource`] still downloading, an [`Engine`] that schedules,
//! resamples (a windowed-sinc interpolator, at the playback rate the node's slew controller asks
//! for), fades and reports [`Flash`]es, and three [`Output`]s that drive it:
//! the sound card through cpal ([`DeviceOutput`], timed by the device's own
//! playback instants and measured rate), a clocked
//! [`VirtualOutput`] and a [`WavOutput`] ([`OutputChoice`] parses
//! `--output`). [`Player`] is the handle the node holds: `play(track,
//! start_frame, at_swarm_instant)`, pause, resume, seek, stop, volume,
//! [`Player::readiness`] for answering a prepare, and [`PlayerEvent`]s out.
//!
//! What it is not: it does not estimate clocks. The node passes its swarm
//! clock in as a [`Timeline`] (local "now", local → swarm, playback rate);
//! [`LinearTimeline`] is a ready-made one for tests and headless use.
//!
//! ```no_run
//! # fn main() -> Result<(), firefly_player::Error> {
//! use firefly_player::*;
//! use std::sync::Arc;
//! let timeline = Arc::new(LinearTimeline::new(0.0, 0));
//! let output = VirtualOutput::new(OutputFormat::new(48_000, 2, std::time::Duration::from_millis(10)));
//! let mut player = Player::start(Box::new(output), timeline.clone(), PlayerConfig::default())?;
//! let track = player.open_file(std::path::Path::new("song.flac"))?;
//! let start = timeline.to_swarm(timeline.now()) + 500_000; // half a second from now
//! player.play(track, 0, start)?;
//! # Ok(()) }
//! ```

mod channel_map;
mod decode;
mod engine;
mod error;
mod feed;
mod live;
mod output;
mod player;
mod resample;
mod sinc_kernel;
mod stream;
mod timeline;

pub use channel_map::ChannelMap;
pub use decode::{Block, Decoder, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, TrackInfo, map_channels};
pub use engine::{Engine, Flash, OutputFormat, PlayerConfig, PlayerEvent};
pub use error::{DecodeError, Error, OutputError, PlayError};
pub use firefly_clock::{LocalMicros, SwarmMicros};
/// The byte sources a [`Decoder`] reads (`Read + Seek + Send + Sync`, plus seekability and length).
pub use symphonia::core::io::MediaSource;

/// Locks `mutex`, carrying on past poisoning: every mutex in this crate guards
/// plain data (samples, bytes, counters) that a panicking holder cannot leave
/// half-updated in a way that matters more than stopping the audio would.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
pub use live::LiveFrames;
pub use output::{
    DeviceModel, DeviceOutput, Output, OutputChoice, OutputReport, OutputTiming, Pacing, Recording,
    RunningOutput, VirtualOutput, WavOutput, WavSamples, device_names,
};
pub use player::{Player, Readiness};
pub use resample::MAX_RATE_DEVIATION;
pub use stream::{MAX_STREAM_BYTES, StreamError, StreamSource, StreamWriter, stream_source};
pub use timeline::{LinearTimeline, Timeline};
