//! The renderer: turns a schedule into output frames, one period at a time.
//!
//! An output calls [`Engine::render`] once per period with the local instant
//! at which the period's first frame will be heard. The engine maps that onto
//! the swarm timeline, and for the current track
//!
//! - emits silence until the scheduled swarm instant, then the scheduled
//!   frame on the output frame nearest to it (at most half a frame off);
//! - keeps emitting frame `P + (t − S) × rate` from then on, resampling at the
//!   playback rate the [`Timeline`] asks for (never dropping or repeating frames);
//! - steps back onto the timeline when the phase error passes a threshold
//!   (a stepped clock, or the end of an underrun);
//! - fades in and out over a few milliseconds around every start, stop,
//!   pause, seek and underrun, and ramps volume changes, so nothing clicks;
//! - reports a [`Flash`] per period: which source frame sounded at which
//!   swarm instant.
//!
//! It does no I/O of its own and never waits for audio: decoding happens on
//! the feed's thread (the engine only takes its lock to copy frames), pacing
//! in the output.

use crate::feed::{Feed, Fetch};
use crate::resample::{LEAD, RateResampler};
use crate::timeline::Timeline;
use firefly_clock::{LocalMicros, SwarmMicros};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// Events kept for the node; while that many are unread, new ones are dropped (and counted).
pub(crate) const EVENT_CAPACITY: usize = 4096;

/// The shape of the frames an output consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputFormat {
    /// Frames per second.
    pub sample_rate: u32,
    /// Samples per frame.
    pub channels: u16,
    /// Frames per [`Engine::render`] call (one flash each).
    pub period_frames: usize,
}

impl OutputFormat {
    /// A format with a period of `period` (rounded to whole frames, at least one).
    pub fn new(sample_rate: u32, channels: u16, period: Duration) -> Self {
        let period_frames = (period.as_secs_f64() * f64::from(sample_rate))
            .round()
            .max(1.0);
        Self {
            sample_rate,
            channels,
            period_frames: period_frames as usize,
        }
    }

    /// The duration of `frames` frames, in microseconds.
    pub fn frames_to_micros(&self, frames: f64) -> f64 {
        frames * 1e6 / f64::from(self.sample_rate)
    }
}

/// Tunables of playback. `Default` gives the values documented per field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayerConfig {
    /// Output latency to compensate on top of what the output reports, in
    /// microseconds (`--latency-ms` × 1000): positive when the sound comes out
    /// later than reported (e.g. a Bluetooth speaker), negative when earlier.
    /// Default 0.
    pub latency_trim_micros: i64,
    /// Length of the fades around starts, stops, pauses and seeks. Default 5 ms.
    pub fade: Duration,
    /// Length of the ramp of a volume change. Default 20 ms.
    pub volume_ramp: Duration,
    /// A phase error larger than this is stepped away instead of slewed. Default 50 ms.
    pub step_threshold: Duration,
    /// After an underrun, decoded audio needed before playback resumes. Default 300 ms.
    pub recover_buffer: Duration,
}

impl Default for PlayerConfig {
    fn default() -> Self {
        Self {
            latency_trim_micros: 0,
            fade: Duration::from_millis(5),
            volume_ramp: Duration::from_millis(20),
            step_threshold: Duration::from_millis(50),
            recover_buffer: Duration::from_millis(300),
        }
    }
}

/// Which source frame sounded at which swarm instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flash {
    /// The track, numbered by [`Player::play`](crate::Player::play) calls.
    pub track: u64,
    /// The swarm instant the frame sounded (as this node believes).
    pub swarm: SwarmMicros,
    /// The local instant the frame sounded (this node's clock).
    pub local: LocalMicros,
    /// The source frame heard then, rounded.
    pub frame: u64,
    /// The exact (fractional) source position heard then.
    pub position: f64,
    /// Position minus where the timeline says it should be, in source frames
    /// (positive: playing ahead).
    pub error_frames: f64,
    /// Index of the frame in the output's stream (frames it consumed before).
    pub output_frame: u64,
    /// The real instant the frame sounded, for outputs that know it (the
    /// virtual output), to measure sync from outside the node's beliefs.
    pub true_instant: Option<Instant>,
}

