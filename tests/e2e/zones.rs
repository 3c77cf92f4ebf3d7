//! Zones with real nodes: four `firefly up` processes on skewed clocks and
//! virtual outputs, in two zones playing two different tracks, each zone
//! in step; a node moved from one zone to the other is in step with its
//! new zone within a second; a merge puts all four in one session; killing
//! a zone's coordinator fails over in that zone only; a restarted node
//! comes back in its zone; a stereo pair's `wav:` outputs are the source's
//! left and right channels, sample for sample, at the frames each node says
//! it played, in step. Measured from the virtual outputs' true
//! instants (`/api/flashes`), as `playback.rs` does.

use crate::playback::{
    Node, NodeSpec, flashes, http, offsets, p99, spawn_node, start_swarm, wait_until,
};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Two different tracks (their lengths differ, so their bytes do).
const TRACKS: [(&str, u32); 2] = [("a.wav", 24), ("b.wav", 23)];

fn state(node: &Node) -> Value {
    http(node.http, "GET", "/api/state", None).1
}

/// The id of the track `ms` long in `node`'s library.
pub(crate) fn track_of_length(node: &Node, ms: u64) -> String {
    let (_, library) = http(node.http, "GET", "/api/library", None);
    library
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["duration_ms"] == ms)
        .unwrap()["track"]
        .as_str()
        .unwrap()
        .to_string()
}

fn unix_micros() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

/// Makes a zone `name` of `members` (through `via`'s API); returns its id
/// once every node sees the two zones and the members follow a
/// coordinator among themselves.
pub(crate) fn make_zone(nodes: &[Node], via: &Node, name: &str, members: &[&Node]) -> String {
    let names: Vec<String> = members.iter().map(|n| n.peer_id.clone()).collect();
    let (status, reply) = http(
        via.http,
        "POST",
        "/api/zones",
        Some(json!({ "name": name, "nodes": names })),
    );
    assert_eq!(status, 200, "{reply}");
    let zone = reply["zone"].as_str().unwrap().to_string();
    let settled = wait_until(Duration::from_secs(10), || {
        let seen = nodes.iter().all(|n| {
            http(n.http, "GET", "/api/zones", None).1["zones"]
                .as_array()
                .is_some_and(|z| z.len() == 2)
        });
        let states: Vec<Value> = members.iter().map(|m| state(m)).collect();
        let led = states.iter().all(|s| {
            s["zone"]["id"] == zone.as_str()
                && s["coordinator"] == states[0]["coordinator"]
                && members
                    .iter()
                    .any(|c| s["coordinator"] == c.peer_id.as_str())
        });
        seen && led
    });
    assert!(settled, "the zone {name} never settled");
    zone
}

fn play(node: &Node, track: &str) {
    let (status, reply) = http(
        node.http,
        "POST",
        "/api/play",
        Some(json!({ "track": track })),
    );
    assert_eq!(status, 200, "{reply}");
}

/// p99 of the pairwise offsets of the last `keep` flashes of `nodes`.
fn spread(nodes: &[&Node], keep: usize) -> f64 {
    let seen: Vec<Vec<(f64, i64)>> = nodes
        .iter()
        .map(|n| {
            let f = flashes(n);
            f[f.len().saturating_sub(keep)..].to_vec()
        })
        .collect();
    let mut all = Vec::new();
    for i in 0..seen.len() {
        for j in i + 1..seen.len() {
            all.extend(offsets(&seen[i], &seen[j]));
        }
    }
    assert!(all.len() > 50, "too few overlapping flashes: {}", all.len());
    p99(all)
}

