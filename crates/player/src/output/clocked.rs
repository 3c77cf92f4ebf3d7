//! Outputs paced by the monotonic clock instead of a sound card.
//!
//! A clocked output behaves like a sound card as its [`DeviceModel`] says:
//! frame `n` is heard at the real instant `T₀ + n / (rate × (1 + ppm))`,
//! each period (of varying size) is asked for `latency` before it is heard,
//! its thread wakes up to `wake_jitter` late, and the device reports the
//! delay until the period is heard (with `delay_noise` on top). The period
//! goes through the same [`PeriodDriver`] as a real device's, so the node's
//! correction loop runs against it exactly as against a sound card. Each
//! period's first frame is also stamped with its real instant (as
//! [`Flash::true_instant`](crate::Flash)), to measure sync from outside.
//!
//! [`VirtualOutput`] optionally keeps what it played in a [`Recording`];
//! [`WavOutput`] writes it to a WAV file. Both can also run [`Pacing::Unpaced`]:
//! as fast as possible over a virtual clock, for offline rendering and fast tests.

use super::device_clock::YoungWitness;
use super::{Output, OutputStats, OutputTiming, PeriodDriver, PeriodTiming, RunningOutput};
use crate::engine::{Engine, OutputFormat};
use crate::error::OutputError;
use firefly_clock::LocalMicros;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How a clocked output advances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// In real time, one period per period (like a sound card).
    RealTime,
    /// As fast as possible over a virtual clock starting at the timeline's
    /// "now", stopping after this many frames.
    Unpaced {
        /// Frames to render before stopping.
        frames: u64,
    },
}

/// What a [`VirtualOutput`] played: samples and the real instant of the first.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    inner: Arc<Mutex<RecordingState>>,
}

#[derive(Debug, Default)]
struct RecordingState {
    samples: Vec<f32>,
    first: Option<Instant>,
    limit: usize,
}