/// What the player tells the node.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PlayerEvent {
    /// A period began with this frame.
    Flash(Flash),
    /// A track (re)started sounding: `frame` at `swarm`.
    Started {
        /// The track.
        track: u64,
        /// The first frame heard.
        frame: u64,
        /// When (swarm time).
        swarm: SwarmMicros,
    },
    /// Decoded audio ran out (the stream is late); silence plays.
    Underrun {
        /// The track.
        track: u64,
        /// When the silence began (swarm time).
        swarm: SwarmMicros,
    },
    /// The phase error passed the step threshold and playback jumped back onto the timeline.
    Realigned {
        /// The track.
        track: u64,
        /// The error before the jump, in source frames (positive: was ahead).
        error_frames: f64,
    },
    /// Corrupt packets were skipped (replaced by silence of their length).
    CorruptPackets {
        /// The track.
        track: u64,
        /// How many since the last report.
        count: u64,
    },
    /// Decoding stopped with an error; what was decoded still plays.
    DecodeFailed {
        /// The track.
        track: u64,
        /// The decoder's message.
        message: String,
    },
    /// The track played to its end.
    Finished {
        /// The track.
        track: u64,
    },
}

/// A track ready to hand to the engine: its decoding thread and resampler.
pub(crate) struct Track {
    pub(crate) id: u64,
    pub(crate) feed: Feed,
    pub(crate) source_rate: u32,
    pub(crate) resampler: RateResampler,
}

/// What the [`Player`](crate::Player) asks of the engine.
pub(crate) enum Command {
    Play {
        track: Box<Track>,
        frame: u64,
        at: SwarmMicros,
    },
    Pause,
    /// Pause so that the fade-out ends at `at`.
    PauseAt {
        at: SwarmMicros,
    },
    /// Stop so that the fade-out ends at `at`.
    StopAt {
        at: SwarmMicros,
    },
    Resume {
        at: SwarmMicros,
    },
    Seek {
        frame: u64,
        at: SwarmMicros,
    },
    Stop,
    Volume(f32),
    /// Play these channels from the next period on.
    Channels(crate::ChannelMap),
    /// Use this latency trim, µs, from the next period on.
    LatencyTrim(i64),
    /// Play `track` from `frame` once the current track ends, on the very
    /// next output frame (gapless) when that is within half the step
    /// threshold of `at`; else as a play anchored at `at`.
    Follow {
        track: Box<Track>,
        frame: u64,
        at: SwarmMicros,
    },
    /// Forget the track queued by [`Command::Follow`].
    Unfollow,
}

enum Phase {
    /// Silent until the anchor instant (or starting late, mid-track).
    Waiting,
    Playing,
    Paused {
        frame: u64,
    },
    /// Out of decoded audio; silent until enough is buffered again.
    Underrun,
    Finished,
}

/// What happens when a fade-out reaches silence.
enum AfterFade {
    Pause,
    Stop,
    Seek {
        frame: u64,
        at: SwarmMicros,
    },
    Replace {
        track: Box<Track>,
        frame: u64,
        at: SwarmMicros,
    },
    Realign,
}

struct Current {
    track: Box<Track>,
    /// The schedule: frame `anchor_frame` sounds at `anchor_at`, and time runs at the source rate.
    anchor_frame: u64,
    anchor_at: SwarmMicros,
    phase: Phase,
    fade_in: bool,
    /// A fade-out scheduled to end at this swarm instant, and what follows
    /// it (pause, stop, the next play): every node goes silent on the same
    /// frame.
    pending: Option<(SwarmMicros, AfterFade)>,
    /// Started right after the previous track's last frame: the first
    /// frame goes on the next output frame when that is close to the anchor.
    contiguous: bool,
    /// Index of the next source frame to feed the resampler (negative: silence before the track).
    next_input: i64,
    /// Source position of the last frame the resampler produced.
    index: f64,
    /// Produced frames not yet emitted, and their source positions.
    queue: Queue,
    /// Frames positioned before this are dropped (aligning a fresh start).
    drop_before: Option<f64>,
    /// Total frames, once the decoder reached the end.
    end_frame: Option<f64>,
    gain: f32,
    gain_step: f32,
    after_fade: Option<AfterFade>,
}

