//! Measurements of a simulation run: spread, per-node error, convergence,
//! join and crash figures.
//!
//! The engine records, every `metric_interval_ms` of true time, each node's
//! swarm clock minus true time (or nothing if it is absent, dead or unsynced).
//! Everything here is computed afterwards from those readings.

use super::Scenario;
use serde::Serialize;

/// Figures of one protocol on one scenario. Spreads are max − min of the
/// counted nodes' swarm clocks at one true instant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Metrics {
    /// Rate of the swarm's mean timeline against true time after warm-up, ppm
    /// (the members' clocks drift ±`drift_ppm` around true time, so a
    /// healthy swarm stays within that; a timeline running away from every
    /// member's clock would leave the players' reach).
    pub timeline_rate_ppm: Option<f64>,
    /// The median of the members' true clock rates against true time, ppm.
    pub members_median_drift_ppm: Option<f64>,
    /// `timeline_rate_ppm` minus that median: how far the timeline runs from
    /// the members' median clock (a node with that clock would resample by
    /// this much), ppm.
    pub timeline_vs_members_ppm: Option<f64>,
    /// The swarm's common rate wander (issue 13): the mean timeline's
    /// largest departure from its own linear trend of the previous 10 s,
    /// over the next 10 s, for every 10 s after warm-up with no join or
    /// crash in the 20 s, µs (the quiet stretch `firefly bench sync`
    /// reads a departure against). Median of those windows.
    pub timeline_wander_p50_us: Option<f64>,
    /// The largest of the same windows, µs.
    pub timeline_wander_max_us: Option<f64>,
    /// The mean timeline's rate against true time fitted over each 10 s
    /// after warm-up (no join or crash in it): largest minus smallest, ppm.
    /// A swarm whose common rate holds keeps this within its noise.
    pub timeline_rate_range_ppm: Option<f64>,
    /// Median spread after warm-up, µs.
    pub spread_p50_us: Option<f64>,
    /// 99th percentile spread after warm-up, µs.
    pub spread_p99_us: Option<f64>,
    /// Largest spread after warm-up, µs.
    pub spread_max_us: Option<f64>,
    /// Median of every pair's distance after warm-up, all pairs of counted
    /// nodes pooled, µs: the statistic `firefly bench sync` reports of real
    /// nodes (`offset_p50_us`). The spread is the largest pair, so it sits
    /// above this: with three nodes, one node off by `x` is one spread of
    /// `x` but pairs of `x`, `x` and 0.
    pub pair_p50_us: Option<f64>,
    /// 99th percentile of the same, µs (the real benchmark's `offset_p99_us`).
    pub pair_p99_us: Option<f64>,
    /// `pair_p99_us` of each successive 20 s window after warm-up, µs: what
    /// one run of `firefly bench sync` (a 20 s steady window) could measure.
    /// Under stalls a short window may meet no bad stretch, so one real run
    /// is compared with this range, not with the whole run's figure.
    pub pair_p99_per_20s_us: Vec<f64>,
    /// Measurements after warm-up where a counted node was not synced.
    pub unsynced_after_warmup: usize,
    /// Time from start after which the spread stays within 1 ms (until the
    /// first join or crash), ms.
    pub converge_ms: Option<f64>,
    /// Time from start after which the spread stays within the scenario's
    /// goal (until the first join or crash), ms.
    pub settle_ms: Option<f64>,
    /// Time from join until the joiner stays within 1 ms of the others'
    /// median (checked for 30 s or until the crash), ms.
    pub join_converge_ms: Option<f64>,
    /// Largest departure of a survivor's timeline from its own linear trend
    /// of the 10 s before the crash, over the 10 s after it, µs.
    pub crash_step_us: Option<f64>,
    /// The same statistic over a quiet stretch just before the crash: what
    /// the crash figure would be with no crash at all, µs.
    pub quiet_wander_us: Option<f64>,
    /// Like `crash_step_us`, but the largest departure of any single survivor
    /// from its own trend (includes each node's own noise), µs.
    pub crash_step_per_node_us: Option<f64>,
    /// `quiet_wander_us` per node, the reference for `crash_step_per_node_us`, µs.
    pub quiet_wander_per_node_us: Option<f64>,
    /// The same statistic around the join: how far the others' mean timeline
    /// moved when the newcomer arrived (a joiner must not pull the swarm), µs.
    pub join_pull_us: Option<f64>,
    /// The same statistic over the 10 s before the join, when nothing
    /// happened: the swarm's own wander, the reference for `join_pull_us`
    /// (under jitter it is most of it), µs.
    pub join_quiet_wander_us: Option<f64>,
    /// The node that crashed.
    pub crashed_node: Option<usize>,
    /// Per node: 99th percentile of its distance from the median after
    /// warm-up, µs.
    pub node_error_p99_us: Vec<Option<f64>>,
    /// Per node: its mean signed distance from the median after warm-up,
    /// µs (a node that sits apart, and on which side).
    pub node_error_mean_us: Vec<Option<f64>>,
    /// Largest spread in each second of the run.
    pub timeline: Vec<SpreadPoint>,
    /// Time requests sent.
    pub exchanges: u64,
    /// One-way messages lost.
    pub lost: u64,
    /// Samples the clocks refused.
    pub rejected: u64,
    /// Steps of node timelines.
    pub steps: u64,
    /// Steps of node timelines that were already synced (not acquisitions):
    /// what a playing node would hear.
    pub late_steps: u64,
    /// Peer clock jumps detected.
    pub jumps: u64,
    /// Estimator windows shrunk (a peer's rate seemed to change).
    pub shrinks: u64,
}