/// Starts four nodes holding both tracks, makes a zone "Kitchen" of nodes
/// 2 and 3, plays track a in the default zone and b in the kitchen (both
/// asked on node 1, of the default zone: b with the `zone` parameter), and
/// waits until all four play.
fn two_zones_playing(root: &std::path::Path) -> (Vec<Node>, String, String, String) {
    let nodes = start_swarm(root, 4, &TRACKS, 4);
    let kitchen = make_zone(&nodes, &nodes[0], "Kitchen", &[&nodes[2], &nodes[3]]);
    // The kitchen is a stereo pair (through the CLI).
    for (node, map) in [("n2", "left"), ("n3", "right")] {
        let out =
            crate::util::firefly(&["channel", node, map, "--http", &nodes[0].http.to_string()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let a = track_of_length(&nodes[0], 24_000);
    let b = track_of_length(&nodes[0], 23_000);
    play(&nodes[1], &a);
    let (status, reply) = http(
        nodes[1].http,
        "POST",
        "/api/play",
        Some(json!({ "track": b, "zone": "Kitchen" })),
    );
    assert_eq!(status, 200, "{reply}");
    let playing = wait_until(Duration::from_secs(10), || {
        nodes.iter().all(|n| !flashes(n).is_empty())
    });
    assert!(playing, "not every node played");
    (nodes, kitchen, a, b)
}

#[test]
fn two_zones_play_two_tracks_in_step_a_moved_node_joins_within_a_second_and_a_merge_makes_one() {
    let _swarm = crate::playback::one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let (nodes, kitchen, a, b) = two_zones_playing(tmp.path());
    // Each zone plays its own track, each in step.
    for (node, track) in [
        (&nodes[0], &a),
        (&nodes[1], &a),
        (&nodes[2], &b),
        (&nodes[3], &b),
    ] {
        assert_eq!(state(node)["playback"]["track"], track.as_str());
    }
    std::thread::sleep(Duration::from_secs(4));
    let everywhere = spread(&[&nodes[0], &nodes[1]], 200);
    let in_kitchen = spread(&[&nodes[2], &nodes[3]], 200);
    eprintln!(
        "p99 spread: default zone {everywhere:.0} µs, kitchen (a stereo pair) {in_kitchen:.0} µs"
    );
    assert!(everywhere <= 1_000.0 && in_kitchen <= 1_000.0);
    // The zones list shows both, each with its now playing.
    let zones = crate::util::firefly_json(&[
        "zone",
        "list",
        "--json",
        "--http",
        &nodes[0].http.to_string(),
    ]);
    let shown = |id: &str| {
        zones["zones"]
            .as_array()
            .unwrap()
            .iter()
            .find(|z| z["id"] == id)
            .unwrap()["playback"]["track"]
            .clone()
    };
    assert_eq!(shown("default"), a.as_str(), "{zones}");
    assert_eq!(shown(&kitchen), b.as_str(), "{zones}");

    // Commands for another zone, asked on node 0 (default zone): the
    // kitchen pauses (CLI, by name) and resumes (API, by id); the default
    // zone plays on untouched; an unknown zone is refused.
    let default_before = state(&nodes[0])["playback"].clone();
    let out = crate::util::firefly(&[
        "pause",
        "--zone",
        "Kitchen",
        "--http",
        &nodes[0].http.to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let paused = wait_until(Duration::from_secs(3), || {
        [&nodes[2], &nodes[3]]
            .iter()
            .all(|n| state(n)["playback"]["state"] == "paused")
    });
    assert!(paused, "the kitchen did not pause: {}", state(&nodes[2]));
    let default_after = state(&nodes[0])["playback"].clone();
    assert_eq!(default_after["state"], "playing", "{default_after}");
    assert_eq!(
        default_after["seq"], default_before["seq"],
        "{default_after}"
    );
    let (status, reply) = http(
        nodes[0].http,
        "POST",
        &format!("/api/resume?zone={kitchen}"),
        None,
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["state"], "playing", "{reply}");
    let (status, reply) = http(nodes[0].http, "POST", "/api/pause?zone=Nowhere", None);
    assert_eq!(status, 404, "{reply}");
    let (status, reply) = http(
        nodes[0].http,
        "POST",
        "/api/seek?zone=Kitchen",
        Some(json!({ "position_ms": 1000, "zone": "default" })),
    );
    assert_eq!(status, 400, "{reply}");
    std::thread::sleep(Duration::from_secs(1));

    // Node 1 moves into the kitchen (asked on node 3, through the CLI): it
    // leaves a's music and plays b in step with the kitchen within a second.
    let moved_at = unix_micros();
    let out = crate::util::firefly(&[
        "zone",
        "move",
        "n1",
        "Kitchen",
        "--http",
        &nodes[3].http.to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("zone \"Kitchen\""));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(state(&nodes[1])["playback"]["track"], b.as_str());
    let joined = flashes(&nodes[1]);
    let first = joined.first().unwrap().1;
    eprintln!(
        "the moved node sounded b {} ms after the move",
        (first - moved_at) / 1000
    );
    assert!(
        first - moved_at <= 1_000_000,
        "first flash {} µs after the move",
        first - moved_at
    );
    let after_a_second: Vec<(f64, i64)> = joined
        .iter()
        .copied()
        .filter(|(_, t)| *t >= moved_at + 1_000_000)
        .collect();
    let kitchen_flashes = flashes(&nodes[2]);
    let moved_spread = p99(offsets(&after_a_second, &kitchen_flashes));
    eprintln!("moved node vs kitchen from 1 s after the move: p99 {moved_spread:.0} µs");
    assert!(moved_spread <= 1_000.0);
    // Node 0 plays a on, alone in its zone.
    assert_eq!(state(&nodes[0])["playback"]["state"], "playing");
    assert_eq!(state(&nodes[0])["playback"]["track"], a.as_str());

    // Play everywhere: the kitchen merges into the default zone, whose
    // session (a) carries on, on all four.
    let (status, reply) = http(
        nodes[2].http,
        "POST",
        "/api/zones/merge",
        Some(json!({ "from": "Kitchen", "into": "default" })),
    );
    assert_eq!(status, 200, "{reply}");
    let merged = wait_until(Duration::from_secs(5), || {
        let states: Vec<Value> = nodes.iter().map(state).collect();
        states.iter().all(|s| {
            s["zone"]["id"] == "default"
                && s["playback"]["track"] == a.as_str()
                && s["playback"]["state"] == "playing"
                && s["coordinator"] == states[0]["coordinator"]
                && s["playback"]["term"] == states[0]["playback"]["term"]
                && s["playback"]["seq"] == states[0]["playback"]["seq"]
        })
    });
    assert!(
        merged,
        "the merge did not make one session: {:?}",
        nodes.iter().map(state).collect::<Vec<_>>()
    );
    std::thread::sleep(Duration::from_secs(3));
    let all = spread(&nodes.iter().collect::<Vec<_>>(), 150);
    eprintln!("after the merge: p99 spread of all four {all:.0} µs");
    assert!(all <= 1_000.0);
    let (_, zones) = http(nodes[3].http, "GET", "/api/zones", None);
    assert_eq!(zones["zones"].as_array().unwrap().len(), 1, "{zones}");
}

#[test]
fn a_zones_coordinator_fails_over_in_that_zone_only_and_a_restarted_node_returns_to_its_zone() {
    let _swarm = crate::playback::one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let (mut nodes, kitchen, _, b) = two_zones_playing(tmp.path());
    let before = state(&nodes[0]);
    let kitchen_coordinator = state(&nodes[2])["coordinator"]
        .as_str()
        .unwrap()
        .to_string();
    let victim = nodes
        .iter()
        .position(|n| n.peer_id == kitchen_coordinator)
        .unwrap();
    assert!(victim >= 2, "the kitchen's coordinator is in the kitchen");
    let survivor = 5 - victim;
    let killed = nodes.remove(victim);
    let (dir, port, addr) = (killed.dir.clone(), killed.port, killed.http);
    drop(killed);
    let survivor = nodes
        .iter()
        .position(|n| n.process.label() == format!("n{survivor}"))
        .unwrap();
    let failed_over = wait_until(Duration::from_secs(5), || {
        let s = state(&nodes[survivor]);
        s["coordinator"] == nodes[survivor].peer_id.as_str()
            && s["playback"]["state"] == "playing"
            && s["playback"]["track"] == b.as_str()
    });
    assert!(
        failed_over,
        "the kitchen did not fail over: {}",
        state(&nodes[survivor])
    );
    // The default zone never noticed: same coordinator, same term.
    for node in &nodes[..2] {
        let s = state(node);
        assert_eq!(s["coordinator"], before["coordinator"], "{s}");
        assert_eq!(s["term"], before["term"], "{s}");
    }

    // The killed node comes back in the kitchen, following its coordinator.
    assert_eq!(dir, tmp.path().join(format!("n{victim}")));
    let bootstrap: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let back = spawn_node(
        tmp.path(),
        &NodeSpec {
            index: victim,
            tracks: &TRACKS,
            bootstrap: &bootstrap,
            reuse: Some((port, addr)),
            extra: &[],
        },
    );
    let returned = wait_until(Duration::from_secs(10), || {
        let s = state(&back);
        s["zone"]["id"] == kitchen.as_str()
            && s["coordinator"] == nodes[survivor].peer_id.as_str()
            && s["playback"]["track"] == b.as_str()
    });
    assert!(
        returned,
        "the restarted node is not back in its zone: {}",
        state(&back)
    );
}

/// The stereo pair's source: a different tone on each side (300 and 500
/// Hz), so a side played by the wrong node cannot pass for the right one.
fn write_pair_track(path: &std::path::Path, secs: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: crate::playback::RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for n in 0..secs * crate::playback::RATE {
        let t = f64::from(n) / f64::from(crate::playback::RATE);
        for hz in [300.0, 500.0] {
            let s = (t * hz * std::f64::consts::TAU).sin() * 0.3;
            w.write_sample((s * f64::from(i16::MAX)) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// The interleaved 16-bit frames of a WAV file, read raw: a `wav:` output
/// still being written has a placeholder data length, so the data chunk is
/// taken to the end of the file.
fn wav_frames(path: &std::path::Path) -> Vec<[i16; 2]> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    let mut at = 12;
    loop {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if id == b"data" {
            at += 8;
            break;
        }
        at += 8 + size;
    }
    bytes[at..]
        .chunks_exact(4)
        .map(|f| {
            [
                i16::from_le_bytes([f[0], f[1]]),
                i16::from_le_bytes([f[2], f[3]]),
            ]
        })
        .collect()
}

/// A node's flashes of its latest track: (source position, frame in its
/// output's stream, true µs).
fn output_flashes(node: &Node) -> Vec<(f64, u64, i64)> {
    let (_, body) = http(node.http, "GET", "/api/flashes", None);
    let all = body.as_array().unwrap();
    let last_track = all.iter().filter_map(|f| f["track"].as_u64()).max();
    all.iter()
        .filter(|f| f["track"].as_u64() == last_track)
        .filter_map(|f| {
            Some((
                f["position"].as_f64()?,
                f["output_frame"].as_u64()?,
                f["true_unix_us"].as_i64()?,
            ))
        })
        .collect()
}

/// What comparing a side's output with the source found.
#[derive(Debug, Default)]
struct SideCheck {
    /// The largest error of any sample against the side's channel, in
    /// steps of 16 bits.
    own: f64,
    /// The smallest, over the periods, of the largest error against the
    /// other channel.
    other: f64,
    /// Frames compared.
    compared: usize,
    /// Underrun gaps found: silence the output wrote that the player did
    /// not render (so not counted in `output_frame`).
    gaps: usize,
    /// Periods the player's position jumped across (a step), skipped.
    jumps: usize,
    /// Periods that matched nowhere.
    unmatched: usize,
}

/// Compares a side's output with the source's `side` channel over the
/// periods `flashes` name: each output frame against the source at the
/// position the player says it played there (interpolated). Both output
/// channels are compared (a side plays on every channel). An output
/// underrun writes silence into the file that the player never rendered:
/// a period found later in the file than its `output_frame` must have only
/// silence (exact zeros) before it, back to where the previous one ended.
fn check_side(
    out: &[[i16; 2]],
    source: &[[i16; 2]],
    side: usize,
    flashes: &[(f64, u64, i64)],
) -> SideCheck {
    /// Most a 16-bit sample may differ from the interpolated source: half
    /// a frame of the 500 Hz tone's steepest slope (700 steps a frame); the
    /// resampler's own error is a few steps, a rate change inside a period
    /// (the player slewing) tens.
    const TOLERANCE: f64 = 350.0;
    /// The longest underrun gap looked for, frames (5 s).
    const MAX_GAP: usize = 5 * 44_100;
    let at = |channel: usize, position: f64| {
        let i = position.floor() as usize;
        let frac = position - position.floor();
        let (a, b) = (
            f64::from(source[i][channel]),
            f64::from(source[i + 1][channel]),
        );
        a + (b - a) * frac
    };
    // The largest error of the period starting at file frame `start`.
    let error = |channel: usize, start: usize, p0: f64, step: f64, frames: usize, stop: f64| {
        let mut worst = 0.0_f64;
        for j in 0..frames {
            let Some(frame) = out.get(start + j) else {
                return f64::INFINITY;
            };
            let expected = at(channel, p0 + step * j as f64);
            for got in frame {
                worst = worst.max((f64::from(*got) - expected).abs());
            }
            if worst > stop {
                break;
            }
        }
        worst
    };
    let mut check = SideCheck {
        other: f64::INFINITY,
        ..SideCheck::default()
    };
    let mut shift = 0_usize;
    for pair in flashes.windows(2) {
        let ((p0, f0, _), (p1, f1, _)) = (pair[0], pair[1]);
        let frames = f1.saturating_sub(f0) as usize;
        if frames == 0 || p1 as usize + 1 >= source.len() {
            continue;
        }
        let step = (p1 - p0) / frames as f64;
        if (step - 1.0).abs() > 0.01 {
            check.jumps += 1;
            continue;
        }
        let start = f0 as usize;
        let mut own = error(side, start + shift, p0, step, frames, TOLERANCE);
        if own > TOLERANCE {
            let end = start + shift;
            let found = (1..=MAX_GAP).find_map(|gap| {
                let silent = out.get(end..end + gap)?.iter().all(|f| *f == [0, 0]);
                if !silent {
                    return None;
                }
                let e = error(side, end + gap, p0, step, frames, TOLERANCE);
                (e <= TOLERANCE).then_some((gap, e))
            });
            match found {
                Some((gap, e)) => {
                    shift += gap;
                    own = e;
                    check.gaps += 1;
                }
                None => {
                    check.unmatched += 1;
                    continue;
                }
            }
        }
        check.own = check.own.max(own);
        let other = error(1 - side, start + shift, p0, step, frames, f64::INFINITY);
        check.other = check.other.min(other);
        check.compared += frames;
    }
    check
}

#[test]
fn a_stereo_pairs_wav_outputs_are_the_sources_left_and_right_channels_frame_aligned() {
    let _swarm = crate::playback::one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let source_path = tmp.path().join("pair.wav");
    write_pair_track(&source_path, 12);
    let mut nodes: Vec<Node> = Vec::new();
    let outputs: Vec<std::path::PathBuf> = (0..2)
        .map(|i| tmp.path().join(format!("out{i}.wav")))
        .collect();
    for (index, output) in outputs.iter().enumerate() {
        let music = tmp.path().join(format!("n{index}")).join("music");
        std::fs::create_dir_all(&music).unwrap();
        std::fs::copy(&source_path, music.join("pair.wav")).unwrap();
        let bootstrap: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
        let output = format!("wav:{}", output.display());
        nodes.push(spawn_node(
            tmp.path(),
            &NodeSpec {
                index,
                tracks: &[("pair.wav", 12)],
                bootstrap: &bootstrap,
                reuse: None,
                extra: &["--output", &output],
            },
        ));
    }
    assert!(crate::playback::wait_settled(
        &nodes,
        Duration::from_secs(30)
    ));
    // n0 plays the left side, n1 the right: a stereo pair in one zone.
    for (node, map) in [("n0", "left"), ("n1", "right")] {
        let (status, reply) = http(
            nodes[0].http,
            "POST",
            "/api/channel",
            Some(json!({ "node": node, "channel": map })),
        );
        assert_eq!(status, 200, "{reply}");
    }
    let (_, library) = http(nodes[0].http, "GET", "/api/library", None);
    let track = library[0]["track"].as_str().unwrap().to_string();
    play(&nodes[1], &track);
    let playing = wait_until(Duration::from_secs(10), || {
        nodes.iter().all(|n| output_flashes(n).len() > 100)
    });
    assert!(playing, "the pair did not play");
    std::thread::sleep(Duration::from_secs(4));
    let flashes: Vec<Vec<(f64, u64, i64)>> = nodes.iter().map(output_flashes).collect();
    let source: Vec<[i16; 2]> = {
        let mut reader = hound::WavReader::open(&source_path).unwrap();
        let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        samples.chunks_exact(2).map(|f| [f[0], f[1]]).collect()
    };
    for (side, name) in [(0, "left"), (1, "right")] {
        let out = wav_frames(&outputs[side]);
        // A second into the music (past the fade-in), to the end of the file.
        let first = flashes[side][0].0;
        let steady: Vec<(f64, u64, i64)> = flashes[side]
            .iter()
            .copied()
            .filter(|(p, _, _)| *p >= first + f64::from(crate::playback::RATE))
            .collect();
        let check = check_side(&out, &source, side, &steady);
        eprintln!("{name} node against the source: {check:?}");
        assert!(
            check.compared > 44_100,
            "too few frames compared: {check:?}"
        );
        assert!(
            check.unmatched == 0 && check.own <= 350.0,
            "the {name} node's output is not the source's {name} channel: {check:?}"
        );
        assert!(
            check.other >= 4_000.0,
            "the {name} node's output matches the other channel too: {check:?}"
        );
    }
    // Frame-aligned: at each true instant both sides sound one source frame.
    let timed: Vec<Vec<(f64, i64)>> = flashes
        .iter()
        .map(|f| f.iter().map(|&(p, _, t)| (p, t)).collect())
        .collect();
    let skew = offsets(&timed[0], &timed[1]);
    assert!(skew.len() > 100, "too few overlapping flashes");
    let frame_us = 1e6 / f64::from(crate::playback::RATE);
    let mut sorted: Vec<f64> = skew.iter().map(|x| x.abs()).collect();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let worst99 = p99(skew);
    eprintln!(
        "left vs right: median {:.2} frames, p99 {:.2} frames ({worst99:.0} µs)",
        median / frame_us,
        worst99 / frame_us
    );
    assert!(
        worst99 <= 1_000.0,
        "the pair is out of step: p99 {worst99:.0} µs"
    );
}

/// The comparison itself: a side's periods with an underrun's silence
/// between them match (one gap found); the wrong side, or noise in the
/// gap, does not.
#[test]
fn the_side_check_finds_underrun_gaps_and_refuses_the_wrong_side() {
    let source: Vec<[i16; 2]> = (0..44_100)
        .map(|n| {
            let t = f64::from(n) / 44_100.0;
            let side = |hz: f64| ((t * hz * std::f64::consts::TAU).sin() * 9830.0) as i16;
            [side(300.0), side(500.0)]
        })
        .collect();
    // Four periods of 441 frames from source frame 1000, 300 silent frames
    // (an underrun) before the third.
    let mut out: Vec<[i16; 2]> = vec![[0, 0]; 50];
    let mut flashes = Vec::new();
    for k in 0..5_u64 {
        let position = 1000 + 441 * k as usize;
        flashes.push((position as f64, 441 * k + 50, 0));
        if k == 2 {
            out.extend(std::iter::repeat_n([0, 0], 300));
        }
        if k < 4 {
            out.extend((position..position + 441).map(|i| [source[i][0]; 2]));
        }
    }
    let left = check_side(&out, &source, 0, &flashes);
    assert_eq!((left.gaps, left.unmatched, left.compared), (1, 0, 4 * 441));
    assert!(left.own <= 1.0 && left.other >= 4_000.0, "{left:?}");
    let right = check_side(&out, &source, 1, &flashes);
    assert_eq!(right.unmatched, 4, "{right:?}");
    // Noise where the silence was: nothing from there on matches.
    let start = 50 + 2 * 441;
    out[start + 10] = [7, 7];
    let noisy = check_side(&out, &source, 0, &flashes);
    assert!(noisy.unmatched >= 1, "{noisy:?}");
}