impl Current {
    fn new(track: Box<Track>, frame: u64, at: SwarmMicros) -> Self {
        Self {
            track,
            anchor_frame: frame,
            anchor_at: at,
            phase: Phase::Waiting,
            fade_in: frame > 0,
            contiguous: false,
            pending: None,
            next_input: 0,
            index: 0.0,
            queue: Queue::default(),
            drop_before: None,
            end_frame: None,
            gain: 1.0,
            gain_step: 0.0,
            after_fade: None,
        }
    }

    fn source_rate(&self) -> f64 {
        f64::from(self.track.source_rate)
    }

    /// Where the timeline says the track should be at `t`, in source frames.
    fn expected_at(&self, t: SwarmMicros) -> f64 {
        self.anchor_frame as f64 + (t - self.anchor_at) as f64 * self.source_rate() / 1e6
    }

    /// Source position of the next frame to emit.
    fn next_position(&self) -> f64 {
        if let Some(queued) = self.queue.front() {
            return queued;
        }
        // Nothing produced yet: the next frame is one step on, past any that a
        // fresh start will drop.
        let step = self.track.resampler.step();
        let mut next = self.index + step;
        if let Some(limit) = self.drop_before {
            while next < limit {
                next += step;
            }
        }
        next
    }

    /// Restarts the resampler so the next emitted frame is source frame `frame`
    /// (within half an output frame).
    fn restart_at(&mut self, frame: u64, rate: f64, fade_frames: f32) {
        self.track.resampler.reset();
        self.track.resampler.set_rate(rate);
        let step = self.track.resampler.step();
        // Output frame 0 carries `first_input + LEAD + step`: start feeding so it
        // lands at or just before `frame`, then drop the frames more than half
        // a step early (only when upsampling).
        let first_input = (frame as f64 - LEAD - step).floor();
        self.next_input = first_input as i64;
        self.index = first_input + LEAD;
        self.queue.clear();
        self.drop_before = Some(frame as f64 - step / 2.0);
        (self.gain, self.gain_step) = if self.fade_in {
            (0.0, 1.0 / fade_frames)
        } else {
            (1.0, 0.0)
        };
        self.fade_in = false;
    }

    /// Does what a finished fade-out was for.
    fn finish_fade(&mut self, then: AfterFade) {
        self.gain_step = 0.0;
        match then {
            AfterFade::Pause => {
                let frame = self.next_position().round().max(0.0) as u64;
                self.phase = Phase::Paused { frame };
            }
            AfterFade::Stop => self.phase = Phase::Finished,
            AfterFade::Seek { frame, at } => {
                self.anchor_frame = frame;
                self.anchor_at = at;
                self.fade_in = true;
                self.phase = Phase::Waiting;
            }
            AfterFade::Replace { track, frame, at } => *self = Current::new(track, frame, at),
            AfterFade::Realign => {
                self.fade_in = true;
                self.phase = Phase::Waiting;
            }
        }
    }

    fn fade_out(&mut self, then: AfterFade, fade_frames: f32) {
        self.gain_step = -1.0 / fade_frames;
        self.after_fade = Some(then);
    }
}

/// The renderer. Made by [`Player`](crate::Player), driven by an output.
pub struct Engine {
    format: OutputFormat,
    config: PlayerConfig,
    timeline: Arc<dyn Timeline>,
    commands: Receiver<Command>,
    events: SyncSender<PlayerEvent>,
    current: Option<Current>,
    /// The track that follows the current one ([`Command::Follow`]).
    following: Option<(Box<Track>, u64, SwarmMicros)>,
    volume: f32,
    volume_target: f32,
    channel_map: crate::ChannelMap,
    output_frames: u64,
    rate: f64,
    /// The output device's frames per local second over its nominal rate (measured by the output).
    output_ratio: f64,
    scratch: Vec<f32>,
    dropped_events: u64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("format", &self.format)
            .field("output_frames", &self.output_frames)
            .finish_non_exhaustive()
    }
}

impl Engine {
    pub(crate) fn new(
        format: OutputFormat,
        config: PlayerConfig,
        timeline: Arc<dyn Timeline>,
        commands: Receiver<Command>,
        events: SyncSender<PlayerEvent>,
    ) -> Self {
        Self {
            format,
            config,
            timeline,
            commands,
            events,
            current: None,
            following: None,
            volume: 1.0,
            volume_target: 1.0,
            channel_map: crate::ChannelMap::Stereo,
            output_frames: 0,
            rate: 1.0,
            output_ratio: 1.0,
            scratch: Vec::new(),
            dropped_events: 0,
        }
    }

