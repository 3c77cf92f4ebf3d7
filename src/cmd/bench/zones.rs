//! `firefly bench zones`: are zones independent, how fast is a move, how
//! close is a stereo pair? Real `firefly up` child processes on 127.0.0.1
//! with skewed test clocks and virtual outputs (true instants), as
//! `bench sync` runs them. In one run:
//!
//! 1. **independence**: zone A (nodes 0 and 1) plays a track; after a
//!    warm-up (the clocks settle: their convergence must not masquerade as
//!    interference) windows alternate between A alone and A beside the
//!    default zone (nodes 2 and 3) playing another track: alone, both,
//!    alone, both, …, alone. Each window with both is compared with the mean
//!    of the two windows alone around it, so what is left of the clocks'
//!    slow drift over the run cancels; the change reported is the mean of
//!    those differences of A's p99 spread (each one listed too), over the
//!    rounds where no node's output underran (a stall of the machine hits
//!    every node, whichever zones play);
//! 2. **stereo pair**: nodes 0 and 1 set to `left` and `right`: their
//!    offset in frames (mean and p99), while the zone is settled;
//! 3. **moves**: node 2 moved into A and back, several times: from the
//!    request to the first flash of the new zone's track, and to the first
//!    instant from which it stays within 1 ms of the zone.

use crate::cmd::bench::sync::{Collected, pair_offsets, unix_micros_now};
use crate::cmd::local_swarm::{
    Node, RATE, get_json, music_dir, offsets, percentile_abs, post, start_node, synthesize,
    wait_settled,
};
use anyhow::{Context, bail};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Arguments of `firefly bench zones`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Seconds of playback measured in each window (the nodes keep ~10 s).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(3..=60))]
    seconds: u32,
    /// Seconds of playback before the first window (the clocks settle).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=600))]
    warmup: u32,
    /// Windows with the second zone playing (each between two alone).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    rounds: u32,
    /// Seconds to let a change of the second zone (play, stop) settle
    /// before a window.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=60))]
    settle: u32,
    /// Moves measured (each one into zone A and back counts two).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    moves: u32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Goals of the zones issue.
