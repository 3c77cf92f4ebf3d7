//! Synchronized playback end to end: three real `firefly up` processes on
//! 127.0.0.1, each on a deliberately skewed test clock (`FIREFLY_TEST_CLOCK`)
//! with a virtual output, play in step a track only the first one holds (the
//! others download it and join at the current position); killing the coordinator
//! with SIGKILL leaves the others playing and a new coordinator takes
//! commands within 3 s. Sync is measured from the virtual outputs' true
//! instants (`GET /api/flashes`), never from the nodes' own beliefs.

use crate::util::{Running, arg, firefly_bin};
use serde_json::{Value, json};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Skews of the nodes: (offset µs, ppm), node `i` takes `SKEWS[i % 5]`.
pub(crate) const SKEWS: [&str; 5] = [
    "300000,150",
    "-700000,-120",
    "1000000,60",
    "-1000000,200",
    "450000,-200",
];
/// Sample rate of the generated tracks.
pub(crate) const RATE: u32 = 44_100;

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `secs` seconds of a stereo sweep at 44.1 kHz.
pub(crate) fn write_track(path: &Path, secs: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for n in 0..secs * RATE {
        let t = f64::from(n) / f64::from(RATE);
        let s = (t * (220.0 + 20.0 * t) * std::f64::consts::TAU).sin() * 0.3;
        let v = (s * f64::from(i16::MAX)) as i16;
        w.write_sample(v).unwrap();
        w.write_sample(v).unwrap();
    }
    w.finalize().unwrap();
}

/// One request to a node's API; returns (status, JSON body).
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    crate::util::http(&format!("http://{addr}"), method, path, body)
}

/// A running `firefly up` with its addresses.
pub(crate) struct Node {
    pub(crate) process: Running,
    pub(crate) http: SocketAddr,
    pub(crate) peer_id: String,
    /// Its libp2p address with `/p2p/<id>`, for others' `--peer`.
    pub(crate) addr: String,
    /// Its folder (data dir and music), kept across a restart.
    pub(crate) dir: std::path::PathBuf,
    /// Its libp2p port, kept across a restart.
    pub(crate) port: u16,
}

/// How to start a node: its folder `root/n<index>`, skew `SKEWS[index]`, and
/// the tracks (file name, seconds) written into its music folder.
pub(crate) struct NodeSpec<'a> {
    pub(crate) index: usize,
    pub(crate) tracks: &'a [(&'a str, u32)],
    pub(crate) bootstrap: &'a [String],
    /// Reuse this libp2p port and HTTP address (a restart).
    pub(crate) reuse: Option<(u16, SocketAddr)>,
    /// More `firefly up` arguments.
    pub(crate) extra: &'a [&'a str],
}

/// Starts node `index` in `root/n<index>` (writing node 0 a 30 s sweep), dialing `bootstrap`.
fn start_node(root: &Path, index: usize, bootstrap: &[String]) -> Node {
    let tracks: &[(&str, u32)] = if index == 0 {
        &[("sweep.wav", 30)]
    } else {
        &[]
    };
    spawn_node(
        root,
        &NodeSpec {
            index,
            tracks,
            bootstrap,
            reuse: None,
            extra: &[],
        },
    )
}

