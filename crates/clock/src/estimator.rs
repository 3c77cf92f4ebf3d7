//! Offset, rate and uncertainty of one peer's swarm clock, from NTP exchanges.
//!
//! A [`PeerEstimator`] holds a window of [`Sample`]s taken against one peer and
//! fits the line `θ(L) = peer_swarm − local` as a function of this node's
//! local time `L`. It is the NTP clock filter taken one step further: instead
//! of trusting the minimum-*round-trip* samples, it trusts the minimum of each
//! *direction* separately. Every exchange gives two one-sided bounds,
//!
//! ```text
//! u = t2 − t1 = θ(t1) + forward delay   ≥ θ(t1) + base
//! v = t3 − t4 = θ(t4) − backward delay  ≤ θ(t4) − base
//! ```
//!
//! so the lower envelope of the `u` points and the upper envelope of the `v`
//! points pin the line from both sides. The fit picks the slope that makes the
//! two envelopes tightest (a small convex problem solved on their convex
//! hulls, as in Moon, Skelly and Towsley's LP skew estimator) and puts the line
//! midway between them. With independent jitter per direction, the envelope
//! error shrinks like `jitter / n` rather than `jitter / √n`, which is what
//! makes tens of microseconds reachable over Wi-Fi. A fixed asymmetry between
//! the directions shifts the line by half of it; no two-way method can see that.
//!
//! The window keeps two minutes; the fit reaches back only as far as pays:
//! far under heavy jitter, where it needs many samples, a few seconds on a
//! quiet link, where a long line would only add the crystals' wander
//! ([`PeerEstimator::choose_span`]).
//!
//! Samples that contradict the current envelopes shrink the window (the peer
//! changed its rate) or, if far off and confirmed by a second sample, reset it
//! (the peer stepped its clock). A lone absurd sample is dropped.
//!
//! What it is not: it knows nothing about this node's own swarm clock or other
//! peers; [`crate::SwarmClock`] combines the estimates.

use crate::time::{LocalMicros, SwarmMicros};
use std::collections::VecDeque;

/// One NTP-style exchange with a peer, as the swarm layer stamped it.
///
/// `t1` and `t4` are read from **this node's local monotonic clock**
/// ([`LocalMicros`]) when the request leaves and the reply arrives; `t2` and
/// `t3` are read from **the peer's swarm clock** ([`SwarmMicros`], via its
/// [`crate::SwarmClock::to_swarm`]) when the request arrives there and the
/// reply leaves. Stamp as close to the socket as possible: anything between
/// the stamp and the wire counts as network delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Request sent (this node, local clock).
    pub t1: LocalMicros,
    /// Request received (peer, swarm clock).
    pub t2: SwarmMicros,
    /// Reply sent (peer, swarm clock).
    pub t3: SwarmMicros,
    /// Reply received (this node, local clock).
    pub t4: LocalMicros,
}

impl Sample {
    /// NTP offset `((t2 − t1) + (t3 − t4)) / 2`: the peer's swarm clock minus
    /// this node's local clock, in microseconds (saturating).
    pub fn offset_micros(&self) -> i64 {
        let sum = (i128::from(self.t2.0) - i128::from(self.t1.0))
            + (i128::from(self.t3.0) - i128::from(self.t4.0));
        saturate(sum / 2)
    }

    /// NTP round-trip delay `(t4 − t1) − (t3 − t2)`, in microseconds (saturating).
    pub fn delay_micros(&self) -> i64 {
        let d = (i128::from(self.t4.0) - i128::from(self.t1.0))
            - (i128::from(self.t3.0) - i128::from(self.t2.0));
        saturate(d)
    }
}

/// The answering peer's **local** (monotonic) stamps of the same exchange
/// and the mapping its swarm clock used for `t2` and `t3`, when it sends
/// them (see [`crate::SwarmClock::handle_exchange`]).
///
/// A peer's swarm clock is slewed and re-rated all the time (that is how the
/// swarm converges), so fitting a line to it over a long window blurs every
/// correction into the estimate. Its local clock is a crystal: a line fits
/// it over minutes. With these stamps the window holds local-against-local
/// points, and the peer's swarm time is its mapping applied to the fitted
/// local time, exactly as the peer computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PeerLocal {
    /// Request received (peer, local clock).
    pub t2: LocalMicros,
    /// Reply sent (peer, local clock); its swarm clock read `t3` then.
    pub t3: LocalMicros,
    /// The peer's swarm clock rate against its local clock then, minus one,
    /// in parts per billion (drift compensation plus any slew).
    pub rate_ppb: i64,
}

