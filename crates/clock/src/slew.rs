//! Slew control: keeping a player's output in phase with the swarm timeline.
//!
//! A playing node measures its *phase error*: the position of the frame it
//! emits minus the position the timeline says it should emit now, in
//! microseconds of audio (positive: the player is ahead). [`SlewController`]
//! turns that into a playback rate ratio within ±[`SlewConfig::max_ppm`] of 1
//! (inaudible), or into [`Correction::Realign`] when the error is beyond
//! [`SlewConfig::realign_micros`] and only a seek can fix it.
//!
//! The controller learns the player's own drift against the timeline (an
//! observer: the error's trend minus the rate it asked for) and cancels it,
//! then closes the remaining error exponentially. It never commands more
//! correction than the error left, so the error decays to zero without
//! crossing it once the drift is known. It is sans-IO like the rest of the
//! crate: `now` is the caller's.

use crate::time::LocalMicros;

/// Tuning of a [`SlewController`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SlewConfig {
    /// Largest rate deviation from 1, ppm. Default 500.
    pub max_ppm: f64,
    /// Errors beyond this are stepped (re-aligned), µs. Default 50 ms.
    pub realign_micros: f64,
    /// Time constant of the exponential error decay, µs. Default 2 s.
    pub time_constant_micros: f64,
    /// Fraction of the drift observer's residual taken per update. Default 0.2.
    pub drift_gain: f64,
}

impl Default for SlewConfig {
    fn default() -> Self {
        Self {
            max_ppm: 500.0,
            realign_micros: 50_000.0,
            time_constant_micros: 2_000_000.0,
            drift_gain: 0.2,
        }
    }
}

/// What the player should do next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Correction {
    /// Play at this rate ratio (1.0 = nominal; within ±`max_ppm`) until the
    /// next update.
    Rate(f64),
    /// The error is too large to slew away: seek by `by_micros` (negative:
    /// jump back, the player is ahead), then keep updating.
    Realign {
        /// How far to move the playback position, µs.
        by_micros: i64,
    },
}

/// Updates closer together than this (or than the usual spacing, when
/// longer) teach the drift observer only in proportion, µs.
const MIN_OBSERVATION_MICROS: f64 = 5_000.0;

/// Phase-error controller for one playing stream. See the module doc.
#[derive(Debug, Clone)]
pub struct SlewController {
    config: SlewConfig,
    /// Learned drift of the player against the timeline (rate offset, not ppm).
    drift: f64,
    /// Previous update: (local time, error µs, rate offset commanded).
    last: Option<(i64, f64, f64)>,
    /// Typical spacing of updates, µs: a step never outlasts the decay.
    interval: f64,
}

impl SlewController {
    /// A controller that knows no drift yet.
    pub fn new(config: SlewConfig) -> Self {
        Self {
            config,
            drift: 0.0,
            last: None,
            interval: 0.0,
        }
    }

    /// The player's drift against the timeline learned so far, ppm
    /// (positive: it runs fast).
    pub fn drift_ppm(&self) -> f64 {
        self.drift * 1e6
    }

    /// Forgets the error history (after a seek, pause or track change) but
    /// keeps the learned drift.
    pub fn reset(&mut self) {
        self.last = None;
    }

