//! `firefly bench sync`: synchronized playback measured from outside the nodes.
//!
//! It runs a real swarm of `firefly up` child processes on 127.0.0.1 (see
//! [`crate::cmd::local_swarm`]): skewed test clocks (offsets up to ±1 s,
//! rates up to ±200 ppm), virtual outputs that stamp every flash with the
//! true instant it was heard. Only the last node holds the played track, so
//! the first play also moves it to every other node. Then, in one run:
//!
//! 1. **steady sync**: each node's CPU over a quiet window (nobody asks the
//!    nodes anything, up to 20 s), then the offsets between every pair of
//!    nodes over a window of steady playback (p50, p99, max) and their RSS;
//! 2. **command → sound** with the track cached: from sending `play` to a
//!    follower's API until every node has sounded the requested position;
//! 3. **join**: a node is killed and started again on its data dir; from its
//!    start to the first instant from which it stays within 1 ms of the others;
//! 4. **failover**: the coordinator is killed mid-track; gaps on the survivors'
//!    outputs, the time until they agree on a new coordinator and until it
//!    accepts a command, and their offsets afterwards.

use crate::cmd::bench::threads::ThreadCpu;
use crate::cmd::local_swarm::{
    Node, NodeSetup, RATE, SeenFlash, flashes, get_json, least_squares_line, music_dir, offsets,
    percentile_abs, post, skew, start_node_with, synthesize, wait_settled,
};
use anyhow::{Context, bail};
use firefly_faultproxy::{FaultProxy, Faults, LinkFaults};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Arguments of `firefly bench sync`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Nodes in the swarm (3 to 8).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(3..=8))]
    nodes: u8,
    /// Seconds of steady playback over which offsets are measured.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(5..=300))]
    seconds: u32,
    /// Seconds of playback before the steady window (a swarm runs for hours;
    /// its clocks have long converged).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=600))]
    warmup: u32,
    /// Pass every link through a fault proxy (`firefly-faultproxy`) that
    /// delays each direction by this many ms on average.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=2_000))]
    jitter_ms: Option<u32>,
    /// With `--jitter-ms`: each delay is uniform in `jitter-ms ± this` ms.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=2_000))]
    jitter_spread_ms: u32,
    /// With `--jitter-ms`: stalls that hold each direction of a link, on
    /// average every this many seconds (0: none).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=3_600))]
    stall_every_s: u32,
    /// With `--stall-every-s`: how long each stall holds the link, ms.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    stall_ms: u32,
    /// With `--jitter-ms`: percent of segments lost on each direction of a
    /// link (a TCP segment arrives a 200 ms retransmission late, a time
    /// datagram is dropped).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=50))]
    loss_percent: u8,
    /// Every node probes its peers' clocks this many times as often as it
    /// would (`FIREFLY_TEST_PROBE_RATE`): the CPU a doubled rate adds is
    /// what the time exchange costs.
    #[arg(long, default_value_t = 1.0, value_parser = probe_rate)]
    probe_rate: f64,
    /// Seconds over which each node's CPU is read, in a quiet window of its
    /// own before the steady one (a longer window averages out the
    /// runtime's spread between runs).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(5..=600))]
    cpu_seconds: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// How nodes reach each other: directly, or each link through its own fault
/// proxy (the dialer reaches the dialed node only at the proxy's address;
/// mDNS is off, so there is no way around it).
struct Links {
    faults: Option<Faults>,
    proxies: Vec<FaultProxy>,
}

impl Links {
    fn new(args: &Args) -> Self {
        let faults = args.jitter_ms.map(|ms| {
            let mut link = LinkFaults::default()
                .delay(Duration::from_millis(u64::from(ms)))
                .jitter(Duration::from_millis(u64::from(args.jitter_spread_ms)));
            if args.stall_every_s > 0 {
                link = link.stalls(
                    Duration::from_secs(u64::from(args.stall_every_s)),
                    Duration::from_millis(u64::from(args.stall_ms)),
                );
            }
            if args.loss_percent > 0 {
                link = link.loss(
                    f64::from(args.loss_percent) / 100.0,
                    Duration::from_millis(200),
                );
            }
            Faults::both(link)
        });
        Self {
            faults,
            proxies: Vec::new(),
        }
    }

