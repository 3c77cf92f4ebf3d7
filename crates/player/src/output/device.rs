//! The real sound device, through rodio (and cpal beneath it).
//!
//! [`DeviceOutput::open`] finds the device (the default one, or one named by
//! its ALSA PCM name, cpal id or description) and reads its default format.
//! [`Output::start`] opens a rodio sink on its own thread (rodio's stream must
//! stay on the thread that made it on some platforms) and adds the engine to
//! the sink's mixer as a rodio `Source`.
//!
//! rodio hands samples over one at a time and hides cpal's callback
//! timestamps, so each period is stamped from a frame-counting clock anchored
//! at the first period (`now + device latency`) and re-anchored when the
//! device falls behind. The device latency is the sink's buffer size. A
//! consumer much faster than real time (ALSA's `null` device pulls as fast
//! as it can) is held back to real time, so it behaves like a sound card.

use super::{Output, RunningOutput};
use crate::engine::{Engine, OutputFormat};
use crate::error::OutputError;
use firefly_clock::LocalMicros;
use rodio::cpal::traits::HostTrait;
use rodio::{DeviceTrait, Source};
use std::num::NonZero;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Frames per period handed to rodio (about 10 ms at 44.1 kHz).
const PERIOD: Duration = Duration::from_millis(10);

/// Device buffer asked for: 50 ms, rodio's own default, safe on every system.
const BUFFER: Duration = Duration::from_millis(50);

/// The names of the output devices on this machine (ALSA PCM names on Linux).
pub fn device_names() -> Vec<String> {
    let host = rodio::cpal::default_host();
    match host.output_devices() {
        Ok(devices) => devices
            .filter_map(|d| d.id().ok().map(|id| id.id().to_string()))
            .collect(),
        Err(err) => {
            tracing::debug!(%err, "cannot list output devices");
            Vec::new()
        }
    }
}

fn choices() -> String {
    let mut names: Vec<String> = device_names()
        .into_iter()
        .map(|n| format!("device:{n}"))
        .collect();
    names.insert(0, "default".into());
    names.extend(["virtual".into(), "wav:PATH".into()]);
    names.join(", ")
}

fn device_error(device: &str, reason: impl std::fmt::Display) -> OutputError {
    OutputError::Device {
        device: device.to_string(),
        reason: reason.to_string(),
        choices: choices(),
    }
}

fn find_device(name: Option<&str>) -> Result<rodio::Device, OutputError> {
    let host = rodio::cpal::default_host();
    match name {
        None => host
            .default_output_device()
            .ok_or_else(|| device_error("default", "no default output device")),
        Some(wanted) => {
            let devices = host.output_devices().map_err(|e| device_error(wanted, e))?;
            devices
                .into_iter()
                .find(|d| {
                    let id = d.id().ok();
                    id.as_ref()
                        .is_some_and(|id| id.id() == wanted || id.to_string() == wanted)
                        || d.description().is_ok_and(|desc| desc.name() == wanted)
                })
                .ok_or_else(|| device_error(wanted, "no such output device"))
        }
    }
}

/// A sound device.
#[derive(Debug, Clone)]
pub struct DeviceOutput {
    name: Option<String>,
    format: OutputFormat,
}

impl DeviceOutput {
    /// Finds the device `name` (`None`: the default one) and reads its default
    /// format. For devices that accept any rate (ALSA `plug`), cpal's default
    /// may differ between runs (44.1 or 48 kHz); [`DeviceOutput::with_format`]
    /// pins it.
    pub fn open(name: Option<&str>) -> Result<Self, OutputError> {
        let label = name.unwrap_or("default");
        let device = find_device(name)?;
        let config = device
            .default_output_config()
            .map_err(|e| device_error(label, e))?;
        let format = OutputFormat::new(config.sample_rate(), config.channels(), PERIOD);
        if !(crate::MIN_SAMPLE_RATE..=crate::MAX_SAMPLE_RATE).contains(&format.sample_rate)
            || format.channels == 0
        {
            return Err(device_error(label, format!("unusable format {format:?}")));
        }
        Ok(Self {
            name: name.map(str::to_string),
            format,
        })
    }

    /// Uses `sample_rate` and `channels` instead of the device's defaults.
    pub fn with_format(&mut self, sample_rate: u32, channels: u16) -> &mut Self {
        self.format = OutputFormat::new(sample_rate, channels, PERIOD);
        self
    }
}

impl Output for DeviceOutput {
    fn format(&self) -> OutputFormat {
        self.format
    }

