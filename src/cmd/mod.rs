//! One module per `firefly` subcommand: its clap arguments and its `run`.

pub(crate) mod key;