fn saturate(x: i128) -> i64 {
    i64::try_from(x).unwrap_or(if x < 0 { i64::MIN } else { i64::MAX })
}

/// Why a sample was refused. Refused samples are counted and otherwise ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    /// The reply arrived before the request left (`t4 < t1`).
    #[error("reply received before the request was sent (t4 < t1)")]
    Reversed,
    /// The peer claims to have replied before it received the request (`t3 < t2`).
    #[error("peer replied before it received the request (t3 < t2)")]
    NegativeTurnaround,
    /// The round trip minus the peer's turnaround is negative beyond rounding.
    #[error("negative round-trip delay of {delay_micros} µs")]
    NegativeDelay {
        /// The computed delay.
        delay_micros: i64,
    },
    /// The round trip or the peer's turnaround is longer than the configured maximum.
    #[error("round trip of {delay_micros} µs is longer than the maximum")]
    DelayTooLarge {
        /// The longer of the round trip and the turnaround.
        delay_micros: i64,
    },
    /// The peer's swarm clock is further from ours than the configured maximum.
    #[error("peer clock is {offset_micros} µs away from ours, beyond the maximum")]
    OffsetTooLarge {
        /// The sample's offset relative to this node's swarm clock.
        offset_micros: i64,
    },
    /// A peer's view claims a drift compensation beyond the configured maximum.
    #[error("peer's skew is not a number within the maximum")]
    SkewOutOfRange,
    /// A sample with the same `t1` is already held.
    #[error("duplicate sample")]
    Duplicate,
    /// The sample is older than the estimation window.
    #[error("sample older than the estimation window")]
    Stale,
    /// The reply is stamped after `now`.
    #[error("sample stamped in the future")]
    FromTheFuture,
    /// The peer was never added, or was removed.
    #[error("sample from a peer that is not a member")]
    UnknownPeer,
}

/// Tuning of the per-peer estimator (part of [`crate::Config`]).
#[derive(Debug, Clone)]
pub(crate) struct EstimatorConfig {
    /// Most samples kept.
    pub(crate) max_samples: usize,
    /// Oldest sample kept, relative to the newest (µs).
    pub(crate) max_age: i64,
    /// Deviation beyond which a sample is a clock jump, not drift (µs).
    pub(crate) jump_threshold: f64,
    /// Largest plausible rate of a peer's swarm clock against our local one.
    pub(crate) max_rate: f64,
    /// Prior spread of that rate, used while the window is short.
    pub(crate) rate_prior_sigma: f64,
}

/// One stored exchange, reduced to the two one-sided bounds.
#[derive(Debug, Clone, Copy)]
struct Point {
    t1: i64,
    t4: i64,
    /// `t2 − t1`: θ(t1) plus the forward delay.
    u: i64,
    /// `t3 − t4`: θ(t4) minus the backward delay.
    v: i64,
}

impl Point {
    fn delay(&self) -> i64 {
        self.u - self.v
    }
}

/// The fitted line `θ(L) = theta + rate · (L − at)`, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Estimate {
    /// Local instant the line is anchored at (the newest sample).
    pub(crate) at: LocalMicros,
    /// Peer swarm minus local at `at`, µs.
    pub(crate) theta: f64,
    /// The peer's swarm clock rate against our local clock, minus one.
    pub(crate) rate: f64,
    /// One-sigma uncertainty of `theta` at `at`, µs.
    pub(crate) uncertainty: f64,
    /// One-sigma uncertainty of `rate`.
    pub(crate) rate_uncertainty: f64,
    /// The rate measured by the window alone, without the prior `rate` is
    /// blended with while the window is short.
    pub(crate) measured_rate: f64,
    /// One-sigma uncertainty of `measured_rate` (infinite for a zero span).
    pub(crate) measured_rate_uncertainty: f64,
    /// Smallest round trip in the window, µs.
    pub(crate) min_delay: f64,
    /// Half the distance between the two fitted envelopes, µs.
    pub(crate) half_gap: f64,
    /// Samples in the window.
    pub(crate) samples: usize,
    /// Time between the oldest and newest sample, µs.
    pub(crate) span: i64,
}

impl Estimate {
    /// Peer swarm minus local at local instant `l`, µs.
    pub(crate) fn theta_at(&self, l: LocalMicros) -> f64 {
        self.theta + self.rate * (l.0.saturating_sub(self.at.0)) as f64
    }

