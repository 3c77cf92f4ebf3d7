//! The queue plays on by itself: two queued tracks play back to back on
//! every node with no gap and no overlap (the second track's first frame
//! sounds on the output frame right after the first track's last), every
//! node switching at the same true instant; the end of the queue is
//! "stopped". Measured from the virtual outputs' true instants. And the
//! session survives the whole swarm being killed: after a restart the
//! nodes show it paused where it stopped, and `resume` continues there.

use crate::playback::{
    Node, NodeSpec, RATE, flashes, http, spawn_node, start_swarm, wait_settled, wait_until,
};
use serde_json::{Value, json};
use std::time::Duration;

/// A node's flashes grouped by player track, in play order:
/// (track number, [(position, true µs)]).
fn flashes_by_track(node: &Node) -> Vec<(u64, Vec<(f64, i64)>)> {
    let (_, body) = http(node.http, "GET", "/api/flashes", None);
    let mut tracks: Vec<(u64, Vec<(f64, i64)>)> = Vec::new();
    for f in body.as_array().unwrap() {
        let (Some(track), Some(position), Some(true_us)) = (
            f["track"].as_u64(),
            f["position"].as_f64(),
            f["true_unix_us"].as_i64(),
        ) else {
            continue;
        };
        match tracks.iter_mut().find(|(t, _)| *t == track) {
            Some((_, list)) => list.push((position, true_us)),
            None => tracks.push((track, vec![(position, true_us)])),
        }
    }
    tracks.sort_by_key(|(t, _)| *t);
    tracks
}

/// The true instant (µs) source frame `frame` sounds, extrapolated from
/// the two flashes `pair` at the rate they show (the player resamples
/// onto its swarm clock: a few hundred ppm from the nominal rate).
fn instant_of(pair: &[(f64, i64)], frame: f64) -> f64 {
    let [(p1, t1), (p2, t2)] = pair else {
        panic!("two flashes needed, got {pair:?}")
    };
    let micros_per_frame = (t2 - t1) as f64 / (p2 - p1);
    *t2 as f64 + (frame - p2) * micros_per_frame
}

fn library_ids(node: &Node) -> Vec<(String, u64)> {
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

fn playback(node: &Node) -> Value {
    http(node.http, "GET", "/api/state", None).1["playback"].clone()
}

#[test]
fn two_queued_tracks_play_back_to_back_with_no_gap_on_every_node() {
    let _swarm = crate::playback::one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let nodes = start_swarm(tmp.path(), 3, &[("a.wav", 3), ("b.wav", 2)], 3);
    let tracks = library_ids(&nodes[0]);
    let a = tracks.iter().find(|t| t.1 == 3_000).unwrap().0.clone();
    let b = tracks.iter().find(|t| t.1 == 2_000).unwrap().0.clone();

    let (status, reply) = http(
        nodes[1].http,
        "POST",
        "/api/play",
        Some(json!({ "track": a })),
    );
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["duration_ms"], 3_000, "{reply}");
    // Queued through the CLI client, by a track id prefix.
    let queued = crate::util::firefly_json(&[
        "queue",
        "add",
        &b[..16],
        "--http",
        &nodes[2].http.to_string(),
        "--json",
    ]);
    assert_eq!(queued["queue"], json!([b]), "{queued}");

    // b follows a everywhere, and the end of the queue stops playback.
    let moved_on = wait_until(Duration::from_secs(8), || {
        nodes.iter().all(|n| playback(n)["track"] == b.as_str())
    });
    assert!(moved_on, "not every node moved on to the queued track");
    let stopped = wait_until(Duration::from_secs(6), || {
        nodes.iter().all(|n| {
            let p = playback(n);
            p["state"] == "stopped" && p["track"].is_null() && p["queue"] == json!([])
        })
    });
    assert!(
        stopped,
        "the end of the queue is not 'stopped': {}",
        playback(&nodes[0])
    );
    // The other CLI commands answer with the playback, or a clear error.
    let http0 = nodes[0].http.to_string();
    // Queue edits through the CLI client: add, move, remove, clear.
    let edit = |args: &[&str]| {
        let mut all = vec!["queue"];
        all.extend_from_slice(args);
        all.extend(["--http", http0.as_str(), "--json"]);
        crate::util::firefly_json(&all)["queue"].clone()
    };
    for track in [&a, &b, &a] {
        edit(&["add", &track[..16]]);
    }
    assert_eq!(edit(&["mv", "0", "2"]), json!([b, a, a]));
    assert_eq!(edit(&["rm", "0"]), json!([a, a]));
    assert_eq!(edit(&["clear"]), json!([]));
    let repeat = crate::util::firefly_json(&["repeat", "all", "--http", &http0, "--json"]);
    assert_eq!(repeat["repeat"], "all", "{repeat}");
    let shuffle = crate::util::firefly_json(&["shuffle", "on", "--http", &http0, "--json"]);
    assert_eq!(shuffle["shuffle"], true, "{shuffle}");
    let out = crate::util::firefly(&["next", "--http", &http0]);
    assert!(!out.status.success(), "next with nothing playing succeeded");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing is playing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let len_a = 3.0 * f64::from(RATE);
    let mut starts = Vec::new();
    for node in &nodes {
        let played = flashes_by_track(node);
        assert!(
            played.len() >= 2,
            "{} played {} tracks",
            node.process.label(),
            played.len()
        );
        let (first, second) = (&played[played.len() - 2].1, &played[played.len() - 1].1);
        // The last frame of a and the first of b, one frame apart.
        assert!(first.len() >= 2 && second.len() >= 2);
        let a_ends = instant_of(&first[first.len() - 2..], len_a);
        let b_starts = instant_of(&second[..2], 0.0);
        let gap_frames = (b_starts - a_ends) * f64::from(RATE) / 1e6;
        eprintln!(
            "{}: b starts {gap_frames:.3} frames after a's end",
            node.process.label()
        );
        // a's last frame sounds on an output frame at most one frame
        // before a's end (the resampler's phase); b's first takes the next
        // output frame: 0 to 1 frame after a's end, with a little
        // measuring slack. A missing output frame (a gap) or a doubled one
        // (an overlap) is one more or one less.
        assert!(
            (-0.1..=1.1).contains(&gap_frames),
            "{}: {gap_frames:.2} frames of gap (negative: overlap) between the tracks",
            node.process.label()
        );
        // And b played to its end without a hole.
        let last = second.last().unwrap().0;
        assert!(
            last > 2.0 * f64::from(RATE) - 1000.0,
            "b stopped at frame {last}"
        );
        starts.push(b_starts);
    }
    let spread = starts.iter().copied().fold(f64::MIN, f64::max)
        - starts.iter().copied().fold(f64::MAX, f64::min);
    eprintln!("b's first frame: spread across nodes {spread:.0} µs");
    assert!(
        spread <= 1_000.0,
        "b started {spread:.0} µs apart across nodes"
    );
}

