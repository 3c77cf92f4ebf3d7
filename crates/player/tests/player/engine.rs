//! Scheduling, transport, drift correction and underruns, on a hand-driven engine.

use crate::util::*;
use firefly_player::{Decoder, PlayerConfig, PlayerEvent, SwarmMicros, stream_source};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A 6 s music WAV in a temp dir, and its samples.
fn music_file(dir: &Path) -> (std::path::PathBuf, Vec<f32>) {
    let samples = music(6 * RATE as usize, RATE);
    let path = dir.join("music.wav");
    write_wav(&path, &samples, RATE, 2);
    (path, samples)
}

/// Output index of the first non-silent frame.
fn first_sound(out: &[f32]) -> usize {
    out.chunks_exact(2)
        .position(|f| f[0] != 0.0 || f[1] != 0.0)
        .unwrap()
}

/// Largest per-sample difference between `out[from..from+len]` and `src[at..at+len]` (frames).
fn max_diff(out: &[f32], from: usize, src: &[f32], at: usize, len: usize) -> f32 {
    (0..len * 2)
        .map(|i| (out[from * 2 + i] - src[at * 2 + i]).abs())
        .fold(0.0, f32::max)
}

#[test]
fn start_frame_sounds_on_the_frame_of_its_instant() {
    let dir = tempfile::tempdir().unwrap();
    let (path, src) = music_file(dir.path());
    let mut d = Driven::new(PlayerConfig::default());
    // 123.456 ms: not on a frame boundary (5444.4 frames).
    let at = SwarmMicros(123_456);
    d.play_file(&path, 0, at);
    d.run_for(1.0);
    let expected = 123_456e-6 * f64::from(RATE);
    let first = first_sound(&d.out);
    assert!(
        (first as f64 - expected).abs() <= 0.5,
        "first frame at {first}, scheduled at {expected}"
    );
    // And what follows is the source, frame for frame (past the band-limited onset).
    assert!(max_diff(&d.out, first + 200, &src, 200, 20_000) < 0.01);
    let started = d.events.iter().find_map(|e| match e {
        PlayerEvent::Started { frame, swarm, .. } => Some((*frame, *swarm)),
        _ => None,
    });
    assert_eq!(started.map(|s| s.0), Some(0));
    // Every flash agrees with the schedule to a fraction of a frame.
    for f in d.flashes() {
        assert!(f.error_frames.abs() < 0.6, "{f:?}");
    }
}

/// A track at a higher rate than the output's (48 kHz into 44.1 kHz: the
/// resampler's first input lies a frame before the start), started mid-track
/// as a seek or resume does: it sounds from its anchor frame at its instant,
/// not a period later from wherever the timeline had got to.
#[test]
fn a_downsampled_track_started_mid_track_sounds_on_the_frame_of_its_instant() {
    let dir = tempfile::tempdir().unwrap();
    let source_rate = 48_000;
    let samples = music(6 * source_rate as usize, source_rate);
    let path = dir.path().join("music48.wav");
    write_wav(&path, &samples, source_rate, 2);
    let mut d = Driven::new(PlayerConfig::default());
    d.play_file(&path, 96_000, SwarmMicros(200_000));
    d.run_for(1.0);
    let started = d.events.iter().find_map(|e| match e {
        PlayerEvent::Started { frame, .. } => Some(*frame),
        _ => None,
    });
    assert_eq!(started, Some(96_000), "{:?}", d.events);
    let expected = 0.2 * f64::from(RATE);
    let first = first_sound(&d.out);
    assert!(
        (first as f64 - expected).abs() <= 0.5,
        "first frame at {first}, scheduled at {expected}"
    );
    assert!(
        !d.events
            .iter()
            .any(|e| matches!(e, PlayerEvent::Underrun { .. })),
        "{:?}",
        d.events
    );
}

