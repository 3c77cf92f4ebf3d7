//! Zones with real nodes: four `firefly up` processes on skewed clocks and
//! virtual outputs, in two zones playing two different tracks, each zone
//! in step; a node moved from one zone to the other is in step with its
//! new zone within a second; a merge puts all four in one session; killing
//! a zone's coordinator fails over in that zone only; a restarted node
//! comes back in its zone. Measured from the virtual outputs' true
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

fn track_of_length(node: &Node, ms: u64) -> String {
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
fn make_zone(nodes: &[Node], via: &Node, name: &str, members: &[&Node]) -> String {
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