    /// Uncertainty of [`Estimate::theta_at`] at `l`: grows with the extrapolation.
    pub(crate) fn uncertainty_at(&self, l: LocalMicros) -> f64 {
        let dt = (l.0.saturating_sub(self.at.0)).max(0) as f64;
        self.uncertainty + self.rate_uncertainty * dt
    }
}

/// What happened to an accepted sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// Consistent with the window.
    Added,
    /// Contradicted the old part of the window, which was dropped.
    Shrunk,
    /// Far off the window: held until a second sample confirms a jump.
    Held,
    /// Confirmed jump: the window restarted from the two jumped samples.
    Reset,
}

/// Window of samples against one peer and its fit. See the module doc.
#[derive(Debug, Clone)]
pub(crate) struct PeerEstimator {
    /// Sorted by `t1`, strictly increasing (invariant kept by `insert`).
    points: VecDeque<Point>,
    /// A sample far off the window, waiting for a second one to confirm a jump.
    pending: Option<Point>,
    fit: Option<Estimate>,
    /// `fit` reflects `points` (cleared on every change).
    fit_fresh: bool,
    /// Rate to assume while the window is too short to see one.
    rate_prior: f64,
    /// Largest `t4` in `points` (kept by `push_sorted` and `pop_oldest`).
    newest_t4: Option<i64>,
    /// The window holds the peer's local stamps ([`PeerLocal`]) rather than
    /// its swarm stamps; the two never mix in one window.
    local: bool,
    /// How far back the fit reaches, µs: part of the window, chosen by
    /// [`PeerEstimator::choose_span`].
    fit_age: Option<i64>,
    /// Newest `t1` when `fit_age` was last chosen.
    chosen_at: Option<i64>,
    /// Oldest `t1` the current fit may still rest on: points older than
    /// this have left the fit's reach and were checked when they did.
    fit_from: i64,
    /// Samples added since the last fit.
    added_since_fit: usize,
}

/// How fast a crystal's rate may change, per second: the design bound the
/// fit's span is chosen against (see [`PeerEstimator::choose_span`]). A
/// rate swinging ±1 ppm over five minutes, as a computer's crystal does
/// when its temperature moves, changes by up to 2·10⁻⁸ a second.
const CRYSTAL_WANDER: f64 = 2e-8;

/// How often the fit's span is chosen again, µs of the peer's samples.
/// Each new span moves the fit a little; every 2 s, that noise cost a
/// sparse 24-node swarm a fifth of its spread (487 against 402 µs).
const CHOOSE_EVERY: i64 = 10_000_000;

impl PeerEstimator {
    pub(crate) fn new() -> Self {
        Self {
            points: VecDeque::new(),
            pending: None,
            fit: None,
            fit_fresh: false,
            rate_prior: 0.0,
            newest_t4: None,
            local: false,
            fit_age: None,
            chosen_at: None,
            fit_from: i64::MIN,
            added_since_fit: 0,
        }
    }

