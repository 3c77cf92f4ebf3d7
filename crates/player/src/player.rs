//! The handle the node holds: commands in, events out.
//!
//! [`Player::start`] hands a fresh [`Engine`] to an [`Output`] (which drives
//! it from its own thread) and keeps the command and event channels.
//! Commands take effect at the output's next period; none of them blocks on
//! audio. [`Player::detached`] returns the engine instead, for callers that
//! drive it themselves (tests, offline rendering).

use crate::decode::Decoder;
use crate::engine::{
    Command, EVENT_CAPACITY, Engine, OutputFormat, PlayerConfig, PlayerEvent, Track,
};
use crate::error::{DecodeError, OutputError, PlayError};
use crate::feed::{DecodeFeed, Feed, FeedProbe};
use crate::output::{Output, RunningOutput};
use crate::resample::RateResampler;
use crate::timeline::Timeline;
use firefly_clock::SwarmMicros;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;
use symphonia::core::io::MediaSource;

/// A running player.
#[derive(Debug)]
pub struct Player {
    commands: Sender<Command>,
    events: Receiver<PlayerEvent>,
    format: OutputFormat,
    next_track: u64,
    output: Option<RunningOutput>,
    /// The last track handed to the engine, and its decoding progress.
    last: Option<(u64, u32, FeedProbe)>,
}

/// How far the last track given to [`Player::play`] has been decoded ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// The track.
    pub track: u64,
    /// Audio decoded and waiting to be played.
    pub decoded_ahead: Duration,
    /// Whether decoding has reached the end of the track (nothing more will come).
    pub complete: bool,
}

impl Readiness {
    /// Whether at least `ahead` is decoded, or the whole rest of the track is.
    pub fn is_ready(&self, ahead: Duration) -> bool {
        self.complete || self.decoded_ahead >= ahead
    }
}

impl Player {
    /// Starts `output` rendering on `timeline`.
    pub fn start(
        output: Box<dyn Output>,
        timeline: Arc<dyn Timeline>,
        config: PlayerConfig,
    ) -> Result<Self, OutputError> {
        let (mut player, engine) = Self::detached(output.format(), timeline, config)?;
        player.output = Some(output.start(engine)?);
        Ok(player)
    }

    /// A player whose engine the caller drives with [`Engine::render`].
    pub fn detached(
        format: OutputFormat,
        timeline: Arc<dyn Timeline>,
        config: PlayerConfig,
    ) -> Result<(Self, Engine), OutputError> {
        if format.channels == 0 || format.period_frames == 0 {
            return Err(OutputError::Format(format!("{format:?}")));
        }
        if !(crate::MIN_SAMPLE_RATE..=crate::MAX_SAMPLE_RATE).contains(&format.sample_rate) {
            return Err(OutputError::Format(format!(
                "sample rate {} outside 8000 to 192000",
                format.sample_rate
            )));
        }
        let (commands, command_rx) = std::sync::mpsc::channel();
        let (event_tx, events) = std::sync::mpsc::sync_channel(EVENT_CAPACITY);
        let engine = Engine::new(format, config, timeline, command_rx, event_tx);
        Ok((
            Self {
                commands,
                events,
                format,
                next_track: 0,
                output: None,
                last: None,
            },
            engine,
        ))
    }

    /// The format the output consumes.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// Opens a file for [`Player::play`], mapped to the output's channels.
    pub fn open_file(&self, path: &Path) -> Result<Decoder, DecodeError> {
        Decoder::open_file(path, self.format.channels)
    }

    /// Opens any byte source for [`Player::play`] (a [`StreamSource`](crate::StreamSource)
    /// still downloading, a cursor over bytes), mapped to the output's channels.
    /// Probing reads the first bytes, so on a stream this waits for them.
    pub fn open(
        &self,
        source: Box<dyn MediaSource>,
        extension: Option<&str>,
    ) -> Result<Decoder, DecodeError> {
        Decoder::open(source, extension, self.format.channels)
    }

