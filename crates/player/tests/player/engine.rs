//! Scheduling, transport, drift correction and underruns, on a hand-driven engine.

use crate::util::*;
use firefly_player::{Decoder, PlayerConfig, PlayerEvent, SwarmMicros, stream_source};
use std::path::Path;

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
    d.player
        .play(Decoder::open_file(&path, 2).unwrap(), 0, at)
        .unwrap();
    let_decoder_fill();
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

#[test]
fn start_mid_track_with_latency_trim() {
    let dir = tempfile::tempdir().unwrap();
    let (path, src) = music_file(dir.path());
    let config = PlayerConfig {
        latency_trim: std::time::Duration::from_millis(30),
        ..PlayerConfig::default()
    };
    let mut d = Driven::new(config);
    d.player
        .play(
            Decoder::open_file(&path, 2).unwrap(),
            50_000,
            SwarmMicros(200_000),
        )
        .unwrap();
    let_decoder_fill();
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
    d.player
        .play(
            Decoder::open_file(&path, 2).unwrap(),
            0,
            SwarmMicros(500_000),
        )
        .unwrap();
    let_decoder_fill();
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
    d.player
        .play(Decoder::open_file(&path, 2).unwrap(), 0, SwarmMicros(0))
        .unwrap();
    let_decoder_fill();
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
    // Seek to 4 s at 1.8 s swarm time.
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
    d.player
        .play(
            Decoder::open_file(&fixture("reference.wav"), 2).unwrap(),
            0,
            SwarmMicros(0),
        )
        .unwrap();
    let_decoder_fill();
    // Alternate ±500 ppm every 50 ms, the worst a slew controller does.
    for i in 0..30 {
        d.timeline
            .set_rate(if i % 2 == 0 { 1.0005 } else { 0.9995 });
        d.run(5);
    }
    let jump = max_jump(&d.out, 2);
    assert!(jump <= src_jump * 1.001, "jump {jump} vs source {src_jump}");
    // Constant +300 ppm: the source advances by exactly 1.0003 frames per output frame.
    d.timeline.set_rate(1.0003);
    d.run(2);
    let before = *d.flashes().last().unwrap();
    d.run(100);
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
    let_decoder_fill();
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
    let_decoder_fill();
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
    d.player
        .play(Decoder::open_file(&path, 2).unwrap(), 0, SwarmMicros(0))
        .unwrap();
    let_decoder_fill();
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
    assert!(max_jump(&d.out, 2) <= max_jump(&src, 2) * 1.01);
}

#[test]
fn track_end_is_reported() {
    let mut d = Driven::new(PlayerConfig::default());
    d.player
        .play(
            Decoder::open_file(&fixture("untagged-mono-22k.wav"), 2).unwrap(),
            0,
            SwarmMicros(0),
        )
        .unwrap();
    let_decoder_fill();
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
