//! `firefly bench clock`: runs the swarm-clock simulator and prints its report.
//!
//! Firefly coupling and a Snapcast-like baseline run the same scenario with
//! the same seed (see `firefly_clock::sim`). `--json` prints the whole
//! `Report`; otherwise a short summary is printed.

use anyhow::{Context, ensure};
use firefly_clock::sim::{self, Report, Scenario};
use std::io::Write;

/// Arguments of `firefly bench clock`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Network and swarm preset.
    #[arg(long, value_enum, default_value_t = Preset::Wifi)]
    scenario: Preset,
    /// Number of nodes, 2 to 1000, the late joiner included (default: the preset's).
    #[arg(long)]
    nodes: Option<usize>,
    /// Seed of every random draw; the same seed replays the same run.
    #[arg(long)]
    seed: Option<u64>,
    /// Fixed extra one-way delay in one direction of every link, µs.
    #[arg(long)]
    asymmetry_us: Option<f64>,
    /// Time between two probes of the same peer, ms (default: the
    /// preset's, 100 ms as in the node).
    #[arg(long)]
    probe_interval_ms: Option<f64>,
    /// Uniform one-way jitter on top of the base delay, ms: delays are
    /// `base ± this` on ordered links, as the fault proxy draws them.
    #[arg(long)]
    jitter_spread_ms: Option<f64>,
    /// One-way base delay of every link, ms (default: the preset's).
    #[arg(long)]
    delay_ms: Option<f64>,
    /// Mean time between stalls of each direction of a link, s (0: none;
    /// default: the preset's). Makes links ordered.
    #[arg(long)]
    stall_every_s: Option<f64>,
    /// How long each stall holds a link, ms (default: the preset's, 200 for `stalls`).
    #[arg(long)]
    stall_ms: Option<f64>,
    /// Fixed true clock rates of the first nodes, ppm, comma-separated, in
    /// node order (the joiner is the last node; the rest draw theirs;
    /// default: the preset's).
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    drifts_ppm: Option<Vec<f64>>,
    /// Every clock's rate also swings by ± this many ppm over five
    /// minutes, each node at its own phase, as a crystal's does with its
    /// temperature (default 0: constant rates).
    #[arg(long)]
    drift_wander_ppm: Option<f64>,
    /// A node leaves (crashes) this many seconds in; its peers drop it 3 s
    /// later, as heartbeats would (default: the preset's; `jitter` and
    /// `stalls` have none). The survivors' move is read against a quiet
    /// stretch before it, as `firefly bench sync` reads a kill.
    #[arg(long)]
    crash_at_s: Option<f64>,
    /// Which node leaves (default: the node whose clock the swarm adopted
    /// at boot; `firefly bench sync` kills node 1 or 0).
    #[arg(long)]
    crash_node: Option<usize>,
    /// Time messages travel as datagrams (`firefly_swarm::time_datagram`):
    /// each delayed on its own, lost ones never arrive, stalls hold without
    /// a queue, nothing waits behind other traffic (the links are unordered).
    #[arg(long)]
    datagrams: bool,
    /// Print the full report as JSON.
    #[arg(long)]
    json: bool,
}

