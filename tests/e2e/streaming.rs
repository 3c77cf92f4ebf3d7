//! Starting before the download finishes: a node that lacks a long track
//! joins the playback while the track still downloads, once the chunks reach
//! a few seconds past the play head and the download runs several times
//! faster than playback; it plays in step, without a gap, and the download
//! completes under it.

use crate::playback::{
    NodeSpec, RATE, flashes, http, offsets, p99, spawn_node, wait_settled, wait_until,
};
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn unix_now_micros() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

#[test]
fn a_node_starts_a_long_track_before_its_download_finishes() {
    let _swarm = crate::playback::one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    // 90 s of 44.1 kHz stereo (15.9 MB, 176 kB/s of playback) served at
    // 2 MB/s: the download takes ~8 s and runs ~11x faster than playback.
    let holder = spawn_node(
        tmp.path(),
        &NodeSpec {
            index: 0,
            tracks: &[("long.wav", 90)],
            bootstrap: &[],
            reuse: None,
            extra: &["--max-upload", "2000000"],
        },
    );
    let bootstrap = [holder.addr.clone()];
    let player = spawn_node(
        tmp.path(),
        &NodeSpec {
            index: 1,
            tracks: &[],
            bootstrap: &bootstrap,
            reuse: None,
            extra: &[],
        },
    );
    let nodes = [holder, player];
    assert!(
        wait_settled(&nodes, Duration::from_secs(30)),
        "the nodes never settled"
    );
    let (_, library) = http(nodes[0].http, "GET", "/api/library", None);
    let track = library[0]["track"].as_str().unwrap().to_string();
    let known = wait_until(Duration::from_secs(10), || {
        http(nodes[1].http, "GET", "/api/catalog", None).1[0]["track"] == track.as_str()
    });
    assert!(known, "the player never learned of the track");
    let (status, reply) = http(
        nodes[1].http,
        "POST",
        "/api/play",
        Some(json!({ "track": track })),
    );
    assert_eq!(status, 200, "{reply}");

    // It joins while downloading…
    let joined = nodes[1]
        .process
        .wait_event("joining", Duration::from_secs(20));
    let joined = joined.expect("the player never joined");
    eprintln!("{joined}");
    assert_eq!(
        joined["during_download"], true,
        "it joined only after the download: {joined}"
    );
    // …and the download finishes later, under the playing track.
    let mut done_at = None;
    let finished = wait_until(Duration::from_secs(30), || {
        if done_at.is_none() && nodes[1].process.has_event("downloaded") {
            done_at = Some(unix_now_micros());
        }
        done_at.is_some()
    });
    assert!(finished, "the download never finished");
    let done_at = done_at.unwrap();
    let events = nodes[1].process.events();
    let joined_at = events.iter().position(|e| e["event"] == "joining").unwrap();
    let downloaded_at = events
        .iter()
        .position(|e| e["event"] == "downloaded")
        .unwrap();
    assert!(joined_at < downloaded_at, "{events:?}");

    // Sound came out before the download finished, in step, with no gap.
    std::thread::sleep(Duration::from_millis(500));
    let mine = flashes(&nodes[1]);
    let first = mine.first().copied().expect("the player sounded nothing");
    // From the track's start (with the holder: the prepare found the
    // download safe) or from where the track was by then (joined late).
    eprintln!(
        "the player's first sound was at {:.2} s into the track",
        first.0 / f64::from(RATE)
    );
    let early = (done_at - first.1) as f64 / 1e6;
    eprintln!("the player sounded {early:.2} s before its download finished");
    assert!(
        early > 0.5,
        "sound started only {early:.2} s before the end"
    );
    let gaps = mine
        .windows(2)
        .filter(|w| (w[1].1 - w[0].1) > 30_000 || (w[1].0 - w[0].0) > f64::from(RATE) * 0.03)
        .count();
    assert_eq!(gaps, 0, "the player's output has gaps");
    let advanced = (mine.last().unwrap().0 - first.0) / f64::from(RATE);
    let elapsed = (mine.last().unwrap().1 - first.1) as f64 / 1e6;
    assert!(
        (advanced - elapsed).abs() < 0.05,
        "played {advanced:.2} s of audio in {elapsed:.2} s"
    );
    let theirs = flashes(&nodes[0]);
    // While the download still ran, once the players' slew settled (as
    // the `playback` test measures: the first 2 s are left out).
    let settled = first.1 + 2_000_000;
    let during: Vec<(f64, i64)> = mine
        .iter()
        .copied()
        .filter(|f| (settled..done_at).contains(&f.1))
        .collect();
    let pair = offsets(&during, &theirs);
    assert!(
        pair.len() > 100,
        "too few flashes while downloading: {}",
        pair.len()
    );
    let worst = p99(pair);
    eprintln!("while downloading: p99 offset against the holder {worst:.0} µs");
    assert!(
        worst <= 1_000.0,
        "p99 offset {worst:.0} µs while downloading"
    );
    let stats = http(nodes[1].http, "GET", "/api/state", None).1;
    assert_eq!(stats["playback"]["state"], "playing", "{stats}");
}
