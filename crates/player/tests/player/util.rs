//! Shared helpers: signals, WAV files, a driven engine, comparisons.

use firefly_player::{
    Decoder, Engine, LinearTimeline, LocalMicros, OutputFormat, Player, PlayerConfig, PlayerEvent,
    SwarmMicros,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub(crate) const RATE: u32 = 44_100;

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

/// A band-limited stereo test signal: a few sines with different frequencies per channel.
pub(crate) fn music(frames: usize, rate: u32) -> Vec<f32> {
    let mut out = Vec::with_capacity(frames * 2);
    let r = f64::from(rate);
    for i in 0..frames {
        let t = i as f64 / r;
        let l = 0.3 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
            + 0.2 * (2.0 * std::f64::consts::PI * 1234.5 * t + 0.3).sin()
            + 0.1 * (2.0 * std::f64::consts::PI * 3210.0 * t + 1.1).sin();
        let rr = 0.3 * (2.0 * std::f64::consts::PI * 660.0 * t).sin()
            + 0.2 * (2.0 * std::f64::consts::PI * 987.0 * t + 0.7).sin()
            + 0.1 * (2.0 * std::f64::consts::PI * 2718.0 * t + 2.0).sin();
        out.push(l as f32);
        out.push(rr as f32);
    }
    out
}

/// Writes interleaved stereo float samples as a 32-bit float WAV.
pub(crate) fn write_wav(path: &Path, samples: &[f32], rate: u32, channels: u16) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// Decodes a whole file to interleaved samples with `channels` channels.
pub(crate) fn decode_all(path: &Path, channels: u16) -> (Decoder, Vec<f32>) {
    let mut d = Decoder::open_file(path, channels).unwrap();
    let mut out = Vec::new();
    while d.next_block(&mut out).unwrap().is_some() {}
    (d, out)
}

/// One channel of interleaved samples.
pub(crate) fn channel(samples: &[f32], channels: usize, c: usize) -> Vec<f32> {
    samples.iter().skip(c).step_by(channels).copied().collect()
}

/// Normalized correlation of `a[i]` with `b[i + lag]` over the overlap.
pub(crate) fn correlation(a: &[f32], b: &[f32], lag: i64) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (i, &x) in a.iter().enumerate() {
        let j = i as i64 + lag;
        if j < 0 || j as usize >= b.len() {
            continue;
        }
        let y = b[j as usize];
        ab += f64::from(x) * f64::from(y);
        aa += f64::from(x) * f64::from(x);
        bb += f64::from(y) * f64::from(y);
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

/// The lag in `range` maximizing correlation, and that correlation.
pub(crate) fn best_lag(a: &[f32], b: &[f32], range: std::ops::RangeInclusive<i64>) -> (i64, f64) {
    range
        .map(|lag| (lag, correlation(a, b, lag)))
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .unwrap()
}

/// Largest difference between consecutive samples of one channel.
pub(crate) fn max_jump(samples: &[f32], channels: usize) -> f32 {
    (0..channels)
        .map(|c| {
            let ch = channel(samples, channels, c);
            ch.windows(2)
                .map(|w| (w[1] - w[0]).abs())
                .fold(0.0, f32::max)
        })
        .fold(0.0, f32::max)
}

/// A player driven by hand over a virtual clock: period `k` is heard at local `k × period`.
pub(crate) struct Driven {
    pub(crate) player: Player,
    pub(crate) engine: Engine,
    pub(crate) timeline: Arc<LinearTimeline>,
    pub(crate) out: Vec<f32>,
    pub(crate) events: Vec<PlayerEvent>,
}

impl Driven {
    pub(crate) fn new(config: PlayerConfig) -> Self {
        let timeline = Arc::new(LinearTimeline::new(0.0, 0));
        let format = OutputFormat::new(RATE, 2, Duration::from_millis(10));
        let (player, engine) = Player::detached(format, timeline.clone(), config).unwrap();
        Self {
            player,
            engine,
            timeline,
            out: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Plays the file at `path` from `frame` at swarm instant `at`, and lets the decoder fill.
    pub(crate) fn play_file(&mut self, path: &Path, frame: u64, at: SwarmMicros) {
        let track = Decoder::open_file(path, 2).unwrap();
        self.player.play(track, frame, at).unwrap();
        self.wait_ready();
    }

    /// Waits until the last track has 2 s decoded ahead (or all of it).
    pub(crate) fn wait_ready(&self) {
        assert!(
            self.player
                .wait_ready(Duration::from_secs(2), Duration::from_secs(20))
        );
    }

    /// Local instant (µs) of output frame `n`.
    pub(crate) fn micros_of(n: u64) -> i64 {
        (n as f64 * 1e6 / f64::from(RATE)).round() as i64
    }

    /// Renders `periods` periods, collecting output and events.
    pub(crate) fn run(&mut self, periods: usize) {
        let format = self.engine.format();
        let mut buf = vec![0.0; format.period_frames * 2];
        for _ in 0..periods {
            let at = LocalMicros(Self::micros_of(self.engine.output_frames()));
            self.engine.render(at, None, &mut buf);
            self.out.extend_from_slice(&buf);
            while let Some(e) = self.player.poll_event() {
                self.events.push(e);
            }
        }
    }

    /// Renders for `seconds` of output.
    pub(crate) fn run_for(&mut self, seconds: f64) {
        let periods = (seconds * f64::from(RATE) / 441.0).round() as usize;
        self.run(periods);
    }

    pub(crate) fn flashes(&self) -> Vec<firefly_player::Flash> {
        self.events
            .iter()
            .filter_map(|e| match e {
                PlayerEvent::Flash(f) => Some(*f),
                _ => None,
            })
            .collect()
    }
}

/// The clock crate's slew controller as a node drives it: fed the player's
/// phase error, answering the rate to play at (a re-align request keeps the
/// last rate, since the player steps by itself).
pub(crate) struct Slewing(std::sync::Mutex<(firefly_clock::SlewController, f64)>);

impl Slewing {
    pub(crate) fn new() -> Self {
        Self(std::sync::Mutex::new((
            firefly_clock::SlewController::new(Default::default()),
            1.0,
        )))
    }

    pub(crate) fn rate(&self, at: firefly_player::LocalMicros, error: Option<f64>) -> f64 {
        let mut guard = self.0.lock().unwrap();
        let (slew, rate) = &mut *guard;
        match error.map(|e| slew.update(at, e)) {
            Some(firefly_clock::Correction::Rate(r)) => *rate = r,
            Some(_) => slew.reset(),
            None => {}
        }
        *rate
    }
}

/// `samples` (one channel) at a fractional position, linearly interpolated:
/// plenty for partials of a few kHz at 0.01–0.02-frame search steps.
pub(crate) fn sample_at(samples: &[f32], p: f64) -> f64 {
    let (k, fr) = (p.floor() as usize, p - p.floor());
    f64::from(samples[k]) * (1.0 - fr) + f64::from(samples[k + 1]) * fr
}
