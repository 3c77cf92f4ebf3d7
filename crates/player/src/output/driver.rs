//! One device period at a time: the timing path every paced output shares.
//!
//! A device (the sound card's callback, or the virtual device's thread) hands
//! [`PeriodDriver::render`] a buffer to fill, the node's local clock read at
//! the callback and the delay the device reports until the buffer's first
//! frame is heard. The driver turns that into the period's playback instant
//! on the local clock through the [`DeviceClock`] fit, tells the engine the
//! device's measured rate (so it resamples for the device's crystal as well
//! as for the timeline), and renders. The engine's phase error is then
//! measured against real playback instants: one correction loop takes out a
//! start offset and any drift.
//!
//! Bad reports (a negative, huge or non-finite delay) are ignored, counted
//! and logged once; a host that reports no delay at all falls back to the
//! callback instants (the latency is then unknown: `--latency-ms` covers
//! it), logged once and shown in [`OutputReport::timing`].
//!
//! Nothing here sleeps, blocks or allocates after construction.

use super::device_clock::{DeviceClock, Pair, YoungWitness};
use crate::engine::Engine;
use firefly_clock::LocalMicros;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Samples rendered per engine call at most (the rest in further calls).
const CHUNK_SAMPLES: usize = 16_384;
/// Largest delay taken as real, µs: no sound path buffers 10 s.
const MAX_DELAY_MICROS: f64 = 10e6;
/// A jump in the device's timing beyond this is stepped away at once, µs.
const REALIGN_JUMP_MICROS: f64 = 2_000.0;
/// Periods without a reported delay after which the host is taken to report none.
const NO_DELAY_PERIODS: u64 = 50;

/// How an output knows when its frames are heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutputTiming {
    /// Not started yet.
    Starting,
    /// From the device's reported playback instants (the normal case).
    Reported,
    /// The host reports no delay: from callback instants, latency unknown.
    CallbackOnly,
    /// The device does not pace itself (it takes frames far faster or
    /// slower than its rate): timed at the nominal rate.
    Unpaced,
    /// The device is gone; the output is waiting for it to return.
    Lost,
}

impl OutputTiming {
    fn code(self) -> u8 {
        match self {
            Self::Starting => 0,
            Self::Reported => 1,
            Self::CallbackOnly => 2,
            Self::Unpaced => 3,
            Self::Lost => 4,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => Self::Reported,
            2 => Self::CallbackOnly,
            3 => Self::Unpaced,
            4 => Self::Lost,
            _ => Self::Starting,
        }
    }

    /// A short name for logs and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Reported => "reported",
            Self::CallbackOnly => "callback-only",
            Self::Unpaced => "unpaced",
            Self::Lost => "lost",
        }
    }
}

/// What an output has seen so far, for `/api/state`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutputReport {
    /// How playback instants are known.
    pub timing: OutputTiming,
    /// Times the device ran dry (host-reported xruns, and jumps in its timing
    /// that made frames sound later).
    pub underruns: u64,
    /// Delay reports ignored as nonsense (negative, huge, non-finite).
    pub bad_delays: u64,
    /// The device's frame rate against the local clock, ppm off nominal, once measured.
    pub device_rate_ppm: Option<f64>,
    /// The last reported delay from callback to sound, µs.
    pub delay_micros: Option<i64>,
    /// Typical scatter of the playback instants around the fit, µs.
    pub jitter_micros: f64,
    /// Periods rendered.
    pub periods: u64,
    /// Times the device was opened again after it went away.
    pub reopens: u64,
    /// Whether the output's threads run at real-time priority.
    pub realtime: bool,
}

/// Counters shared between an output's audio thread and its reader.
#[derive(Debug, Default)]
pub(crate) struct OutputStats {
    timing: AtomicU8,
    underruns: AtomicU64,
    bad_delays: AtomicU64,
    rate_ppm_bits: AtomicU64,
    has_rate: AtomicBool,
    delay_micros: AtomicI64,
    has_delay: AtomicBool,
    jitter_bits: AtomicU64,
    periods: AtomicU64,
    reopens: AtomicU64,
    realtime: AtomicBool,
}

