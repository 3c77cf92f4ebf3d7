//! The decoding thread and the bounded buffer between it and the renderer.
//!
//! [`Feed::spawn`] moves a [`Decoder`] onto its own thread, which decodes
//! ahead into a ring of at most [`FEED_SECONDS`] of audio and may block on its
//! byte source (a stream still downloading) without ever stalling the audio
//! thread. The renderer asks for frames by absolute index with
//! [`Feed::fetch`], which never blocks for long: it answers `Pending` when the
//! frames are not decoded yet (an underrun, or a seek in progress) and asks
//! the thread to seek when the wanted frame is behind or far ahead of the ring.

use crate::decode::Decoder;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Seconds of decoded audio kept ahead of the renderer.
pub(crate) const FEED_SECONDS: u64 = 4;

/// Once the ring is full, the decoding thread rests until the audio ahead
/// falls this many milliseconds below [`FEED_SECONDS`], then decodes that
/// much at once: two wake-ups a second instead of one per output period
/// (each a futex wake, a context switch and a packet: 17 % of a playing
/// node's CPU samples went to that thread).
pub(crate) const REFILL_MILLIS: u64 = 500;

/// Seconds of already fetched audio kept behind it, so a resume after a pause
/// (which restarts slightly before the last fetched frame) needs no seek.
pub(crate) const HISTORY_SECONDS: u64 = 1;

/// Frames a start or a prepared seek positions the decoder before the frame
/// asked for: the renderer's first fetch after a (re)start begins a frame or
/// two early (the resampler's lead, [`crate::resample::LEAD`]), and a fetch
/// from before the ring's front would throw the decoded frames away and
/// seek again, leaving nothing ready at the start's instant.
pub(crate) const START_MARGIN_FRAMES: u64 = 16;

/// What [`Feed::fetch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fetch {
    /// All frames were appended.
    Ready,
    /// The frames are not decoded yet; nothing was appended.
    Pending,
    /// The track ends inside the request; this many frames were appended.
    Ended(usize),
}

#[derive(Debug, Default)]
struct State {
    ring: VecDeque<f32>,
    /// Index of the first frame in `ring`.
    front: u64,
    /// Index just past the last fetched frame; frames before it are history.
    read: u64,
    /// The decoder reached the end (or failed) at `front + ring frames`.
    ended: bool,
    seek_to: Option<u64>,
    stop: bool,
    /// Corrupt packets concealed so far, and how many the renderer has reported.
    corrupt: u64,
    corrupt_reported: u64,
    failure: Option<String>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    channels: usize,
    capacity_frames: usize,
    /// The decoding thread is woken when the audio ahead falls below this.
    refill_below_frames: u64,
    history_frames: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::lock(&self.state)
    }
}

/// Where a track's frames come from: a decoding thread, or a live stream
/// (never pending: missing frames are silence).
#[derive(Debug)]
pub(crate) enum Feed {
    Decode(DecodeFeed),
    Live(crate::live::LiveFrames),
}

impl Feed {
    /// Appends frames `from .. from + n` (interleaved) to `out` if they are there.
    pub(crate) fn fetch(&self, from: u64, n: usize, out: &mut Vec<f32>) -> Fetch {
        match self {
            Self::Decode(feed) => feed.fetch(from, n, out),
            Self::Live(live) => live.fetch(from, n, out),
        }
    }

    /// Readies the feed for a fetch from `frame` (a seek coming).
    pub(crate) fn prepare(&self, frame: u64) {
        if let Self::Decode(feed) = self {
            feed.prepare(frame);
        }
    }

    /// Frames ready ahead, and whether the end is among them.
    pub(crate) fn buffered(&self) -> (usize, bool) {
        match self {
            Self::Decode(feed) => feed.buffered(),
            Self::Live(live) => live.buffered(),
        }
    }

    /// Corrupt packets since the last call, and a failure (a live stream's end) once.
    pub(crate) fn take_problems(&self) -> (u64, Option<String>) {
        match self {
            Self::Decode(feed) => feed.take_problems(),
            Self::Live(live) => (0, live.take_end()),
        }
    }
}

/// The renderer's handle on a decoding thread.
#[derive(Debug)]
pub(crate) struct DecodeFeed {
    shared: Arc<Shared>,
    _thread: JoinHandle<()>,
}

