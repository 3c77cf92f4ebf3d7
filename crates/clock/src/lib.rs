//! Swarm time for Firefly.
//!
//! This crate will hold the sans-IO clock: NTP-style offset and skew
//! estimation per peer, the firefly coupling that pulls every node onto one
//! shared timeline with no master, the slew controller players use to follow
//! that timeline, and a deterministic swarm simulator. It never reads a real
//! clock: time is always a parameter.

mod time;

pub use time::{LocalMicros, SwarmMicros};