    /// Plays `track` so that its frame `start_frame` sounds at swarm instant
    /// `at` (silence until then). If `at` has passed, playback joins in step:
    /// it starts at frame `start_frame + (now − at) × rate`. A track already
    /// playing plays on until `at`, fading out so that the new one starts
    /// then (at once if `at` has passed). Returns the track's number (see [`PlayerEvent`]).
    pub fn play(
        &mut self,
        track: Decoder,
        start_frame: u64,
        at: SwarmMicros,
    ) -> Result<u64, PlayError> {
        let track = self.track(track, start_frame, true)?;
        let id = track.id;
        self.send(Command::Play {
            track,
            frame: start_frame,
            at,
        })?;
        Ok(id)
    }

    /// Queues `track` to follow the current one: when the current track
    /// plays to its end, `start_frame` goes on the very next output frame,
    /// with no gap and no overlap, provided that is near the swarm instant
    /// `at` the schedule gives it (the current track's end); otherwise it
    /// starts at `at` as [`Player::play`] would. With nothing playing it is
    /// a play. A later `play`, `stop` or `follow` replaces it; decoding
    /// starts now, so the boundary finds audio ready. Returns the track's
    /// number.
    pub fn follow(
        &mut self,
        track: Decoder,
        start_frame: u64,
        at: SwarmMicros,
    ) -> Result<u64, PlayError> {
        let track = self.track(track, start_frame, false)?;
        let id = track.id;
        self.send(Command::Follow {
            track,
            frame: start_frame,
            at,
        })?;
        Ok(id)
    }

    /// Forgets the track queued by [`Player::follow`].
    pub fn unfollow(&self) -> Result<(), PlayError> {
        self.send(Command::Unfollow)
    }

    /// Starts decoding `track` from `start_frame` for the engine; `probe`:
    /// [`Player::readiness`] reports on it.
    fn track(
        &mut self,
        track: Decoder,
        start_frame: u64,
        probe: bool,
    ) -> Result<Box<Track>, PlayError> {
        if track.out_channels() != usize::from(self.format.channels) {
            return Err(PlayError::ChannelMismatch {
                track: track.out_channels(),
                output: self.format.channels,
            });
        }
        let source_rate = track.info().sample_rate;
        let resampler = RateResampler::new(
            source_rate,
            self.format.sample_rate,
            usize::from(self.format.channels),
            self.format.period_frames,
        )
        .map_err(PlayError::Resampler)?;
        let feed = DecodeFeed::spawn(track, start_frame).map_err(PlayError::Thread)?;
        self.next_track += 1;
        let id = self.next_track;
        if probe {
            self.last = Some((id, source_rate, feed.probe()));
        }
        Ok(Box::new(Track {
            id,
            feed: Feed::Decode(feed),
            source_rate,
            resampler,
        }))
    }

    /// Plays a live stream so that its frame `start_frame` sounds at swarm
    /// instant `at` (joining in step if `at` has passed), like
    /// [`Player::play`]; missing frames are silence, and the track ends when
    /// [`LiveFrames::end`](crate::LiveFrames::end) is called. Returns the
    /// track's number.
    pub fn play_live(
        &mut self,
        frames: crate::LiveFrames,
        start_frame: u64,
        at: SwarmMicros,
    ) -> Result<u64, PlayError> {
        if frames.channels() != usize::from(self.format.channels) {
            return Err(PlayError::ChannelMismatch {
                track: frames.channels(),
                output: self.format.channels,
            });
        }
        let source_rate = frames.rate();
        let resampler = RateResampler::new(
            source_rate,
            self.format.sample_rate,
            usize::from(self.format.channels),
            self.format.period_frames,
        )
        .map_err(PlayError::Resampler)?;
        self.next_track += 1;
        let id = self.next_track;
        self.last = None;
        self.send(Command::Play {
            track: Box::new(Track {
                id,
                feed: Feed::Live(frames),
                source_rate,
                resampler,
            }),
            frame: start_frame,
            at,
        })?;
        Ok(id)
    }

