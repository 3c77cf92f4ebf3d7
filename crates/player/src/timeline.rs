//! Where the player gets time from: the node's clock, seen through a trait.
//!
//! The player never reads a clock to decide *what* to play: it asks a
//! [`Timeline`] for the local monotonic "now" (as the node believes it), for
//! the mapping of a local instant onto the swarm timeline, and for the
//! playback rate the node's slew controller wants. The node implements it
//! with its swarm clock; [`LinearTimeline`] is a self-contained one (a local
//! clock with an optional deliberate skew, a fixed mapping to swarm time, a
//! settable rate) for tests, benchmarks and headless use.

use firefly_clock::{LocalMicros, SwarmMicros};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

/// The node's view of time, as the player needs it.
///
/// Called from the output's thread once per period (every ~10 ms), so
/// implementations should be quick and must not block for long.
pub trait Timeline: Send + Sync {
    /// This node's local monotonic clock now, as the node believes it.
    fn now(&self) -> LocalMicros;

    /// The swarm instant the local instant `local` corresponds to.
    fn to_swarm(&self, local: LocalMicros) -> SwarmMicros;

    /// The playback rate the node's slew controller wants (1.0003 plays 300 ppm
    /// fast); the player clamps it to ±1%. Asked once per period, it applies to
    /// the audio resampled from then on, which is heard after the one to two
    /// and a half periods the engine resamples ahead.
    ///
    /// `phase_error_micros` is the player's own measurement for the frame heard
    /// at local instant `at` (the start of this period): how far ahead
    /// (positive) or behind the timeline the sound is, in microseconds of
    /// audio; `None` when a track is only starting. It is exactly the input of
    /// `firefly_clock::SlewController::update(at, error)`; a `Realign` answer
    /// needs nothing from the node, since the player steps by itself beyond
    /// [`PlayerConfig::step_threshold`](crate::PlayerConfig) (keep the previous rate).
    fn playback_rate(&self, at: LocalMicros, phase_error_micros: Option<f64>) -> f64 {
        let _ = (at, phase_error_micros);
        1.0
    }
}

/// Swarm µs per local µs around `at`, read from the mapping's slope over
/// 100 s (long enough that µs rounding does not matter); `None` when it is
/// more than 1 % from 1, which no real clock is (a mapping being replaced).
pub(crate) fn swarm_per_local(timeline: &dyn Timeline, at: LocalMicros) -> Option<f64> {
    const SPAN: i64 = 100_000_000;
    let rate = (timeline.to_swarm(at + SPAN) - timeline.to_swarm(at)) as f64 / SPAN as f64;
    (rate.is_finite() && (rate - 1.0).abs() <= 0.01).then_some(rate)
}

/// A self-contained timeline: `local = elapsed × (1 + skew)`, `swarm = local ×
/// (1 + correction) + offset`.
///
/// `elapsed` is real time since the origin (`std::time::Instant`). The skew
/// stands in for a node whose believed clock runs fast or slow, so several
/// "nodes" on one machine can disagree the way real ones do; the correction
/// is what a perfect clock estimator would apply to undo it. The offset, the
/// correction and the playback rate can be changed while playing.
#[derive(Debug)]
pub struct LinearTimeline {
    origin: Instant,
    skew_ppm: f64,
    offset_micros: AtomicI64,
    correction_bits: AtomicU64,
    rate_bits: AtomicU64,
}

impl LinearTimeline {
    /// A timeline starting now with the given skew (ppm) and swarm offset (µs).
    pub fn new(skew_ppm: f64, offset_micros: i64) -> Self {
        Self::with_origin(Instant::now(), skew_ppm, offset_micros)
    }

    /// A timeline whose local clock reads zero at `origin` (several timelines
    /// sharing an origin model nodes on one machine).
    pub fn with_origin(origin: Instant, skew_ppm: f64, offset_micros: i64) -> Self {
        Self {
            origin,
            skew_ppm,
            offset_micros: AtomicI64::new(offset_micros),
            correction_bits: AtomicU64::new(0.0f64.to_bits()),
            rate_bits: AtomicU64::new(1.0f64.to_bits()),
        }
    }