    /// Whether the window holds the peer's local stamps (see [`PeerLocal`]).
    pub(crate) fn is_local(&self) -> bool {
        self.local
    }

    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }

    /// Local time of the newest sample's reply.
    pub(crate) fn newest(&self) -> Option<LocalMicros> {
        self.newest_t4.map(LocalMicros)
    }

    /// Drops the oldest sample, keeping `newest_t4` right.
    fn pop_oldest(&mut self) -> Option<Point> {
        let p = self.points.pop_front()?;
        if Some(p.t4) == self.newest_t4 {
            self.newest_t4 = self.points.iter().map(|q| q.t4).max();
        }
        Some(p)
    }

    /// Sets the rate assumed while the window is too short to measure one.
    pub(crate) fn set_rate_prior(&mut self, rate: f64) {
        if rate.is_finite() {
            self.rate_prior = rate;
        }
    }

    /// Adds a sample that already passed the caller's sanity checks
    /// (ordering, delay bounds, offset bounds).
    pub(crate) fn insert(
        &mut self,
        s: &Sample,
        local: Option<&PeerLocal>,
        cfg: &EstimatorConfig,
    ) -> Result<Insert, SampleError> {
        let (t2, t3) = match local {
            Some(l) => (l.t2.0, l.t3.0),
            None => (s.t2.0, s.t3.0),
        };
        let p = Point {
            t1: s.t1.0,
            t4: s.t4.0,
            u: t2.saturating_sub(s.t1.0),
            v: t3.saturating_sub(s.t4.0),
        };
        if self.local != local.is_some() {
            // The peer changed what it stamps with (an upgrade, a restart):
            // the old points measure another clock.
            self.points.clear();
            self.pending = None;
            self.fit = None;
            self.fit_fresh = false;
            self.newest_t4 = None;
            self.local = local.is_some();
            self.chosen_at = None;
        }
        if let Some(newest) = self.points.back()
            && p.t1 < newest.t1.saturating_sub(cfg.max_age)
        {
            return Err(SampleError::Stale);
        }
        if self.points.binary_search_by_key(&p.t1, |q| q.t1).is_ok()
            || self.pending.is_some_and(|q| q.t1 == p.t1)
        {
            return Err(SampleError::Duplicate);
        }
        // A recent fit (the clock refits every tick) is good enough to judge a
        // new sample and saves refitting on every insert; small or outgrown
        // windows are refitted.
        let judge = match self.fit {
            Some(fit) if fit.samples >= 16 && self.added_since_fit < 16 => Some(fit),
            _ => self.estimate(cfg),
        };
        self.added_since_fit += 1;
        let outcome = match judge {
            Some(fit) if self.points.len() >= 3 => {
                let tolerance = 4.0 * fit.uncertainty + 5.0;
                // A jump is judged against what the sample *proves*: the
                // peer's clock lies between `v` and `u` whatever the delays
                // were. Against the envelopes, a sample that merely met a
                // quieter network than the window did (heavy jitter, a slow
                // window after a stall) would look like a jump.
                if bound_violation(&fit, &p) > cfg.jump_threshold.max(tolerance) {
                    match self.pending.take() {
                        Some(q) if consistent(&q, &p, tolerance) => {
                            self.points.clear();
                            self.newest_t4 = None;
                            self.push_sorted(q);
                            self.push_sorted(p);
                            Insert::Reset
                        }
                        _ => {
                            self.pending = Some(p);
                            return Ok(Insert::Held);
                        }
                    }
                } else if violation(&fit, &p) > 2.0 * tolerance {
                    let keep = fit.samples.min(self.points.len()) / 2;
                    while self.points.len() > keep {
                        self.pop_oldest();
                    }
                    self.push_sorted(p);
                    Insert::Shrunk
                } else {
                    self.push_sorted(p);
                    Insert::Added
                }
            }
            _ => {
                self.push_sorted(p);
                Insert::Added
            }
        };
        if outcome != Insert::Held {
            self.pending = None;
        }
        if matches!(outcome, Insert::Reset | Insert::Shrunk) {
            // The old fit describes samples that are gone.
            self.fit = None;
            self.chosen_at = None;
        }
        // A sample well inside both envelopes cannot move them, and neither
        // can dropping one: keep the fit (this is most samples with jitter,
        // and it is what keeps a 100-node simulation fast).
        let keeps_fit = |fit: &Option<Estimate>, q: &Point| fit.is_some_and(|f| inside(&f, q));
        let mut unchanged = self.fit_fresh && outcome == Insert::Added && keeps_fit(&self.fit, &p);
        for q in self.trim(cfg) {
            unchanged &= keeps_fit(&self.fit, &q);
        }
        // Points leaving the fit's span count as dropped too.
        if let (Some(age), Some(newest)) = (self.fit_age, self.points.back().map(|q| q.t1)) {
            let start = newest.saturating_sub(age);
            let left_from = self.points.partition_point(|q| q.t1 < self.fit_from);
            let left_to = self.points.partition_point(|q| q.t1 < start);
            for q in self.points.range(left_from..left_to.max(left_from)) {
                unchanged &= keeps_fit(&self.fit, q);
            }
            self.fit_from = self.fit_from.max(start);
        }
        if !unchanged {
            self.fit_fresh = false;
        }
        Ok(outcome)
    }

    fn push_sorted(&mut self, p: Point) {
        self.newest_t4 = Some(self.newest_t4.map_or(p.t4, |n| n.max(p.t4)));
        // Samples nearly always arrive in order: search from the back.
        let idx = self
            .points
            .iter()
            .rposition(|q| q.t1 < p.t1)
            .map_or(0, |i| i + 1);
        self.points.insert(idx, p);
    }

    /// Drops samples beyond the window's size and age; returns them.
    fn trim(&mut self, cfg: &EstimatorConfig) -> Vec<Point> {
        let mut dropped = Vec::new();
        while self.points.len() > cfg.max_samples.max(2) {
            dropped.extend(self.pop_oldest());
        }
        if let Some(newest) = self.points.back().map(|p| p.t1) {
            while self
                .points
                .front()
                .is_some_and(|p| p.t1 < newest.saturating_sub(cfg.max_age))
            {
                dropped.extend(self.pop_oldest());
            }
        }
        dropped
    }

    /// The fit of the current window, recomputed only when the window changed.
    pub(crate) fn estimate(&mut self, cfg: &EstimatorConfig) -> Option<Estimate> {
        if !self.fit_fresh {
            self.fit_fresh = true;
            self.added_since_fit = 0;
            let Some(newest) = self.points.back().map(|p| p.t1) else {
                self.fit = None;
                return None;
            };
            if self
                .chosen_at
                .is_none_or(|at| newest.saturating_sub(at) >= CHOOSE_EVERY)
            {
                self.fit_age = Some(self.choose_span(cfg, newest));
                self.chosen_at = Some(newest);
            }
            let start = newest.saturating_sub(self.fit_age.unwrap_or(cfg.max_age));
            let from = self.points.partition_point(|p| p.t1 < start);
            self.fit = fit(&self.points, from, self.rate_prior, cfg);
            self.fit_from = start;
        }
        self.fit
    }

    /// How far back the fit reaches: the span that balances the
    /// envelopes' noise against the crystals' wander. A fit over `W` errs by
    /// about `e₀ · W₀ / W` from noise (the envelopes' error shrinks like
    /// `jitter / n`, and `n` grows with `W`; `e₀` is the uncertainty of a
    /// fit over the shortest span `W₀`, a sixth of the window) and by about
    /// `a · W² / 12` from a rate changing by `a` a second (a line fitted to
    /// a parabola, read at its newest end). Their sum is least at
    /// `W³ = e₀ · W₀ / (2 · a / 12)`: on a quiet link (`e₀` of a µs) about
    /// 20 s, under 20 ± 10 ms of jitter (`e₀` of 150 µs) about 100 s.
    fn choose_span(&self, cfg: &EstimatorConfig, newest: i64) -> i64 {
        let shortest = (cfg.max_age / 6).max(1);
        let from = self
            .points
            .partition_point(|p| p.t1 < newest.saturating_sub(shortest));
        let Some(short) = fit(&self.points, from, self.rate_prior, cfg) else {
            return shortest;
        };
        let curvature = CRYSTAL_WANDER / 12.0 * 1e6; // µs per s²
        let span_s = (shortest as f64 / 1e6 * short.uncertainty / (2.0 * curvature)).cbrt();
        if !span_s.is_finite() {
            return cfg.max_age;
        }
        ((span_s * 1e6) as i64).clamp(shortest, cfg.max_age.max(shortest))
    }
}