/// The largest spread within one second of the run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SpreadPoint {
    /// Start of the second, s.
    pub t_s: f64,
    /// Largest spread in it, µs (`None`: not every counted node was synced).
    pub spread_us: Option<f64>,
}

/// Readings as the engine takes them.
pub(crate) struct Recorder {
    warmup: i64,
    join: Option<(usize, i64)>,
    join_settle: i64,
    crash: Option<(usize, i64)>,
    goal: f64,
    end: i64,
    times: Vec<i64>,
    /// Per measurement: per node, (alive, swarm − true if synced).
    readings: Vec<Vec<(bool, Option<f64>)>>,
    pub(crate) exchanges: u64,
    pub(crate) lost: u64,
    pub(crate) late_steps: u64,
}

fn us(s: f64) -> i64 {
    (s * 1e6).round() as i64
}

const JOIN_BOUND_US: f64 = 1_000.0;

/// The window of `firefly bench sync`'s steady offsets, µs (see
/// [`Metrics::pair_p99_per_20s_us`]).
const PAIR_WINDOW: i64 = 20_000_000;

impl Recorder {
    pub(crate) fn new(sc: &Scenario, joiner: Option<usize>, crash_node: Option<usize>) -> Self {
        Self {
            warmup: us(sc.warmup_s),
            join: joiner.zip(sc.join_at_s.map(us)),
            join_settle: us(sc.join_settle_s),
            crash: crash_node.zip(sc.crash_at_s.map(us)),
            goal: sc.goal_spread_p99_us,
            end: us(sc.duration_s),
            times: Vec::new(),
            readings: Vec::new(),
            exchanges: 0,
            lost: 0,
            late_steps: 0,
        }
    }

    pub(crate) fn record(&mut self, t: i64, readings: Vec<(bool, Option<f64>)>) {
        self.times.push(t);
        self.readings.push(readings);
    }

    /// Whether node `i` counts toward the spread at `t` (a joiner is left
    /// out while it settles).
    fn counted(&self, i: usize, t: i64) -> bool {
        match self.join {
            Some((j, at)) if j == i => t >= at.saturating_add(self.join_settle),
            _ => true,
        }
    }

    /// Spread at measurement `k`; `None` if a counted live node is unsynced.
    fn spread(&self, k: usize) -> Option<f64> {
        let t = self.times[k];
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        for (i, &(alive, r)) in self.readings[k].iter().enumerate() {
            if !alive || !self.counted(i, t) {
                continue;
            }
            let r = r?;
            lo = lo.min(r);
            hi = hi.max(r);
        }
        (hi >= lo).then_some(hi - lo)
    }

