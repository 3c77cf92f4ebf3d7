//! A deterministic swarm simulator for [`crate::SwarmClock`].
//!
//! [`run`] plays a [`Scenario`] twice from the same seed: once with real
//! [`crate::SwarmClock`]s (firefly coupling) and once with a Snapcast-like
//! baseline (every node slaved to one reference through the median of its
//! last offsets), and returns one [`Report`] with both rows.
//!
//! Each simulated node has a true local clock `local = offset + t × (1 + drift)`
//! (offsets uniform in ±`offset_range_us`, drifts in ±`drift_ppm`). The
//! engine is shaped like quinn-proto's test `Pair` and str0m's `progress()`:
//! it jumps virtual time to the earliest timer or delivery, feeds the node
//! through the same methods the swarm crate calls (`handle_timeout`,
//! `poll_probe`, `handle_sample`, `add_peer`, `remove_peer`), and drains it.
//! The network (`netem`) is seeded, so any run replays from its seed, and no
//! real clock is read: minutes of swarm time take well under a second.
//!
//! Measured: the *spread* (max − min of the counted nodes' swarm clocks at the
//! same true instant) every `metric_interval_ms`; each node's error from the
//! median; convergence; how long a node joining at `join_at_s` takes to be
//! within 1 ms of the swarm; how far the survivors' timelines step when a node
//! crashes at `crash_at_s` (its peers remove it `membership_timeout_s` later,
//! as heartbeats would).

mod baseline;
mod engine;
mod metrics;
mod netem;

use serde::Serialize;

pub use metrics::{Metrics, SpreadPoint};

/// Everything a simulation run depends on. Start from a preset
/// ([`Scenario::lan`], [`Scenario::wifi`], [`Scenario::scale`]) and change
/// fields. Times are in the unit their name says.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// Name shown in the report.
    pub name: String,
    /// Nodes in total, the joiner included (it is the last one).
    pub nodes: usize,
    /// Seed of every random draw (clocks, network, peer choice).
    pub seed: u64,
    /// Simulated time, s.
    pub duration_s: f64,
    /// True clock offsets are uniform in ± this, µs.
    pub offset_range_us: f64,
    /// True clock drifts are uniform in ± this, ppm.
    pub drift_ppm: f64,
    /// Fixed true clock drifts of the first nodes, ppm, in node order (the
    /// rest draw theirs from `drift_ppm`): the real-process benchmarks give
    /// their nodes fixed test clocks, and a node's distance from the
    /// members' median rate matters under jitter.
    pub drifts_ppm: Vec<f64>,
    /// Each clock's rate also wanders, as a crystal's does with its
    /// temperature: a sine of this amplitude, ppm (0: a constant rate).
    pub drift_wander_ppm: f64,
    /// Period of that wander, s; each node starts at its own phase.
    pub drift_wander_period_s: f64,
    /// One-way base delay, µs.
    pub base_delay_us: f64,
    /// Mean of the exponential one-way jitter, µs (drawn per direction).
    pub jitter_mean_us: f64,
    /// Uniform one-way jitter: each delay also moves by up to ± this, µs (the
    /// fault proxy's model, drawn per direction).
    pub uniform_jitter_us: f64,
    /// Probability that a one-way message gets a delay spike.
    pub spike_prob: f64,
    /// Smallest spike, µs.
    pub spike_min_us: f64,
    /// Largest spike, µs.
    pub spike_max_us: f64,
    /// Probability that a one-way message is lost.
    pub loss: f64,
    /// Extra one-way delay on every link in one direction (lower id → higher), µs.
    pub asymmetry_us: f64,
    /// Each directed link is one ordered stream (a TCP connection, as between
    /// real nodes): messages queue behind slower ones, a lost one arrives
    /// `retransmit_ms` late instead of never, and stalls hold the link.
    pub ordered: bool,
    /// On ordered links: how late a lost message arrives, ms.
    pub retransmit_ms: f64,
    /// Mean time between stalls of each directed link, s (0: none); on
    /// unordered links a stall holds each message that meets it, no queue.
    pub stall_every_s: f64,
    /// How long a stall holds the link, ms.
    pub stall_ms: f64,
    /// On ordered links: TCP segments per time message, each delayed on its
    /// own (a new negotiated stream per request writes several).
    pub segments_per_message: u32,
    /// On ordered links: other messages per second on each directed link
    /// (heartbeats, gossip, flow control); time messages queue behind them.
    pub background_per_s: f64,
    /// Extra delay of every time *request* (asker → answerer), µs: a stack
    /// that opens a stream per request and answers on it. Each side then sees
    /// the other ahead by half of it.
    pub request_extra_us: f64,
    /// Answers carry the answerer's local stamps and swarm mapping
    /// ([`crate::PeerLocal`]), as nodes since issue 13's second session do;
    /// `false` models older nodes (swarm stamps only).
    pub local_stamps: bool,
    /// Peers each node probes (the clock picks them at random).
    pub sync_peers: usize,
    /// Time between probes of one peer, ms (both protocols; firefly's
    /// shortest).
    pub probe_interval_ms: f64,
    /// Firefly's longest time between probes of a peer once its estimate is
    /// good (adaptive probing), ms; equal to `probe_interval_ms` or less
    /// turns adaptive probing off.
    pub max_probe_interval_ms: f64,
    /// When the last node joins, s (`None`: it is there from the start).
    pub join_at_s: Option<f64>,
    /// When a node crashes, s (`None`: no crash).
    pub crash_at_s: Option<f64>,
    /// Which node crashes; `None` picks the worst case of each protocol (the
    /// baseline's reference; for firefly, the node whose clock the swarm
    /// adopted at boot).
    pub crash_node: Option<usize>,
    /// Delay between a crash and its peers removing the node, s.
    pub membership_timeout_s: f64,
    /// Spread percentiles are taken from this time on, s.
    pub warmup_s: f64,
    /// A joiner is left out of the spread for this long after joining, s
    /// (its own convergence is `join_converge_ms`).
    pub join_settle_s: f64,
    /// Interval of the spread measurements, ms.
    pub metric_interval_ms: f64,
    /// Spread p99 the scenario aims for, µs (reported, not enforced).
    pub goal_spread_p99_us: f64,
    /// Offsets the baseline takes the median of.
    pub baseline_window: usize,
}

