//! A swarm of `firefly up` child processes on 127.0.0.1, for `firefly demo`
//! and `firefly bench sync`.
//!
//! Each node gets its own folder under a root (music and data dir, so a
//! killed node can be started again on the same data), a skewed test clock
//! (`FIREFLY_TEST_CLOCK`, offsets up to ±1 s and rates up to ±200 ppm), a
//! virtual output and a free HTTP port. The helpers here start nodes, read
//! their API (through the one HTTP client), read their `--events json`,
//! and measure sync from outside the nodes' beliefs: the virtual
//! outputs stamp every flash with the true instant it was heard, so the
//! offset between two nodes is the difference of the true instants at which
//! they sounded the same source position.

use crate::cmd::status::request;
use crate::node::announce::NodeEvent;
use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Frames per second of the synthesized tracks.
pub(crate) const RATE: u32 = 44_100;

/// A child node, killed when dropped.
pub(crate) struct Node {
    child: Child,
    /// Which node of the swarm (its folder and skew).
    pub(crate) index: usize,
    /// Its HTTP API.
    pub(crate) http: SocketAddr,
    /// Its PeerId.
    pub(crate) peer: String,
    /// Its listen address with `/p2p/…`, for `--peer`.
    pub(crate) addr: String,
}

impl Node {
    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the node at once (SIGKILL), as a crash would.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
pub(crate) fn skew(i: usize) -> String {
    let sign = if i.is_multiple_of(2) { 1 } else { -1 };
    let offset = sign * (250_000 * (i as i64 % 5));
    let ppm = sign as f64 * (200.0 - 35.0 * (i % 6) as f64);
    format!("{offset},{ppm}")
}

/// The music folder of node `i` under `root`.
pub(crate) fn music_dir(root: &Path, i: usize) -> PathBuf {
    root.join(format!("node{i}")).join("music")
}

/// Writes a chord whose pitch depends on `i`, so each node's track differs.
pub(crate) fn synthesize(path: &Path, i: usize, seconds: u32) -> anyhow::Result<()> {
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

/// How a node of the local swarm is run: its `--output`, its test clock
/// and extra environment (a sound server's address, say).
#[derive(Debug, Clone)]
pub(crate) struct NodeSetup {
    pub(crate) output: String,
    pub(crate) test_clock: String,
    pub(crate) env: Vec<(String, String)>,
    /// Where the node's log (stderr) goes; `None`: nowhere.
    pub(crate) log: Option<PathBuf>,
}

impl NodeSetup {
    /// The default for node `i`: a virtual output and [`skew`]`(i)`.
    pub(crate) fn virtual_output(i: usize) -> Self {
        Self {
            output: "virtual".into(),
            test_clock: skew(i),
            env: Vec::new(),
            log: None,
        }
    }
}

/// Starts node `i` (folder `root/node{i}`, kept across restarts) dialing
/// `peers`, and waits until it has scanned its library.
pub(crate) fn start_node(root: &Path, i: usize, peers: &[String]) -> anyhow::Result<Node> {
    start_node_with(root, i, peers, &NodeSetup::virtual_output(i))
}

/// [`start_node`] with a [`NodeSetup`].
pub(crate) fn start_node_with(
    root: &Path,
    i: usize,
    peers: &[String],
    setup: &NodeSetup,
) -> anyhow::Result<Node> {
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
            "--events",
            "json",
            "--output",
            &setup.output,
        ])
        .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{port}")])
        .args(["--http", &http.to_string()])
        .env("FIREFLY_TEST_CLOCK", &setup.test_clock)
        .envs(setup.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(match &setup.log {
            Some(path) => Stdio::from(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?,
            ),
            None => Stdio::null(),
        });
    for peer in peers {
        command.args(["--peer", peer]);
    }
    let mut child = command.spawn().context("cannot start a node")?;
    let stdout = child.stdout.take().context("no stdout from the node")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // Keep draining after the caller stops listening, so the node never blocks.
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut peer = None;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => match serde_json::from_str::<NodeEvent>(&line) {
                Ok(NodeEvent::Started { peer_id, .. }) => peer = Some(peer_id),
                Ok(NodeEvent::Library { .. }) => break,
                Ok(_) => {}
                Err(err) => {
                    bail!("node {i} printed an event this version cannot read ({err}): {line}")
                }
            },
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
        index: i,
        http,
        peer,
        addr,
    })
}

/// `GET path` on a node's API, as JSON.
pub(crate) async fn get_json(addr: SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    let body = request(addr, "GET", path, None, None).await?;
    Ok(serde_json::from_slice(&body)?)
}

/// `POST path body` on a node's API.
pub(crate) async fn post(
    addr: SocketAddr,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<()> {
    request(addr, "POST", path, Some(&body), None).await?;
    Ok(())
}

/// One flash as seen from outside: which player track (start), which
/// source position, and the true instant (µs since the UNIX epoch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SeenFlash {
    pub(crate) track: u64,
    pub(crate) position: f64,
    pub(crate) true_us: i64,
}

/// Every flash a node keeps (its last ~10 s), oldest first.
pub(crate) async fn flashes(node: &Node) -> anyhow::Result<Vec<SeenFlash>> {
    let all = get_json(node.http, "/api/flashes").await?;
    Ok(all
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|f| {
                    Some(SeenFlash {
                        track: f["track"].as_u64()?,
                        position: f["position"].as_f64()?,
                        true_us: f["true_unix_us"].as_i64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default())
}

/// How much later (µs) `a` sounded each of its positions than `b` did,
/// interpolating `b` between its flashes. Each input is one continuous run
/// of (position, true µs), positions increasing.
pub(crate) fn offsets(a: &[(f64, i64)], b: &[(f64, i64)]) -> Vec<f64> {
    a.iter()
        .filter_map(|&(pos, t)| {
            let i = b.partition_point(|&(p, _)| p <= pos);
            if i == 0 || i >= b.len() {
                return None;
            }
            let ((p0, t0), (p1, t1)) = (b[i - 1], b[i]);
            // Only inside one period: a hole in `b` is not interpolated over.
            if p1 - p0 > f64::from(RATE) / 20.0 {
                return None;
            }
            Some(t as f64 - (t0 as f64 + (pos - p0) / (p1 - p0) * (t1 - t0) as f64))
        })
        .collect()
}

/// The `q`-th percentile (0–100) of the magnitudes in `values` (0 when empty).
pub(crate) fn percentile_abs(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().map(|x| x.abs()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * q / 100.0).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Least-squares line `(slope, intercept)` through `points`: `None` with
/// fewer than two or with every `x` the same.
pub(crate) fn least_squares_line(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x / n, b + y / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(a, b), &(x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    (sxx > 0.0).then(|| (sxy / sxx, my - sxy / sxx * mx))
}

/// Waits until every node is synced, sees all the others, and all agree on
/// one coordinator; returns its PeerId.
pub(crate) async fn wait_settled(nodes: &[Node], limit: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + limit;
    loop {
        let mut ready = true;
        let mut coordinators = std::collections::BTreeSet::new();
        for node in nodes {
            let state = get_json(node.http, "/api/state").await?;
            ready &= state["clock_synced"] == true
                && state["peers"].as_array().map_or(0, Vec::len) == nodes.len() - 1;
            coordinators.insert(state["coordinator"].as_str().unwrap_or("").to_string());
        }
        if ready
            && coordinators.len() == 1
            && let Some(c) = coordinators.pop_first().filter(|c| !c.is_empty())
        {
            return Ok(c);
        }
        if Instant::now() > deadline {
            bail!("the nodes did not settle within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
