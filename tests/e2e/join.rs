//! Late joiners and restarts: a node started mid-track, and a node killed and
//! started again with the same data dir, play in step with the others within
//! 2 s. Measured from the virtual outputs' true instants, as in `playback`.

use crate::playback::{Node, flashes};
use crate::playback::{
    NodeSpec, http, p99, pairwise_offsets, recent_flashes, spawn_node, start_swarm, wait_until,
};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The track every test here plays (node 0 holds it, the joiner a copy).
const TRACK: (&str, u32) = ("long.wav", 45);
/// In step means within this of the reference, µs.
const IN_STEP_MICROS: f64 = 1_000.0;

fn unix_now_micros() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

/// For every flash of `a` inside `b`'s span: (true µs of `a`'s flash, offset
/// µs of `a` against `b`).
pub(crate) fn timed_offsets(a: &[(f64, i64)], b: &[(f64, i64)]) -> Vec<(i64, f64)> {
    a.iter()
        .filter_map(|&(pos, t)| {
            let i = b.windows(2).position(|w| w[0].0 <= pos && pos < w[1].0)?;
            let (p0, t0) = b[i];
            let (p1, t1) = b[i + 1];
            let tb = t0 as f64 + (pos - p0) / (p1 - p0) * (t1 - t0) as f64;
            Some((t, t as f64 - tb))
        })
        .collect()
}

/// The true instant from which `joiner` stays in step with `reference` (and
/// for at least `hold`); `None` if it never does.
fn in_step_since(joiner: &Node, reference: &Node, hold: Duration) -> Option<i64> {
    let mine = flashes(joiner);
    let theirs = flashes(reference);
    let timed = timed_offsets(&mine, &theirs);
    let last_bad = timed.iter().rposition(|(_, o)| o.abs() > IN_STEP_MICROS);
    let since = match last_bad {
        Some(i) => timed.get(i + 1)?.0,
        None => timed.first()?.0,
    };
    let until = timed.last()?.0;
    (until - since >= i64::try_from(hold.as_micros()).unwrap()).then_some(since)
}

/// The median of (swarm µs − true µs) over a node's recent flashes: how far
/// its swarm clock is from the true timeline (plus a constant shared by all).
pub(crate) fn clock_bias(node: &Node) -> i64 {
    let (_, body) = http(node.http, "GET", "/api/flashes", None);
    let mut d: Vec<i64> = body
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| Some(f["swarm_us"].as_i64()? - f["true_unix_us"].as_i64()?))
        .collect();
    d.sort_unstable();
    d.get(d.len() / 2).copied().unwrap_or(0)
}

/// Starts a node (`index`) and returns it with how long after its start it
/// played in step with `reference`.
fn join(root: &Path, spec: &NodeSpec<'_>, reference: &Node) -> (Node, f64) {
    let started = unix_now_micros();
    let node = spawn_node(root, spec);
    let mut since = None;
    let ok = wait_until(Duration::from_secs(20), || {
        since = in_step_since(&node, reference, Duration::from_millis(1500));
        since.is_some()
    });
    if !ok {
        let timed = timed_offsets(&flashes(&node), &flashes(reference));
        let tail: Vec<f64> = timed.iter().step_by(50).map(|(_, o)| *o).collect();
        let state = http(node.http, "GET", "/api/state", None).1;
        eprintln!("joiner state: {state}");
        eprintln!(
            "swarm clock minus true time: joiner {} µs, reference {} µs",
            clock_bias(&node),
            clock_bias(reference)
        );
        panic!(
            "{} never played in step: {} flashes, last offsets {tail:?}; {:?}",
            node.process.label(),
            flashes(&node).len(),
            node.process.lines()
        );
    }
    let took = (since.unwrap() - started) as f64 / 1e6;
    (node, took)
}

fn play_everywhere(nodes: &[Node]) {
    let (_, library) = http(nodes[0].http, "GET", "/api/library", None);
    let track = library[0]["track"].as_str().unwrap().to_string();
    let heard = wait_until(Duration::from_secs(10), || {
        http(nodes[1].http, "GET", "/api/catalog", None).1[0]["track"] == track.as_str()
    });
    assert!(heard, "node 1 never learned of the track");
    let (status, reply) = http(
        nodes[1].http,
        "POST",
        "/api/play",
        Some(json!({ "track": track })),
    );
    assert_eq!(status, 200, "{reply}");
    let playing = wait_until(Duration::from_secs(20), || {
        nodes.iter().all(|n| flashes(n).len() > 150)
    });
    assert!(playing, "not every node played");
}

#[test]
#[ignore = "fails today: a node that starts mid-track plays with a constant 1-3 ms offset \
            (its clock agrees with the others within 0.3 ms and its slew does not correct it: \
            the player's late-start path); run with --ignored to measure"]
fn a_node_started_mid_track_and_a_restarted_node_join_in_step_within_2_s() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = start_swarm(tmp.path(), 2, &[TRACK]);
    play_everywhere(&nodes);

    // A newcomer that holds the track too (so the measure is joining, not
    // downloading): it must hear the session, sync its clock, and start at
    // the current position.
    let bootstrap: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let (newcomer, took) = join(
        tmp.path(),
        &NodeSpec {
            index: 2,
            tracks: &[TRACK],
            bootstrap: &bootstrap,
            reuse: None,
        },
        &nodes[0],
    );
    eprintln!("a node started mid-track played in step {took:.2} s after its process started");
    nodes.push(newcomer);
    assert!(took <= 2.0, "the newcomer took {took:.2} s to join in step");

    // Restart node 1 (it downloaded the track): killed, then started again
    // with the same data dir and ports.
    let old = nodes.remove(1);
    let (dir, port, http_addr) = (old.dir.clone(), old.port, old.http);
    assert_eq!(dir, tmp.path().join("n1"));
    drop(old);
    let bootstrap: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
    let (restarted, took) = join(
        tmp.path(),
        &NodeSpec {
            index: 1,
            tracks: &[],
            bootstrap: &bootstrap,
            reuse: Some((port, http_addr)),
        },
        &nodes[0],
    );
    eprintln!("a restarted node played in step {took:.2} s after its process started");
    assert!(took <= 2.0, "the restarted node took {took:.2} s to rejoin");
    let state: Value = http(restarted.http, "GET", "/api/state", None).1;
    assert_eq!(state["playback"]["state"], "playing", "{state}");
    nodes.push(restarted);

    // All three in step over the last second.
    let refs: Vec<&Node> = nodes.iter().collect();
    let all = pairwise_offsets(&recent_flashes(&refs, 100));
    assert!(
        all.len() > 200,
        "too few overlapping flashes: {}",
        all.len()
    );
    let worst = p99(all);
    eprintln!("three nodes after the join and the restart: p99 offset {worst:.0} µs");
    assert!(worst <= 1_000.0, "p99 offset {worst:.0} µs");
}
