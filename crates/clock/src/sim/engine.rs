//! The event loop of the simulator: true time, node clocks, message delivery.
//!
//! Virtual true time `t` (µs) jumps from one queued event to the next: a
//! node's timer, a request or reply arriving, a join, a crash, a membership
//! removal, a measurement. After every input the node is drained exactly as
//! the swarm crate drains a real one (timeout, probes, events, re-arm).

use super::Scenario;
use super::baseline::MedianClock;
use super::metrics::{Metrics, Recorder};
use super::netem::{Netem, Network};
use crate::clock::{PeerView, SwarmClock};
use crate::config::Config;
use crate::estimator::{PeerLocal, Sample};
use crate::time::{LocalMicros, SwarmMicros};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Which clock the nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Firefly,
    Baseline,
}

enum Clock {
    Firefly(Box<SwarmClock<usize>>),
    Baseline(MedianClock),
}

impl Clock {
    fn to_swarm(&self, l: LocalMicros) -> SwarmMicros {
        match self {
            Clock::Firefly(c) => c.to_swarm(l),
            Clock::Baseline(c) => c.to_swarm(l),
        }
    }

    fn is_synced(&self) -> bool {
        match self {
            Clock::Firefly(c) => c.is_synced(),
            Clock::Baseline(c) => c.is_synced(),
        }
    }
}

struct Node {
    /// True local clock: `local = offset + t × (1 + drift) + wander(t)`.
    offset: f64,
    drift: f64,
    /// The rate's wander, `wander_amplitude · sin(ω t + wander_phase)`
    /// (ω = `wander_omega` per µs), integrated into the reading.
    wander_amplitude: f64,
    wander_omega: f64,
    wander_phase: f64,
    present: bool,
    alive: bool,
    clock: Option<Clock>,
    /// Generation of the armed timer; older wake-ups are ignored.
    timer_gen: u64,
}

impl Node {
    fn local(&self, t: i64) -> LocalMicros {
        LocalMicros(self.reading(t as f64).round() as i64)
    }

    fn reading(&self, t: f64) -> f64 {
        self.offset + t * (1.0 + self.drift) + self.wander(t)
    }

    /// What the rate's wander has added to the reading by `t`, µs.
    fn wander(&self, t: f64) -> f64 {
        if self.wander_amplitude == 0.0 {
            return 0.0;
        }
        let w = self.wander_omega;
        self.wander_amplitude / w * (self.wander_phase.cos() - (w * t + self.wander_phase).cos())
    }

    /// How fast the reading advances at `t`, readings per true µs.
    fn rate_at(&self, t: f64) -> f64 {
        1.0 + self.drift + self.wander_amplitude * (self.wander_omega * t + self.wander_phase).sin()
    }

    /// First true instant at which the local clock reads at least `l`.
    fn true_time(&self, l: LocalMicros) -> i64 {
        let target = l.0 as f64;
        let mut t = ((target - self.offset) / (1.0 + self.drift)).ceil();
        if self.wander_amplitude != 0.0 {
            // The wander bends the line by ppm: a few Newton steps land on it.
            for _ in 0..3 {
                t -= (self.reading(t) - target) / self.rate_at(t);
            }
            t = t.ceil();
            while self.reading(t) < target {
                t += 1.0;
            }
        }
        t as i64
    }
}

#[derive(Debug, Clone, Copy)]
enum Ev {
    Wake {
        node: usize,
        generation: u64,
    },
    Request {
        from: usize,
        to: usize,
        t1: LocalMicros,
    },
    Reply {
        to: usize,
        from: usize,
        t1: LocalMicros,
        t2: SwarmMicros,
        t3: SwarmMicros,
        /// What a firefly responder says of itself and the asker.
        view: Option<PeerView>,
        /// Its local stamps and mapping, when the scenario sends them.
        local: Option<PeerLocal>,
    },
    Join {
        node: usize,
    },
    Crash {
        node: usize,
    },
    Forget {
        node: usize,
    },
    Measure,
}

struct Entry {
    t: i64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.t, self.seq) == (other.t, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed: `BinaryHeap` pops the earliest event first, FIFO among equals.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.t, other.seq).cmp(&(self.t, self.seq))
    }
}

