//! The render path's cost, without a sound server: how long
//! [`firefly_player::Engine::render`] takes for one device period.
//!
//! ```sh
//! cargo run --release -p firefly-player --example render -- [CHANNELS] [--dump FILE | --compare FILE]
//! ```
//!
//! The case of `firefly bench heard`: a 44.1 kHz stereo 16-bit click track
//! resampled to a 48 kHz device that calls back for 1,600 frames (ALSA's
//! `pulse` plugin, 30 callbacks a second), the playback rate slewing by a few
//! hundred ppm every period as the node's controller does. The engine is
//! driven by hand (`Player::detached`), with a short sleep between periods
//! so the decoder keeps up and the caches cool as between real callbacks.
//! It prints one JSON object: the mean and median wall time of a period's
//! render, and what that costs a core at 30 periods a second.
//!
//! `--dump` writes the rendered samples (raw `f32`, native endian) and
//! `--compare` checks a run against such a file (largest sample difference),
//! so a faster renderer can be shown to play the same sound.
#![allow(clippy::unwrap_used)]

use firefly_player::{
    Decoder, LinearTimeline, LocalMicros, OutputFormat, Player, PlayerConfig, PlayerEvent,
    SwarmMicros,
};
use std::time::{Duration, Instant};

const TRACK_RATE: u32 = 44_100;
const DEVICE_RATE: u32 = 48_000;
/// Frames per device callback (ALSA's `pulse` plugin: three periods of 33 ms).
const CALLBACK_FRAMES: usize = 1_600;
const SECONDS: usize = 60;

fn click_track(path: &std::path::Path, seconds: usize) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: TRACK_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for n in 0..seconds * TRACK_RATE as usize {
        let t = (n as f64 / f64::from(TRACK_RATE)) % 0.5;
        // A 4 ms Hann-windowed chirp from 1 to 6 kHz every half second.
        let s = if t < 0.004 {
            let window = 0.5 - 0.5 * (std::f64::consts::TAU * t / 0.004).cos();
            let phase = std::f64::consts::TAU * (1_000.0 * t + 5_000.0 / 0.004 * t * t / 2.0);
            window * phase.sin()
        } else {
            0.0
        };
        let s = (s * 0.8 * f64::from(i16::MAX)) as i16;
        w.write_sample(s).unwrap();
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let channels: u16 = args.first().and_then(|a| a.parse().ok()).unwrap_or(2);
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let dump = flag("--dump");
    let compare = flag("--compare");

    let dir = std::env::temp_dir().join(format!("firefly-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("clicks.wav");
    click_track(&path, SECONDS + 5);

    let format = OutputFormat::new(DEVICE_RATE, channels, Duration::from_millis(10));
    let timeline = std::sync::Arc::new(LinearTimeline::new(0.0, 0));
    let (mut player, mut engine) =
        Player::detached(format, timeline.clone(), PlayerConfig::default()).unwrap();
    player
        .play(
            Decoder::open_file(&path, channels).unwrap(),
            0,
            SwarmMicros(0),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    let ch = usize::from(channels);
    let mut buf = vec![0.0f32; CALLBACK_FRAMES * ch];
    let periods = SECONDS * DEVICE_RATE as usize / CALLBACK_FRAMES;
    let mut took = Vec::with_capacity(periods);
    let mut rendered = Vec::new();
    let mut underruns = 0;
    for period in 0..periods {
        let n = engine.output_frames();
        let at = LocalMicros((n as f64 * 1e6 / f64::from(DEVICE_RATE)).round() as i64);
        // The controller's kind of rate: ±300 ppm, moving every period.
        timeline.set_rate(1.0 + 300e-6 * (period as f64 * 0.37).sin());
        let began = Instant::now();
        engine.render(at, None, &mut buf);
        took.push(began.elapsed());
        if dump.is_some() || compare.is_some() {
            rendered.extend_from_slice(&buf);
        }
        while let Some(event) = player.poll_event() {
            if matches!(event, PlayerEvent::Underrun { .. }) {
                underruns += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::fs::remove_dir_all(&dir).ok();

    let mean = took.iter().sum::<Duration>().as_secs_f64() / took.len() as f64;
    took.sort();
    let median = took[took.len() / 2].as_secs_f64();
    let mut report = format!(
        "{{\"channels\": {channels}, \"periods\": {periods}, \"period_frames\": {CALLBACK_FRAMES}, \
         \"mean_us\": {:.1}, \"median_us\": {:.1}, \"core_percent_at_30_per_s\": {:.3}, \"underruns\": {underruns}",
        mean * 1e6,
        median * 1e6,
        mean * 30.0 * 100.0
    );
    if let Some(file) = dump {
        let bytes: Vec<u8> = rendered.iter().flat_map(|s| s.to_ne_bytes()).collect();
        std::fs::write(file, bytes).unwrap();
    }
    if let Some(file) = compare {
        let bytes = std::fs::read(file).unwrap();
        let reference: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let worst = reference
            .iter()
            .zip(&rendered)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        report += &format!(
            ", \"compared_samples\": {}, \"same_length\": {}, \"largest_difference\": {worst:e}",
            reference.len().min(rendered.len()),
            reference.len() == rendered.len()
        );
    }
    println!("{report}}}");
}
