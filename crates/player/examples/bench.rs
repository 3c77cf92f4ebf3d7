//! The player's benchmark: prints one JSON object with the issue's goals.
//!
//! ```sh
//! cargo run --release -p firefly-player --example bench
//! ```
//!
//! - `start`: start error of the clocked virtual output against the real
//!   instant its schedule names, over several starts (goal ≤ 1 frame);
//! - `drift`: 60 s of output at +300 ppm on the engine's unpaced clock; the
//!   source frames emitted against `60 s × 44 100 × 1.0003` (goal ±1 frame),
//!   cross-checked against the audio itself (least squares, 0.01-frame steps);
//! - `cpu`: a 44.1 kHz stereo MP3 played in real time through the virtual
//!   output with the playback rate slewing every period, process CPU time
//!   over wall time (goal ≤ 5% of one core), next to a silent-output baseline;
//! - `decode`: decoding speed per format as a multiple of real time (goal ≥ 100×).
#![allow(clippy::unwrap_used)]

use firefly_player::{
    Decoder, LinearTimeline, LocalMicros, OutputFormat, Player, PlayerConfig, PlayerEvent,
    Recording, SwarmMicros, Timeline, VirtualOutput,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RATE: u32 = 44_100;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

fn format() -> OutputFormat {
    OutputFormat::new(RATE, 2, Duration::from_millis(10))
}

/// Process CPU time (user + system, all threads, living or ended), from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // Linux reports in USER_HZ, 100 on every mainstream configuration.
    Duration::from_millis(ticks * 10)
}

fn start_errors(trials: usize) -> Vec<f64> {
    let mut errors = Vec::new();
    for _ in 0..trials {
        let timeline = Arc::new(LinearTimeline::new(0.0, 0));
        let recording = Recording::new(RATE as usize, 2);
        let mut output = VirtualOutput::new(format());
        output.record(recording.clone());
        let mut player =
            Player::start(Box::new(output), timeline.clone(), PlayerConfig::default()).unwrap();
        // A start instant off the frame grid.
        let at = timeline.to_swarm(timeline.now()) + 250_000 + 7;
        let track = player.open_file(&fixture("reference.wav")).unwrap();
        player.play(track, 0, at).unwrap();
        std::thread::sleep(Duration::from_millis(600));
        player.shutdown().unwrap();
        let samples = recording.samples();
        let first = samples.chunks_exact(2).position(|f| f[0] != 0.0).unwrap();
        let heard = recording.first_instant().unwrap()
            + Duration::from_secs_f64(first as f64 / f64::from(RATE));
        let target = timeline.instant_of_swarm(at);
        let error = if heard >= target {
            heard.duration_since(target).as_secs_f64()
        } else {
            -target.duration_since(heard).as_secs_f64()
        };
        errors.push(error * f64::from(RATE));
    }
    errors
}

fn music(frames: usize) -> Vec<f32> {
    (0..frames)
        .flat_map(|i| {
            let t = i as f64 / f64::from(RATE);
            let l = 0.3 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + 0.2 * (2.0 * std::f64::consts::PI * 1234.5 * t + 0.3).sin();
            let r = 0.3 * (2.0 * std::f64::consts::PI * 660.0 * t).sin()
                + 0.2 * (2.0 * std::f64::consts::PI * 987.0 * t + 0.7).sin();
            [l as f32, r as f32]
        })
        .collect()
}