    /// The real instant local time zero refers to.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// The believed local time at a real instant.
    pub fn local_at(&self, instant: Instant) -> LocalMicros {
        let elapsed = if instant >= self.origin {
            instant.duration_since(self.origin).as_secs_f64()
        } else {
            -self.origin.duration_since(instant).as_secs_f64()
        };
        LocalMicros((elapsed * 1e6 * (1.0 + self.skew_ppm * 1e-6)).round() as i64)
    }

    /// The real instant at which the believed local clock reads `local`.
    pub fn instant_of_local(&self, local: LocalMicros) -> Instant {
        let secs = local.as_micros() as f64 / 1e6 / (1.0 + self.skew_ppm * 1e-6);
        if secs >= 0.0 {
            self.origin + std::time::Duration::from_secs_f64(secs)
        } else {
            self.origin - std::time::Duration::from_secs_f64(-secs)
        }
    }

    /// The real instant at which this node believes the swarm clock reads `swarm`.
    pub fn instant_of_swarm(&self, swarm: SwarmMicros) -> Instant {
        let since = (swarm.as_micros() - self.offset_micros.load(Ordering::Relaxed)) as f64;
        let local = since / (1.0 + self.correction());
        self.instant_of_local(LocalMicros(local.round() as i64))
    }

    /// Sets the rate correction (in ppm) from local to swarm time; a node
    /// whose clock runs `skew` ppm fast is corrected by `1e6 / (1 + skew·1e-6) − 1e6`.
    pub fn set_correction_ppm(&self, ppm: f64) {
        self.correction_bits
            .store((ppm * 1e-6).to_bits(), Ordering::Relaxed);
    }

    /// The correction that exactly undoes this timeline's own skew.
    pub fn exact_correction_ppm(&self) -> f64 {
        (1.0 / (1.0 + self.skew_ppm * 1e-6) - 1.0) * 1e6
    }

    fn correction(&self) -> f64 {
        f64::from_bits(self.correction_bits.load(Ordering::Relaxed))
    }

    /// Moves the swarm mapping (a stepped clock correction).
    pub fn set_offset(&self, offset_micros: i64) {
        self.offset_micros.store(offset_micros, Ordering::Relaxed);
    }

    /// Sets the playback rate [`Timeline::playback_rate`] returns.
    pub fn set_rate(&self, rate: f64) {
        self.rate_bits.store(rate.to_bits(), Ordering::Relaxed);
    }
}

impl Timeline for LinearTimeline {
    fn now(&self) -> LocalMicros {
        self.local_at(Instant::now())
    }

    fn to_swarm(&self, local: LocalMicros) -> SwarmMicros {
        let corrected = local.as_micros() as f64 * (1.0 + self.correction());
        SwarmMicros(corrected.round() as i64 + self.offset_micros.load(Ordering::Relaxed))
    }

    fn playback_rate(&self, _at: LocalMicros, _phase_error_micros: Option<f64>) -> f64 {
        f64::from_bits(self.rate_bits.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn skewed_clock_runs_fast_and_maps_back_to_real_instants() {
        let origin = Instant::now();
        let t = LinearTimeline::with_origin(origin, 1000.0, 5_000);
        let later = origin + Duration::from_secs(10);
        assert_eq!(t.local_at(later), LocalMicros(10_010_000));
        assert_eq!(t.to_swarm(LocalMicros(1)), SwarmMicros(5_001));
        let back = t.instant_of_swarm(SwarmMicros(10_015_000));
        assert!(back.duration_since(later) < Duration::from_micros(2));
        // Corrected, the node's swarm clock runs at real speed again.
        t.set_correction_ppm(t.exact_correction_ppm());
        let swarm = t.to_swarm(t.local_at(later));
        assert!((swarm.as_micros() - 10_005_000).abs() <= 1, "{swarm:?}");
        let back = t.instant_of_swarm(swarm);
        assert!(back.max(later).duration_since(back.min(later)) < Duration::from_micros(2));
    }
}
