//! The simulated network: one-way delays, jitter, spikes, asymmetry and loss.
//!
//! Seeded and sans-IO like str0m's netem: it only draws numbers. Each
//! direction of each message gets its own draw: a base delay, exponential
//! jitter, with probability `spike_prob` an extra uniform spike (Wi-Fi
//! retransmissions, power save), and on links `a → b` with `a < b` a fixed
//! extra `asymmetry`, the one error no two-way exchange can see.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Parameters of the network model (a subset of [`super::Scenario`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Netem {
    pub(crate) base: f64,
    pub(crate) jitter_mean: f64,
    pub(crate) spike_prob: f64,
    pub(crate) spike_min: f64,
    pub(crate) spike_max: f64,
    pub(crate) loss: f64,
    pub(crate) asymmetry: f64,
}

impl Netem {
    /// One-way delay of a message `from → to` in µs, or `None` if it is lost.
    pub(crate) fn one_way(&self, rng: &mut ChaCha8Rng, from: usize, to: usize) -> Option<i64> {
        if rng.random::<f64>() < self.loss {
            return None;
        }
        let mut d = self.base + exponential(rng, self.jitter_mean);
        if self.spike_prob > 0.0 && rng.random::<f64>() < self.spike_prob {
            d += self.spike_min + rng.random::<f64>() * (self.spike_max - self.spike_min).max(0.0);
        }
        if from < to {
            d += self.asymmetry;
        }
        Some(d.max(0.0).round() as i64)
    }
}

/// Exponential draw with the given mean (inverse CDF).
pub(crate) fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 0.0;
    }
    -mean * (1.0 - rng.random::<f64>()).ln()
}
