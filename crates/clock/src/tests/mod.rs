//! Sans-IO test harness: whole swarms in the simulator, asserting behaviour.
//!
//! The scenarios are the benchmark's, shortened so a debug build runs them
//! in seconds; the bounds carry a margin over the benchmark goals (the tight
//! figures are in `BENCHMARKS.md`). A property test feeds random and hostile
//! sample streams to a [`SwarmClock`] and checks it never panics, never
//! produces a non-finite value and never runs backward while synced.

#![allow(clippy::unwrap_used)]

use crate::sim::{self, Scenario};
use crate::{
    Config, Event, LocalMicros, PeerLocal, PeerView, Sample, SampleError, SwarmClock, SwarmMicros,
};
use proptest::prelude::*;

/// A benchmark scenario cut to 70 s: boot, a join at 25 s, a crash at 50 s.
fn short(mut s: Scenario) -> Scenario {
    s.duration_s = 70.0;
    s.warmup_s = 20.0;
    s.join_at_s = Some(25.0);
    s.crash_at_s = Some(50.0);
    s.join_settle_s = 8.0;
    s
}

#[test]
fn lan_swarm_converges_admits_a_joiner_and_survives_a_crash() {
    let report = sim::run(&short(Scenario::lan()));
    let f = &report.firefly;
    let p99 = f.spread_p99_us.unwrap();
    assert!(p99 <= 60.0, "LAN spread p99 {p99} µs");
    assert_eq!(f.unsynced_after_warmup, 0);
    let join = f.join_converge_ms.unwrap();
    assert!(join <= 2_000.0, "joiner took {join} ms");
    let crash = f.crash_step_us.unwrap();
    assert!(crash <= 10.0, "crash stepped the survivors by {crash} µs");
    let pull = f.join_pull_us.unwrap();
    assert!(pull <= 10.0, "the joiner pulled the swarm by {pull} µs");
    // Same run, same seed: the baseline is far worse.
    assert!(report.baseline_spread_p99_us.unwrap() > 5.0 * p99);
}

#[test]
fn wifi_swarm_meets_its_bounds_with_margin() {
    let report = sim::run(&short(Scenario::wifi()));
    let f = &report.firefly;
    let p99 = f.spread_p99_us.unwrap();
    assert!(p99 <= 250.0, "Wi-Fi spread p99 {p99} µs");
    let join = f.join_converge_ms.unwrap();
    assert!(join <= 2_000.0, "joiner took {join} ms");
    let crash = f.crash_step_us.unwrap();
    assert!(crash <= 30.0, "crash stepped the survivors by {crash} µs");
    assert!(f.converge_ms.unwrap() <= 5_000.0, "{:?}", f.converge_ms);
}

#[test]
fn a_larger_swarm_probing_few_peers_converges() {
    let mut s = short(Scenario::scale());
    s.nodes = 24;
    s.sync_peers = 4;
    // A sparse swarm settles more slowly than a full mesh.
    s.duration_s = 90.0;
    s.warmup_s = 45.0;
    s.join_at_s = Some(50.0);
    s.crash_at_s = Some(75.0);
    let f = sim::run_firefly(&s);
    let p99 = f.spread_p99_us.unwrap();
    // 450 (was 400): the estimator now needs twice the tolerance before it
    // halves a window (heavy jitter made it shrink on every new minimum),
    // which costs this sparse Wi-Fi swarm ~10% (393 → 408 µs at seed 1).
    assert!(
        p99 <= 450.0,
        "spread p99 {p99} µs with 24 nodes, 4 peers each"
    );
    assert!(f.join_converge_ms.unwrap() <= 2_000.0);
}

#[test]
fn the_simulation_replays_from_its_seed() {
    let mut s = short(Scenario::wifi());
    s.duration_s = 20.0;
    s.join_at_s = None;
    s.crash_at_s = None;
    s.warmup_s = 10.0;
    let a = serde_json::to_string(&sim::run(&s)).unwrap();
    let b = serde_json::to_string(&sim::run(&s)).unwrap();
    assert_eq!(a, b);
    s.seed += 1;
    let c = serde_json::to_string(&sim::run(&s)).unwrap();
    assert_ne!(a, c);
}

#[test]
fn asymmetry_floor_is_reported_and_bounds_the_result() {
    let mut s = short(Scenario::lan());
    s.asymmetry_us = 400.0;
    s.join_at_s = None;
    s.crash_at_s = None;
    let r = sim::run(&s);
    assert_eq!(r.asymmetry_floor_us, 200.0);
    assert_eq!(r.asymmetry_spread_floor_us, 320.0);
    // Invisible to two-way exchanges: the swarm settles where the biased
    // estimates agree, A·(n − 1)/n apart end to end, not at zero spread and
    // not beyond.
    let p50 = r.spread_p50_us.unwrap();
    assert!(
        p50 > 250.0 && p50 < 400.0,
        "spread p50 {p50} µs, floor 320 µs"
    );
}

