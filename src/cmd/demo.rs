//! `firefly demo`: a local swarm of several nodes playing in step.
//!
//! It synthesizes a small library (one different WAV track per node, so the
//! others must download what they play), starts N `firefly up` child
//! processes on 127.0.0.1 with deliberately skewed test clocks
//! (`FIREFLY_TEST_CLOCK`), waits until they share a timeline and a
//! coordinator, queues every node's track (repeat all: the swarm plays
//! them in turn, gaplessly, over and over) and prints the API
//! addresses. Where this machine has a sound device, every node plays into
//! the default one and the sound card mixes them: in step, they sound as
//! one; every few seconds it prints how each node's device is timed. Where
//! there is none, the nodes play on virtual outputs (saying so in one line)
//! and it prints, every second, the inter-node offsets measured from their
//! true instants. Ctrl-C stops every node and removes the demo's folder.

use crate::cmd::local_swarm::{
    Node, NodeSetup, flashes, get_json, music_dir, offsets, percentile_abs, post, skew,
    start_node_with, synthesize, wait_settled,
};
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
        let music = music_dir(root, i);
        std::fs::create_dir_all(&music)?;
        synthesize(&music.join(format!("demo-chord-{i}.wav")), i, args.seconds)?;
    }
    let audible = match firefly_player::DeviceOutput::probe(None) {
        Ok(()) => {
            println!("every node plays into this machine's default sound device");
            true
        }
        Err(err) => {
            // The device error lists every `--output` choice; here one reason is enough.
            let reason = match &err {
                firefly_player::OutputError::Device { reason, .. } => reason.clone(),
                other => other.to_string(),
            };
            println!(
                "no usable sound device here ({reason}): the nodes play on silent virtual outputs"
            );
            false
        }
    };
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let peers: Vec<String> = nodes.iter().map(|node| node.addr.clone()).collect();
        let mut setup = NodeSetup::virtual_output(i);
        if audible {
            setup.output = "default".into();
        }
        let node = start_node_with(root, i, &peers, &setup)?;
        println!(
            "node demo-{i}: api http://{}  clock skew {}  peer {}",
            node.http,
            skew(i),
            node.peer
        );
        nodes.push(node);
    }
    tokio::runtime::Runtime::new()?.block_on(drive(&nodes, audible))
}

async fn drive(nodes: &[Node], audible: bool) -> anyhow::Result<()> {
    println!("waiting for the nodes to share one timeline and a coordinator…");
    wait_settled(nodes, Duration::from_secs(60)).await?;
    // Every node's track in turn, from the first node's API, starting with
    // the last node's: everyone else downloads what they play.
    let mut tracks: Vec<String> = Vec::new();
    let mut titles: Vec<String> = Vec::new();
    for node in nodes.iter().rev() {
        let library = get_json(node.http, "/api/library").await?;
        for track in library.as_array().into_iter().flatten() {
            if let Some(id) = track["track"].as_str()
                && !tracks.iter().any(|t| t == id)
            {
                tracks.push(id.to_string());
                titles.push(track["title"].as_str().unwrap_or(id).to_string());
            }
        }
    }
    let (first, rest) = tracks.split_first().context("the last node has no track")?;
    post(
        nodes[0].http,
        "/api/play",
        serde_json::json!({ "track": first }),
    )
    .await?;
    // The nodes play the rest in turn, gaplessly, over and over.
    post(
        nodes[0].http,
        "/api/queue",
        serde_json::json!({ "tracks": rest }),
    )
    .await?;
    post(
        nodes[0].http,
        "/api/repeat",
        serde_json::json!({ "mode": "all" }),
    )
    .await?;
    let started = std::time::Instant::now();
    if !audible {
        println!(
            "sync: every second, how far apart the nodes sound the same frame of music \
             (p50, p99, max of every pair, measured from each node's true instants)"
        );
    }
    println!(
        "playing \"{}\" everywhere, then {} in turn, over and over; web UI / API at http://{} — Ctrl-C to stop",
        titles[0],
        titles[1..]
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", "),
        nodes[0].http
    );
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = crate::node::shutdown_signal() => break,
        }
        if audible {
            // Device outputs know no true instants: the ears judge. Say how each device is timed.
            if started.elapsed().as_secs().is_multiple_of(5) {
                print_outputs(nodes).await;
            }
            continue;
        }
        // The last second of each node's current track: live figures, not history.
        let mut seen = Vec::new();
        for node in nodes {
            let all = flashes(node).await.unwrap_or_default();
            let last = all.iter().map(|f| f.track).max();
            let mine: Vec<(f64, i64)> = all
                .iter()
                .filter(|f| Some(f.track) == last)
                .map(|f| (f.position, f.true_us))
                .collect();
            seen.push(mine[mine.len().saturating_sub(100)..].to_vec());
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
        println!(
            "sync: {playing}/{} nodes playing, inter-node offset p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
            nodes.len(),
            percentile_abs(&all, 50.0),
            percentile_abs(&all, 99.0),
            percentile_abs(&all, 100.0)
        );
    }
    println!("stopping the demo nodes");
    Ok(())
}

/// One line per node: how its device is timed, its delay and rate, its underruns.
async fn print_outputs(nodes: &[Node]) {
    for (i, node) in nodes.iter().enumerate() {
        let Ok(state) = get_json(node.http, "/api/state").await else {
            continue;
        };
        let output = &state["output"];
        println!(
            "node demo-{i}: output timing {}, delay {:.1} ms, device {:+.0} ppm against its clock, {} underruns",
            output["timing"].as_str().unwrap_or("?"),
            output["delay_us"].as_f64().unwrap_or(0.0) / 1e3,
            output["device_rate_ppm"].as_f64().unwrap_or(0.0),
            output["underruns"].as_u64().unwrap_or(0)
        );
    }
}