    /// Every pair's distance at measurement `k` (counted, live, synced
    /// nodes), pushed onto `out`.
    fn pairs(&self, k: usize, out: &mut Vec<f64>) {
        let t = self.times[k];
        let synced: Vec<f64> = self.readings[k]
            .iter()
            .enumerate()
            .filter(|&(i, &(alive, _))| alive && self.counted(i, t))
            .filter_map(|(_, &(_, r))| r)
            .collect();
        for (a, x) in synced.iter().enumerate() {
            for y in &synced[a + 1..] {
                out.push((x - y).abs());
            }
        }
    }

    fn median_of_others(&self, k: usize, skip: usize) -> Option<f64> {
        let t = self.times[k];
        let mut v: Vec<f64> = self.readings[k]
            .iter()
            .enumerate()
            .filter(|&(i, &(alive, _))| i != skip && alive && self.counted(i, t))
            .filter_map(|(_, &(_, r))| r)
            .collect();
        median(&mut v)
    }

    /// Mean reading (swarm − true) over the live, synced nodes at `k`.
    fn mean_reading(&self, k: usize) -> Option<f64> {
        let live: Vec<f64> = self.readings[k]
            .iter()
            .filter(|(alive, _)| *alive)
            .map(|(_, r)| *r)
            .collect::<Option<Vec<f64>>>()?;
        (!live.is_empty()).then(|| live.iter().sum::<f64>() / live.len() as f64)
    }

    fn timeline_rate_ppm(&self) -> Option<f64> {
        let after: Vec<usize> = (0..self.times.len())
            .filter(|&k| self.times[k] >= self.warmup)
            .collect();
        let (&first, &last) = (after.first()?, after.last()?);
        let dt = (self.times[last] - self.times[first]) as f64;
        let dr = self.mean_reading(last)? - self.mean_reading(first)?;
        (dt > 0.0).then_some(dr / dt * 1e6)
    }

    /// Whether a join or a crash falls within `[from, to)`.
    fn eventful(&self, from: i64, to: i64) -> bool {
        [self.join.map(|j| j.1), self.crash.map(|c| c.1)]
            .into_iter()
            .flatten()
            .any(|at| at >= from && at < to)
    }

    /// The common rate's wander: per quiet 10 s step after warm-up, the
    /// mean timeline's departure from its previous 10 s trend (µs), and
    /// each quiet 10 s window's fitted rate (ppm).
    fn wander(&self) -> (Vec<f64>, Vec<f64>) {
        const STEP: i64 = 10_000_000;
        let mut departures = Vec::new();
        let mut rates = Vec::new();
        let mut from = self.warmup;
        while from.saturating_add(STEP) <= self.end {
            let to = from.saturating_add(STEP);
            if !self.eventful(from, to) {
                let pts: Vec<(f64, f64)> = (0..self.times.len())
                    .filter(|&k| self.times[k] >= from && self.times[k] < to)
                    .filter_map(|k| Some((self.times[k] as f64, self.mean_reading(k)?)))
                    .collect();
                if pts.len() >= 10
                    && let Some((_, b)) = linear_fit(&pts)
                {
                    rates.push(b * 1e6);
                }
                if to.saturating_add(STEP) <= self.end
                    && !self.eventful(to, to.saturating_add(STEP))
                {
                    departures.extend(self.departure(usize::MAX, to, false));
                }
            }
            from = to;
        }
        (departures, rates)
    }