#[test]
fn a_bias_both_directions_share_is_cancelled_by_the_peers_views() {
    // Every time request takes 400 µs longer than its answer (a stream opened
    // per request), so each node sees every other 200 µs ahead. Without the
    // views exchanged in the answers the whole swarm would chase itself
    // forward, its timeline running away from every member's clock (835 ppm
    // from true time when the engine drops the views).
    let mut s = short(Scenario::lan());
    s.request_extra_us = 400.0;
    s.join_at_s = None;
    s.crash_at_s = None;
    let r = sim::run(&s);
    let rate = r.firefly.timeline_rate_ppm.unwrap();
    assert!(
        rate.abs() < s.drift_ppm,
        "the timeline runs {rate:.0} ppm from true time"
    );
    let p99 = r.spread_p99_us.unwrap();
    // Measured 50 µs (the unbiased LAN gives 5): what is left is the noise
    // of estimating the bias from two views a tick apart.
    assert!(p99 < 100.0, "spread p99 {p99} µs");
}

// ----- the clock against hostile input -----

fn synced_clock(peers: u32) -> SwarmClock<u32> {
    let mut cfg = Config::default();
    cfg.solo_after(std::time::Duration::ZERO);
    let mut c = SwarmClock::new(cfg, LocalMicros(1_000_000), SwarmMicros(5_000_000));
    c.handle_timeout(LocalMicros(1_300_000));
    assert!(c.is_synced());
    assert_eq!(c.poll_event(), Some(Event::Synced));
    for p in 0..peers {
        c.add_peer(LocalMicros(1_300_000), p);
    }
    c
}

#[test]
fn bad_samples_are_refused_and_counted() {
    let mut c = synced_clock(1);
    let now = LocalMicros(2_000_000);
    let good = Sample {
        t1: LocalMicros(1_999_000),
        t2: SwarmMicros(5_999_500),
        t3: SwarmMicros(5_999_520),
        t4: LocalMicros(1_999_800),
    };
    let reversed = Sample {
        t4: LocalMicros(1_998_000),
        ..good
    };
    let turnaround = Sample {
        t3: SwarmMicros(5_999_000),
        ..good
    };
    let future = Sample {
        t4: LocalMicros(2_500_000),
        ..good
    };
    let negative = Sample {
        t2: SwarmMicros(5_000_000),
        ..good
    };
    let slow = Sample {
        t1: LocalMicros(0),
        ..good
    };
    let far = Sample {
        t2: SwarmMicros(i64::MAX - 10),
        t3: SwarmMicros(i64::MAX),
        ..good
    };
    // Older than the 120 s window.
    let stale = Sample {
        t1: LocalMicros(-200_000_000),
        t2: SwarmMicros(-196_000_000),
        t3: SwarmMicros(-196_000_000),
        t4: LocalMicros(-199_999_000),
    };
    assert_eq!(
        c.handle_sample(now, &0, reversed),
        Err(SampleError::Reversed)
    );
    assert_eq!(
        c.handle_sample(now, &0, turnaround),
        Err(SampleError::NegativeTurnaround)
    );
    assert_eq!(
        c.handle_sample(now, &0, future),
        Err(SampleError::FromTheFuture)
    );
    assert!(matches!(
        c.handle_sample(now, &0, negative),
        Err(SampleError::NegativeDelay { .. })
    ));
    assert!(matches!(
        c.handle_sample(now, &0, slow),
        Err(SampleError::DelayTooLarge { .. })
    ));
    assert!(matches!(
        c.handle_sample(now, &0, far),
        Err(SampleError::OffsetTooLarge { .. })
    ));
    assert_eq!(c.handle_sample(now, &0, stale), Err(SampleError::Stale));
    assert_eq!(
        c.handle_sample(now, &9, good),
        Err(SampleError::UnknownPeer)
    );
    assert_eq!(c.handle_sample(now, &0, good), Ok(()));
    assert_eq!(c.handle_sample(now, &0, good), Err(SampleError::Duplicate));
    assert_eq!(c.stats().rejected, 9);
    assert_eq!(c.stats().accepted, 1);
}

#[test]
fn removing_a_peer_drops_it_and_probes_another() {
    let mut cfg = Config::default();
    cfg.max_sync_peers(2);
    let mut c: SwarmClock<u32> = SwarmClock::new(cfg, LocalMicros(0), SwarmMicros(0));
    for p in 0..5 {
        c.add_peer(LocalMicros(0), p);
    }
    let probed: Vec<u32> = c
        .peers()
        .filter(|(_, i)| i.probed)
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(probed.len(), 2);
    c.remove_peer(LocalMicros(10), &probed[0]);
    assert!(c.peer(&probed[0]).is_none());
    assert_eq!(c.peers().filter(|(_, i)| i.probed).count(), 2);
    // Every probed peer is asked within one probe interval.
    let mut asked = std::collections::BTreeSet::new();
    let mut t = 10;
    while t < 200_000 {
        while let Some(p) = c.poll_probe(LocalMicros(t)) {
            asked.insert(p);
        }
        t = c.poll_timeout().unwrap().0.max(t + 1);
    }
    assert_eq!(asked.len(), 2);
}

#[test]
fn mapping_round_trips_and_is_monotonic() {
    let c = synced_clock(0);
    let mut last = c.to_swarm(LocalMicros(0));
    for l in (0..10_000_000).step_by(333_333) {
        let s = c.to_swarm(LocalMicros(l));
        assert!(s >= last);
        last = s;
        assert!((c.to_local(s).0 - l).abs() <= 1);
    }
}

