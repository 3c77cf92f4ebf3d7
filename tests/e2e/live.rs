//! Live sources end to end: a FIFO fed by the test with a click train, on
//! one of three real `firefly up` processes (skewed test clocks, virtual
//! outputs), played by all three in step, with the source-to-sound delay
//! measured from the feeder's write instants to the virtual outputs' true
//! instants; the origin killed → every member stopped within 2 s with the
//! reason in the API, and the swarm plays a track at once.

use crate::playback::{
    Node, NodeSpec, http, one_swarm_at_a_time, p99, pairwise_offsets, recent_flashes, spawn_node,
    wait_settled, wait_until,
};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const RATE: u32 = 48_000;
/// A click every 250 ms.
const CLICK_EVERY: u64 = 12_000;

fn unix_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
}

/// Writes a click train (s16le, 48 kHz, stereo) into a FIFO in real time,
/// 10 ms a write; remembers the Unix instant each click was written.
struct Feeder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<i64>>>,
}

impl Feeder {
    fn start(fifo: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut pipe = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .expect("the FIFO opens for writing");
            let mut clicks = Vec::new();
            let start = Instant::now();
            let mut frame = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                let due = start + Duration::from_micros(frame * 1_000_000 / u64::from(RATE));
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let mut bytes = Vec::with_capacity(480 * 4);
                let mut click = false;
                for f in frame..frame + 480 {
                    let v: i16 = if f % CLICK_EVERY < 24 { 24_000 } else { 0 };
                    click |= f % CLICK_EVERY == 0;
                    bytes.extend(v.to_le_bytes());
                    bytes.extend(v.to_le_bytes());
                }
                let at = unix_micros();
                if pipe.write_all(&bytes).is_err() {
                    break;
                }
                if click {
                    clicks.push(at);
                }
                frame += 480;
            }
            clicks
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) -> Vec<i64> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Three nodes, node 0 with `--source clicks=pipe:FIFO`, node 1 with a track.
fn start_live_swarm(root: &Path, fifo: &Path) -> Vec<Node> {
    let source = format!("clicks=pipe:{}", fifo.display());
    let mut nodes: Vec<Node> = Vec::new();
    for index in 0..3 {
        let bootstrap: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
        let extra: &[&str] = if index == 0 {
            &["--source", &source]
        } else {
            &[]
        };
        let tracks: &[(&str, u32)] = if index == 1 { &[("tone.wav", 20)] } else { &[] };
        nodes.push(spawn_node(
            root,
            &NodeSpec {
                index,
                tracks,
                bootstrap: &bootstrap,
                reuse: None,
                extra,
            },
        ));
    }
    assert!(
        wait_settled(&nodes, Duration::from_secs(30)),
        "the nodes never agreed on a synced timeline and a coordinator"
    );
    nodes
}

fn sources(node: &Node) -> Value {
    http(node.http, "GET", "/api/sources", None).1
}

/// The true Unix instant `node` sounded stream position `pos`, from its flashes.
fn sounded_at(flashes: &[(f64, i64)], pos: f64) -> Option<f64> {
    let i = flashes
        .windows(2)
        .position(|w| w[0].0 <= pos && pos < w[1].0)?;
    let (p0, t0) = flashes[i];
    let (p1, t1) = flashes[i + 1];
    Some(t0 as f64 + (pos - p0) / (p1 - p0) * (t1 - t0) as f64)
}

#[test]
fn a_fifo_plays_in_step_on_three_nodes_and_the_origin_dying_stops_them() {
    let _swarm = one_swarm_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("clicks.fifo");
    mkfifo(&fifo);
    let mut nodes = start_live_swarm(tmp.path(), &fifo);
    let mut feeder = Feeder::start(fifo.clone());

    // Every node lists the source, with audio flowing.
    let listed = wait_until(Duration::from_secs(10), || {
        nodes.iter().all(|n| {
            sources(n)["sources"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|s| s["name"] == "clicks" && s["flowing"] == true)
            })
        })
    });
    assert!(
        listed,
        "the source is not in every catalog: {}",
        sources(&nodes[2])
    );

    // Played from a node that is not the origin.
    let (status, body) = http(
        nodes[1].http,
        "POST",
        "/api/sources/play",
        Some(json!({ "name": "clicks" })),
    );
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_secs(6));

    // In step: the same stream position at the same true instant.
    let refs: Vec<&Node> = nodes.iter().collect();
    let seen = recent_flashes(&refs, 300);
    assert!(seen.iter().all(|f| f.len() > 100), "too few flashes");
    let spread = p99(pairwise_offsets(&seen));
    println!("live spread p99: {spread:.0} µs");
    assert!(spread <= 1_000.0, "spread p99 {spread} µs");

    // Source to sound: a click's write instant to its true sound instant.
    let origin = sources(&nodes[0])["sources"][0].clone();
    let (cf, cu) = (
        origin["captured_frame"].as_f64().unwrap(),
        origin["captured_unix_us"].as_f64().unwrap(),
    );
    let clicks = feeder.stop();
    let delays: Vec<f64> = clicks
        .iter()
        .filter(|&&w| (w as f64 - cu).abs() < 3e6)
        .filter_map(|&w| {
            let pos = cf + (w as f64 - cu) * f64::from(RATE) / 1e6;
            Some(sounded_at(&seen[1], pos)? - w as f64)
        })
        .collect();
    assert!(
        delays.len() >= 4,
        "too few clicks measured: {}",
        delays.len()
    );
    let mut sorted = delays.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!(
        "source to sound: median {:.1} ms over {} clicks (buffer 400 ms)",
        median / 1e3,
        sorted.len()
    );
    assert!(
        (300_000.0..=520_000.0).contains(&median),
        "source to sound {median} µs"
    );

    // The origin dies: every member stops within 2 s and says why.
    let origin = nodes.remove(0);
    let killed = Instant::now();
    drop(origin);
    let stopped = wait_until(Duration::from_secs(2), || {
        nodes
            .iter()
            .all(|n| sources(n)["live"]["ended"].is_string())
    });
    assert!(
        stopped,
        "members still play the dead origin: {}",
        sources(&nodes[0])
    );
    println!("members stopped {:?} after the kill", killed.elapsed());
    // The session ends, and a track plays at once.
    let ended = wait_until(Duration::from_secs(10), || {
        nodes
            .iter()
            .all(|n| http(n.http, "GET", "/api/state", None).1["playback"]["state"] == "stopped")
    });
    assert!(ended, "the session still plays the dead source");
    let (_, library) = http(nodes[0].http, "GET", "/api/library", None);
    let track = library[0]["track"].as_str().unwrap().to_string();
    let (status, body) = http(
        nodes[1].http,
        "POST",
        "/api/play",
        Some(json!({ "track": track })),
    );
    assert_eq!(status, 200, "{body}");
}