impl OutputStats {
    pub(crate) fn report(&self) -> OutputReport {
        OutputReport {
            timing: OutputTiming::from_code(self.timing.load(Ordering::Relaxed)),
            underruns: self.underruns.load(Ordering::Relaxed),
            bad_delays: self.bad_delays.load(Ordering::Relaxed),
            device_rate_ppm: self
                .has_rate
                .load(Ordering::Relaxed)
                .then(|| f64::from_bits(self.rate_ppm_bits.load(Ordering::Relaxed))),
            delay_micros: self
                .has_delay
                .load(Ordering::Relaxed)
                .then(|| self.delay_micros.load(Ordering::Relaxed)),
            jitter_micros: f64::from_bits(self.jitter_bits.load(Ordering::Relaxed)),
            periods: self.periods.load(Ordering::Relaxed),
            reopens: self.reopens.load(Ordering::Relaxed),
            realtime: self.realtime.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn set_realtime(&self, realtime: bool) {
        self.realtime.store(realtime, Ordering::Relaxed);
    }

    pub(crate) fn set_timing(&self, timing: OutputTiming) {
        self.timing.store(timing.code(), Ordering::Relaxed);
    }

    pub(crate) fn count_underrun(&self) {
        self.underruns.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_reopen(&self) {
        self.reopens.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn periods(&self) -> u64 {
        self.periods.load(Ordering::Relaxed)
    }
}

/// One period's timing, as the device told it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeriodTiming {
    /// The node's local clock, read in the callback.
    pub(crate) now: LocalMicros,
    /// The reported time from `now` until the first frame is heard, µs
    /// (`None`: the host reports none).
    pub(crate) delay_micros: Option<f64>,
    /// The real instant the first frame is heard, for outputs that know it.
    pub(crate) true_instant: Option<Instant>,
}

/// The engine plus the device-clock fit; see the module doc.
pub(crate) struct PeriodDriver {
    engine: Engine,
    clock: DeviceClock,
    /// Frames handed to the device since the stream (re)started.
    frames: u64,
    buf: Box<[f32]>,
    stats: Arc<OutputStats>,
    /// Periods so far in which the host reported a usable, non-zero delay.
    reported: u64,
    /// Periods so far in this stream.
    seen: u64,
    logged_bad_delay: bool,
    logged_fallback: bool,
    logged_unpaced: bool,
}

impl std::fmt::Debug for PeriodDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeriodDriver")
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl PeriodDriver {
    /// A driver for `engine`, whose device's young streams are timed by
    /// `young` (see [`YoungWitness`]).
    pub(crate) fn new(engine: Engine, stats: Arc<OutputStats>, young: YoungWitness) -> Self {
        let clock = DeviceClock::new(engine.format().sample_rate, young);
        Self {
            engine,
            clock,
            frames: 0,
            buf: vec![0.0; CHUNK_SAMPLES].into_boxed_slice(),
            stats,
            reported: 0,
            seen: 0,
            logged_bad_delay: false,
            logged_fallback: false,
            logged_unpaced: false,
        }
    }

    /// The engine driven.
    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A new stream: its frames and delays start afresh.
    pub(crate) fn restart(&mut self) {
        self.clock.reset();
        self.frames = 0;
        self.reported = 0;
        self.seen = 0;
    }

    /// Fills `out` (interleaved, whole frames) with the next frames,
    /// converting each sample with `convert`.
    pub(crate) fn render<T>(&mut self, out: &mut [T], timing: PeriodTiming, convert: fn(f32) -> T) {
        let format = self.engine.format();
        let ch = usize::from(format.channels);
        let frames_here = out.len() / ch;
        let began = Instant::now();
        let heard = self.observe(timing);
        let micros_per_frame = 1e6 / f64::from(format.sample_rate);
        let chunk_frames = (CHUNK_SAMPLES / ch).max(1);
        let mut done = 0;
        while done < frames_here {
            let n = (frames_here - done).min(chunk_frames);
            let frame = self.frames + done as u64;
            let at = self
                .clock
                .heard_at(frame)
                .unwrap_or(heard + done as f64 * micros_per_frame);
            let true_instant = timing
                .true_instant
                .map(|t| t + Duration::from_secs_f64(done as f64 * micros_per_frame / 1e6));
            let buf = &mut self.buf[..n * ch];
            self.engine
                .render(LocalMicros(at.round() as i64), true_instant, buf);
            for (o, &s) in out[done * ch..(done + n) * ch].iter_mut().zip(buf.iter()) {
                *o = convert(s);
            }
            done += n;
        }
        self.frames += frames_here as u64;
        self.stats.periods.fetch_add(1, Ordering::Relaxed);
        // How long the period took to render (is the callback ever too slow?).
        tracing::trace!(
            target: "firefly_device_timing",
            took_us = began.elapsed().as_micros(),
            frames = frames_here,
            "rendered"
        );
    }

    /// Local µs per swarm µs around `at`: the scale of a reported delay.
    ///
    /// A device reports its delay in real time, and the local clock may run
    /// hundreds of ppm off (a test clock; a cheap crystal): added unscaled,
    /// 100 ms of buffer at 200 ppm would misplace the sound by 20 µs, and
    /// differently on every node. The swarm clock is every node's shared
    /// estimate of real time, so scaling by it leaves each node the same
    /// residue, which cancels between rooms.
    fn local_per_swarm(&self, at: LocalMicros) -> f64 {
        crate::timeline::swarm_per_local(self.engine.timeline().as_ref(), at)
            .map_or(1.0, f64::recip)
    }

    /// Takes in the period's timing; returns its raw playback instant (local µs).
    fn observe(&mut self, timing: PeriodTiming) -> f64 {
        self.seen += 1;
        let now = timing.now.as_micros() as f64;
        let delay = match timing.delay_micros {
            Some(d) if d.is_finite() && (0.0..=MAX_DELAY_MICROS).contains(&d) => Some(d),
            Some(d) => {
                self.stats.bad_delays.fetch_add(1, Ordering::Relaxed);
                if !self.logged_bad_delay {
                    self.logged_bad_delay = true;
                    tracing::warn!(
                        delay_us = d,
                        "the sound device reports a nonsense playback delay; such reports are ignored"
                    );
                }
                None
            }
            None => None,
        };
        if delay.is_some_and(|d| d > 0.0) {
            self.reported += 1;
        }
        let fallback = self.reported == 0 && self.seen >= NO_DELAY_PERIODS;
        if fallback && !self.logged_fallback {
            self.logged_fallback = true;
            tracing::warn!(
                "the sound device reports no playback delay: timing from its callbacks, \
                 latency unknown (set --latency-ms to what you hear)"
            );
        }
        let heard = match delay {
            Some(d) => now + d * self.local_per_swarm(timing.now),
            None if fallback => now,
            // A missing report among good ones: the fit says when this period is heard.
            None => return self.clock.heard_at(self.frames).unwrap_or(now),
        };
        if let Some(d) = delay {
            self.stats
                .delay_micros
                .store(d.round() as i64, Ordering::Relaxed);
            self.stats.has_delay.store(true, Ordering::Relaxed);
        }
        match self.clock.handle_period(self.frames, heard, now) {
            Pair::Restarted(jump) => {
                let period = self.engine.format().period_frames as f64 * 1e6
                    / f64::from(self.engine.format().sample_rate);
                if jump > period / 2.0 {
                    self.stats.count_underrun();
                }
                if jump.abs() > REALIGN_JUMP_MICROS {
                    self.engine.realign();
                }
                tracing::debug!(jump_us = jump, "the sound device's timing jumped");
            }
            Pair::Rebased(jump) => {
                tracing::debug!(
                    jump_us = jump,
                    "the sound device's reported delay jumped but its callbacks did not: \
                     the reports are taken as shifted"
                );
            }
            Pair::Accepted | Pair::Rejected => {}
        }
        // Every period, for `RUST_LOG=firefly_device_timing=trace` (what
        // `firefly bench heard --logs` lines up with the recording).
        tracing::trace!(
            target: "firefly_device_timing",
            now = now,
            delay = delay.unwrap_or(-1.0),
            frames = self.frames,
            fit = self.clock.heard_at(self.frames).unwrap_or(heard),
            ppm = self.clock.rate_ratio().map_or(0.0, |r| (r - 1.0) * 1e6),
            jitter = self.clock.jitter_micros(),
        );
        let unpaced = self.clock.is_implausible();
        if unpaced && !self.logged_unpaced {
            self.logged_unpaced = true;
            tracing::warn!(
                "the sound device does not pace itself (it takes frames far faster or slower \
                 than its rate): playback is timed at the nominal rate"
            );
        }
        self.stats.set_timing(if unpaced {
            OutputTiming::Unpaced
        } else if fallback {
            OutputTiming::CallbackOnly
        } else {
            OutputTiming::Reported
        });
        if let Some(ratio) = self.clock.rate_ratio() {
            let ppm = (ratio - 1.0) * 1e6;
            self.stats
                .rate_ppm_bits
                .store(ppm.to_bits(), Ordering::Relaxed);
            self.stats.has_rate.store(true, Ordering::Relaxed);
            if !unpaced {
                self.engine.set_output_ratio(ratio);
            }
        }
        self.stats
            .jitter_bits
            .store(self.clock.jitter_micros().to_bits(), Ordering::Relaxed);
        heard
    }
}

#[cfg(test)]
mod tests {
    //! The correction loop against the virtual device model, in simulated
    //! time: a real engine and decoder, a device whose crystal, delays and
    //! periods are modelled, a local clock that runs off, and the clock
    //! crate's slew controller as the node drives it.

    use super::*;
    use crate::engine::{OutputFormat, PlayerConfig, PlayerEvent};
    use crate::output::clocked::{DeviceModel, ModelDevice};
    use crate::player::Player;
    use crate::timeline::Timeline;
    use firefly_clock::{Correction, SlewConfig, SlewController, SwarmMicros};
    use std::sync::Mutex;
    use std::sync::atomic::AtomicI64;

    const SOURCE_RATE: u32 = 44_100;

    /// A node's clock in simulated time: local = true × (1 + skew); the
    /// swarm timeline is true time (a perfect clock estimate).
    struct SimTimeline {
        now: AtomicI64,
        skew: f64,
        slew: Mutex<(SlewController, f64)>,
    }

    impl SimTimeline {
        fn new(skew_ppm: f64) -> Self {
            let mut config = SlewConfig::default();
            config.max_ppm = 1_500.0;
            Self {
                now: AtomicI64::new(0),
                skew: skew_ppm * 1e-6,
                slew: Mutex::new((SlewController::new(config), 1.0)),
            }
        }

        fn set_true(&self, seconds: f64) {
            let local = seconds * 1e6 * (1.0 + self.skew);
            self.now.store(local.round() as i64, Ordering::Relaxed);
        }
    }

    impl Timeline for SimTimeline {
        fn now(&self) -> LocalMicros {
            LocalMicros(self.now.load(Ordering::Relaxed))
        }

        fn to_swarm(&self, local: LocalMicros) -> SwarmMicros {
            SwarmMicros((local.as_micros() as f64 / (1.0 + self.skew)).round() as i64)
        }

        fn playback_rate(&self, at: LocalMicros, error: Option<f64>) -> f64 {
            let mut guard = crate::lock(&self.slew);
            let (slew, last) = &mut *guard;
            *last = match error {
                None => {
                    slew.reset();
                    1.0
                }
                Some(e) => match slew.update(at, e) {
                    Correction::Rate(r) => r,
                    Correction::Realign { .. } => *last,
                },
            };
            *last
        }
    }

    /// A silent WAV of `seconds`, in memory.
    fn silence(seconds: u32) -> Vec<u8> {
        let mut bytes = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: SOURCE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut bytes, spec).expect("in-memory WAV");
        for _ in 0..seconds * SOURCE_RATE * 2 {
            w.write_sample(0i16).expect("in-memory WAV");
        }
        w.finalize().expect("in-memory WAV");
        bytes.into_inner()
    }

    /// Phase errors as heard (µs, positive: ahead), per flash: (true s, error).
    struct Run {
        errors: Vec<(f64, f64)>,
        report: OutputReport,
    }

    impl Run {
        /// Largest |error| from `from` s on.
        fn worst_after(&self, from: f64) -> f64 {
            self.errors
                .iter()
                .filter(|(t, _)| *t >= from)
                .map(|(_, e)| e.abs())
                .fold(0.0, f64::max)
        }
    }

    /// Plays `seconds` on a device `model` with a local clock `skew_ppm` off;
    /// the track is scheduled at true 1 s. `extra_delay(t)` is added to the
    /// delay the device reports at true time `t` (µs).
    fn simulate(
        model: DeviceModel,
        skew_ppm: f64,
        seconds: f64,
        extra_delay: impl Fn(f64) -> f64,
    ) -> Run {
        simulate_periods(
            model,
            Duration::from_millis(10),
            skew_ppm,
            seconds,
            extra_delay,
        )
    }

    /// [`simulate`] with device periods of `period`.
    fn simulate_periods(
        model: DeviceModel,
        period: Duration,
        skew_ppm: f64,
        seconds: f64,
        extra_delay: impl Fn(f64) -> f64,
    ) -> Run {
        let timeline = Arc::new(SimTimeline::new(skew_ppm));
        let format = OutputFormat::new(48_000, 2, period);
        let (mut player, engine) =
            Player::detached(format, timeline.clone(), PlayerConfig::default()).expect("player");
        let track = player
            .open(
                Box::new(std::io::Cursor::new(silence(seconds as u32 + 2))),
                Some("wav"),
            )
            .expect("decoder");
        let start = SwarmMicros(1_000_000);
        player.play(track, 0, start).expect("play");
        let stats = Arc::new(OutputStats::default());
        let mut driver = PeriodDriver::new(engine, Arc::clone(&stats), YoungWitness::Reports);
        let mut device = ModelDevice::new(model, format);
        let mut buf = vec![0.0f32; device.max_period() * 2];
        let mut errors = Vec::new();
        loop {
            let period = device.next_period();
            if period.callback > seconds {
                break;
            }
            assert!(player.wait_ready(Duration::from_secs(2), Duration::from_secs(20)));
            timeline.set_true(period.callback);
            let delay = (period.heard - period.callback + period.noise) * 1e6
                + extra_delay(period.callback);
            driver.render(
                &mut buf[..period.frames * 2],
                PeriodTiming {
                    now: timeline.now(),
                    delay_micros: Some(delay),
                    true_instant: None,
                },
                |s| s,
            );
            while let Some(event) = player.poll_event() {
                if let PlayerEvent::Flash(f) = event {
                    let heard = device.heard_at(f.output_frame);
                    let expected =
                        (heard * 1e6 - start.as_micros() as f64) * f64::from(SOURCE_RATE) / 1e6;
                    let error = (f.position - expected) * 1e6 / f64::from(SOURCE_RATE);
                    errors.push((heard, error));
                }
            }
        }
        Run {
            errors,
            report: stats.report(),
        }
    }

    fn model() -> DeviceModel {
        DeviceModel {
            ppm: 300.0,
            latency: Duration::from_millis(40),
            wake_jitter: Duration::from_micros(500),
            delay_noise: Duration::from_micros(20),
            period_spread: 0.3,
            seed: 3,
        }
    }

    #[test]
    fn a_device_300_ppm_off_and_a_clock_200_ppm_off_converge_within_a_frame() {
        let run = simulate(model(), 200.0, 40.0, |_| 0.0);
        let frame = 1e6 / f64::from(SOURCE_RATE);
        let worst = run.worst_after(20.0);
        eprintln!("worst after 20 s: {worst:.2} µs; {:?}", run.report);
        // A fifth of a frame: the 40 ms delay is scaled to the local clock
        // (added unscaled, 200 ppm of it misplaced the sound by 8 µs).
        assert!(worst <= frame / 5.0, "error {worst:.2} µs after 20 s");
        let ppm = run.report.device_rate_ppm.unwrap_or(0.0);
        // The device's rate against the local clock: +300 ppm over +200 ppm.
        let expected = ((1.0 + 300e-6) / (1.0 + 200e-6) - 1.0) * 1e6;
        assert!((ppm - expected).abs() < 1.0, "{ppm} vs {expected}");
        assert_eq!(run.report.underruns, 0);
        assert_eq!(run.report.timing, OutputTiming::Reported);
    }

    #[test]
    fn long_device_periods_converge_too() {
        // 50 ms periods, as the device output asks for, 100 ms of buffer.
        let model = DeviceModel {
            latency: Duration::from_millis(100),
            ..model()
        };
        let run = simulate_periods(model, Duration::from_millis(50), 200.0, 40.0, |_| 0.0);
        let worst = run.worst_after(20.0);
        eprintln!("50 ms periods: worst after 20 s {worst:.2} µs");
        // One phase measurement per 50 ms, and the rate applies a period
        // later: within half a frame (24 µs while the 100 ms delay went unscaled).
        assert!(
            worst <= 0.5e6 / f64::from(SOURCE_RATE),
            "error {worst:.2} µs"
        );
    }

    #[test]
    fn a_20_ms_start_offset_is_slewed_out() {
        // The device under-reports its delay by 20 ms while the track starts,
        // then tells the truth: playback begins 20 ms late and must catch up.
        let run = simulate(
            model(),
            -150.0,
            45.0,
            |t| if t < 1.5 { -20_000.0 } else { 0.0 },
        );
        let early = run.errors.iter().find(|(t, _)| *t > 1.6).map(|e| e.1);
        assert!(early.is_some_and(|e| e < -15_000.0), "{early:?}");
        let worst = run.worst_after(25.0);
        let settled = run
            .errors
            .iter()
            .find(|(t, e)| *t > 2.0 && e.abs() < 100.0)
            .map(|e| e.0);
        eprintln!(
            "start {early:?} µs, within 100 µs at {settled:?} s, worst after 25 s {worst:.2} µs"
        );
        assert!(worst <= 6.0, "error {worst:.1} µs after 25 s");
    }

    #[test]
    fn nonsense_delays_are_counted_and_ignored() {
        // Now and then (a period or two at a time) a negative, a huge, and a
        // backwards (20 ms early) report.
        let nonsense = |t: f64| match (t * 100.0) as u64 % 97 {
            7 => -5e6,
            19 => 1e13,
            33 => -20_000.0,
            _ => 0.0,
        };
        let run = simulate(model(), 120.0, 30.0, nonsense);
        assert!(run.report.bad_delays > 10, "{:?}", run.report);
        assert_eq!(run.report.underruns, 0, "{:?}", run.report);
        let worst = run.worst_after(20.0);
        assert!(worst <= 30.0, "error {worst:.1} µs among nonsense reports");
    }

    #[test]
    fn two_ms_of_delay_jitter_moves_playback_by_a_few_micros() {
        let steady = DeviceModel {
            wake_jitter: Duration::ZERO,
            delay_noise: Duration::ZERO,
            ..model()
        };
        // Callbacks up to 4 ms late: the reported delays swing by ±2 ms.
        let jittery = DeviceModel {
            wake_jitter: Duration::from_millis(4),
            ..steady
        };
        let a = simulate(steady, 200.0, 30.0, |_| 0.0);
        let b = simulate(jittery, 200.0, 30.0, |_| 0.0);
        let moved = a
            .errors
            .iter()
            .zip(&b.errors)
            .filter(|(x, _)| x.0 >= 15.0)
            .map(|(x, y)| (x.1 - y.1).abs())
            .fold(0.0, f64::max);
        eprintln!("moved {moved:.3} µs");
        assert!(moved <= 5.0, "jitter moved playback by {moved:.2} µs");
        // Noise in the delay values themselves (a host reporting coarsely) is averaged out too.
        let noisy = DeviceModel {
            delay_noise: Duration::from_millis(2),
            ..steady
        };
        let c = simulate(noisy, 200.0, 30.0, |_| 0.0);
        let worst = c.worst_after(15.0);
        eprintln!("±2 ms delay noise: worst {worst:.2} µs");
        assert!(worst <= 100.0, "±2 ms of delay noise: {worst:.1} µs");
    }
}
