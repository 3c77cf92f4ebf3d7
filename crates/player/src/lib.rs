//! Firefly's player.
//!
//! This crate will decode audio with symphonia, resample it to the output
//! rate, and emit it through an output (a real device, a clocked virtual
//! output or a WAV file) so that a chosen frame sounds exactly at a chosen
//! swarm instant, with drift corrected by slight rate changes.