    /// The addresses a new node dials to reach `nodes`.
    async fn peers(&mut self, nodes: &[Node]) -> anyhow::Result<Vec<String>> {
        let Some(faults) = self.faults else {
            return Ok(nodes.iter().map(|node| node.addr.clone()).collect());
        };
        let mut peers = Vec::new();
        for node in nodes {
            // `/ip4/127.0.0.1/tcp/PORT/p2p/ID`
            let port: u16 = node
                .addr
                .split('/')
                .nth(4)
                .and_then(|p| p.parse().ok())
                .context("a node's address has no TCP port")?;
            let seed = self.proxies.len() as u64 + 1;
            let proxy = FaultProxy::start(([127, 0, 0, 1], port).into(), faults, seed).await?;
            peers.push(format!(
                "/ip4/127.0.0.1/tcp/{}/p2p/{}",
                proxy.local_addr().port(),
                node.peer
            ));
            self.proxies.push(proxy);
        }
        Ok(peers)
    }

    fn describe(&self, args: &Args) -> serde_json::Value {
        match self.faults {
            None => json!("direct"),
            Some(_) => json!({
                "delay_ms": args.jitter_ms,
                "jitter_ms": args.jitter_spread_ms,
                "stall_every_s": args.stall_every_s,
                "stall_ms": if args.stall_every_s > 0 { Some(args.stall_ms) } else { None },
                "loss_percent": args.loss_percent,
                // Time datagrams the proxies carried (0: every time
                // exchange took the streams).
                "datagrams": self.proxies.iter().map(|p| {
                    let s = p.stats();
                    s.datagrams_upstream + s.datagrams_downstream
                }).sum::<u64>(),
                "datagrams_dropped": self.proxies.iter().map(|p| p.stats().datagrams_dropped).sum::<u64>(),
            }),
        }
    }
}

/// Goals of the node issue.
const GOAL_P99_MICROS: f64 = 100.0;
const GOAL_P50_MICROS: f64 = 30.0;
const GOAL_JOIN_MILLIS: f64 = 2_000.0;
const GOAL_COMMAND_MILLIS: f64 = 150.0;
const GOAL_FAILOVER_MILLIS: f64 = 3_000.0;
const GOAL_CPU_PERCENT: f64 = 5.0;
const GOAL_RSS_MB: f64 = 60.0;
/// "In step", for the join: within this of the others.
const IN_STEP_MICROS: f64 = 1_000.0;
/// A flash further than this from where its predecessor predicts is a gap.
const GAP_MICROS: f64 = 1_000.0;
/// Clock ticks per second of `/proc/PID/stat` times (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;
/// The others' clocks across the join: a line fitted over this many
/// seconds before the kill, departures from it over [`JOIN_AFTER_S`] after.
const JOIN_FIT_S: u64 = 12;
/// Seconds after the kill over which the others' departure is measured
/// (the node is back and in step within a few).
const JOIN_AFTER_S: u64 = 18;
/// Trials of command → sound.
const COMMAND_TRIALS: usize = 5;

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let root: PathBuf =
        std::env::temp_dir().join(format!("firefly-bench-sync-{}", std::process::id()));
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

pub(crate) fn unix_micros_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(0))
}

/// Every flash seen so far per node, merged across polls of the ring.
#[derive(Default)]
pub(crate) struct Collected {
    by_node: BTreeMap<usize, BTreeMap<i64, SeenFlash>>,
}

impl Collected {
    pub(crate) async fn poll(&mut self, nodes: &[Node]) {
        for node in nodes {
            let seen = flashes(node).await.unwrap_or_default();
            let mine = self.by_node.entry(node.index).or_default();
            for f in seen {
                mine.insert(f.true_us, f);
            }
        }
    }