    /// The format the engine renders.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// The timeline the engine follows.
    pub fn timeline(&self) -> &Arc<dyn Timeline> {
        &self.timeline
    }

    /// Frames rendered so far.
    pub fn output_frames(&self) -> u64 {
        self.output_frames
    }

    /// Tells the engine how fast the output device really consumes frames:
    /// `ratio` is its frames per local second over its nominal rate (1.0003:
    /// 300 ppm fast). The engine resamples for it, and for the timeline's own
    /// rate against the local clock, before the slew controller's correction,
    /// so the controller only closes what is left. Values off by more than 1 %
    /// are ignored. Default 1.
    pub fn set_output_ratio(&mut self, ratio: f64) {
        if ratio.is_finite() && (ratio - 1.0).abs() <= 0.01 {
            self.output_ratio = ratio;
        }
    }

    /// Steps the current track back onto the timeline: for when the output's
    /// timing jumped (a device underrun already broke the sound, so a step
    /// costs nothing more audible, where slewing the gap away would take
    /// many seconds).
    pub(crate) fn realign(&mut self) {
        let fade = self.fade_frames();
        if let Some(cur) = self.current.as_mut()
            && matches!(cur.phase, Phase::Playing)
            && cur.after_fade.is_none()
        {
            cur.fade_out(AfterFade::Realign, fade);
        }
    }

    /// The rate at which the source must be played so that the swarm
    /// timeline and the device agree, before phase correction: swarm µs per
    /// local µs over device frames per local µs.
    fn feedforward(&self, at: LocalMicros) -> f64 {
        crate::timeline::swarm_per_local(self.timeline.as_ref(), at).unwrap_or(1.0)
            / self.output_ratio
    }

    /// Renders one period into `out` (interleaved; `period_frames × channels`
    /// samples expected, any whole number of frames accepted). `at` is the
    /// local instant the first frame will be heard, before the configured
    /// latency trim; `true_instant` is the real instant it will be heard, for
    /// outputs that know it.
    pub fn render(&mut self, at: LocalMicros, true_instant: Option<Instant>, out: &mut [f32]) {
        out.fill(0.0);
        self.drain_commands();
        let ch = usize::from(self.format.channels);
        let frames = out.len() / ch;
        let local = at + self.config.latency_trim_micros;
        let t0 = self.timeline.to_swarm(local);
        if let Some(mut cur) = self.current.take() {
            let stamp = Stamp {
                t0,
                local,
                true_instant,
                output_frame: self.output_frames,
            };
            let ended = self.render_track(&mut cur, &stamp, &mut out[..frames * ch]);
            if !matches!(cur.phase, Phase::Finished) {
                self.current = Some(cur);
            } else if let (Some(k), Some((track, frame, at))) = (ended, self.following.take()) {
                // Gapless: the follow-on goes on the output frame right
                // after the last one of the track that ended.
                let mut next = Current::new(track, frame, at);
                next.contiguous = true;
                let offset = self.format.frames_to_micros(k as f64).round() as i64;
                let rest = Stamp {
                    t0: t0 + offset,
                    local: local + offset,
                    true_instant: true_instant.map(|t| {
                        t + Duration::from_secs_f64(k as f64 / f64::from(self.format.sample_rate))
                    }),
                    output_frame: self.output_frames + k as u64,
                };
                self.render_track(&mut next, &rest, &mut out[k * ch..frames * ch]);
                if !matches!(next.phase, Phase::Finished) {
                    self.current = Some(next);
                }
            }
        }
        self.channel_map.apply(&mut out[..frames * ch], ch);
        self.apply_volume(&mut out[..frames * ch]);
        self.output_frames += frames as u64;
    }