/// How far `p` lies on the wrong side of the fitted envelopes, µs
/// (negative or zero when it is consistent).
fn violation(fit: &Estimate, p: &Point) -> f64 {
    let half_base = fit.half_gap;
    let lower_u = fit.theta_at(LocalMicros(p.t1)) + half_base;
    let upper_v = fit.theta_at(LocalMicros(p.t4)) - half_base;
    let below = lower_u - p.u as f64;
    let above = p.v as f64 - upper_v;
    below.max(above)
}

/// How far the fitted line lies outside the offset interval `p` proves,
/// `[v, u]` (the peer's clock at `t1` is at most `u`, at `t4` at least `v`,
/// since no delay is negative), µs; negative or zero when it is inside.
fn bound_violation(fit: &Estimate, p: &Point) -> f64 {
    let above = fit.theta_at(LocalMicros(p.t1)) - p.u as f64;
    let below = p.v as f64 - fit.theta_at(LocalMicros(p.t4));
    above.max(below)
}

/// Whether `p` lies well inside both envelopes of `fit`, so that adding or
/// removing it cannot change the fit.
fn inside(fit: &Estimate, p: &Point) -> bool {
    let margin = 8.0 * fit.uncertainty + 5.0;
    let above_u = p.u as f64 - (fit.theta_at(LocalMicros(p.t1)) + fit.half_gap);
    let below_v = (fit.theta_at(LocalMicros(p.t4)) - fit.half_gap) - p.v as f64;
    above_u > margin && below_v > margin
}

/// Whether two samples can describe the same clock: their offset intervals,
/// widened by the tolerance, overlap.
fn consistent(a: &Point, b: &Point, tolerance: f64) -> bool {
    let (a_lo, a_hi) = (a.v as f64, a.u as f64);
    let (b_lo, b_hi) = (b.v as f64, b.u as f64);
    a_lo <= b_hi + tolerance && b_lo <= a_hi + tolerance
}