    pub(crate) fn finish(self) -> Metrics {
        let (mut wander, rates) = self.wander();
        wander.sort_by(f64::total_cmp);
        let rate_range = rates
            .iter()
            .copied()
            .fold(None, |acc: Option<(f64, f64)>, r| {
                Some(acc.map_or((r, r), |(lo, hi)| (lo.min(r), hi.max(r))))
            })
            .map(|(lo, hi)| hi - lo);
        let spreads: Vec<Option<f64>> = (0..self.times.len()).map(|k| self.spread(k)).collect();
        let mut after: Vec<f64> = Vec::new();
        let mut unsynced = 0;
        for (k, s) in spreads.iter().enumerate() {
            if self.times[k] >= self.warmup {
                match s {
                    Some(s) => after.push(*s),
                    None => unsynced += 1,
                }
            }
        }
        after.sort_by(f64::total_cmp);
        let mut pairs = Vec::new();
        for k in (0..self.times.len()).filter(|&k| self.times[k] >= self.warmup) {
            self.pairs(k, &mut pairs);
        }
        pairs.sort_by(f64::total_cmp);
        let mut pair_p99_per_20s_us = Vec::new();
        let mut from = self.warmup;
        while from.saturating_add(PAIR_WINDOW) <= self.end {
            let mut window = Vec::new();
            for k in (0..self.times.len())
                .filter(|&k| self.times[k] >= from && self.times[k] < from + PAIR_WINDOW)
            {
                self.pairs(k, &mut window);
            }
            window.sort_by(f64::total_cmp);
            pair_p99_per_20s_us.extend(percentile(&window, 0.99));
            from = from.saturating_add(PAIR_WINDOW);
        }
        let first_event = [
            self.join.map(|j| j.1),
            self.crash.map(|c| c.1),
            Some(self.end),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.end);
        let nodes = self.readings.first().map_or(0, Vec::len);
        let mut node_error = Vec::with_capacity(nodes);
        let mut node_mean = Vec::with_capacity(nodes);
        for i in 0..nodes {
            let signed: Vec<f64> = (0..self.times.len())
                .filter(|&k| self.times[k] >= self.warmup && self.counted(i, self.times[k]))
                .filter_map(|k| {
                    let r = self.readings[k][i].1?;
                    let m = self.median_of_others(k, usize::MAX)?;
                    Some(r - m)
                })
                .collect();
            node_mean.push(
                (!signed.is_empty()).then(|| signed.iter().sum::<f64>() / signed.len() as f64),
            );
            let mut errs: Vec<f64> = signed.iter().map(|e| e.abs()).collect();
            errs.sort_by(f64::total_cmp);
            node_error.push(percentile(&errs, 0.99));
        }
        let mut timeline: Vec<SpreadPoint> = Vec::new();
        for (k, s) in spreads.iter().enumerate() {
            let sec = self.times[k] / 1_000_000;
            match timeline.last_mut() {
                Some(p) if p.t_s as i64 == sec => {
                    p.spread_us = match (p.spread_us, s) {
                        (Some(a), Some(b)) => Some(a.max(*b)),
                        _ => None,
                    };
                }
                _ => timeline.push(SpreadPoint {
                    t_s: sec as f64,
                    spread_us: *s,
                }),
            }
        }
        Metrics {
            timeline_rate_ppm: self.timeline_rate_ppm(),
            timeline_wander_p50_us: percentile(&wander, 0.5),
            timeline_wander_max_us: wander.last().copied(),
            timeline_rate_range_ppm: rate_range,
            spread_p50_us: percentile(&after, 0.5),
            spread_p99_us: percentile(&after, 0.99),
            pair_p50_us: percentile(&pairs, 0.5),
            pair_p99_us: percentile(&pairs, 0.99),
            pair_p99_per_20s_us,
            spread_max_us: after.last().copied(),
            unsynced_after_warmup: unsynced,
            converge_ms: self.stays_below(&spreads, first_event, 1_000.0),
            settle_ms: self.stays_below(&spreads, first_event, self.goal),
            join_converge_ms: self.join_converge(),
            crash_step_us: self.crash.and_then(|(c, at)| self.departure(c, at, false)),
            crash_step_per_node_us: self.crash.and_then(|(c, at)| self.departure(c, at, true)),
            quiet_wander_us: self
                .crash
                .and_then(|(c, at)| self.departure(c, at.saturating_sub(10_000_000), false)),
            quiet_wander_per_node_us: self
                .crash
                .and_then(|(c, at)| self.departure(c, at.saturating_sub(10_000_000), true)),
            join_pull_us: self.join.and_then(|(j, at)| self.departure(j, at, false)),
            join_quiet_wander_us: self
                .join
                .and_then(|(j, at)| self.departure(j, at.saturating_sub(10_000_000), false)),
            crashed_node: self.crash.map(|c| c.0),
            node_error_p99_us: node_error,
            node_error_mean_us: node_mean,
            timeline,
            exchanges: self.exchanges,
            lost: self.lost,
            late_steps: self.late_steps,
            ..Metrics::default()
        }
    }

