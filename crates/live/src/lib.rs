//! Firefly's live sources: audio that is not a file (a PCM pipe written by
//! librespot, shairport-sync or MPD, a program's standard output, an
//! internet radio stream) cut into blocks stamped on the swarm timeline, so
//! that every member plays each block at the same instant.
//!
//! What it is: a sans-IO core and its I/O edges.
//!
//! - [`StreamClock`]: block `k` of a stream that started at swarm instant
//!   `S0` covers frames `[k·N, (k+1)·N)` and sounds at `S0 + k·N/rate + buffer`.
//! - [`Cutter`] (the origin): audio in, whenever it comes; blocks out when
//!   their capture window has passed. A silent source gives silent blocks, a
//!   source that comes back is in step at once, a burst is held (bounded).
//! - [`Schedule`] (a member): blocks in, in any order; frames out by
//!   position. A late block is dropped, a missing one is silence with a
//!   short fade, and nothing shifts what follows. Memory is bounded.
//! - [`BlockEncoder`] / [`BlockDecoder`]: a block as one FLAC frame
//!   (lossless, `flacenc`; decoded by symphonia) or as raw 16-bit PCM.
//! - [`SourceSpec`] names a source: `pipe:PATH?format=s16le&rate=48000&channels=2`,
//!   `url:http://…`, `cmd:PROGRAM ARGS`; [`SourceSpec::open`] starts the
//!   reading thread ([`pipe`], [`url`], [`cmd`]) that hands out
//!   [`SourceEvent`]s at the stream's format.
//!
//! What it is not: it does no networking and plays nothing. The node moves
//! the encoded blocks (`/firefly/live/1`) and the player sounds the frames.

mod codec;
mod cutter;
mod format;
mod schedule;
mod source;
mod spec;
mod timing;

pub mod cmd;
pub mod pipe;
pub mod url;

pub use codec::{BlockDecoder, BlockEncoder, Codec, CodecError, MAX_BLOCK_BYTES};
pub use cutter::{Block, Cutter};
pub use format::{FormatError, MAX_CHANNELS, PcmDecoder, PcmFormat, SampleEncoding};
pub use schedule::{Inserted, Schedule, ScheduleStats};
pub use source::{RunningSource, SourceEvent};
pub use spec::{MAX_SPEC_LEN, SourceSpec, SpecError};
pub use timing::{StreamClock, TimingError};

pub use firefly_clock::SwarmMicros;

/// Block length: 20 ms of audio (960 frames at 48 kHz). Short enough that a
/// lost block is a short gap, long enough that FLAC compresses it well.
pub const BLOCK_MILLIS: u32 = 20;

/// Default buffer between capture and sound, µs (the goal: at most
/// 500 ms; the peer's default is one second).
pub const DEFAULT_BUFFER_MICROS: i64 = 400_000;

/// Frames per block at `rate` ([`BLOCK_MILLIS`]).
pub fn block_frames(rate: u32) -> u32 {
    (rate / 1000 * BLOCK_MILLIS).max(16)
}
