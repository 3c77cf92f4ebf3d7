//! The outputs, run for real: the clocked virtual output measured against the
//! real clock, the WAV output read back, and the cpal device on ALSA.

use crate::util::*;
use firefly_player::{
    DeviceOutput, LinearTimeline, OutputError, OutputFormat, OutputTiming, Pacing, Player,
    PlayerConfig, PlayerEvent, Recording, Timeline, VirtualOutput, WavOutput, WavSamples,
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
        // The start lands on the nearest frame (half a frame at most), plus
        // µs roundings; a delay added without the local clock's skew once
        // put 300 ppm × 40 ms = 12 µs (0.6 frames) on top.
        assert!(
            error_frames <= 0.75,
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
        let mut worst = Duration::ZERO;
        while let Some(event) = player.poll_event() {
            if let PlayerEvent::Flash(f) = event {
                flashes += 1;
                let t = f.true_instant.unwrap();
                let believed = timeline.instant_of_swarm(f.swarm);
                let off = t.max(believed).duration_since(t.min(believed));
                worst = worst.max(off);
                // About 1 µs (the clock reads' bracketing); an unscaled
                // 40 ms delay would put 10–12 µs here.
                assert!(off < Duration::from_micros(8), "flash {f:?} off by {off:?}");
                assert!(f.error_frames.abs() < 1.0, "{f:?}");
            }
        }
        eprintln!("flashes' belief off the truth by {worst:?} at most");
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
    // (The quiet fade-in rounds to zero in 16 bits, hence the search around the first sound.)
    // Unpaced, the output would race through its frames before a command
    // arrived: queue the schedule first, then start the output on the engine.
    let (mut player, engine) =
        Player::detached(format(), timeline.clone(), PlayerConfig::default()).unwrap();
    let start = timeline.to_swarm(timeline.now()) + 600_000;
    let track = player.open_file(&fixture("tone.flac")).unwrap();
    player.play(track, 0, start).unwrap();
    assert!(player.wait_ready(Duration::from_secs(2), Duration::from_secs(20)));
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
    let first = samples.chunks_exact(2).position(|f| f[0] != 0.0).unwrap() as i64;
    let (lag, corr) = best_lag(
        &channel(&reference, 2, 0)[2000..30_000],
        &channel(&samples, 2, 0),
        first + 2000 - 60..=first + 2000 + 60,
    );
    let lag = lag - 2000;
    assert!(corr > 0.9999, "corr {corr}");
    // The first flash says which output frame carried the start frame, and when.
    let flash = std::iter::from_fn(|| player.poll_event())
        .find_map(|e| match e {
            PlayerEvent::Flash(f) => Some(f),
            _ => None,
        })
        .unwrap();
    assert_eq!(flash.frame, 0);
    assert!((flash.swarm - start).abs() <= 12, "{flash:?} vs {start:?}");
    assert_eq!(
        lag, flash.output_frame as i64,
        "the file disagrees with the flash"
    );
    assert!(lag > 4410, "the output started late: {lag}");
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
fn alsa_child_plays_through_cpal() {
    let Ok(seconds) = std::env::var("FIREFLY_ALSA_CHILD") else {
        return;
    };
    let seconds: f64 = seconds.parse().unwrap();
    let timeline = Arc::new(LinearTimeline::new(0.0, 0));
    // The plug device accepts any rate and cpal's pick of a default varies
    // between 44.1 and 48 kHz; ask for the capture file's rate, so that ALSA
    // converts the sample format only and the samples can be compared exactly.
    let mut output = DeviceOutput::open(None).unwrap();
    output.with_format(RATE, 2);
    let mut player =
        Player::start(Box::new(output), timeline.clone(), PlayerConfig::default()).unwrap();
    // The null device does not pace itself; the output counts frames at the
    // nominal rate once it has noticed. Schedule after that.
    let deadline = Instant::now() + Duration::from_secs(5);
    while player.output_report().map(|r| r.timing) != Some(OutputTiming::Unpaced)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = timeline.to_swarm(timeline.now());
    let at = started + 300_000;
    let track = player.open_file(&fixture("reference.wav")).unwrap();
    player.play(track, 0, at).unwrap();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let (mut flashes, mut steps) = (0, 0);
    while let Some(event) = player.poll_event() {
        match event {
            PlayerEvent::Flash(_) => flashes += 1,
            PlayerEvent::Realigned { .. } | PlayerEvent::Underrun { .. } => steps += 1,
            _ => {}
        }
    }
    let timing = player
        .output_report()
        .map(|r| r.timing.as_str())
        .unwrap_or("none");
    println!(
        "FLASHES {flashes} STEPS {steps} TIMING {timing} END {:?}",
        player.format()
    );
    player.shutdown().unwrap();
}

#[test]
fn a_device_that_does_not_pace_is_noticed_and_survived() {
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
            "outputs::alsa_child_plays_through_cpal",
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
    assert!(flashes > 0, "no flashes");
    // ALSA's null device does not pace itself: it takes frames as fast as they
    // come. The output notices (the rate it measures is no sound card's),
    // says so, and keeps going without a panic or a stall. The sample path
    // itself is checked through a real sound server (the e2e `heard` test).
    assert!(stdout.contains("TIMING unpaced"), "{stdout}");
    let raw = std::fs::read(&capture).unwrap();
    assert!(
        raw.len() >= 4 * RATE as usize,
        "{} bytes captured",
        raw.len()
    );
}

/// A node whose swarm clock runs 400 ppm fast against its sound card (the
/// virtual output's real clock), correcting with the clock crate's slew
/// controller on the player's phase error.
struct DriftingNode {
    clock: LinearTimeline,
    slew: Slewing,
}

impl Timeline for DriftingNode {
    fn now(&self) -> firefly_player::LocalMicros {
        self.clock.now()
    }

    fn to_swarm(&self, local: firefly_player::LocalMicros) -> firefly_player::SwarmMicros {
        self.clock.to_swarm(local)
    }

    fn playback_rate(&self, at: firefly_player::LocalMicros, error: Option<f64>) -> f64 {
        self.slew.rate(at, error)
    }
}

#[test]
fn virtual_output_stays_on_a_drifting_timeline_measured_from_outside() {
    let dir = tempfile::tempdir().unwrap();
    let source = music(5 * RATE as usize, RATE);
    let path = dir.path().join("music.wav");
    write_wav(&path, &source, RATE, 2);
    let node = Arc::new(DriftingNode {
        clock: LinearTimeline::new(400.0, 0),
        slew: Slewing::new(),
    });
    let recording = Recording::new(5 * RATE as usize, 2);
    let mut output = VirtualOutput::new(format());
    output.record(recording.clone());
    let mut player =
        Player::start(Box::new(output), node.clone(), PlayerConfig::default()).unwrap();
    let start = node.to_swarm(node.now()) + 300_000;
    player
        .play(player.open_file(&path).unwrap(), 0, start)
        .unwrap();
    std::thread::sleep(Duration::from_millis(3600));
    player.shutdown().unwrap();
    let samples = recording.samples();
    let first = recording.first_instant().unwrap();
    let src_left = channel(&source, 2, 0);
    // At 1 s and 3 s of real time: where the audio is, against where the
    // node's timeline says it should be at that real instant.
    for seconds in [1.0, 3.0] {
        let n = (seconds * f64::from(RATE)) as usize;
        let heard = first + Duration::from_secs_f64(n as f64 / f64::from(RATE));
        let swarm = node.to_swarm(node.clock.local_at(heard));
        let expected = (swarm - start) as f64 * f64::from(RATE) / 1e6;
        let out_left = channel(&samples[n * 2..n * 2 + 800], 2, 0);
        let err = |p0: f64| -> f64 {
            (0..400)
                .map(|i| {
                    (f64::from(out_left[i]) - sample_at(&src_left, p0 + i as f64 * 1.0004)).powi(2)
                })
                .sum()
        };
        let found = (-3000..=3000)
            .map(|j| expected + f64::from(j) * 0.02)
            .min_by(|a, b| err(*a).total_cmp(&err(*b)))
            .unwrap();
        let off = found - expected;
        eprintln!("at {seconds} s: audio {off:+.2} frames off the timeline");
        // Uncorrected, the error would be 400 ppm × time: 17 and 53 frames.
        assert!(
            off.abs() < 3.0,
            "at {seconds} s the audio is {off} frames off"
        );
    }
}
