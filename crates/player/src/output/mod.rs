//! Where rendered frames go: one trait, three outputs.
//!
//! An [`Output`] takes the [`Engine`] and drives it from its own thread, one
//! period at a time, telling it when each period will be heard:
//!
//! - [`DeviceOutput`]: the sound card, through cpal (as rodio re-exports it; the default);
//! - [`VirtualOutput`]: a model of a sound card on the monotonic clock (its
//!   own crystal rate, a reported delay with jitter, periods of varying
//!   size), for tests, the demo and headless nodes; it can keep what it
//!   played in a [`Recording`];
//! - [`WavOutput`]: a clocked consumer writing a WAV file.
//!
//! The device and the virtual device share one timing path
//! ([`driver`](self::driver)): each period is stamped with its playback
//! instant from the device's own reports, fitted against the local clock by
//! [`device_clock`](self::device_clock). [`OutputChoice`] parses the node's
//! `--output` flag into one of them.

mod alsa_messages;
mod clocked;
mod device;
mod device_clock;
#[cfg(test)]
mod device_clock_replay;
mod driver;
mod realtime;

pub use clocked::{DeviceModel, Pacing, Recording, VirtualOutput, WavOutput, WavSamples};
pub use device::{DeviceOutput, device_names};
pub use driver::{OutputReport, OutputTiming};
pub(crate) use driver::{OutputStats, PeriodDriver, PeriodTiming};

use crate::engine::{Engine, OutputFormat};
use crate::error::OutputError;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Something that consumes rendered frames at its own pace.
pub trait Output: Send {
    /// The frames it consumes.
    fn format(&self) -> OutputFormat;

    /// Starts consuming: drives `engine` from a thread of its own until stopped.
    fn start(self: Box<Self>, engine: Engine) -> Result<RunningOutput, OutputError>;
}

/// A started output; dropping it stops it.
#[derive(Debug)]
pub struct RunningOutput {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), OutputError>>>,
    stats: Arc<OutputStats>,
}

impl RunningOutput {
    pub(crate) fn new(
        stop: Arc<AtomicBool>,
        thread: JoinHandle<Result<(), OutputError>>,
        stats: Arc<OutputStats>,
    ) -> Self {
        Self {
            stop,
            thread: Some(thread),
            stats,
        }
    }

    /// What the output has seen so far: its timing, underruns, the device's rate.
    pub fn report(&self) -> OutputReport {
        self.stats.report()
    }

    /// Whether the output's thread is still running.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the output, waits for its thread and returns how it ended.
    pub fn stop(mut self) -> Result<(), OutputError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), OutputError> {
        self.stop.store(true, Ordering::Relaxed);
        // A thread that waits between its checks (the device's supervisor)
        // sees the flag at once.
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(OutputError::Thread(std::io::Error::other(
                "output thread panicked",
            ))),
            None => Ok(()),
        }
    }
}

impl Drop for RunningOutput {
    fn drop(&mut self) {
        if let Err(err) = self.stop_and_join() {
            tracing::warn!(%err, "output ended with an error");
        }
    }
}

/// The node's `--output` choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputChoice {
    /// The system's default sound device (`default`).
    DefaultDevice,
    /// A sound device by name (`device:NAME`).
    Device(String),
    /// The clocked virtual output (`virtual`).
    Virtual,
    /// A WAV file written in real time (`wav:PATH`).
    Wav(PathBuf),
}

impl OutputChoice {
    /// The accepted forms, for help and error messages.
    pub const FORMS: &'static str = "default, device:NAME, virtual, wav:PATH";

    /// The format used by the virtual and WAV outputs (a device uses its own):
    /// 44.1 kHz stereo, the rate of most music, in 10 ms periods.
    pub fn clocked_format() -> OutputFormat {
        OutputFormat::new(44_100, 2, std::time::Duration::from_millis(10))
    }

    /// Makes the output this choice names (opening the device, if it is one;
    /// a WAV file is created when the output starts).
    pub fn open(&self) -> Result<Box<dyn Output>, OutputError> {
        Ok(match self {
            Self::DefaultDevice => Box::new(DeviceOutput::open(None)?),
            Self::Device(name) => Box::new(DeviceOutput::open(Some(name))?),
            Self::Virtual => Box::new(VirtualOutput::new(Self::clocked_format())),
            Self::Wav(path) => Box::new(WavOutput::new(Self::clocked_format(), path)),
        })
    }
}

impl std::str::FromStr for OutputChoice {
    type Err = OutputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || OutputError::UnknownChoice {
            given: s.to_string(),
            choices: Self::FORMS.to_string(),
        };
        match s {
            "default" | "device" => Ok(Self::DefaultDevice),
            "virtual" => Ok(Self::Virtual),
            _ => match s.split_once(':') {
                Some(("device", name)) if !name.is_empty() => Ok(Self::Device(name.to_string())),
                Some(("wav", path)) if !path.is_empty() => Ok(Self::Wav(PathBuf::from(path))),
                _ => Err(unknown()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_choices_parse_and_bad_ones_list_the_forms() {
        assert_eq!(
            "virtual".parse::<OutputChoice>().ok(),
            Some(OutputChoice::Virtual)
        );
        assert_eq!(
            "device:hw:0".parse::<OutputChoice>().ok(),
            Some(OutputChoice::Device("hw:0".into()))
        );
        assert_eq!(
            "wav:/tmp/x.wav".parse::<OutputChoice>().ok(),
            Some(OutputChoice::Wav("/tmp/x.wav".into()))
        );
        let err = "speakers"
            .parse::<OutputChoice>()
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("wav:PATH") && e.contains("speakers")));
        assert!("wav:".parse::<OutputChoice>().is_err());
    }

    #[test]
    fn clocked_choices_open_with_the_clocked_format() {
        for choice in [
            OutputChoice::Virtual,
            OutputChoice::Wav("/nonexistent/x.wav".into()),
        ] {
            let output = choice.open().ok().map(|o| o.format());
            assert_eq!(output, Some(OutputChoice::clocked_format()));
        }
    }
}
