//! `firefly bench live`: a live source played by a local swarm. A FIFO on
//! node 0 is fed in real time with a synthesized signal (three detuned
//! harmonic tones under a slow envelope, a little noise, and a click every
//! 500 ms); every node plays it. Measured over a steady window: the
//! source-to-sound delay (a click's write instant to the instant its stream
//! position sounds on a member's virtual output, through the origin's
//! report of which stream position the source is at), the inter-node spread
//! (p99 of pairwise offsets of the same position's true instants), each
//! member's CPU while playing against the same node idle just before (the
//! same-run baseline), the same swarm's spread playing a file right after
//! (the baseline for the spread), and the network per member (encoded block bytes
//! received, and the FLAC ratio against raw 16-bit PCM).
//!
//! Real `firefly up` child processes on 127.0.0.1 (the local swarm of
//! `firefly demo`), in a scratch folder deleted at the end.

use crate::cmd::bench::sync::cpu_seconds;
use crate::cmd::local_swarm::{self, Node, get_json, post};
use anyhow::{Context, bail};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const RATE: u32 = 48_000;
/// A click every 500 ms.
const CLICK_EVERY: u64 = 24_000;

/// Arguments of `firefly bench live`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Nodes in the swarm (node 0 is the origin; all play).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=6))]
    nodes: u32,
    /// Capture to sound, ms.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u32).range(60..=5000))]
    buffer_ms: u32,
    /// Seconds measured while playing (after 5 s of warm-up).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u32).range(5..=300))]
    seconds: u32,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Keep every node's log (at level info) in this folder, as `node<i>.log`.
    #[arg(long, value_name = "DIR")]
    logs: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    nodes: u32,
    buffer_ms: u32,
    seconds: u32,
    /// Click written → sounding on a member, ms.
    delay_p50_ms: f64,
    delay_max_ms: f64,
    /// Over the buffer.
    delay_over_buffer_ms: f64,
    spread_p99_us: f64,
    spread_max_us: f64,
    /// The same swarm playing a file over the same window right after: the
    /// same-run baseline the live spread is held against.
    file_spread_p99_us: f64,
    file_spread_max_us: f64,
    /// Members' CPU while playing, % of a core, and idle just before.
    member_cpu_percent: Vec<f64>,
    member_idle_cpu_percent: Vec<f64>,
    /// Encoded payload received per member, kbit/s, and its ratio to 16-bit PCM.
    member_kbit_s: Vec<f64>,
    flac_ratio: f64,
    blocks_concealed: Vec<u64>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let scratch = std::env::temp_dir().join(format!("firefly-bench-live-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let report = tokio::runtime::Runtime::new()?.block_on(measure(&scratch, &args));
    if let Err(err) = std::fs::remove_dir_all(&scratch) {
        tracing::warn!(%err, "scratch folder not removed");
    }
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "live source on {} nodes, buffer {} ms, {} s: source → sound p50 {:.1} ms (max {:.1}, {:+.1} ms over the buffer); spread p99 {:.0} µs (max {:.0}); a file right after, same nodes: p99 {:.0} µs (max {:.0})",
            report.nodes,
            report.buffer_ms,
            report.seconds,
            report.delay_p50_ms,
            report.delay_max_ms,
            report.delay_over_buffer_ms,
            report.spread_p99_us,
            report.spread_max_us,
            report.file_spread_p99_us,
            report.file_spread_max_us
        );
        println!(
            "members: CPU {:?} % of a core (idle before: {:?}); network {:?} kbit/s (FLAC {:.2}× of 16-bit PCM); concealed {:?}",
            report.member_cpu_percent,
            report.member_idle_cpu_percent,
            report.member_kbit_s,
            report.flac_ratio,
            report.blocks_concealed
        );
    }
    Ok(())
}