/// The window's own rate error, measured, is about three times what
/// `2 · noise / span` says (uniform 10–30 ms and exponential 2 ms jitter,
/// spans 5–30 s, 300 seeds each:
/// `the_measured_rate_uncertainty_is_honest`). The rate filter trusts a
/// window by it, and trusted three times too much, every node's rate took
/// the same early errors and the swarm's common rate ran off.
const RATE_SIGMA_CALIBRATION: f64 = 3.0;

/// Fits the line between the two envelopes. `None` for an empty window.
fn fit(
    points: &VecDeque<Point>,
    from: usize,
    rate_prior: f64,
    cfg: &EstimatorConfig,
) -> Option<Estimate> {
    let newest = points.back()?;
    let x0 = newest.t1;
    let y0 = newest.u;
    let span = newest.t1.saturating_sub(points.get(from)?.t1);
    let points = points.range(from..);
    // Relative coordinates keep f64 exact: spans and offsets are bounded by the
    // window and the caller's offset check.
    let mut us: Vec<(f64, f64)> = points
        .clone()
        .map(|p| ((p.t1 - x0) as f64, (p.u - y0) as f64))
        .collect();
    let mut vs: Vec<(f64, f64)> = points
        .clone()
        .map(|p| ((p.t4 - x0) as f64, (p.v - y0) as f64))
        .collect();
    // `us` is sorted by t1 already; t4 = t1 + round trip is nearly sorted.
    vs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let lower = lower_hull(&us);
    let upper = upper_hull(&vs);

    let rate_fit = minimize_gap(&lower, &upper, cfg.max_rate);
    // Envelope noise: spacing of the lowest residuals, a proxy for jitter / n.
    let (alpha_u, alpha_v) = envelopes(&lower, &upper, rate_fit);
    let noise_u = kth_residual(&mut us, rate_fit, alpha_u, 1.0);
    let noise_v = kth_residual(&mut vs, rate_fit, alpha_v, -1.0);
    let noise = (noise_u * noise_u + noise_v * noise_v).sqrt() / 2.0 + 0.5;
    let span_f = span as f64;
    let rate_sigma_fit = if span_f > 0.0 {
        2.0 * noise / span_f
    } else {
        f64::INFINITY
    };
    // Blend with the prior while the window is too short to see the rate.
    let prior_var = cfg.rate_prior_sigma * cfg.rate_prior_sigma;
    let fit_var = rate_sigma_fit * rate_sigma_fit;
    let (rate, rate_sigma) = if fit_var.is_finite() {
        let w_fit = 1.0 / fit_var.max(1e-24);
        let w_prior = 1.0 / prior_var.max(1e-24);
        (
            (rate_fit * w_fit + rate_prior * w_prior) / (w_fit + w_prior),
            (1.0 / (w_fit + w_prior)).sqrt(),
        )
    } else {
        (rate_prior, cfg.rate_prior_sigma)
    };
    let rate = rate.clamp(-cfg.max_rate, cfg.max_rate);
    let (alpha_u, alpha_v) = envelopes(&lower, &upper, rate);
    let theta = y0 as f64 + (alpha_u + alpha_v) / 2.0;
    let min_delay = points.clone().map(Point::delay).min().unwrap_or(0) as f64;
    let est = Estimate {
        at: LocalMicros(x0),
        theta,
        rate,
        uncertainty: noise + rate_sigma * span_f / 2.0,
        rate_uncertainty: rate_sigma,
        measured_rate: rate_fit,
        measured_rate_uncertainty: RATE_SIGMA_CALIBRATION * rate_sigma_fit,
        min_delay,
        half_gap: (alpha_u - alpha_v) / 2.0,
        samples: points.len(),
        span,
    };
    (est.theta.is_finite() && est.rate.is_finite() && est.uncertainty.is_finite()).then_some(est)
}

/// `min(u − b·x)` over the lower hull and `max(v − b·x)` over the upper hull.
fn envelopes(lower: &[(f64, f64)], upper: &[(f64, f64)], b: f64) -> (f64, f64) {
    let au = lower
        .iter()
        .map(|&(x, y)| y - b * x)
        .fold(f64::INFINITY, f64::min);
    let av = upper
        .iter()
        .map(|&(x, y)| y - b * x)
        .fold(f64::NEG_INFINITY, f64::max);
    (au, av)
}

