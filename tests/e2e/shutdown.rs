//! A clean stop: SIGTERM to the coordinator of three real nodes. The node
//! says goodbye, so a survivor takes the role within 1 s (a SIGKILL waits
//! for the member timeout: up to 3 s, `playback.rs`), the survivors keep
//! playing in step with no gap, and the stopped node exits 0.

use crate::playback::{
    RATE, flashes, http, offsets, one_swarm_at_a_time, p99, start_swarm, wait_until,
};
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn sigterm_to_the_coordinator_hands_the_role_over_within_a_second() {
    let _swarm = one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = start_swarm(tmp.path(), 3, &[("sweep.wav", 30)], 3);
    let (_, library) = http(nodes[0].http, "GET", "/api/library", None);
    let track = library[0]["track"].as_str().unwrap().to_string();
    let (status, reply) = http(
        nodes[0].http,
        "POST",
        "/api/play",
        Some(json!({ "track": track })),
    );
    assert_eq!(status, 200, "{reply}");
    let playing = wait_until(Duration::from_secs(15), || {
        nodes.iter().all(|n| flashes(n).len() > 100)
    });
    assert!(playing, "not every node played");

    let (_, state) = http(nodes[0].http, "GET", "/api/state", None);
    let coordinator = state["coordinator"].as_str().unwrap().to_string();
    let term = state["term"].as_u64().unwrap();
    let victim = nodes.iter().position(|n| n.peer_id == coordinator).unwrap();
    let mut stopped = nodes.remove(victim);
    let before: Vec<f64> = nodes.iter().map(|n| flashes(n).last().unwrap().0).collect();
    let sent_at = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &stopped.process.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());

    // Every survivor names the same new coordinator, one of them.
    let mut handed_over = None;
    let over = wait_until(Duration::from_secs(5), || {
        let states: Vec<_> = nodes
            .iter()
            .map(|n| http(n.http, "GET", "/api/state", None).1)
            .collect();
        let new = states[0]["coordinator"].as_str().map(str::to_string);
        let agreed = states
            .iter()
            .all(|s| s["coordinator"] == states[0]["coordinator"]);
        if agreed
            && let Some(new) = new
            && new != coordinator
            && nodes.iter().any(|n| n.peer_id == new)
        {
            handed_over.get_or_insert(sent_at.elapsed());
            return true;
        }
        false
    });
    assert!(over, "no survivor took the role");
    let took = handed_over.unwrap();
    eprintln!("after SIGTERM a survivor coordinated within {took:?}");
    assert!(
        took <= Duration::from_millis(1_000),
        "the role moved on only {took:?} after SIGTERM"
    );
    let (_, state) = http(nodes[0].http, "GET", "/api/state", None);
    assert!(state["term"].as_u64().unwrap() > term, "{state}");

    // The stopped node said so, and exited 0.
    let code = stopped.process.wait_exit(Duration::from_secs(5));
    assert_eq!(
        code.map(|s| s.code()),
        Some(Some(0)),
        "the node did not exit cleanly: {:?}",
        stopped.process.lines()
    );
    assert!(
        stopped.process.has_event("stopping"),
        "{:?}",
        stopped.process.lines()
    );
    // The survivors saw it leave.
    for node in &nodes {
        assert!(
            node.process
                .wait_event_where("left", Duration::from_secs(2), |e| e["peer"]
                    == coordinator.as_str())
                .is_some(),
            "{} never saw the node leave",
            node.process.label()
        );
    }

    // The new coordinator takes commands, and playback went on in step.
    let (status, reply) = http(
        nodes[0].http,
        "POST",
        "/api/queue",
        Some(json!({ "tracks": [] })),
    );
    assert_eq!(status, 200, "{reply}");
    std::thread::sleep(Duration::from_millis(1_500));
    let elapsed = sent_at.elapsed().as_secs_f64();
    for (node, start) in nodes.iter().zip(before) {
        let f = flashes(node);
        let advanced = (f.last().unwrap().0 - start) / f64::from(RATE);
        assert!(
            (advanced - elapsed).abs() < 0.3,
            "{} advanced {advanced:.2} s of audio in {elapsed:.2} s",
            node.process.label()
        );
        let gaps = f
            .windows(2)
            .filter(|w| (w[1].1 - w[0].1) > 30_000 || (w[1].0 - w[0].0) > f64::from(RATE) * 0.03)
            .count();
        assert_eq!(gaps, 0, "{} has gaps in its output", node.process.label());
    }
    let after: Vec<_> = nodes.iter().map(flashes).collect();
    let worst = p99(offsets(&after[0], &after[1]));
    eprintln!("after the clean stop: p99 inter-node offset {worst:.0} µs");
    assert!(worst <= 1_000.0, "after the stop p99 offset {worst:.0} µs");
}