#[test]
fn start_mid_track_with_latency_trim() {
    let dir = tempfile::tempdir().unwrap();
    let (path, src) = music_file(dir.path());
    let config = PlayerConfig {
        latency_trim_micros: 30_000,
        ..PlayerConfig::default()
    };
    let mut d = Driven::new(config);
    d.play_file(&path, 50_000, SwarmMicros(200_000));
    d.run_for(1.0);
    // The sound leaves 30 ms late, so it must be emitted 30 ms (1323 frames) early.
    let expected = (0.2 - 0.03) * f64::from(RATE);
    let first = first_sound(&d.out);
    assert!(
        (first as f64 - expected).abs() <= 0.5,
        "{first} vs {expected}"
    );
    // After the 5 ms fade-in, it is the source from frame 50 000.
    let fade = 5 * RATE as usize / 1000 + 2;
    assert!(max_diff(&d.out, first + fade, &src, 50_000 + fade, 10_000) < 0.01);
}

#[test]
fn joining_late_starts_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let (path, src) = music_file(dir.path());
    let mut d = Driven::new(PlayerConfig::default());
    d.timeline.set_offset(1_000_000); // swarm = local + 1 s
    // Scheduled 0.5 s before the first period: join at frame 22 050.
    d.play_file(&path, 0, SwarmMicros(500_000));
    d.run_for(0.5);
    assert_eq!(first_sound(&d.out), 0);
    let lag = (-2..=2)
        .min_by(|a: &i64, b: &i64| {
            let e = |l: i64| max_diff(&d.out, 1000, &src, (22_050 + 1000 + l) as usize, 5000);
            e(*a).total_cmp(&e(*b))
        })
        .unwrap();
    assert_eq!(lag, 0);
}

#[test]
fn pause_resume_and_seek_are_click_free_and_land_where_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (path, src) = music_file(dir.path());
    let src_jump = max_jump(&src, 2);
    let mut d = Driven::new(PlayerConfig::default());
    d.play_file(&path, 0, SwarmMicros(0));
    d.run_for(0.5);
    d.player.pause().unwrap();
    d.run_for(0.3);
    // Paused: silence after the fade-out.
    let paused_at = d.out.len() / 2;
    assert!(d.out[(paused_at - 4410) * 2..].iter().all(|&s| s == 0.0));
    // Resume at 1.0 s swarm time.
    d.player.resume(SwarmMicros(1_000_000)).unwrap();
    d.run_for(0.5);
    let resumed = d.events.iter().rev().find_map(|e| match e {
        PlayerEvent::Started { frame, swarm, .. } => Some((*frame, *swarm)),
        _ => None,
    });
    let (frame, swarm) = resumed.unwrap();
    assert_eq!(swarm, SwarmMicros(1_000_000));
    // It continues where the fade-out ended (0.5 s plus the 5 ms fade).
    assert!(
        (frame as i64 - (22_050 + 220)).abs() <= 2,
        "resumed at {frame}"
    );
    // Seek to 4 s at 1.8 s swarm time, once the decoder has reached past
    // 4 s (rendering here runs far faster than real time; on a loaded
    // machine the decoder's thread may not have got there yet).
    assert!(
        d.player
            .wait_ready(Duration::from_millis(3_500), Duration::from_secs(20))
    );
    d.player
        .seek(4 * u64::from(RATE), SwarmMicros(1_800_000))
        .unwrap();
    d.run_for(1.0);
    let first_after = 1_800_000 * RATE as usize / 1_000_000;
    let fade = 222;
    assert!(
        max_diff(
            &d.out,
            first_after + fade,
            &src,
            4 * RATE as usize + fade,
            5000
        ) < 0.01
    );
    // No transition clicked: no jump larger than the source's own.
    let jump = max_jump(&d.out, 2);
    assert!(jump <= src_jump * 1.01, "jump {jump} vs source {src_jump}");
    // Volume ramps too.
    d.player.set_volume(0.25).unwrap();
    d.run_for(0.2);
    assert!(max_jump(&d.out, 2) <= src_jump * 1.01);
    assert!(d.player.set_volume(f32::NAN).is_err());
    d.player.stop().unwrap();
    d.run_for(0.1);
    assert!(d.out[d.out.len() - 2000..].iter().all(|&s| s == 0.0));
    assert!(max_jump(&d.out, 2) <= src_jump * 1.01);
}

