//! Integration tests of the player: decoding fixtures, scheduling, drift,
//! streaming, and the outputs (virtual, WAV and the rodio device on ALSA).
#![allow(clippy::unwrap_used)]

mod decode;
mod engine;
mod live;
mod outputs;

mod util;
