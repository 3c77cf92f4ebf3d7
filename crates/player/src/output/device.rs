//! The real sound device, through cpal (the one rodio re-exports).
//!
//! [`DeviceOutput::open`] finds the device (the default one, or one named by
//! its ALSA PCM name, cpal id or description) and reads its default format.
//! [`Output::start`] opens a cpal output stream whose callback renders
//! straight into the device's buffer through the shared [`PeriodDriver`]:
//! every period is stamped with the instant its first frame will be heard,
//! which cpal gives as the callback instant plus the delay the host reports
//! (`OutputCallbackInfo::timestamp`: `playback − callback`). Only that
//! difference is used, added to the node's local clock read in the callback,
//! so it does not matter which OS clock a host's `StreamInstant`s count on
//! (ALSA hardware: `CLOCK_MONOTONIC_RAW` timestamps of the DMA pointer;
//! ALSA's `pulse` plugin, which gives no timestamps: `std::time::Instant`
//! at the callback) or whether the node's clock is skewed.
//!
//! Streams are built on the output's control thread, which first moves
//! itself to real-time priority where the system allows it, so that the
//! audio stack's threads (cpal's worker, libpulse's mainloop) inherit it and
//! a busy machine does not starve them ([`realtime`](super::realtime)).
//!
//! The callback never sleeps, blocks or allocates: the driver is behind a
//! mutex only the stream's thread locks while the stream runs (`try_lock`,
//! silence if ever busy). A control thread watches the stream: a device that
//! disappears, fails or stops calling back for two seconds is logged once,
//! closed, and opened again every second until it returns; the swarm goes
//! on meanwhile. Host-reported xruns are counted as underruns.

use super::device_clock::YoungWitness;
use super::{Output, OutputStats, OutputTiming, PeriodDriver, PeriodTiming, RunningOutput};
use crate::engine::{Engine, OutputFormat};
use crate::error::OutputError;
use rodio::cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use rodio::cpal::{self, FromSample, SampleFormat, SizedSample};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Frames per engine period for the format's bookkeeping (about 10 ms); the
/// device's own callbacks may be any size.
const PERIOD: Duration = Duration::from_millis(10);
/// The device period asked for.
const DEVICE_PERIOD: Duration = Duration::from_millis(50);
/// A stream that has not called back for this long is taken as stopped.
const STALL: Duration = Duration::from_secs(2);
/// Errors within a second after which a stream is taken as failing.
const FAILING_ERRORS: u64 = 50;
/// How often a lost device is looked for again.
const RETRY: Duration = Duration::from_secs(1);
/// How often the supervisor looks at a stream (stalls count in seconds;
/// a stop wakes it at once). Each look is a wake-up of its own: at 50 ms
/// they were a tenth of the output path's CPU.
const SUPERVISE_EVERY: Duration = Duration::from_millis(250);

/// The names of the output devices on this machine (ALSA PCM names on Linux).
pub fn device_names() -> Vec<String> {
    super::alsa_messages::quietly(list_device_names)
}

fn list_device_names() -> Vec<String> {
    let host = cpal::default_host();
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

fn find_device(name: Option<&str>) -> Result<cpal::Device, OutputError> {
    super::alsa_messages::quietly(|| look_up_device(name))
}

fn look_up_device(name: Option<&str>) -> Result<cpal::Device, OutputError> {
    let host = cpal::default_host();
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
    sample_format: SampleFormat,
}

impl DeviceOutput {
    /// Finds the device `name` (`None`: the default one) and reads its default
    /// format. For devices that accept any rate (ALSA `plug`), cpal's default
    /// may differ between runs (44.1 or 48 kHz); [`DeviceOutput::with_format`]
    /// pins it.
    pub fn open(name: Option<&str>) -> Result<Self, OutputError> {
        let label = name.unwrap_or("default");
        let device = find_device(name)?;
        let config = super::alsa_messages::quietly(|| device.default_output_config())
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
            sample_format: config.sample_format(),
        })
    }

    /// Whether the device `name` (`None`: the default one) can be opened for
    /// playback now: opens a stream on it (silent, never started) and closes it.
    pub fn probe(name: Option<&str>) -> Result<(), OutputError> {
        let output = Self::open(name)?;
        let label = output.label();
        let device = find_device(name)?;
        let config = cpal::StreamConfig {
            channels: output.format.channels,
            sample_rate: output.format.sample_rate,
            buffer_size: cpal::BufferSize::Default,
        };
        super::alsa_messages::quietly(|| {
            device.build_output_stream_raw(
                config,
                output.sample_format,
                |_: &mut cpal::Data, _: &cpal::OutputCallbackInfo| {},
                |_| {},
                None,
            )
        })
        .map(drop)
        .map_err(|e| device_error(&label, e))
    }

    /// Uses `sample_rate` and `channels` instead of the device's defaults.
    pub fn with_format(&mut self, sample_rate: u32, channels: u16) -> &mut Self {
        self.format = OutputFormat::new(sample_rate, channels, PERIOD);
        self
    }

    fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| "default".into())
    }
}