const GOAL_INDEPENDENCE_MICROS: f64 = 10.0;
const GOAL_MOVE_MILLIS: f64 = 1_000.0;
const GOAL_PAIR_FRAMES: f64 = 1.0;
/// "In step" for a move: within this of the zone.
const IN_STEP_MICROS: f64 = 1_000.0;

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let root: PathBuf =
        std::env::temp_dir().join(format!("firefly-bench-zones-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let result = tokio::runtime::Runtime::new()?.block_on(bench(&root, &args));
    let _ = std::fs::remove_dir_all(&root);
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// Every node's output underruns so far.
async fn underruns(nodes: &[Node]) -> Vec<u64> {
    let mut all = Vec::new();
    for node in nodes {
        let state = get_json(node.http, "/api/state").await.unwrap_or_default();
        all.push(state["output"]["underruns"].as_u64().unwrap_or(0));
    }
    all
}

/// Polls the nodes' flashes for `seconds`; returns the window's bounds and
/// the underruns each node's output had during it.
async fn window(nodes: &[Node], seen: &mut Collected, seconds: u32) -> (i64, i64, Vec<u64>) {
    let before = underruns(nodes).await;
    let from = unix_micros_now();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(u64::from(seconds)) {
        seen.poll(nodes).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    seen.poll(nodes).await;
    let to = unix_micros_now();
    let after = underruns(nodes).await;
    let dry: Vec<u64> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    (from, to, dry)
}

fn spread(seen: &Collected, indices: &[usize], from: i64, to: i64) -> anyhow::Result<(f64, f64)> {
    let (all, _) = pair_offsets(seen, indices, from, to);
    if all.is_empty() {
        bail!("no overlapping flashes of nodes {indices:?}");
    }
    Ok((percentile_abs(&all, 50.0), percentile_abs(&all, 99.0)))
}

async fn zone_of(node: &Node) -> anyhow::Result<String> {
    let state = get_json(node.http, "/api/state").await?;
    Ok(state["zone"]["id"].as_str().unwrap_or("").to_string())
}

/// Moves `node` into `zone` through `mate`'s API; returns (ms to the first
/// flash of a new player track, ms until it stays within 1 ms of `mate`,
/// `None` if it did not within the 4 s watched).
async fn one_move(
    nodes: &[Node],
    moved: usize,
    mate: usize,
    zone: &str,
) -> anyhow::Result<(f64, Option<f64>)> {
    let mut seen = Collected::default();
    seen.poll(nodes).await;
    let before = seen.last_track(moved).unwrap_or(0);
    let sent = unix_micros_now();
    post(
        nodes[mate].http,
        "/api/zones/move",
        json!({ "node": nodes[moved].peer, "zone": zone }),
    )
    .await?;
    // Long enough to see it settle.
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        seen.poll(nodes).await;
    }
    let track = seen.last_track(moved).unwrap_or(0);
    if track == before {
        bail!("node {moved} never played its new zone's track");
    }
    let to = unix_micros_now();
    let run = seen.run(moved, track, sent, to);
    let first = run.first().context("no flash after the move")?.1;
    let mate_track = seen.last_track(mate).unwrap_or(0);
    let reference = seen.run(mate, mate_track, sent - 2_000_000, to);
    // The first flash from which every later one is within 1 ms.
    let mut in_step_at = None;
    for (k, flash) in run.iter().enumerate() {
        let rest = offsets(&run[k..], &reference);
        if !rest.is_empty() && rest.iter().all(|o| o.abs() <= IN_STEP_MICROS) {
            in_step_at = Some(flash.1);
            break;
        }
    }
    Ok((
        (first - sent) as f64 / 1e3,
        in_step_at.map(|at| (at - sent) as f64 / 1e3),
    ))
}

async fn bench(root: &Path, args: &Args) -> anyhow::Result<serde_json::Value> {
    let n = 4;
    let track_seconds = args.warmup
        + (2 * args.rounds + 1) * (args.settle + args.seconds + 4)
        + 8 * args.moves
        + 60;
    for i in 0..n {
        let music = music_dir(root, i);
        std::fs::create_dir_all(&music)?;
        // Two tracks on every node (no downloads in the measurements).
        synthesize(&music.join("zone-a.wav"), 0, track_seconds)?;
        synthesize(&music.join("zone-b.wav"), 1, track_seconds + 1)?;
    }
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let peers: Vec<String> = nodes.iter().map(|node| node.addr.clone()).collect();
        nodes.push(start_node(root, i, &peers)?);
    }
    wait_settled(&nodes, Duration::from_secs(60)).await?;
    let library = get_json(nodes[0].http, "/api/library").await?;
    let tracks: Vec<(String, u64)> = library
        .as_array()
        .context("no library")?
        .iter()
        .filter_map(|t| Some((t["track"].as_str()?.to_string(), t["duration_ms"].as_u64()?)))
        .collect();
    let longest = |longer: bool| {
        tracks
            .iter()
            .max_by_key(|(_, d)| if longer { *d } else { u64::MAX - d })
            .map(|(t, _)| t.clone())
            .context("the tracks are not in the library")
    };
    let (track_a, track_b) = (longest(false)?, longest(true)?);

    // Zone A of nodes 0 and 1.
    let made = crate::cmd::status::request(
        nodes[0].http,
        "POST",
        "/api/zones",
        Some(&json!({ "name": "A", "nodes": [nodes[0].peer, nodes[1].peer] })),
        None,
    )
    .await?;
    let made: serde_json::Value = serde_json::from_slice(&made)?;
    let zone_a = made["zone"].as_str().context("no zone made")?.to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a0 = get_json(nodes[0].http, "/api/state").await?;
        let a1 = get_json(nodes[1].http, "/api/state").await?;
        if a0["zone"]["id"] == zone_a.as_str()
            && a1["zone"]["id"] == zone_a.as_str()
            && a0["coordinator"].is_string()
            && a0["coordinator"] == a1["coordinator"]
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("zone A never got one coordinator");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 1. Zone A alone and beside the default zone, alternating, after
    // the warm-up.
    post(nodes[0].http, "/api/play", json!({ "track": track_a })).await?;
    tokio::time::sleep(Duration::from_secs(u64::from(args.warmup))).await;
    let settle = Duration::from_secs(u64::from(args.settle));
    let mut alone: Vec<(f64, f64)> = Vec::new();
    let mut both: Vec<(f64, f64)> = Vec::new();
    let mut other: Vec<(f64, f64)> = Vec::new();
    let mut dry_alone: Vec<Vec<u64>> = Vec::new();
    let mut dry_both: Vec<Vec<u64>> = Vec::new();
    for round in 0..=args.rounds {
        let mut seen = Collected::default();
        let (from, to, dry) = window(&nodes, &mut seen, args.seconds).await;
        alone.push(spread(&seen, &[0, 1], from, to)?);
        dry_alone.push(dry);
        if round == args.rounds {
            break;
        }
        post(nodes[2].http, "/api/play", json!({ "track": track_b })).await?;
        tokio::time::sleep(settle).await;
        let mut seen = Collected::default();
        let (from, to, dry) = window(&nodes, &mut seen, args.seconds).await;
        both.push(spread(&seen, &[0, 1], from, to)?);
        other.push(spread(&seen, &[2, 3], from, to)?);
        dry_both.push(dry);
        post(nodes[2].http, "/api/stop", json!({})).await?;
        tokio::time::sleep(settle).await;
    }
    // Each window with both against the mean of the two alone around it;
    // only where none of the three saw an output underrun (a machine-wide
    // stall, which hits every node whichever zones play, would swamp it).
    let clean = |dry: &Vec<u64>| dry.iter().all(|d| *d == 0);
    let changes: Vec<Option<f64>> = both
        .iter()
        .enumerate()
        .map(|(k, (_, p99))| {
            (clean(&dry_alone[k]) && clean(&dry_both[k]) && clean(&dry_alone[k + 1]))
                .then(|| p99 - (alone[k].1 + alone[k + 1].1) / 2.0)
        })
        .collect();
    let counted: Vec<f64> = changes.iter().flatten().copied().collect();
    let change = (!counted.is_empty()).then(|| counted.iter().sum::<f64>() / counted.len() as f64);
    let mean = |v: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
        v.iter().map(pick).sum::<f64>() / v.len() as f64
    };
    let (alone_p50, alone_p99) = (mean(&alone, |w| w.0), mean(&alone, |w| w.1));
    let (both_p50, both_p99) = (mean(&both, |w| w.0), mean(&both, |w| w.1));
    let (other_p50, other_p99) = (mean(&other, |w| w.0), mean(&other, |w| w.1));
    // 2. Zone A as a stereo pair, settled (before the moves disturb it).
    for (i, map) in [(0, "left"), (1, "right")] {
        post(
            nodes[0].http,
            "/api/channel",
            json!({ "node": nodes[i].peer, "channel": map }),
        )
        .await?;
    }
    tokio::time::sleep(settle).await;
    let mut seen = Collected::default();
    let (from, to, dry_pair) = window(&nodes, &mut seen, args.seconds).await;
    let (pair, _) = pair_offsets(&seen, &[0, 1], from, to);
    if pair.is_empty() {
        bail!("no overlapping flashes of the stereo pair");
    }
    let frames = |micros: f64| micros * f64::from(RATE) / 1e6;
    let pair_mean = frames(pair.iter().sum::<f64>() / pair.len() as f64);
    let pair_p99 = frames(percentile_abs(&pair, 99.0));

    // Node 2 plays again for the moves.
    post(nodes[2].http, "/api/play", json!({ "track": track_b })).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 3. Node 2 into zone A and back.
    let mut to_sound = Vec::new();
    let mut to_step = Vec::new();
    for k in 0..args.moves {
        let (zone, mate) = if k % 2 == 0 {
            (zone_a.as_str(), 0)
        } else {
            ("default", 3)
        };
        let (sound, step) = one_move(&nodes, 2, mate, zone).await?;
        if zone_of(&nodes[2]).await? != zone {
            bail!("node 2 is not in zone {zone} after the move");
        }
        to_sound.push(sound);
        to_step.push(step);
    }

    let worst_sound = to_step
        .iter()
        .map(|s| s.unwrap_or(f64::INFINITY))
        .fold(0.0, f64::max);
    Ok(json!({
        "nodes": n,
        "window_s": args.seconds,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "settle_s": args.settle,
        "zone_a_alone_us": { "p50": alone_p50, "p99": alone_p99 },
        "zone_a_with_second_zone_us": { "p50": both_p50, "p99": both_p99 },
        "zone_a_alone_p99_windows_us": alone.iter().map(|w| w.1).collect::<Vec<_>>(),
        "zone_a_with_second_zone_p99_windows_us": both.iter().map(|w| w.1).collect::<Vec<_>>(),
        "zone_a_p99_changes_us": changes,
        "zone_a_p99_change_us": change,
        "second_zone_us": { "p50": other_p50, "p99": other_p99 },
        "underruns_per_node": {
            "zone_a_alone": dry_alone, "both": dry_both, "stereo_pair": dry_pair,
        },
        "move_to_sound_ms": to_sound,
        "move_to_in_step_ms": to_step,
        "stereo_pair_offset_frames": { "mean": pair_mean, "p99": pair_p99 },
        "goals": {
            "independence_us": GOAL_INDEPENDENCE_MICROS,
            "independence_met": change.is_some_and(|c| c.abs() <= GOAL_INDEPENDENCE_MICROS),
            "move_ms": GOAL_MOVE_MILLIS,
            "move_met": worst_sound <= GOAL_MOVE_MILLIS,
            "pair_frames": GOAL_PAIR_FRAMES,
            "pair_met": pair_p99 <= GOAL_PAIR_FRAMES,
        },
    }))
}

