//! The outputs, run for real: the clocked virtual output measured against the
//! real clock, the WAV output read back, and the rodio device on ALSA.

use crate::util::*;
use firefly_player::{
    DeviceOutput, LinearTimeline, OutputError, OutputFormat, Pacing, Player, PlayerConfig,
    PlayerEvent, Recording, Timeline, VirtualOutput, WavOutput, WavSamples,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn format() -> OutputFormat {
    OutputFormat::new(RATE, 2, Duration::from_millis(10))
}

#[test]
fn virtual_outputs_of_skewed_nodes_start_on_the_same_true_instant() {
    let origin = Instant::now();
    // Three nodes whose believed clocks disagree (skew and offset), each with a
    // perfect estimate of the swarm clock.
    let nodes = [(-300.0, 5_000_000_i64), (0.0, 0), (250.0, -3_000_000)];
    let reference = decode_all(&fixture("reference.wav"), 2).1;
    let mut running = Vec::new();
    // The swarm instant to start at, 400 ms from now, as the middle node sees it.
    let probe = LinearTimeline::with_origin(origin, 0.0, 0);
    let start = probe.to_swarm(probe.now()) + 400_000;
    for (skew, offset) in nodes {
        // The local clock reads `offset` µs more than the probe's and runs `skew` ppm off.
        let local_origin = if offset >= 0 {
            origin - Duration::from_micros(offset as u64)
        } else {
            origin + Duration::from_micros(offset.unsigned_abs())
        };
        let timeline = Arc::new(LinearTimeline::with_origin(local_origin, skew, 0));
        timeline.set_correction_ppm(timeline.exact_correction_ppm());
        // The swarm offset a perfect estimator would find: every node's swarm
        // clock reads the same at the same real instant.
        let local_now = timeline.now();
        let corrected = timeline.to_swarm(local_now);
        let truth = probe.to_swarm(probe.local_at(timeline.instant_of_local(local_now)));
        timeline.set_offset(truth - corrected);
        let recording = Recording::new(2 * RATE as usize, 2);
        let mut output = VirtualOutput::new(format());
        output.record(recording.clone());
        let mut player =
            Player::start(Box::new(output), timeline.clone(), PlayerConfig::default()).unwrap();
        let track = player.open_file(&fixture("reference.wav")).unwrap();
        player.play(track, 0, start).unwrap();
        running.push((player, timeline, recording));
    }
    std::thread::sleep(Duration::from_millis(1000));
    let target = probe.instant_of_swarm(start);
    for (player, timeline, recording) in running {
        let samples = recording.samples();
        let first = samples
            .chunks_exact(2)
            .position(|f| f[0] != 0.0 || f[1] != 0.0)
            .unwrap();
        let heard = recording.first_instant().unwrap()
            + Duration::from_secs_f64(first as f64 / f64::from(RATE));
        let error = heard.max(target).duration_since(heard.min(target));
        let error_frames = error.as_secs_f64() * f64::from(RATE);
        eprintln!("start error {error_frames:.3} frames");
        assert!(
            error_frames <= 1.0,
            "started {error_frames} frames off the true instant"
        );
        // What followed is the reference signal.
        let (lag, corr) = best_lag(
            &channel(&reference, 2, 0)[1000..20_000],
            &channel(&samples, 2, 0)[first..],
            999..=1001,
        );
        assert_eq!(lag, 1000, "corr {corr}");
        // Flashes carry true instants that agree with the node's swarm belief.
        let mut flashes = 0;
        while let Some(event) = player.poll_event() {
            if let PlayerEvent::Flash(f) = event {
                flashes += 1;
                let t = f.true_instant.unwrap();
                let believed = timeline.instant_of_swarm(f.swarm);
                let off = t.max(believed).duration_since(t.min(believed));
                assert!(
                    off < Duration::from_micros(40),
                    "flash {f:?} off by {off:?}"
                );
                assert!(f.error_frames.abs() < 1.0, "{f:?}");
            }
        }
        assert!(flashes > 40, "only {flashes} flashes");
        player.shutdown().unwrap();
    }
}

#[test]
fn wav_output_renders_the_schedule_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.wav");
    let timeline = Arc::new(LinearTimeline::new(0.0, 0));
    let mut output = WavOutput::new(format(), &path);
    output.samples(WavSamples::Int16).pacing(Pacing::Unpaced {
        frames: 3 * u64::from(RATE),
    });
    // Unpaced, the output would race through its frames before a command
    // arrived: queue the schedule first, then start the output on the engine.
    let (mut player, engine) =
        Player::detached(format(), timeline.clone(), PlayerConfig::default()).unwrap();
    let start = timeline.to_swarm(timeline.now()) + 300_000;
    let track = player.open_file(&fixture("tone.flac")).unwrap();
    player.play(track, 0, start).unwrap();
    let_decoder_fill();
    let running = firefly_player::Output::start(Box::new(output), engine).unwrap();
    while running.is_running() {
        std::thread::sleep(Duration::from_millis(10));
    }
    running.stop().unwrap();
    let reader = hound::WavReader::open(&path).unwrap();
    assert_eq!(reader.spec().sample_rate, RATE);
    let samples: Vec<f32> = reader
        .into_samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / f32::from(i16::MAX))
        .collect();
    assert!(samples.len() / 2 >= 2 * RATE as usize);
    let reference = decode_all(&fixture("reference.wav"), 2).1;
    let (lag, corr) = best_lag(
        &channel(&reference, 2, 0)[2000..30_000],
        &channel(&samples, 2, 0),
        0..=30_000,
    );
    assert!(corr > 0.9999, "corr {corr}");
    // The output's virtual clock starts one period after it is started, which
    // is after the decoder wait: less than the 300 ms lead remains.
    assert!(lag > 0 && lag < 13_230, "lag {lag}");
}