    fn send(&mut self, event: PlayerEvent) {
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped_events += 1;
                if self.dropped_events.is_power_of_two() {
                    tracing::warn!(
                        dropped = self.dropped_events,
                        "player events not read; dropping"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn fade_frames(&self) -> f32 {
        (self.config.fade.as_secs_f32() * self.format.sample_rate as f32).max(1.0)
    }

    fn drain_commands(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            let fade = self.fade_frames();
            let audible = |cur: &Current| matches!(cur.phase, Phase::Playing) && cur.gain > 0.0;
            match command {
                Command::Play { track, frame, at } => {
                    self.following = None;
                    match self.current.as_mut() {
                        // The sound changes at `at`: fade out so that it ends then.
                        Some(cur) if audible(cur) && cur.after_fade.is_none() => {
                            cur.pending = Some((at, AfterFade::Replace { track, frame, at }));
                        }
                        // Already fading out (a pause): the play replaces what follows.
                        Some(cur) if audible(cur) => {
                            cur.fade_out(AfterFade::Replace { track, frame, at }, fade);
                        }
                        _ => self.current = Some(Current::new(track, frame, at)),
                    }
                }
                Command::Follow { track, frame, at } => {
                    if self.current.is_some() {
                        self.following = Some((track, frame, at));
                    } else {
                        // Nothing to follow (it ended already): play at the anchor.
                        self.current = Some(Current::new(track, frame, at));
                    }
                }
                Command::Unfollow => self.following = None,
                Command::PauseAt { at } => {
                    if let Some(cur) = self.current.as_mut() {
                        if audible(cur) {
                            cur.pending = Some((at, AfterFade::Pause));
                        } else {
                            self.pause_now();
                        }
                    }
                }
                Command::StopAt { at } => {
                    self.following = None;
                    match self.current.as_mut() {
                        Some(cur) if audible(cur) => cur.pending = Some((at, AfterFade::Stop)),
                        _ => self.current = None,
                    }
                }
                Command::Pause => self.pause_now(),
                Command::Resume { at } => {
                    if let Some(cur) = self.current.as_mut()
                        && let Phase::Paused { frame } = cur.phase
                    {
                        cur.track.feed.prepare(frame);
                        cur.anchor_frame = frame;
                        cur.anchor_at = at;
                        cur.fade_in = true;
                        cur.phase = Phase::Waiting;
                    }
                }
                Command::Seek { frame, at } => {
                    if let Some(cur) = self.current.as_mut() {
                        cur.track.feed.prepare(frame);
                        match cur.phase {
                            Phase::Playing if cur.gain > 0.0 => {
                                cur.fade_out(AfterFade::Seek { frame, at }, fade);
                            }
                            Phase::Paused { .. } => cur.phase = Phase::Paused { frame },
                            _ => {
                                cur.anchor_frame = frame;
                                cur.anchor_at = at;
                                cur.fade_in = true;
                                cur.phase = Phase::Waiting;
                            }
                        }
                    }
                }
                Command::Stop => {
                    self.following = None;
                    if let Some(cur) = self.current.as_mut()
                        && audible(cur)
                    {
                        cur.fade_out(AfterFade::Stop, fade);
                    } else {
                        self.current = None;
                    }
                }
                Command::Volume(v) => self.volume_target = v,
                Command::Channels(map) => self.channel_map = map,
                Command::LatencyTrim(micros) => self.config.latency_trim_micros = micros,
            }
        }
    }

    /// Pauses now: a fade-out when audible, else at once.
    fn pause_now(&mut self) {
        let fade = self.fade_frames();
        if let Some(cur) = self.current.as_mut() {
            cur.pending = None;
            match cur.phase {
                Phase::Playing if cur.gain > 0.0 => cur.fade_out(AfterFade::Pause, fade),
                Phase::Playing | Phase::Underrun => {
                    let frame = cur.next_position().round().max(0.0) as u64;
                    cur.phase = Phase::Paused { frame };
                }
                Phase::Waiting => {
                    cur.phase = Phase::Paused {
                        frame: cur.anchor_frame,
                    };
                }
                Phase::Paused { .. } | Phase::Finished => {}
            }
        }
    }

    fn apply_volume(&mut self, out: &mut [f32]) {
        let ch = usize::from(self.format.channels);
        if self.volume == self.volume_target && self.volume == 1.0 {
            return;
        }
        let ramp =
            (self.config.volume_ramp.as_secs_f32() * self.format.sample_rate as f32).max(1.0);
        let step = 1.0 / ramp;
        for frame in out.chunks_exact_mut(ch) {
            let diff = self.volume_target - self.volume;
            self.volume += diff.clamp(-step, step);
            for s in frame {
                *s *= self.volume;
            }
        }
    }

    /// Renders `cur` into `out`; the frame index at which it played to its
    /// end, if it did.
    fn render_track(&mut self, cur: &mut Current, stamp: &Stamp, out: &mut [f32]) -> Option<usize> {
        let ch = usize::from(self.format.channels);
        let frames = out.len() / ch;
        let ro = f64::from(self.format.sample_rate);
        let track = cur.track.id;
        let (corrupt, failure) = cur.track.feed.take_problems();
        if corrupt > 0 {
            self.send(PlayerEvent::CorruptPackets {
                track,
                count: corrupt,
            });
        }
        if let Some(message) = failure {
            self.send(PlayerEvent::DecodeFailed { track, message });
        }
        let mut k = 0usize;
        let mut flashed = false;
        // Each pass handles one phase; a transition mid-period continues at frame `k`.
        for _ in 0..8 {
            if k >= frames {
                return None;
            }
            let tk = stamp.t0 + self.format.frames_to_micros(k as f64).round() as i64;
            match cur.phase {
                Phase::Paused { .. } | Phase::Finished => return None,
                Phase::Underrun => {
                    let (buffered, ended) = cur.track.feed.buffered();
                    let needed = self.config.recover_buffer.as_secs_f64() * cur.source_rate();
                    if !ended && (buffered as f64) < needed {
                        return None;
                    }
                    cur.fade_in = true;
                    cur.phase = Phase::Waiting;
                }
                Phase::Waiting => {
                    let offset = (cur.anchor_at - stamp.t0) as f64 * ro / 1e6;
                    let tolerance = self.config.step_threshold.as_secs_f64() * ro / 2.0;
                    let contiguous = std::mem::take(&mut cur.contiguous)
                        && (offset - k as f64).abs() <= tolerance;
                    if offset >= frames as f64 - 0.5 && !contiguous {
                        return None;
                    }
                    let (start_k, frame) = if contiguous {
                        (k, cur.anchor_frame)
                    } else if offset >= k as f64 - 0.5 {
                        (offset.round().max(0.0) as usize, cur.anchor_frame)
                    } else {
                        // Late (joining mid-track, or after an underrun): start where the timeline is now.
                        cur.fade_in = true;
                        (k, cur.expected_at(tk).round().max(0.0) as u64)
                    };
                    let rate = self.rate_for(stamp.local, None);
                    cur.restart_at(frame, rate, self.fade_frames());
                    cur.phase = Phase::Playing;
                    k = start_k;
                    let swarm = stamp.t0 + self.format.frames_to_micros(k as f64).round() as i64;
                    self.send(PlayerEvent::Started {
                        // The track may have changed in this period (a replace).
                        track: cur.track.id,
                        frame,
                        swarm,
                    });
                }
                Phase::Playing => {
                    if !flashed {
                        flashed = true;
                        let track = cur.track.id;
                        let position = cur.next_position();
                        let error = position - cur.expected_at(tk);
                        let threshold =
                            self.config.step_threshold.as_secs_f64() * cur.source_rate();
                        if error.abs() > threshold && cur.after_fade.is_none() {
                            self.send(PlayerEvent::Realigned {
                                track,
                                error_frames: error,
                            });
                            cur.fade_out(AfterFade::Realign, self.fade_frames());
                        }
                        let error_micros = error * 1e6 / cur.source_rate();
                        let local = stamp.local + (tk - stamp.t0);
                        let rate = self.rate_for(local, Some(error_micros));
                        cur.track.resampler.set_rate(rate);
                        self.send(PlayerEvent::Flash(Flash {
                            track,
                            swarm: tk,
                            local,
                            frame: position.round().max(0.0) as u64,
                            position,
                            error_frames: error,
                            output_frame: stamp.output_frame + k as u64,
                            true_instant: stamp
                                .true_instant
                                .map(|t| t + Duration::from_secs_f64(k as f64 / ro)),
                        }));
                    }
                    // A fade scheduled to end within this period starts
                    // on its frame: emit up to there first.
                    let mut limit = frames;
                    if cur.after_fade.is_none()
                        && let Some((at, _)) = &cur.pending
                    {
                        let fade = f64::from(self.fade_frames());
                        let start = ((*at - stamp.t0) as f64 * ro / 1e6 - fade).round();
                        if start <= k as f64 {
                            if let Some((_, then)) = cur.pending.take() {
                                cur.fade_out(then, self.fade_frames());
                            }
                        } else if start < frames as f64 {
                            limit = start as usize;
                        }
                    }
                    match self.emit(cur, &mut out[k * ch..limit * ch]) {
                        Emitted::Full if limit < frames => k = limit,
                        Emitted::Full => return None,
                        Emitted::Transition(done) => k += done,
                        Emitted::Underrun(done) => {
                            let swarm = stamp.t0
                                + self.format.frames_to_micros((k + done) as f64).round() as i64;
                            self.send(PlayerEvent::Underrun { track, swarm });
                            return None;
                        }
                        Emitted::Finished(done) => {
                            self.send(PlayerEvent::Finished { track });
                            return Some(k + done);
                        }
                    }
                }
            }
        }
        None
    }

    fn rate_for(&mut self, at: LocalMicros, error_micros: Option<f64>) -> f64 {
        self.rate = self.timeline.playback_rate(at, error_micros) * self.feedforward(at);
        self.rate
    }

    /// Emits frames into `out` until it is full or the phase changes.
    fn emit(&mut self, cur: &mut Current, out: &mut [f32]) -> Emitted {
        let ch = usize::from(self.format.channels);
        let frames = out.len() / ch;
        let fade = self.fade_frames();
        let starved = self.fill(cur, frames + fade as usize + 1);
        let available = cur.queue.len();
        // Running dry: what is left is played with a fade-out over its last `fade` frames,
        // starting in whichever period those frames fall.
        let mut hold_until = 0;
        if starved {
            let tail_start = available.saturating_sub(fade as usize);
            if tail_start < frames {
                hold_until = tail_start;
                let tail = (available - tail_start).max(1);
                cur.gain_step = -cur.gain.max(f32::EPSILON) / tail as f32;
            }
        }
        let mut i = 0;
        while i < frames {
            // A steady gain (nearly every frame): copy the whole run up to
            // the period's end, the queue's end or the track's end at once.
            if cur.gain_step == 0.0 {
                let run = cur.queue.run_before(frames - i, cur.end_frame);
                if run > 0 {
                    let from = &cur.queue.samples(ch)[..run * ch];
                    let to = &mut out[i * ch..(i + run) * ch];
                    if cur.gain == 1.0 {
                        to.copy_from_slice(from);
                    } else {
                        let gain = cur.gain;
                        for (o, s) in to.iter_mut().zip(from) {
                            *o = s * gain;
                        }
                    }
                    cur.queue.consume(run);
                    i += run;
                    continue;
                }
            }
            // Frame by frame: a ramp, the track's end, or running dry.
            let Some(pos) = cur.queue.front() else {
                if let Some(then) = cur.after_fade.take() {
                    // Ran dry while fading out for a command: silence either way, so do it now.
                    cur.finish_fade(then);
                    return Emitted::Transition(i);
                }
                cur.phase = Phase::Underrun;
                cur.gain_step = 0.0;
                return Emitted::Underrun(i);
            };
            if cur.end_frame.is_some_and(|end| pos >= end) {
                cur.phase = Phase::Finished;
                return Emitted::Finished(i);
            }
            if i >= hold_until {
                cur.gain = (cur.gain + cur.gain_step).clamp(0.0, 1.0);
                if cur.gain_step > 0.0 && cur.gain >= 1.0 {
                    cur.gain_step = 0.0;
                }
            }
            let gain = cur.gain;
            for (o, s) in out[i * ch..(i + 1) * ch]
                .iter_mut()
                .zip(cur.queue.samples(ch))
            {
                *o = s * gain;
            }
            cur.queue.consume(1);
            i += 1;
            if cur.gain <= 0.0
                && cur.gain_step < 0.0
                && let Some(then) = cur.after_fade.take()
            {
                cur.finish_fade(then);
                return Emitted::Transition(i);
            }
        }
        Emitted::Full
    }

    /// Resamples until `want` frames are queued; returns whether the feed ran dry first.
    fn fill(&mut self, cur: &mut Current, want: usize) -> bool {
        let ch = usize::from(self.format.channels);
        cur.queue.compact(ch);
        while cur.queue.len() < want {
            let needed = cur.track.resampler.input_needed();
            self.scratch.clear();
            let mut from = cur.next_input;
            let mut remaining = needed;
            if from < 0 {
                let zeros = (from.unsigned_abs() as usize).min(remaining);
                self.scratch.resize(zeros * ch, 0.0);
                remaining -= zeros;
                from += zeros as i64;
            }
            if remaining > 0 {
                // `from` is non-negative here: negative indices were all turned into silence.
                let start = from.max(0) as u64;
                if cur.end_frame.is_some_and(|end| start as f64 >= end) {
                    self.scratch.resize(needed * ch, 0.0);
                } else {
                    match cur.track.feed.fetch(start, remaining, &mut self.scratch) {
                        Fetch::Ready => {}
                        Fetch::Ended(got) => {
                            cur.end_frame = Some((start + got as u64) as f64);
                            self.scratch.resize(needed * ch, 0.0);
                        }
                        Fetch::Pending => return true,
                    }
                }
            }
            // The resampler appends to the queue's samples directly.
            let appended_at = cur.queue.samples.len();
            if let Err(err) = cur
                .track
                .resampler
                .process(&self.scratch, &mut cur.queue.samples)
            {
                tracing::error!(%err, "resampler failed");
                cur.queue.samples.truncate(appended_at);
                return true;
            }
            cur.next_input += needed as i64;
            let step = cur.track.resampler.step();
            let produced = (cur.queue.samples.len() - appended_at) / ch;
            // A fresh start drops the frames before its first (a prefix).
            let mut dropped = 0;
            for _ in 0..produced {
                cur.index += step;
                if cur.drop_before.is_some_and(|limit| cur.index < limit) {
                    dropped += 1;
                    continue;
                }
                cur.drop_before = None;
                cur.queue.positions.push(cur.index);
            }
            if dropped > 0 {
                cur.queue
                    .samples
                    .drain(appended_at..appended_at + dropped * ch);
            }
        }
        false
    }
}

/// Resampled frames not yet emitted, and the source position of each:
/// flat buffers with a read cursor, so a period is emitted by copying
/// slices rather than popping frame by frame. The consumed front is dropped
/// before the next frames are appended; once the buffers have grown to a
/// period and a fade ahead, nothing allocates.
#[derive(Default)]
struct Queue {
    /// Interleaved samples.
    samples: Vec<f32>,
    positions: Vec<f64>,
    /// Frames already emitted from the front.
    read: usize,
}

impl Queue {
    /// Frames queued.
    fn len(&self) -> usize {
        self.positions.len() - self.read
    }

    /// The source position of the next frame.
    fn front(&self) -> Option<f64> {
        self.positions.get(self.read).copied()
    }

    /// The queued samples, from the next frame on.
    fn samples(&self, channels: usize) -> &[f32] {
        self.samples.get(self.read * channels..).unwrap_or(&[])
    }

    /// How many of the next frames (at most `limit`) are queued and lie
    /// before `end` (positions only grow).
    fn run_before(&self, limit: usize, end: Option<f64>) -> usize {
        let queued = self.positions.get(self.read..).unwrap_or(&[]);
        let queued = &queued[..limit.min(queued.len())];
        match end {
            Some(end) => queued.partition_point(|&pos| pos < end),
            None => queued.len(),
        }
    }

    /// Marks the next `frames` frames emitted.
    fn consume(&mut self, frames: usize) {
        self.read = (self.read + frames).min(self.positions.len());
    }

    /// Drops the emitted frames from the buffers.
    fn compact(&mut self, channels: usize) {
        if self.read > 0 {
            self.samples.drain(..self.read * channels);
            self.positions.drain(..self.read);
            self.read = 0;
        }
    }

    fn clear(&mut self) {
        self.samples.clear();
        self.positions.clear();
        self.read = 0;
    }
}

/// How [`Engine::emit`] ended.
enum Emitted {
    /// The period is full.
    Full,
    /// The phase changed after this many frames.
    Transition(usize),
    /// Decoded audio ran out after this many frames.
    Underrun(usize),
    /// The track ended after this many frames.
    Finished(usize),
}

/// Where a period sits in time.
struct Stamp {
    t0: SwarmMicros,
    local: LocalMicros,
    true_instant: Option<Instant>,
    output_frame: u64,
}
