//! Firefly's libp2p swarm.
//!
//! This crate will hold the network behaviour of a Firefly node: discovery
//! (mDNS, explicit peers, relay), membership heartbeats, library gossip and
//! sync, verified chunk transfer, the time exchange that feeds the clock, and
//! private swarms.

pub mod transfer;