fn print_table(report: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let list = |v: &serde_json::Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        if x.is_null() {
                            "not within 4 s".to_string()
                        } else {
                            format!("{:.0}", f(x))
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let met = |v: &serde_json::Value| if v == true { "met" } else { "NOT met" };
    println!("firefly bench zones: 4 nodes, skewed clocks, virtual outputs");
    let windows = |v: &serde_json::Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        if x.is_null() {
                            "(underruns)".to_string()
                        } else {
                            format!("{:.1}", f(x))
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    println!(
        "zone A spread alone:            p50 {:>6.1} µs  p99 {:>6.1} µs  (mean of {} windows; p99s {})",
        f(&report["zone_a_alone_us"]["p50"]),
        f(&report["zone_a_alone_us"]["p99"]),
        report["zone_a_alone_p99_windows_us"]
            .as_array()
            .map_or(0, Vec::len),
        windows(&report["zone_a_alone_p99_windows_us"])
    );
    println!(
        "zone A with a 2nd zone playing: p50 {:>6.1} µs  p99 {:>6.1} µs  (p99s {})",
        f(&report["zone_a_with_second_zone_us"]["p50"]),
        f(&report["zone_a_with_second_zone_us"]["p99"]),
        windows(&report["zone_a_with_second_zone_p99_windows_us"])
    );
    println!(
        "zone A p99 change with the 2nd zone: {:+.1} µs (each window against the two alone around it, none with an underrun: {}; goal ±{} µs: {})",
        f(&report["zone_a_p99_change_us"]),
        windows(&report["zone_a_p99_changes_us"]),
        f(&report["goals"]["independence_us"]),
        met(&report["goals"]["independence_met"])
    );
    println!(
        "second zone spread:             p50 {:>6.1} µs  p99 {:>6.1} µs",
        f(&report["second_zone_us"]["p50"]),
        f(&report["second_zone_us"]["p99"])
    );
    println!(
        "output underruns per node in each window (alone…, both…, pair): {} / {} / {}",
        report["underruns_per_node"]["zone_a_alone"],
        report["underruns_per_node"]["both"],
        report["underruns_per_node"]["stereo_pair"]
    );
    println!(
        "move → first sound (ms):        {}",
        list(&report["move_to_sound_ms"])
    );
    println!(
        "move → in step (ms):            {}  (goal ≤ {} ms: {})",
        list(&report["move_to_in_step_ms"]),
        f(&report["goals"]["move_ms"]),
        met(&report["goals"]["move_met"])
    );
    println!(
        "stereo pair offset:             mean {:+.3} frames  p99 {:.3} frames  (goal ≤ {} frame: {})",
        f(&report["stereo_pair_offset_frames"]["mean"]),
        f(&report["stereo_pair_offset_frames"]["p99"]),
        f(&report["goals"]["pair_frames"]),
        met(&report["goals"]["pair_met"])
    );
}