impl Output for DeviceOutput {
    fn format(&self) -> OutputFormat {
        self.format
    }

    fn start(self: Box<Self>, engine: Engine) -> Result<RunningOutput, OutputError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_thread = Arc::clone(&stop);
        let stats = Arc::new(OutputStats::default());
        let watch = Watch {
            stats: Arc::clone(&stats),
            lost: Arc::new(AtomicBool::new(false)),
            other_errors: Arc::new(AtomicU64::new(0)),
            callback_thread: Arc::new(AtomicU64::new(0)),
            callback_task: Arc::new(AtomicU32::new(0)),
            callback_realtime: Arc::new(AtomicBool::new(true)),
        };
        let driver = Arc::new(Mutex::new(PeriodDriver::new(
            engine,
            Arc::clone(&stats),
            YoungWitness::Callbacks,
        )));
        let (opened_tx, opened_rx) = std::sync::mpsc::sync_channel(1);
        // Every stream is built on this thread, promoted to real-time priority
        // first, so the threads the audio stack starts inherit it (see `realtime`).
        let thread = std::thread::Builder::new()
            .name("firefly-device-out".into())
            .spawn(move || {
                let realtime = match super::realtime::promote_current_thread(
                    super::realtime::CONTROL_PRIORITY,
                ) {
                    Ok(()) => true,
                    Err(why) => {
                        tracing::info!(
                            %why,
                            "the sound output runs without real-time priority (not permitted); \
                             a busy machine may make it underrun"
                        );
                        false
                    }
                };
                watch.stats.set_realtime(realtime);
                let label = self.label();
                // The first opening is the caller's: a device that cannot open is its error.
                let stream = match open_stream(&self, &driver, &watch) {
                    Ok(stream) => stream,
                    Err(err) => {
                        let _ = opened_tx.send(Err(err));
                        return Ok(());
                    }
                };
                tracing::info!(device = %label, format = ?self.format, sample_format = ?self.sample_format, realtime, "audio device open");
                let _ = opened_tx.send(Ok(()));
                supervise(&self, stream, &driver, &watch, &stop_thread);
                Ok(())
            })
            .map_err(OutputError::Thread)?;
        match opened_rx.recv() {
            Ok(Ok(())) => Ok(RunningOutput::new(stop, thread, stats)),
            Ok(Err(err)) => {
                let _ = thread.join();
                Err(err)
            }
            Err(_) => Err(OutputError::Thread(std::io::Error::other(
                "the output thread ended before opening the device",
            ))),
        }
    }
}

/// What the stream's callbacks tell the control thread.
#[derive(Clone)]
struct Watch {
    stats: Arc<OutputStats>,
    /// The device reported itself gone or invalid.
    lost: Arc<AtomicBool>,
    other_errors: Arc<AtomicU64>,
    /// The current stream's callback thread (`realtime::current_thread`; 0: none yet).
    callback_thread: Arc<AtomicU64>,
    /// Its task id in `/proc/self/task` (0: unknown).
    callback_task: Arc<AtomicU32>,
    /// Whether callback threads may keep real-time priority (not after one spun).
    callback_realtime: Arc<AtomicBool>,
}