impl DecodeFeed {
    /// Starts decoding `decoder` from `first_frame` on a new thread.
    pub(crate) fn spawn(mut decoder: Decoder, first_frame: u64) -> std::io::Result<Self> {
        let rate = u64::from(decoder.info().sample_rate);
        let first_frame = first_frame.saturating_sub(START_MARGIN_FRAMES);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                front: first_frame,
                read: first_frame,
                seek_to: (first_frame > 0).then_some(first_frame),
                ..State::default()
            }),
            changed: Condvar::new(),
            channels: decoder.out_channels(),
            capacity_frames: (rate * FEED_SECONDS) as usize,
            refill_below_frames: rate * (FEED_SECONDS * 1000 - REFILL_MILLIS) / 1000,
            history_frames: rate * HISTORY_SECONDS,
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("firefly-decode".into())
            .spawn(move || decode_loop(&mut decoder, &thread_shared))?;
        Ok(Self {
            shared,
            _thread: thread,
        })
    }

    /// Appends frames `from .. from + n` (interleaved) to `out` if they are decoded.
    pub(crate) fn fetch(&self, from: u64, n: usize, out: &mut Vec<f32>) -> Fetch {
        let ch = self.shared.channels;
        let mut state = self.shared.lock();
        if state.seek_to.is_some() {
            return Fetch::Pending;
        }
        if self.needs_seek(&state, from) {
            self.request_seek(state, from);
            return Fetch::Pending;
        }
        let end = state.front + (state.ring.len() / ch) as u64;
        let result = if from + n as u64 <= end {
            let start = (from - state.front) as usize * ch;
            out.extend(state.ring.range(start..start + n * ch));
            state.read = from + n as u64;
            Fetch::Ready
        } else if state.ended {
            let got = end.saturating_sub(from);
            let start = (from.min(end) - state.front) as usize * ch;
            out.extend(state.ring.range(start..));
            state.read = end;
            Fetch::Ended(got as usize)
        } else {
            // Not decoded yet (the stream is late, or the decoder is catching up).
            state.read = state.read.max(from.min(end));
            Fetch::Pending
        };
        // Keep only a little history behind the read point.
        let keep_from = state.read.saturating_sub(self.shared.history_frames);
        if keep_from > state.front {
            let drop = (keep_from - state.front).min((state.ring.len() / ch) as u64);
            state.ring.drain(..drop as usize * ch);
            state.front += drop;
        }
        // Wake the decoding thread only when it has something to do.
        let ahead = end.saturating_sub(state.read);
        let wake = !state.ended && ahead < self.shared.refill_below_frames;
        drop(state);
        if wake {
            self.shared.changed.notify_all();
        }
        result
    }

    /// Starts positioning the decoder for a fetch from `frame` that is coming
    /// (a scheduled seek or resume), so the frames are ready in time.
    pub(crate) fn prepare(&self, frame: u64) {
        let frame = frame.saturating_sub(START_MARGIN_FRAMES);
        let state = self.shared.lock();
        if state.seek_to.is_none() && self.needs_seek(&state, frame) {
            self.request_seek(state, frame);
        }
    }

    /// Whether `frame` is behind the ring or too far ahead to decode up to.
    fn needs_seek(&self, state: &State, frame: u64) -> bool {
        let end = state.front + (state.ring.len() / self.shared.channels) as u64;
        frame < state.front || frame > end + self.shared.capacity_frames as u64 / 2
    }

    fn request_seek(&self, mut state: MutexGuard<'_, State>, frame: u64) {
        state.seek_to = Some(frame);
        state.ring.clear();
        state.front = frame;
        state.read = frame;
        state.ended = false;
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Frames decoded ahead and not yet fetched, and whether the track's end is among them.
    pub(crate) fn buffered(&self) -> (usize, bool) {
        self.probe().buffered()
    }

    /// A handle that reports how far decoding has got, for the player.
    pub(crate) fn probe(&self) -> FeedProbe {
        FeedProbe(Arc::clone(&self.shared))
    }

    /// Corrupt packets concealed since the last call, and a failure message if decoding stopped.
    pub(crate) fn take_problems(&self) -> (u64, Option<String>) {
        let mut state = self.shared.lock();
        let new = state.corrupt - state.corrupt_reported;
        state.corrupt_reported = state.corrupt;
        (new, state.failure.take())
    }
}

/// A read-only view of a feed's progress, kept by the [`Player`](crate::Player).
#[derive(Debug, Clone)]
pub(crate) struct FeedProbe(Arc<Shared>);