/// Starts a node as `spec` says and waits until it has scanned its music.
pub(crate) fn spawn_node(root: &Path, spec: &NodeSpec<'_>) -> Node {
    let index = spec.index;
    let dir = root.join(format!("n{index}"));
    let music = dir.join("music");
    std::fs::create_dir_all(&music).unwrap();
    for (name, secs) in spec.tracks {
        if !music.join(name).exists() {
            write_track(&music.join(name), *secs);
        }
    }
    let (port, http) = spec.reuse.unwrap_or_else(|| {
        (
            free_port(),
            format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        )
    });
    let mut command = Command::new(firefly_bin());
    command
        .args([
            "up",
            "--data-dir",
            arg(&dir.join("data")),
            "--music",
            arg(&music),
        ])
        .args([
            "--name",
            &format!("n{index}"),
            "--no-mdns",
            "--events",
            "json",
        ])
        // A virtual output, unless the spec names another.
        .args(if spec.extra.contains(&"--output") {
            &[][..]
        } else {
            &["--output", "virtual"][..]
        })
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{port}")])
        .args(["--http", &http.to_string()])
        .env("FIREFLY_TEST_CLOCK", SKEWS[index % SKEWS.len()])
        .env(
            "RUST_LOG",
            std::env::var("FIREFLY_E2E_LOG").unwrap_or_else(|_| "warn".into()),
        );
    command.args(spec.extra);
    // Every node dials every earlier one, as mDNS would connect them on a LAN.
    for peer in spec.bootstrap {
        command.args(["--peer", peer]);
    }
    let process = Running::spawn(&format!("n{index}"), command);
    let peer_id = process
        .wait_event("started", Duration::from_secs(20))
        .expect("the node prints its peer id")["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    process
        .wait_event("library", Duration::from_secs(30))
        .expect("the node scans its music");
    Node {
        process,
        http,
        addr: format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}"),
        peer_id,
        dir,
        port,
    }
}

/// Multi-node tests hold this so that one runs at a time: on a 2-core CI
/// machine, several swarms of debug nodes at once starve each other's
/// audio threads and clock exchanges.
pub(crate) fn one_swarm_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that failed while holding it leaves nothing half-done.
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts `n` nodes (the first `holders` with `tracks`), each dialing the
/// earlier ones, and waits until all are clock-synced, see each other and
/// follow one coordinator.
pub(crate) fn start_swarm(
    root: &Path,
    n: usize,
    tracks: &[(&str, u32)],
    holders: usize,
) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    for index in 0..n {
        let bootstrap: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
        let tracks = if index < holders { tracks } else { &[] };
        nodes.push(spawn_node(
            root,
            &NodeSpec {
                index,
                tracks,
                bootstrap: &bootstrap,
                reuse: None,
                extra: &[],
            },
        ));
    }
    assert!(
        wait_settled(&nodes, Duration::from_secs(30)),
        "the nodes never agreed on a synced timeline and a coordinator"
    );
    nodes
}

/// Waits until every node is clock-synced, sees all the others and follows
/// the same coordinator.
pub(crate) fn wait_settled(nodes: &[Node], limit: Duration) -> bool {
    wait_until(limit, || {
        let states: Vec<Value> = nodes
            .iter()
            .map(|n| http(n.http, "GET", "/api/state", None).1)
            .collect();
        states.iter().all(|s| {
            s["clock_synced"] == true
                && s["peers"]
                    .as_array()
                    .is_some_and(|p| p.len() == nodes.len() - 1)
        }) && states
            .iter()
            .all(|s| s["coordinator"] == states[0]["coordinator"])
            && states[0]["coordinator"].is_string()
    })
}

/// Polls `ok` every 100 ms until it holds or `limit` passes.
pub(crate) fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Flashes of the node's latest track: (source frame, true µs).
pub(crate) fn flashes(node: &Node) -> Vec<(f64, i64)> {
    let (status, body) = http(node.http, "GET", "/api/flashes", None);
    assert_eq!(status, 200);
    let all = body.as_array().unwrap();
    let last_track = all.iter().filter_map(|f| f["track"].as_u64()).max();
    all.iter()
        .filter(|f| f["track"].as_u64() == last_track)
        .filter_map(|f| Some((f["position"].as_f64()?, f["true_unix_us"].as_i64()?)))
        .collect()
}