    /// First time (ms) after which every spread before `until` is ≤ `bound`.
    fn stays_below(&self, spreads: &[Option<f64>], until: i64, bound: f64) -> Option<f64> {
        let ks: Vec<usize> = (0..self.times.len())
            .filter(|&k| self.times[k] < until)
            .collect();
        let last_bad = ks
            .iter()
            .rposition(|&k| spreads[k].is_none_or(|s| s > bound));
        match last_bad {
            None => ks.first().map(|&k| self.times[k] as f64 / 1e3),
            Some(p) if p + 1 < ks.len() => Some(self.times[ks[p + 1]] as f64 / 1e3),
            Some(_) => None,
        }
    }

    fn join_converge(&self) -> Option<f64> {
        let (j, at) = self.join?;
        let mut until = at.saturating_add(30_000_000).min(self.end);
        if let Some((_, crash)) = self.crash.filter(|c| c.1 > at) {
            until = until.min(crash);
        }
        let ks: Vec<usize> = (0..self.times.len())
            .filter(|&k| self.times[k] >= at && self.times[k] < until)
            .collect();
        let bad = |k: usize| -> bool {
            match (self.readings[k][j].1, self.median_of_others(k, j)) {
                (Some(r), Some(m)) => (r - m).abs() > JOIN_BOUND_US,
                _ => true,
            }
        };
        match ks.iter().rposition(|&k| bad(k)) {
            None => ks.first().map(|_| 0.0),
            Some(p) if p + 1 < ks.len() => Some((self.times[ks[p + 1]] - at) as f64 / 1e3),
            Some(_) => None,
        }
    }