impl Recording {
    /// A recording keeping at most `max_frames` frames of `channels` channels.
    pub fn new(max_frames: usize, channels: u16) -> Self {
        Self {
            inner: Arc::new(Mutex::new(RecordingState {
                samples: Vec::new(),
                first: None,
                limit: max_frames * usize::from(channels),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RecordingState> {
        crate::lock(&self.inner)
    }

    /// The samples so far (interleaved).
    pub fn samples(&self) -> Vec<f32> {
        self.lock().samples.clone()
    }

    /// The real instant the first recorded frame was heard (`None` before any,
    /// or when unpaced).
    pub fn first_instant(&self) -> Option<Instant> {
        self.lock().first
    }

    fn push(&self, samples: &[f32], heard: Option<Instant>) {
        let mut state = self.lock();
        if state.first.is_none() && state.samples.is_empty() {
            state.first = heard;
        }
        let room = state.limit.saturating_sub(state.samples.len());
        state
            .samples
            .extend_from_slice(&samples[..room.min(samples.len())]);
    }
}

/// How a virtual sound card behaves; `Default` is a perfect one (its
/// crystal exact, a fixed 40 ms latency reported exactly, fixed periods).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceModel {
    /// How fast the device's crystal runs against the real clock, ppm (positive: fast).
    pub ppm: f64,
    /// From a period being asked for to its first frame being heard (the device's buffer).
    pub latency: Duration,
    /// Each period is asked for up to this much late (uniformly); the delay
    /// the device reports is shorter by as much, as a real device's is.
    pub wake_jitter: Duration,
    /// Error on each reported delay, uniform within ± this (a host that reports coarsely).
    pub delay_noise: Duration,
    /// Period sizes vary uniformly within ± this fraction of the nominal period (0 to 0.9).
    pub period_spread: f64,
    /// Seed of the jitter, noise and period sizes.
    pub seed: u64,
}

impl Default for DeviceModel {
    fn default() -> Self {
        Self {
            ppm: 0.0,
            latency: Duration::from_millis(40),
            wake_jitter: Duration::ZERO,
            delay_noise: Duration::ZERO,
            period_spread: 0.0,
            seed: 1,
        }
    }
}

/// One period of a [`DeviceModel`], in seconds of real time since frame 0 is heard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ModelPeriod {
    /// Frames in the period.
    pub(crate) frames: usize,
    /// Device frames before it.
    pub(crate) first: u64,
    /// When its first frame is heard.
    pub(crate) heard: f64,
    /// When it is asked for (the callback).
    pub(crate) callback: f64,
    /// The noise to add to the reported delay, s.
    pub(crate) noise: f64,
}

/// A [`DeviceModel`] running: which period comes next, and when.
#[derive(Debug, Clone)]
pub(crate) struct ModelDevice {
    model: DeviceModel,
    /// True frames per second of the device.
    rate: f64,
    period: usize,
    frames: u64,
    /// Seconds added to every instant: the gaps of underruns so far.
    shift: f64,
    rng: u64,
}

impl ModelDevice {
    pub(crate) fn new(model: DeviceModel, format: OutputFormat) -> Self {
        Self {
            model,
            rate: f64::from(format.sample_rate) * (1.0 + model.ppm * 1e-6),
            period: format.period_frames.max(1),
            frames: 0,
            shift: 0.0,
            rng: model.seed,
        }
    }

    /// The largest period the model produces, frames.
    pub(crate) fn max_period(&self) -> usize {
        (self.period as f64 * (1.0 + self.model.period_spread.clamp(0.0, 0.9))).ceil() as usize + 1
    }

    /// Uniform in ±1 (splitmix64: deterministic per seed).
    fn uniform(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    /// The next period.
    pub(crate) fn next_period(&mut self) -> ModelPeriod {
        let spread = self.model.period_spread.clamp(0.0, 0.9) * self.uniform();
        let frames = ((self.period as f64 * (1.0 + spread)).round() as usize).max(1);
        let heard = self.frames as f64 / self.rate + self.shift;
        let late = self.model.wake_jitter.as_secs_f64() * (self.uniform() + 1.0) / 2.0;
        let callback = heard - self.model.latency.as_secs_f64() + late;
        let noise = self.model.delay_noise.as_secs_f64() * self.uniform();
        let period = ModelPeriod {
            frames,
            first: self.frames,
            heard,
            callback,
            noise,
        };
        self.frames += frames as u64;
        period
    }

    /// The device ran dry until `at` (s) before `period` (the last one
    /// given) was written: it and every later frame are heard `latency`
    /// after `at`.
    /// Returns the gap, s.
    pub(crate) fn underrun(&mut self, period: &mut ModelPeriod, at: f64) -> f64 {
        let shift = at + self.model.latency.as_secs_f64() - period.heard;
        self.shift += shift;
        period.heard += shift;
        period.callback += shift;
        shift
    }

    /// The real instant (s) device frame `n` is heard, if no underrun came since.
    #[cfg(test)]
    pub(crate) fn heard_at(&self, n: u64) -> f64 {
        n as f64 / self.rate + self.shift
    }
}

/// The clocked virtual sound card.
#[derive(Debug, Clone)]
pub struct VirtualOutput {
    format: OutputFormat,
    pacing: Pacing,
    recording: Option<Recording>,
    model: DeviceModel,
}

impl VirtualOutput {
    /// A virtual output consuming `format` in real time.
    pub fn new(format: OutputFormat) -> Self {
        Self {
            format,
            pacing: Pacing::RealTime,
            recording: None,
            model: DeviceModel::default(),
        }
    }

    /// Sets the pacing (default [`Pacing::RealTime`]).
    pub fn pacing(&mut self, pacing: Pacing) -> &mut Self {
        self.pacing = pacing;
        self
    }

    /// Sets how the virtual device behaves (default: a perfect device).
    pub fn model(&mut self, model: DeviceModel) -> &mut Self {
        self.model = model;
        self
    }

    /// Keeps what is played in `recording` (default: nothing is kept).
    pub fn record(&mut self, recording: Recording) -> &mut Self {
        self.recording = Some(recording);
        self
    }
}

impl Output for VirtualOutput {
    fn format(&self) -> OutputFormat {
        self.format
    }

    fn start(self: Box<Self>, engine: Engine) -> Result<RunningOutput, OutputError> {
        let recording = self.recording.clone();
        spawn_clocked(
            engine,
            self.pacing,
            self.model,
            "firefly-virtual-out",
            move |samples, heard| {
                if let Some(r) = &recording {
                    r.push(samples, heard);
                }
                Ok(())
            },
            || Ok(()),
        )
    }
}

/// How a [`WavOutput`] stores samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavSamples {
    /// 16-bit integers (what every program reads).
    Int16,
    /// 32-bit floats (exactly what was rendered).
    Float32,
}

/// A clocked output writing a WAV file.
#[derive(Debug, Clone)]
pub struct WavOutput {
    format: OutputFormat,
    path: PathBuf,
    samples: WavSamples,
    pacing: Pacing,
}

impl WavOutput {
    /// A WAV output to `path` in real time, 16-bit (the file is created on start).
    pub fn new(format: OutputFormat, path: &Path) -> Self {
        Self {
            format,
            path: path.to_path_buf(),
            samples: WavSamples::Int16,
            pacing: Pacing::RealTime,
        }
    }

    /// Sets the sample format (default [`WavSamples::Int16`]).
    pub fn samples(&mut self, samples: WavSamples) -> &mut Self {
        self.samples = samples;
        self
    }

    /// Sets the pacing (default [`Pacing::RealTime`]).
    pub fn pacing(&mut self, pacing: Pacing) -> &mut Self {
        self.pacing = pacing;
        self
    }
}

impl Output for WavOutput {
    fn format(&self) -> OutputFormat {
        self.format
    }

    fn start(self: Box<Self>, engine: Engine) -> Result<RunningOutput, OutputError> {
        let wav_err = |path: &Path, err: hound::Error| OutputError::Wav {
            path: path.to_path_buf(),
            reason: err.to_string(),
        };
        let spec = hound::WavSpec {
            channels: self.format.channels,
            sample_rate: self.format.sample_rate,
            bits_per_sample: match self.samples {
                WavSamples::Int16 => 16,
                WavSamples::Float32 => 32,
            },
            sample_format: match self.samples {
                WavSamples::Int16 => hound::SampleFormat::Int,
                WavSamples::Float32 => hound::SampleFormat::Float,
            },
        };
        let writer =
            hound::WavWriter::create(&self.path, spec).map_err(|e| wav_err(&self.path, e))?;
        let writer = Arc::new(Mutex::new(Some(writer)));
        let (write_to, finish) = (Arc::clone(&writer), writer);
        let (path, path2) = (self.path.clone(), self.path.clone());
        let kind = self.samples;
        spawn_clocked(
            engine,
            self.pacing,
            DeviceModel::default(),
            "firefly-wav-out",
            move |samples, _| {
                let mut guard = crate::lock(&write_to);
                let Some(w) = guard.as_mut() else {
                    return Ok(());
                };
                for &s in samples {
                    let result =
                        match kind {
                            WavSamples::Int16 => w.write_sample(
                                (s.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16,
                            ),
                            WavSamples::Float32 => w.write_sample(s),
                        };
                    result.map_err(|e| wav_err(&path, e))?;
                }
                Ok(())
            },
            move || {
                let taken = crate::lock(&finish).take();
                match taken {
                    Some(w) => w.finalize().map_err(|e| wav_err(&path2, e)),
                    None => Ok(()),
                }
            },
        )
    }
}

/// Reads the real clock and the node's clock at (nearly) the same instant:
/// brackets the node's reading between two real ones and keeps the tightest
/// of a few tries, so being preempted between the reads cannot skew a stamp.
fn read_together(timeline: &dyn crate::Timeline) -> (Instant, LocalMicros) {
    let mut best: Option<(Duration, Instant, LocalMicros)> = None;
    for _ in 0..8 {
        let before = Instant::now();
        let local = timeline.now();
        let after = Instant::now();
        let width = after.duration_since(before);
        if best.is_none_or(|(w, _, _)| width < w) {
            best = Some((width, before + width / 2, local));
        }
        if width < Duration::from_micros(4) {
            break;
        }
    }
    // The loop runs at least once, so `best` is set.
    best.map_or_else(
        || (Instant::now(), timeline.now()),
        |(_, at, local)| (at, local),
    )
}

/// Runs the pacing loop on a new thread, handing each rendered period to `sink`
/// (with the real instant its first frame is heard) and calling `finish` at the end.
fn spawn_clocked<S, F>(
    engine: Engine,
    pacing: Pacing,
    model: DeviceModel,
    name: &str,
    mut sink: S,
    finish: F,
) -> Result<RunningOutput, OutputError>
where
    S: FnMut(&[f32], Option<Instant>) -> Result<(), OutputError> + Send + 'static,
    F: FnOnce() -> Result<(), OutputError> + Send + 'static,
{
    let format = engine.format();
    if format.period_frames == 0 || format.channels == 0 || format.sample_rate == 0 {
        return Err(OutputError::Format(format!("{format:?}")));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stop_thread = Arc::clone(&stop);
    let stats = Arc::new(OutputStats::default());
    let thread_stats = Arc::clone(&stats);
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let ch = usize::from(format.channels);
            let result = match pacing {
                Pacing::RealTime => {
                    run_real_time(engine, model, &stop_thread, &thread_stats, &mut sink)
                }
                Pacing::Unpaced { frames } => {
                    thread_stats.set_timing(OutputTiming::Reported);
                    run_unpaced(engine, frames, ch, &stop_thread, &mut sink)
                }
            };
            let finished = finish();
            result.and(finished)
        })
        .map_err(OutputError::Thread)?;
    Ok(RunningOutput::new(stop, thread, stats))
}

/// As fast as possible over a virtual clock: frame `n` is heard at local
/// `start + n / rate`.
fn run_unpaced<S>(
    mut engine: Engine,
    total: u64,
    ch: usize,
    stop: &AtomicBool,
    sink: &mut S,
) -> Result<(), OutputError>
where
    S: FnMut(&[f32], Option<Instant>) -> Result<(), OutputError>,
{
    let format = engine.format();
    let mut buf = vec![0.0f32; format.period_frames * ch];
    let local_origin = engine.timeline().now();
    let mut frames: u64 = 0;
    while !stop.load(Ordering::Relaxed) && frames < total {
        let offset = u128::from(frames) * 1_000_000 / u128::from(format.sample_rate);
        let at = LocalMicros(local_origin.as_micros() + i64::try_from(offset).unwrap_or(i64::MAX));
        engine.render(at, None, &mut buf);
        if let Err(err) = sink(&buf, None) {
            tracing::error!(%err, "output failed");
            return Err(err);
        }
        frames += format.period_frames as u64;
    }
    Ok(())
}

/// The virtual device in real time: wakes when its model asks for a
/// period, reports the delay until it is heard, and renders it through the
/// [`PeriodDriver`] like a sound card's callback would.
fn run_real_time<S>(
    engine: Engine,
    model: DeviceModel,
    stop: &AtomicBool,
    stats: &Arc<OutputStats>,
    sink: &mut S,
) -> Result<(), OutputError>
where
    S: FnMut(&[f32], Option<Instant>) -> Result<(), OutputError>,
{
    // Paced like a sound card, so scheduled like one's threads
    // (`super::realtime`): a machine busy on every core would otherwise
    // hold this thread back by tens of ms, a gap a device would not have.
    // It sleeps between periods and never spins.
    let realtime = match super::realtime::promote_current_thread(super::realtime::CALLBACK_PRIORITY)
    {
        Ok(()) => true,
        Err(reason) => {
            tracing::debug!(%reason, "the clocked output runs at normal priority");
            false
        }
    };
    stats.set_realtime(realtime);
    let format = engine.format();
    let ch = usize::from(format.channels);
    let mut device = ModelDevice::new(model, format);
    let mut buf = vec![0.0f32; device.max_period() * ch];
    let mut driver = PeriodDriver::new(engine, Arc::clone(stats), YoungWitness::Reports);
    // Frame 0 is heard one latency from now.
    let origin = Instant::now() + model.latency;
    let instant = |s: f64| {
        if s >= 0.0 {
            origin + Duration::from_secs_f64(s)
        } else {
            origin
                .checked_sub(Duration::from_secs_f64(-s))
                .unwrap_or(origin)
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let mut period = device.next_period();
        if let Some(wait) = instant(period.callback).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let (now, local) = read_together(driver.engine().timeline().as_ref());
        let since = |i: Instant| {
            if i >= origin {
                i.duration_since(origin).as_secs_f64()
            } else {
                -origin.duration_since(i).as_secs_f64()
            }
        };
        let mut delay = period.heard - since(now);
        if delay <= 0.0 {
            // Woken after the period was due: the device ran dry, as a card would.
            stats.count_underrun();
            let gap = device.underrun(&mut period, since(now));
            // The device plays silence meanwhile; what it played keeps real time.
            let mut silent = (gap * f64::from(format.sample_rate)).round() as usize;
            buf.fill(0.0);
            while silent > 0 {
                let n = silent.min(buf.len() / ch);
                sink(&buf[..n * ch], None)?;
                silent -= n;
            }
            delay = period.heard - since(now);
        }
        let heard = instant(period.heard);
        let samples = &mut buf[..period.frames * ch];
        driver.render(
            samples,
            PeriodTiming {
                now: local,
                delay_micros: Some((delay + period.noise) * 1e6),
                true_instant: Some(heard),
            },
            |s| s,
        );
        if let Err(err) = sink(samples, Some(heard)) {
            tracing::error!(%err, "output failed");
            return Err(err);
        }
    }
    Ok(())
}