/// For every flash of `a` inside `b`'s span, the true time `a` sounded that
/// position minus when `b` did (interpolated), µs.
pub(crate) fn offsets(a: &[(f64, i64)], b: &[(f64, i64)]) -> Vec<f64> {
    a.iter()
        .filter_map(|&(pos, t)| {
            let i = b.windows(2).position(|w| w[0].0 <= pos && pos < w[1].0)?;
            let (p0, t0) = b[i];
            let (p1, t1) = b[i + 1];
            let tb = t0 as f64 + (pos - p0) / (p1 - p0) * (t1 - t0) as f64;
            Some(t as f64 - tb)
        })
        .collect()
}

/// The last `keep` flashes of each node's latest track.
pub(crate) fn recent_flashes(nodes: &[&Node], keep: usize) -> Vec<Vec<(f64, i64)>> {
    nodes
        .iter()
        .map(|n| {
            let f = flashes(n);
            let keep = f.len().min(keep);
            f[f.len() - keep..].to_vec()
        })
        .collect()
}

/// Offsets of every pair of `seen`, all together.
pub(crate) fn pairwise_offsets(seen: &[Vec<(f64, i64)>]) -> Vec<f64> {
    let mut all = Vec::new();
    for i in 0..seen.len() {
        for j in i + 1..seen.len() {
            all.extend(offsets(&seen[i], &seen[j]));
        }
    }
    all
}

/// The 99th percentile of the absolute values.
pub(crate) fn p99(mut values: Vec<f64>) -> f64 {
    values.sort_by(|x, y| x.abs().total_cmp(&y.abs()));
    values[(values.len() * 99 / 100).min(values.len() - 1)].abs()
}