/// One step of a hostile stream: a sample (honest, shifted, garbage,
/// duplicate or reversed) from a peer, then time moves on.
#[derive(Debug, Clone)]
struct Op {
    peer: u32,
    kind: u8,
    a: i64,
    b: i64,
    jitter: u32,
    advance: u32,
}

fn op() -> impl Strategy<Value = Op> {
    (
        0u32..3,
        0u8..7,
        any::<i64>(),
        any::<i64>(),
        0u32..200_000,
        1u32..300_000,
    )
        .prop_map(|(peer, kind, a, b, jitter, advance)| Op {
            peer,
            kind,
            a,
            b,
            jitter,
            advance,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn hostile_sample_streams_never_break_the_clock(ops in prop::collection::vec(op(), 1..300)) {
        let mut c = synced_clock(3);
        let mut now: i64 = 2_000_000;
        let mut shift = [0i64, 250_000, -3_000];
        let mut last: Option<Sample> = None;
        let mut reading = c.to_swarm(LocalMicros(now));
        for op in ops {
            now += i64::from(op.advance);
            let i = op.peer as usize;
            let fwd = 300 + i64::from(op.jitter) / 3;
            let t1 = now - fwd - 700;
            let peer_swarm = |l: i64, s: i64| SwarmMicros(l.saturating_add(4_000_000).saturating_add(s));
            let sample = match op.kind {
                0 | 1 => Sample { t1: LocalMicros(t1), t2: peer_swarm(t1 + fwd, shift[i]), t3: peer_swarm(t1 + fwd + 20, shift[i]), t4: LocalMicros(now) },
                2 => {
                    // The peer's clock jumps.
                    shift[i] = shift[i].wrapping_add(op.a % 2_000_000_000);
                    Sample { t1: LocalMicros(t1), t2: peer_swarm(t1 + fwd, shift[i]), t3: peer_swarm(t1 + fwd + 20, shift[i]), t4: LocalMicros(now) }
                }
                3 => Sample { t1: LocalMicros(op.a), t2: SwarmMicros(op.b), t3: SwarmMicros(op.b.wrapping_add(op.a % 1000)), t4: LocalMicros(op.a.wrapping_add(i64::from(op.jitter))) },
                4 => last.unwrap_or(Sample { t1: LocalMicros(t1), t2: SwarmMicros(op.a), t3: SwarmMicros(op.b), t4: LocalMicros(now) }),
                5 => Sample { t1: LocalMicros(now), t2: peer_swarm(t1, 0), t3: peer_swarm(t1, 0), t4: LocalMicros(t1) },
                _ => Sample { t1: LocalMicros(i64::MAX - 5), t2: SwarmMicros(i64::MIN), t3: SwarmMicros(i64::MAX), t4: LocalMicros(i64::MAX) },
            };
            last = Some(sample);
            let _ = c.handle_sample(LocalMicros(now), &op.peer, sample);
            c.handle_timeout(LocalMicros(now));
            while c.poll_probe(LocalMicros(now)).is_some() {}
            let mut stepped = false;
            while let Some(e) = c.poll_event() {
                if let Event::Stepped { by_micros } = e {
                    // Back only to a timeline more peers hold than agree
                    // with this node (the documented rule: here at least
                    // two, one of them replaying the other's answers),
                    // never to one peer whose clock jumped.
                    let holders = c
                        .peers()
                        .filter(|(_, info)| {
                            info.offset_micros
                                .is_some_and(|o| (o - by_micros as f64).abs() <= 100_000.0)
                        })
                        .count();
                    prop_assert!(
                        by_micros > 0 || holders >= 2,
                        "a synced clock stepped backward by {by_micros}, to a timeline {holders} peer(s) hold"
                    );
                    stepped = true;
                }
            }
            let r = c.to_swarm(LocalMicros(now));
            prop_assert!(r >= reading || stepped, "swarm time ran backward: {reading:?} -> {r:?}");
            reading = r;
            prop_assert!(c.skew_ppm().is_finite() && c.skew_ppm().abs() <= 1_000.0 + 1e-6);
            prop_assert!(c.sync_error_micros().is_none_or(f64::is_finite));
            for (_, info) in c.peers() {
                for v in [info.offset_micros, info.delay_micros, info.uncertainty_micros, info.rate_ppm].into_iter().flatten() {
                    prop_assert!(v.is_finite());
                }
            }
            prop_assert!(c.poll_timeout().is_some());
        }
    }

    #[test]
    fn slew_controller_is_bounded_on_any_input(errors in prop::collection::vec(prop_oneof![any::<f64>(), -60_000.0..60_000.0f64], 1..200)) {
        let mut c = crate::SlewController::new(crate::SlewConfig::default());
        for (k, e) in errors.into_iter().enumerate() {
            match c.update(LocalMicros(k as i64 * 100_000), e) {
                crate::Correction::Rate(r) => prop_assert!(r.is_finite() && (r - 1.0).abs() <= 500e-6 + 1e-12),
                crate::Correction::Realign { .. } => prop_assert!(e.abs() > 50_000.0),
            }
        }
    }
}

// ----- two clocks on a perfect wire, driven the way the swarm crate drives them -----

/// A request (`answer` empty) or reply on the wire of a [`Pair`].
struct Message {
    arrival: i64,
    to: usize,
    from: usize,
    t1: LocalMicros,
    answer: Option<(SwarmMicros, SwarmMicros)>,
}

/// Two nodes with true local clocks `offset + t·(1 + drift)` and a fixed
/// one-way delay, stepped through true time in 1 ms increments; each node
/// is drained in the documented order after every step.
struct Pair {
    clocks: [SwarmClock<u32>; 2],
    offset: [i64; 2],
    drift: [f64; 2],
    /// Requests and replies in flight.
    wire: Vec<Message>,
    events: [Vec<Event<u32>>; 2],
    t: i64,
}

const DELAY: i64 = 1_000;

impl Pair {
    fn new(offset: [i64; 2], drift: [f64; 2], solo: bool) -> Self {
        let clocks = [0, 1].map(|i| {
            let mut cfg = Config::default();
            cfg.seed(i as u64);
            if solo {
                cfg.solo_after(std::time::Duration::ZERO);
            }
            let now = LocalMicros(offset[i]);
            SwarmClock::new(cfg, now, SwarmMicros(now.0))
        });
        Self {
            clocks,
            offset,
            drift,
            wire: Vec::new(),
            events: [Vec::new(), Vec::new()],
            t: 0,
        }
    }

    fn local(&self, i: usize, t: i64) -> LocalMicros {
        LocalMicros(self.offset[i] + (t as f64 * (1.0 + self.drift[i])).round() as i64)
    }

    fn connect(&mut self) {
        for i in 0..2 {
            let now = self.local(i, self.t);
            self.clocks[i].add_peer(now, 1 - i as u32);
        }
    }

    /// Swarm reading of node `i` minus node `j`'s at the current true time.
    fn gap(&self, i: usize, j: usize) -> i64 {
        self.clocks[i].to_swarm(self.local(i, self.t))
            - self.clocks[j].to_swarm(self.local(j, self.t))
    }

    fn run(&mut self, micros: i64) {
        let end = self.t + micros;
        while self.t < end {
            self.t += 1_000;
            let t = self.t;
            let (due, later): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|m| m.arrival <= t);
            self.wire = later;
            for Message {
                to,
                from,
                t1,
                answer,
                ..
            } in due
            {
                let now = self.local(to, t);
                match answer {
                    None => {
                        let t2 = self.clocks[to].to_swarm(now);
                        self.wire.push(Message {
                            arrival: t + DELAY,
                            to: from,
                            from: to,
                            t1,
                            answer: Some((t2, t2 + 20)),
                        });
                    }
                    Some((t2, t3)) => {
                        let sample = Sample {
                            t1,
                            t2,
                            t3,
                            t4: now,
                        };
                        self.clocks[to]
                            .handle_sample(now, &(from as u32), sample)
                            .unwrap();
                    }
                }
            }
            for i in 0..2 {
                let now = self.local(i, t);
                let c = &mut self.clocks[i];
                if c.poll_timeout().is_some_and(|at| at <= now) {
                    c.handle_timeout(now);
                }
                while let Some(p) = c.poll_probe(now) {
                    self.wire.push(Message {
                        arrival: t + DELAY,
                        to: p as usize,
                        from: i,
                        t1: now,
                        answer: None,
                    });
                }
                while let Some(e) = c.poll_event() {
                    self.events[i].push(e);
                }
            }
        }
    }
}

#[test]
fn two_clocks_meet_without_a_master() {
    let mut pair = Pair::new([0, 700_000], [150e-6, -120e-6], false);
    pair.connect();
    pair.run(30_000_000);
    assert!(pair.clocks.iter().all(SwarmClock::is_synced));
    let gap = pair.gap(0, 1);
    assert!(gap.abs() <= 5, "still {gap} µs apart");
    // The UI getters are filled in.
    let info = pair.clocks[0].peer(&1).unwrap();
    assert!(info.coupled && info.probed);
    assert!(info.offset_micros.unwrap().abs() < 5.0);
    assert!(
        (info.delay_micros.unwrap() - 1_980.0).abs() < 5.0,
        "{:?}",
        info.delay_micros
    );
    assert!(info.rate_ppm.unwrap().abs() < 1.0, "{:?}", info.rate_ppm);
    assert!(pair.clocks[0].sync_error_micros().unwrap() < 5.0);
    // Each clock compensates its own drift: the rates differ by 270 ppm.
    let skews = [pair.clocks[0].skew_ppm(), pair.clocks[1].skew_ppm()];
    assert!(((skews[1] - skews[0]) - 270.0).abs() < 2.0, "{skews:?}");
    // At boot the later clock wins, so nobody stepped backward.
    for events in &pair.events {
        for e in events {
            if let Event::Stepped { by_micros } = e {
                assert!(*by_micros > 0, "stepped backward by {by_micros}");
            }
        }
    }
}

#[test]
fn healed_partition_adopts_the_later_timeline_and_never_steps_back() {
    // Both nodes ran alone (solo-synced) before they met: two timelines.
    let mut pair = Pair::new([0, 250_000], [0.0, 0.0], true);
    pair.run(1_000_000);
    assert!(pair.clocks.iter().all(SwarmClock::is_synced));
    pair.connect();
    pair.run(10_000_000);
    let gap = pair.gap(0, 1);
    assert!(gap.abs() <= 50, "still {gap} µs apart");
    let steps = |i: usize| -> Vec<i64> {
        pair.events[i]
            .iter()
            .filter_map(|e| match e {
                Event::Stepped { by_micros } => Some(*by_micros),
                _ => None,
            })
            .collect()
    };
    // Node 0 was 250 ms behind: it stepped forward once; node 1 never moved.
    assert_eq!(steps(1), Vec::<i64>::new());
    let s0 = steps(0);
    assert_eq!(s0.len(), 1);
    assert!((s0[0] - 250_000).abs() < 100, "{s0:?}");
}

#[test]
fn bad_peer_views_are_refused_and_counted() {
    let mut c = synced_clock(1);
    let now = LocalMicros(2_000_000);
    let view = |offset_micros, skew| PeerView {
        offset_micros,
        skew,
        unsynced: false,
        rate: None,
        synced_for_micros: None,
    };
    for bad in [
        view(Some(f64::NAN), 0.0),
        view(Some(f64::INFINITY), 0.0),
        view(Some(1e15), 0.0),
        view(None, f64::NAN),
        view(None, 0.5),
        PeerView {
            rate: Some(f64::NAN),
            ..view(None, 0.0)
        },
        PeerView {
            rate: Some(0.5),
            ..view(None, 0.0)
        },
    ] {
        assert!(
            c.handle_peer_view(now, &0, bad).is_err(),
            "{bad:?} accepted"
        );
    }
    assert_eq!(
        c.handle_peer_view(now, &7, view(None, 0.0)),
        Err(SampleError::UnknownPeer)
    );
    assert_eq!(c.stats().rejected, 8);
    assert_eq!(
        c.handle_peer_view(now, &0, view(Some(120.0), 50e-6)),
        Ok(())
    );
    // A negative age is taken as long synced, never refused.
    let aged = PeerView {
        rate: Some(3e-6),
        synced_for_micros: Some(-5),
        ..view(Some(120.0), 50e-6)
    };
    assert_eq!(c.handle_peer_view(now, &0, aged), Ok(()));
}

/// Five nodes and no joiner or crash: the timeline ends at the members'
/// median clock (main: +62 / −59 / +23 ppm on `lan` with its joiner).
#[test]
fn a_lan_and_a_wifi_swarm_run_at_their_members_median_rate() {
    for preset in [Scenario::lan(), Scenario::wifi()] {
        let mut s = preset;
        s.join_at_s = None;
        s.crash_at_s = None;
        let f = sim::run_firefly(&s);
        let off = f.timeline_vs_members_ppm.unwrap();
        assert!(
            off.abs() <= 5.0,
            "{}: the timeline runs {off} ppm from the members' median",
            s.name
        );
    }
}

/// Regression: a swarm booting through 20 ± 10 ms of jitter ran its
/// timeline 54 / 313 / 749 ppm from the members' median clock (seeds 1–3):
/// it adopts one node's crystal at boot, every node's rate filter took the
/// same early errors, and the anchor bent at most 0.05 ppm/s.
#[test]
fn a_jittery_boot_runs_the_timeline_at_the_members_median_rate() {
    for seed in 1..=3 {
        let mut s = Scenario::jitter();
        s.seed = seed;
        let f = sim::run_firefly(&s);
        let off = f.timeline_vs_members_ppm.unwrap();
        assert!(
            off.abs() <= 30.0,
            "seed {seed}: the timeline runs {off} ppm from the members' median"
        );
        assert_eq!(f.late_steps, 0, "seed {seed}: a synced node stepped");
    }
}

/// Regression: `firefly bench clock --scenario lan --probe-interval-ms 250`
/// seed 1 had the swarm step 286 ms forward onto a joiner that was still
/// acquiring (its young window put it "ahead" for the adoption rule).
#[test]
fn a_late_joiner_never_pulls_the_swarm_at_any_probe_interval() {
    for seed in 1..=5 {
        for ms in [100.0, 200.0, 250.0, 300.0, 400.0, 500.0] {
            let mut s = short(Scenario::lan());
            s.seed = seed;
            s.probe_interval_ms = ms;
            s.crash_at_s = None;
            let f = sim::run_firefly(&s);
            let pull = f.join_pull_us.unwrap();
            assert!(
                pull <= 15.0,
                "seed {seed}, {ms} ms: the joiner pulled the swarm {pull} µs"
            );
            assert_eq!(
                f.late_steps, 0,
                "seed {seed}, {ms} ms: a synced node stepped"
            );
            let join = f.join_converge_ms.unwrap();
            assert!(
                join <= 3_000.0 + 4.0 * ms,
                "seed {seed}, {ms} ms: joiner took {join} ms"
            );
        }
    }
}

/// The fault proxy's 20 ± 10 ms of jitter each way on ordered links: no
/// synced node ever steps, and the spread stays within what the players
/// slew (the model predicts the real nodes within 2×; the
/// issue's 200 µs goal is not met yet, see BENCHMARKS.md).
#[test]
fn jittery_and_stalling_links_never_step_a_synced_clock() {
    for mut s in [Scenario::jitter(), Scenario::stalls()] {
        s.duration_s = 90.0;
        for seed in 1..=3 {
            s.seed = seed;
            let f = sim::run_firefly(&s);
            assert_eq!(
                f.late_steps, 0,
                "{} seed {seed}: a synced node stepped",
                s.name
            );
            assert_eq!(f.unsynced_after_warmup, 0, "{} seed {seed}", s.name);
            let p99 = f.spread_p99_us.unwrap();
            assert!(
                p99 <= 10_000.0,
                "{} seed {seed}: spread p99 {p99} µs",
                s.name
            );
        }
    }
}

/// The ordered network model keeps each link's order, holds messages in a
/// stall and releases them together, and turns loss into lateness.
#[test]
fn ordered_links_queue_behind_stalls_and_never_reorder() {
    use crate::sim::netem_for_tests as netem;
    let arrivals = netem(20_000.0, 10_000.0, 2.0, 200_000.0, 0.05, 2_000, true);
    assert!(arrivals.windows(2).all(|w| w[0].1 <= w[1].1), "reordered");
    // Sent every 10 ms: a 200 ms stall holds ~20 messages that then arrive at once.
    let mut bursts = 0;
    for w in arrivals.windows(10) {
        if w[9].1 == w[0].1 {
            bursts += 1;
        }
    }
    assert!(bursts > 0, "no burst after a stall");
    let late = arrivals
        .iter()
        .filter(|(sent, at)| at - sent >= 200_000)
        .count();
    assert!(
        late > 20,
        "stalls and retransmissions delay some messages: {late}"
    );
    let min = arrivals.iter().map(|(sent, at)| at - sent).min().unwrap();
    assert!(min >= 10_000, "no message beats the least delay: {min}");
}

/// Unordered links (time datagrams): each message is delayed on its own, so
/// they reorder; a lost one never arrives; a stall holds the messages that
/// meet it until it clears, and nothing queues behind them.
#[test]
fn datagram_links_reorder_drop_and_hold_only_what_meets_a_stall() {
    use crate::sim::netem_for_tests as netem;
    let arrivals = netem(20_000.0, 10_000.0, 2.0, 200_000.0, 0.05, 2_000, false);
    assert!(
        arrivals.windows(2).any(|w| w[0].1 > w[1].1),
        "never reordered"
    );
    let lost = 2_000 - arrivals.len();
    assert!((40..=170).contains(&lost), "5 % lost: {lost}");
    let held = arrivals
        .iter()
        .filter(|(sent, at)| at - sent > 30_000)
        .count();
    assert!(held > 0, "no message met a stall");
    // A stall's end releases the messages it held at once; the next ones
    // sent after it are not queued behind them.
    let max = arrivals.iter().map(|(sent, at)| at - sent).max().unwrap();
    assert!(max <= 230_000, "held beyond a stall: {max} µs");
    let min = arrivals.iter().map(|(sent, at)| at - sent).min().unwrap();
    assert!(min >= 10_000, "no message beats the least delay: {min}");
    // On datagram links the jitter preset never steps a synced clock either.
    let mut s = Scenario::jitter();
    s.ordered = false;
    s.duration_s = 90.0;
    let f = sim::run_firefly(&s);
    assert_eq!(f.late_steps, 0);
    assert!(f.spread_p99_us.unwrap() <= 10_000.0);
}

/// Drives `c` from local time `from` to `until` against peers whose swarm
/// clocks read `peer_time(peer, t)` at local time `t`, 300 µs away each way;
/// returns its steps.
fn drive(
    c: &mut SwarmClock<u32>,
    from: i64,
    until: i64,
    peer_time: impl Fn(u32, i64) -> i64,
) -> Vec<i64> {
    let mut steps = Vec::new();
    let mut t = from;
    while t < until {
        c.handle_timeout(LocalMicros(t));
        while let Some(p) = c.poll_probe(LocalMicros(t)) {
            let peer = peer_time(p, t + 300);
            let s = Sample {
                t1: LocalMicros(t),
                t2: SwarmMicros(peer),
                t3: SwarmMicros(peer + 20),
                t4: LocalMicros(t + 620),
            };
            let _ = c.handle_sample(LocalMicros(t + 620), &p, s);
        }
        while let Some(e) = c.poll_event() {
            if let Event::Stepped { by_micros } = e {
                steps.push(by_micros);
            }
        }
        t += 10_000;
    }
    steps
}

#[test]
fn a_peer_whose_clock_jumps_by_an_hour_never_moves_the_timeline() {
    // `synced_clock` reads local + 4 s; both peers agree with it.
    let swarm = |t: i64| t + 4_000_000;
    let hour = 3_600_000_000;
    let mut c = synced_clock(2);
    // From 20 s on peer 1 reads an hour ahead.
    let steps = drive(&mut c, 1_400_000, 60_000_000, |p, t| {
        swarm(t) + if p == 1 && t > 20_000_000 { hour } else { 0 }
    });
    assert!(steps.is_empty(), "followed the jumped peer: {steps:?}");
    assert!(c.stats().jumps >= 1, "the jump was not seen");
    assert!((c.to_swarm(LocalMicros(60_000_000)).0 - swarm(60_000_000)).abs() < 1_000);
    // The node that jumped (here: both others read an hour behind it from
    // 5 s on) goes back to them, once.
    let mut c = synced_clock(2);
    let steps = drive(&mut c, 1_400_000, 20_000_000, |_, t| {
        swarm(t) - if t > 5_000_000 { hour } else { 0 }
    });
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert!((steps[0] + hour).abs() < 1_000, "{steps:?}");
}

/// Regression (issue 13): a window of the peers' *swarm* stamps fitted a
/// line to clocks that every correction bends, and the estimates wandered
/// by hundreds of µs under 20 ± 10 ms jitter. With the peers' local stamps
/// ([`PeerLocal`]) the windows fit crystals, and the spread drops.
#[test]
fn local_stamps_beat_swarm_stamps_under_jitter() {
    let mut s = Scenario::jitter();
    s.duration_s = 100.0;
    let local = sim::run_firefly(&s).spread_p50_us.unwrap();
    s.local_stamps = false;
    let swarm = sim::run_firefly(&s).spread_p50_us.unwrap();
    assert!(
        local < 0.6 * swarm,
        "spread p50 with local stamps {local} µs, with swarm stamps {swarm} µs"
    );
}

#[test]
fn bad_local_stamps_are_refused_and_counted() {
    let mut c = synced_clock(1);
    let now = LocalMicros(2_000_000);
    let sample = Sample {
        t1: LocalMicros(1_999_000),
        t2: SwarmMicros(5_999_500),
        t3: SwarmMicros(5_999_520),
        t4: LocalMicros(1_999_800),
    };
    let local = PeerLocal {
        t2: LocalMicros(77_000),
        t3: LocalMicros(77_020),
        rate_ppb: 12_000,
    };
    let backwards = PeerLocal {
        t3: LocalMicros(76_000),
        ..local
    };
    let slow = PeerLocal {
        t3: LocalMicros(i64::MAX),
        ..local
    };
    let racing = PeerLocal {
        rate_ppb: i64::MIN,
        ..local
    };
    assert_eq!(
        c.handle_exchange(now, &0, sample, Some(backwards)),
        Err(SampleError::NegativeTurnaround)
    );
    assert!(matches!(
        c.handle_exchange(now, &0, sample, Some(slow)),
        Err(SampleError::DelayTooLarge { .. })
    ));
    assert_eq!(
        c.handle_exchange(now, &0, sample, Some(racing)),
        Err(SampleError::SkewOutOfRange)
    );
    assert_eq!(c.handle_exchange(now, &0, sample, Some(local)), Ok(()));
    assert_eq!(c.stats().rejected, 3);
}

/// A synced node with a settled peer on its timeline and a joiner 300 µs
/// off it (a joiner's acquisition error, within the outlier bound): the
/// node does not average with the joiner while the joiner is young, so it
/// stays on its timeline; the same peer long synced is averaged with.
#[test]
fn a_young_joiner_is_not_averaged_with_by_a_settled_node() {
    let moved = |joiner_age: Option<i64>| -> f64 {
        let mut c = synced_clock(1);
        // Our swarm clock is local + 4 s; peer 0 agrees, the joiner is 300 µs ahead.
        let peer_time = |p: u32, t: i64| t + 4_000_000 + if p == 1 { 300 } else { 0 };
        drive(&mut c, 1_300_000, 15_000_000, peer_time);
        c.add_peer(LocalMicros(15_000_000), 1);
        let mut t = 15_000_000;
        while t < 35_000_000 {
            let view = PeerView {
                offset_micros: None,
                skew: 0.0,
                unsynced: false,
                rate: None,
                synced_for_micros: joiner_age.map(|at| t - at),
            };
            c.handle_peer_view(LocalMicros(t), &1, view).unwrap();
            drive(&mut c, t, t + 250_000, peer_time);
            t += 250_000;
        }
        (c.to_swarm(LocalMicros(t)).0 - (t + 4_000_000)) as f64
    };
    // Synced at 15 s, when we had been synced for 13.7 s.
    let young = moved(Some(15_000_000));
    assert!(
        young.abs() <= 10.0,
        "moved {young} µs toward a young joiner"
    );
    let settled = moved(None);
    assert!(
        settled >= 50.0,
        "moved only {settled} µs toward a settled peer"
    );
}

/// Our view of a peer and its view of us, each with the path bias they
/// share removed, cancel at every tick, however skewed the per-tick sums
/// are. The median of the latest sums (the rule before) left them summing
/// to the sum's distance from its median: here 120 µs one tick in three.
#[test]
fn a_pairs_two_views_cancel_every_tick() {
    let mut c = synced_clock(1);
    // Our swarm clock is local + 4 s, and so is the peer's.
    let peer_time = |_: u32, t: i64| t + 4_000_000;
    drive(&mut c, 1_300_000, 5_000_000, peer_time);
    let mut t = 5_000_000;
    for k in 0..60 {
        // What the peer measures of us: a lopsided exchange one tick in three.
        let reported = if k % 3 == 0 { 120.0 } else { 0.0 };
        let view = PeerView {
            offset_micros: Some(reported),
            ..PeerView::default()
        };
        c.handle_peer_view(LocalMicros(t), &0, view).unwrap();
        drive(&mut c, t, t + 250_000, peer_time);
        t += 250_000;
        let info = c.peer(&0).unwrap();
        let ours = info.offset_micros.unwrap();
        let bias = info.path_bias_micros.unwrap();
        let theirs = reported - bias;
        assert!(
            (ours + theirs).abs() <= 1.0,
            "tick {k}: our view {ours:.1} µs and the peer's {theirs:.1} µs do not cancel"
        );
    }
}

/// Under 20 ± 10 ms of jitter and stalls, time on datagrams, a member
/// leaving moves the two survivors no more than they wander anyway. With
/// the path bias a median of past sums, each pair's views did not cancel,
/// the third member balanced that, and its leaving made both survivors
/// slew the same way: 65 / 35 / 80 / 115 / 65 µs at seeds 1–5 against a
/// quiet wander of 26 / 13 / 11 / 7 / 54 µs (medians 65 and 13). Now
/// 7 / 84 / 18 / 12 / 17 against 20 / 42 / 6 / 41 / 58 (medians 17 and 41).
#[test]
fn a_member_leaving_under_jitter_moves_the_survivors_no_more_than_their_wander() {
    let (mut moved, mut quiet) = (Vec::new(), Vec::new());
    for seed in 1..=5 {
        let mut s = Scenario::stalls();
        s.ordered = false;
        s.seed = seed;
        s.duration_s = 105.0;
        s.crash_at_s = Some(90.0);
        s.crash_node = Some(1);
        let f = sim::run_firefly(&s);
        assert_eq!(f.late_steps, 0, "seed {seed}: a synced node stepped");
        moved.push(f.crash_step_us.unwrap());
        quiet.push(f.quiet_wander_us.unwrap());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (m, q) = (median(&mut moved), median(&mut quiet));
    assert!(
        m <= 30.0 && m <= q.max(10.0),
        "a departure moved the survivors {m:.1} µs (median of seeds 1–5), their quiet wander {q:.1} µs: {moved:?} against {quiet:?}"
    );
}

/// The swarm's common rate holds under jitter (issue 13): the mean
/// timeline's rate, fitted over each 10 s after warm-up, stays within a few
/// ppm, and it departs from its own trend by tens of µs, not hundreds.
/// With the rate filter's gain floored at 20 % per tick it followed every
/// wiggle of the windows' slopes: rate ranges of 18 / 7 / 16 / 31 / 15 ppm
/// (`jitter`) and 31 / 20 / 33 / 22 / 20 (`stalls`) at seeds 1–5 (median
/// 20, largest departure median 120 µs); now 7 / 9 / 8 / 14 / 9 and
/// 13 / 11 / 11 / 9 / 9 (median 9, departures median 68 µs).
#[test]
fn a_jittery_swarms_common_rate_holds() {
    let (mut ranges, mut departures) = (Vec::new(), Vec::new());
    for f in jitter_and_stalls_over_datagrams() {
        ranges.push(f.timeline_rate_range_ppm.unwrap());
        departures.push(f.timeline_wander_max_us.unwrap());
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let worst = ranges.iter().copied().fold(0.0, f64::max);
    assert!(
        median(&ranges) <= 12.0 && worst <= 16.0,
        "the common rate ranged over {ranges:?} ppm (median {:.1}, worst {worst:.1})",
        median(&ranges)
    );
    assert!(
        median(&departures) <= 90.0,
        "the mean timeline departed from its trend by {departures:?} µs (median {:.1})",
        median(&departures)
    );
}

/// The pair p99 of each 20 s after the first 40 s past warm-up (70–150 s of
/// the jitter presets): the stretch `firefly bench sync` measures real
/// nodes over, once their windows are full.
fn steady_pair_p99(f: &sim::Metrics) -> f64 {
    f.pair_p99_per_20s_us
        .iter()
        .skip(2)
        .copied()
        .fold(0.0, f64::max)
}

/// Under 20 ± 10 ms of jitter a 40 s window holds too few samples for its
/// envelopes (their error shrinks like `jitter / n`): the fit reaches back
/// further on a noisy link. With the 40 s window these runs read
/// 100–228 µs (median 150); with the chosen spans 49–100 µs (median 63).
#[test]
fn a_jittery_link_fits_over_a_longer_span() {
    let steady: Vec<f64> = jitter_and_stalls_over_datagrams()
        .iter()
        .map(steady_pair_p99)
        .collect();
    let mut sorted = steady.clone();
    sorted.sort_by(f64::total_cmp);
    assert!(
        sorted[sorted.len() / 2] <= 100.0 && sorted[sorted.len() - 1] <= 170.0,
        "steady pair p99 {steady:?} µs"
    );
}

/// A crystal's rate wanders with its temperature; on a quiet link a long
/// line through two minutes of samples would carry that curvature (a
/// fixed 120 s fit reads 44 µs here, 40 s reads 12), so the fit stays
/// short where the envelopes are tight.
#[test]
fn a_quiet_link_with_wandering_crystals_keeps_a_short_fit() {
    for seed in 1..=3 {
        let mut s = Scenario::lan();
        s.seed = seed;
        s.drift_wander_ppm = 1.0;
        let f = sim::run_firefly(&s);
        let p99 = f.pair_p99_us.unwrap();
        assert!(
            p99 <= 11.0,
            "seed {seed}: pair p99 {p99} µs with 1 ppm wander"
        );
    }
}

/// The `jitter` and `stalls` presets over datagrams, seeds 1–5 each; no
/// synced node may step in any of them.
fn jitter_and_stalls_over_datagrams() -> Vec<sim::Metrics> {
    let mut runs = Vec::new();
    for preset in [Scenario::jitter(), Scenario::stalls()] {
        for seed in 1..=5 {
            let mut s = preset.clone();
            s.ordered = false;
            s.seed = seed;
            let f = sim::run_firefly(&s);
            assert_eq!(
                f.late_steps, 0,
                "{} seed {seed}: a synced node stepped",
                s.name
            );
            runs.push(f);
        }
    }
    runs
}