/// The slope minimising `max(v − b·x) − min(u − b·x)`: the tightest pair of
/// envelopes. The function is convex and piecewise linear in `b`, its
/// subgradient is `x_u*(b) − x_v*(b)` (non-decreasing), so bisect on its sign.
fn minimize_gap(lower: &[(f64, f64)], upper: &[(f64, f64)], max_rate: f64) -> f64 {
    let (mut lo, mut hi) = (-max_rate, max_rate);
    for _ in 0..64 {
        let mid = (lo + hi) / 2.0;
        let xu = argmin_x(lower, mid);
        let xv = argmax_x(upper, mid);
        let slope = xu - xv;
        if slope > 0.0 {
            hi = mid;
        } else if slope < 0.0 {
            lo = mid;
        } else {
            return mid;
        }
    }
    (lo + hi) / 2.0
}

fn argmin_x(pts: &[(f64, f64)], b: f64) -> f64 {
    let mut best = (f64::INFINITY, 0.0);
    for &(x, y) in pts {
        let val = y - b * x;
        if val < best.0 {
            best = (val, x);
        }
    }
    best.1
}

fn argmax_x(pts: &[(f64, f64)], b: f64) -> f64 {
    let mut best = (f64::NEG_INFINITY, 0.0);
    for &(x, y) in pts {
        let val = y - b * x;
        if val > best.0 {
            best = (val, x);
        }
    }
    best.1
}

/// Half the fourth-smallest distance of the points from their envelope line
/// (`sign` +1: points above a lower envelope; −1: below an upper one).
fn kth_residual(pts: &mut [(f64, f64)], b: f64, alpha: f64, sign: f64) -> f64 {
    if pts.len() < 2 {
        return 1000.0;
    }
    let mut res: Vec<f64> = pts
        .iter()
        .map(|&(x, y)| (sign * (y - b * x - alpha)).max(0.0))
        .collect();
    let k = 3.min(res.len() - 1);
    res.select_nth_unstable_by(k, f64::total_cmp);
    res[k] / k as f64
}

/// Lower convex hull of points sorted by x (Andrew's monotone chain).
fn lower_hull(pts: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut hull: Vec<(f64, f64)> = Vec::with_capacity(16);
    for &p in pts {
        while hull.len() >= 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
            hull.pop();
        }
        hull.push(p);
    }
    hull
}

/// Upper convex hull of points sorted by x.
fn upper_hull(pts: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut hull: Vec<(f64, f64)> = Vec::with_capacity(16);
    for &p in pts {
        while hull.len() >= 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) >= 0.0 {
            hull.pop();
        }
        hull.push(p);
    }
    hull
}