struct Sim<'a> {
    sc: &'a Scenario,
    protocol: Protocol,
    nodes: Vec<Node>,
    queue: BinaryHeap<Entry>,
    seq: u64,
    net: Network,
    rng: ChaCha8Rng,
    rec: Recorder,
}

fn secs(s: f64) -> i64 {
    (s * 1e6).round() as i64
}

/// Runs one protocol through the scenario and measures it.
pub(crate) fn simulate(sc: &Scenario, protocol: Protocol) -> Metrics {
    let mut rng = ChaCha8Rng::seed_from_u64(sc.seed);
    let n = sc.nodes.max(1);
    let joiner = sc.join_at_s.filter(|_| n >= 3).map(|_| n - 1);
    let nodes: Vec<Node> = (0..n)
        .map(|i| Node {
            offset: (rng.random::<f64>() * 2.0 - 1.0) * sc.offset_range_us,
            drift: {
                // Drawn either way, so fixed drifts leave every other draw as it was.
                let drawn = (rng.random::<f64>() * 2.0 - 1.0) * sc.drift_ppm;
                sc.drifts_ppm.get(i).copied().unwrap_or(drawn) * 1e-6
            },
            wander_amplitude: sc.drift_wander_ppm * 1e-6,
            wander_omega: std::f64::consts::TAU / (sc.drift_wander_period_s.max(1.0) * 1e6),
            // The golden angle: every node at its own phase, no draw taken.
            wander_phase: i as f64 * 2.399_963,
            present: Some(i) != joiner,
            alive: Some(i) != joiner,
            clock: None,
            timer_gen: 0,
        })
        .collect();
    // The network draws from its own stream so both protocols see the same clocks.
    let net_rng = ChaCha8Rng::seed_from_u64(sc.seed ^ 0x6e65_7465_6d00_0001);
    let crash_node = sc.crash_at_s.and_then(|_| {
        sc.crash_node.filter(|&c| c < n).or_else(|| match protocol {
            Protocol::Baseline => Some(0),
            // The swarm boots onto its latest clock: the most central node.
            Protocol::Firefly => (0..n)
                .filter(|&i| Some(i) != joiner)
                .max_by(|&a, &b| nodes[a].offset.total_cmp(&nodes[b].offset)),
        })
    });
    let end = secs(sc.duration_s);
    let mut sim = Sim {
        sc,
        protocol,
        nodes,
        queue: BinaryHeap::new(),
        seq: 0,
        net: Network::new(
            Netem {
                base: sc.base_delay_us,
                jitter_mean: sc.jitter_mean_us,
                uniform_jitter: sc.uniform_jitter_us,
                spike_prob: sc.spike_prob,
                spike_min: sc.spike_min_us,
                spike_max: sc.spike_max_us,
                loss: sc.loss,
                asymmetry: sc.asymmetry_us,
                ordered: sc.ordered,
                retransmit: sc.retransmit_ms * 1e3,
                stall_every: sc.stall_every_s * 1e6,
                stall_for: sc.stall_ms * 1e3,
                segments: sc.segments_per_message,
                background: sc.background_per_s,
            },
            sc.seed,
        ),
        rng: net_rng,
        rec: Recorder::new(sc, joiner, crash_node),
    };
    let initial: Vec<usize> = (0..n).filter(|&i| sim.nodes[i].present).collect();
    for &i in &initial {
        sim.start_node(i, 0);
    }
    for &i in &initial {
        for &j in &initial {
            if i != j {
                sim.add_peer(i, j, 0);
            }
        }
    }
    for &i in &initial {
        sim.drain(i, 0);
    }
    if let (Some(j), Some(at)) = (joiner, sc.join_at_s) {
        sim.push(secs(at), Ev::Join { node: j });
    }
    if let (Some(c), Some(at)) = (crash_node, sc.crash_at_s) {
        sim.push(secs(at), Ev::Crash { node: c });
        sim.push(secs(at + sc.membership_timeout_s), Ev::Forget { node: c });
    }
    sim.push(0, Ev::Measure);
    while let Some(Entry { t, ev, .. }) = sim.queue.pop() {
        if t > end {
            break;
        }
        sim.handle(t, ev);
    }
    let mut drifts: Vec<f64> = sim.nodes.iter().map(|n| n.drift * 1e6).collect();
    drifts.sort_by(f64::total_cmp);
    let median_drift = drifts.get(drifts.len() / 2).copied();
    let mut metrics = sim.rec.finish();
    metrics.members_median_drift_ppm = median_drift;
    metrics.timeline_vs_members_ppm = metrics
        .timeline_rate_ppm
        .zip(median_drift)
        .map(|(t, m)| t - m);
    for node in &sim.nodes {
        if let Some(Clock::Firefly(c)) = &node.clock {
            let s = c.stats();
            metrics.rejected += s.rejected;
            metrics.steps += s.steps;
            metrics.jumps += s.jumps;
            metrics.shrinks += s.shrinks;
        }
    }
    metrics
}