    /// How far the last track given to [`Player::play`] is decoded ahead: what a
    /// node checks before answering *ready* to a prepare.
    pub fn readiness(&self) -> Option<Readiness> {
        let (track, rate, probe) = self.last.as_ref()?;
        let (frames, complete) = probe.buffered();
        Some(Readiness {
            track: *track,
            decoded_ahead: Duration::from_secs_f64(frames as f64 / f64::from(*rate)),
            complete,
        })
    }

    /// Waits (polling every few milliseconds) until [`Player::readiness`] says
    /// `ahead` is decoded or the track is complete; false on timeout.
    pub fn wait_ready(&self, ahead: Duration, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.readiness().is_some_and(|r| r.is_ready(ahead)) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Fades out and holds the position.
    pub fn pause(&self) -> Result<(), PlayError> {
        self.send(Command::Pause)
    }

    /// Pauses so that the fade-out ends at swarm instant `at` (at once if
    /// `at` has passed): every node pausing at the same `at` goes silent on
    /// the same frame. The position held is where the fade ended.
    pub fn pause_at(&self, at: SwarmMicros) -> Result<(), PlayError> {
        self.send(Command::PauseAt { at })
    }

    /// Stops so that the fade-out ends at swarm instant `at` (at once if
    /// `at` has passed), forgetting any track queued to follow.
    pub fn stop_at(&self, at: SwarmMicros) -> Result<(), PlayError> {
        self.send(Command::StopAt { at })
    }

    /// Continues from the paused position at swarm instant `at`.
    pub fn resume(&self, at: SwarmMicros) -> Result<(), PlayError> {
        self.send(Command::Resume { at })
    }

    /// Continues the current track from `frame` at swarm instant `at`.
    pub fn seek(&self, frame: u64, at: SwarmMicros) -> Result<(), PlayError> {
        self.send(Command::Seek { frame, at })
    }

    /// Fades out and drops the current track.
    pub fn stop(&self) -> Result<(), PlayError> {
        self.send(Command::Stop)
    }

    /// Ramps the volume to `volume` (1.0 is unchanged, 0.0 silent, at most 4.0).
    pub fn set_volume(&self, volume: f32) -> Result<(), PlayError> {
        if !(0.0..=4.0).contains(&volume) {
            return Err(PlayError::InvalidVolume(volume));
        }
        self.send(Command::Volume(volume))
    }

    /// Plays the channels `map` names from the next period on.
    pub fn set_channel_map(&self, map: crate::ChannelMap) -> Result<(), PlayError> {
        self.send(Command::Channels(map))
    }

    /// Sets the latency trim (added to the delay the output reports), µs,
    /// from the next period on: the frames heard move by the change, and the
    /// engine's step threshold puts them back in step at once.
    pub fn set_latency_trim(&self, micros: i64) -> Result<(), PlayError> {
        self.send(Command::LatencyTrim(micros))
    }

    /// What the output has seen so far (timing, underruns, the device's
    /// rate); `None` for a detached player.
    pub fn output_report(&self) -> Option<crate::OutputReport> {
        self.output.as_ref().map(RunningOutput::report)
    }

    /// The next event, if one is waiting.
    pub fn poll_event(&self) -> Option<PlayerEvent> {
        self.events.try_recv().ok()
    }

    /// The next event, waiting up to `timeout`.
    pub fn wait_event(&self, timeout: Duration) -> Result<Option<PlayerEvent>, PlayError> {
        match self.events.recv_timeout(timeout) {
            Ok(event) => Ok(Some(event)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(PlayError::OutputGone),
        }
    }

    /// Stops the output (finishing a WAV file) and reports how it ended.
    pub fn shutdown(mut self) -> Result<(), OutputError> {
        match self.output.take() {
            Some(output) => output.stop(),
            None => Ok(()),
        }
    }

    fn send(&self, command: Command) -> Result<(), PlayError> {
        self.commands
            .send(command)
            .map_err(|_| PlayError::OutputGone)
    }
}