    /// Node `index`'s flashes of player track `track` in `[from, to)` true µs.
    pub(crate) fn run(&self, index: usize, track: u64, from: i64, to: i64) -> Vec<(f64, i64)> {
        self.by_node
            .get(&index)
            .map(|m| {
                m.range(from..to)
                    .map(|(_, f)| f)
                    .filter(|f| f.track == track)
                    .map(|f| (f.position, f.true_us))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The newest player track number of node `index`.
    pub(crate) fn last_track(&self, index: usize) -> Option<u64> {
        self.by_node
            .get(&index)
            .and_then(|m| m.values().map(|f| f.track).max())
    }

    fn forget(&mut self, index: usize) {
        self.by_node.remove(&index);
    }
}

/// Offsets of every pair of `indices` over `[from, to)`, each node on its
/// newest player track.
pub(crate) fn pair_offsets(
    seen: &Collected,
    indices: &[usize],
    from: i64,
    to: i64,
) -> (Vec<f64>, BTreeMap<String, f64>) {
    let runs: Vec<(usize, Vec<(f64, i64)>)> = indices
        .iter()
        .map(|&i| {
            let track = seen.last_track(i).unwrap_or(0);
            (i, seen.run(i, track, from, to))
        })
        .collect();
    pairwise(&runs, |a, b| offsets(a, b))
}

/// Every pair's offsets (`offsets_of(a, b)` for each node `a` before `b`),
/// all of them and each pair's mean keyed `"i-j"` (pairs without any left out).
pub(crate) fn pairwise<T>(
    nodes: &[(usize, T)],
    offsets_of: impl Fn(&T, &T) -> Vec<f64>,
) -> (Vec<f64>, BTreeMap<String, f64>) {
    let mut all = Vec::new();
    let mut means = BTreeMap::new();
    for (k, (i, a)) in nodes.iter().enumerate() {
        for (j, b) in &nodes[k + 1..] {
            let o = offsets_of(a, b);
            if !o.is_empty() {
                means.insert(format!("{i}-{j}"), o.iter().sum::<f64>() / o.len() as f64);
            }
            all.extend(o);
        }
    }
    (all, means)
}

/// CPU seconds used so far by `pid`.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds_in(&format!("/proc/{pid}/stat"))
}

/// CPU seconds in a `/proc/…/stat` file (a process's, or a thread's under `task/`).
pub(crate) fn cpu_seconds_in(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Resident memory of `pid`, MB.
fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// `--probe-rate`, checked as the node will.
fn probe_rate(text: &str) -> Result<f64, String> {
    crate::node::test_clock::parse_probe_rate(text).map_err(|err| err.to_string())
}

/// Node `i`'s set-up: a virtual output, its test clock, and the probe rate.
fn setup(args: &Args, i: usize) -> NodeSetup {
    let mut setup = NodeSetup::virtual_output(i);
    if args.probe_rate != 1.0 {
        setup.env.push((
            crate::node::test_clock::TEST_PROBE_RATE_VAR.to_string(),
            args.probe_rate.to_string(),
        ));
    }
    setup
}

async fn bench(root: &Path, args: &Args) -> anyhow::Result<serde_json::Value> {
    let n = usize::from(args.nodes);
    let holder = n - 1;
    let steady = i64::from(args.seconds);
    // Long enough for every phase on one track: settling, the CPU and steady windows,
    // command trials from 10 s on, the join and the failover.
    let track_seconds = u32::try_from(steady).unwrap_or(300)
        + args.warmup
        + u32::try_from(args.cpu_seconds).unwrap_or(600)
        + 150;
    for i in 0..n {
        let music = music_dir(root, i);
        std::fs::create_dir_all(&music)?;
        let seconds = if i == holder { track_seconds } else { 5 };
        synthesize(&music.join(format!("bench-{i}.wav")), i, seconds)?;
    }
    let mut links = Links::new(args);
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let peers = links.peers(&nodes).await?;
        nodes.push(start_node_with(root, i, &peers, &setup(args, i))?);
    }
    let coordinator = wait_settled(&nodes, Duration::from_secs(60)).await?;
    let library = get_json(nodes[holder].http, "/api/library").await?;
    let track = library
        .as_array()
        .and_then(|tracks| {
            tracks
                .iter()
                .find(|t| t["duration_ms"].as_u64().unwrap_or(0) > 60_000)
        })
        .and_then(|t| t["track"].as_str())
        .context("the holder's long track is not in its library")?
        .to_string();
    let follower = (0..n)
        .find(|&i| nodes[i].peer != coordinator && i != holder)
        .context("no follower to send commands to")?;

    // 1. The first play moves the track to everyone; then steady playback.
    let cold_sent = unix_micros_now();
    post(nodes[follower].http, "/api/play", json!({ "track": track })).await?;
    let mut seen = Collected::default();
    let all: Vec<usize> = (0..n).collect();
    let cold_started = wait_all_started(&nodes, &mut seen, None, Duration::from_secs(60)).await?;
    let cold_ms = (cold_started.iter().copied().max().unwrap_or(0) - cold_sent) as f64 / 1e3;
    tokio::time::sleep(Duration::from_secs(u64::from(args.warmup))).await;
    // CPU over a window of its own in which nobody asks the nodes anything:
    // the steady window below reads every node's state four times a second,
    // and serving that is the bench's cost, not the node's.
    seen.poll(&nodes).await;
    let cpu_before: Vec<Option<f64>> = nodes.iter().map(|n| cpu_seconds(n.pid())).collect();
    let threads_before: Vec<ThreadCpu> = nodes.iter().map(|n| ThreadCpu::read(n.pid())).collect();
    let cpu_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.cpu_seconds)).await;
    let cpu_secs = cpu_started.elapsed().as_secs_f64();
    let cpu_percent: Vec<f64> = nodes
        .iter()
        .zip(&cpu_before)
        .filter_map(|(node, before)| {
            Some((cpu_seconds(node.pid())? - (*before)?) / cpu_secs * 100.0)
        })
        .collect();
    let cpu_split: Vec<serde_json::Value> = nodes
        .iter()
        .zip(&threads_before)
        .map(|(node, before)| {
            let split = ThreadCpu::read(node.pid()).percent_since(before, cpu_secs);
            split
                .iter()
                .map(|(group, pct)| (group.key().to_owned(), json!(pct)))
                .collect()
        })
        .collect();
    let window_from = unix_micros_now();
    let window_started = Instant::now();
    let mut clocks = super::sync_clock::ClockReadings::default();
    while window_started.elapsed() < Duration::from_secs(steady.unsigned_abs()) {
        seen.poll(&nodes).await;
        // The clocks alone, a few times a second (see `sync_clock`).
        for _ in 0..8 {
            clocks.poll(&nodes).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    seen.poll(&nodes).await;
    let window_to = unix_micros_now();
    let rss: Vec<f64> = nodes.iter().filter_map(|n| rss_mb(n.pid())).collect();
    let (steady_offsets, pair_means) = pair_offsets(&seen, &all, window_from, window_to);
    let clock_views = clock_views(&nodes).await;
    let timeline_ppm = timeline_vs_members_ppm(&seen, &all, window_from, window_to);
    if steady_offsets.is_empty() {
        bail!("no overlapping flashes in the steady window");
    }

    // 2. Command → sound, the track cached everywhere now.
    let mut command_ms = Vec::new();
    let mut start_spread_us = Vec::new();
    for trial in 0..COMMAND_TRIALS {
        seen.poll(&nodes).await;
        let before: Vec<Option<u64>> = (0..n).map(|i| seen.last_track(i)).collect();
        let position_ms = 10_000 + 5_000 * trial as u64;
        let sent = unix_micros_now();
        post(
            nodes[follower].http,
            "/api/play",
            json!({ "track": track, "position_ms": position_ms }),
        )
        .await?;
        let started = wait_all_started(
            &nodes,
            &mut seen,
            Some((&before, position_ms as f64 * f64::from(RATE) / 1e3)),
            Duration::from_secs(10),
        )
        .await?;
        let first = started.iter().copied().min().unwrap_or(0);
        let last = started.iter().copied().max().unwrap_or(0);
        command_ms.push((last - sent) as f64 / 1e3);
        start_spread_us.push((last - first) as f64);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // 3. Join: a follower killed and started again on its data dir.
    let joiner = (0..n)
        .find(|&i| nodes[i].peer != coordinator && i != holder && i != follower)
        .unwrap_or(follower);
    let slot = nodes
        .iter()
        .position(|node| node.index == joiner)
        .context("the joiner is not running")?;
    // The others' clocks, read from long before the kill to well after the
    // restart: a node leaving and joining must not move the swarm (issue
    // 13: a joiner ≤ 10 µs). The first stretch, in which nothing happens,
    // measures the swarm's own wander with the same fit and horizon.
    let mut join_clocks = super::sync_clock::ClockReadings::except(joiner);
    join_clocks
        .poll_for(&nodes, Duration::from_secs(JOIN_FIT_S + JOIN_AFTER_S))
        .await;
    let left = unix_micros_now();
    nodes.remove(slot).kill();
    seen.forget(joiner);
    join_clocks.poll_for(&nodes, Duration::from_secs(2)).await;
    let spawned = unix_micros_now();
    let peers = links.peers(&nodes).await?;
    let rejoined = start_node_with(root, joiner, &peers, &setup(args, joiner))?;
    nodes.insert(slot, rejoined);
    let mut join_trace = Vec::new();
    let after = Duration::from_secs(JOIN_AFTER_S);
    let (join_ms, ()) = tokio::join!(
        wait_in_step(
            &nodes,
            &mut seen,
            joiner,
            spawned,
            Duration::from_secs(15),
            &mut join_trace,
        ),
        join_clocks.poll_for(&nodes, after.saturating_sub(Duration::from_secs(2))),
    );
    let join_ms = join_ms.map(|at| (at - spawned) as f64 / 1e3);
    // From the kill on: the node's leaving and its return together; and the
    // same fit and horizon over the quiet stretch before.
    let (fit, horizon) = ((JOIN_FIT_S * 1_000_000) as f64, after.as_micros() as f64);
    let left = left as f64;
    let join_moved = join_clocks.departure(left - fit, left, left + horizon);
    let join_quiet = join_clocks.departure(left - horizon - fit, left - horizon, left);

    // 4. Failover: the coordinator killed mid-track.
    tokio::time::sleep(Duration::from_secs(2)).await;
    seen.poll(&nodes).await;
    let victim = nodes
        .iter()
        .position(|node| node.peer == coordinator)
        .context("the coordinator is not running")?;
    let killed = nodes.remove(victim);
    let killed_index = killed.index;
    let tracks_before: BTreeMap<usize, Option<u64>> = nodes
        .iter()
        .map(|n| (n.index, seen.last_track(n.index)))
        .collect();
    let killed_at = unix_micros_now();
    killed.kill();
    let (new_coordinator_ms, accepted_ms) = wait_new_coordinator(&nodes, &coordinator).await;
    let survivors: Vec<usize> = nodes.iter().map(|n| n.index).collect();
    let watch_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < watch_until {
        seen.poll(&nodes).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    seen.poll(&nodes).await;
    let after_to = unix_micros_now();
    let mut gaps = 0usize;
    let mut restarted = 0usize;
    for &i in &survivors {
        if seen.last_track(i) != tracks_before.get(&i).copied().flatten() {
            restarted += 1;
        }
        let run = seen.run(
            i,
            seen.last_track(i).unwrap_or(0),
            killed_at - 1_000_000,
            after_to,
        );
        gaps += count_gaps(&run);
    }
    let (after_offsets, _) = pair_offsets(&seen, &survivors, killed_at + 1_000_000, after_to);

    let p50 = percentile_abs(&steady_offsets, 50.0);
    let p99 = percentile_abs(&steady_offsets, 99.0);
    let cpu_max = cpu_percent.iter().copied().fold(0.0, f64::max);
    let rss_max = rss.iter().copied().fold(0.0, f64::max);
    let mut sorted_command = command_ms.clone();
    sorted_command.sort_by(f64::total_cmp);
    let command_median = sorted_command[sorted_command.len() / 2];
    let command_max = sorted_command.last().copied().unwrap_or(0.0);
    Ok(json!({
        "nodes": n,
        "links": links.describe(args),
        "warmup_s": args.warmup,
        "skews": (0..n).map(skew).collect::<Vec<_>>(),
        "probe_rate": args.probe_rate,
        "steady": {
            "seconds": steady,
            "samples": steady_offsets.len(),
            "offset_p50_us": p50,
            "offset_p99_us": p99,
            "offset_max_us": percentile_abs(&steady_offsets, 100.0),
            "pair_mean_us": pair_means,
            "clock_view_us": clock_views,
            "timeline_vs_members_ppm": timeline_ppm,
            "clocks": clocks.report(),
        },
        "cold_command_to_sound_ms": cold_ms,
        "command_to_sound_ms": {
            "trials": command_ms,
            "median": command_median,
            "max": command_max,
            "start_spread_us": start_spread_us,
        },
        "join": {
            "node": joiner,
            "in_step_ms": join_ms,
            "trace_ms_us": join_trace,
            "others_clocks": join_moved,
            "others_clocks_quiet": join_quiet,
        },
        "failover": {
            "killed": killed_index,
            "new_coordinator_ms": new_coordinator_ms,
            "command_accepted_ms": accepted_ms,
            "gaps": gaps,
            "restarted_players": restarted,
            "offset_p99_after_us": percentile_abs(&after_offsets, 99.0),
        },
        "cpu_percent_of_a_core": cpu_percent,
        // The same window by thread: the output path, the tokio runtime, the rest.
        "cpu_split_percent": cpu_split,
        "rss_mb": rss,
        "goals": {
            "offset_p99_le_100us": p99 <= GOAL_P99_MICROS,
            "offset_p50_le_30us": p50 <= GOAL_P50_MICROS,
            "join_le_2s": join_ms.is_some_and(|ms| ms <= GOAL_JOIN_MILLIS),
            "command_to_sound_le_150ms": command_max <= GOAL_COMMAND_MILLIS,
            "failover_no_gap_le_3s": gaps == 0 && restarted == 0
                && new_coordinator_ms.is_some_and(|ms| ms <= GOAL_FAILOVER_MILLIS),
            "cpu_le_5_percent": cpu_max <= GOAL_CPU_PERCENT,
            "rss_le_60mb": rss_max <= GOAL_RSS_MB,
        },
    }))
}

/// Waits until every node sounds a new player track (newer than `before`,
/// or any when `None`) and returns the true instant each sounded its first
/// frame. With `start_frame`, the instant is that of that source frame.
async fn wait_all_started(
    nodes: &[Node],
    seen: &mut Collected,
    before: Option<(&[Option<u64>], f64)>,
    limit: Duration,
) -> anyhow::Result<Vec<i64>> {
    let deadline = Instant::now() + limit;
    loop {
        seen.poll(nodes).await;
        let mut starts = Vec::new();
        for (k, node) in nodes.iter().enumerate() {
            let newer = seen.last_track(node.index).filter(|&t| match before {
                Some((before, _)) => before.get(k).copied().flatten().is_none_or(|b| t > b),
                None => true,
            });
            let Some(track) = newer else { break };
            let run = seen.run(node.index, track, i64::MIN, i64::MAX);
            let Some(&(position, at)) = run.first() else {
                break;
            };
            let start = before.map_or(position, |(_, frame)| frame);
            starts.push(at - ((position - start) * 1e6 / f64::from(RATE)).round() as i64);
        }
        if starts.len() == nodes.len() {
            return Ok(starts);
        }
        if Instant::now() > deadline {
            bail!("not every node started playing within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until node `joiner` has stayed within [`IN_STEP_MICROS`] of every
/// other node for a second; returns the true instant it got there.
async fn wait_in_step(
    nodes: &[Node],
    seen: &mut Collected,
    joiner: usize,
    since: i64,
    limit: Duration,
    trace: &mut Vec<(i64, f64)>,
) -> Option<i64> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        seen.poll(nodes).await;
        let Some(mine_track) = seen.last_track(joiner) else {
            continue;
        };
        let mine = seen.run(joiner, mine_track, since, i64::MAX);
        if mine.is_empty() {
            continue;
        }
        // For each of the joiner's flashes, its worst offset against the others.
        let mut worst: Vec<(i64, f64)> = mine.iter().map(|&(_, t)| (t, 0.0)).collect();
        for other in nodes.iter().filter(|n| n.index != joiner) {
            let track = seen.last_track(other.index).unwrap_or(0);
            let theirs = seen.run(other.index, track, since - 1_000_000, i64::MAX);
            for (slot, &flash) in worst.iter_mut().zip(&mine) {
                let o = offsets(&[flash], &theirs);
                // No counterpart (the other's flashes were read earlier): unknown, not late.
                slot.1 = match o.first() {
                    Some(x) if !slot.1.is_nan() => slot.1.max(x.abs()),
                    _ => f64::NAN,
                };
            }
        }
        worst.retain(|(_, w)| !w.is_nan());
        // Every quarter second of the joiner's playback: its worst offset then.
        trace.clear();
        for &(t, w) in &worst {
            let ms = (t - since) / 1_000;
            if trace.last().is_none_or(|&(last, _)| ms - last >= 250) {
                trace.push((ms, w.min(1e9).round()));
            }
        }
        // The first flash from which every later one is in step, with a second of them.
        let mut from = None;
        for &(t, w) in worst.iter().rev() {
            if w <= IN_STEP_MICROS {
                from = Some(t);
            } else {
                break;
            }
        }
        if let (Some(from), Some(&(last, _))) = (from, worst.last())
            && last - from >= 1_000_000
        {
            return Some(from);
        }
    }
    None
}

/// What each node's swarm clock believes of its peers' offsets, by node
/// index: `"i→j"` is j's swarm clock minus i's, µs.
/// Each node's timeline rate against real time minus the median of the
/// members' test clock rates over the steady window, ppm (issue 13's goal:
/// within ±20). A player follows the timeline, so the rate at which its
/// flashes' source positions advance against their true instants is the
/// timeline's real rate; a node's test clock runs its `ppm` (see [`skew`])
/// off real time. `None` for a node with too few flashes.
fn timeline_vs_members_ppm(
    seen: &Collected,
    indices: &[usize],
    from: i64,
    to: i64,
) -> Vec<Option<f64>> {
    let rate_of = |i: usize| -> Option<f64> { skew(i).split(',').nth(1)?.parse().ok() };
    let mut rates: Vec<f64> = indices.iter().filter_map(|&i| rate_of(i)).collect();
    rates.sort_by(f64::total_cmp);
    let Some(&median) = rates.get(rates.len() / 2) else {
        return Vec::new();
    };
    indices
        .iter()
        .map(|&i| {
            let run = seen.run(i, seen.last_track(i)?, from, to);
            if run.len() < 10 {
                return None;
            }
            // Least squares of source seconds against true seconds.
            let points: Vec<(f64, f64)> = run
                .iter()
                .map(|&(pos, t)| ((t - run[0].1) as f64 / 1e6, pos / f64::from(RATE)))
                .collect();
            let (slope, _) = least_squares_line(&points)?;
            Some((slope - 1.0) * 1e6 - median)
        })
        .collect()
}

async fn clock_views(nodes: &[Node]) -> BTreeMap<String, f64> {
    let mut views = BTreeMap::new();
    let index_of = |peer: &str| nodes.iter().find(|n| n.peer == peer).map(|n| n.index);
    for node in nodes {
        let Ok(state) = get_json(node.http, "/api/state").await else {
            continue;
        };
        for peer in state["peers"].as_array().into_iter().flatten() {
            if let (Some(j), Some(offset)) = (
                peer["peer_id"].as_str().and_then(index_of),
                peer["clock_offset_us"].as_f64(),
            ) {
                views.insert(format!("{}→{j}", node.index), offset);
            }
        }
    }
    views
}

/// Waits until every survivor names one coordinator other than `old`
/// (ms after now) and until one of them accepts a command (ms after now).
async fn wait_new_coordinator(nodes: &[Node], old: &str) -> (Option<f64>, Option<f64>) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(15);
    let mut agreed = None;
    let mut accepted = None;
    while Instant::now() < deadline && (agreed.is_none() || accepted.is_none()) {
        if agreed.is_none() {
            let mut names = std::collections::BTreeSet::new();
            for node in nodes {
                let state = get_json(node.http, "/api/state").await.ok();
                names.insert(
                    state
                        .and_then(|s| s["coordinator"].as_str().map(str::to_string))
                        .unwrap_or_default(),
                );
            }
            if names.len() == 1 && names.first().is_some_and(|c| !c.is_empty() && c != old) {
                agreed = Some(started.elapsed().as_secs_f64() * 1e3);
            }
        }
        if accepted.is_none()
            && post(nodes[0].http, "/api/queue", json!({ "tracks": [] }))
                .await
                .is_ok()
        {
            accepted = Some(started.elapsed().as_secs_f64() * 1e3);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (agreed, accepted)
}

/// Flashes that are not where their predecessor predicts (a hole or a jump).
fn count_gaps(run: &[(f64, i64)]) -> usize {
    run.windows(2)
        .filter(|w| {
            let ((p0, t0), (p1, t1)) = (w[0], w[1]);
            let predicted = (p1 - p0) * 1e6 / f64::from(RATE);
            let elapsed = (t1 - t0) as f64;
            (elapsed - predicted).abs() > GAP_MICROS || elapsed > 100_000.0
        })
        .count()
}

fn print_table(r: &serde_json::Value) {
    let f = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
    println!(
        "firefly bench sync: {} nodes, skews {}, links {}",
        r["nodes"], r["skews"], r["links"]
    );
    println!(
        "steady offsets over {} s ({} samples): p50 {} µs, p99 {} µs, max {} µs   (goals p50 ≤ 30, p99 ≤ 100)",
        r["steady"]["seconds"],
        r["steady"]["samples"],
        f(&r["steady"]["offset_p50_us"]),
        f(&r["steady"]["offset_p99_us"]),
        f(&r["steady"]["offset_max_us"])
    );
    println!(
        "command → sound, cached: median {} ms, max {} ms   (goal ≤ 150); cold (download first) {} ms",
        f(&r["command_to_sound_ms"]["median"]),
        f(&r["command_to_sound_ms"]["max"]),
        f(&r["cold_command_to_sound_ms"])
    );
    println!(
        "restarted node in step (≤ 1 ms) after {} ms   (goal ≤ 2000)",
        f(&r["join"]["in_step_ms"])
    );
    println!(
        "the others' clocks across the join moved {} µs (the same fit over a quiet stretch: {} µs)   (goal ≤ 10)",
        f(&r["join"]["others_clocks"]["swarm_moved_us"]),
        f(&r["join"]["others_clocks_quiet"]["swarm_moved_us"])
    );
    println!(
        "coordinator killed: new one agreed after {} ms, accepted a command after {} ms, {} gaps, {} restarted players   (goal no gap, ≤ 3000 ms)",
        f(&r["failover"]["new_coordinator_ms"]),
        f(&r["failover"]["command_accepted_ms"]),
        r["failover"]["gaps"],
        r["failover"]["restarted_players"]
    );
    println!(
        "per node: CPU {} % of a core, RSS {} MB   (goals ≤ 5 %, ≤ 60 MB)",
        r["cpu_percent_of_a_core"], r["rss_mb"]
    );
    println!("per node, CPU by thread: {}", r["cpu_split_percent"]);
    println!("goals: {}", r["goals"]);
}