#[test]
fn rate_changes_resample_without_discontinuity_and_keep_exact_count() {
    let (_, src) = decode_all(&fixture("reference.wav"), 2);
    let src_jump = max_jump(&src, 2);
    let mut d = Driven::new(PlayerConfig::default());
    d.timeline.set_rate(1.0005);
    // Frame 0 at 3 ms (on a frame boundary only by rounding).
    d.play_file(&fixture("reference.wav"), 0, SwarmMicros(3_000));
    // Alternate ±500 ppm every 50 ms, the worst a slew controller does.
    for i in 0..30 {
        d.timeline
            .set_rate(if i % 2 == 0 { 1.0005 } else { 0.9995 });
        d.run(5);
    }
    // Starting at a rate other than 1, the first flash still names the frame really emitted.
    let first = d.flashes()[0];
    assert!(
        first.position.abs() < 0.5 && first.error_frames.abs() < 0.5,
        "{first:?}"
    );
    let second = d.flashes()[1];
    let advance = second.position - first.position;
    let frames = (second.output_frame - first.output_frame) as f64;
    assert!(
        (advance - frames * 1.0005).abs() < 1e-6,
        "{first:?} {second:?}"
    );
    let jump = max_jump(&d.out, 2);
    assert!(jump <= src_jump * 1.001, "jump {jump} vs source {src_jump}");
    // Constant +300 ppm: the source advances by exactly 1.0003 frames per output frame.
    d.timeline.set_rate(1.0003);
    // A new rate applies to frames resampled from the next period on; up to
    // ~2.5 periods of look-ahead were resampled before it.
    d.run(4);
    let before = *d.flashes().last().unwrap();
    d.run(40); // staying inside the 2 s track
    let after = *d.flashes().last().unwrap();
    let output = (after.output_frame - before.output_frame) as f64;
    let advanced = after.position - before.position;
    assert!(
        (advanced - output * 1.0003).abs() < 1e-6,
        "{advanced} vs {}",
        output * 1.0003
    );
    // And the samples really are the source at that position.
    let at = after.output_frame as usize;
    let pos = after.position.round() as usize;
    let err = max_diff(&d.out, at, &src, pos, 200);
    assert!(err < 0.02, "output off the tracked position by {err}");
}

#[test]
fn underrun_plays_silence_reports_and_realigns() {
    let (_, src) = decode_all(&fixture("reference.wav"), 2);
    let bytes = std::fs::read(fixture("reference.wav")).unwrap();
    let (source, writer) = stream_source(bytes.len() as u64).unwrap();
    // The first ~0.6 s of audio arrives; the rest is late.
    let first_part = 44 + 4 * 26_000;
    writer.write_at(0, &bytes[..first_part]).unwrap();
    let mut d = Driven::new(PlayerConfig::default());
    let decoder = Decoder::open(Box::new(source), Some("wav"), 2).unwrap();
    d.player.play(decoder, 0, SwarmMicros(0)).unwrap();
    let ready = d
        .player
        .wait_ready(Duration::from_millis(550), Duration::from_secs(20));
    assert!(ready, "{:?}", d.player.readiness());
    d.run_for(1.0);
    let underrun = d.events.iter().find_map(|e| match e {
        PlayerEvent::Underrun { swarm, .. } => Some(*swarm),
        _ => None,
    });
    let underrun = underrun.expect("no underrun reported");
    // The data ends at 589.6 ms; the resampler's look-ahead and one period may end it earlier.
    let ends = 589_569;
    assert!(
        (ends - 30_000..=ends).contains(&underrun.as_micros()),
        "{underrun:?}"
    );
    // Silence (after a fade) since then.
    assert!(d.out[2 * 27_000..].iter().all(|&s| s == 0.0));
    writer
        .write_at(first_part as u64, &bytes[first_part..])
        .unwrap();
    drop(writer);
    d.wait_ready();
    d.run_for(0.5);
    // Back on the timeline: output frame n plays source frame n again.
    let restarted = d.events.iter().rev().find_map(|e| match e {
        PlayerEvent::Started { frame, swarm, .. } => Some((*frame, *swarm)),
        _ => None,
    });
    let (frame, swarm) = restarted.unwrap();
    let expected = swarm.as_micros() as f64 * f64::from(RATE) / 1e6;
    assert!(
        (frame as f64 - expected).abs() <= 1.0,
        "{frame} at {swarm:?}"
    );
    let n = 1_300_000 * RATE as usize / 1_000_000;
    assert!(max_diff(&d.out, n, &src, n, 2000) < 0.01);
    assert!(max_jump(&d.out, 2) <= max_jump(&src, 2) * 1.01);
}

