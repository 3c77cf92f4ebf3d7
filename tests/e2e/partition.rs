//! A partition and its healing, in network namespaces: three nodes on a
//! bridged LAN play a track; the coordinator's port on the bridge goes down,
//! so each side has its own coordinator (the majority elects one at a higher
//! term) and each side takes a different command; when the port comes back
//! up the larger side wins and the other side follows it without a restart:
//! one coordinator and one session everywhere. Then a follower is cut off:
//! alone it elects itself at a term above the majority's, and after the heal
//! it follows the majority again (the larger side wins, not the higher term:
//! a term is a claim any member can make, support is not), whose coordinator
//! goes above the lone node's term. The first split lasts longer than the
//! member timeout, so the sides forget each other and the connections that
//! survive it sit in TCP retransmission backoff: a heal that once left two
//! coordinators or disagreeing terms about half the runs (issue 14).
//!
//! The namespaces, veths and bridge are created by the test and deleted when
//! it ends (`netns::Net`); without root and iproute2 (or without curl, which
//! reaches each node's API inside its namespace) the test says it was
//! skipped and passes, except under CI, where it fails.

use crate::netns::{Net, can_use_netns, ip};
use serde_json::{Value, json};
use std::process::Command;
use std::time::{Duration, Instant};

/// One API request to the node in namespace `ns` (through curl inside it):
/// (status, JSON body).
fn api(ns: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns, "curl", "-s", "-m", "8", "-X", method]);
    command.args(["-w", "\n%{http_code}"]);
    if let Some(body) = body {
        command.args([
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ]);
    }
    command.arg(format!("http://127.0.0.1:8081{path}"));
    let out = command.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn state(ns: &str) -> Value {
    api(ns, "GET", "/api/state", None).1
}

fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// (coordinator, term) as node `ns` sees it.
fn role(ns: &str) -> (Option<String>, u64) {
    let s = state(ns);
    (
        s["coordinator"].as_str().map(str::to_string),
        s["term"].as_u64().unwrap_or(0),
    )
}

/// The session as node `ns` holds it: (term, seq, track, state).
fn session(ns: &str) -> (u64, u64, Value, Value) {
    let p = state(ns)["playback"].clone();
    (
        p["term"].as_u64().unwrap_or(0),
        p["seq"].as_u64().unwrap_or(0),
        p["track"].clone(),
        p["state"].clone(),
    )
}

