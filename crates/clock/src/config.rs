//! Tuning of a [`crate::SwarmClock`], with quinn-style setters.
//!
//! Every setter takes `&mut self`, returns `&mut Self` and documents its
//! default. The defaults are what the simulator's LAN, Wi-Fi and Scale
//! scenarios were tuned with (see `BENCHMARKS.md`); durations are microseconds
//! on the node's local clock.

use crate::estimator::EstimatorConfig;

/// Tuning of a [`crate::SwarmClock`]. Start from [`Config::default`].
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) probe_interval: i64,
    pub(crate) max_probe_interval: i64,
    pub(crate) probe_target: f64,
    pub(crate) tick_interval: i64,
    pub(crate) max_sync_peers: usize,
    pub(crate) min_samples: usize,
    pub(crate) stale_after: i64,
    pub(crate) max_delay: i64,
    pub(crate) max_offset: i64,
    pub(crate) outlier: f64,
    pub(crate) adopt_after: i64,
    pub(crate) acquire_after: i64,
    pub(crate) acquire_uncertainty: f64,
    pub(crate) solo_after: i64,
    pub(crate) phase_gain: f64,
    pub(crate) phase_gain_acquire: f64,
    pub(crate) settle_time: i64,
    pub(crate) rate_gain: f64,
    pub(crate) max_slew: f64,
    pub(crate) max_skew: f64,
    pub(crate) seed: u64,
    pub(crate) estimator: EstimatorConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            probe_interval: 100_000,
            max_probe_interval: 250_000,
            probe_target: 5.0,
            tick_interval: 250_000,
            max_sync_peers: 8,
            min_samples: 4,
            stale_after: 2_000_000,
            max_delay: 1_000_000,
            max_offset: 86_400_000_000,
            outlier: 5_000.0,
            adopt_after: 3_000_000,
            acquire_after: 1_000_000,
            acquire_uncertainty: 150.0,
            solo_after: 5_000_000,
            phase_gain: 0.02,
            phase_gain_acquire: 0.15,
            settle_time: 15_000_000,
            rate_gain: 0.02,
            max_slew: 500e-6,
            max_skew: 1_000e-6,
            seed: 0,
            estimator: EstimatorConfig {
                max_samples: 1_200,
                max_age: 120_000_000,
                jump_threshold: 2_000.0,
                max_rate: 2e-3,
                rate_prior_sigma: 200e-6,
            },
        }
    }
}