#[test]
fn stepped_clock_is_realigned() {
    let dir = tempfile::tempdir().unwrap();
    let (path, src) = music_file(dir.path());
    let mut d = Driven::new(PlayerConfig::default());
    d.play_file(&path, 0, SwarmMicros(0));
    d.run_for(0.5);
    // The swarm clock steps 200 ms ahead: playback must jump 200 ms forward.
    d.timeline.set_offset(200_000);
    d.run_for(0.5);
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, PlayerEvent::Realigned { .. }))
    );
    let n = 44_100 * 9 / 10;
    let lag = (-2..=2)
        .min_by(|a: &i64, b: &i64| {
            let e = |l: i64| max_diff(&d.out, n, &src, (n as i64 + 8820 + l) as usize, 2000);
            e(*a).total_cmp(&e(*b))
        })
        .unwrap();
    assert_eq!(lag, 0);
    // Then 500 ms back (behind what was already fetched): playback jumps back.
    d.timeline.set_offset(-300_000);
    d.run_for(0.5);
    let realigns = d
        .events
        .iter()
        .filter(|e| matches!(e, PlayerEvent::Realigned { .. }))
        .count();
    assert_eq!(realigns, 2);
    let n = 44_100 * 14 / 10;
    let lag = (-2..=2)
        .min_by(|a: &i64, b: &i64| {
            let e = |l: i64| max_diff(&d.out, n, &src, (n as i64 - 13_230 + l) as usize, 2000);
            e(*a).total_cmp(&e(*b))
        })
        .unwrap();
    assert_eq!(lag, 0);
    assert!(max_jump(&d.out, 2) <= max_jump(&src, 2) * 1.01);
}

#[test]
fn track_end_is_reported() {
    let mut d = Driven::new(PlayerConfig::default());
    d.play_file(&fixture("untagged-mono-22k.wav"), 0, SwarmMicros(0));
    d.run_for(2.2);
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, PlayerEvent::Finished { .. }))
    );
    // 22.05 kHz mono, resampled to 44.1 kHz stereo: 2 s of sound, then silence.
    let last = d.out.chunks_exact(2).rposition(|f| f[0] != 0.0).unwrap();
    assert!((last as i64 - 88_200).abs() < 64, "last sound at {last}");
}

/// A node whose swarm clock runs `skew` fast against its sound card, with the
/// clock crate's slew controller fed by the player's phase error: the loop a
/// node runs, without the network.
struct SlewingTimeline {
    skew: f64,
    slew: Slewing,
}

impl firefly_player::Timeline for SlewingTimeline {
    fn now(&self) -> firefly_player::LocalMicros {
        firefly_player::LocalMicros(0)
    }

    fn to_swarm(&self, local: firefly_player::LocalMicros) -> SwarmMicros {
        SwarmMicros((local.as_micros() as f64 * (1.0 + self.skew)).round() as i64)
    }

    fn playback_rate(&self, at: firefly_player::LocalMicros, error: Option<f64>) -> f64 {
        self.slew.rate(at, error)
    }
}

