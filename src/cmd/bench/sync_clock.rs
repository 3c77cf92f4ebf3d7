//! The swarm clocks alone, during `firefly bench sync`'s steady window.
//!
//! A flash offset is the clock and the output path together. To tell them
//! apart, the benchmark reads every node's swarm clock against the
//! machine's wall clock (`clock` in `GET /api/state`, read inside the node)
//! a few times a second; nodes on one machine share that wall clock, so
//! each node's `swarm − wall` at one wall instant compares the clocks
//! directly. It also keeps what each node's rate was made of (drift
//! compensation and slew), which is where a timeline that wanders shows.

use crate::cmd::local_swarm::{Node, get_json, least_squares_line, percentile_abs};
use serde_json::json;
use std::collections::BTreeMap;

/// Readings further apart than this are not interpolated between, µs.
const GAP_MICROS: f64 = 1_500_000.0;
/// Readings whose two wall reads lay further apart than this are left out,
/// µs: the pair's midpoint is then within half of it of the swarm read (at
/// 200 µs, a node descheduled between the reads put one reading 93 µs off).
const READ_LIMIT_MICROS: i64 = 50;

/// One node's reading.
#[derive(Debug, Clone, Copy)]
struct Reading {
    /// Wall clock, µs since the epoch.
    wall: f64,
    /// Swarm minus wall, µs.
    ahead: f64,
    drift_ppm: f64,
    slew_ppm: f64,
}

/// Every node's readings, by node index.
#[derive(Debug, Default)]
pub(crate) struct ClockReadings {
    by_node: BTreeMap<usize, Vec<Reading>>,
    /// What each node's clock believed of each peer at every reading
    /// (`"i→j"`: j's swarm clock minus i's, µs), to hold against the truth.
    views: BTreeMap<String, Vec<f64>>,
    /// The path bias each node removed from those views, µs.
    biases: BTreeMap<String, Vec<f64>>,
    /// Each node's sample counters at its latest reading.
    stats: BTreeMap<usize, serde_json::Value>,
    /// A node not read (a joiner, when the others' move is measured).
    skip: Option<usize>,
}

impl ClockReadings {
    /// Readings of every node but `skip`.
    pub(crate) fn except(skip: usize) -> Self {
        Self {
            skip: Some(skip),
            ..Self::default()
        }
    }