fn micros(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl Config {
    /// Time between two probes of the same peer. Default 100 ms (10 per peer
    /// per second: the per-direction minima need many samples).
    pub fn probe_interval(&mut self, d: std::time::Duration) -> &mut Self {
        self.probe_interval = micros(d).max(1);
        self
    }

    /// Longest time between two probes of a peer whose estimate is better
    /// than [`Config::probe_target`] (adaptive probing, as NTP and chrony
    /// lengthen their poll once locked). Default 250 ms; set it to the probe
    /// interval to probe at a fixed rate.
    pub fn max_probe_interval(&mut self, d: std::time::Duration) -> &mut Self {
        self.max_probe_interval = micros(d).max(1);
        self
    }

    /// Probes `factor` times as often as configured (both
    /// [`Config::probe_interval`] and [`Config::max_probe_interval`] divided
    /// by it); a benchmark that doubles the rate splits out the time
    /// exchange's cost. `factor` is clamped to 0.1–10.
    pub fn scale_probe_rate(&mut self, factor: f64) -> &mut Self {
        let factor = if factor.is_finite() {
            factor.clamp(0.1, 10.0)
        } else {
            1.0
        };
        self.probe_interval = ((self.probe_interval as f64 / factor).round() as i64).max(1);
        self.max_probe_interval = ((self.max_probe_interval as f64 / factor).round() as i64).max(1);
        self
    }

    /// A peer estimate better than this (one sigma) lets its probes space
    /// out, one twice as bad brings them back to [`Config::probe_interval`].
    /// Default 15 µs.
    pub fn probe_target(&mut self, d: std::time::Duration) -> &mut Self {
        self.probe_target = micros(d).max(1) as f64;
        self
    }

    /// Time between two coupling steps (`handle_timeout` work). Default 250 ms.
    pub fn tick_interval(&mut self, d: std::time::Duration) -> &mut Self {
        self.tick_interval = micros(d).max(1);
        self
    }

    /// How many peers this node probes; the rest are chosen among at random.
    /// Default 8.
    pub fn max_sync_peers(&mut self, n: usize) -> &mut Self {
        self.max_sync_peers = n.max(1);
        self
    }

    /// Samples a peer needs before its estimate is used. Default 4.
    pub fn min_samples(&mut self, n: usize) -> &mut Self {
        self.min_samples = n.max(1);
        self
    }

    /// A peer with no sample for this long is left out of the coupling
    /// (it probably crashed). Default 2 s.
    pub fn stale_after(&mut self, d: std::time::Duration) -> &mut Self {
        self.stale_after = micros(d).max(1);
        self
    }

    /// Round trips (or peer turnarounds) longer than this are refused. Default 1 s.
    pub fn max_delay(&mut self, d: std::time::Duration) -> &mut Self {
        self.max_delay = micros(d).max(1);
        self
    }

    /// Samples whose peer clock is further than this from our swarm clock are
    /// refused. Default one day. Pick the initial swarm reading (see
    /// [`crate::SwarmClock::new`]) so that honest peers start within it.
    pub fn max_offset(&mut self, d: std::time::Duration) -> &mut Self {
        self.max_offset = micros(d).max(1);
        self
    }

    /// Peers further than this from our timeline are not averaged with (a
    /// joiner, the other side of a healed partition). Default 5 ms.
    pub fn outlier(&mut self, d: std::time::Duration) -> &mut Self {
        self.outlier = micros(d).max(1) as f64;
        self
    }

    /// A synced node steps forward to peers that stay ahead by more than
    /// [`Config::outlier`] for this long (partitions heal onto the later
    /// timeline, so swarm time never runs backward). Default 3 s; it must be
    /// longer than a joiner takes to acquire.
    pub fn adopt_after(&mut self, d: std::time::Duration) -> &mut Self {
        self.adopt_after = micros(d).max(1);
        self
    }

    /// The longest an unsynced node gathers samples before it adopts the
    /// swarm's timeline (it adopts earlier once the estimate is good enough,
    /// see [`Config::acquire_uncertainty`]). Default 1 s.
    pub fn acquire_after(&mut self, d: std::time::Duration) -> &mut Self {
        self.acquire_after = micros(d).max(0);
        self
    }

    /// An unsynced node adopts the swarm's timeline as soon as its estimate of
    /// it is this good (one sigma). Default 150 µs.
    pub fn acquire_uncertainty(&mut self, d: std::time::Duration) -> &mut Self {
        self.acquire_uncertainty = micros(d).max(1) as f64;
        self
    }

    /// A node that has heard from no peer for this long declares its own
    /// timeline the swarm's. Default 5 s.
    pub fn solo_after(&mut self, d: std::time::Duration) -> &mut Self {
        self.solo_after = micros(d).max(0);
        self
    }

    /// Fraction of the phase error to the peers' consensus corrected per tick
    /// once settled (by slewing, never stepping). Low, so a settled swarm
    /// averages its estimates' noise instead of chasing it. Default 0.02.
    pub fn phase_gain(&mut self, g: f64) -> &mut Self {
        if g.is_finite() {
            self.phase_gain = g.clamp(0.0, 1.0);
        }
        self
    }

    /// Phase gain right after a step (acquisition, adoption); it decays to
    /// [`Config::phase_gain`] over [`Config::settle_time`]. Default 0.15.
    pub fn phase_gain_acquire(&mut self, g: f64) -> &mut Self {
        if g.is_finite() {
            self.phase_gain_acquire = g.clamp(0.0, 1.0);
        }
        self
    }

    /// Time constant of the phase gain's decay after a step. Default 15 s.
    pub fn settle_time(&mut self, d: std::time::Duration) -> &mut Self {
        self.settle_time = micros(d).max(1);
        self
    }

    /// Smallest fraction of the rate error to the peers' consensus corrected
    /// per tick. The rate filter takes more while its own estimate is less
    /// certain than the peers' windows (right after a step). Default 0.02.
    pub fn rate_gain(&mut self, g: f64) -> &mut Self {
        if g.is_finite() {
            self.rate_gain = g.clamp(0.0, 1.0);
        }
        self
    }

    /// Largest rate offset used to slew the phase, in ppm. Default 500.
    pub fn max_slew_ppm(&mut self, ppm: f64) -> &mut Self {
        if ppm.is_finite() {
            self.max_slew = ppm.clamp(0.0, 10_000.0) * 1e-6;
        }
        self
    }

    /// Largest rate of the swarm clock against the local one, in ppm
    /// (clock drift plus consensus). Default 1000.
    pub fn max_skew_ppm(&mut self, ppm: f64) -> &mut Self {
        if ppm.is_finite() {
            self.max_skew = ppm.clamp(0.0, 10_000.0) * 1e-6;
        }
        self
    }

    /// Seed of the random choices (which peers to probe, probe phases).
    /// Default 0; give each node its own.
    pub fn seed(&mut self, seed: u64) -> &mut Self {
        self.seed = seed;
        self
    }

    /// Most samples kept per peer. Default 1,200.
    pub fn window_samples(&mut self, n: usize) -> &mut Self {
        self.estimator.max_samples = n.max(2);
        self
    }

    /// Oldest sample kept per peer, relative to its newest. Default 120 s; a
    /// fit reaches back between a sixth of it and all of it, by how noisy the
    /// link is.
    pub fn window(&mut self, d: std::time::Duration) -> &mut Self {
        self.estimator.max_age = micros(d).max(1);
        self
    }

    /// A sample further than this off a peer's fit is a clock jump (reset the
    /// window once a second sample confirms it). Default 2 ms.
    pub fn jump_threshold(&mut self, d: std::time::Duration) -> &mut Self {
        self.estimator.jump_threshold = micros(d).max(1) as f64;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaled_probe_rate_divides_both_intervals_within_its_range() {
        let base = Config::default();
        let mut twice = Config::default();
        twice.scale_probe_rate(2.0);
        assert_eq!(twice.probe_interval, base.probe_interval / 2);
        assert_eq!(twice.max_probe_interval, base.max_probe_interval / 2);
        let mut huge = Config::default();
        huge.scale_probe_rate(1e9);
        assert_eq!(huge.probe_interval, base.probe_interval / 10);
        let mut nan = Config::default();
        nan.scale_probe_rate(f64::NAN);
        assert_eq!(nan.probe_interval, base.probe_interval);
    }
}