#[test]
fn slew_loop_holds_a_skewed_clock_on_the_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let (path, src) = music_file(dir.path());
    let timeline = Arc::new(SlewingTimeline {
        skew: 350e-6,
        slew: Slewing::new(),
    });
    let format = firefly_player::OutputFormat::new(RATE, 2, std::time::Duration::from_millis(10));
    let (mut player, mut engine) =
        firefly_player::Player::detached(format, timeline, PlayerConfig::default()).unwrap();
    player
        .play(Decoder::open_file(&path, 2).unwrap(), 0, SwarmMicros(0))
        .unwrap();
    assert!(player.wait_ready(Duration::from_secs(2), Duration::from_secs(20)));
    let mut buf = vec![0.0; 441 * 2];
    let mut flashes = Vec::new();
    let mut out = Vec::new();
    for _ in 0..500 {
        let at = firefly_player::LocalMicros(Driven::micros_of(engine.output_frames()));
        engine.render(at, None, &mut buf);
        out.extend_from_slice(&buf);
        while let Some(e) = player.poll_event() {
            if let PlayerEvent::Flash(f) = e {
                flashes.push(f);
            }
        }
    }
    // Without correction the error would grow 350 ppm: 77 frames by now.
    let last = flashes.last().unwrap();
    assert!(last.error_frames.abs() < 1.0, "{last:?}");
    let settled: Vec<f64> = flashes[300..]
        .iter()
        .map(|f| f.error_frames.abs())
        .collect();
    assert!(settled.iter().all(|e| *e < 2.0), "{settled:?}");
    // The source advanced 350 ppm faster than the output over the last second.
    let (a, b) = (&flashes[400], last);
    let ratio = (b.position - a.position) / (b.output_frame - a.output_frame) as f64;
    assert!((ratio - 1.00035).abs() < 50e-6, "ratio {ratio}");
    // Slewing never broke the waveform (past the track's abrupt first sample).
    // Interpolating between samples may reach slightly past the sampled slope
    // (inter-sample peaks of the 3.2 kHz partial); a dropped or repeated frame
    // would double the jump, a restart would multiply it.
    let (jump, src_jump) = (max_jump(&out[2 * 1000..], 2), max_jump(&src, 2));
    assert!(jump <= src_jump * 1.005, "jump {jump} vs {src_jump}");
    assert!(!player_events_contain_realign(&flashes));
}

fn player_events_contain_realign(flashes: &[firefly_player::Flash]) -> bool {
    // A stepped realignment shows as a jump of the position between flashes.
    flashes
        .windows(2)
        .any(|w| (w[1].position - w[0].position - 441.0).abs() > 5.0)
}

#[test]
fn sample_rates_from_8_to_192_khz_keep_pitch_and_length() {
    let dir = tempfile::tempdir().unwrap();
    for rate in [8_000u32, 22_050, 48_000, 96_000, 192_000] {
        // One second of a 440 Hz sine, mono, at `rate`.
        let sine: Vec<f32> = (0..rate)
            .map(|i| {
                (0.5 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / f64::from(rate)).sin())
                    as f32
            })
            .collect();
        let path = dir.path().join(format!("sine-{rate}.wav"));
        write_wav(&path, &sine, rate, 1);
        let mut d = Driven::new(PlayerConfig::default());
        d.play_file(&path, 0, SwarmMicros(0));
        d.run_for(1.2);
        let left = channel(&d.out, 2, 0);
        let last = left.iter().rposition(|s| s.abs() > 1e-3).unwrap();
        assert!(
            last.abs_diff(RATE as usize) < 40,
            "{rate} Hz: sound ends at {last}"
        );
        let ideal: Vec<f32> = (0..RATE)
            .map(|i| {
                (0.5 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / f64::from(RATE)).sin())
                    as f32
            })
            .collect();
        let corr = correlation(&ideal[1000..40_000], &left[1000..], 0);
        assert!(corr > 0.999, "{rate} Hz: correlation {corr}");
        assert!(
            d.out.chunks_exact(2).all(|f| f[0] == f[1]),
            "{rate} Hz: mono not on both channels"
        );
    }
}

#[test]
fn bad_requests_are_refused_or_reported_never_fatal() {
    let mut d = Driven::new(PlayerConfig::default());
    // A decoder mapped to mono cannot feed a stereo output.
    let mono = Decoder::open_file(&fixture("reference.wav"), 1).unwrap();
    let err = d.player.play(mono, 0, SwarmMicros(0)).unwrap_err();
    assert!(
        err.to_string().contains("1 channels but the output has 2"),
        "{err}"
    );
    // A start frame past the end: reported, then finished, no sound.
    d.play_file(&fixture("reference.wav"), 10_000_000, SwarmMicros(0));
    d.run_for(0.5);
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, PlayerEvent::Finished { .. })),
        "{:?}",
        d.events
    );
    assert!(d.out.iter().all(|&s| s == 0.0));
    // Commands with nothing playing are harmless.
    d.player.pause().unwrap();
    d.player.resume(SwarmMicros(0)).unwrap();
    d.player.seek(5, SwarmMicros(0)).unwrap();
    d.player.stop().unwrap();
    d.run(3);
}

