//! Live streams: frames due at known instants, gaps silent, nothing shifted.

use crate::util::{Driven, RATE};
use firefly_player::{LiveFrames, PlayerConfig, PlayerEvent, SwarmMicros};

const STREAM_RATE: u32 = 48_000;
const BLOCK: u32 = 960;

/// The value block `k` carries.
fn level(k: u64) -> f32 {
    (k + 1) as f32 / 1000.0
}

/// The output sample heard at `seconds` (left channel).
fn at(driven: &Driven, seconds: f64) -> f32 {
    driven.out[(seconds * f64::from(RATE)).round() as usize * 2]
}

#[test]
fn blocks_sound_at_their_instants_and_a_missing_one_is_silence() {
    let mut driven = Driven::new(PlayerConfig::default());
    let frames = LiveFrames::new(STREAM_RATE, BLOCK, 2);
    for k in (0..100u64).filter(|k| *k != 20) {
        frames.insert(k, vec![level(k); BLOCK as usize * 2]);
    }
    // Frame 0 sounds at 0.1 s; block k at 0.1 + k × 20 ms.
    driven
        .player
        .play_live(frames.clone(), 0, SwarmMicros(100_000))
        .unwrap();
    driven.run_for(2.5);
    assert_eq!(at(&driven, 0.05), 0.0, "silent before the start");
    for k in [1u64, 10, 30, 60, 99] {
        let mid = 0.1 + (k as f64 + 0.5) * 0.02;
        let heard = at(&driven, mid);
        assert!((heard - level(k)).abs() < 1e-4, "block {k}: {heard}");
    }
    // Block 20 never came: silence in its middle, and its neighbours in place.
    assert!(at(&driven, 0.1 + 20.5 * 0.02).abs() < 1e-4);
    assert!((at(&driven, 0.1 + 19.3 * 0.02) - level(19)).abs() < 1e-4);
    assert!((at(&driven, 0.1 + 21.7 * 0.02) - level(21)).abs() < 1e-4);
    // After the last block: silence, still playing.
    assert_eq!(at(&driven, 2.3), 0.0);
    assert!(frames.stats().concealed >= 1);
}

#[test]
fn a_late_joiner_starts_in_step_and_the_end_stops_it() {
    let mut driven = Driven::new(PlayerConfig::default());
    let frames = LiveFrames::new(STREAM_RATE, BLOCK, 2);
    // Blocks as they would have come by 1 s (the schedule holds 2.5 s ahead at most).
    for k in 0..100u64 {
        frames.insert(k, vec![level(k); BLOCK as usize * 2]);
    }
    driven.run_for(0.5);
    // Frame 0 sounded at 0.1 s, before this node started playing it.
    driven
        .player
        .play_live(frames.clone(), 0, SwarmMicros(100_000))
        .unwrap();
    driven.run_for(0.5);
    let k = 35u64; // 0.1 + 35.5 × 20 ms = 0.81 s
    assert!(
        (at(&driven, 0.81) - level(k)).abs() < 1e-4,
        "{}",
        at(&driven, 0.81)
    );
    frames.end("the origin left".into());
    driven.run_for(0.1);
    assert!(
        driven
            .events
            .iter()
            .any(|e| matches!(e, PlayerEvent::DecodeFailed { message, .. } if message.contains("origin left")))
    );
    assert!(
        driven
            .events
            .iter()
            .any(|e| matches!(e, PlayerEvent::Finished { .. }))
    );
    assert_eq!(at(&driven, 1.09), 0.0);
}