#[test]
fn unknown_device_is_a_clear_error_listing_the_choices() {
    let err = DeviceOutput::open(Some("no-such-card")).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, OutputError::Device { .. }), "{text}");
    assert!(
        text.contains("no-such-card") && text.contains("virtual") && text.contains("wav:PATH"),
        "{text}"
    );
}

/// The child half of the ALSA test: runs only when the parent sets the variable.
#[test]
fn alsa_child_plays_through_rodio() {
    let Ok(seconds) = std::env::var("FIREFLY_ALSA_CHILD") else {
        return;
    };
    let seconds: f64 = seconds.parse().unwrap();
    let timeline = Arc::new(LinearTimeline::new(0.0, 0));
    let output = DeviceOutput::open(None).unwrap();
    let mut player =
        Player::start(Box::new(output), timeline.clone(), PlayerConfig::default()).unwrap();
    let started = timeline.to_swarm(timeline.now());
    let at = started + 300_000;
    let track = player.open_file(&fixture("reference.wav")).unwrap();
    player.play(track, 0, at).unwrap();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let mut flashes = 0;
    while let Some(event) = player.poll_event() {
        if matches!(event, PlayerEvent::Flash(_)) {
            flashes += 1;
        }
    }
    println!("FLASHES {flashes}");
    player.shutdown().unwrap();
}

#[test]
fn rodio_device_output_reaches_alsa_intact() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("capture.raw");
    let conf = dir.path().join("asound.conf");
    std::fs::write(
        &conf,
        format!(
            r#"pcm.!default {{
    type plug
    slave {{
        pcm "firefly_capture"
        format S16_LE
        rate {RATE}
        channels 2
    }}
}}
pcm.firefly_capture {{
    type file
    slave.pcm "null"
    file "{}"
    format "raw"
}}
"#,
            capture.display()
        ),
    )
    .unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "outputs::alsa_child_plays_through_rodio",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FIREFLY_ALSA_CHILD", "2.8")
        .env(
            "ALSA_CONFIG_PATH",
            format!("/usr/share/alsa/alsa.conf:{}", conf.display()),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flashes: usize = stdout
        .split("FLASHES ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "child said: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(flashes > 150, "only {flashes} flashes");
    let raw = std::fs::read(&capture).unwrap();
    let samples: Vec<f32> = raw
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / f32::from(i16::MAX))
        .collect();
    let frames = samples.len() / 2;
    // Paced like a sound card: about 2.8 s reached ALSA (not a burst from a spinning null device).
    assert!(
        (2.4 * f64::from(RATE)..3.4 * f64::from(RATE)).contains(&(frames as f64)),
        "{frames} frames"
    );
    let first = samples
        .chunks_exact(2)
        .position(|f| f[0] != 0.0 || f[1] != 0.0)
        .unwrap();
    // Scheduled 300 ms after the device opened, less its 50 ms buffer: a loose bound.
    let lead = first as f64 / f64::from(RATE);
    assert!((0.15..0.40).contains(&lead), "sound began {lead} s in");
    let reference = decode_all(&fixture("reference.wav"), 2).1;
    // The fade-in's first samples round to zero in 16 bits: align by correlation instead.
    let mut lags = Vec::new();
    for c in 0..2 {
        let (lag, corr) = best_lag(
            &channel(&reference, 2, c)[1000..60_000],
            &channel(&samples, 2, c),
            first as i64 + 1000 - 50..=first as i64 + 1000 + 50,
        );
        assert!(corr > 0.999, "channel {c}: corr {corr}");
        lags.push(lag);
    }
    assert_eq!(lags[0], lags[1], "channels out of step");
    // No glitch anywhere: nothing jumps more than the reference does (plus 16-bit rounding).
    let jump = max_jump(&samples, 2);
    assert!(
        jump <= max_jump(&reference, 2) * 1.01 + 2.0 / 32_767.0,
        "jump {jump}"
    );
    let last = samples
        .chunks_exact(2)
        .rposition(|f| f[0] != 0.0 || f[1] != 0.0)
        .unwrap();
    let length = last - first;
    assert!(length.abs_diff(88_200) < 200, "played {length} frames");
}