impl FeedProbe {
    /// Frames decoded ahead of the read point, and whether the track's end is among them.
    pub(crate) fn buffered(&self) -> (usize, bool) {
        let state = self.0.lock();
        if state.seek_to.is_some() {
            return (0, false);
        }
        let end = state.front + (state.ring.len() / self.0.channels) as u64;
        (end.saturating_sub(state.read) as usize, state.ended)
    }
}

impl Drop for DecodeFeed {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
        // Not joined: the thread may be blocked reading a stream; it ends on its next wake.
    }
}

fn decode_loop(decoder: &mut Decoder, shared: &Shared) {
    let ch = shared.channels;
    let mut scratch = Vec::new();
    // Filling up to capacity (else resting until the audio ahead runs low).
    let mut filling = true;
    loop {
        let seek = {
            let mut state = shared.lock();
            loop {
                if state.stop {
                    return;
                }
                if state.seek_to.is_some() {
                    filling = true;
                    break;
                }
                let end = state.front + (state.ring.len() / ch) as u64;
                let ahead = end.saturating_sub(state.read);
                if ahead >= shared.capacity_frames as u64 {
                    filling = false;
                } else if ahead < shared.refill_below_frames {
                    filling = true;
                }
                if filling && !state.ended {
                    break;
                }
                state = shared
                    .changed
                    .wait_timeout(state, Duration::from_millis(250))
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|poisoned| poisoned.into_inner().0);
            }
            state.seek_to
        };
        if let Some(frame) = seek {
            let result = decoder.seek(frame);
            let mut state = shared.lock();
            if state.seek_to == Some(frame) {
                state.seek_to = None;
                state.ring.clear();
                state.front = frame;
                state.read = frame;
                state.ended = false;
                if let Err(err) = result {
                    tracing::warn!(%err, "seek failed");
                    state.failure = Some(err.to_string());
                    state.ended = true;
                }
            }
            continue;
        }
        scratch.clear();
        // A decoder bug triggered by a hostile file must not take the node down:
        // it ends this track like any other decoding failure.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decoder.next_block(&mut scratch)
        }))
        .unwrap_or_else(|_| {
            Err(crate::DecodeError::Fatal(
                "the decoder crashed on this file".into(),
            ))
        });
        let mut state = shared.lock();
        if state.seek_to.is_some() {
            // A seek arrived while decoding: this block belongs to the old position.
            continue;
        }
        match result {
            Ok(Some(_)) => state.ring.extend(scratch.iter().copied()),
            Ok(None) => state.ended = true,
            Err(err) => {
                tracing::warn!(%err, "decoding stopped");
                state.failure = Some(err.to_string());
                state.ended = true;
            }
        }
        state.corrupt = state.corrupt.max(decoder.corrupt_packets());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Instant;

    /// A feed on a 10 s mono WAV at 8 kHz whose sample `i` is `i` (exact in f32).
    fn counting_feed(dir: &std::path::Path) -> DecodeFeed {
        let path = dir.join("count.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..80_000 {
            w.write_sample(i as f32).unwrap();
        }
        w.finalize().unwrap();
        DecodeFeed::spawn(Decoder::open_file(&path, 1).unwrap(), 0).unwrap()
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn the_decoder_rests_when_full_and_refills_once_the_audio_ahead_runs_low() {
        let dir = tempfile::tempdir().unwrap();
        let feed = counting_feed(dir.path());
        let capacity = 8_000 * FEED_SECONDS as usize;
        let low = 8_000 * (FEED_SECONDS * 1000 - REFILL_MILLIS) as usize / 1000;
        wait_until("the ring fills", || feed.buffered().0 >= capacity);
        // Reading less than the refill margin leaves the decoder resting.
        let mut out = Vec::new();
        let mut read = 0u64;
        while capacity - (read as usize) > low + 400 {
            assert_eq!(feed.fetch(read, 400, &mut out), Fetch::Ready);
            read += 400;
        }
        std::thread::sleep(Duration::from_millis(100));
        let resting = feed.buffered().0;
        assert!(
            resting < capacity && resting >= low,
            "{resting} frames ahead: the decoder did not rest"
        );
        // One more read crosses the mark: it wakes, and fills up again.
        assert_eq!(feed.fetch(read, 800, &mut out), Fetch::Ready);
        read += 800;
        wait_until("the ring refills", || feed.buffered().0 >= capacity);
        // Every frame came through in order.
        assert_eq!(out.len() as u64, read);
        assert!(out.iter().enumerate().all(|(i, s)| *s == i as f32));
    }
}