fn drift(seconds: u64, rate: f64) -> serde_like::Drift {
    let dir = std::env::temp_dir().join(format!("firefly-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("long.wav");
    let source = music((seconds as usize + 5) * RATE as usize);
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for &s in &source {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();

    let timeline = Arc::new(LinearTimeline::new(0.0, 0));
    timeline.set_rate(rate);
    let (mut player, mut engine) =
        Player::detached(format(), timeline.clone(), PlayerConfig::default()).unwrap();
    player
        .play(Decoder::open_file(&path, 2).unwrap(), 0, SwarmMicros(0))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let period = format().period_frames;
    let mut buf = vec![0.0f32; period * 2];
    let total = seconds * u64::from(RATE);
    let mut first = None;
    let mut last = None;
    let mut tail = Vec::new();
    let mut underruns = 0;
    while engine.output_frames() < total {
        let n = engine.output_frames();
        let at = LocalMicros((n as f64 * 1e6 / f64::from(RATE)).round() as i64);
        engine.render(at, None, &mut buf);
        if total - n <= 4 * period as u64 {
            tail.extend_from_slice(&buf);
        }
        while let Some(event) = player.poll_event() {
            match event {
                PlayerEvent::Flash(f) => {
                    first.get_or_insert(f);
                    last = Some(f);
                }
                PlayerEvent::Underrun { .. } => underruns += 1,
                _ => {}
            }
        }
        // Unpaced, the renderer outruns a decoder that is still filling: let it keep up.
        if n % (u64::from(RATE) * 2) == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let (first, last) = (first.unwrap(), last.unwrap());
    let output_frames = (last.output_frame - first.output_frame) as f64;
    let emitted = last.position - first.position;
    let expected = output_frames * rate;
    // Cross-check with the audio: where in the source is the last rendered stretch?
    let tail_start = (total - 4 * period as u64 - first.output_frame) as f64;
    let predicted = first.position + tail_start * rate;
    let left: Vec<f32> = tail.iter().step_by(2).copied().collect();
    let src_left: Vec<f32> = source.iter().step_by(2).copied().collect();
    // The source at a fractional position, and the squared error of the tail
    // against the source read from `start` at `rate` frames per output frame.
    let sample_at = |p: f64| {
        let (k, fr) = (p.floor() as usize, p - p.floor());
        f64::from(src_left[k]) * (1.0 - fr) + f64::from(src_left[k + 1]) * fr
    };
    let error_at = |start: f64| -> f64 {
        (100..left.len() - 100)
            .map(|i| (f64::from(left[i]) - sample_at(start + i as f64 * rate)).powi(2))
            .sum()
    };
    let measured = (-500..=500)
        .map(|j| predicted + f64::from(j) * 0.01)
        .min_by(|a, b| error_at(*a).total_cmp(&error_at(*b)))
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    serde_like::Drift {
        seconds,
        rate,
        expected_frames: expected,
        emitted_frames: emitted,
        difference_frames: emitted - expected,
        audio_position_error_frames: measured - predicted,
        underruns,
    }
}

fn cpu(seconds: u64, play: bool) -> f64 {
    let timeline = Arc::new(LinearTimeline::new(0.0, 0));
    let output = VirtualOutput::new(format());
    let mut player =
        Player::start(Box::new(output), timeline.clone(), PlayerConfig::default()).unwrap();
    let mp3 = fixture("tone.mp3");
    let track_len = Duration::from_secs(2);
    let mut next_start = timeline.to_swarm(timeline.now()) + 200_000;
    std::thread::sleep(Duration::from_millis(100));
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    let end = wall0 + Duration::from_secs(seconds);
    let mut tick = 0u64;
    while Instant::now() < end {
        if play && timeline.to_swarm(timeline.now()) + 500_000 > next_start {
            // Queue the 2 s MP3 back to back: a continuous 44.1 kHz stereo MP3 stream.
            let track = player.open_file(&mp3).unwrap();
            player.play(track, 0, next_start).unwrap();
            next_start = next_start + track_len.as_micros() as i64;
        }
        // Slew the rate the way a controller would: ±300 ppm, changing every 10 ms.
        tick += 1;
        timeline.set_rate(1.0 + 300e-6 * ((tick as f64) / 50.0).sin());
        while player.poll_event().is_some() {}
        std::thread::sleep(Duration::from_millis(10));
    }
    let (cpu1, wall1) = (cpu_time(), Instant::now());
    player.shutdown().unwrap();
    (cpu1 - cpu0).as_secs_f64() / (wall1 - wall0).as_secs_f64()
}

fn decode_speed(name: &str) -> f64 {
    let path = fixture(name);
    let mut audio = 0.0;
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(1) || rounds < 3 {
        let mut d = Decoder::open_file(&path, 2).unwrap();
        let mut out = Vec::new();
        while d.next_block(&mut out).unwrap().is_some() {
            audio += out.len() as f64 / 2.0 / f64::from(d.info().sample_rate);
            out.clear();
        }
        rounds += 1;
    }
    audio / started.elapsed().as_secs_f64()
}

/// Just enough JSON for a flat report, to keep the example dependency-free.
mod serde_like {
    pub(crate) struct Drift {
        pub(crate) seconds: u64,
        pub(crate) rate: f64,
        pub(crate) expected_frames: f64,
        pub(crate) emitted_frames: f64,
        pub(crate) difference_frames: f64,
        pub(crate) audio_position_error_frames: f64,
        pub(crate) underruns: u32,
    }

    impl Drift {
        pub(crate) fn json(&self) -> String {
            format!(
                "{{\"seconds\": {}, \"rate\": {}, \"expected_frames\": {:.3}, \"emitted_frames\": {:.3}, \"difference_frames\": {:.6}, \"audio_position_error_frames\": {:.3}, \"underruns\": {}}}",
                self.seconds,
                self.rate,
                self.expected_frames,
                self.emitted_frames,
                self.difference_frames,
                self.audio_position_error_frames,
                self.underruns
            )
        }
    }
}

fn main() {
    let errors = start_errors(5);
    let worst = errors.iter().fold(0.0f64, |m, e| m.max(e.abs()));
    let drift = drift(60, 1.0003);
    let cpu_idle = cpu(10, false);
    let cpu_play = cpu(10, true);
    let decode: Vec<String> = [
        "tone.mp3",
        "tone.flac",
        "tone.ogg",
        "tone.m4a",
        "reference.wav",
    ]
    .iter()
    .map(|name| format!("\"{name}\": {:.0}", decode_speed(name)))
    .collect();
    let errors_json: Vec<String> = errors.iter().map(|e| format!("{e:.3}")).collect();
    println!(
        "{{\"start_error_frames\": [{}], \"start_error_worst_frames\": {worst:.3}, \"drift\": {}, \"cpu_share_of_one_core\": {{\"silent_output_baseline\": {cpu_idle:.4}, \"mp3_realtime_with_drift_correction\": {cpu_play:.4}}}, \"decode_times_realtime\": {{{}}}}}",
        errors_json.join(", "),
        drift.json(),
        decode.join(", ")
    );
}