impl Scenario {
    /// Five nodes on a wired LAN: 0.3 ms base delay, exponential jitter with a
    /// 0.1 ms mean, 0.1% loss. Goal: spread p99 ≤ 20 µs.
    pub fn lan() -> Self {
        Self {
            name: "lan".into(),
            nodes: 5,
            seed: 1,
            duration_s: 240.0,
            offset_range_us: 1_000_000.0,
            drift_ppm: 200.0,
            drifts_ppm: Vec::new(),
            drift_wander_ppm: 0.0,
            drift_wander_period_s: 300.0,
            base_delay_us: 300.0,
            jitter_mean_us: 100.0,
            uniform_jitter_us: 0.0,
            spike_prob: 0.0,
            spike_min_us: 0.0,
            spike_max_us: 0.0,
            loss: 0.001,
            asymmetry_us: 0.0,
            ordered: false,
            retransmit_ms: 200.0,
            stall_every_s: 0.0,
            stall_ms: 0.0,
            segments_per_message: 1,
            background_per_s: 0.0,
            request_extra_us: 0.0,
            local_stamps: true,
            sync_peers: 8,
            probe_interval_ms: 100.0,
            max_probe_interval_ms: 250.0,
            join_at_s: Some(120.0),
            crash_at_s: Some(180.0),
            crash_node: None,
            membership_timeout_s: 3.0,
            warmup_s: 60.0,
            join_settle_s: 10.0,
            metric_interval_ms: 100.0,
            goal_spread_p99_us: 20.0,
            baseline_window: 50,
        }
    }

    /// The LAN scenario over Wi-Fi: 2 ms base, 2 ms mean jitter, 1% spikes of
    /// 20–100 ms, 2% loss. Goal: spread p99 ≤ 100 µs.
    pub fn wifi() -> Self {
        Self {
            name: "wifi".into(),
            base_delay_us: 2_000.0,
            jitter_mean_us: 2_000.0,
            spike_prob: 0.01,
            spike_min_us: 20_000.0,
            spike_max_us: 100_000.0,
            loss: 0.02,
            goal_spread_p99_us: 100.0,
            ..Self::lan()
        }
    }