    /// Feeds the phase error measured at `now` (µs, positive: ahead) and
    /// returns the correction to apply until the next update. A non-finite
    /// error is ignored (the previous rate is kept).
    pub fn update(&mut self, now: LocalMicros, phase_error_micros: f64) -> Correction {
        let max = self.config.max_ppm.abs() * 1e-6;
        let error = phase_error_micros;
        if !error.is_finite() {
            let rate = self.last.map_or(-self.drift, |l| l.2);
            return Correction::Rate(1.0 + rate.clamp(-max, max));
        }
        if error.abs() > self.config.realign_micros {
            self.last = None;
            return Correction::Realign {
                by_micros: (-error).round() as i64,
            };
        }
        if let Some((t0, e0, u0)) = self.last {
            let dt = now.0.saturating_sub(t0) as f64;
            if dt > 0.0 {
                let observed = (error - e0) / dt;
                let residual = observed - (u0 + self.drift);
                // An error's noise (a fraction of a frame) over a short span
                // reads as a wild rate: a start late in an output period
                // gives two updates a few frames apart, and taken at full
                // weight those few frames taught a drift of −2,000 ppm that
                // ran the player 1,500 ppm fast for a tenth of a second.
                // Such spans count in proportion to their length.
                let span = self.interval.max(MIN_OBSERVATION_MICROS);
                let weight = (dt / span).min(1.0);
                // Bounded: a player cannot drift more than a few hundred ppm;
                // anything wilder is a measurement glitch, not drift.
                self.drift =
                    (self.drift + self.config.drift_gain * weight * residual).clamp(-2e-3, 2e-3);
                if dt >= span / 2.0 {
                    self.interval = if self.interval > 0.0 {
                        0.8 * self.interval + 0.2 * dt
                    } else {
                        dt
                    };
                }
            }
        }
        let tau = self
            .config
            .time_constant_micros
            .max(2.0 * self.interval)
            .max(1.0);
        // Total error rate wanted: −error/τ. Never more than closes the error
        // within the next interval, so the decay cannot cross zero.
        let mut wanted = -error / tau;
        if self.interval > 0.0 {
            let cap = error.abs() / self.interval;
            wanted = wanted.clamp(-cap, cap);
        }
        let rate = (wanted - self.drift).clamp(-max, max);
        self.last = Some((now.0, error, rate));
        Correction::Rate(1.0 + rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A player whose clock runs `drift` fast against the timeline, starting
    /// `error0` µs ahead, updated every `dt` µs; returns the error history.
    fn run(drift: f64, error0: f64, dt: i64, steps: usize) -> Vec<f64> {
        let mut c = SlewController::new(SlewConfig::default());
        let mut error = error0;
        let mut out = Vec::new();
        for k in 0..steps {
            let now = LocalMicros(k as i64 * dt);
            match c.update(now, error) {
                Correction::Rate(r) => {
                    assert!((r - 1.0).abs() <= 500e-6 + 1e-12, "rate {r}");
                    error += ((r * (1.0 + drift)) - 1.0) * dt as f64;
                }
                Correction::Realign { by_micros } => error += by_micros as f64,
            }
            out.push(error);
        }
        out
    }

    #[test]
    fn drives_the_error_to_zero_without_overshoot() {
        for error0 in [5_000.0, -5_000.0, 300.0, -40_000.0] {
            let hist = run(0.0, error0, 100_000, 1_000);
            let crossed = hist
                .iter()
                .any(|e| e.signum() != error0.signum() && e.abs() > 0.5);
            assert!(!crossed, "overshoot from {error0}");
            assert!(
                hist.last().is_some_and(|e| e.abs() < 1.0),
                "{:?}",
                hist.last()
            );
        }
    }

    #[test]
    fn learns_a_constant_drift_and_cancels_it() {
        let hist = run(120e-6, 2_000.0, 100_000, 3_000);
        let tail = &hist[2_000..];
        assert!(tail.iter().all(|e| e.abs() < 2.0), "tail {:?}", &tail[..5]);
        // Once the drift is learned, a fresh error decays without crossing.
        let mut c = SlewController::new(SlewConfig::default());
        let mut error = 0.0;
        for k in 0..2_000 {
            let r = match c.update(LocalMicros(k * 100_000), error) {
                Correction::Rate(r) => r,
                Correction::Realign { .. } => unreachable!("small errors never realign"),
            };
            error += (r * (1.0 + 120e-6) - 1.0) * 100_000.0;
        }
        assert!(
            (c.drift_ppm() - 120.0).abs() < 1.0,
            "drift {}",
            c.drift_ppm()
        );
        error += 3_000.0;
        let mut worst_cross: f64 = 0.0;
        for k in 2_000..3_000 {
            let r = match c.update(LocalMicros(k * 100_000), error) {
                Correction::Rate(r) => r,
                Correction::Realign { .. } => unreachable!("small errors never realign"),
            };
            error += (r * (1.0 + 120e-6) - 1.0) * 100_000.0;
            worst_cross = worst_cross.min(error);
        }
        assert!(worst_cross > -1.0, "crossed to {worst_cross}");
        assert!(error.abs() < 1.0);
    }

    #[test]
    fn two_updates_a_few_frames_apart_do_not_teach_a_wild_drift() {
        // A player updated every 10 ms, in step; then a new start late in a
        // period: its first flash and the next are 4 frames (90 µs) apart,
        // and their errors differ by a few hundredths of a frame's noise.
        let mut c = SlewController::new(SlewConfig::default());
        for k in 0..200 {
            c.update(LocalMicros(k * 10_000), 2.0);
        }
        c.reset();
        let t = 2_000_000;
        c.update(LocalMicros(t), 4.0);
        let rate = match c.update(LocalMicros(t + 90), 2.6) {
            Correction::Rate(r) => r,
            Correction::Realign { .. } => unreachable!("small errors never realign"),
        };
        assert!(
            (rate - 1.0).abs() < 50e-6,
            "rate {:.0} ppm",
            (rate - 1.0) * 1e6
        );
        assert!(c.drift_ppm().abs() < 50.0, "drift {} ppm", c.drift_ppm());
    }

    #[test]
    fn realigns_only_beyond_the_threshold() {
        let mut c = SlewController::new(SlewConfig::default());
        assert!(matches!(
            c.update(LocalMicros(0), 49_000.0),
            Correction::Rate(_)
        ));
        assert_eq!(
            c.update(LocalMicros(1), 60_000.0),
            Correction::Realign { by_micros: -60_000 }
        );
        assert!(matches!(c.update(LocalMicros(2), f64::NAN), Correction::Rate(r) if r.is_finite()));
    }
}
