//! Outputs paced by the monotonic clock instead of a sound card.
//!
//! A clocked output behaves like a sound card with a perfect crystal: frame
//! `n` is heard at the real instant `T₀ + n / rate`, and each period is
//! rendered one period before it is heard. Each period's first frame is
//! stamped with that real instant (as [`Flash::true_instant`](crate::Flash))
//! and, for the engine, with the node's believed local clock at that instant,
//! read together with the real clock so thread wake-up jitter cancels out.
//!
//! [`VirtualOutput`] optionally keeps what it played in a [`Recording`];
//! [`WavOutput`] writes it to a WAV file. Both can also run [`Pacing::Unpaced`]:
//! as fast as possible over a virtual clock, for offline rendering and fast tests.

use super::{Output, RunningOutput};
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

/// The clocked virtual sound card.
#[derive(Debug, Clone)]
pub struct VirtualOutput {
    format: OutputFormat,
    pacing: Pacing,
    recording: Option<Recording>,
}

impl VirtualOutput {
    /// A virtual output consuming `format` in real time.
    pub fn new(format: OutputFormat) -> Self {
        Self {
            format,
            pacing: Pacing::RealTime,
            recording: None,
        }
    }

    /// Sets the pacing (default [`Pacing::RealTime`]).
    pub fn pacing(&mut self, pacing: Pacing) -> &mut Self {
        self.pacing = pacing;
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
    mut engine: Engine,
    pacing: Pacing,
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
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut buf = vec![0.0f32; format.period_frames * usize::from(format.channels)];
            let rate = u128::from(format.sample_rate);
            let frames_to_duration = |frames: u64| {
                let nanos = u128::from(frames) * 1_000_000_000 / rate;
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            };
            let period = frames_to_duration(format.period_frames as u64);
            // The first period is rendered now and heard one period later: one period of latency.
            let origin = Instant::now() + period;
            let local_origin = engine.timeline().now();
            let mut frames: u64 = 0;
            let mut result = Ok(());
            while !stop_thread.load(Ordering::Relaxed) {
                let (at, heard) = match pacing {
                    Pacing::RealTime => {
                        let heard = origin + frames_to_duration(frames);
                        if let Some(wait) = (heard - period).checked_duration_since(Instant::now())
                        {
                            std::thread::sleep(wait);
                        }
                        // Read both clocks together; the frame is heard `heard - now` later.
                        let (now, local) = read_together(engine.timeline().as_ref());
                        let ahead = if heard >= now {
                            i64::try_from(heard.duration_since(now).as_micros()).unwrap_or(i64::MAX)
                        } else {
                            -i64::try_from(now.duration_since(heard).as_micros())
                                .unwrap_or(i64::MAX)
                        };
                        (local + ahead, Some(heard))
                    }
                    Pacing::Unpaced { frames: total } => {
                        if frames >= total {
                            break;
                        }
                        let offset = frames_to_duration(frames).as_micros();
                        let at = LocalMicros(
                            local_origin.as_micros() + i64::try_from(offset).unwrap_or(i64::MAX),
                        );
                        (at, None)
                    }
                };
                engine.render(at, heard, &mut buf);
                if let Err(err) = sink(&buf, heard) {
                    tracing::error!(%err, "output failed");
                    result = Err(err);
                    break;
                }
                frames += format.period_frames as u64;
            }
            let finished = finish();
            result.and(finished)
        })
        .map_err(OutputError::Thread)?;
    Ok(RunningOutput::new(stop, thread))
}