#[test]
fn flashes_name_the_audio_really_emitted_at_any_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (path, src) = music_file(dir.path());
    let src_left = channel(&src, 2, 0);
    for rate in [1.0, 1.0003, 0.9995] {
        let mut d = Driven::new(PlayerConfig::default());
        d.timeline.set_rate(rate);
        d.play_file(&path, 0, SwarmMicros(0));
        // The run goes far faster than real time: all it plays is decoded
        // first (a node plays in real time, its decoder seconds ahead).
        assert!(
            d.player
                .wait_ready(Duration::from_secs(4), Duration::from_secs(20))
        );
        d.run_for(3.0);
        let flashes = d.flashes();
        for f in [flashes[10], flashes[150], flashes[280]] {
            let start = f.output_frame as usize * 2;
            let out_left = channel(&d.out[start..start + 2 * 400], 2, 0);
            let err = |p0: f64| -> f64 {
                (50..350)
                    .map(|i| {
                        (f64::from(out_left[i]) - sample_at(&src_left, p0 + i as f64 * rate))
                            .powi(2)
                    })
                    .sum()
            };
            let found = (-100..=100)
                .map(|j| f.position + f64::from(j) * 0.01)
                .min_by(|a, b| err(*a).total_cmp(&err(*b)))
                .unwrap();
            assert!(
                (found - f.position).abs() <= 0.02,
                "rate {rate}: flash says {} but the audio is at {found}",
                f.position
            );
        }
    }
}

#[test]
fn pause_during_an_underrun_resumes_where_the_sound_stopped() {
    let bytes = std::fs::read(fixture("reference.wav")).unwrap();
    let (source, writer) = stream_source(bytes.len() as u64).unwrap();
    let first_part = 44 + 4 * 26_000;
    writer.write_at(0, &bytes[..first_part]).unwrap();
    let mut d = Driven::new(PlayerConfig::default());
    let decoder = d.player.open(Box::new(source), Some("wav")).unwrap();
    d.player.play(decoder, 0, SwarmMicros(0)).unwrap();
    assert!(
        d.player
            .wait_ready(Duration::from_millis(550), Duration::from_secs(20))
    );
    d.run_for(0.8);
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, PlayerEvent::Underrun { .. }))
    );
    d.player.pause().unwrap();
    d.run_for(0.1);
    writer
        .write_at(first_part as u64, &bytes[first_part..])
        .unwrap();
    drop(writer);
    d.wait_ready();
    d.run_for(0.2);
    // Still paused: the data arriving does not restart it.
    let len = d.out.len();
    assert!(d.out[len - 2 * 8820..].iter().all(|&s| s == 0.0));
    d.player.resume(SwarmMicros(1_500_000)).unwrap();
    d.run_for(0.6);
    let (frame, swarm) = d
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            PlayerEvent::Started { frame, swarm, .. } => Some((*frame, *swarm)),
            _ => None,
        })
        .unwrap();
    assert_eq!(swarm, SwarmMicros(1_500_000));
    // Where the sound stopped: the decoded data ended at frame 26 000, less the
    // resampler's look-ahead.
    assert!((24_000..=26_000).contains(&frame), "resumed at {frame}");
}

/// Two tracks of odd lengths in a temp dir, and their samples.
fn two_tracks(
    dir: &Path,
) -> (
    (std::path::PathBuf, Vec<f32>),
    (std::path::PathBuf, Vec<f32>),
) {
    let a = music(66_151, RATE);
    let b: Vec<f32> = music(70_003, RATE).iter().map(|s| -s * 0.8).collect();
    let (pa, pb) = (dir.join("a.wav"), dir.join("b.wav"));
    write_wav(&pa, &a, RATE, 2);
    write_wav(&pb, &b, RATE, 2);
    ((pa, a), (pb, b))
}

/// Real time given to a follow-on's decoder before a faster-than-real-time run.
const FOLLOW_HEAD_START: Duration = Duration::from_millis(300);