#[test]
fn a_swarm_killed_and_restarted_resumes_the_track_where_it_stopped() {
    let _swarm = crate::playback::one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let nodes = start_swarm(tmp.path(), 2, &[("a.wav", 30)], 2);
    let a = library_ids(&nodes[0])[0].0.clone();
    let (status, reply) = http(
        nodes[0].http,
        "POST",
        "/api/play",
        Some(json!({ "track": a })),
    );
    assert_eq!(status, 200, "{reply}");
    let playing = wait_until(Duration::from_secs(5), || {
        nodes.iter().all(|n| flashes(n).len() > 100)
    });
    assert!(playing, "the nodes never played");
    std::thread::sleep(Duration::from_millis(1500));
    // Where the music was when the whole swarm died (SIGKILL).
    let reused: Vec<_> = nodes.iter().map(|n| (n.port, n.http)).collect();
    let stopped_at: f64 = nodes
        .iter()
        .map(|n| flashes(n).last().unwrap().0 / f64::from(RATE))
        .fold(0.0, f64::max);
    drop(nodes);

    let mut nodes: Vec<Node> = Vec::new();
    for (index, reuse) in reused.into_iter().enumerate() {
        let bootstrap: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
        nodes.push(spawn_node(
            tmp.path(),
            &NodeSpec {
                index,
                tracks: &[("a.wav", 30)],
                bootstrap: &bootstrap,
                reuse: Some(reuse),
                extra: &[],
            },
        ));
    }
    assert!(
        wait_settled(&nodes, Duration::from_secs(30)),
        "the restarted nodes never settled"
    );
    // Every node shows the session paused where it stopped (saved every half second).
    let restored = wait_until(Duration::from_secs(5), || {
        nodes.iter().all(|n| {
            let p = playback(n);
            p["state"] == "paused" && p["track"] == a.as_str()
        })
    });
    assert!(restored, "not restored: {}", playback(&nodes[1]));
    for node in &nodes {
        let at = playback(node)["position_ms"].as_u64().unwrap() as f64 / 1000.0;
        eprintln!(
            "{}: restored at {at:.2} s, stopped at {stopped_at:.2} s",
            node.process.label()
        );
        assert!(
            (at - stopped_at).abs() <= 1.0,
            "restored at {at:.2} s, stopped at {stopped_at:.2} s"
        );
    }
    let (status, reply) = http(nodes[1].http, "POST", "/api/resume", None);
    assert_eq!(status, 200, "{reply}");
    let resumed = wait_until(Duration::from_secs(5), || {
        nodes.iter().all(|n| !flashes(n).is_empty())
    });
    assert!(resumed, "the nodes never resumed");
    for node in &nodes {
        let first = flashes(node)[0].0 / f64::from(RATE);
        eprintln!("{}: resumed at {first:.2} s", node.process.label());
        assert!(
            (first - stopped_at).abs() <= 1.0,
            "{} resumed at {first:.2} s; it stopped at {stopped_at:.2} s",
            node.process.label()
        );
    }
}
