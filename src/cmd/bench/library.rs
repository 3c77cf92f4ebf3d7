//! `firefly bench library`: how fast a file copied into one node's music
//! folder reaches every node's catalog through the folder watcher, and how
//! fast a removed one leaves, against the same swarm told of a file by an
//! explicit `POST /api/scan` right after the copy (same run, same nodes):
//! the difference is what the watcher's settle wait costs.
//!
//! Real `firefly up` child processes on 127.0.0.1 (the local swarm of
//! `firefly demo`), in a scratch folder deleted at the end. Each round
//! copies a new 2 s WAV (written outside the music folder first, so the copy
//! is the only change), polls every node's `GET /api/catalog` every 10 ms,
//! then removes it and polls again.

use crate::cmd::local_swarm::{self, Node, get_json, music_dir, post, synthesize};
use anyhow::{Context, bail};
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// The goal (issue 15): a new file in every node's catalog within this.
const GOAL: Duration = Duration::from_secs(2);
/// A round gives up after this.
const ROUND_LIMIT: Duration = Duration::from_secs(20);

/// Arguments of `firefly bench library`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Nodes in the swarm.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(2..=8))]
    nodes: u32,
    /// Files timed each way.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=50))]
    rounds: u32,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// What the benchmark measured, ms.
#[derive(Debug, Serialize)]
struct Report {
    nodes: u32,
    rounds: u32,
    /// Copy → in every catalog, through the watcher.
    watched_add_ms: Vec<f64>,
    /// Remove → out of every catalog, through the watcher.
    watched_remove_ms: Vec<f64>,
    /// Copy, then `POST /api/scan` of the file → in every catalog.
    scanned_add_ms: Vec<f64>,
    watched_add_p50_ms: f64,
    watched_add_max_ms: f64,
    watched_remove_p50_ms: f64,
    scanned_add_p50_ms: f64,
    /// Watched p50 over explicitly scanned p50.
    ratio_p50: f64,
    goal_ms: f64,
    goal_met: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let scratch = Scratch::new()?;
    // The nodes are stopped when `measure` returns, before the folder goes.
    let report = tokio::runtime::Runtime::new()?.block_on(measure(&scratch.0, &args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "new file → every catalog ({} nodes, {} rounds): watcher p50 {:.0} ms, max {:.0} ms \
             (goal ≤ {:.0} ms: {}); explicit POST /api/scan p50 {:.0} ms; ratio {:.2}",
            report.nodes,
            report.rounds,
            report.watched_add_p50_ms,
            report.watched_add_max_ms,
            report.goal_ms,
            if report.goal_met { "met" } else { "NOT met" },
            report.scanned_add_p50_ms,
            report.ratio_p50
        );
        println!(
            "removed file → out of every catalog: watcher p50 {:.0} ms",
            report.watched_remove_p50_ms
        );
    }
    Ok(())
}

async fn measure(root: &Path, args: &Args) -> anyhow::Result<Report> {
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..args.nodes as usize {
        let peers: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();
        nodes.push(local_swarm::start_node(root, i, &peers)?);
    }
    local_swarm::wait_settled(&nodes, Duration::from_secs(60)).await?;
    let music = music_dir(root, 0).canonicalize()?;
    let outside = root.join("new");
    std::fs::create_dir_all(&outside)?;
    let (mut added, mut removed, mut scanned) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds as usize {
        // Through the watcher.
        let (track, name) = new_file(&outside, 100 + 2 * round)?;
        let started = Instant::now();
        std::fs::copy(outside.join(&name), music.join(&name))?;
        wait_catalogs(&nodes, &track, true).await?;
        added.push(ms(started.elapsed()));
        let started = Instant::now();
        std::fs::remove_file(music.join(&name))?;
        wait_catalogs(&nodes, &track, false).await?;
        removed.push(ms(started.elapsed()));

        // Told explicitly, at once.
        let (track, name) = new_file(&outside, 101 + 2 * round)?;
        let started = Instant::now();
        std::fs::copy(outside.join(&name), music.join(&name))?;
        let body = serde_json::json!({ "paths": [music.join(&name)] });
        post(nodes[0].http, "/api/scan", body).await?;
        wait_catalogs(&nodes, &track, true).await?;
        scanned.push(ms(started.elapsed()));
        std::fs::remove_file(music.join(&name))?;
        wait_catalogs(&nodes, &track, false).await?;
    }
    let p50 = |v: &[f64]| local_swarm::percentile_abs(v, 50.0);
    let max = added.iter().copied().fold(0.0, f64::max);
    Ok(Report {
        nodes: args.nodes,
        rounds: args.rounds,
        watched_add_p50_ms: p50(&added),
        watched_add_max_ms: max,
        watched_remove_p50_ms: p50(&removed),
        scanned_add_p50_ms: p50(&scanned),
        ratio_p50: p50(&added) / p50(&scanned).max(1e-9),
        goal_ms: ms(GOAL),
        goal_met: max <= ms(GOAL),
        watched_add_ms: added,
        watched_remove_ms: removed,
        scanned_add_ms: scanned,
    })
}

/// Writes a new 2 s WAV (pitch from `i`) into `dir`; its track id and name.
fn new_file(dir: &Path, i: usize) -> anyhow::Result<(String, String)> {
    let name = format!("bench-{i}.wav");
    synthesize(&dir.join(&name), i, 2)?;
    let bytes = std::fs::read(dir.join(&name))?;
    Ok((blake3::hash(&bytes).to_hex().to_string(), name))
}

/// Polls every node's catalog every 10 ms until it lists `track` (or, with
/// `present` false, no longer does).
async fn wait_catalogs(nodes: &[Node], track: &str, present: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + ROUND_LIMIT;
    loop {
        let mut all = true;
        for node in nodes {
            let catalog = get_json(node.http, "/api/catalog").await?;
            let listed = catalog
                .as_array()
                .is_some_and(|c| c.iter().any(|e| e["track"] == track));
            all &= listed == present;
        }
        if all {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "track {track} {} every catalog within {ROUND_LIMIT:?}",
                if present {
                    "never reached"
                } else {
                    "never left"
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A scratch folder removed when dropped, also when the run fails.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let path =
            std::env::temp_dir().join(format!("firefly-bench-library-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("creating the scratch folder {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(path = %self.0.display(), %err, "scratch folder not removed");
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
