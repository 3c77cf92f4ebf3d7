//! The swarm clocks alone, during `firefly bench sync`'s steady window.
//!
//! A flash offset is the clock and the output path together. To tell them
//! apart, the benchmark reads every node's swarm clock against the
//! machine's wall clock (`clock` in `GET /api/state`, read inside the node)
//! a few times a second; nodes on one machine share that wall clock, so
//! each node's `swarm − wall` at one wall instant compares the clocks
//! directly. It also keeps what each node's rate was made of (drift
//! compensation and slew), which is where a timeline that wanders shows.

use crate::cmd::local_swarm::{Node, get_json, percentile_abs};
use serde_json::json;
use std::collections::BTreeMap;

/// Readings further apart than this are not interpolated between, µs.
const GAP_MICROS: f64 = 1_500_000.0;
/// Readings whose two wall reads lay further apart than this are left out, µs.
const READ_LIMIT_MICROS: i64 = 200;

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
}

impl ClockReadings {
    /// Reads each node's clock once (a node that does not answer, or an
    /// older one without the reading, is skipped).
    pub(crate) async fn poll(&mut self, nodes: &[Node]) {
        for node in nodes {
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
        let mut all = Vec::new();
        let mut means = BTreeMap::new();
        let nodes: Vec<(&usize, &Vec<Reading>)> = self.by_node.iter().collect();
        for (k, (i, a)) in nodes.iter().enumerate() {
            for (j, b) in &nodes[k + 1..] {
                let o = pair(a, b);
                if !o.is_empty() {
                    means.insert(format!("{i}-{j}"), o.iter().sum::<f64>() / o.len() as f64);
                }
                all.extend(o);
            }
        }
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
}