    /// Largest departure of the survivors' mean timeline from its linear
    /// trend fitted over the 10 s before `at`, during the 10 s from `at` on,
    /// µs. The mean is taken over nodes synced throughout, so the swarm's
    /// own noise (the spread) averages out and a step stands out. With
    /// `per_node`, the largest departure of any one survivor from its own
    /// trend instead (that includes each node's noise).
    fn departure(&self, excluded: usize, at: i64, per_node: bool) -> Option<f64> {
        const WINDOW: i64 = 10_000_000;
        let (from, to) = (at.saturating_sub(WINDOW), at.saturating_add(WINDOW));
        let ks: Vec<usize> = (0..self.times.len())
            .filter(|&k| self.times[k] >= from && self.times[k] < to)
            .collect();
        let nodes = self.readings.first().map_or(0, Vec::len);
        // Survivors: alive throughout and synced at 80% of the instants (a
        // baseline node re-syncing to a new reference misses a few).
        let survivors: Vec<usize> = (0..nodes)
            .filter(|&i| {
                let synced = ks
                    .iter()
                    .filter(|&&k| self.readings[k][i].1.is_some())
                    .count();
                i != excluded
                    && ks.iter().all(|&k| self.readings[k][i].0)
                    && synced * 5 >= ks.len() * 4
            })
            .collect();
        if survivors.is_empty() {
            return None;
        }
        let tracks: Vec<Vec<usize>> = if per_node {
            survivors.iter().map(|&i| vec![i]).collect()
        } else {
            vec![survivors]
        };
        let mut worst: Option<f64> = None;
        for track in &tracks {
            // The track's mean, only where every member has a reading.
            let value = |k: usize| -> Option<f64> {
                let mut sum = 0.0;
                for &i in track {
                    sum += self.readings[k][i].1?;
                }
                Some(sum / track.len() as f64)
            };
            let pre: Vec<(f64, f64)> = ks
                .iter()
                .filter(|&&k| self.times[k] < at)
                .filter_map(|&k| Some((self.times[k] as f64, value(k)?)))
                .collect();
            if pre.len() < 10 {
                continue;
            }
            let Some((a, b)) = linear_fit(&pre) else {
                continue;
            };
            for &k in ks.iter().filter(|&&k| self.times[k] >= at) {
                let Some(v) = value(k) else { continue };
                let d = (v - (a + b * self.times[k] as f64)).abs();
                worst = Some(worst.map_or(d, |w| w.max(d)));
            }
        }
        worst
    }
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted.get(idx).copied()
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Least-squares line `r = a + b·t` (t relative to the first point).
fn linear_fit(pts: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = pts.len() as f64;
    let t0 = pts.first()?.0;
    let (st, sr) = pts
        .iter()
        .fold((0.0, 0.0), |(a, b), &(t, r)| (a + (t - t0), b + r));
    let (mt, mr) = (st / n, sr / n);
    let (mut sxx, mut sxy) = (0.0, 0.0);
    for &(t, r) in pts {
        let dt = t - t0 - mt;
        sxx += dt * dt;
        sxy += dt * (r - mr);
    }
    if sxx <= 0.0 {
        return None;
    }
    let b = sxy / sxx;
    // Back to absolute t: r = mr + b (t − t0 − mt).
    Some((mr - b * (t0 + mt), b))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Three nodes, one of them `x` µs off the other two: one spread of `x`,
    /// but pairs of `x`, `x` and 0, as the real benchmark pools them.
    #[test]
    fn pairs_pool_every_pair_and_the_spread_is_the_largest() {
        let mut s = Scenario::jitter();
        s.warmup_s = 0.0;
        let mut rec = Recorder::new(&s, None, None);
        for k in 0..100 {
            let x = if k % 10 == 0 { 90.0 } else { 30.0 };
            rec.record(
                k * 100_000,
                vec![(true, Some(5.0)), (true, Some(5.0)), (true, Some(5.0 + x))],
            );
        }
        let m = rec.finish();
        assert_eq!(m.spread_p50_us, Some(30.0));
        assert_eq!(m.spread_p99_us, Some(90.0));
        // 300 pairs: 100 zeros, 180 of 30, 20 of 90.
        assert_eq!(m.pair_p50_us, Some(30.0));
        assert_eq!(m.pair_p99_us, Some(90.0));
        let mut rec = Recorder::new(&s, None, None);
        for k in 0..1_000 {
            let x = if k < 988 { 30.0 } else { 90.0 };
            rec.record(
                k * 100_000,
                vec![(true, Some(0.0)), (true, Some(0.0)), (true, Some(x))],
            );
        }
        let m = rec.finish();
        // 12 of 1,000 spreads are 90, past their 99th percentile; 24 of 3,000
        // pairs are not.
        assert_eq!(m.spread_p99_us, Some(90.0));
        assert_eq!(m.pair_p99_us, Some(30.0));
    }

    /// Each 20 s window has its own p99: one meets the bad stretch, one not.
    #[test]
    fn twenty_second_windows_each_get_their_p99() {
        let mut s = Scenario::jitter();
        s.warmup_s = 0.0;
        s.duration_s = 45.0;
        let mut rec = Recorder::new(&s, None, None);
        for k in 0..450 {
            let x = if (300..320).contains(&k) { 80.0 } else { 10.0 };
            rec.record(
                k * 100_000,
                vec![(true, Some(0.0)), (true, Some(0.0)), (true, Some(x))],
            );
        }
        let m = rec.finish();
        assert_eq!(m.pair_p99_per_20s_us, vec![10.0, 80.0]);
    }

    /// The quiet stretch before a join is measured like the join itself: a
    /// swarm that moves only at the join shows it there and not before.
    #[test]
    fn a_join_that_moves_the_swarm_stands_out_of_the_quiet_stretch() {
        let mut s = Scenario::lan();
        s.warmup_s = 0.0;
        s.join_at_s = Some(30.0);
        let mut rec = Recorder::new(&s, Some(2), None);
        for k in 0..500 {
            let t = k * 100_000;
            let moved = if t >= 30_000_000 { 25.0 } else { 0.0 };
            let r = 100.0 + t as f64 * 3e-6 + moved;
            rec.record(
                t,
                vec![(true, Some(r)), (true, Some(r)), (t >= 30_000_000, None)],
            );
        }
        let m = rec.finish();
        assert!((m.join_pull_us.unwrap() - 25.0).abs() < 1e-6, "{m:?}");
        assert!(m.join_quiet_wander_us.unwrap() < 1e-6, "{m:?}");
    }
}