    /// A hundred nodes over Wi-Fi, each probing 8 random peers.
    /// Goal: spread p99 ≤ 150 µs.
    pub fn scale() -> Self {
        Self {
            name: "scale".into(),
            nodes: 100,
            duration_s: 240.0,
            join_at_s: Some(150.0),
            crash_at_s: Some(200.0),
            // A hundred nodes seeing 8 peers each take longer to settle.
            warmup_s: 90.0,
            goal_spread_p99_us: 150.0,
            ..Self::wifi()
        }
    }

    /// Three nodes whose every link passes through the fault proxy with
    /// 20 ± 10 ms of uniform jitter each way (a busy Wi-Fi), as the e2e test
    /// and `firefly bench sync --jitter-ms 20 --jitter-spread-ms 10` run them:
    /// one ordered connection per pair, so messages queue behind slow ones
    /// and behind the link's other traffic; each time message is one
    /// segment on the peer's long-lived time stream.
    /// Goal: spread p99 ≤ 200 µs, no steps.
    pub fn jitter() -> Self {
        Self {
            name: "jitter".into(),
            nodes: 3,
            duration_s: 150.0,
            base_delay_us: 20_000.0,
            jitter_mean_us: 0.0,
            uniform_jitter_us: 10_000.0,
            // The test clocks `firefly bench sync` and the e2e test give
            // nodes 0, 1 and 2 (`local_swarm::skew`).
            drifts_ppm: vec![200.0, -165.0, 130.0],
            loss: 0.0,
            ordered: true,
            // One segment each way on the peer's long-lived time stream
            // (`/firefly/time/2`), queued with the link's other traffic. A
            // new negotiated stream per request (`/firefly/time/1`) was 4:
            // its real round trips never got near the 20 ms floor.
            segments_per_message: 1,
            background_per_s: 20.0,
            join_at_s: None,
            crash_at_s: None,
            warmup_s: 30.0,
            goal_spread_p99_us: 200.0,
            ..Self::lan()
        }
    }

    /// [`Scenario::jitter`] plus stalls that hold each direction of a link for
    /// 200 ms, on average every 5 s (harsh loss), with what queued behind
    /// arriving in a burst. Goal: spread p99 ≤ 500 µs, no steps.
    pub fn stalls() -> Self {
        Self {
            name: "stalls".into(),
            stall_every_s: 5.0,
            stall_ms: 200.0,
            goal_spread_p99_us: 500.0,
            ..Self::jitter()
        }
    }

    /// The preset called `name` (`lan`, `wifi`, `scale`, `jitter`, `stalls`).
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "lan" => Some(Self::lan()),
            "wifi" => Some(Self::wifi()),
            "scale" => Some(Self::scale()),
            "jitter" => Some(Self::jitter()),
            "stalls" => Some(Self::stalls()),
            _ => None,
        }
    }
}

/// The outcome of [`run`]: firefly and the baseline on the same scenario and seed.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// Nodes (joiner included).
    pub nodes: usize,
    /// Seed of the run.
    pub seed: u64,
    /// Firefly: median spread after warm-up, µs.
    pub spread_p50_us: Option<f64>,
    /// Firefly: 99th percentile spread after warm-up, µs.
    pub spread_p99_us: Option<f64>,
    /// Firefly: 99th percentile of every pair's distance after warm-up, µs
    /// (what `firefly bench sync` reports of real nodes; see
    /// [`Metrics::pair_p99_us`]).
    pub pair_p99_us: Option<f64>,
    /// Firefly: time from start until the spread stays within 1 ms, ms.
    pub converge_ms: Option<f64>,
    /// Firefly: time from join until the joiner stays within 1 ms of the swarm, ms.
    pub join_converge_ms: Option<f64>,
    /// Firefly: largest departure of a survivor's timeline from its pre-crash
    /// trend in the 10 s after a crash, µs.
    pub crash_step_us: Option<f64>,
    /// Baseline: median spread after warm-up, µs.
    pub baseline_spread_p50_us: Option<f64>,
    /// Baseline: 99th percentile spread after warm-up, µs.
    pub baseline_spread_p99_us: Option<f64>,
    /// Baseline: join convergence, ms.
    pub baseline_join_converge_ms: Option<f64>,
    /// Baseline: crash step, µs.
    pub baseline_crash_step_us: Option<f64>,
    /// Baseline spread p99 divided by firefly's.
    pub spread_p99_ratio: Option<f64>,
    /// Configured asymmetry, µs.
    pub asymmetry_us: f64,
    /// Half the asymmetry: the error floor of any two-way method, µs. Read
    /// the spreads against it.
    pub asymmetry_floor_us: f64,
    /// The spread this asymmetry forces on any consensus of two-way
    /// estimates in a full mesh of `nodes`: the lowest node sees every peer
    /// `A/2` early, the highest sees every peer `A/2` late, so they settle
    /// `A·(n − 1)/n` apart. µs.
    pub asymmetry_spread_floor_us: f64,
    /// The spread p99 the scenario aims for, µs.
    pub goal_spread_p99_us: f64,
    /// Full firefly metrics.
    pub firefly: Metrics,
    /// Full baseline metrics.
    pub baseline: Metrics,
    /// The scenario as run.
    pub settings: Scenario,
}

