//! Playback commands keep every node in step: seek, queue and next, sent to
//! different nodes, make every node play the new position or track at the
//! same true instant (p99 offset ≤ 1 ms), starting from the right frame at
//! the agreed swarm instant. And a command sent while the coordinator is
//! being replaced is carried out or refused with a clear error, never lost.

use crate::playback::{
    Node, RATE, flashes, http, p99, pairwise_offsets, recent_flashes, start_swarm, wait_until,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Longest time from sending a command to its anchor: a command sent as
/// the coordinator dies waits for the new one (about 2.5 s), plus the lead.
const LEAD_LIMIT_MICROS: f64 = 5_000_000.0;

/// Flashes of a node's latest track with their swarm instants:
/// (position, swarm µs, true µs).
fn swarm_flashes(node: &Node) -> Vec<(f64, i64, i64)> {
    let (_, body) = http(node.http, "GET", "/api/flashes", None);
    let all = body.as_array().unwrap();
    let last = all.iter().filter_map(|f| f["track"].as_u64()).max();
    all.iter()
        .filter(|f| f["track"].as_u64() == last)
        .filter_map(|f| {
            Some((
                f["position"].as_f64()?,
                f["swarm_us"].as_i64()?,
                f["true_unix_us"].as_i64()?,
            ))
        })
        .collect()
}

fn swarm_now(node: &Node) -> i64 {
    http(node.http, "GET", "/api/state", None).1["swarm_time_us"]
        .as_i64()
        .unwrap()
}

/// Checks that every node plays `track` from `position_ms`, anchored at a
/// swarm instant after `sent_at` (swarm µs when the command was sent) and
/// within `max_lead` of it, in step with the others. Returns the p99 offset.
fn check_new_position(
    nodes: &[Node],
    track: &str,
    position_ms: u64,
    sent_at: i64,
    what: &str,
) -> f64 {
    // Every node on the new track/position, with 1 s of audio since.
    let moved = wait_until(Duration::from_secs(15), || {
        nodes.iter().all(|n| {
            let state: Value = http(n.http, "GET", "/api/state", None).1;
            let f = swarm_flashes(n);
            state["playback"]["track"] == track
                && f.first().is_some_and(|(p, _, _)| {
                    // From the new position (later for a node that joined
                    // late, after downloading the track).
                    let from = position_ms as f64 * f64::from(RATE) / 1000.0;
                    (from - f64::from(RATE) * 0.05..from + f64::from(RATE) * 5.0).contains(p)
                })
                && f.len() > 100
        })
    });
    assert!(
        moved,
        "{what}: not every node plays {track} from {position_ms} ms: {:?}",
        nodes
            .iter()
            .map(|n| (
                http(n.http, "GET", "/api/state", None).1["playback"].clone(),
                swarm_flashes(n).first().copied()
            ))
            .collect::<Vec<_>>()
    );
    // The frame at the agreed instant: each node's flashes put `position_ms`
    // at the same swarm instant, after the command and soon after it.
    let mut anchors = Vec::new();
    for n in nodes {
        let f = swarm_flashes(n);
        let mut a: Vec<f64> = f
            .iter()
            .map(|(p, swarm, _)| {
                *swarm as f64
                    - (p - position_ms as f64 * f64::from(RATE) / 1000.0) * 1e6 / f64::from(RATE)
            })
            .collect();
        a.sort_by(f64::total_cmp);
        anchors.push(a[a.len() / 2]);
    }
    let lead = anchors[0] - sent_at as f64;
    eprintln!(
        "{what}: anchored {:.0} ms after the command was sent",
        lead / 1000.0
    );
    assert!(
        (0.0..=LEAD_LIMIT_MICROS).contains(&lead),
        "{what}: anchor {lead:.0} µs after the command"
    );
    for a in &anchors {
        assert!(
            (a - anchors[0]).abs() <= 2_000.0,
            "{what}: nodes anchored the new position at different swarm instants: {anchors:?}"
        );
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    let worst = p99(pairwise_offsets(&recent_flashes(&refs, 100)));
    eprintln!("{what}: p99 inter-node offset {worst:.0} µs");
    assert!(worst <= 1_000.0, "{what}: p99 offset {worst:.0} µs");
    worst
}

fn track_ids(node: &Node) -> Vec<(String, u64)> {
    let (_, library) = http(node.http, "GET", "/api/library", None);
    library
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["track"].as_str().unwrap().to_string(),
                t["duration_ms"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn seek_queue_and_next_keep_every_node_in_step() {
    let _swarm = crate::playback::one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    // Every node holds both tracks, so every command starts them together
    // at the anchor (joining after a download is the `playback` and
    // `streaming` tests' business).
    let nodes = start_swarm(tmp.path(), 3, &[("a.wav", 30), ("b.wav", 20)], 3);
    let tracks = track_ids(&nodes[0]);
    let a = tracks.iter().find(|t| t.1 == 30_000).unwrap().0.clone();
    let b = tracks.iter().find(|t| t.1 == 20_000).unwrap().0.clone();
    let known = wait_until(Duration::from_secs(10), || {
        nodes.iter().all(|n| {
            http(n.http, "GET", "/api/catalog", None)
                .1
                .as_array()
                .is_some_and(|c| c.len() == 2)
        })
    });
    assert!(known, "not every node learned of both tracks");

    let sent = swarm_now(&nodes[2]);
    let (status, reply) = http(
        nodes[2].http,
        "POST",
        "/api/play",
        Some(json!({ "track": a })),
    );
    assert_eq!(status, 200, "{reply}");
    check_new_position(&nodes, &a, 0, sent, "play");

    // Seek from a follower or the coordinator alike.
    let sent = swarm_now(&nodes[1]);
    let (status, reply) = http(
        nodes[1].http,
        "POST",
        "/api/seek",
        Some(json!({ "position_ms": 12_000 })),
    );
    assert_eq!(status, 200, "{reply}");
    check_new_position(&nodes, &a, 12_000, sent, "seek");

    // Queue b from one node; every node sees the same queue.
    let (status, reply) = http(
        nodes[0].http,
        "POST",
        "/api/queue",
        Some(json!({ "tracks": [b] })),
    );
    assert_eq!(status, 200, "{reply}");
    let queued = wait_until(Duration::from_secs(5), || {
        nodes
            .iter()
            .all(|n| http(n.http, "GET", "/api/state", None).1["playback"]["queue"] == json!([b]))
    });
    assert!(queued, "not every node shows the queue");

    // Next: b from its start everywhere, the queue empty.
    let sent = swarm_now(&nodes[2]);
    let (status, reply) = http(nodes[2].http, "POST", "/api/next", None);
    assert_eq!(status, 200, "{reply}");
    check_new_position(&nodes, &b, 0, sent, "next");
    for n in &nodes {
        assert_eq!(
            http(n.http, "GET", "/api/state", None).1["playback"]["queue"],
            json!([])
        );
    }
    // Next with an empty queue is refused with a message.
    let (status, reply) = http(nodes[0].http, "POST", "/api/next", None);
    assert!((400..500).contains(&status), "{status} {reply}");
    assert!(
        reply["message"]
            .as_str()
            .is_some_and(|m| m.contains("queue")),
        "{reply}"
    );
    // Previous, early in b: back to a from its start everywhere, b queued next.
    let sent = swarm_now(&nodes[1]);
    let (status, reply) = http(nodes[1].http, "POST", "/api/prev", None);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["queue"], json!([b]), "{reply}");
    // Past the anchor, so that every node's latest flashes are the new ones.
    std::thread::sleep(Duration::from_millis(300));
    check_new_position(&nodes, &a, 0, sent, "prev");
}

#[test]
fn a_command_during_failover_is_carried_out_or_refused_never_lost() {
    let _swarm = crate::playback::one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = start_swarm(tmp.path(), 3, &[("a.wav", 40)], 3);
    let a = track_ids(&nodes[0])[0].0.clone();
    let known = wait_until(Duration::from_secs(10), || {
        nodes
            .iter()
            .all(|n| http(n.http, "GET", "/api/catalog", None).1[0]["track"] == a.as_str())
    });
    assert!(known, "not every node learned of the track");
    let (status, reply) = http(
        nodes[0].http,
        "POST",
        "/api/play",
        Some(json!({ "track": a })),
    );
    assert_eq!(status, 200, "{reply}");
    let playing = wait_until(Duration::from_secs(20), || {
        nodes.iter().all(|n| flashes(n).len() > 100)
    });
    assert!(playing, "not every node played");

    // Kill the coordinator and at once seek through a survivor.
    let coordinator = http(nodes[0].http, "GET", "/api/state", None).1["coordinator"]
        .as_str()
        .unwrap()
        .to_string();
    let victim = nodes.iter().position(|n| n.peer_id == coordinator).unwrap();
    drop(nodes.remove(victim));
    let killed = Instant::now();
    let sent = swarm_now(&nodes[0]);
    let (status, reply) = http(
        nodes[0].http,
        "POST",
        "/api/seek",
        Some(json!({ "position_ms": 20_000 })),
    );
    let answered = killed.elapsed();
    eprintln!(
        "a seek sent as the coordinator died was answered {status} after {answered:?}: {reply}"
    );
    assert!(
        answered < Duration::from_secs(8),
        "the answer took {answered:?}"
    );
    match status {
        // Carried out by the new coordinator: every survivor plays it.
        200 => {
            check_new_position(&nodes, &a, 20_000, sent, "seek during failover");
        }
        // Refused: a clear message, and nothing changed.
        _ => {
            assert!((500..600).contains(&status) || (400..500).contains(&status));
            let message = reply["message"].as_str().unwrap_or_default();
            assert!(message.contains("coordinator"), "unclear refusal: {reply}");
        }
    }
    // The command is not silently dropped either way: a second one right
    // after is carried out (the new coordinator is up by now).
    let sent = swarm_now(&nodes[1]);
    let (status, reply) = http(
        nodes[1].http,
        "POST",
        "/api/seek",
        Some(json!({ "position_ms": 5_000 })),
    );
    assert_eq!(status, 200, "{reply}");
    check_new_position(&nodes, &a, 5_000, sent, "seek after failover");
}
