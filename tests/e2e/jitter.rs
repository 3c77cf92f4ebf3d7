//! The swarm clock on a bad network: three real `firefly up` processes on
//! skewed test clocks, every link through the fault proxy
//! (`firefly-faultproxy`) with 20 ± 10 ms of jitter each way, as a busy
//! Wi-Fi. Over a minute of playback the clock must never step and no player
//! restart; the flash-measured inter-node offset p99 stays within 1 ms (the
//! issue's test margin; the benchmark carries the 200 µs goal).
//!
//! Nodes reach each other only through the proxies: mDNS is off, each node
//! dials the earlier ones at their proxy's address, and the test checks that
//! every peer's smallest round trip is at least the proxies' least delay.
//! Each proxy forwards UDP on its port number too, so the time datagrams
//! (`firefly_swarm::time_datagram`) cross the same faults; the test checks
//! that every node timed both peers over datagrams.

use crate::playback::{
    free_port, http, offsets, one_swarm_at_a_time, p99, wait_until, write_track,
};
use crate::util::{Running, arg, firefly_bin};
use firefly_faultproxy::{FaultProxy, Faults, LinkFaults};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The test clocks of the issue: (offset µs, ppm).
const SKEWS: [&str; 3] = ["250000,200", "-400000,-165", "700000,130"];

struct JitterNode {
    process: Running,
    http: SocketAddr,
    /// Where its tracing output goes (steps are logged there).
    log: PathBuf,
}

impl JitterNode {
    /// `joining` events after the swarm clock stepped: restarts.
    fn restarts(&self) -> usize {
        self.process
            .events()
            .iter()
            .filter(|e| {
                e["event"] == "joining" && e["why"].as_str().is_some_and(|w| w.contains("stepped"))
            })
            .count()
    }

    /// `swarm clock stepped` log lines so far (the acquisition's included).
    fn steps(&self) -> usize {
        self.log_lines("swarm clock stepped")
    }

    /// Log lines so far that contain `what`.
    fn log_lines(&self, what: &str) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(what))
            .count()
    }
}