/// Runs `scenario` with firefly coupling and with the baseline, same seed.
pub fn run(scenario: &Scenario) -> Report {
    let firefly = engine::simulate(scenario, engine::Protocol::Firefly);
    let baseline = engine::simulate(scenario, engine::Protocol::Baseline);
    let ratio = match (baseline.spread_p99_us, firefly.spread_p99_us) {
        (Some(b), Some(f)) if f > 0.0 => Some(b / f),
        _ => None,
    };
    Report {
        scenario: scenario.name.clone(),
        nodes: scenario.nodes,
        seed: scenario.seed,
        spread_p50_us: firefly.spread_p50_us,
        spread_p99_us: firefly.spread_p99_us,
        pair_p99_us: firefly.pair_p99_us,
        converge_ms: firefly.converge_ms,
        join_converge_ms: firefly.join_converge_ms,
        crash_step_us: firefly.crash_step_us,
        baseline_spread_p50_us: baseline.spread_p50_us,
        baseline_spread_p99_us: baseline.spread_p99_us,
        baseline_join_converge_ms: baseline.join_converge_ms,
        baseline_crash_step_us: baseline.crash_step_us,
        spread_p99_ratio: ratio,
        asymmetry_us: scenario.asymmetry_us,
        asymmetry_floor_us: scenario.asymmetry_us / 2.0,
        asymmetry_spread_floor_us: if scenario.nodes > 0 {
            scenario.asymmetry_us * (scenario.nodes as f64 - 1.0) / scenario.nodes as f64
        } else {
            0.0
        },
        goal_spread_p99_us: scenario.goal_spread_p99_us,
        firefly,
        baseline,
        settings: scenario.clone(),
    }
}

/// Sends `count` messages one way over one ordered link, one every 10 ms,
/// and returns (sent, arrived) in µs: the network model alone, for tests.
#[cfg(test)]
pub(crate) fn netem_for_tests(
    base: f64,
    spread: f64,
    stall_every_s: f64,
    stall_us: f64,
    loss: f64,
    count: i64,
    ordered: bool,
) -> Vec<(i64, i64)> {
    use rand::SeedableRng;
    let mut net = netem::Network::new(
        netem::Netem {
            base,
            jitter_mean: 0.0,
            uniform_jitter: spread,
            spike_prob: 0.0,
            spike_min: 0.0,
            spike_max: 0.0,
            loss,
            asymmetry: 0.0,
            ordered,
            retransmit: 200_000.0,
            stall_every: stall_every_s * 1e6,
            stall_for: stall_us,
            segments: 1,
            background: 0.0,
        },
        7,
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    (0..count)
        .filter_map(|k| {
            let sent = k * 10_000;
            net.deliver(&mut rng, 1, 0, sent, 0).map(|at| (sent, at))
        })
        .collect()
}

/// Runs only the firefly row (tests and tuning).
pub fn run_firefly(scenario: &Scenario) -> Metrics {
    engine::simulate(scenario, engine::Protocol::Firefly)
}
