//! One module per `firefly` subcommand: its clap arguments and its `run`.

pub(crate) mod bench;
pub(crate) mod config;
pub(crate) mod demo;
pub(crate) mod doctor;
pub(crate) mod key;
pub(crate) mod library;
pub(crate) mod local_swarm;
pub(crate) mod play;
pub(crate) mod relay;
pub(crate) mod scan;
pub(crate) mod source;
pub(crate) mod status;
pub(crate) mod transport;
pub(crate) mod up;
pub(crate) mod zone;