fn cross(o: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn cfg() -> EstimatorConfig {
        EstimatorConfig {
            max_samples: 256,
            max_age: 30_000_000,
            jump_threshold: 2_000.0,
            max_rate: 2e-3,
            rate_prior_sigma: 2e-4,
        }
    }

    /// Exchange against a peer whose swarm clock is `theta0 + rate·L` ahead of our local one.
    fn exchange(t1: i64, theta0: f64, rate: f64, fwd: f64, back: f64) -> Sample {
        let theta = |l: f64| theta0 + rate * l;
        let arrive = t1 as f64 + fwd;
        let t2 = arrive + theta(arrive);
        let t3 = t2 + 20.0;
        let leave = arrive + 20.0 / (1.0 + rate);
        let t4 = leave + back;
        Sample {
            t1: LocalMicros(t1),
            t2: SwarmMicros(t2.round() as i64),
            t3: SwarmMicros(t3.round() as i64),
            t4: LocalMicros(t4.round() as i64),
        }
    }

    #[test]
    fn ntp_offset_and_delay_formulas() {
        let s = Sample {
            t1: LocalMicros(100),
            t2: SwarmMicros(1_150),
            t3: SwarmMicros(1_160),
            t4: LocalMicros(130),
        };
        assert_eq!(s.offset_micros(), 1_040);
        assert_eq!(s.delay_micros(), 20);
    }

    #[test]
    fn per_direction_minima_beat_the_jitter() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut est = PeerEstimator::new();
        let (theta0, rate) = (123_456.0, 150e-6);
        for k in 0..200 {
            let t1 = 1_000_000 + k * 100_000;
            let fwd = 2_000.0 - 2_000.0 * (1.0 - rng.random::<f64>()).ln();
            let back = 2_000.0 - 2_000.0 * (1.0 - rng.random::<f64>()).ln();
            est.insert(&exchange(t1, theta0, rate, fwd, back), None, &cfg())
                .unwrap();
        }
        let e = est.estimate(&cfg()).unwrap();
        let truth = theta0 + rate * e.at.0 as f64;
        assert!((e.theta - truth).abs() < 60.0, "error {}", e.theta - truth);
        assert!((e.rate - rate).abs() < 5e-6, "rate {}", e.rate);
        assert!(e.uncertainty < 200.0);
    }

    #[test]
    fn the_measured_rate_uncertainty_is_honest() {
        // Two clocks 100 ppm apart, probed every 100 ms through 20 ± 10 ms
        // of uniform jitter each way (the fault proxy's model) or 2 ms of
        // exponential jitter: the window's rate error over many seeds must
        // match the uncertainty it reports within a factor of two.
        let cfg = EstimatorConfig {
            max_samples: 400,
            max_age: 40_000_000,
            ..cfg()
        };
        for exponential in [false, true] {
            for span_s in [10.0, 20.0, 30.0] {
                let (mut square_error, mut sigma) = (0.0, 0.0);
                let runs = 100;
                for seed in 0..runs {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    let mut delay = || {
                        if exponential {
                            2_000.0 - 2_000.0 * (1.0 - rng.random::<f64>()).ln()
                        } else {
                            10_000.0 + 20_000.0 * rng.random::<f64>()
                        }
                    };
                    let mut est = PeerEstimator::new();
                    let rate = 100e-6;
                    let mut t1 = 0;
                    while (t1 as f64) < span_s * 1e6 {
                        let (fwd, back) = (delay(), delay());
                        est.insert(&exchange(t1, 777.0, rate, fwd, back), None, &cfg)
                            .unwrap();
                        t1 += 100_000;
                    }
                    let e = est.estimate(&cfg).unwrap();
                    square_error += (e.measured_rate - rate).powi(2);
                    sigma += e.measured_rate_uncertainty;
                }
                let rms = (square_error / runs as f64).sqrt();
                let sigma = sigma / runs as f64;
                assert!(
                    (0.5..2.0).contains(&(rms / sigma)),
                    "exponential {exponential}, span {span_s} s: rms error {:.2} ppm, sigma {:.2} ppm",
                    rms * 1e6,
                    sigma * 1e6
                );
            }
        }
    }

    #[test]
    fn a_confirmed_jump_resets_the_window_and_a_lone_outlier_does_not() {
        let mut est = PeerEstimator::new();
        for k in 0..20 {
            est.insert(
                &exchange(k * 100_000, 5_000.0, 0.0, 300.0, 300.0),
                None,
                &cfg(),
            )
            .unwrap();
        }
        let outlier = exchange(2_000_000, 905_000.0, 0.0, 300.0, 300.0);
        assert_eq!(est.insert(&outlier, None, &cfg()).unwrap(), Insert::Held);
        let back = exchange(2_100_000, 5_000.0, 0.0, 300.0, 300.0);
        assert_eq!(est.insert(&back, None, &cfg()).unwrap(), Insert::Added);
        assert!((est.estimate(&cfg()).unwrap().theta - 5_000.0).abs() < 5.0);

        let j1 = exchange(2_200_000, 505_000.0, 0.0, 300.0, 300.0);
        let j2 = exchange(2_300_000, 505_000.0, 0.0, 300.0, 300.0);
        assert_eq!(est.insert(&j1, None, &cfg()).unwrap(), Insert::Held);
        assert_eq!(est.insert(&j2, None, &cfg()).unwrap(), Insert::Reset);
        assert_eq!(est.len(), 2);
        assert!((est.estimate(&cfg()).unwrap().theta - 505_000.0).abs() < 5.0);
    }

    #[test]
    fn duplicates_and_stale_samples_are_refused() {
        let mut est = PeerEstimator::new();
        let s = exchange(40_000_000, 0.0, 0.0, 300.0, 300.0);
        est.insert(&s, None, &cfg()).unwrap();
        assert_eq!(est.insert(&s, None, &cfg()), Err(SampleError::Duplicate));
        let old = exchange(1_000, 0.0, 0.0, 300.0, 300.0);
        assert_eq!(est.insert(&old, None, &cfg()), Err(SampleError::Stale));
    }

    #[test]
    fn reordered_samples_keep_the_window_sorted() {
        let mut est = PeerEstimator::new();
        for k in [3, 1, 2, 0, 5, 4] {
            est.insert(
                &exchange(k * 100_000, 10.0, 0.0, 300.0, 300.0),
                None,
                &cfg(),
            )
            .unwrap();
        }
        let t1s: Vec<i64> = est.points.iter().map(|p| p.t1).collect();
        assert!(t1s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(est.len(), 6);
    }
}