/// Feeds the FIFO in real time; the Unix µs each click was written.
fn feed(fifo: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<i64>> {
    std::thread::spawn(move || {
        let Ok(mut pipe) = std::fs::OpenOptions::new().write(true).open(&fifo) else {
            return Vec::new();
        };
        let mut clicks = Vec::new();
        let start = Instant::now();
        let mut frame = 0u64;
        let mut noise = 0x2545_f491_u32;
        while !stop.load(Ordering::Relaxed) {
            let due = start + Duration::from_micros(frame * 1_000_000 / u64::from(RATE));
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let mut bytes = Vec::with_capacity(480 * 4);
            let mut click = false;
            for f in frame..frame + 480 {
                let t = f as f64 / f64::from(RATE);
                let envelope = 0.5 + 0.5 * (t * 0.7 * std::f64::consts::TAU).sin();
                let mut s = 0.0;
                for (i, base) in [220.0, 277.2, 329.6].iter().enumerate() {
                    for h in 1..=4 {
                        s += (t
                            * base
                            * f64::from(h)
                            * (1.0 + 0.001 * i as f64)
                            * std::f64::consts::TAU)
                            .sin()
                            / f64::from(h * h);
                    }
                }
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                let hiss = (f64::from(noise) / f64::from(u32::MAX) - 0.5) * 0.01;
                let mut v = s * 0.12 * envelope + hiss;
                if f % CLICK_EVERY < 24 {
                    v = 0.9;
                }
                click |= f % CLICK_EVERY == 0;
                let v = (v.clamp(-1.0, 1.0) * f64::from(i16::MAX)) as i16;
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
    })
}

fn unix_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

async fn measure(root: &Path, args: &Args) -> anyhow::Result<Report> {
    let fifo = root.join("source.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
    if !made.success() {
        bail!("mkfifo failed");
    }
    // The same file on every node, for the baseline (nothing downloads).
    for i in 0..args.nodes as usize {
        let music = local_swarm::music_dir(root, i);
        std::fs::create_dir_all(&music)?;
        local_swarm::synthesize(&music.join("baseline.wav"), 0, 120)?;
    }
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..args.nodes as usize {
        let peers: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
        let mut setup = local_swarm::NodeSetup::virtual_output(i);
        if let Some(dir) = &args.logs {
            std::fs::create_dir_all(dir)?;
            setup.log = Some(dir.join(format!("node{i}.log")));
            setup.env.push(("RUST_LOG".into(), "info".into()));
        }
        nodes.push(local_swarm::start_node_with(root, i, &peers, &setup)?);
    }
    local_swarm::wait_settled(&nodes, Duration::from_secs(60)).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = feed(fifo.clone(), Arc::clone(&stop));
    let result = play_and_measure(&nodes, &fifo, args).await;
    stop.store(true, Ordering::Relaxed);
    let clicks = feeder.join().unwrap_or_default();
    let (mut report, capture, flashes) = result?;
    // Delay: each click's stream position, from the origin's report.
    let (cf, cu) = capture;
    let mut delays: Vec<f64> = clicks
        .iter()
        .filter_map(|&w| {
            let pos = cf + (w as f64 - cu) * f64::from(RATE) / 1e6;
            let i = flashes.partition_point(|&(p, _)| p <= pos);
            if i == 0 || i >= flashes.len() {
                return None;
            }
            let ((p0, t0), (p1, t1)) = (flashes[i - 1], flashes[i]);
            let sounded = t0 as f64 + (pos - p0) / (p1 - p0) * (t1 - t0) as f64;
            Some((sounded - w as f64) / 1e3)
        })
        .collect();
    if delays.is_empty() {
        bail!("no click was heard");
    }
    delays.sort_by(f64::total_cmp);
    report.delay_p50_ms = delays[delays.len() / 2];
    report.delay_max_ms = delays[delays.len() - 1];
    report.delay_over_buffer_ms = report.delay_p50_ms - f64::from(args.buffer_ms);
    Ok(report)
}

type Measured = (Report, (f64, f64), Vec<(f64, i64)>);

async fn play_and_measure(nodes: &[Node], fifo: &Path, args: &Args) -> anyhow::Result<Measured> {
    let body = serde_json::json!({
        "name": "bench",
        "spec": format!("pipe:{}", fifo.display()),
        "buffer_ms": args.buffer_ms,
    });
    post(nodes[0].http, "/api/sources", body).await?;
    // Idle baseline: the same nodes, the source flowing, nothing playing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = cpu_percent_over(nodes, Duration::from_secs(5)).await;
    post(
        nodes[1].http,
        "/api/sources/play",
        serde_json::json!({ "name": "bench" }),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before: Vec<u64> = live_bytes(nodes).await?;
    let started = Instant::now();
    let cpu = cpu_percent_over(nodes, Duration::from_secs(u64::from(args.seconds))).await;
    let secs = started.elapsed().as_secs_f64();
    let after: Vec<u64> = live_bytes(nodes).await?;
    let kbit: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b) as f64 * 8.0 / secs / 1e3)
        .collect();
    let pcm_kbit = f64::from(RATE) * 2.0 * 16.0 / 1e3;
    let sources = get_json(nodes[0].http, "/api/sources").await?;
    let origin = &sources["sources"][0];
    let capture = (
        origin["captured_frame"]
            .as_f64()
            .context("no capture report")?,
        origin["captured_unix_us"]
            .as_f64()
            .context("no capture report")?,
    );
    let (seen, offsets) = spread(nodes).await?;
    keep_flashes(args.logs.as_deref(), "live", &seen)?;
    let mut concealed = Vec::new();
    for node in nodes {
        let s = get_json(node.http, "/api/sources").await?;
        concealed.push(s["live"]["concealed"].as_u64().unwrap_or(0));
    }
    // The baseline: a file on the same nodes over the same window.
    let library = get_json(nodes[0].http, "/api/library").await?;
    let track = library
        .as_array()
        .and_then(|tracks| tracks.first())
        .and_then(|t| t["track"].as_str())
        .context("no baseline track in the library")?
        .to_string();
    post(
        nodes[1].http,
        "/api/play",
        serde_json::json!({ "track": track }),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(5 + u64::from(args.seconds))).await;
    let (file_seen, file_offsets) = spread(nodes).await?;
    keep_flashes(args.logs.as_deref(), "file", &file_seen)?;
    let members = 1..nodes.len();
    let member_kbit: Vec<f64> = kbit[members.clone()].to_vec();
    let flac_ratio = member_kbit.iter().sum::<f64>() / member_kbit.len() as f64 / pcm_kbit;
    Ok((
        Report {
            nodes: args.nodes,
            buffer_ms: args.buffer_ms,
            seconds: args.seconds,
            delay_p50_ms: 0.0,
            delay_max_ms: 0.0,
            delay_over_buffer_ms: 0.0,
            spread_p99_us: local_swarm::percentile_abs(&offsets, 99.0),
            spread_max_us: local_swarm::percentile_abs(&offsets, 100.0),
            file_spread_p99_us: local_swarm::percentile_abs(&file_offsets, 99.0),
            file_spread_max_us: local_swarm::percentile_abs(&file_offsets, 100.0),
            member_cpu_percent: cpu[members.clone()].to_vec(),
            member_idle_cpu_percent: idle[members].to_vec(),
            member_kbit_s: member_kbit,
            flac_ratio,
            blocks_concealed: concealed,
        },
        capture,
        seen.get(1).cloned().unwrap_or_default(),
    ))
}

/// With `--logs`, writes each node's flashes (source frame, true µs) of a
/// measured window to `DIR/<what>-flashes.json`.
fn keep_flashes(dir: Option<&Path>, what: &str, seen: &[Vec<(f64, i64)>]) -> anyhow::Result<()> {
    if let Some(dir) = dir {
        std::fs::write(
            dir.join(format!("{what}-flashes.json")),
            serde_json::to_vec(seen)?,
        )?;
    }
    Ok(())
}

/// Every node's flashes of what it plays now (source frame, true µs), and
/// the pairwise offsets of the same frame's true instants across nodes.
async fn spread(nodes: &[Node]) -> anyhow::Result<(Vec<Vec<(f64, i64)>>, Vec<f64>)> {
    let mut seen = Vec::new();
    for node in nodes {
        let flashes = local_swarm::flashes(node).await?;
        let last = flashes.iter().map(|f| f.track).max().unwrap_or(0);
        seen.push(
            flashes
                .iter()
                .filter(|f| f.track == last)
                .map(|f| (f.position, f.true_us))
                .collect::<Vec<_>>(),
        );
    }
    let mut offsets = Vec::new();
    for i in 0..seen.len() {
        for j in i + 1..seen.len() {
            offsets.extend(local_swarm::offsets(&seen[i], &seen[j]));
        }
    }
    if offsets.is_empty() {
        bail!("no overlapping flashes");
    }
    Ok((seen, offsets))
}

async fn live_bytes(nodes: &[Node]) -> anyhow::Result<Vec<u64>> {
    let mut bytes = Vec::new();
    for node in nodes {
        let s = get_json(node.http, "/api/sources").await?;
        bytes.push(s["live"]["bytes"].as_u64().unwrap_or(0));
    }
    Ok(bytes)
}

async fn cpu_percent_over(nodes: &[Node], window: Duration) -> Vec<f64> {
    let before: Vec<Option<f64>> = nodes.iter().map(|n| cpu_seconds(n.pid())).collect();
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let secs = started.elapsed().as_secs_f64();
    nodes
        .iter()
        .zip(&before)
        .map(|(n, b)| match (cpu_seconds(n.pid()), b) {
            (Some(a), Some(b)) => ((a - b) / secs * 1000.0).round() / 10.0,
            _ => f64::NAN,
        })
        .collect()
}