    /// Reads the clocks every 250 ms for `duration`.
    pub(crate) async fn poll_for(&mut self, nodes: &[Node], duration: std::time::Duration) {
        let until = tokio::time::Instant::now() + duration;
        while tokio::time::Instant::now() < until {
            self.poll(nodes).await;
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    /// How far the read nodes' mean timeline left its course in
    /// `[split, until)` (wall µs since the epoch; a joiner started at
    /// `split`): each node's `swarm − wall` is fitted with a line over its
    /// readings in `[fit_from, split)`, its departures from that line after
    /// `split` are averaged per second over the nodes, and the largest is
    /// returned (`swarm_moved_us`) with the largest single node's, the fit's
    /// own noise, how the nodes' drift compensation changed from the fit
    /// window to the last quarter of `[split, until)`, and how their whole
    /// rate (with the slew) changed from the fit window to `[split, until)`
    /// (µs and ppm), as JSON. The same call over a stretch in which
    /// nothing happened measures the swarm's own wander: under jitter the
    /// timeline's rate wanders by ppm, and that alone moves it tens of µs
    /// from any line.
    pub(crate) fn departure(&self, fit_from: f64, split: f64, until: f64) -> serde_json::Value {
        let mut per_second: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        let mut single: f64 = 0.0;
        let mut noise: f64 = 0.0;
        let mut drift_changes = Vec::new();
        let mut rate_changes = Vec::new();
        let late = until - (until - split) / 4.0;
        for readings in self.by_node.values() {
            let fit: Vec<&Reading> = readings
                .iter()
                .filter(|r| r.wall >= fit_from && r.wall < split)
                .collect();
            let before: Vec<(f64, f64)> = fit
                .iter()
                .map(|r| ((r.wall - split) / 1e6, r.ahead))
                .collect();
            if before.len() < 5 {
                continue;
            }
            let Some((slope, intercept)) = least_squares_line(&before) else {
                continue;
            };
            for &(x, y) in &before {
                noise = noise.max((y - (intercept + slope * x)).abs());
            }
            let after: Vec<&Reading> = readings
                .iter()
                .filter(|r| r.wall >= split && r.wall < until)
                .collect();
            let mut seconds: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
            for r in &after {
                let x = (r.wall - split) / 1e6;
                let off = r.ahead - (intercept + slope * x);
                single = single.max(off.abs());
                seconds.entry(x.floor() as i64).or_default().push(off);
            }
            for (second, offs) in seconds {
                per_second
                    .entry(second)
                    .or_default()
                    .push(offs.iter().sum::<f64>() / offs.len() as f64);
            }
            let drift = |rs: &mut dyn Iterator<Item = &&Reading>| -> Option<f64> {
                let v: Vec<f64> = rs.map(|r| r.drift_ppm).filter(|d| d.is_finite()).collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            };
            let rate = |rs: &[&Reading]| -> Option<f64> {
                let v: Vec<f64> = rs
                    .iter()
                    .map(|r| r.drift_ppm + r.slew_ppm)
                    .filter(|d| d.is_finite())
                    .collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            };
            if let (Some(a), Some(b)) = (rate(&fit), rate(&after)) {
                rate_changes.push(b - a);
            }
            if let (Some(a), Some(b)) = (
                drift(&mut fit.iter()),
                drift(&mut after.iter().filter(|r| r.wall >= late)),
            ) {
                drift_changes.push(b - a);
            }
        }
        let series: Vec<f64> = per_second
            .values()
            .map(|v| v.iter().sum::<f64>() / v.len() as f64)
            .collect();
        let mean = series
            .iter()
            .map(|x| x.abs())
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        json!({
            "swarm_moved_us": mean,
            "per_second_us": series.iter().map(|x| (x * 10.0).round() / 10.0).collect::<Vec<_>>(),
            "largest_node_us": single,
            "fit_noise_before_us": noise,
            "fit_seconds": (split - fit_from) / 1e6,
            "seconds_after": per_second.len(),
            "drift_change_ppm": drift_changes,
            // Each node's mean rate against its crystal (drift compensation
            // plus slew) after the split minus in the fit window: what bent
            // its course, ppm.
            "rate_change_ppm": rate_changes,
        })
    }

    /// Reads each node's clock once (a node that does not answer, or an
    /// older one without the reading, is skipped).
    pub(crate) async fn poll(&mut self, nodes: &[Node]) {
        for node in nodes.iter().filter(|n| Some(n.index) != self.skip) {
            let Ok(state) = get_json(node.http, "/api/state").await else {
                continue;
            };
            let c = &state["clock"];
            let (Some(wall), Some(swarm), Some(read)) = (
                c["wall_us"].as_i64(),
                c["swarm_us"].as_i64(),
                c["read_us"].as_i64(),
            ) else {
                continue;
            };
            if read > READ_LIMIT_MICROS {
                continue;
            }
            for peer in state["peers"].as_array().into_iter().flatten() {
                let j = nodes
                    .iter()
                    .find(|n| peer["peer_id"].as_str() == Some(n.peer.as_str()))
                    .map(|n| n.index);
                if let (Some(j), Some(offset)) = (j, peer["clock_offset_us"].as_f64()) {
                    self.views
                        .entry(format!("{}→{j}", node.index))
                        .or_default()
                        .push(offset);
                    if let Some(bias) = peer["clock_path_bias_us"].as_f64() {
                        self.biases
                            .entry(format!("{}→{j}", node.index))
                            .or_default()
                            .push(bias);
                    }
                }
            }
            self.stats.insert(node.index, c["stats"].clone());
            self.by_node.entry(node.index).or_default().push(Reading {
                wall: wall as f64,
                ahead: swarm.saturating_sub(wall) as f64,
                drift_ppm: c["drift_ppm"].as_f64().unwrap_or(f64::NAN),
                slew_ppm: c["slew_ppm"].as_f64().unwrap_or(f64::NAN),
            });
        }
    }

    /// The clocks' pairwise offsets (b's swarm clock minus a's, at each of
    /// a's readings, b interpolated) and per-node rate figures, as JSON.
    pub(crate) fn report(&self) -> serde_json::Value {
        let nodes: Vec<(usize, &Vec<Reading>)> =
            self.by_node.iter().map(|(i, r)| (*i, r)).collect();
        let (all, means) = super::sync::pairwise(&nodes, |a, b| pair(a, b));
        let rates: BTreeMap<String, serde_json::Value> = self
            .by_node
            .iter()
            .map(|(i, r)| {
                let stat = |f: fn(&Reading) -> f64| {
                    let v: Vec<f64> = r.iter().map(f).filter(|x| x.is_finite()).collect();
                    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
                    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    json!({ "mean": mean, "min": min, "max": max })
                };
                (
                    i.to_string(),
                    json!({
                        "readings": r.len(),
                        "drift_ppm": stat(|r| r.drift_ppm),
                        "slew_ppm": stat(|r| r.slew_ppm),
                    }),
                )
            })
            .collect();
        let mean = |m: &BTreeMap<String, Vec<f64>>| -> BTreeMap<String, f64> {
            m.iter()
                .map(|(k, v)| (k.clone(), v.iter().sum::<f64>() / v.len().max(1) as f64))
                .collect()
        };
        json!({
            "view_mean_us": mean(&self.views),
            "path_bias_mean_us": mean(&self.biases),
            "stats": self.stats,
            "samples": all.len(),
            "offset_p50_us": percentile_abs(&all, 50.0),
            "offset_p99_us": percentile_abs(&all, 99.0),
            "offset_max_us": percentile_abs(&all, 100.0),
            "pair_mean_us": means,
            "rates": rates,
        })
    }
}

/// `b − a` at each of `a`'s readings that `b` brackets closely, µs.
fn pair(a: &[Reading], b: &[Reading]) -> Vec<f64> {
    a.iter()
        .filter_map(|r| {
            let i = b.partition_point(|q| q.wall <= r.wall);
            let (p, q) = (b.get(i.checked_sub(1)?)?, b.get(i)?);
            if q.wall - p.wall > GAP_MICROS || q.wall <= p.wall {
                return None;
            }
            let at = p.ahead + (r.wall - p.wall) / (q.wall - p.wall) * (q.ahead - p.ahead);
            Some(at - r.ahead)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(wall: f64, ahead: f64) -> Reading {
        Reading {
            wall,
            ahead,
            drift_ppm: 0.0,
            slew_ppm: 0.0,
        }
    }

    #[test]
    fn pairs_interpolate_and_skip_gaps() {
        let a = [reading(1_000_000.0, 100.0), reading(5_000_000.0, 100.0)];
        // b runs 1 µs per 10 ms ahead of a, read at other instants.
        let b: Vec<Reading> = (0..4)
            .map(|k| {
                let wall = 500_000.0 + 1_000_000.0 * f64::from(k);
                reading(wall, 150.0 + wall / 10_000.0)
            })
            .collect();
        let o = pair(&a, &b);
        // Only a's first reading lies between two of b's.
        assert_eq!(o.len(), 1);
        assert!((o[0] - (150.0 + 100.0 - 100.0)).abs() < 1e-6, "{o:?}");
        let mut readings = ClockReadings::default();
        readings.by_node.insert(0, a.to_vec());
        readings.by_node.insert(1, b);
        let report = readings.report();
        assert_eq!(report["samples"], 1);
        assert!((report["pair_mean_us"]["0-1"].as_f64().unwrap_or(0.0) - 150.0).abs() < 1e-6);
    }

    #[test]
    fn a_timeline_that_moves_at_the_split_is_seen_and_a_straight_one_is_not() {
        let mut readings = ClockReadings::default();
        let split = 10_000_000.0;
        // Node 0 runs straight at 130 ppm; node 1 too, until it moves 40 µs at the split.
        let course = |wall: f64| 500.0 + wall * 130e-6;
        let walls: Vec<f64> = (0..80).map(|k| 250_000.0 * f64::from(k)).collect();
        readings
            .by_node
            .insert(0, walls.iter().map(|&w| reading(w, course(w))).collect());
        readings.by_node.insert(
            1,
            walls
                .iter()
                .map(|&w| reading(w, course(w) + if w >= split { 40.0 } else { 0.0 }))
                .collect(),
        );
        let moved = readings.departure(0.0, split, 2.0 * split);
        assert!(
            (moved["swarm_moved_us"].as_f64().unwrap() - 20.0).abs() < 1e-6,
            "{moved}"
        );
        assert!(
            (moved["largest_node_us"].as_f64().unwrap() - 40.0).abs() < 1e-6,
            "{moved}"
        );
        assert!(
            moved["fit_noise_before_us"].as_f64().unwrap() < 1e-6,
            "{moved}"
        );
        readings.by_node.remove(&1);
        let still = readings.departure(0.0, split, 2.0 * split);
        assert!(still["swarm_moved_us"].as_f64().unwrap() < 1e-6, "{still}");
    }
}
