//! `firefly bench transitions`: every transport command → sound (or
//! silence) on every node, and how far apart the nodes switch.
//!
//! A real swarm of `firefly up` child processes on 127.0.0.1 (skewed test
//! clocks, virtual outputs that stamp every flash with the true instant it
//! was heard; [`crate::cmd::local_swarm`]). Every node holds the same two
//! tracks, so no download is timed. Each round sends, to a follower's API
//! (which forwards to the coordinator), `pause`, `resume`, `seek`, `next`,
//! `prev`, `stop` and `play`, and for each node finds the true instant its
//! output switched:
//!
//! - a command that starts sound: the first flash of the node's new player
//!   track, taken back to the requested position (`seek`/`play`: the one
//!   asked for; `resume`: where the pause held; `next`/`prev`: 0);
//! - a command that silences: the last flash of the run, taken forward to
//!   where the fade ended (`pause`: the held position; `stop`: the swarm
//!   instant the session is anchored at, through the node's own swarm
//!   clock) — checked to lie within one period of that last flash.
//!
//! Reported per command: command → switch on the last node (ms, from the
//! request's send), the spread of the switch instants across nodes (µs
//! and output frames), and the switch against the nodes' steady alignment:
//! for every pair, how far its switch offset lies from its steady offset
//! over the fifth of a second next to the switch. That last figure is zero when every
//! node switches on the same frame of the shared timeline, whatever the
//! clocks' own spread (which steady playback has too, and which the
//! switch's spread then equals).

use crate::cmd::local_swarm::{
    Node, RATE, get_json, music_dir, offsets, start_node, synthesize, wait_settled,
};
use crate::cmd::status::request;
use anyhow::{Context, bail};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Arguments of `firefly bench transitions`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Nodes in the swarm (2 to 8).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=8))]
    nodes: u8,
    /// Rounds of the seven commands.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=20))]
    rounds: u8,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Keep every node's flashes, as its API gave them right after each
    /// command was measured, in `DIR/<command>-<round>-node<i>.json`.
    #[arg(long, value_name = "DIR")]
    logs: Option<PathBuf>,
}

/// The goal: every command → sound (or silence) within this.
const GOAL_COMMAND_MILLIS: f64 = 150.0;
/// Longest a fade may end after the run's last flash (one period and then some).
const LAST_FLASH_SLACK_MICROS: i64 = 50_000;
/// How long the music plays between two commands.
const SETTLE: Duration = Duration::from_millis(1_500);

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let root: PathBuf =
        std::env::temp_dir().join(format!("firefly-bench-transitions-{}", std::process::id()));
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

fn unix_micros_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(0))
}

/// One flash: player track, source position, swarm µs, true µs.
#[derive(Debug, Clone, Copy)]
struct Flash {
    track: u64,
    position: f64,
    swarm_us: i64,
    true_us: i64,
}

