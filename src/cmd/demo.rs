//! `firefly demo`: a local swarm of several nodes playing in step.
//!
//! It synthesizes a small library (one different WAV track per node, so the
//! others must download what they play), starts N `firefly up` child
//! processes on 127.0.0.1 with deliberately skewed test clocks
//! (`FIREFLY_TEST_CLOCK`) and virtual outputs, waits until they share a
//! timeline and a coordinator, starts synchronized playback, then prints the
//! API addresses and, every second, the inter-node playback offsets measured
//! from the virtual outputs' true instants. Ctrl-C stops every node and
//! removes the demo's folder.

use crate::cmd::status::request;
use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Arguments of `firefly demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// How many nodes to run (2 to 8).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=8))]
    nodes: u8,
    /// Seconds of music per synthesized track.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(5..=600))]
    seconds: u32,
}

/// Frames per second of the synthesized tracks.
const RATE: u32 = 44_100;

/// A child node, killed when dropped.
struct Node {
    child: Child,
    http: SocketAddr,
    peer: String,
    addr: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Skew of node `i`: offsets up to ±1 s and rates up to ±200 ppm.
fn skew(i: usize) -> String {
    let sign = if i.is_multiple_of(2) { 1 } else { -1 };
    let offset = sign * (250_000 * (i as i64 % 5));
    let ppm = sign as f64 * (200.0 - 35.0 * (i % 6) as f64);
    format!("{offset},{ppm}")
}

/// Writes a chord whose pitch depends on `i`, so each node's track differs.
fn synthesize(path: &Path, i: usize, seconds: u32) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let root = 196.0 * 2f64.powf(i as f64 * 3.0 / 12.0);
    for n in 0..seconds * RATE {
        let t = f64::from(n) / f64::from(RATE);
        let beat = (t * 2.0).fract();
        let envelope = (1.0 - beat).powi(2) * 0.6 + 0.1;
        let chord: f64 = [1.0, 1.25, 1.5]
            .iter()
            .map(|k| (t * root * k * std::f64::consts::TAU).sin())
            .sum();
        let s = (chord / 3.0 * envelope * 0.5 * f64::from(i16::MAX)) as i16;
        w.write_sample(s)?;
        w.write_sample(s)?;
    }
    w.finalize()?;
    Ok(())
}

fn start_node(root: &Path, i: usize, peers: &[String]) -> anyhow::Result<Node> {
    let dir = root.join(format!("node{i}"));
    let music = dir.join("music");
    std::fs::create_dir_all(&music)?;
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let port = free_port()?;
    let exe = std::env::current_exe().context("cannot find the firefly binary")?;
    let mut command = Command::new(exe);
    command
        .arg("up")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--music")
        .arg(&music)
        .args([
            "--name",
            &format!("demo-{i}"),
            "--no-mdns",
            "--output",
            "virtual",
        ])
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{port}")])
        .args(["--http", &http.to_string()])
        .env("FIREFLY_TEST_CLOCK", skew(i))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for peer in peers {
        command.args(["--peer", peer]);
    }
    let mut child = command.spawn().context("cannot start a node")?;
    let stdout = child.stdout.take().context("no stdout from the node")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // Keep draining after the demo stops listening, so the node never blocks.
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut peer = None;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if let Some(id) = line.strip_prefix("peer id: ") {
                    peer = Some(id.to_string());
                }
                if line.starts_with("library: ") {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                bail!("node {i} exited during start-up")
            }
        }
    }
    let peer = peer.with_context(|| format!("node {i} did not start in time"))?;
    let addr = format!("/ip4/127.0.0.1/tcp/{port}/p2p/{peer}");
    Ok(Node {
        child,
        http,
        peer,
        addr,
    })
}

async fn get_json(addr: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    let body = request(addr, "GET", path, None, None).await?;
    Ok(serde_json::from_slice(&body)?)
}

/// A node's latest-track flashes: (source position, true µs).
async fn flashes(node: &Node) -> anyhow::Result<Vec<(f64, i64)>> {
    let all = get_json(node.http, "/api/flashes").await?;
    let all = all.as_array().cloned().unwrap_or_default();
    let last = all.iter().filter_map(|f| f["track"].as_u64()).max();
    let mine: Vec<(f64, i64)> = all
        .iter()
        .filter(|f| f["track"].as_u64() == last)
        .filter_map(|f| Some((f["position"].as_f64()?, f["true_unix_us"].as_i64()?)))
        .collect();
    // The last second only: live figures, not history.
    Ok(mine[mine.len().saturating_sub(100)..].to_vec())
}

/// How much later (µs) `a` sounded each position than `b` did, interpolated.
fn offsets(a: &[(f64, i64)], b: &[(f64, i64)]) -> Vec<f64> {
    a.iter()
        .filter_map(|&(pos, t)| {
            let i = b.windows(2).position(|w| w[0].0 <= pos && pos < w[1].0)?;
            let ((p0, t0), (p1, t1)) = (b[i], b[i + 1]);
            Some(t as f64 - (t0 as f64 + (pos - p0) / (p1 - p0) * (t1 - t0) as f64))
        })
        .collect()
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let root: PathBuf = std::env::temp_dir().join(format!("firefly-demo-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let result = demo(&root, &args);
    let _ = std::fs::remove_dir_all(&root);
    result
}

fn demo(root: &Path, args: &Args) -> anyhow::Result<()> {
    let n = usize::from(args.nodes);
    println!("synthesizing {n} tracks of {} s…", args.seconds);
    for i in 0..n {
        let music = root.join(format!("node{i}")).join("music");
        std::fs::create_dir_all(&music)?;
        synthesize(&music.join(format!("demo-chord-{i}.wav")), i, args.seconds)?;
    }
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let peers: Vec<String> = nodes.iter().map(|node| node.addr.clone()).collect();
        let node = start_node(root, i, &peers)?;
        println!(
            "node demo-{i}: api http://{}  clock skew {}  peer {}",
            node.http,
            skew(i),
            node.peer
        );
        nodes.push(node);
    }
    tokio::runtime::Runtime::new()?.block_on(drive(&nodes))
}

async fn drive(nodes: &[Node]) -> anyhow::Result<()> {
    println!("waiting for the nodes to share one timeline and a coordinator…");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut ready = true;
        let mut coordinators = std::collections::BTreeSet::new();
        for node in nodes {
            let state = get_json(node.http, "/api/state").await?;
            ready &= state["clock_synced"] == true
                && state["peers"].as_array().map_or(0, Vec::len) == nodes.len() - 1;
            coordinators.insert(state["coordinator"].to_string());
        }
        if ready && coordinators.len() == 1 && !coordinators.contains("null") {
            break;
        }
        if Instant::now() > deadline {
            bail!("the demo nodes did not settle within a minute");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Play the last node's track from the first node: everyone else downloads it.
    let library = get_json(nodes[nodes.len() - 1].http, "/api/library").await?;
    let track = library[0]["track"]
        .as_str()
        .context("the last node has no track")?
        .to_string();
    let command = serde_json::json!({ "track": track });
    request(nodes[0].http, "POST", "/api/play", Some(&command), None).await?;
    println!(
        "playing {} everywhere; web UI / API at http://{} — Ctrl-C to stop",
        &track[..12],
        nodes[0].http
    );
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = crate::node::shutdown_signal() => break,
        }
        let mut seen = Vec::new();
        for node in nodes {
            seen.push(flashes(node).await.unwrap_or_default());
        }
        let mut all: Vec<f64> = Vec::new();
        let mut playing = 0;
        for (i, a) in seen.iter().enumerate() {
            playing += usize::from(!a.is_empty());
            for b in &seen[i + 1..] {
                all.extend(offsets(a, b));
            }
        }
        if all.is_empty() {
            println!("sync: {playing}/{} nodes playing", nodes.len());
            continue;
        }
        all.sort_by(|x, y| x.abs().total_cmp(&y.abs()));
        let pick = |q: usize| all[(all.len() * q / 100).min(all.len() - 1)].abs();
        println!(
            "sync: {playing}/{} nodes playing, inter-node offset p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
            nodes.len(),
            pick(50),
            pick(99),
            pick(100)
        );
    }
    println!("stopping the demo nodes");
    Ok(())
}