#[test]
fn after_a_partition_heals_the_larger_side_wins_without_a_restart() {
    let test = "after_a_partition_heals_the_larger_side_wins_without_a_restart";
    if !can_use_netns(test) {
        return;
    }
    if !crate::netns::has_tool("curl") {
        crate::netns::skip_outside_ci(
            test,
            "needs curl to reach the nodes' APIs inside their namespaces",
        );
        return;
    }
    let _swarm = crate::playback::one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let mut net = Net::new();
    let ns = net.lan(&["n0", "n1", "n2"]);
    let lan = net.name("lan");

    // n0 (longest standing, so the first coordinator) holds the track.
    let mut addrs: Vec<String> = Vec::new();
    for (i, name) in ["n0", "n1", "n2"].iter().enumerate() {
        let dir = tmp.path().join(name);
        let music = dir.join("music");
        if i == 0 {
            crate::playback::write_track(&music.join("song.wav"), 40);
        }
        std::fs::create_dir_all(&music).unwrap();
        let listen = format!("/ip4/10.77.0.{}/tcp/4001", i + 1);
        let (data, music) = (dir.join("data"), music);
        let mut args: Vec<String> = [
            "up",
            "--data-dir",
            data.to_str().unwrap(),
            "--music",
            music.to_str().unwrap(),
            "--name",
            name,
            "--no-mdns",
            "--output",
            "virtual",
            "--listen",
            &listen,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for addr in &addrs {
            args.extend(["--peer".to_string(), addr.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let index = net.run(&ns[i], name, &args);
        let peer = net
            .proc(index)
            .wait_event("started", Duration::from_secs(20))
            .expect("the node prints its peer id")["peer_id"]
            .as_str()
            .unwrap()
            .to_string();
        net.proc(index)
            .wait_event("library", Duration::from_secs(30))
            .expect("the node scans");
        addrs.push(format!("{listen}/p2p/{peer}"));
    }
    let one_coordinator = |nodes: &[String]| {
        let roles: Vec<_> = nodes.iter().map(|n| role(n)).collect();
        roles[0].0.is_some() && roles.iter().all(|r| *r == roles[0])
    };
    assert!(
        wait_until(Duration::from_secs(30), || one_coordinator(&ns)),
        "the nodes never agreed on a coordinator"
    );
    let (Some(first), first_term) = role(&ns[0]) else {
        unreachable!("checked above")
    };
    let catalog_ready = wait_until(Duration::from_secs(15), || {
        api(&ns[1], "GET", "/api/catalog", None).1[0]["track"].is_string()
    });
    assert!(catalog_ready, "n1 never learned of the track");
    let track = api(&ns[1], "GET", "/api/catalog", None).1[0]["track"].clone();
    let (status, reply) = api(&ns[1], "POST", "/api/play", Some(json!({ "track": track })));
    assert_eq!(status, 200, "{reply}");
    let playing = wait_until(Duration::from_secs(20), || {
        ns.iter().all(|n| session(n).3 == "playing")
    });
    assert!(playing, "not every node played");

    // Split: the coordinator's bridge port goes down.
    let coordinator = ns
        .iter()
        .position(|n| state(n)["peer_id"].as_str() == Some(first.as_str()))
        .expect("the coordinator is one of the nodes");
    let port = format!("p{coordinator}");
    let lonely = ns[coordinator].clone();
    let others: Vec<String> = ns.iter().filter(|n| **n != lonely).cloned().collect();
    let split_at = Instant::now();
    ip(&["-n", &lan, "link", "set", &port, "down"]);
    let elected = wait_until(Duration::from_secs(10), || {
        let (c, term) = role(&others[0]);
        c.is_some_and(|c| c != first) && term > first_term && one_coordinator(&others)
    });
    assert!(
        elected,
        "the majority side never elected its own coordinator"
    );
    let (Some(second), second_term) = role(&others[0]) else {
        unreachable!("checked above")
    };
    eprintln!(
        "split: the majority elected {second} at term {second_term} {:?} after the split; \
         the lone node keeps {first} at term {first_term}",
        split_at.elapsed()
    );
    assert_eq!(role(&lonely), (Some(first.clone()), first_term));
    // Each side takes its own command, so the sessions diverge.
    let (status, reply) = api(&lonely, "POST", "/api/pause", None);
    assert_eq!(
        status, 200,
        "the lone coordinator refused a command: {reply}"
    );
    let (status, reply) = api(
        &others[1],
        "POST",
        "/api/seek",
        Some(json!({ "position_ms": 30_000 })),
    );
    assert_eq!(
        status, 200,
        "the majority's coordinator refused a command: {reply}"
    );
    assert_eq!(session(&lonely).3, "paused");
    let majority = session(&others[0]);
    assert_eq!(majority.0, second_term);
    assert_eq!(majority.3, "playing");

    // Heal: the larger side wins everywhere, with no restart.
    // Cut off for longer than the member timeout (5 s) first: the sides
    // forget each other, and the connections that survive sit in TCP
    // retransmission backoff (issue 14: this is when the heal went wrong).
    std::thread::sleep(Duration::from_secs(3));
    let healed_at = Instant::now();
    ip(&["-n", &lan, "link", "set", &port, "up"]);
    let converged = wait_until(Duration::from_secs(30), || {
        one_coordinator(&ns) && {
            let sessions: Vec<_> = ns.iter().map(|n| session(n)).collect();
            sessions.iter().all(|s| *s == sessions[0])
        }
    });
    let roles: Vec<_> = ns.iter().map(|n| role(n)).collect();
    let sessions: Vec<_> = ns.iter().map(|n| session(n)).collect();
    assert!(
        converged,
        "no single coordinator and session after the heal: {roles:?} {sessions:?}"
    );
    eprintln!(
        "healed: one coordinator and one session {:?} after the port came back",
        healed_at.elapsed()
    );
    // The goal is 3 s (issue 14); the bound leaves room for a loaded CI
    // machine and the polling through curl.
    assert!(
        healed_at.elapsed() < Duration::from_secs(6),
        "a healed partition took {:?} to become one swarm",
        healed_at.elapsed()
    );
    // The larger side won. Its term may have gone up on the way: members
    // of the other side come back one by one, and the lone node, hearing
    // one of them, may win that one-to-one tie for a moment (lowest peer
    // id) and go a term up, which the larger side's coordinator then
    // outranks in turn; every node ends on the same term.
    assert_eq!(roles[0].0, Some(second.clone()), "the larger side won");
    assert!(roles[0].1 >= second_term, "{roles:?}");
    assert_eq!(sessions[0].0, second_term, "the larger side's session won");
    assert_eq!(
        sessions[0].3, "playing",
        "the majority's session (playing) won"
    );
    // The lone node was never restarted: same process, still running.
    let events = net.proc(coordinator).events();
    assert!(
        events.iter().any(|e| e["event"] == "role"
            && e["role"] == "following"
            && e["coordinator"].as_str() == Some(second.as_str())),
        "the old coordinator never followed the new one: {events:?}"
    );

    // The merged swarm's term, which the second split starts from.
    let second_term = roles[0].1;

    // Again, isolating a follower this time: alone, it elects itself at a
    // term above the majority's; after the heal it follows the majority
    // again (the larger side wins, not the higher term).
    let follower = ns
        .iter()
        .position(|n| state(n)["peer_id"].as_str() != Some(second.as_str()))
        .expect("a follower");
    let lone = ns[follower].clone();
    let lone_peer = state(&lone)["peer_id"].as_str().unwrap().to_string();
    let rest: Vec<String> = ns.iter().filter(|n| **n != lone).cloned().collect();
    let port = format!("p{follower}");
    let split_at = Instant::now();
    ip(&["-n", &lan, "link", "set", &port, "down"]);
    let elected = wait_until(Duration::from_secs(10), || {
        let (c, term) = role(&lone);
        c.as_deref() == Some(lone_peer.as_str()) && term > second_term
    });
    assert!(
        elected,
        "the lone follower never elected itself: {:?}",
        role(&lone)
    );
    let (_, third_term) = role(&lone);
    eprintln!(
        "second split: the lone follower elected itself at term {third_term} {:?} after the split",
        split_at.elapsed()
    );
    assert_eq!(role(&rest[0]), (Some(second.clone()), second_term));
    assert_eq!(role(&rest[1]), (Some(second.clone()), second_term));
    let (status, reply) = api(&rest[0], "POST", "/api/pause", None);
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = api(
        &lone,
        "POST",
        "/api/seek",
        Some(json!({ "position_ms": 10_000 })),
    );
    assert_eq!(status, 200, "{reply}");
    let healed_at = Instant::now();
    ip(&["-n", &lan, "link", "set", &port, "up"]);
    let converged = wait_until(Duration::from_secs(30), || {
        one_coordinator(&ns) && {
            let sessions: Vec<_> = ns.iter().map(|n| session(n)).collect();
            sessions.iter().all(|s| *s == sessions[0])
        }
    });
    let roles: Vec<_> = ns.iter().map(|n| role(n)).collect();
    let sessions: Vec<_> = ns.iter().map(|n| session(n)).collect();
    assert!(
        converged,
        "no single coordinator and session after the second heal: {roles:?} {sessions:?}"
    );
    eprintln!(
        "second heal: the lone node follows the majority again {:?} after the port came back",
        healed_at.elapsed()
    );
    // The goal is 3 s (issue 14); the bound leaves room for a loaded CI
    // machine and the polling through curl.
    assert!(
        healed_at.elapsed() < Duration::from_secs(6),
        "a healed partition took {:?} to become one swarm",
        healed_at.elapsed()
    );
    assert_eq!(roles[0].0, Some(second.clone()), "the majority won");
    assert!(
        roles[0].1 > third_term,
        "the majority's coordinator goes above the side it absorbed: {roles:?}"
    );
    assert_eq!(
        (sessions[0].0, &sessions[0].3),
        (second_term, &json!("paused")),
        "the majority's session (paused) won"
    );
    for index in 0..ns.len() {
        let lines = net.proc(index).lines();
        assert!(
            !lines.iter().any(|l| l.starts_with("banned: ")),
            "an honest node was banned: {lines:?}"
        );
    }
}
