//! Sync as heard: three `firefly up --output device` nodes play a click
//! track through a real, private PulseAudio server (ALSA's `pulse` plugin),
//! each into its own channel of one null sink, with test clocks at +200, +50
//! and −200 ppm. The sink's monitor is recorded and every click located to a
//! fraction of a sample; the spread between the nodes as heard must stay
//! within 500 µs (p99) over 30 s, and no device may underrun. It runs
//! `firefly bench heard`, which starts, measures and cleans up everything;
//! the benchmark carries the goals (p99 ≤ 100 µs; measured 98 µs over 180 s
//! at load 2–5, BENCHMARKS.md, "Sync as heard"). The bound was 1 ms while
//! the private server's main thread ran at normal priority and starved under
//! load; every thread of it is now real-time, as the bench sets it.
//!
//! Without PulseAudio the test says so and passes, unless `CI` is set
//! (`.ci/setup` installs it), where a missing server fails.
//!
//! It is a test binary of its own, not a module of `tests/e2e`, so that it
//! runs alone: cargo runs test binaries one after another, and a sound
//! server sharing two cores with other tests' swarms underruns.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn firefly_bin() -> &'static str {
    env!("CARGO_BIN_EXE_firefly")
}

/// Whether `program --version` runs.
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn three_skewed_nodes_sound_in_step_through_a_sound_server() {
    let tools = ["pulseaudio", "parec", "pactl"];
    let missing: Vec<&str> = tools.into_iter().filter(|t| !have(t)).collect();
    let plugin =
        std::path::Path::new("/usr/lib/x86_64-linux-gnu/alsa-lib/libasound_module_pcm_pulse.so")
            .exists()
            || std::path::Path::new("/usr/lib/alsa-lib/libasound_module_pcm_pulse.so").exists();
    if !missing.is_empty() || !plugin {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have PulseAudio and ALSA's pulse plugin (.ci/setup installs them); missing: {missing:?}, plugin: {plugin}"
        );
        println!(
            "heard: skipped (needs pulseaudio, pulseaudio-utils and libasound2-plugins; missing {missing:?})"
        );
        return;
    }
    let out = Command::new(firefly_bin())
        .args(["bench", "heard", "--case", "skewed", "--seconds", "30"])
        .args(["--warmup", "30", "--json"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench heard failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let case = &report["cases"][0];
    eprintln!("heard: {case}");
    // A click every 0.5 s for 30 s, heard on all three channels.
    let clicks = case["clicks"].as_u64().unwrap();
    assert!(clicks >= 50, "only {clicks} clicks heard on every channel");
    let p99 = case["spread_p99_us"].as_f64().unwrap();
    assert!(p99 <= 500.0, "spread p99 {p99:.0} µs as heard");
    let underruns: Vec<u64> = case["underruns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_u64().unwrap())
        .collect();
    assert!(underruns.iter().all(|&u| u == 0), "underruns {underruns:?}");
    // Every node timed its output from the device's own reports, and its
    // audio threads ran at real-time priority where that is permitted (CI
    // runs as root, where it is).
    for output in case["outputs"].as_array().unwrap() {
        assert_eq!(output["timing"], "reported", "{output}");
        if std::env::var_os("CI").is_some() {
            assert_eq!(output["realtime"], true, "{output}");
        }
        let ppm = output["device_rate_ppm"].as_f64().unwrap();
        assert!(ppm.abs() < 1_000.0, "{output}");
    }
}