    fn start(self: Box<Self>, engine: Engine) -> Result<RunningOutput, OutputError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_thread = Arc::clone(&stop);
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        let label = self.name.clone().unwrap_or_else(|| "default".into());
        let thread = std::thread::Builder::new()
            .name("firefly-device-out".into())
            .spawn(move || {
                let sink = match open_sink(self.name.as_deref(), self.format) {
                    Ok(sink) => sink,
                    Err(err) => {
                        let reason = err.to_string();
                        let _ = opened_tx.send(Err(err));
                        return Err(device_error(&label, reason));
                    }
                };
                let latency = match sink.config().buffer_size() {
                    rodio::cpal::BufferSize::Fixed(frames) => {
                        Duration::from_secs_f64(f64::from(*frames) / f64::from(self.format.sample_rate))
                    }
                    rodio::cpal::BufferSize::Default => BUFFER,
                };
                tracing::info!(device = %label, ?latency, format = ?self.format, "audio device open");
                sink.mixer().add(EngineSource::new(engine, latency));
                let _ = opened_tx.send(Ok(()));
                while !stop_thread.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                drop(sink);
                Ok(())
            })
            .map_err(OutputError::Thread)?;
        let running = RunningOutput::new(stop, thread);
        match opened_rx.recv() {
            Ok(Ok(())) => Ok(running),
            Ok(Err(err)) => {
                drop(running);
                Err(err)
            }
            Err(_) => Err(OutputError::Thread(std::io::Error::other(
                "device thread ended",
            ))),
        }
    }
}

fn open_sink(
    name: Option<&str>,
    format: OutputFormat,
) -> Result<rodio::MixerDeviceSink, OutputError> {
    let label = name.unwrap_or("default");
    let device = find_device(name)?;
    let (Some(rate), Some(channels)) = (
        NonZero::new(format.sample_rate),
        NonZero::new(format.channels),
    ) else {
        return Err(device_error(label, "zero rate or channels"));
    };
    let buffer = (BUFFER.as_secs_f64() * f64::from(format.sample_rate)) as u32;
    let mut sink = rodio::DeviceSinkBuilder::from_device(device)
        .map_err(|e| device_error(label, e))?
        .with_sample_rate(rate)
        .with_channels(channels)
        .with_sample_format(rodio::cpal::SampleFormat::F32)
        .with_buffer_size(rodio::cpal::BufferSize::Fixed(buffer))
        .with_error_callback(|err| tracing::warn!(%err, "audio stream error"))
        .open_stream()
        .map_err(|e| device_error(label, format!("{e}: {}", source_chain(&e))))?;
    sink.log_on_drop(false);
    Ok(sink)
}

fn source_chain(err: &dyn std::error::Error) -> String {
    let mut parts = Vec::new();
    let mut cur = err.source();
    while let Some(e) = cur {
        parts.push(e.to_string());
        cur = e.source();
    }
    parts.join(": ")
}

/// The engine as a rodio source: renders a period whenever the last one is used up.
struct EngineSource {
    engine: Engine,
    buf: Vec<f32>,
    pos: usize,
    latency: Duration,
    /// Real instant and local instant (heard) of frame 0 of the frame-counting clock.
    anchor: Option<(Instant, LocalMicros)>,
    frames: u64,
}

impl EngineSource {
    fn new(engine: Engine, latency: Duration) -> Self {
        let format = engine.format();
        let len = format.period_frames * usize::from(format.channels);
        Self {
            engine,
            buf: vec![0.0; len],
            pos: len,
            latency,
            anchor: None,
            frames: 0,
        }
    }

    fn render_next(&mut self) {
        let format = self.engine.format();
        let period =
            Duration::from_secs_f64(format.period_frames as f64 / f64::from(format.sample_rate));
        let slack = self.latency + 2 * period;
        let now = Instant::now();
        let latency_micros = i64::try_from(self.latency.as_micros()).unwrap_or(i64::MAX);
        let fresh = || (now, self.engine.timeline().now() + latency_micros);
        let (start, local_start) = *self.anchor.get_or_insert_with(fresh);
        let counted = Duration::from_secs_f64(self.frames as f64 / f64::from(format.sample_rate));
        let real = now.duration_since(start);
        let (start, local_start) = if real > counted + slack {
            // The device fell behind (an xrun, a suspended stream): start counting afresh.
            self.frames = 0;
            let anchor = (now, self.engine.timeline().now() + latency_micros);
            self.anchor = Some(anchor);
            anchor
        } else {
            if counted > real + slack {
                // Pulled faster than real time (a null device): hold back like a sound card would.
                std::thread::sleep(counted - real - slack);
            }
            (start, local_start)
        };
        let _ = start;
        let counted = self.frames as f64 * 1e6 / f64::from(format.sample_rate);
        let at = local_start + counted.round() as i64;
        self.engine.render(at, None, &mut self.buf);
        self.frames += format.period_frames as u64;
        self.pos = 0;
    }
}

impl Iterator for EngineSource {
    type Item = f32;

    fn next(&mut self) -> Option<f32> {
        if self.pos >= self.buf.len() {
            self.render_next();
        }
        let sample = self.buf.get(self.pos).copied();
        self.pos += 1;
        sample
    }
}

impl Source for EngineSource {
    fn current_span_len(&self) -> Option<usize> {
        None
    }

    fn channels(&self) -> rodio::ChannelCount {
        // The engine's format was validated non-zero when the player was made.
        NonZero::new(self.engine.format().channels).unwrap_or(NonZero::<u16>::MIN)
    }

    fn sample_rate(&self) -> rodio::SampleRate {
        NonZero::new(self.engine.format().sample_rate).unwrap_or(NonZero::<u32>::MIN)
    }

    fn total_duration(&self) -> Option<Duration> {
        None
    }
}
