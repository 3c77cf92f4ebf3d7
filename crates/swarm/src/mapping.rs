//! The swarm clock's current local → swarm mapping, shared outside the loop.
//!
//! The [`firefly_clock::SwarmClock`] lives in the event loop, but the player
//! needs to map instants every output period (~10 ms) without a round trip
//! through the command channel. After every turn of the loop the event loop
//! publishes the clock's mapping — an anchor pair and a rate — into a
//! [`ClockMapping`], a cheap shared handle ([`crate::Client::mapping`]); the
//! player's timeline reads it lock-briefly. Between publications the linear
//! mapping is exactly what the clock itself would answer.

use firefly_clock::{LocalMicros, SwarmClock, SwarmMicros};
use libp2p::PeerId;
use std::sync::{Arc, RwLock};

/// One snapshot of the mapping: `swarm(L) = swarm + (L − local)(1 + rate)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mapping {
    /// The local anchor.
    pub local: LocalMicros,
    /// The swarm time at the local anchor.
    pub swarm: SwarmMicros,
    /// Rate of swarm time against local time, minus one (1e-6 is 1 ppm).
    pub rate: f64,
    /// Whether the clock followed the swarm's timeline when published.
    pub synced: bool,
}

impl Mapping {
    /// Swarm time at local instant `local`.
    pub fn to_swarm(&self, local: LocalMicros) -> SwarmMicros {
        let dl = local.as_micros().saturating_sub(self.local.as_micros());
        let extra = (dl as f64 * self.rate).round() as i64;
        SwarmMicros(
            self.swarm
                .as_micros()
                .saturating_add(dl)
                .saturating_add(extra),
        )
    }

    /// Local instant at which the swarm clock reads `swarm`.
    pub fn to_local(&self, swarm: SwarmMicros) -> LocalMicros {
        let ds = swarm.as_micros().saturating_sub(self.swarm.as_micros()) as f64;
        LocalMicros(
            self.local
                .as_micros()
                .saturating_add((ds / (1.0 + self.rate)).round() as i64),
        )
    }
}

/// A shared, always-current [`Mapping`]; `Clone` shares it.
#[derive(Debug, Clone)]
pub struct ClockMapping {
    inner: Arc<RwLock<Mapping>>,
}

impl ClockMapping {
    pub(crate) fn new(clock: &SwarmClock<PeerId>, now: LocalMicros) -> Self {
        Self {
            inner: Arc::new(RwLock::new(snapshot(clock, now))),
        }
    }

    /// The latest published mapping.
    pub fn get(&self) -> Mapping {
        // A writer cannot leave a `Copy` snapshot half-written; carry on past poison.
        *self
            .inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes `clock`'s mapping as of `now`.
    pub(crate) fn publish(&self, clock: &SwarmClock<PeerId>, now: LocalMicros) {
        let fresh = snapshot(clock, now);
        *self
            .inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
    }
}

fn snapshot(clock: &SwarmClock<PeerId>, now: LocalMicros) -> Mapping {
    Mapping {
        local: now,
        swarm: clock.to_swarm(now),
        rate: clock.skew_ppm() * 1e-6,
        synced: clock.is_synced(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mapping_agrees_with_the_clock_and_inverts() {
        let clock: SwarmClock<PeerId> = SwarmClock::new(
            firefly_clock::Config::default(),
            LocalMicros(1_000),
            SwarmMicros(5_000_000),
        );
        let shared = ClockMapping::new(&clock, LocalMicros(2_000));
        let m = shared.get();
        for local in [LocalMicros(2_000), LocalMicros(900_000), LocalMicros(-50)] {
            assert_eq!(m.to_swarm(local), clock.to_swarm(local));
            assert_eq!(m.to_local(m.to_swarm(local)), local);
        }
        let skewed = Mapping { rate: 200e-6, ..m };
        let later = LocalMicros(2_000 + 10_000_000);
        assert_eq!(
            skewed.to_swarm(later).as_micros() - m.swarm.as_micros(),
            10_002_000
        );
        assert_eq!(skewed.to_local(skewed.to_swarm(later)), later);
    }
}