/// Keeps the stream running: reopens it when the device goes away or stalls.
fn supervise(
    output: &DeviceOutput,
    first: cpal::Stream,
    driver: &Arc<Mutex<PeriodDriver>>,
    watch: &Watch,
    stop: &AtomicBool,
) {
    let label = output.label();
    let mut stream = Some(first);
    let mut last_periods = watch.stats.periods();
    let mut last_progress = Instant::now();
    let mut last_try = Instant::now();
    let mut errors_then = (watch.other_errors.load(Ordering::Relaxed), Instant::now());
    let mut spin = SpinWatch::default();
    while !stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(SUPERVISE_EVERY);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        spin.check(watch, now, &label);
        if stream.is_some() {
            let periods = watch.stats.periods();
            if periods != last_periods {
                last_periods = periods;
                last_progress = now;
            }
            let stalled = now.duration_since(last_progress) > STALL;
            let lost = watch.lost.load(Ordering::Relaxed);
            // A stream that fails over and over while playing nothing (a host
            // stuck in an error state) is reopened too; errors between
            // periods that still flow are only counted.
            let errors = watch.other_errors.load(Ordering::Relaxed);
            let failing = errors.saturating_sub(errors_then.0) > FAILING_ERRORS
                && now.duration_since(last_progress) > Duration::from_millis(500);
            if now.duration_since(errors_then.1) >= Duration::from_secs(1) {
                errors_then = (errors, now);
            }
            if stalled || lost || failing {
                errors_then = (errors, now);
                let why = if lost {
                    "the device went away"
                } else if failing {
                    "the device keeps failing"
                } else {
                    "the device stopped calling back"
                };
                tracing::warn!(device = %label, "sound output stopped: {why}; reopening it when it returns (the swarm keeps running)");
                drop(stream.take());
                watch.stats.set_timing(OutputTiming::Lost);
                last_try = now;
            }
            continue;
        }
        if now.duration_since(last_try) < RETRY {
            continue;
        }
        last_try = now;
        watch.lost.store(false, Ordering::Relaxed);
        if let Ok(mut d) = driver.lock() {
            d.restart();
        }
        match open_stream(output, driver, watch) {
            Ok(s) => {
                tracing::info!(device = %label, "sound device back; playing again");
                watch.stats.count_reopen();
                stream = Some(s);
                last_periods = watch.stats.periods();
                last_progress = now;
            }
            Err(err) => tracing::debug!(device = %label, %err, "sound device still unavailable"),
        }
    }
    drop(stream);
}

/// Guards against a real-time callback thread that spins (a plugin that
/// reports ready without room; see `realtime`): once a second, the
/// thread's CPU time; beyond [`realtime::SPIN_SHARE`](super::realtime::SPIN_SHARE)
/// of a core it is returned to normal scheduling, and so are later ones.
#[derive(Default)]
struct SpinWatch {
    /// The task measured, its CPU seconds and when.
    last: Option<(u32, f64, Instant)>,
}

impl SpinWatch {
    fn check(&mut self, watch: &Watch, now: Instant, label: &str) {
        if let Some((_, _, at)) = self.last
            && now.duration_since(at) < Duration::from_secs(1)
        {
            return;
        }
        let task = watch.callback_task.load(Ordering::Relaxed);
        if task == 0 || !watch.callback_realtime.load(Ordering::Relaxed) {
            self.last = None;
            return;
        }
        let Some(cpu) = super::realtime::cpu_seconds(task) else {
            self.last = None;
            return;
        };
        if let Some((last_task, last_cpu, at)) = self.last
            && last_task == task
        {
            let share = (cpu - last_cpu) / now.duration_since(at).as_secs_f64();
            if share > super::realtime::SPIN_SHARE {
                watch.callback_realtime.store(false, Ordering::Relaxed);
                let thread = watch.callback_thread.load(Ordering::Relaxed);
                let demoted = super::realtime::demote(thread);
                watch.stats.set_realtime(false);
                tracing::warn!(
                    device = %label,
                    share,
                    ?demoted,
                    "the sound output's callback thread spins at real-time priority; \
                     it runs at normal priority from now on"
                );
            }
        }
        self.last = Some((task, cpu, now));
    }
}

