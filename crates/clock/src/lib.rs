//! Swarm time for Firefly: one shared timeline with no master.
//!
//! This crate is *sans-IO*: it never reads a real clock, opens a socket or
//! sleeps. Time is always a parameter ([`LocalMicros`], this node's monotonic
//! clock) and the network is the caller's business. It holds:
//!
//! - [`SwarmClock`]: per-peer offset/rate estimation from NTP-style exchanges
//!   (`/firefly/time/2`) and the firefly coupling that pulls every node onto
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
//! Concretely, for the swarm crate:
//!
//! - `LocalMicros`: microseconds of a monotonic clock (`Instant` elapsed since
//!   the process started), read from one replaceable `now()` hook.
//! - `SwarmClock::new(config, now, initial)`: `initial` = wall-clock
//!   microseconds since the UNIX epoch at start, so independent nodes begin
//!   within [`Config::max_offset`] (a day) of each other; seed
//!   [`Config::seed`] from the node's `PeerId` bytes so nodes pick different
//!   random peers.
//! - `/firefly/time/2`: request `t1`, response `(t2, t3)`. `t1` and `t4` are
//!   **this node's local** time (`now()` as the request leaves / the reply
//!   arrives); `t2` and `t3` are **the peer's swarm** time
//!   (`clock.to_swarm(now())` when the request arrives / the reply leaves;
//!   `t3 = t2` is fine if the peer stamps once). Time out requests after 1 s:
//!   longer round trips are refused anyway ([`Config::max_delay`]).
//! - Playback must wait for [`Event::Synced`] and re-read anything scheduled
//!   in swarm time after an [`Event::Stepped`]. While synced, swarm time
//!   runs forward and its rate changes slowly; a step happens only when this
//!   node adopts a timeline proven ahead of it and held by at least as many
//!   peers as agree with it (a healed partition), or, backward, when a
//!   larger group agrees on a timeline behind it (its own clock jumped).
//! - A player follows the timeline with a [`SlewController`]: feed it the
//!   phase error (emitted position minus timeline position) and apply the
//!   returned rate, or seek on [`Correction::Realign`].
//!
//! What this crate is not: a wall clock (chrono is for display), a wire
//! format (the swarm crate owns the CBOR messages), or a scheduler.
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

pub use clock::{Event, PeerInfo, PeerView, Stats, SwarmClock};
pub use config::Config;
pub use estimator::{PeerLocal, Sample, SampleError};
pub use slew::{Correction, SlewConfig, SlewController};
pub use time::{LocalMicros, SwarmMicros};