#[test]
fn three_skewed_nodes_play_in_step_and_survive_the_coordinator_being_killed() {
    let _swarm = one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = start_swarm(tmp.path(), 3, &[("sweep.wav", 30)], 1);

    // Play from a node, not necessarily the coordinator.
    let (_, library) = http(nodes[0].http, "GET", "/api/library", None);
    let track = library[0]["track"].as_str().unwrap().to_string();
    // Through the CLI client: `firefly play QUERY` on a node without the
    // track, once it has heard of it.
    let heard = wait_until(Duration::from_secs(10), || {
        http(nodes[2].http, "GET", "/api/catalog", None).1[0]["track"] == track.as_str()
    });
    assert!(heard, "node 2 never learned of the track");
    let out = crate::util::firefly(&[
        "play",
        &track[..16],
        "--at",
        "1",
        "--http",
        &nodes[2].http.to_string(),
    ]);
    assert!(
        out.status.success(),
        "firefly play failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The others download the track (all of it within the prepare, or
    // enough to start while the rest comes) and play; give them time to settle.
    let joined = wait_until(Duration::from_secs(15), || {
        nodes
            .iter()
            .all(|n| n.process.has_event("downloaded") || n.peer_id == nodes[0].peer_id)
            && nodes.iter().all(|n| !flashes(n).is_empty())
    });
    assert!(
        joined,
        "the nodes without the track never played it: {:?} {:?}",
        nodes[1].process.lines(),
        nodes[2].process.lines()
    );
    std::thread::sleep(Duration::from_secs(4));
    // The last 2.5 s: after the players' slew has settled onto the timeline.
    let seen: Vec<Vec<(f64, i64)>> = nodes
        .iter()
        .map(|n| {
            let f = flashes(n);
            let keep = f.len().min(250);
            f[f.len() - keep..].to_vec()
        })
        .collect();
    for (i, f) in seen.iter().enumerate() {
        assert!(
            f.len() > 100,
            "node {i} played too little: {} flashes",
            f.len()
        );
    }
    let mut all = Vec::new();
    for (i, j) in [(0, 1), (0, 2), (1, 2)] {
        let pair = offsets(&seen[i], &seen[j]);
        let mean = pair.iter().sum::<f64>() / pair.len().max(1) as f64;
        eprintln!(
            "nodes {i}-{j}: mean offset {mean:.0} µs over {} flashes",
            pair.len()
        );
        all.extend(pair);
    }
    assert!(
        all.len() > 300,
        "too few overlapping flashes: {}",
        all.len()
    );
    let worst = p99(all);
    eprintln!("p99 inter-node offset: {worst:.0} µs");
    assert!(
        worst <= 1_000.0,
        "p99 inter-node offset {worst:.0} µs > 1 ms"
    );

    // Kill the coordinator (SIGKILL); the others keep playing and a new
    // coordinator takes a command within 3 s.
    let (_, state) = http(nodes[0].http, "GET", "/api/state", None);
    let coordinator = state["coordinator"].as_str().unwrap().to_string();
    let victim = nodes.iter().position(|n| n.peer_id == coordinator).unwrap();
    let killed = nodes.remove(victim);
    let before: Vec<f64> = nodes.iter().map(|n| flashes(n).last().unwrap().0).collect();
    let killed_at = Instant::now();
    drop(killed);
    let accepted = wait_until(Duration::from_secs(5), || {
        let (status, _) = http(
            nodes[0].http,
            "POST",
            "/api/queue",
            Some(json!({ "tracks": [] })),
        );
        status == 200
    });
    let took = killed_at.elapsed();
    assert!(accepted, "no new coordinator accepted a command");
    eprintln!("a new coordinator accepted a command {took:?} after the kill");
    assert!(
        took <= Duration::from_millis(3_000),
        "failover took {took:?}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let elapsed = killed_at.elapsed().as_secs_f64();
    for (node, start) in nodes.iter().zip(before) {
        let f = flashes(node);
        let now = f.last().unwrap().0;
        let advanced = (now - start) / f64::from(RATE);
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
    let after: Vec<Vec<(f64, i64)>> = nodes.iter().map(flashes).collect();
    let worst = p99(offsets(&after[0], &after[1]));
    assert!(worst <= 1_000.0, "after failover p99 offset {worst:.0} µs");

    // Pause and resume through the new coordinator keep the survivors in step.
    assert!(cli("pause", &nodes[1]).starts_with("paused"));
    let paused = wait_until(Duration::from_secs(2), || {
        nodes
            .iter()
            .all(|n| http(n.http, "GET", "/api/state", None).1["playback"]["state"] == "paused")
    });
    assert!(paused, "not every survivor paused");
    cli("resume", &nodes[0]);
    // Long enough for the survivors' clocks to settle without the dead peer.
    std::thread::sleep(Duration::from_millis(4000));
    let resumed: Vec<Vec<(f64, i64)>> = nodes
        .iter()
        .map(|n| {
            let f = flashes(n);
            f[f.len() - 150..].to_vec()
        })
        .collect();
    let worst = p99(offsets(&resumed[0], &resumed[1]));
    eprintln!("after failover and resume: p99 inter-node offset {worst:.0} µs");
    assert!(worst <= 1_000.0, "after resume p99 offset {worst:.0} µs");
}

#[test]
fn bad_api_input_gets_4xx_json_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let node = start_node(tmp.path(), 0, &[]);
    for (path, body, want) in [
        ("/api/play", json!({ "track": "nope" }), 400),
        (
            "/api/play",
            json!({ "track": "00".repeat(32), "position_ms": u64::MAX }),
            400,
        ),
        ("/api/seek", json!({ "position_ms": -5 }), 400),
        ("/api/volume", json!({ "volume": 9.5 }), 400),
        ("/api/queue", json!({ "tracks": ["zz"] }), 400),
    ] {
        let (status, reply) = http(node.http, "POST", path, Some(body.clone()));
        assert_eq!(status, want, "{path} {body}: {reply}");
        assert!(reply["message"].is_string(), "{reply}");
    }
}

/// Runs `firefly VERB --http NODE` (a CLI client), asserts it succeeded and
/// returns what it printed.
fn cli(verb: &str, node: &Node) -> String {
    let http = node.http.to_string();
    let out = crate::util::firefly(&[verb, "--http", &http]);
    assert!(
        out.status.success(),
        "firefly {verb}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
