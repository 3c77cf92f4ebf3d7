//! End-to-end tests: real `firefly` processes, real sockets, real files.
//!
//! One test binary with a module per area and a shared `util` (ripgrep's
//! layout).

#![allow(clippy::unwrap_used)]

mod adversary;
mod commands;
mod covers;
mod doctor;
mod faults;
mod jitter;
mod join;
mod library_watch;
mod live;
mod netns;
mod node;
mod packaging;
mod partition;
mod playback;
mod queue;
mod rogue;
mod scan;
mod shutdown;
mod streaming;
mod transport_frames;
mod ui;
mod ui_cdp;
mod ui_library;
mod ui_zones;
mod util;
mod zones;