/// The simulator's presets.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Preset {
    /// 5 nodes, wired LAN.
    Lan,
    /// 5 nodes, Wi-Fi with delay spikes and loss.
    Wifi,
    /// 100 nodes over Wi-Fi, each probing 8 random peers.
    Scale,
    /// 3 nodes, every link through the fault proxy with 20 ± 10 ms jitter each way.
    Jitter,
    /// The jitter preset plus 200 ms stalls of each direction every 5 s on average.
    Stalls,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let mut scenario = match args.scenario {
        Preset::Lan => Scenario::lan(),
        Preset::Wifi => Scenario::wifi(),
        Preset::Scale => Scenario::scale(),
        Preset::Jitter => Scenario::jitter(),
        Preset::Stalls => Scenario::stalls(),
    };
    if let Some(nodes) = args.nodes {
        ensure!(
            (2..=1_000).contains(&nodes),
            "--nodes must be between 2 and 1000"
        );
        scenario.nodes = nodes;
    }
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    if let Some(asymmetry) = args.asymmetry_us {
        ensure!(
            asymmetry.is_finite() && asymmetry >= 0.0,
            "--asymmetry-us must be a non-negative number of microseconds"
        );
        scenario.asymmetry_us = asymmetry;
    }
    if let Some(ms) = args.probe_interval_ms {
        ensure!(
            ms.is_finite() && (1.0..=10_000.0).contains(&ms),
            "--probe-interval-ms must be between 1 and 10000"
        );
        scenario.probe_interval_ms = ms;
    }
    let ms = |name: &str, v: f64| {
        ensure!(
            v.is_finite() && (0.0..=10_000.0).contains(&v),
            "--{name} must be between 0 and 10000"
        );
        Ok(v)
    };
    if let Some(v) = args.delay_ms {
        scenario.base_delay_us = ms("delay-ms", v)? * 1e3;
    }
    if let Some(v) = args.jitter_spread_ms {
        scenario.uniform_jitter_us = ms("jitter-spread-ms", v)? * 1e3;
    }
    if let Some(v) = args.stall_every_s {
        scenario.stall_every_s = ms("stall-every-s", v)?;
        scenario.ordered = true;
    }
    if let Some(v) = args.stall_ms {
        scenario.stall_ms = ms("stall-ms", v)?;
    }
    if let Some(drifts) = args.drifts_ppm {
        ensure!(
            drifts.iter().all(|d| d.is_finite() && d.abs() <= 1_000.0),
            "--drifts-ppm must be rates within ±1000 ppm"
        );
        scenario.drifts_ppm = drifts;
    }
    if let Some(wander) = args.drift_wander_ppm {
        ensure!(
            wander.is_finite() && (0.0..=100.0).contains(&wander),
            "--drift-wander-ppm must be between 0 and 100"
        );
        scenario.drift_wander_ppm = wander;
    }
    if let Some(at) = args.crash_at_s {
        ensure!(
            at.is_finite() && at >= 20.0 && at + 10.0 <= scenario.duration_s,
            "--crash-at-s must leave 20 s before it and 10 s after it ({} s run)",
            scenario.duration_s
        );
        scenario.crash_at_s = Some(at);
    }
    if let Some(node) = args.crash_node {
        ensure!(
            node < scenario.nodes,
            "--crash-node must be one of the {} nodes (0-based)",
            scenario.nodes
        );
        scenario.crash_node = Some(node);
    }
    if args.datagrams {
        scenario.ordered = false;
    }
    let report = sim::run(&scenario);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).context("writing the report")?;
        writeln!(out).context("writing the report")?;
    } else {
        write!(out, "{}", summary(&report)).context("writing the report")?;
    }
    Ok(())
}

fn summary(r: &Report) -> String {
    let f = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    format!(
        "scenario {} ({} nodes, seed {}, asymmetry floor {:.1} µs)\n\
         {:<10} {:>14} {:>14} {:>16} {:>14}\n\
         {:<10} {:>14} {:>14} {:>16} {:>14}\n\
         {:<10} {:>14} {:>14} {:>16} {:>14}\n\
         firefly: pairs p50 {} µs, p99 {} µs (as `bench sync` reports real nodes; per 20 s window {} µs)\n\
         firefly: {} late steps, timeline {} ppm from the members' median clock, a joiner moved the swarm {} µs (quiet stretch before it {} µs)\n\
         firefly: node {} leaving moved the survivors {} µs (quiet stretch before it {} µs)\n",
        r.scenario,
        r.nodes,
        r.seed,
        r.asymmetry_floor_us,
        "",
        "spread p50 µs",
        "spread p99 µs",
        "join within 1 ms",
        "crash step µs",
        "firefly",
        f(r.spread_p50_us),
        f(r.spread_p99_us),
        f(r.join_converge_ms).to_string() + " ms",
        f(r.crash_step_us),
        "baseline",
        f(r.baseline_spread_p50_us),
        f(r.baseline_spread_p99_us),
        f(r.baseline_join_converge_ms).to_string() + " ms",
        f(r.baseline_crash_step_us),
        f(r.firefly.pair_p50_us),
        f(r.pair_p99_us),
        windows(&r.firefly.pair_p99_per_20s_us),
        r.firefly.late_steps,
        f(r.firefly.timeline_vs_members_ppm),
        f(r.firefly.join_pull_us),
        f(r.firefly.join_quiet_wander_us),
        r.firefly
            .crashed_node
            .map_or_else(|| "-".to_owned(), |n| n.to_string()),
        f(r.crash_step_us),
        f(r.firefly.quiet_wander_us),
    )
}

/// `min–max` of per-window figures, µs.
fn windows(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        "-".to_owned()
    } else {
        format!("{min:.0}–{max:.0}")
    }
}