#[test]
fn a_followed_track_starts_on_the_frame_after_the_last_one() {
    let dir = tempfile::tempdir().unwrap();
    let ((pa, a), (pb, b)) = two_tracks(dir.path());
    let mut d = Driven::new(PlayerConfig::default());
    let at = 123_456;
    d.play_file(&pa, 0, SwarmMicros(at));
    // The schedule's instant for B: A's start plus A's exact length.
    let len_a = a.len() / 2;
    let b_at = at + (len_a as f64 * 1e6 / f64::from(RATE)).round() as i64;
    d.player
        .follow(Decoder::open_file(&pb, 2).unwrap(), 0, SwarmMicros(b_at))
        .unwrap();
    // The run below goes far faster than real time (A's 1.5 s in a few ms):
    // B's decoder thread gets the head start a node's schedule gives a
    // follow-on (sent seconds ahead). `wait_ready` watches the played track
    // only, so a pause stands for it.
    std::thread::sleep(FOLLOW_HEAD_START);
    d.run_for(4.0);
    let first = first_sound(&d.out);
    // Output from A's first frame on is A then B, frame for frame: no gap,
    // no overlap (what a WAV of the node's output compared with the
    // concatenated sources shows).
    let joined: Vec<f32> = a.iter().chain(b.iter()).copied().collect();
    let frames = joined.len() / 2;
    assert!(d.out.len() / 2 >= first + frames);
    let worst = max_diff(&d.out, first + 200, &joined, 200, frames - 400);
    assert!(worst < 0.01, "output differs from A+B by up to {worst}");
    // Silence after B.
    let last = d.out.chunks_exact(2).rposition(|f| f[0] != 0.0).unwrap();
    assert!(last < first + frames, "sound after the end: {last}");
    let started: Vec<u64> = d
        .events
        .iter()
        .filter_map(|e| match e {
            PlayerEvent::Started { track, .. } => Some(*track),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 2, "{started:?}");
}

#[test]
fn a_follow_far_from_the_end_waits_for_its_instant_and_play_or_stop_cancels_it() {
    let dir = tempfile::tempdir().unwrap();
    let ((pa, a), (pb, _)) = two_tracks(dir.path());
    let len_a = a.len() / 2;
    // Scheduled half a second after A's end: half a second of silence.
    let mut d = Driven::new(PlayerConfig::default());
    d.play_file(&pa, 0, SwarmMicros(0));
    let end = (len_a as f64 * 1e6 / f64::from(RATE)).round() as i64;
    d.player
        .follow(
            Decoder::open_file(&pb, 2).unwrap(),
            0,
            SwarmMicros(end + 500_000),
        )
        .unwrap();
    std::thread::sleep(FOLLOW_HEAD_START);
    d.run_for(3.0);
    let silent = d.out[len_a * 2 + 200..(len_a + RATE as usize / 2) * 2 - 200]
        .iter()
        .all(|s| *s == 0.0);
    assert!(silent, "the follow-on did not wait for its instant");
    let after = &d.out[(len_a + RATE as usize / 2 + 10) * 2..];
    assert!(
        after.iter().any(|s| *s != 0.0),
        "the follow-on never started"
    );
    // A stop forgets the follow-on: silence after A.
    let mut d = Driven::new(PlayerConfig::default());
    d.play_file(&pa, 0, SwarmMicros(0));
    d.player
        .follow(Decoder::open_file(&pb, 2).unwrap(), 0, SwarmMicros(end))
        .unwrap();
    d.player.unfollow().unwrap();
    d.run_for(2.5);
    assert!(d.out[(len_a + 10) * 2..].iter().all(|s| *s == 0.0));
}

#[test]
fn a_pause_or_a_new_play_takes_effect_on_the_frame_of_its_instant() {
    let dir = tempfile::tempdir().unwrap();
    let ((pa, a), (pb, b)) = two_tracks(dir.path());
    let frame_of = |micros: i64| (micros as f64 * f64::from(RATE) / 1e6).round() as usize;
    // Paused at 1.2 s, sent 0.5 s ahead: sound until then, fading over the
    // last 5 ms, and silence from that very frame.
    let mut d = Driven::new(PlayerConfig::default());
    d.play_file(&pa, 0, SwarmMicros(0));
    d.run_for(0.7);
    d.player.pause_at(SwarmMicros(1_200_000)).unwrap();
    d.run_for(1.0);
    let silent_from = d.out.chunks_exact(2).rposition(|f| f[0] != 0.0).unwrap() + 1;
    assert!(
        (silent_from as i64 - frame_of(1_200_000) as i64).abs() <= 1,
        "silent from frame {silent_from}, the pause was for {}",
        frame_of(1_200_000)
    );
    let before_fade = frame_of(1_200_000) - 5 * RATE as usize / 1000 - 2;
    assert!(max_diff(&d.out, 200, &a, 200, before_fade - 200) < 0.01);
    // A new play while one plays: the first plays on until the new one's
    // instant (fading out just before), the new one starts on its frame.
    let mut d = Driven::new(PlayerConfig::default());
    d.play_file(&pa, 0, SwarmMicros(0));
    d.run_for(0.5);
    d.player
        .play(
            Decoder::open_file(&pb, 2).unwrap(),
            0,
            SwarmMicros(1_000_000),
        )
        .unwrap();
    // The hand-driven engine renders its 0.5 s to the instant in a few ms of
    // real time: let b's decoder fill first, as the lead gives it in real
    // time (on a loaded machine it did not always have b's first frames by
    // then, and b joined late).
    d.wait_ready();
    d.run_for(1.5);
    let switch = frame_of(1_000_000);
    let fade = 5 * RATE as usize / 1000 + 2;
    assert!(
        max_diff(&d.out, 200, &a, 200, switch - fade - 200) < 0.01,
        "a cut short"
    );
    // (After b's own 5 ms fade-in.)
    assert!(
        max_diff(&d.out, switch + 300, &b, 300, 20_000) < 0.01,
        "b not from its instant"
    );
    let started: Vec<(u64, u64)> = d
        .events
        .iter()
        .filter_map(|e| match e {
            PlayerEvent::Started { track, frame, .. } => Some((*track, *frame)),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 2);
    assert!(started[1].0 == 2 && started[1].1 <= 1, "{started:?}");
}

/// A stereo pair: a `Left` and a `Right` player on one schedule output
/// exactly the left and the right channel of what a stereo player outputs
/// (on every output channel), on the same output frames; and that is the
/// source's own left and right, frame for frame.
#[test]
fn a_stereo_pair_plays_exactly_the_two_channels_on_the_same_frames() {
    use firefly_player::ChannelMap;
    let dir = tempfile::tempdir().unwrap();
    let (path, src) = music_file(dir.path());
    let at = SwarmMicros(123_456);
    let mut outs = Vec::new();
    for map in [
        ChannelMap::Stereo,
        ChannelMap::Left,
        ChannelMap::Right,
        ChannelMap::Mono,
    ] {
        let mut d = Driven::new(PlayerConfig::default());
        d.player.set_channel_map(map).unwrap();
        d.play_file(&path, 0, at);
        d.run_for(1.0);
        outs.push(d.out);
    }
    let [stereo, left, right, mono] = &outs[..] else {
        unreachable!()
    };
    assert_eq!(stereo.len(), left.len());
    let first = first_sound(stereo);
    assert_eq!(first_sound(left), first, "the pair starts on one frame");
    assert_eq!(first_sound(right), first, "the pair starts on one frame");
    for (i, frame) in stereo.chunks_exact(2).enumerate() {
        assert_eq!(left[2 * i], frame[0], "frame {i}");
        assert_eq!(left[2 * i + 1], frame[0], "frame {i}");
        assert_eq!(right[2 * i], frame[1], "frame {i}");
        assert_eq!(right[2 * i + 1], frame[1], "frame {i}");
        assert_eq!(mono[2 * i], 0.5 * (frame[0] + frame[1]), "frame {i}");
    }
    // And the stereo output is the source (past the band-limited onset):
    // the left node plays the source's left channel, the right its right.
    let len = 20_000;
    let from = first + 200;
    let left_diff = (0..len)
        .map(|k| (left[(from + k) * 2] - src[(200 + k) * 2]).abs())
        .fold(0.0, f32::max);
    let right_diff = (0..len)
        .map(|k| (right[(from + k) * 2 + 1] - src[(200 + k) * 2 + 1]).abs())
        .fold(0.0, f32::max);
    assert!(
        left_diff < 0.01 && right_diff < 0.01,
        "{left_diff} {right_diff}"
    );
}
