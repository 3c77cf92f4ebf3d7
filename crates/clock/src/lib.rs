//! Swarm time for Firefly: one shared timeline with no master.
//!
//! This crate is *sans-IO*: it never reads a real clock, opens a socket or
//! sleeps. Time is always a parameter ([`LocalMicros`], this node's monotonic
//! clock) and the network is the caller's business. It holds:
//!
//! - [`SwarmClock`]: per-peer offset/rate estimation from NTP-style exchanges
//!   (`/firefly/time/1`) and the firefly coupling that pulls every node onto
//!   one timeline, `swarm = local × (1 + skew) + offset`. Its type doc says
//!   how to drive it and which clock stamps each of `t1..t4`.
//! - [`SlewController`]: turns a player's phase error into a playback rate
//!   ratio within ±500 ppm, or asks to re-align beyond 50 ms.
//! - [`sim`]: a deterministic swarm simulator (network model, joins, crashes)
//!   that drives real [`SwarmClock`]s and a Snapcast-like baseline side by
//!   side; `firefly bench clock` and `examples/simulate.rs` print its
//!   [`sim::Report`].
//!
//! # Who calls what
//!
//! The swarm event loop owns a `SwarmClock<PeerId>`: it calls
//! [`SwarmClock::add_peer`]/[`SwarmClock::remove_peer`] on membership changes,
//! arms one timer from [`SwarmClock::poll_timeout`], sends a time request to
//! every peer [`SwarmClock::poll_probe`] returns, answers requests with
//! `(t2, t3)` read from [`SwarmClock::to_swarm`], and feeds replies to
//! [`SwarmClock::handle_sample`]. Playback maps instants with
//! [`SwarmClock::to_swarm`]/[`SwarmClock::to_local`] and waits for
//! [`Event::Synced`]. The UI reads [`SwarmClock::peers`],
//! [`SwarmClock::skew_ppm`] and [`SwarmClock::sync_error_micros`].
//!
//! ```
//! use firefly_clock::{Config, LocalMicros, Sample, SwarmClock, SwarmMicros};
//!
//! let mut clock: SwarmClock<u32> = SwarmClock::new(Config::default(), LocalMicros(0), SwarmMicros(0));
//! clock.add_peer(LocalMicros(0), 7);
//! let now = clock.poll_timeout().unwrap();
//! clock.handle_timeout(now);
//! while let Some(peer) = clock.poll_probe(now) {
//!     // send t1 = now to `peer`; it answers (t2, t3) from its swarm clock
//!     let sample = Sample { t1: now, t2: SwarmMicros(5_300), t3: SwarmMicros(5_310), t4: now + 610 };
//!     clock.handle_sample(now + 610, &peer, sample).unwrap();
//! }
//! ```

mod clock;
mod config;
mod estimator;
pub mod sim;
mod slew;
mod time;

#[cfg(test)]
mod tests;

pub use clock::{Event, PeerInfo, Stats, SwarmClock};
pub use config::Config;
pub use estimator::{Estimate, Sample, SampleError};
pub use slew::{Correction, SlewConfig, SlewController};
pub use time::{LocalMicros, SwarmMicros};