fn spawn(root: &Path, index: usize, port: u16, peers: &[String]) -> (JitterNode, String) {
    let dir = root.join(format!("n{index}"));
    let music = dir.join("music");
    std::fs::create_dir_all(&music).unwrap();
    if index == 0 {
        write_track(&music.join("sweep.wav"), 150);
    }
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = dir.join("node.log");
    let mut command = Command::new(firefly_bin());
    command
        .args(["up", "--data-dir", arg(&dir.join("data")), "--music"])
        .arg(&music)
        .args(["--name", &format!("n{index}"), "--no-mdns"])
        .args(["--events", "json"])
        .args(["--output", "virtual"])
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{port}")])
        .args(["--http", &http.to_string()])
        .env("FIREFLY_TEST_CLOCK", SKEWS[index])
        .env(
            "RUST_LOG",
            std::env::var("FIREFLY_E2E_LOG").unwrap_or_else(|_| {
                "warn,firefly_swarm::time_exchange=info,firefly_swarm::time_datagram=info".into()
            }),
        )
        .stderr(std::fs::File::create(&log).unwrap());
    for peer in peers {
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
    (JitterNode { process, http, log }, peer_id)
}

/// Flashes (source frame, true µs) of the node's latest track.
fn flashes(http_addr: SocketAddr) -> Vec<(f64, i64)> {
    let (status, body) = http(http_addr, "GET", "/api/flashes", None);
    assert_eq!(status, 200);
    let all = body.as_array().cloned().unwrap_or_default();
    let last = all.iter().filter_map(|f| f["track"].as_u64()).max();
    all.iter()
        .filter(|f| f["track"].as_u64() == last)
        .filter_map(|f| Some((f["position"].as_f64()?, f["true_unix_us"].as_i64()?)))
        .collect()
}

#[test]
fn jittery_links_cause_no_clock_steps_and_no_player_restarts() {
    let _swarm = one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let wifi = LinkFaults::default()
        .delay(Duration::from_millis(20))
        .jitter(Duration::from_millis(10));
    let ports = [free_port(), free_port(), free_port()];
    let target = |i: usize| -> SocketAddr { format!("127.0.0.1:{}", ports[i]).parse().unwrap() };
    // One proxy per link, towards the node that is dialed.
    let links = [(1, 0), (2, 0), (2, 1)];
    let proxies: Vec<FaultProxy> = links
        .iter()
        .enumerate()
        .map(|(k, &(_, to))| {
            runtime
                .block_on(FaultProxy::start(
                    target(to),
                    Faults::both(wifi),
                    k as u64 + 1,
                ))
                .unwrap()
        })
        .collect();
    let via = |k: usize, peer: &str| {
        format!(
            "/ip4/127.0.0.1/tcp/{}/p2p/{peer}",
            proxies[k].local_addr().port()
        )
    };
    let (n0, id0) = spawn(tmp.path(), 0, ports[0], &[]);
    let (n1, id1) = spawn(tmp.path(), 1, ports[1], &[via(0, &id0)]);
    let (n2, _) = spawn(tmp.path(), 2, ports[2], &[via(1, &id0), via(2, &id1)]);
    let nodes = [n0, n1, n2];
    let https: Vec<SocketAddr> = nodes.iter().map(|n| n.http).collect();

    let settled = wait_until(Duration::from_secs(60), || {
        https.iter().all(|&h| {
            let s = http(h, "GET", "/api/state", None).1;
            s["clock_synced"] == true && s["peers"].as_array().is_some_and(|p| p.len() == 2)
        })
    });
    assert!(settled, "the nodes never synced through the proxies");
    // Every peer is reached through a proxy: no round trip below its least delay.
    let through_proxies = wait_until(Duration::from_secs(20), || {
        https.iter().all(|&h| {
            let s = http(h, "GET", "/api/state", None).1;
            s["peers"].as_array().is_some_and(|peers| {
                peers
                    .iter()
                    .all(|p| p["rtt_us"].as_f64().is_some_and(|r| r >= 19_000.0))
            })
        })
    });
    assert!(through_proxies, "a node reaches a peer around the proxies");

    let (_, library) = http(https[0], "GET", "/api/library", None);
    let track = library[0]["track"].as_str().unwrap().to_string();
    let heard = wait_until(Duration::from_secs(20), || {
        https
            .iter()
            .all(|&h| http(h, "GET", "/api/catalog", None).1[0]["track"] == track.as_str())
    });
    assert!(heard, "not every node learned of the track");
    let (status, reply) = http(
        https[1],
        "POST",
        "/api/play",
        Some(serde_json::json!({ "track": track })),
    );
    assert_eq!(status, 200, "{reply}");
    let playing = wait_until(Duration::from_secs(30), || {
        https.iter().all(|&h| !flashes(h).is_empty())
    });
    assert!(playing, "not every node played");
    // A swarm runs for hours: let the clocks' windows fill and the players
    // settle onto the timeline (as `firefly bench sync` warms up), then
    // watch a minute.
    std::thread::sleep(Duration::from_secs(30));
    let steps_before: Vec<usize> = nodes.iter().map(JitterNode::steps).collect();
    let restarts_before: Vec<usize> = nodes.iter().map(JitterNode::restarts).collect();
    let mut all = Vec::new();
    for _ in 0..6 {
        for _ in 0..5 {
            std::thread::sleep(Duration::from_secs(2));
            // What each node thinks of its peers, for a failure's story.
            let views: Vec<String> = https
                .iter()
                .map(|&h| {
                    let st = http(h, "GET", "/api/state", None).1;
                    let peers: Vec<String> = st["peers"]
                        .as_array()
                        .map(|ps| {
                            ps.iter()
                                .map(|p| {
                                    format!(
                                        "{:.0}/{:.0}",
                                        p["clock_offset_us"].as_f64().unwrap_or(f64::NAN),
                                        p["rtt_us"].as_f64().unwrap_or(f64::NAN)
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    format!(
                        "err {:.0} peers {}",
                        st["sync_error_us"].as_f64().unwrap_or(f64::NAN),
                        peers.join(" ")
                    )
                })
                .collect();
            eprintln!("clock views (offset/rtt µs): {}", views.join(" | "));
        }
        // The last 10 s of each node (the flash ring holds more).
        let seen: Vec<Vec<(f64, i64)>> = https
            .iter()
            .map(|&h| {
                let f = flashes(h);
                let keep = f.len().min(1_000);
                f[f.len() - keep..].to_vec()
            })
            .collect();
        for (i, j) in [(0, 1), (0, 2), (1, 2)] {
            all.extend(offsets(&seen[i], &seen[j]));
        }
    }
    let steps: Vec<usize> = nodes
        .iter()
        .zip(&steps_before)
        .map(|(n, b)| n.steps() - b)
        .collect();
    let restarts: Vec<usize> = nodes
        .iter()
        .zip(&restarts_before)
        .map(|(n, b)| n.restarts() - b)
        .collect();
    let stats: Vec<_> = proxies.iter().map(FaultProxy::stats).collect();
    eprintln!("proxies: {stats:?}");
    assert!(
        stats
            .iter()
            .all(|s| s.bytes_upstream > 0 && s.bytes_downstream > 0),
        "a link carried nothing through its proxy: {stats:?}"
    );
    // The time took its own path, through the same faults.
    assert!(
        stats
            .iter()
            .all(|s| s.datagrams_upstream > 100 && s.datagrams_downstream > 100),
        "a link carried no time datagrams: {stats:?}"
    );
    let on_datagrams: Vec<usize> = nodes
        .iter()
        .map(|n| n.log_lines("time probes on datagrams"))
        .collect();
    assert!(
        on_datagrams.iter().all(|&n| n >= 2),
        "not every node timed both peers over datagrams: {on_datagrams:?}"
    );
    assert!(
        all.len() > 3_000,
        "too few overlapping flashes: {}",
        all.len()
    );
    let worst = p99(all.clone());
    let mut sorted: Vec<f64> = all.iter().map(|o| o.abs()).collect();
    sorted.sort_by(f64::total_cmp);
    eprintln!(
        "20 ± 10 ms jitter: offsets p50 {:.0} µs, p99 {worst:.0} µs, max {:.0} µs; \
         steps {steps:?}, restarts {restarts:?}",
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
    );
    if steps.iter().any(|&s| s > 0) {
        for n in &nodes {
            let log = std::fs::read_to_string(&n.log).unwrap_or_default();
            for line in log
                .lines()
                .filter(|l| l.contains("stepped") || l.contains("WARN"))
            {
                eprintln!("{}: {line}", n.process.label());
            }
        }
    }
    assert_eq!(steps, [0, 0, 0], "the swarm clock stepped under jitter");
    assert_eq!(restarts, [0, 0, 0], "players restarted under jitter");
    // The margin. Real nodes measure 0.15–0.2 ms since the proxy
    // releases datagrams on time (0.5–0.7 ms while it held them on the
    // runtime's 1 ms timer grid, on long-lived streams 0.6–2 ms, a new
    // stream per probe 3.3–4.6 ms, the first runs 7–17 ms; see
    // BENCHMARKS.md): 1 ms leaves a loaded CI machine its margin.
    assert!(
        worst <= 1_000.0,
        "p99 inter-node offset {worst:.0} µs > 1 ms"
    );
    drop(nodes);
    drop(proxies);
}