async fn flashes(node: &Node) -> anyhow::Result<Vec<Flash>> {
    let all = get_json(node.http, "/api/flashes").await?;
    Ok(all
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|f| {
                    Some(Flash {
                        track: f["track"].as_u64()?,
                        position: f["position"].as_f64()?,
                        swarm_us: f["swarm_us"].as_i64()?,
                        true_us: f["true_unix_us"].as_i64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default())
}

/// With `--logs`, writes each node's flashes as its API gives them now to
/// `DIR/<command>-<round>-node<i>.json`.
async fn keep_flashes(
    nodes: &[Node],
    dir: Option<&Path>,
    command: &str,
    round: u8,
) -> anyhow::Result<()> {
    let Some(dir) = dir else {
        return Ok(());
    };
    std::fs::create_dir_all(dir)?;
    for node in nodes {
        let all = get_json(node.http, "/api/flashes").await?;
        std::fs::write(
            dir.join(format!("{command}-{round}-node{}.json", node.index)),
            serde_json::to_vec(&all)?,
        )?;
    }
    Ok(())
}

/// `POST path body` to a node's API; the playback it answers with.
async fn command(
    node: &Node,
    path: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let reply = request(node.http, "POST", path, Some(&body), None).await?;
    serde_json::from_slice(&reply).with_context(|| format!("{path} answered no JSON"))
}

/// The newest player track number of every node.
async fn current_runs(nodes: &[Node]) -> anyhow::Result<Vec<u64>> {
    let mut runs = Vec::new();
    for node in nodes {
        runs.push(
            flashes(node)
                .await?
                .iter()
                .map(|f| f.track)
                .max()
                .unwrap_or(0),
        );
    }
    Ok(runs)
}

/// One output period of `run` in `seen`: (source frames, µs) between
/// consecutive flashes (the median).
fn period(seen: &[Flash], run: u64) -> (f64, i64) {
    let flashes: Vec<&Flash> = seen.iter().filter(|f| f.track == run).collect();
    let mut frames: Vec<f64> = flashes
        .windows(2)
        .map(|w| w[1].position - w[0].position)
        .collect();
    let mut micros: Vec<i64> = flashes
        .windows(2)
        .map(|w| w[1].true_us - w[0].true_us)
        .collect();
    frames.sort_by(f64::total_cmp);
    micros.sort_unstable();
    (
        frames.get(frames.len() / 2).copied().unwrap_or(0.0),
        micros.get(micros.len() / 2).copied().unwrap_or(0),
    )
}

/// When each node switched, and how many switched late (after the anchor:
/// the command reached them too late, so the player changed at once).
struct Switches {
    at: Vec<i64>,
    late: usize,
    /// Each node's flashes (source frame, true µs) of the switching run
    /// within [`NEAR_MICROS`] of the switch: after it for a start, before it for
    /// a silence. Their pairwise offsets are the nodes' steady alignment
    /// at that moment, which the switch is measured against.
    near: Vec<Vec<(f64, i64)>>,
}

/// The span of flashes next to a switch taken as the nodes' steady
/// alignment there, µs: short, as the clocks' spread itself moves by tens
/// of µs over a second on a loaded machine.
const NEAR_MICROS: i64 = 200_000;

/// The flashes of `run` in `seen` whose true instants lie in `from..to`.
fn near(seen: &[Flash], run: u64, from: i64, to: i64) -> Vec<(f64, i64)> {
    seen.iter()
        .filter(|f| f.track == run && f.true_us >= from && f.true_us < to)
        .map(|f| (f.position, f.true_us))
        .collect()
}

/// Waits until every node plays a player track newer than `before` (for a
/// second); the true instant each sounded source frame `frame`: its first
/// flash taken back to that frame, or, for a node that started late at the
/// timeline's position, that first flash itself.
async fn sound_starts(nodes: &[Node], before: &[u64], frame: f64) -> anyhow::Result<Switches> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut switches = Switches {
            at: Vec::new(),
            late: 0,
            near: Vec::new(),
        };
        for (node, &was) in nodes.iter().zip(before) {
            let seen = flashes(node).await?;
            let Some(run) = seen.iter().map(|f| f.track).filter(|&t| t > was).min() else {
                break;
            };
            let (period_frames, _) = period(&seen, run);
            let Some(first) = seen.iter().find(|f| f.track == run) else {
                break;
            };
            if seen.iter().filter(|f| f.track == run).count() < 50 {
                break;
            }
            switches
                .near
                .push(near(&seen, run, first.true_us, first.true_us + NEAR_MICROS));
            let ahead = first.position - frame;
            if ahead < -0.01 * f64::from(RATE) {
                bail!(
                    "node {} started at frame {:.0}, before {frame:.0}",
                    node.index,
                    first.position
                );
            }
            if ahead > period_frames + 1.0 {
                // Late: it joined at the timeline's position.
                switches.late += 1;
                switches.at.push(first.true_us);
            } else {
                switches
                    .at
                    .push(first.true_us - (ahead * 1e6 / f64::from(RATE)).round() as i64);
            }
        }
        if switches.at.len() == nodes.len() {
            return Ok(switches);
        }
        if Instant::now() > deadline {
            bail!("not every node started sounding within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where a run fell silent.
enum SilentAt {
    /// At this source frame (a pause holds it).
    Frame(f64),
    /// At this swarm instant, µs.
    Swarm(i64),
}

/// The true instant each node's run `runs[k]` fell silent, once the fade
/// is surely over: its last flash taken forward to where the fade ends, or,
/// for a node that got the command after that (its last flash is later),
/// the end of its last period.
async fn silences(nodes: &[Node], runs: &[u64], at: SilentAt) -> anyhow::Result<Switches> {
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut switches = Switches {
        at: Vec::new(),
        late: 0,
        near: Vec::new(),
    };
    for (node, &run) in nodes.iter().zip(runs) {
        let seen = flashes(node).await?;
        let last = seen
            .iter()
            .rfind(|f| f.track == run)
            .with_context(|| format!("node {} kept no flash of its run", node.index))?;
        if seen.iter().any(|f| f.track > run) {
            bail!("node {} started sounding again", node.index);
        }
        switches.near.push(near(
            &seen,
            run,
            last.true_us - NEAR_MICROS,
            last.true_us + 1,
        ));
        let after = match at {
            SilentAt::Frame(frame) => {
                ((frame - last.position) * 1e6 / f64::from(RATE)).round() as i64
            }
            SilentAt::Swarm(swarm) => swarm - last.swarm_us,
        };
        if after > LAST_FLASH_SLACK_MICROS {
            bail!(
                "node {} fell silent {after} µs after its last flash, not within one period",
                node.index
            );
        }
        if after < 0 {
            switches.late += 1;
            switches.at.push(last.true_us + period(&seen, run).1);
        } else {
            switches.at.push(last.true_us + after);
        }
    }
    Ok(switches)
}

/// The baseline: how far apart the nodes sound the same frame in steady
/// playback just before a command, µs (the largest of every pair's median
/// offset over the current runs' last second).
async fn steady_spread(nodes: &[Node]) -> anyhow::Result<f64> {
    let mut runs = Vec::new();
    for node in nodes {
        let seen = flashes(node).await?;
        let run = seen.iter().map(|f| f.track).max().unwrap_or(0);
        let last = seen
            .iter()
            .rfind(|f| f.track == run)
            .map_or(0, |f| f.true_us);
        let recent: Vec<(f64, i64)> = seen
            .iter()
            .filter(|f| f.track == run && f.true_us > last - 1_000_000)
            .map(|f| (f.position, f.true_us))
            .collect();
        runs.push(recent);
    }
    let mut worst: f64 = 0.0;
    for (k, a) in runs.iter().enumerate() {
        for b in &runs[k + 1..] {
            let mut o = offsets(a, b);
            if o.is_empty() {
                bail!("no overlapping flashes between two nodes before a command");
            }
            o.sort_by(f64::total_cmp);
            worst = worst.max(o[o.len() / 2].abs());
        }
    }
    Ok(worst)
}

/// One command's figures on one round.
#[derive(Debug, Clone, Copy)]
struct Figures {
    /// Command → switch on the last node, ms.
    command_to_switch_ms: f64,
    /// The switch instants' spread across the nodes, µs.
    spread_us: f64,
    /// Nodes that got the command after its anchor and switched late.
    late: usize,
    /// The switch against the nodes' steady alignment: over every pair,
    /// the largest |(switch offset) − (steady offset around the switch)|,
    /// µs. Zero when every node switches on the same frame of the shared
    /// timeline; the spread that is left is the clocks' own (the steady
    /// offset), which the switch neither adds to nor takes from.
    excess_us: f64,
}

/// The figures of one command from when it was sent and how the nodes
/// switched.
fn figures(sent: i64, switched: &Switches) -> anyhow::Result<Figures> {
    let first = switched.at.iter().copied().min().unwrap_or(sent);
    let last = switched.at.iter().copied().max().unwrap_or(sent);
    let mut excess_us: f64 = 0.0;
    for i in 0..switched.at.len() {
        for j in i + 1..switched.at.len() {
            let mut steady = offsets(&switched.near[i], &switched.near[j]);
            if steady.is_empty() {
                let span =
                    |n: &[(f64, i64)]| (n.len(), n.first().map(|f| f.0), n.last().map(|f| f.0));
                bail!(
                    "nodes {i} and {j} share no flashes around a switch: {:?} and {:?}",
                    span(&switched.near[i]),
                    span(&switched.near[j])
                );
            }
            steady.sort_by(f64::total_cmp);
            let steady = steady[steady.len() / 2];
            let switch = (switched.at[i] - switched.at[j]) as f64;
            excess_us = excess_us.max((switch - steady).abs());
        }
    }
    Ok(Figures {
        command_to_switch_ms: (last - sent) as f64 / 1e3,
        spread_us: (last - first) as f64,
        late: switched.late,
        excess_us,
    })
}

async fn bench(root: &Path, args: &Args) -> anyhow::Result<serde_json::Value> {
    let n = usize::from(args.nodes);
    // The same two tracks on every node: made once, copied.
    let first_music = music_dir(root, 0);
    std::fs::create_dir_all(&first_music)?;
    synthesize(&first_music.join("a.wav"), 0, 600)?;
    synthesize(&first_music.join("b.wav"), 1, 600)?;
    for i in 1..n {
        let music = music_dir(root, i);
        std::fs::create_dir_all(&music)?;
        for name in ["a.wav", "b.wav"] {
            std::fs::copy(first_music.join(name), music.join(name))?;
        }
    }
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let peers: Vec<String> = nodes.iter().map(|node| node.addr.clone()).collect();
        nodes.push(start_node(root, i, &peers)?);
    }
    let coordinator = wait_settled(&nodes, Duration::from_secs(60)).await?;
    let follower = nodes
        .iter()
        .position(|node| node.peer != coordinator)
        .context("no follower to send commands to")?;
    let library = get_json(nodes[0].http, "/api/library").await?;
    let mut ids: Vec<String> = library
        .as_array()
        .map(|tracks| {
            tracks
                .iter()
                .filter_map(|t| t["track"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    let [a, b] = ids.as_slice() else {
        bail!("node 0 does not list its two tracks");
    };
    let to = &nodes[follower];
    command(to, "/api/play", json!({ "track": a })).await?;
    sound_starts(&nodes, &vec![0; n], 0.0).await?;

    let mut by_command: BTreeMap<&str, Vec<Figures>> = BTreeMap::new();
    let mut baseline_us: Vec<f64> = Vec::new();
    for round in 0..args.rounds {
        tokio::time::sleep(SETTLE).await;
        // pause: silent where the pause holds.
        baseline_us.push(steady_spread(&nodes).await?);
        let runs = current_runs(&nodes).await?;
        let sent = unix_micros_now();
        let paused = command(to, "/api/pause", json!({})).await?;
        let held_ms = paused["position_ms"]
            .as_f64()
            .context("pause: no position")?;
        let ends = silences(
            &nodes,
            &runs,
            SilentAt::Frame(held_ms * f64::from(RATE) / 1e3),
        )
        .await?;
        by_command
            .entry("pause")
            .or_default()
            .push(figures(sent, &ends)?);
        keep_flashes(&nodes, args.logs.as_deref(), "pause", round).await?;
        // resume: sound from there.
        tokio::time::sleep(SETTLE).await;
        let runs = current_runs(&nodes).await?;
        let sent = unix_micros_now();
        command(to, "/api/resume", json!({})).await?;
        let starts = sound_starts(&nodes, &runs, held_ms * f64::from(RATE) / 1e3).await?;
        by_command
            .entry("resume")
            .or_default()
            .push(figures(sent, &starts)?);
        keep_flashes(&nodes, args.logs.as_deref(), "resume", round).await?;
        // seek: sound from the new position.
        tokio::time::sleep(SETTLE).await;
        baseline_us.push(steady_spread(&nodes).await?);
        let position_ms = 60_000 + 10_000 * u64::from(round);
        let runs = current_runs(&nodes).await?;
        let sent = unix_micros_now();
        command(to, "/api/seek", json!({ "position_ms": position_ms })).await?;
        let frame = position_ms as f64 * f64::from(RATE) / 1e3;
        let starts = sound_starts(&nodes, &runs, frame).await?;
        by_command
            .entry("seek")
            .or_default()
            .push(figures(sent, &starts)?);
        keep_flashes(&nodes, args.logs.as_deref(), "seek", round).await?;
        // next: the queued track from its start.
        request(to.http, "DELETE", "/api/queue", None, None).await?;
        command(to, "/api/queue", json!({ "tracks": [b] })).await?;
        tokio::time::sleep(SETTLE).await;
        let runs = current_runs(&nodes).await?;
        let sent = unix_micros_now();
        command(to, "/api/next", json!({})).await?;
        let starts = sound_starts(&nodes, &runs, 0.0).await?;
        by_command
            .entry("next")
            .or_default()
            .push(figures(sent, &starts)?);
        keep_flashes(&nodes, args.logs.as_deref(), "next", round).await?;
        // prev (within 3 s of the start): the track before, from its start.
        tokio::time::sleep(SETTLE).await;
        baseline_us.push(steady_spread(&nodes).await?);
        let runs = current_runs(&nodes).await?;
        let sent = unix_micros_now();
        let back = command(to, "/api/prev", json!({})).await?;
        if back["track"].as_str() != Some(a.as_str()) {
            bail!("prev did not go back to the first track: {back}");
        }
        let starts = sound_starts(&nodes, &runs, 0.0).await?;
        by_command
            .entry("prev")
            .or_default()
            .push(figures(sent, &starts)?);
        keep_flashes(&nodes, args.logs.as_deref(), "prev", round).await?;
        // stop: silent at the instant it was anchored at.
        tokio::time::sleep(SETTLE).await;
        baseline_us.push(steady_spread(&nodes).await?);
        let runs = current_runs(&nodes).await?;
        let sent = unix_micros_now();
        let stopped = command(to, "/api/stop", json!({})).await?;
        let anchor = stopped["anchor_swarm_us"]
            .as_i64()
            .context("stop: no anchor")?;
        let ends = silences(&nodes, &runs, SilentAt::Swarm(anchor)).await?;
        by_command
            .entry("stop")
            .or_default()
            .push(figures(sent, &ends)?);
        keep_flashes(&nodes, args.logs.as_deref(), "stop", round).await?;
        // play: sound from the position asked for.
        tokio::time::sleep(SETTLE).await;
        let position_ms = 20_000 + 10_000 * u64::from(round);
        let runs = current_runs(&nodes).await?;
        let sent = unix_micros_now();
        command(
            to,
            "/api/play",
            json!({ "track": a, "position_ms": position_ms }),
        )
        .await?;
        let frame = position_ms as f64 * f64::from(RATE) / 1e3;
        let starts = sound_starts(&nodes, &runs, frame).await?;
        by_command
            .entry("play")
            .or_default()
            .push(figures(sent, &starts)?);
        keep_flashes(&nodes, args.logs.as_deref(), "play", round).await?;
    }

    let mut commands = serde_json::Map::new();
    let mut worst_ms: f64 = 0.0;
    let mut worst_spread: f64 = 0.0;
    let mut worst_excess: f64 = 0.0;
    let mut late_switches = 0;
    for name in ["play", "pause", "resume", "seek", "next", "prev", "stop"] {
        let trials = by_command.get(name).cloned().unwrap_or_default();
        let ms: Vec<f64> = trials.iter().map(|t| t.command_to_switch_ms).collect();
        let max_ms = ms.iter().copied().fold(0.0, f64::max);
        let max_spread = trials.iter().map(|t| t.spread_us).fold(0.0, f64::max);
        let max_excess = trials.iter().map(|t| t.excess_us).fold(0.0, f64::max);
        let late = trials.iter().map(|t| t.late).sum::<usize>();
        let mut sorted = ms.clone();
        sorted.sort_by(f64::total_cmp);
        worst_ms = worst_ms.max(max_ms);
        worst_spread = worst_spread.max(max_spread);
        worst_excess = worst_excess.max(max_excess);
        late_switches += late;
        commands.insert(
            name.to_string(),
            json!({
                "command_to_switch_ms": ms,
                "median_ms": sorted.get(sorted.len() / 2),
                "max_ms": max_ms,
                "spread_us": trials.iter().map(|t| t.spread_us).collect::<Vec<_>>(),
                "max_spread_us": max_spread,
                "max_spread_frames": max_spread * f64::from(RATE) / 1e6,
                "excess_us": trials.iter().map(|t| t.excess_us).collect::<Vec<_>>(),
                "max_excess_us": max_excess,
                "max_excess_frames": max_excess * f64::from(RATE) / 1e6,
                "late_switches": late,
            }),
        );
    }
    baseline_us.sort_by(f64::total_cmp);
    let baseline_median = baseline_us
        .get(baseline_us.len() / 2)
        .copied()
        .unwrap_or(0.0);
    Ok(json!({
        "nodes": n,
        "steady_spread_us": {
            "samples": baseline_us,
            "median": baseline_median,
        },
        "worst_spread_over_steady": worst_spread / baseline_median.max(1.0),
        "rounds": args.rounds,
        "commands": commands,
        "goals": {
            "every_command_to_switch_le_150ms": worst_ms <= GOAL_COMMAND_MILLIS,
            "worst_command_to_switch_ms": worst_ms,
            "worst_spread_us": worst_spread,
            "worst_spread_frames": worst_spread * f64::from(RATE) / 1e6,
            "every_switch_on_the_same_frame": late_switches == 0
                && worst_excess * f64::from(RATE) / 1e6 <= 1.0,
            "worst_excess_us": worst_excess,
            "worst_excess_frames": worst_excess * f64::from(RATE) / 1e6,
        },
    }))
}

fn print_table(r: &serde_json::Value) {
    println!(
        "{} nodes, {} rounds; command sent to a follower, switch measured on every node's output",
        r["nodes"], r["rounds"]
    );
    println!(
        "command   → switch, median / max (ms)   spread across nodes, max (µs / frames)   against steady, max (µs / frames)   late"
    );
    for name in ["play", "pause", "resume", "seek", "next", "prev", "stop"] {
        let c = &r["commands"][name];
        println!(
            "{name:<8}  {:>8.1} / {:>6.1}                 {:>8.0} / {:<6.2}              {:>8.1} / {:<6.2}                  {}",
            c["median_ms"].as_f64().unwrap_or(f64::NAN),
            c["max_ms"].as_f64().unwrap_or(f64::NAN),
            c["max_spread_us"].as_f64().unwrap_or(f64::NAN),
            c["max_spread_frames"].as_f64().unwrap_or(f64::NAN),
            c["max_excess_us"].as_f64().unwrap_or(f64::NAN),
            c["max_excess_frames"].as_f64().unwrap_or(f64::NAN),
            c["late_switches"],
        );
    }
    println!(
        "baseline, same run: steady playback's spread (worst pair's median offset) {:.0} µs; worst switch spread ÷ it: {:.1}",
        r["steady_spread_us"]["median"].as_f64().unwrap_or(f64::NAN),
        r["worst_spread_over_steady"].as_f64().unwrap_or(f64::NAN),
    );
    println!(
        "goal: every node switches on the same frame (no late switch, each pair's switch within one frame of its steady offset): {}",
        if r["goals"]["every_switch_on_the_same_frame"] == true {
            "met"
        } else {
            "not met"
        }
    );
    println!(
        "goal: every command → sound or silence ≤ 150 ms: {}",
        if r["goals"]["every_command_to_switch_le_150ms"] == true {
            "met"
        } else {
            "not met"
        }
    );
}
