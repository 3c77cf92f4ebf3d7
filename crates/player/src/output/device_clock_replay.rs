//! Replays a node's logged device periods (`firefly bench heard --logs`)
//! through [`DeviceClock`], so a change to the fit can be tried offline on
//! what a real sound server reported: `scripts/heard-replay.sh` runs it for
//! every node of a run and tells how the heard spread would have moved.
//! A tool, not a check: it is ignored unless asked for, and fails without
//! its input (`FIREFLY_REPLAY_IN`, a node's log; `FIREFLY_REPLAY_OUT`, the CSV
//! written).

use super::device_clock::{DeviceClock, YoungWitness};

fn field(fields: &str, name: &str) -> Option<f64> {
    fields.split_whitespace().find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        let value = value.trim_end_matches(|c: char| !c.is_ascii_digit());
        (key == name).then(|| value.parse().ok()).flatten()
    })
}

#[test]
#[ignore = "a tool: scripts/heard-replay.sh runs it on a bench heard log"]
fn replay_logged_periods() {
    let input = std::env::var("FIREFLY_REPLAY_IN").expect("FIREFLY_REPLAY_IN: a node's log");
    let output = std::env::var("FIREFLY_REPLAY_OUT").expect("FIREFLY_REPLAY_OUT: the CSV to write");
    let text = std::fs::read_to_string(input).expect("log");
    // `bench heard` plays 48 kHz through cpal.
    let mut clock = DeviceClock::new(48_000, YoungWitness::Callbacks);
    let mut out = String::from("now,frames,heard,old_fit,new_fit,ppm\n");
    let mut last_frames = 0u64;
    // Plain text: heard-replay.sh takes the terminal colours out first.
    for line in text.lines() {
        let Some(fields) = line.split("firefly_device_timing: ").nth(1) else {
            continue;
        };
        let (Some(now), Some(delay), Some(frames), Some(fit)) = (
            field(fields, "now"),
            field(fields, "delay"),
            field(fields, "frames"),
            field(fields, "fit"),
        ) else {
            continue;
        };
        let frames = frames as u64;
        if frames < last_frames {
            clock.reset();
        }
        last_frames = frames;
        if delay < 0.0 {
            continue;
        }
        clock.handle_period(frames, now + delay, now);
        let new_fit = clock.heard_at(frames).unwrap_or(now + delay);
        let ppm = clock.rate_ratio().map_or(0.0, |r| (r - 1.0) * 1e6);
        out.push_str(&format!(
            "{now},{frames},{},{fit},{new_fit},{ppm}\n",
            now + delay
        ));
    }
    std::fs::write(output, out).expect("write");
}