/// Opens and starts a stream on the output's device, rendering through `driver`.
fn open_stream(
    output: &DeviceOutput,
    driver: &Arc<Mutex<PeriodDriver>>,
    watch: &Watch,
) -> Result<cpal::Stream, OutputError> {
    let label = output.label();
    let device = find_device(output.name.as_deref())?;
    // A buffer of about 100 ms (cpal asks for two periods of 50 ms; ALSA's
    // `pulse` plugin wants three, so there it becomes three of 33 ms): room
    // for a busy machine's scheduling stalls; the latency is measured, not
    // assumed, so a longer buffer costs nothing in sync.
    let period_frames = (output.format.sample_rate as f64 * DEVICE_PERIOD.as_secs_f64()) as u32;
    let mut config = cpal::StreamConfig {
        channels: output.format.channels,
        sample_rate: output.format.sample_rate,
        buffer_size: cpal::BufferSize::Fixed(period_frames),
    };
    let build_any = |config: &cpal::StreamConfig| match output.sample_format {
        SampleFormat::F32 => build::<f32>(&device, config, driver, watch),
        SampleFormat::I16 => build::<i16>(&device, config, driver, watch),
        SampleFormat::I32 => build::<i32>(&device, config, driver, watch),
        SampleFormat::U16 => build::<u16>(&device, config, driver, watch),
        SampleFormat::F64 => build::<f64>(&device, config, driver, watch),
        other => Err(cpal::Error::with_message(
            cpal::ErrorKind::UnsupportedConfig,
            format!("unsupported sample format {other:?}"),
        )),
    };
    let stream = match super::alsa_messages::quietly(|| build_any(&config)) {
        Ok(stream) => stream,
        Err(err) if err.kind() == cpal::ErrorKind::UnsupportedConfig => {
            // The device's own period, then.
            config.buffer_size = cpal::BufferSize::Default;
            super::alsa_messages::quietly(|| build_any(&config))
                .map_err(|e| device_error(&label, e))?
        }
        Err(err) => return Err(device_error(&label, err)),
    };
    stream.play().map_err(|e| device_error(&label, e))?;
    Ok(stream)
}

/// On a stream's first callback: the callback thread (started by the
/// control thread, so at its real-time priority where permitted) drops under
/// the threads it waits for, or to normal scheduling after an earlier one
/// spun, and tells the control thread who it is.
fn settle_callback_thread(watch: &Watch) {
    use super::realtime;
    if realtime::current_thread_is_realtime() {
        let settled = if watch.callback_realtime.load(Ordering::Relaxed) {
            realtime::promote_current_thread(realtime::CALLBACK_PRIORITY)
        } else {
            realtime::demote(realtime::current_thread())
        };
        if let Err(why) = settled {
            tracing::warn!(%why, "cannot set the sound callback thread's priority");
        }
    }
    watch
        .callback_thread
        .store(realtime::current_thread(), Ordering::Relaxed);
    watch
        .callback_task
        .store(realtime::current_task().unwrap_or(0), Ordering::Relaxed);
}

fn build<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    driver: &Arc<Mutex<PeriodDriver>>,
    watch: &Watch,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32> + Send + 'static,
{
    let driver = Arc::clone(driver);
    let errors = watch.clone();
    let threads = watch.clone();
    let mut first = true;
    device.build_output_stream::<T, _, _>(
        *config,
        move |data: &mut [T], info: &cpal::OutputCallbackInfo| {
            if first {
                first = false;
                settle_callback_thread(&threads);
            }
            let stamp = info.timestamp();
            // The reported delay; negative if the host says the sound left before the callback.
            let delay_micros = match stamp.playback.checked_duration_since(stamp.callback) {
                Some(d) => d.as_secs_f64() * 1e6,
                None => -(stamp.callback.duration_since(stamp.playback).as_secs_f64() * 1e6),
            };
            match driver.try_lock() {
                Ok(mut driver) => {
                    let now = driver.engine().timeline().now();
                    driver.render(
                        data,
                        PeriodTiming {
                            now,
                            delay_micros: Some(delay_micros),
                            true_instant: None,
                        },
                        T::from_sample,
                    );
                }
                // Only while the control thread restarts the stream.
                Err(_) => data.fill(T::EQUILIBRIUM),
            }
        },
        move |err: cpal::Error| match err.kind() {
            cpal::ErrorKind::Xrun => errors.stats.count_underrun(),
            cpal::ErrorKind::DeviceNotAvailable | cpal::ErrorKind::StreamInvalidated => {
                errors.lost.store(true, Ordering::Relaxed);
            }
            _ => {
                let seen = errors.other_errors.fetch_add(1, Ordering::Relaxed) + 1;
                if seen.is_power_of_two() {
                    tracing::warn!(%err, seen, "sound device error");
                }
            }
        },
        None,
    )
}