impl Sim<'_> {
    fn push(&mut self, t: i64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Entry {
            t,
            seq: self.seq,
            ev,
        });
    }

    fn start_node(&mut self, i: usize, t: i64) {
        let now = self.nodes[i].local(t);
        let initial = SwarmMicros(now.0);
        let clock = match self.protocol {
            Protocol::Firefly => {
                let mut cfg = Config::default();
                cfg.seed(self.sc.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64)
                    .max_sync_peers(self.sc.sync_peers)
                    .probe_interval(std::time::Duration::from_micros(
                        (self.sc.probe_interval_ms * 1e3).max(1.0) as u64,
                    ))
                    .max_probe_interval(std::time::Duration::from_micros(
                        (self.sc.max_probe_interval_ms.max(self.sc.probe_interval_ms) * 1e3)
                            .max(1.0) as u64,
                    ));
                Clock::Firefly(Box::new(SwarmClock::new(cfg, now, initial)))
            }
            Protocol::Baseline => Clock::Baseline(MedianClock::new(
                i,
                now,
                initial,
                self.sc.baseline_window,
                (self.sc.probe_interval_ms * 1e3).max(1.0) as i64,
            )),
        };
        let node = &mut self.nodes[i];
        node.clock = Some(clock);
        node.present = true;
        node.alive = true;
    }

    fn add_peer(&mut self, i: usize, peer: usize, t: i64) {
        let now = self.nodes[i].local(t);
        match &mut self.nodes[i].clock {
            Some(Clock::Firefly(c)) => c.add_peer(now, peer),
            Some(Clock::Baseline(c)) => c.add_peer(peer),
            None => {}
        }
    }

    fn remove_peer(&mut self, i: usize, peer: usize, t: i64) {
        let now = self.nodes[i].local(t);
        match &mut self.nodes[i].clock {
            Some(Clock::Firefly(c)) => c.remove_peer(now, &peer),
            Some(Clock::Baseline(c)) => c.remove_peer(peer),
            None => {}
        }
    }

    /// Feeds a node its due timer, sends its probes, re-arms its timer.
    fn drain(&mut self, i: usize, t: i64) {
        if !self.nodes[i].alive {
            return;
        }
        let now = self.nodes[i].local(t);
        let mut probes = Vec::new();
        let timeout = match &mut self.nodes[i].clock {
            Some(Clock::Firefly(c)) => {
                if c.poll_timeout().is_some_and(|at| at <= now) {
                    c.handle_timeout(now);
                }
                while let Some(p) = c.poll_probe(now) {
                    probes.push(p);
                }
                let mut synced = false;
                let mut steps = 0;
                while let Some(e) = c.poll_event() {
                    match e {
                        crate::clock::Event::Synced => synced = true,
                        crate::clock::Event::Stepped { .. } => steps += 1,
                        _ => {}
                    }
                }
                // An acquisition steps as it syncs; any other step is one a
                // playing node would hear.
                if !synced {
                    self.rec.late_steps += steps;
                }
                c.poll_timeout()
            }
            Some(Clock::Baseline(c)) => {
                while let Some(p) = c.poll_probe(now) {
                    probes.push(p);
                }
                c.poll_timeout()
            }
            None => None,
        };
        for p in probes {
            self.rec.exchanges += 1;
            let extra = self.sc.request_extra_us.round() as i64;
            match self.net.deliver(&mut self.rng, i, p, t, extra) {
                Some(at) => self.push(
                    at,
                    Ev::Request {
                        from: i,
                        to: p,
                        t1: now,
                    },
                ),
                None => self.rec.lost += 1,
            }
        }
        if let Some(at) = timeout {
            let node = &mut self.nodes[i];
            node.timer_gen += 1;
            let generation = node.timer_gen;
            let wake = node.true_time(at).max(t + 1);
            self.push(
                wake,
                Ev::Wake {
                    node: i,
                    generation,
                },
            );
        }
    }

    fn handle(&mut self, t: i64, ev: Ev) {
        match ev {
            Ev::Wake { node, generation } => {
                if self.nodes[node].timer_gen == generation {
                    self.drain(node, t);
                }
            }
            Ev::Request { from, to, t1 } => {
                let Some(clock) = self.nodes[to]
                    .clock
                    .as_ref()
                    .filter(|_| self.nodes[to].alive)
                else {
                    return;
                };
                let turnaround = 20 + self.rng.random_range(0..40);
                let (l2, l3) = (
                    self.nodes[to].local(t),
                    self.nodes[to].local(t + turnaround),
                );
                let t2 = clock.to_swarm(l2);
                let t3 = clock.to_swarm(l3);
                let (view, local) = match clock {
                    Clock::Firefly(c) => (
                        Some(c.view_for(&from)),
                        self.sc.local_stamps.then(|| PeerLocal {
                            t2: l2,
                            t3: l3,
                            rate_ppb: (c.skew_ppm() * 1e3).round() as i64,
                        }),
                    ),
                    Clock::Baseline(_) => (None, None),
                };
                match self.net.deliver(&mut self.rng, to, from, t + turnaround, 0) {
                    Some(at) => self.push(
                        at,
                        Ev::Reply {
                            to: from,
                            from: to,
                            t1,
                            t2,
                            t3,
                            view,
                            local,
                        },
                    ),
                    None => self.rec.lost += 1,
                }
            }
            Ev::Reply {
                to,
                from,
                t1,
                t2,
                t3,
                view,
                local,
            } => {
                if !self.nodes[to].alive {
                    return;
                }
                let t4 = self.nodes[to].local(t);
                let sample = Sample { t1, t2, t3, t4 };
                match &mut self.nodes[to].clock {
                    Some(Clock::Firefly(c)) => {
                        // Refusals are counted by the clock itself.
                        let _ = c.handle_exchange(t4, &from, sample, local);
                        if let Some(view) = view {
                            let _ = c.handle_peer_view(t4, &from, view);
                        }
                    }
                    Some(Clock::Baseline(c)) => c.handle_sample(from, sample),
                    None => {}
                }
                self.drain(to, t);
            }
            Ev::Join { node } => {
                self.start_node(node, t);
                let others: Vec<usize> = (0..self.nodes.len())
                    .filter(|&j| j != node && self.nodes[j].alive)
                    .collect();
                for &j in &others {
                    self.add_peer(node, j, t);
                    self.add_peer(j, node, t);
                }
                self.drain(node, t);
                for j in others {
                    self.drain(j, t);
                }
            }
            Ev::Crash { node } => {
                self.nodes[node].alive = false;
            }
            Ev::Forget { node } => {
                for j in 0..self.nodes.len() {
                    if j != node && self.nodes[j].alive {
                        self.remove_peer(j, node, t);
                        self.drain(j, t);
                    }
                }
            }
            Ev::Measure => {
                let readings: Vec<(bool, Option<f64>)> = self
                    .nodes
                    .iter()
                    .map(|n| match &n.clock {
                        Some(c) if n.alive && c.is_synced() => {
                            (true, Some(c.to_swarm(n.local(t)).0 as f64 - t as f64))
                        }
                        _ => (n.alive, None),
                    })
                    .collect();
                self.rec.record(t, readings);
                let dt = (self.sc.metric_interval_ms * 1e3).max(1.0) as i64;
                self.push(t + dt, Ev::Measure);
            }
        }
    }
}
