//! The player's view of the node's time: the swarm clock, seen through the
//! [`firefly_player::Timeline`] trait.
//!
//! [`NodeTimeline`] reads "now" from the node's one local clock (the same
//! hook the swarm event loop uses, skewed under `FIREFLY_TEST_CLOCK`), maps
//! it onto the swarm timeline with the mapping the event loop republishes
//! ([`firefly_swarm::ClockMapping`]), and turns the player's phase error into
//! a playback rate with a [`SlewController`]: inaudible rate changes while
//! the error is small, and rate 1 when it is beyond the step threshold (the
//! player re-aligns by itself then).

use firefly_clock::{Correction, LocalMicros, SlewConfig, SlewController, SwarmMicros};
use firefly_player::Timeline;
use firefly_swarm::{ClockMapping, Now};
use std::sync::Mutex;

/// The node's timeline for its player; see the module doc.
pub(crate) struct NodeTimeline {
    now: Now,
    mapping: ClockMapping,
    /// The controller and the rate it last commanded.
    slew: Mutex<(SlewController, f64)>,
}

impl NodeTimeline {
    /// A timeline reading `now` and mapping through `mapping`.
    pub(crate) fn new(now: Now, mapping: ClockMapping) -> Self {
        Self {
            now,
            mapping,
            slew: Mutex::new((SlewController::new(slew_config()), 1.0)),
        }
    }

    /// Swarm time now, as this node believes it.
    pub(crate) fn swarm_now(&self) -> SwarmMicros {
        self.to_swarm(self.now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (SlewController, f64)> {
        // The controller is plain numbers; a panicking holder leaves them usable.
        self.slew
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The player's rate range: the swarm clock may run up to a few hundred ppm
/// from this node's crystal (the swarm keeps to the mean of its members'),
/// and the phase correction needs room on top; 1000 ppm is under 2 cents
/// of pitch, far below what ears notice.
fn slew_config() -> SlewConfig {
    let mut config = SlewConfig::default();
    config.max_ppm = 1_000.0;
    config
}

impl Timeline for NodeTimeline {
    fn now(&self) -> LocalMicros {
        (self.now)()
    }

    fn to_swarm(&self, local: LocalMicros) -> SwarmMicros {
        self.mapping.get().to_swarm(local)
    }

    fn playback_rate(&self, at: LocalMicros, phase_error_micros: Option<f64>) -> f64 {
        let mut guard = self.lock();
        let (slew, last) = &mut *guard;
        *last = match phase_error_micros {
            None => {
                slew.reset();
                1.0
            }
            Some(error) => match slew.update(at, error) {
                Correction::Rate(rate) => rate,
                // The player steps by itself; keep the previous rate meanwhile.
                Correction::Realign { .. } => *last,
            },
        };
        *last
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    fn fixed_clock(at: &Arc<AtomicI64>) -> Now {
        let at = Arc::clone(at);
        Arc::new(move || LocalMicros(at.load(Ordering::Relaxed)))
    }

    #[test]
    fn slews_toward_the_timeline_and_resets_when_idle() {
        let at = Arc::new(AtomicI64::new(0));
        let (client_mapping, _) = mapping_for_test();
        let timeline = NodeTimeline::new(fixed_clock(&at), client_mapping);
        // Playing 2 ms ahead: slow down, within the inaudible bound.
        let mut rate = 1.0;
        for step in 1..20 {
            at.store(step * 10_000, Ordering::Relaxed);
            rate = timeline.playback_rate(LocalMicros(step * 10_000), Some(2_000.0));
        }
        assert!((1.0 - 500e-6..1.0).contains(&rate), "{rate}");
        // Far off: the player steps by itself; the rate is kept meanwhile.
        assert_eq!(
            timeline.playback_rate(LocalMicros(300_000), Some(80_000.0)),
            rate
        );
        assert_eq!(timeline.playback_rate(LocalMicros(310_000), None), 1.0);
    }

    #[test]
    fn maps_through_the_published_mapping() {
        let at = Arc::new(AtomicI64::new(1_000));
        let (mapping, swarm_at_zero) = mapping_for_test();
        let timeline = NodeTimeline::new(fixed_clock(&at), mapping);
        assert_eq!(
            timeline.swarm_now().as_micros(),
            swarm_at_zero.as_micros() + 1_000
        );
    }

    /// A mapping from a real (unconnected) swarm client: identity rate.
    fn mapping_for_test() -> (ClockMapping, SwarmMicros) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let dir = tempfile::tempdir().unwrap();
        let keypair = firefly_swarm::identity::load_or_create(dir.path()).unwrap();
        let mut config = firefly_swarm::Config::new(keypair, "t");
        config
            .mdns(false)
            .listen("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .clock(Arc::new(|| LocalMicros(0)))
            .initial_swarm_time(SwarmMicros(7_000_000));
        let (client, _events, _loop) = firefly_swarm::new(config).unwrap();
        (client.mapping(), SwarmMicros(7_000_000))
    }
}
