//! One module per `firefly` subcommand: its clap arguments and its `run`.

pub(crate) mod key;
pub(crate) mod relay;
pub(crate) mod status;
pub(crate) mod up;
